// The role table decides by the identity in the caller's certificate: table-driven over every
// requirement and every kind of caller, including callers of another cluster or an unknown site.
import test from 'ava';
import { authorize, requirementsOf, type Requirement } from './authorization.ts';
import { identityFromSan, identityUri, parseIdentityUri, type Identity } from './identity.ts';

const ctxAgentAlpha = { cluster: 'demo', sites: ['alpha', 'beta'], self: { kind: 'agent', cluster: 'demo', site: 'alpha' } as Identity };
const ctxWitness = { cluster: 'demo', sites: ['alpha', 'beta'], self: { kind: 'witness', cluster: 'demo' } as Identity };

const callers: Record<string, Identity | undefined> = {
  'agent alpha': { kind: 'agent', cluster: 'demo', site: 'alpha' },
  'agent beta': { kind: 'agent', cluster: 'demo', site: 'beta' },
  'agent gamma (no such site)': { kind: 'agent', cluster: 'demo', site: 'gamma' },
  witness: { kind: 'witness', cluster: 'demo' },
  'admin alice': { kind: 'admin', cluster: 'demo', name: 'alice' },
  'viewer bob': { kind: 'viewer', cluster: 'demo', name: 'bob' },
  'admin of another cluster': { kind: 'admin', cluster: 'other', name: 'alice' },
  'no identity': undefined,
};

// Who passes each requirement at agent alpha.
const allowedAtAlpha: Record<Requirement, string[]> = {
  viewer: ['agent alpha', 'agent beta', 'witness', 'admin alice', 'viewer bob'],
  admin: ['admin alice'],
  agent: ['agent alpha', 'agent beta'],
  'peer-agent': ['agent beta'],
  witness: ['witness'],
};

for (const [req, allowed] of Object.entries(allowedAtAlpha) as [Requirement, string[]][]) {
  test(`requirement ${req} at agent alpha`, (t) => {
    for (const [who, id] of Object.entries(callers)) {
      const d = authorize([req], id, ctxAgentAlpha);
      t.is(d.allowed, allowed.includes(who), `${who} for ${req}`);
      if (!d.allowed) t.true(d.reason.length > 0);
    }
  });
}

test('peer-agent passes nobody at a server that is not an agent', (t) => {
  for (const id of Object.values(callers)) t.false(authorize(['peer-agent'], id, ctxWitness).allowed);
});

test('a list of requirements passes any of them; an empty one passes nobody', (t) => {
  t.true(authorize(['agent', 'admin'], callers['admin alice'], ctxWitness).allowed);
  t.true(authorize(['agent', 'admin'], callers['agent beta'], ctxWitness).allowed);
  t.false(authorize(['agent', 'admin'], callers['viewer bob'], ctxWitness).allowed);
  t.false(authorize([], callers['admin alice'], ctxWitness).allowed);
});

test('refusal reasons say who asked and what was needed', (t) => {
  const d = authorize(['admin'], callers['agent beta'], ctxAgentAlpha);
  t.deepEqual(d, { allowed: false, reason: 'agent beta may not call this; it needs an admin certificate' });
  const other = authorize(['viewer'], callers['admin of another cluster'], ctxAgentAlpha);
  t.like(other, { allowed: false, reason: 'the certificate is for cluster "other", this is cluster "demo"' });
});

test('requirementsOf: a method missing from the table, or inherited from Object, has none', (t) => {
  t.deepEqual(requirementsOf({ Health: 'viewer', Switchover: ['admin'] }, 'Health'), ['viewer']);
  t.deepEqual(requirementsOf({ Health: 'viewer' }, 'Switchover'), []);
  t.deepEqual(requirementsOf({ Health: 'viewer' }, 'constructor'), []);
});

test('identity URIs round-trip; malformed ones name nobody', (t) => {
  for (const id of Object.values(callers)) {
    if (id) t.deepEqual(parseIdentityUri(identityUri(id)), id);
  }
  for (const bad of ['metrocluster://demo/agent', 'metrocluster://demo/agent/a/b', 'metrocluster://demo/root/x', 'https://demo/witness',
    'metrocluster://demo/admin/../x', 'metrocluster:///witness', 'metrocluster://demo/witness/x']) {
    t.is(parseIdentityUri(bad), undefined, bad);
  }
});

test('a certificate names one identity: a second URI makes it name nobody', (t) => {
  t.deepEqual(identityFromSan('URI:metrocluster://demo/agent/alpha, IP Address:127.0.0.1, DNS:a.example'), callers['agent alpha']);
  t.is(identityFromSan('URI:metrocluster://demo/agent/alpha, URI:metrocluster://demo/admin/x'), undefined);
  t.is(identityFromSan('DNS:a.example'), undefined);
  t.is(identityFromSan(undefined), undefined);
});
