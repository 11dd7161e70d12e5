// PathStatus of the agent's Status RPC: every site's port group in topology order with its id (the
// site's position, from 1) and the state this portal reports; a site the path has no state for is
// reported with an empty state rather than left out.
import test from 'ava';
import { pathStatusMessage } from './path-status.ts';

test('a secondary forwarding to the primary: port groups in topology order, ids from 1', (t) => {
  const m = pathStatusMessage({
    primary: 'alpha', fenced: false, link: 'attached', forwardingSites: [],
    alua: { beta: 'active-non-optimized', alpha: 'active-optimized' },
  }, ['alpha', 'beta']);
  t.deepEqual(m, {
    primary: 'alpha', fenced: false, link: 'attached', forwarding_sites: [],
    port_groups: [{ site: 'alpha', port_group: 1, state: 'active-optimized' }, { site: 'beta', port_group: 2, state: 'active-non-optimized' }],
  });
});

test('no primary known (a switchover): empty primary; forwarding sites sorted; a missing state is empty', (t) => {
  const m = pathStatusMessage({ primary: undefined, fenced: true, link: 'none', forwardingSites: ['gamma', 'beta'], alua: { alpha: 'transitioning' } }, ['alpha', 'beta']);
  t.is(m.primary, '');
  t.true(m.fenced as boolean);
  t.deepEqual(m.forwarding_sites, ['beta', 'gamma']);
  t.deepEqual(m.port_groups, [{ site: 'alpha', port_group: 1, state: 'transitioning' }, { site: 'beta', port_group: 2, state: '' }]);
});
