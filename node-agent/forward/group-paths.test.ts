// GroupPaths as the failover wiring will drive it: the path a command takes and the ALUA states
// follow setPrimary and fence at runtime, while the hosts' nexuses stay open. The link is a stand-in
// whose state the story sets (the gRPC link itself is forward.test.ts's subject).
import test from 'ava';
import { createLogger } from '../../common/log.ts';
import { AluaPortGroups } from '../scsi/alua.ts';
import type { Nexus, ScsiRequest, ScsiResponse, ScsiTarget } from '../scsi/types.ts';
import type { ForwardLink, LinkState } from './forward-link.ts';
import { GroupPaths } from './group-paths.ts';

const log = createLogger({ component: 'group-paths-test', console: false });
const host: Nexus = { id: 'h', initiatorName: 'iqn.2026-11.org.example:h', isidHex: '000000000001', portalGroupTag: 2 };
const tur: ScsiRequest = { nexus: host, lun: 0, cdb: Buffer.alloc(6), taskTag: 1, attribute: 'simple', expectedDataLength: 0 };

class StandInLink {
  state: LinkState = { kind: 'connecting', since: 0 };
  readonly nexuses = new Set<string>();
  closed = false;
  constructor(readonly primary: string, nexuses: Iterable<Nexus>, private readonly onState: (s: LinkState) => void) {
    for (const n of nexuses) this.nexuses.add(n.id);
  }
  get linkState(): LinkState { return this.state; }
  get attached(): boolean { return this.state.kind === 'attached'; }
  set(s: LinkState): void { this.state = s; this.onState(s); }
  execute(): Promise<ScsiResponse> { return Promise.resolve({ status: 0, dataIn: Buffer.from(`forwarded to ${this.primary}`) }); }
  taskManagement() { return Promise.resolve('function-complete' as const); }
  nexusOpened(n: Nexus): void { this.nexuses.add(n.id); }
  nexusClosed(n: Nexus): void { this.nexuses.delete(n.id); }
  close(): void { this.closed = true; this.state = { kind: 'closed' }; }
}

function story() {
  const alua = new AluaPortGroups([
    { id: 1, state: 'active-optimized', relativeTargetPortIds: [1] },
    { id: 2, state: 'unavailable', relativeTargetPortIds: [2] },
  ]);
  const opened: string[] = [];
  const local: ScsiTarget = {
    iqn: 'iqn.x:db', luns: () => [0],
    execute: () => Promise.resolve({ status: 0, dataIn: Buffer.from('local') }),
    taskManagement: () => Promise.resolve('function-complete'),
    nexusOpened: (n) => opened.push(n.id),
    nexusClosed: () => undefined,
  };
  const links: StandInLink[] = [];
  const left: string[] = [];
  const paths = new GroupPaths({
    self: 'beta', sites: ['alpha', 'beta'],
    groups: [{ name: 'db', iqn: 'iqn.x:db', local, alua }],
    primaryOf: () => 'alpha', epochOf: () => 1, peerUpToDate: () => true, log,
    openLink: ({ primary, nexuses, onState }) => {
      const l = new StandInLink(primary, nexuses, onState);
      links.push(l);
      return l as unknown as ForwardLink;
    },
    onLeavePrimary: (group, why) => left.push(`${group}: ${why}`),
  });
  const target = paths.registry({ lookup: () => undefined, discovery: () => [] }).lookup('iqn.x:db')!;
  const states = () => alua.portGroups().map((g) => g.state);
  const via = async () => String((await target.execute(tur)).dataIn);
  return { paths, target, links, left, states, via, opened, local };
}

test('a secondary: transitioning while its link comes up, forwarding once attached, its nexuses announced to the link', async (t) => {
  const s = story();
  s.target.nexusOpened(host);
  s.paths.start();
  t.is(s.links.length, 1);
  t.true(s.links[0].nexuses.has('h'), 'the open nexus is announced to the new link');
  t.deepEqual(s.states(), ['active-optimized', 'transitioning']);
  t.is(await s.via(), 'local', 'while unlinked the local target answers (its port group refuses media access)');
  s.links[0].set({ kind: 'attached', primarySite: 'alpha' });
  t.deepEqual(s.states(), ['active-optimized', 'active-non-optimized']);
  t.is(await s.via(), 'forwarded to alpha');
  s.paths.close();
});

test('fence, unfence, and the primary moving here and away again, with the host logged in throughout', async (t) => {
  const s = story();
  s.target.nexusOpened(host);
  s.paths.start();
  s.links[0].set({ kind: 'attached', primarySite: 'alpha' });

  s.paths.fence('db');
  t.true(s.links[0].closed, 'a fenced secondary forwards nothing');
  t.deepEqual(s.states(), ['active-optimized', 'unavailable']);
  t.is(await s.via(), 'local');

  s.paths.fence('db', false);
  t.is(s.links.length, 2, 'unfenced: a new link to the primary');
  t.true(s.links[1].nexuses.has('h'));

  s.paths.setPrimary('db', 'beta');
  t.true(s.links[1].closed, 'primary here: no link');
  t.deepEqual(s.states(), ['active-non-optimized', 'active-optimized']);
  t.is(await s.via(), 'local');
  const found = s.paths.lookupPrimary('db');
  t.true(found.kind === 'primary' && found.target === s.local && found.epoch === 1, 'the forward service finds the local target');

  s.paths.setPrimary('db', 'alpha');
  t.deepEqual(s.left, ['db: site beta is no longer the primary of group db'], 'the forward service is told to drop its streams');
  t.is(s.links.length, 3);
  t.is(s.paths.lookupPrimary('db').kind, 'refused');
  s.links[2].set({ kind: 'attached', primarySite: 'alpha' });
  t.is(await s.via(), 'forwarded to alpha');

  s.paths.setPrimary('db', undefined);
  t.deepEqual(s.states(), ['transitioning', 'transitioning'], 'no primary known: a promotion under way');
  t.deepEqual(s.opened, ['h'], 'the host\'s nexus was opened once, and stayed open');
  s.paths.close();
});
