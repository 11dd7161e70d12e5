// The arbiter alone, table-driven: each refusal reason, persist-before-reply ordering, leases on the
// witness clock, restart grace, request sequences, and many clusters' groups side by side.
import test from 'ava';
import { arbiterStep, checkTransition, newArbiter, recordOf, restoreArbiter, type ArbiterAction, type ArbiterState } from './arbiter.ts';
import type { GroupKey, WitnessAsk, WitnessReply } from './arbiter-messages.ts';

const db: GroupKey = { cluster: 'demo', group: 'db' };
const leaseMs = 2000;

function registered(maxDataLossMs = 0, keys: GroupKey[] = [db]): ArbiterState {
  let s = newArbiter(0);
  for (const key of keys) {
    s = arbiterStep(s, { type: 'register', nowMs: 0, registration: { key, sites: ['alpha', 'beta'], preferredSite: 'alpha', leaseMs, maxDataLossMs } }).state;
  }
  return s;
}

function ask(s: ArbiterState, nowMs: number, site: string, epoch: number, a: WitnessAsk, seq = 0, key = db) {
  const step = arbiterStep(s, { type: 'request', nowMs, request: { key, site, epoch, seq, sentAtMs: 0, incarnation: 1, ask: a } });
  const replies = step.actions.filter((x): x is Extract<ArbiterAction, { type: 'reply' }> => x.type === 'reply');
  return { state: step.state, actions: step.actions, reply: replies[0].reply as WitnessReply };
}

function reason(r: WitnessReply): string {
  return r.outcome.granted ? 'granted' : r.outcome.reason;
}

test('registration creates epoch 1 at the preferred site, once; a conflicting one is refused', (t) => {
  const s = registered();
  t.like(recordOf(s, db), { epoch: 1, primary: 'alpha', secondaryUpToDate: true });
  const again = arbiterStep(s, { type: 'register', nowMs: 1, registration: { key: db, sites: ['alpha', 'beta'], preferredSite: 'beta', leaseMs, maxDataLossMs: 0 } });
  t.deepEqual(again.actions, []);
  t.is(recordOf(again.state, db)?.primary, 'alpha');
  const conflict = arbiterStep(s, { type: 'register', nowMs: 1, registration: { key: db, sites: ['alpha', 'gamma'], preferredSite: 'alpha', leaseMs, maxDataLossMs: 0 } });
  t.is(conflict.refusal, 'CONFLICT');
});

test('refusals are values, one per reason', (t) => {
  const s = registered();
  const held = ask(s, 10, 'alpha', 1, { kind: 'lease' }).state;
  const outdated = ask(held, 20, 'alpha', 1, { kind: 'secondary-status', upToDate: false, lagMs: null }).state;
  const cases: [string, ArbiterState, number, string, number, WitnessAsk, number, string][] = [
    ['unknown group', s, 0, 'alpha', 1, { kind: 'lease' }, 0, 'UNKNOWN_GROUP'],
    ['unknown site', s, 0, 'gamma', 1, { kind: 'lease' }, 0, 'UNKNOWN_SITE'],
    ['lease to the secondary', s, 0, 'beta', 1, { kind: 'lease' }, 0, 'NOT_PRIMARY'],
    ['notice from the secondary', s, 0, 'beta', 1, { kind: 'secondary-status', upToDate: false, lagMs: null }, 0, 'NOT_PRIMARY'],
    ['promotion of the primary', s, 0, 'alpha', 1, { kind: 'promotion', forced: false }, 0, 'ALREADY_PRIMARY'],
    ['old epoch', s, 0, 'alpha', 0, { kind: 'lease' }, 0, 'STALE_EPOCH'],
    ['epoch the witness never made', s, 0, 'alpha', 2, { kind: 'lease' }, 0, 'FUTURE_EPOCH'],
    ['promotion while the lease runs', held, 100, 'beta', 1, { kind: 'promotion', forced: false }, 0, 'LEASE_HELD'],
    ['forced promotion while the lease runs', held, 100, 'beta', 1, { kind: 'promotion', forced: true }, 0, 'LEASE_HELD'],
    ['promotion of an outdated secondary', outdated, 5000, 'beta', 1, { kind: 'promotion', forced: false }, 0, 'SECONDARY_OUTDATED'],
    ['handover to an outdated secondary', outdated, 5000, 'alpha', 1, { kind: 'handover', to: 'beta' }, 0, 'SECONDARY_OUTDATED'],
    ['handover by the secondary', s, 0, 'beta', 1, { kind: 'handover', to: 'alpha' }, 0, 'NOT_PRIMARY'],
  ];
  for (const [what, st, now, site, epoch, a, seq, want] of cases) {
    const key = what === 'unknown group' ? { cluster: 'other', group: 'db' } : db;
    t.is(reason(ask(st, now, site, epoch, a, seq, key).reply), want, what);
  }
  const r = ask(held, 100, 'beta', 1, { kind: 'promotion', forced: false }).reply;
  t.deepEqual(r.outcome, { granted: false, reason: 'LEASE_HELD', retryInMs: 2010 - 100 });
});

test('a lease is granted to the primary and renewed on the witness clock; promotion comes only after it ends', (t) => {
  let s = registered();
  const g = ask(s, 100, 'alpha', 1, { kind: 'lease' });
  t.deepEqual(g.reply.outcome, { granted: true, leaseMs });
  t.deepEqual(g.actions.map((a) => a.type), ['reply'], 'a lease is not persisted: it lives on a monotonic clock');
  s = ask(g.state, 1500, 'alpha', 1, { kind: 'lease' }).state;
  t.is(recordOf(s, db)?.leaseExpiresAtMs, 3500);
  t.is(reason(ask(s, 3499, 'beta', 1, { kind: 'promotion', forced: false }).reply), 'LEASE_HELD');
  const p = ask(s, 3500, 'beta', 1, { kind: 'promotion', forced: false });
  t.true(p.reply.outcome.granted);
  t.like(p.reply.record, { epoch: 2, primary: 'beta', secondaryUpToDate: false, forced: false });
  t.deepEqual(p.actions.map((a) => a.type), ['persist', 'reply', 'primary-changed'], 'the new epoch is persisted before the reply');
  t.is(reason(ask(p.state, 3600, 'alpha', 1, { kind: 'lease' }).reply), 'STALE_EPOCH');
});

test('an outdated secondary is promoted automatically only within maxDataLossMs; forced promotion skips the data checks', (t) => {
  for (const [lagMs, maxDataLossMs, want] of [[500, 1000, 'granted'], [1500, 1000, 'LAG_TOO_LARGE'], [null, 1000, 'SECONDARY_OUTDATED'], [0, 0, 'granted']] as const) {
    const s = ask(registered(maxDataLossMs), 0, 'alpha', 1, { kind: 'secondary-status', upToDate: false, lagMs }).state;
    t.is(reason(ask(s, 10, 'beta', 1, { kind: 'promotion', forced: false }).reply), want, `lag ${lagMs}, max ${maxDataLossMs}`);
  }
  const s = ask(registered(), 0, 'alpha', 1, { kind: 'secondary-status', upToDate: false, lagMs: null }).state;
  const f = ask(s, 10, 'beta', 1, { kind: 'promotion', forced: true });
  t.like(f.reply.record, { epoch: 2, primary: 'beta', forced: true });
  t.like(f.actions.at(-1), { type: 'primary-changed', cause: 'forced-failover' });
});

test('handover: the primary gives the group to an up-to-date secondary in a new epoch, with no lease carried over', (t) => {
  const s = ask(registered(), 0, 'alpha', 1, { kind: 'lease' }).state;
  const h = ask(s, 10, 'alpha', 1, { kind: 'handover', to: 'beta' });
  t.like(h.reply.record, { epoch: 2, primary: 'beta', secondaryUpToDate: true });
  t.is(recordOf(h.state, db)?.leaseExpiresAtMs, 0);
  t.deepEqual(h.actions.map((a) => a.type), ['persist', 'reply', 'primary-changed']);
  t.true(ask(h.state, 11, 'beta', 2, { kind: 'lease' }).reply.outcome.granted);
});

test('request sequences: a site fences its own older requests; the sequence is persisted before the reply', (t) => {
  const s0 = registered();
  const poll = ask(s0, 0, 'beta', 1, { kind: 'lease' }, 5);
  t.is(reason(poll.reply), 'NOT_PRIMARY');
  t.deepEqual(poll.actions.map((a) => a.type), ['persist', 'reply']);
  t.is(recordOf(poll.state, db)?.seqs.beta, 5);
  t.is(reason(ask(poll.state, 5000, 'beta', 1, { kind: 'promotion', forced: false }, 4).reply), 'STALE_REQUEST');
  t.true(ask(poll.state, 5000, 'beta', 1, { kind: 'promotion', forced: false }, 5).reply.outcome.granted);
});

test('after a restart every record keeps its epoch and its primary holds a lease for a full lease', (t) => {
  const s = ask(ask(registered(), 0, 'alpha', 1, { kind: 'lease' }).state, 3000, 'beta', 1, { kind: 'promotion', forced: false }).state;
  const rec = recordOf(s, db)!;
  const { leaseExpiresAtMs: _, ...durable } = rec;
  const back = restoreArbiter([durable], 50);
  t.like(recordOf(back, db), { epoch: 2, primary: 'beta', leaseExpiresAtMs: 50 + leaseMs });
  t.is(reason(ask(back, 100, 'alpha', 2, { kind: 'promotion', forced: false }).reply), 'LEASE_HELD');
});

test('many clusters and groups are kept apart', (t) => {
  const keys = [db, { cluster: 'demo', group: 'vm' }, { cluster: 'other', group: 'db' }];
  let s = registered(0, keys);
  s = ask(s, 0, 'alpha', 1, { kind: 'lease' }, 0, keys[0]).state;
  const p = ask(s, 10, 'beta', 1, { kind: 'promotion', forced: false }, 0, keys[2]);
  t.true(p.reply.outcome.granted);
  t.is(recordOf(p.state, keys[2])?.epoch, 2);
  t.is(recordOf(p.state, keys[0])?.epoch, 1);
  t.is(reason(ask(p.state, 10, 'beta', 1, { kind: 'promotion', forced: false }, 0, keys[0]).reply), 'LEASE_HELD');
});

test('the witness clock never goes back', (t) => {
  t.throws(() => arbiterStep(registered(), { type: 'tick', nowMs: -1 }), { message: /clock went back/ });
});

test('an epoch reported from a forced failover without the witness is adopted when its primary follows by parity; otherwise refused as a value', (t) => {
  const promoted = ask(ask(registered(), 0, 'alpha', 1, { kind: 'lease' }).state, 3000, 'beta', 1, { kind: 'promotion', forced: false }).state; // epoch 2, beta
  const cases: [string, ArbiterState, string, number, string, string][] = [
    ['+3 from the old primary\'s epoch, by the forced site', registered(), 'beta', 4, 'beta', 'adopted'],
    ['+3, told by the old primary that heard it from the peer', registered(), 'alpha', 4, 'beta', 'adopted'],
    ['+2 over an epoch the witness made for the same site', promoted, 'beta', 4, 'beta', 'adopted'],
    ['+1 over an epoch the witness made', promoted, 'alpha', 3, 'alpha', 'adopted'],
    ['the epoch the witness holds, from its primary', promoted, 'beta', 2, 'beta', 'granted'],
    ['a primary that breaks the parity', registered(), 'beta', 3, 'beta', 'CONFLICT'],
    ['the same epoch with another primary', promoted, 'alpha', 2, 'alpha', 'CONFLICT'],
    ['an older epoch', promoted, 'beta', 1, 'alpha', 'STALE_EPOCH'],
    ['an unknown primary', registered(), 'beta', 4, 'gamma', 'UNKNOWN_SITE'],
  ];
  for (const [what, s, site, epoch, primary, want] of cases) {
    const r = ask(s, 5000, site, epoch, { kind: 'epoch-report', primary });
    const before = recordOf(s, db)!.epoch;
    const got = !r.reply.outcome.granted ? r.reply.outcome.reason : recordOf(r.state, db)!.epoch > before ? 'adopted' : 'granted';
    t.is(got, want, what);
    if (want === 'adopted') {
      t.like(recordOf(r.state, db), { epoch, primary, forced: true, forcedWithoutWitness: true, operatorHold: true, secondaryUpToDate: false }, what);
      t.deepEqual(r.actions.map((a) => a.type), ['persist', 'reply', 'epoch-adopted'], `${what}: persisted before the reply`);
      t.is(r.reply.outcome.granted && r.reply.outcome.leaseMs, site === primary ? leaseMs : 0, `${what}: a lease only for the primary`);
    }
  }
});

test('the adopted epoch wins over the old primary at once: its next renewal is refused with the record, whatever lease it held', (t) => {
  const held = ask(registered(), 0, 'alpha', 1, { kind: 'lease' }).state;
  const adopted = ask(held, 100, 'beta', 4, { kind: 'epoch-report', primary: 'beta' }).state;
  const renewal = ask(adopted, 200, 'alpha', 1, { kind: 'lease' });
  t.is(reason(renewal.reply), 'STALE_EPOCH');
  t.like(renewal.reply.record, { epoch: 4, primary: 'beta', forcedWithoutWitness: true });
});

test('while a forced primary has not asked for a lease since its epoch was adopted, only a forced promotion replaces it; its lease ask ends the hold, and a late report cannot set it again', (t) => {
  // The old primary reported the epoch; the forced site itself has not been heard.
  const s = ask(registered(), 0, 'alpha', 4, { kind: 'epoch-report', primary: 'beta' }, 3).state;
  t.is(recordOf(s, db)?.leaseExpiresAtMs, leaseMs, 'the forced primary is deemed to hold a lease from the adoption on');
  t.is(reason(ask(s, 60_000, 'alpha', 4, { kind: 'promotion', forced: false }, 3).reply), 'FORCED_PRIMARY_UNCONFIRMED');
  t.is(reason(ask(s, 1000, 'alpha', 4, { kind: 'promotion', forced: true }, 3).reply), 'LEASE_HELD', 'a forced promotion still waits for the lease');
  const overridden = ask(s, 60_000, 'alpha', 4, { kind: 'promotion', forced: true }, 3);
  t.like(overridden.reply.record, { epoch: 5, primary: 'alpha', forced: true, forcedWithoutWitness: false });
  t.false(recordOf(overridden.state, db)!.operatorHold);
  // The forced site reports (seq 7), learns the adoption, and asks for a lease under seq 8.
  const reported = ask(s, 100, 'beta', 4, { kind: 'epoch-report', primary: 'beta' }, 7);
  t.true(reported.reply.outcome.granted);
  t.true(recordOf(reported.state, db)!.operatorHold, 'a report is no sign that it left the operator\'s authority');
  const leased = ask(reported.state, 200, 'beta', 4, { kind: 'lease' }, 8);
  t.deepEqual(leased.actions.map((a) => a.type), ['persist', 'reply'], 'the end of the hold is persisted');
  t.false(recordOf(leased.state, db)!.operatorHold);
  t.is(reason(ask(leased.state, 300, 'beta', 4, { kind: 'epoch-report', primary: 'beta' }, 7).reply), 'STALE_REQUEST');
  t.is(reason(ask(leased.state, 5000, 'alpha', 4, { kind: 'promotion', forced: false }, 3).reply), 'SECONDARY_OUTDATED', 'automatic failover rules again');
});

test('records from before forced failovers without the witness restore without their flags; an epoch jump is allowed only for an adopted forced epoch', (t) => {
  const s = registered();
  const { leaseExpiresAtMs: _, forcedWithoutWitness: _f, operatorHold: _h, ...old } = recordOf(s, db)!;
  const back = restoreArbiter([old as never], 0);
  t.like(recordOf(back, db), { epoch: 1, forcedWithoutWitness: false, operatorHold: false });
  const r = recordOf(s, db)!;
  t.throws(() => checkTransition(r, { ...r, epoch: 3, primary: 'beta', forcedWithoutWitness: false }), { message: /jumped/ });
  t.throws(() => checkTransition(r, { ...r, epoch: 4, primary: 'alpha', forcedWithoutWitness: true }), { message: /primary/ });
  t.notThrows(() => checkTransition(r, { ...r, epoch: 4, primary: 'beta', forcedWithoutWitness: true }));
});
