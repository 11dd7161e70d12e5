// The witness's arbiter: a pure state machine over per-group records (epoch, primary, secondary
// up-to-date or outdated, lag bound, per-site request sequence; lease expiry on the witness's
// monotonic clock). `arbiterStep(state, input)` returns the new state and actions in this order:
// `persist` (the durable record, BEFORE anything leaves) then `reply`. The runtime must not send a
// reply before the persist before it has completed. No I/O, no clock: time comes in every input.
//
// Epochs: the witness makes each new one as the old + 1 with the other site primary. A site may
// also make one without the witness, on an operator's forced failover (role-machine.ts, "Forced
// failover without the witness"): always an odd step with the primary changed, or an even step with
// it kept, so the primary of an epoch is the same wherever it is known. When a site reports such an
// epoch (ask 'epoch-report') the witness adopts it rather than fighting it, and holds automatic
// promotion until its primary shows, by asking for anything else, that it has left the operator's
// authority and serves on leases again (`operatorHold`).
import { assert } from '../common/assert.ts';
import {
  groupKeyString,
  type GroupKey,
  type RecordView,
  type RefusalReason,
  type ReplyOutcome,
  type SiteName,
  type WitnessRequest,
  type WitnessReply,
} from './arbiter-messages.ts';

/** What survives a witness restart (lowdb). Leases do not: monotonic clocks restart. */
export interface DurableRecord extends RecordView {
  readonly key: GroupKey;
  readonly sites: readonly [SiteName, SiteName];
  readonly leaseMs: number;
  readonly maxDataLossMs: number;
  /** Highest request sequence seen per site. */
  readonly seqs: Readonly<Record<SiteName, number>>;
  /**
   * The current epoch was adopted from a site's report (forced without the witness) and its primary
   * has not asked for anything but that since: it may be serving on the operator's order alone,
   * without a lease this witness could let expire. No automatic promotion until it asks.
   */
  readonly operatorHold: boolean;
}

interface GroupState {
  readonly durable: DurableRecord;
  /** The current primary's lease ends here (witness clock); 0 when none was ever granted. */
  readonly leaseExpiresAtMs: number;
}

export interface ArbiterState {
  readonly nowMs: number;
  readonly groups: ReadonlyMap<string, GroupState>;
}

export interface GroupRegistration {
  readonly key: GroupKey;
  readonly sites: readonly [SiteName, SiteName];
  readonly preferredSite: SiteName;
  readonly leaseMs: number;
  readonly maxDataLossMs: number;
}

export type ArbiterInput =
  | { readonly type: 'tick'; readonly nowMs: number }
  /** Idempotent: creates epoch 1 with the preferred site primary; settings may be updated later. */
  | { readonly type: 'register'; readonly nowMs: number; readonly registration: GroupRegistration }
  | { readonly type: 'request'; readonly nowMs: number; readonly request: WitnessRequest };

export type ArbiterAction =
  | { readonly type: 'persist'; readonly record: DurableRecord }
  | { readonly type: 'reply'; readonly reply: WitnessReply }
  /** For the log and metrics: the primary of a group changed. */
  | { readonly type: 'primary-changed'; readonly key: GroupKey; readonly from: SiteName; readonly to: SiteName; readonly epoch: number; readonly cause: 'failover' | 'forced-failover' | 'switchover' }
  /** For the log and metrics: an epoch made by a forced failover without the witness was adopted. */
  | { readonly type: 'epoch-adopted'; readonly key: GroupKey; readonly fromEpoch: number; readonly epoch: number; readonly primary: SiteName; readonly reportedBy: SiteName };

export interface ArbiterStep {
  readonly state: ArbiterState;
  readonly actions: readonly ArbiterAction[];
  /** A refused registration (CONFLICT), as a value. */
  readonly refusal?: RefusalReason;
}

export function newArbiter(nowMs: number): ArbiterState {
  return { nowMs, groups: new Map() };
}

/**
 * After a restart: the records as persisted, and every primary treated as holding a lease for a
 * full lease from now, since a lease granted before the crash may still run.
 */
export function restoreArbiter(records: readonly DurableRecord[], nowMs: number): ArbiterState {
  const groups = new Map<string, GroupState>();
  for (const saved of records) {
    // Records written before forced failovers without the witness existed lack these fields.
    const r: DurableRecord = { ...saved, forcedWithoutWitness: saved.forcedWithoutWitness ?? false, operatorHold: saved.operatorHold ?? false };
    checkRecord(r);
    groups.set(groupKeyString(r.key), { durable: r, leaseExpiresAtMs: nowMs + r.leaseMs });
  }
  return { nowMs, groups };
}

export function arbiterStep(state: ArbiterState, input: ArbiterInput): ArbiterStep {
  assert(input.nowMs >= state.nowMs, `witness clock went back: ${input.nowMs} < ${state.nowMs}`);
  const at = { ...state, nowMs: input.nowMs };
  switch (input.type) {
    case 'tick':
      return { state: at, actions: [] };
    case 'register':
      return register(at, input.registration);
    case 'request':
      return request(at, input.request);
  }
}

/** The record of a group, for status. */
export function recordOf(state: ArbiterState, key: GroupKey): (DurableRecord & { leaseExpiresAtMs: number }) | undefined {
  const g = state.groups.get(groupKeyString(key));
  return g && { ...g.durable, leaseExpiresAtMs: g.leaseExpiresAtMs };
}

function register(state: ArbiterState, reg: GroupRegistration): ArbiterStep {
  const k = groupKeyString(reg.key);
  const old = state.groups.get(k);
  assert(reg.sites[0] !== reg.sites[1] && reg.sites.includes(reg.preferredSite), `registration of ${k}: bad sites`);
  if (old) {
    const same = old.durable.sites.every((s) => reg.sites.includes(s));
    if (!same) return { state, actions: [], refusal: 'CONFLICT' };
    if (old.durable.leaseMs === reg.leaseMs && old.durable.maxDataLossMs === reg.maxDataLossMs) return { state, actions: [] };
    // A longer lease applies at once to the running one: a shorter one only to the next grant.
    const durable = { ...old.durable, leaseMs: reg.leaseMs, maxDataLossMs: reg.maxDataLossMs };
    return commit(state, k, { durable, leaseExpiresAtMs: old.leaseExpiresAtMs }, []);
  }
  const durable: DurableRecord = {
    key: reg.key, sites: reg.sites, leaseMs: reg.leaseMs, maxDataLossMs: reg.maxDataLossMs,
    epoch: 1, primary: reg.preferredSite, secondaryUpToDate: true, lagMs: null, forced: false, forcedWithoutWitness: false,
    seqs: { [reg.sites[0]]: 0, [reg.sites[1]]: 0 }, operatorHold: false,
  };
  return commit(state, k, { durable, leaseExpiresAtMs: 0 }, []);
}

type Decision =
  | { readonly next: GroupState; readonly outcome: ReplyOutcome; readonly change?: ArbiterAction }
  | { readonly refuse: RefusalReason; readonly retryInMs?: number };

function request(state: ArbiterState, req: WitnessRequest): ArbiterStep {
  const k = groupKeyString(req.key);
  const g = state.groups.get(k);
  if (!g) return { state, actions: [reply(req, null, refused('UNKNOWN_GROUP'))] };
  if (!g.durable.sites.includes(req.site)) return { state, actions: [reply(req, g.durable, refused('UNKNOWN_SITE'))] };
  const seen = g.durable.seqs[req.site] ?? 0;
  if (req.seq < seen) return { state, actions: [reply(req, g.durable, refused('STALE_REQUEST'))] };
  // The sequence is recorded even when the request is refused: it fences the site's older requests.
  const base: GroupState = req.seq > seen
    ? { ...g, durable: { ...g.durable, seqs: { ...g.durable.seqs, [req.site]: req.seq } } }
    : g;
  const d = decide(state.nowMs, base, req);
  if ('refuse' in d) {
    const out = refused(d.refuse, d.retryInMs);
    return commit(state, k, base, [reply(req, base.durable, out)], g);
  }
  const extra = d.change ? [d.change] : [];
  return commit(state, k, d.next, [reply(req, d.next.durable, d.outcome), ...extra], g);
}

function decide(nowMs: number, g0: GroupState, req: WitnessRequest): Decision {
  if (req.ask.kind === 'epoch-report') return adoptReported(nowMs, g0, req, req.ask.primary);
  if (req.epoch < g0.durable.epoch) return { refuse: 'STALE_EPOCH' };
  // Epochs above the record come only with an epoch report: a plain request there is refused.
  if (req.epoch > g0.durable.epoch) return { refuse: 'FUTURE_EPOCH' };
  const isPrimary = req.site === g0.durable.primary;
  // Anything but a report from the primary of its epoch: it serves on leases again (it sends other
  // asks only once it has heard that this witness holds its epoch; its earlier reports are fenced
  // by their lower sequence).
  const g = isPrimary && g0.durable.operatorHold ? { ...g0, durable: { ...g0.durable, operatorHold: false } } : g0;
  const r = g.durable;
  switch (req.ask.kind) {
    case 'lease': {
      if (!isPrimary) return { refuse: 'NOT_PRIMARY' };
      return grantLease(nowMs, g);
    }
    case 'secondary-status': {
      if (!isPrimary) return { refuse: 'NOT_PRIMARY' };
      const { upToDate, lagMs } = req.ask;
      assert(lagMs === null || (Number.isFinite(lagMs) && lagMs >= 0), `lag ${lagMs} is not a duration`);
      const durable = { ...r, secondaryUpToDate: upToDate, lagMs: upToDate ? null : lagMs };
      return { next: { ...g, durable }, outcome: { granted: true, leaseMs: 0 } };
    }
    case 'handover': {
      if (!isPrimary) return { refuse: 'NOT_PRIMARY' };
      if (req.ask.to === req.site || !r.sites.includes(req.ask.to)) return { refuse: 'UNKNOWN_SITE' };
      if (!r.secondaryUpToDate) return { refuse: 'SECONDARY_OUTDATED' };
      // The requester has stopped acknowledging writes: its lease ends now, the new primary asks anew.
      const durable = { ...r, epoch: r.epoch + 1, primary: req.ask.to, secondaryUpToDate: true, lagMs: null, forced: false, forcedWithoutWitness: false, operatorHold: false };
      return {
        next: { durable, leaseExpiresAtMs: 0 },
        outcome: { granted: true, leaseMs: 0 },
        change: { type: 'primary-changed', key: r.key, from: r.primary, to: req.ask.to, epoch: durable.epoch, cause: 'switchover' },
      };
    }
    case 'promotion': {
      if (isPrimary) return { refuse: 'ALREADY_PRIMARY' };
      if (nowMs < g.leaseExpiresAtMs) return { refuse: 'LEASE_HELD', retryInMs: g.leaseExpiresAtMs - nowMs };
      // A primary on the operator's order has no lease that ends: only the operator may override it.
      if (!req.ask.forced && r.operatorHold) return { refuse: 'FORCED_PRIMARY_UNCONFIRMED' };
      if (!req.ask.forced && !r.secondaryUpToDate) {
        if (r.lagMs === null) return { refuse: 'SECONDARY_OUTDATED' };
        if (r.lagMs > r.maxDataLossMs) return { refuse: 'LAG_TOO_LARGE' };
      }
      // The old primary is gone: the new primary will acknowledge writes it lacks.
      const durable = {
        ...r, epoch: r.epoch + 1, primary: req.site, secondaryUpToDate: false, lagMs: null, forced: req.ask.forced, forcedWithoutWitness: false, operatorHold: false,
      };
      const cause = req.ask.forced ? 'forced-failover' : 'failover';
      return {
        next: { durable, leaseExpiresAtMs: nowMs + r.leaseMs },
        outcome: { granted: true, leaseMs: r.leaseMs },
        change: { type: 'primary-changed', key: r.key, from: r.primary, to: req.site, epoch: durable.epoch, cause },
      };
    }
  }
}

/**
 * An epoch the witness did not make, reported by either site. Consistent when it is higher and its
 * primary follows from the record's by parity (an odd step changes the primary, an even one keeps
 * it: the rule every epoch is made by). Adopting it needs no lease to run out: the operator has
 * declared the other site lost, and the reported epoch is higher than any this witness made without
 * the forcing site knowing (role-machine.ts has the argument), so the old primary steps down when it
 * next asks. The record then holds the secondary outdated, as a forced promotion does.
 */
function adoptReported(nowMs: number, g: GroupState, req: WitnessRequest, primary: SiteName): Decision {
  const r = g.durable;
  if (!r.sites.includes(primary)) return { refuse: 'UNKNOWN_SITE' };
  if (req.epoch < r.epoch) return { refuse: 'STALE_EPOCH' };
  const step = req.epoch - r.epoch;
  if ((step % 2 === 1) !== (primary !== r.primary)) return { refuse: 'CONFLICT' };
  const fromPrimary = req.site === primary;
  if (step === 0) {
    // Known already (adopted from the other site, or an answer that was lost): a lease for the primary.
    return fromPrimary ? grantLease(nowMs, g) : { next: g, outcome: { granted: true, leaseMs: 0 } };
  }
  const durable: DurableRecord = {
    ...r, epoch: req.epoch, primary, secondaryUpToDate: false, lagMs: null, forced: true, forcedWithoutWitness: true, operatorHold: true,
  };
  return {
    next: { durable, leaseExpiresAtMs: Math.max(g.leaseExpiresAtMs, nowMs + r.leaseMs) },
    outcome: { granted: true, leaseMs: fromPrimary ? r.leaseMs : 0 },
    change: { type: 'epoch-adopted', key: r.key, fromEpoch: r.epoch, epoch: req.epoch, primary, reportedBy: req.site },
  };
}

function grantLease(nowMs: number, g: GroupState): Decision {
  const leaseExpiresAtMs = Math.max(g.leaseExpiresAtMs, nowMs + g.durable.leaseMs);
  return { next: { ...g, leaseExpiresAtMs }, outcome: { granted: true, leaseMs: g.durable.leaseMs } };
}

/** Validate, commit, then derive: a persist action when the durable part changed, first. */
function commit(state: ArbiterState, k: string, next: GroupState, after: ArbiterAction[], before = state.groups.get(k)): ArbiterStep {
  checkRecord(next.durable);
  if (before) checkTransition(before.durable, next.durable);
  const groups = new Map(state.groups);
  groups.set(k, next);
  const durableChanged = before?.durable !== next.durable;
  const actions: ArbiterAction[] = durableChanged ? [{ type: 'persist', record: next.durable }, ...after] : after;
  return { state: { ...state, groups }, actions };
}

function checkRecord(r: DurableRecord): void {
  assert(Number.isSafeInteger(r.epoch) && r.epoch >= 1, `${groupKeyString(r.key)}: epoch ${r.epoch}`);
  assert(r.sites.includes(r.primary), `${groupKeyString(r.key)}: primary ${r.primary} is not one of its sites`);
  assert(r.leaseMs > 0 && r.maxDataLossMs >= 0, `${groupKeyString(r.key)}: bad lease or data loss settings`);
}

/**
 * Epochs and sequences only grow; an epoch the witness makes is the next one with the other site
 * primary; one adopted from a report may be further on, with the primary that its parity gives.
 */
export function checkTransition(before: DurableRecord, after: DurableRecord): void {
  const k = groupKeyString(after.key);
  const step = after.epoch - before.epoch;
  assert(step >= 0, `${k}: epoch went back from ${before.epoch} to ${after.epoch}`);
  assert(step <= 1 || after.forcedWithoutWitness, `${k}: epoch jumped from ${before.epoch} to ${after.epoch}`);
  assert((step % 2 === 1) === (after.primary !== before.primary), `${k}: epoch ${before.epoch} -> ${after.epoch} with primary ${before.primary} -> ${after.primary}`);
  for (const s of before.sites) assert((after.seqs[s] ?? 0) >= (before.seqs[s] ?? 0), `${k}: request sequence of ${s} went back`);
}

function refused(reason: RefusalReason, retryInMs?: number): ReplyOutcome {
  return { granted: false, reason, retryInMs: retryInMs ?? null };
}

function reply(req: WitnessRequest, r: DurableRecord | null, outcome: ReplyOutcome): ArbiterAction {
  const record: RecordView | null = r && {
    epoch: r.epoch, primary: r.primary, secondaryUpToDate: r.secondaryUpToDate, lagMs: r.lagMs, forced: r.forced,
    forcedWithoutWitness: r.forcedWithoutWitness,
  };
  return {
    type: 'reply',
    reply: {
      key: req.key, site: req.site, ask: req.ask.kind, epoch: req.epoch, seq: req.seq,
      sentAtMs: req.sentAtMs, incarnation: req.incarnation, outcome, record,
    },
  };
}
