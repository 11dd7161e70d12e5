// The role machine alone on a forced failover without the witness (role-machine.ts): when it may
// make the epoch itself (table-driven waits), what it persists and in which order, how it reports
// the epoch until the witness adopts it, and what it refuses meanwhile. Exact clocks, no world.
import test from 'ava';
import {
  restoreRole, roleStep,
  type PersistedRole, type RoleAction, type RoleConfig, type RoleInput, type RoleState, type RoleTiming,
} from './role-machine.ts';
import type { WitnessAsk, WitnessReply } from '../../site-witness/arbiter-messages.ts';
import { heldAtMostMs } from './lease.ts';

const key = { cluster: 'c', group: 'db' };
const base: RoleTiming = {
  driftMax: 0.01, safetyMarginMs: 10, peerLeaseMs: 1000, heartbeatMs: 200, leaseRenewMs: 300, witnessPollMs: 600,
  witnessRetryMs: 200, switchoverDrainMaxMs: 2000, forceFailoverMaxMs: 20_000, witnessLeaseMs: 1000, forceWitnessWaitMs: 400,
};

function config(site: 'alpha' | 'beta', timing: Partial<RoleTiming> = {}): RoleConfig {
  return { key, site, peer: site === 'alpha' ? 'beta' : 'alpha', preferredSite: 'alpha', timing: { ...base, ...timing } };
}

const saved = (p: Partial<PersistedRole> = {}): PersistedRole => ({
  epoch: 1, primary: 'alpha', seq: 0, incarnation: 0, changeRequested: false, confirmSeq: null, forcedWithoutWitness: false, ...p,
});

class Site {
  state: RoleState;
  actions: RoleAction[] = [];
  constructor(cfg: RoleConfig, p: PersistedRole, nowMs = 0) {
    const r = restoreRole(cfg, p, nowMs);
    this.state = r.state;
    this.actions.push(...r.actions);
  }

  step(input: RoleInput): RoleAction[] {
    const r = roleStep(this.state, input);
    if (r.refusal) throw new Error(`refused: ${r.refusal}`);
    this.state = r.state;
    this.actions.push(...r.actions);
    return [...r.actions];
  }

  /** Ticks every 10 ms up to untilMs; the time at which the site became primary, or null. */
  tickUntilPrimary(fromMs: number, untilMs: number): number | null {
    for (let t = fromMs; t <= untilMs; t += 10) {
      this.step({ type: 'tick', nowMs: t });
      if (this.state.persisted.primary === this.state.config.site) return t;
    }
    return null;
  }

  witnessAsks(): WitnessAsk[] {
    return this.actions.flatMap((a) => (a.type === 'send-witness' ? [a.request.ask] : []));
  }
}

function reply(s: RoleState, ask: WitnessReply['ask'], outcome: WitnessReply['outcome'], record: WitnessReply['record'], sentAtMs = s.nowMs): WitnessReply {
  const p = s.persisted;
  return { key, site: s.config.site, ask, epoch: p.epoch, seq: p.seq, sentAtMs, incarnation: p.incarnation, outcome, record };
}

const rec = (epoch: number, primary: string, forcedWithoutWitness = false) => ({ epoch, primary, secondaryUpToDate: false, lagMs: null, forced: forcedWithoutWitness, forcedWithoutWitness });

/** The first tick time (10 ms steps from 0) at or after t. */
const tickAt = (t: number): number => Math.ceil(t / 10) * 10;

test('a forced secondary makes the epoch itself no earlier than its promise, the witness silence bound and a lease granted up to the order allow', (t) => {
  const leaseBound = heldAtMostMs(base.witnessLeaseMs, base);
  const cases: Array<{ what: string; timing?: Partial<RoleTiming>; witnessAnswersAtMs?: number; expectMs: number }> = [
    { what: 'the lease the witness may have granted the old primary up to the order', expectMs: 300 + leaseBound },
    { what: 'a promise to the peer longer than the witness lease', timing: { peerLeaseMs: 3000 }, expectMs: 100 + 3000 },
    { what: 'the witness answering after the order: counted from its answer', witnessAnswersAtMs: 800, expectMs: 800 + leaseBound },
    { what: 'a witness wait longer than the lease', timing: { forceWitnessWaitMs: 5000 }, expectMs: 300 + 5000 },
  ];
  for (const c of cases) {
    const beta = new Site(config('beta', c.timing), saved(), 0);
    beta.step({ type: 'peer-message', nowMs: 100, message: { kind: 'ping', key, from: 'alpha', epoch: 1, primary: 'alpha', sentAtMs: 100, incarnation: 1 } });
    beta.step({ type: 'peer-lost', nowMs: 200 });
    beta.step({ type: 'operator', nowMs: 300, command: 'force-failover' });
    let promotedAt: number | null;
    if (c.witnessAnswersAtMs !== undefined) {
      t.is(beta.tickUntilPrimary(310, c.witnessAnswersAtMs - 10), null, c.what);
      beta.step({ type: 'witness-reply', nowMs: c.witnessAnswersAtMs, reply: reply(beta.state, 'promotion', { granted: false, reason: 'LEASE_HELD', retryInMs: 50 }, rec(1, 'alpha')) });
      promotedAt = beta.tickUntilPrimary(c.witnessAnswersAtMs + 10, 20_000);
    } else {
      promotedAt = beta.tickUntilPrimary(310, 20_000);
    }
    t.is(promotedAt, tickAt(c.expectMs), c.what);
  }
});

test('no force, no self-promotion: a secondary that hears neither its primary nor the witness waits for ever', (t) => {
  const beta = new Site(config('beta'), saved(), 0);
  beta.step({ type: 'peer-lost', nowMs: 10 });
  t.is(beta.tickUntilPrimary(20, 120_000), null);
  const asks = beta.witnessAsks();
  t.true(asks.some((a) => a.kind === 'promotion'), 'it asks the witness for promotion');
  t.true(asks.every((a) => a.kind === 'lease' || (a.kind === 'promotion' && !a.forced)), 'it only polls and asks the witness, unforced');
});

test('the forced epoch is persisted before anything acts on it: +3 from a secondary, +2 from a fenced primary, the peer outdated, the gate local', (t) => {
  for (const [site, p, epoch] of [['beta', saved(), 4], ['alpha', saved({ epoch: 3, primary: 'alpha' }), 5]] as const) {
    const s = new Site(config(site), p, 0);
    s.step({ type: 'peer-lost', nowMs: 10 });
    s.step({ type: 'operator', nowMs: 20, command: 'force-failover' });
    let actions: RoleAction[] = [];
    for (let now = 30; now < 5000 && s.state.persisted.epoch === p.epoch; now += 10) actions = s.step({ type: 'tick', nowMs: now });
    t.like(actions[0], { type: 'persist', persisted: { epoch, primary: site, forcedWithoutWitness: true, changeRequested: false, confirmSeq: null } }, site);
    const kinds = actions.map((a) => a.type);
    t.true(kinds.indexOf('write-gate') > 0 && kinds.indexOf('send-witness') > kinds.indexOf('write-gate'), `${site}: ${kinds.join(', ')}`);
    t.like(actions.find((a) => a.type === 'write-gate'), { gate: 'local' });
    t.like(actions.find((a) => a.type === 'send-witness'), { request: { epoch, ask: { kind: 'epoch-report', primary: site } } });
    t.false(kinds.includes('save-divergent-writes'), 'the forcing site keeps its data');
  }
});

test('a serving primary is not forced; a forced one refuses a switchover until the witness holds its epoch', (t) => {
  const alpha = new Site(config('alpha'), saved(), 0);
  alpha.step({ type: 'witness-reply', nowMs: 5, reply: reply(alpha.state, 'lease', { granted: true, leaseMs: 1000 }, rec(1, 'alpha'), 0) });
  t.is(roleStep(alpha.state, { type: 'operator', nowMs: 10, command: 'force-failover' }).refusal, 'ALREADY_PRIMARY');
  const beta = new Site(config('beta'), saved({ epoch: 4, primary: 'beta', forcedWithoutWitness: true }), 0);
  t.is(roleStep(beta.state, { type: 'operator', nowMs: 10, command: 'switchover' }).refusal, 'WITNESS_NOT_TOLD');
  t.is(roleStep(beta.state, { type: 'operator', nowMs: 10, command: 'force-failover' }).refusal, 'ALREADY_PRIMARY');
});

test('forced: reports the epoch until the witness adopts it; the adoption ends the operator\'s authority under a new sequence, then leases', (t) => {
  const beta = new Site(config('beta'), saved({ epoch: 4, primary: 'beta', seq: 7, forcedWithoutWitness: true }), 0);
  for (let now = 0; now <= 1000; now += 100) beta.step({ type: 'tick', nowMs: now });
  const reports = beta.witnessAsks();
  t.true(reports.length >= 5 && reports.every((a) => a.kind === 'epoch-report'), JSON.stringify(reports));
  t.is(beta.state.persisted.forcedWithoutWitness, true);
  const adopted = beta.step({ type: 'witness-reply', nowMs: 1010, reply: reply(beta.state, 'epoch-report', { granted: true, leaseMs: 1000 }, rec(4, 'beta', true), 1000) });
  t.like(adopted[0], { type: 'persist', persisted: { epoch: 4, forcedWithoutWitness: false, seq: 8 } });
  t.true(beta.state.witnessLeaseUntilMs > 1010, 'the adoption granted a lease');
  // At once, so that the witness's hold ends.
  const next = adopted.flatMap((a) => (a.type === 'send-witness' ? [a.request] : []));
  t.like(next[0], { seq: 8, ask: { kind: 'lease' } });
});

test('forced, and the witness holds a newer epoch: the site steps down and saves its writes aside', (t) => {
  const beta = new Site(config('beta'), saved({ epoch: 4, primary: 'beta', seq: 7, forcedWithoutWitness: true }), 0);
  const out = beta.step({ type: 'witness-reply', nowMs: 10, reply: reply(beta.state, 'epoch-report', { granted: false, reason: 'STALE_EPOCH', retryInMs: null }, rec(5, 'alpha', false)) });
  t.deepEqual(out.slice(0, 2).map((a) => a.type), ['persist', 'save-divergent-writes']);
  t.like(beta.state.persisted, { epoch: 5, primary: 'alpha', forcedWithoutWitness: false });
});

test('a secondary holding an epoch the witness lacks tells the witness instead of polling it', (t) => {
  const alpha = new Site(config('alpha'), saved({ epoch: 4, primary: 'beta' }), 0);
  alpha.step({ type: 'tick', nowMs: 0 });
  alpha.step({ type: 'witness-reply', nowMs: 5, reply: reply(alpha.state, 'lease', { granted: false, reason: 'FUTURE_EPOCH', retryInMs: null }, rec(1, 'alpha'), 0) });
  // The primary beta is heard throughout: these are polls, not promotion requests.
  const heard = (now: number): void => {
    alpha.step({ type: 'peer-message', nowMs: now, message: { kind: 'ping', key, from: 'beta', epoch: 4, primary: 'beta', sentAtMs: now, incarnation: 1 } });
    alpha.step({ type: 'tick', nowMs: now });
  };
  alpha.actions = [];
  for (let now = 100; now <= 1300; now += 100) heard(now);
  t.deepEqual(alpha.witnessAsks(), [{ kind: 'epoch-report', primary: 'beta' }, { kind: 'epoch-report', primary: 'beta' }]);
  alpha.step({ type: 'witness-reply', nowMs: 1310, reply: reply(alpha.state, 'epoch-report', { granted: true, leaseMs: 0 }, rec(4, 'beta', true)) });
  alpha.actions = [];
  for (let now = 1400; now <= 2600; now += 100) heard(now);
  t.deepEqual(alpha.witnessAsks(), [{ kind: 'lease' }, { kind: 'lease' }]);
});
