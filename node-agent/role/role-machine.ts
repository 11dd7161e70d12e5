// The agent's role machine for one consistency group at one site: pure, `roleStep(state, input)`
// -> { state, actions }. Inputs carry the site's monotonic clock. Actions come in this order:
// persist (must complete before any later action), save-divergent-writes, write-gate, alua, then
// messages to the peer and the witness. `writeGate(state, nowMs)` is the authority for every write.
//
// Quorum: a site acknowledges writes only while it is the primary of the current epoch AND holds a
// peer lease (the secondary promised not to seek promotion) or a witness lease, both measured from
// the request's send time with lease.ts's drift allowance. A primary acknowledges a write its
// secondary lacks ('local' gate) only after the witness has acknowledged the secondary outdated.
//
// Forced failover without the witness. The operator orders a forced failover ('force-failover') at
// a site that is not serving the group: the secondary, or a primary fenced for lack of quorum. The
// site asks the witness first. If neither the witness nor the peer answers, it makes the new epoch
// itself, once all of these hold, each measured on its own monotonic clock:
//   - the peer has not been heard from for a peer lease, and every promise given to it has run out;
//   - the witness has not answered for forceWitnessWaitMs since the order (or since it last did);
//   - a lease the witness granted the old primary at that moment cannot be in use any more
//     (lease.ts heldAtMostMs of witnessLeaseMs): the operator declares the witness gone from the
//     order on, not before it, so a lease it granted up to then must be waited out.
// It persists the epoch before acting on it, records it forced without the witness
// (persisted.forcedWithoutWitness) and the peer outdated, and acknowledges writes once local on the
// operator's order in place of a quorum, until the witness has adopted the epoch (then leases again).
// What the operator declares and this site cannot check: the old primary does not reach the witness
// meanwhile. If it does, it goes on serving its old epoch until it meets the newer one; the newer
// one wins and its writes are saved aside (save-divergent-writes).
//
// Epochs stay unique, that is, two sites never both hold themselves primary of one epoch:
//   - The witness makes each epoch as the previous + 1 with the other site primary (arbiter.ts), and
//     a forced site makes its epoch as its own + 3 when the peer was primary, + 2 when it was itself.
//     Every step is odd with the primary changed or even with it kept, so the primary of an epoch
//     follows from any earlier epoch's by parity: every party that knows epoch N names one primary.
//   - The forced epoch is higher than any the witness can have made without this site knowing. From
//     this site's epoch E with the peer primary, the witness can make E+1 (this site, on a promotion
//     or handover request already sent) and E+2 (the peer, on its promotion request in E+1); E+3
//     would need a request of this site in E+2 or a handover to it, recorded up-to-date, in E+2, and
//     both need this site to have taken part in E+2, so to know it. With this site primary in E, only
//     E+1 (the peer) can be made without it. So when the witness hears of the forced epoch it adopts
//     it (epoch-report), and the old primary, told by the witness or the peer, steps down.
import { assert } from '../../common/assert.ts';
import type {
  GroupKey,
  RefusalReason,
  SiteName,
  WitnessAsk,
  WitnessReply,
  WitnessRequest,
} from '../../site-witness/arbiter-messages.ts';
import { heldAtMostMs, usableUntilMs, type DriftBound } from './lease.ts';

export interface RoleTiming extends DriftBound {
  /** A secondary's answer to a heartbeat promises this long without seeking promotion; also the peer-lost timeout. */
  readonly peerLeaseMs: number;
  readonly heartbeatMs: number;
  /** Primary: how often it renews its witness lease. */
  readonly leaseRenewMs: number;
  /** Secondary: how often it polls the witness for the group's record. */
  readonly witnessPollMs: number;
  /** Unanswered notices, promotion and handover requests are repeated this often. */
  readonly witnessRetryMs: number;
  readonly switchoverDrainMaxMs: number;
  readonly forceFailoverMaxMs: number;
  /** The longest lease the witness grants (failover.leaseMs): what a forced failover without it waits out. */
  readonly witnessLeaseMs: number;
  /** A forced failover goes on without the witness only after it has not answered for this long. */
  readonly forceWitnessWaitMs: number;
  /**
   * After a (re)start, no promotion request for this long unless the peer has been heard from in the
   * meantime: a peer that starts a little later is not failed over at once, while a peer that was
   * seen and then lost is. (Promises of the previous incarnation are kept apart: peerLeaseMs.)
   */
  readonly startGraceMs?: number;
}

export interface RoleConfig {
  readonly key: GroupKey;
  readonly site: SiteName;
  readonly peer: SiteName;
  readonly preferredSite: SiteName;
  readonly timing: RoleTiming;
}

/** What survives a restart (the agent's metadata). */
export interface PersistedRole {
  readonly epoch: number;
  readonly primary: SiteName;
  /** Sequence of requests to the witness; only grows. */
  readonly seq: number;
  /** Bumped at every restart: replies and answers from an earlier incarnation are ignored. */
  readonly incarnation: number;
  /** A promotion or handover request with the current seq may be in flight. */
  readonly changeRequested: boolean;
  /** Until the witness answers a request with at least this seq: no promise to the peer, no writes. */
  readonly confirmSeq: number | null;
  /**
   * This site made the current epoch on an operator's forced failover while the witness was out of
   * reach, and the witness has not adopted it yet: the operator's order stands in for a quorum.
   */
  readonly forcedWithoutWitness: boolean;
}

export type WriteGate =
  /** acknowledge nothing */
  | 'closed'
  /** acknowledge only writes the secondary has acknowledged */
  | 'mirrored'
  /** acknowledge writes once local: the witness holds the secondary outdated */
  | 'local';

/** The ALUA state of this site's port group for the group (a subset of SPC-4's). */
export type GroupAccessState = 'active-optimized' | 'active-non-optimized' | 'transitioning' | 'unavailable';

export type PeerMessage =
  | { readonly kind: 'ping'; readonly key: GroupKey; readonly from: SiteName; readonly epoch: number; readonly primary: SiteName; readonly sentAtMs: number; readonly incarnation: number }
  | {
    readonly kind: 'pong'; readonly key: GroupKey; readonly from: SiteName; readonly epoch: number; readonly primary: SiteName;
    readonly echoSentAtMs: number; readonly echoIncarnation: number;
    /** The sender, secondary of this epoch, will not seek promotion for peerLeaseMs from receipt of the ping. */
    readonly promise: boolean;
  };

export type OperatorCommand = 'switchover' | 'force-failover';

export type RoleInput =
  | { readonly type: 'tick'; readonly nowMs: number }
  | { readonly type: 'peer-message'; readonly nowMs: number; readonly message: PeerMessage }
  /** The transport lost the peer (connection closed): no need to wait for the timeout. */
  | { readonly type: 'peer-lost'; readonly nowMs: number }
  | { readonly type: 'witness-reply'; readonly nowMs: number; readonly reply: WitnessReply }
  /** From the mirror: does the secondary hold every write (in sync), else its lag bound if any. */
  | { readonly type: 'mirror'; readonly nowMs: number; readonly inSync: boolean; readonly lagMs: number | null }
  | { readonly type: 'operator'; readonly nowMs: number; readonly command: OperatorCommand };

export type RoleAction =
  | { readonly type: 'persist'; readonly persisted: PersistedRole }
  /** Stepped down after a failover: keep this site's writes the new primary lacks aside, then resync. */
  | { readonly type: 'save-divergent-writes'; readonly epoch: number }
  | { readonly type: 'write-gate'; readonly gate: WriteGate }
  | { readonly type: 'alua'; readonly state: GroupAccessState }
  | { readonly type: 'send-peer'; readonly message: PeerMessage }
  | { readonly type: 'send-witness'; readonly request: WitnessRequest };

export type RoleRefusal =
  | 'NOT_PRIMARY'
  | 'ALREADY_PRIMARY'
  | 'SWITCHOVER_IN_PROGRESS'
  /** A switchover needs the witness, which has not adopted this site's forced epoch yet. */
  | 'WITNESS_NOT_TOLD';

/** Why the last change asked of the witness did not happen, for status. */
export type ChangeBlocked = RefusalReason | 'SWITCHOVER_TIMEOUT' | 'FORCE_TIMEOUT';

interface Notice {
  readonly upToDate: boolean;
  readonly lagMs: number | null;
  readonly seq: number;
  readonly acked: boolean;
  /** When this site learned that the witness holds it (its clock); null while unacknowledged. */
  readonly ackedAtMs: number | null;
}

export interface RoleState {
  readonly config: RoleConfig;
  readonly persisted: PersistedRole;
  readonly nowMs: number;
  /** Last message from the peer at this epoch (at first, the start); null: lost. */
  readonly peerSeenMs: number | null;
  readonly peerLeaseUntilMs: number;
  readonly witnessLeaseUntilMs: number;
  readonly witnessSeenMs: number | null;
  /** The witness's record, as last heard, is at a lower epoch than this site's: tell it (epoch-report). */
  readonly witnessBehind: boolean;
  /** No promotion request before this: promises to the peer (and, after a restart, the previous incarnation's). */
  readonly promiseUntilMs: number;
  /** After a (re)start, no promotion request before this while the peer has not been heard from yet. */
  readonly startGraceUntilMs: number;
  /** From the mirror in this epoch; null until it has said. */
  readonly mirrorInSync: boolean | null;
  readonly mirrorLagMs: number | null;
  /** Primary: the latest secondary-status notice to the witness in this epoch, if any. */
  readonly notice: Notice | null;
  readonly switchover: { readonly sinceMs: number; readonly handingOver: boolean } | null;
  readonly force: { readonly sinceMs: number } | null;
  readonly lastPingMs: number;
  readonly lastLeaseAskMs: number;
  readonly lastNoticeAskMs: number;
  readonly lastChangeAskMs: number;
  readonly blocked: ChangeBlocked | null;
}

export interface RoleStep {
  readonly state: RoleState;
  readonly actions: readonly RoleAction[];
  readonly refusal?: RoleRefusal;
}

export function isPrimary(s: RoleState): boolean {
  return s.persisted.primary === s.config.site;
}

/** Start (or restart) with what was persisted; the returned persist action must complete first. */
export function restoreRole(config: RoleConfig, saved: PersistedRole | null, nowMs: number): RoleStep {
  const fresh: PersistedRole = { epoch: 1, primary: config.preferredSite, seq: 0, incarnation: 0, changeRequested: false, confirmSeq: null, forcedWithoutWitness: false };
  // Metadata written before forced failovers without the witness existed lacks the flag.
  const p: PersistedRole = saved ? { ...saved, forcedWithoutWitness: saved.forcedWithoutWitness ?? false } : fresh;
  assert(p.primary === config.site || p.primary === config.peer, `${config.key.group}: primary ${p.primary} is neither site`);
  // A promotion or handover asked before the crash may still reach the witness: fence it first.
  const fenced = p.changeRequested ? { seq: p.seq + 1, confirmSeq: p.seq + 1, changeRequested: false } : {};
  const persisted: PersistedRole = { ...p, ...fenced, incarnation: p.incarnation + 1 };
  const state: RoleState = {
    config, persisted, nowMs,
    peerSeenMs: nowMs, peerLeaseUntilMs: -Infinity, witnessLeaseUntilMs: -Infinity, witnessSeenMs: null,
    // Promises given by the previous incarnation may still run.
    promiseUntilMs: nowMs + config.timing.peerLeaseMs,
    startGraceUntilMs: nowMs + (config.timing.startGraceMs ?? 0),
    mirrorInSync: null, mirrorLagMs: null, switchover: null, force: null,
    // Forced without the witness: the peer is still recorded outdated on the operator's order.
    notice: persisted.forcedWithoutWitness ? { upToDate: false, lagMs: null, seq: persisted.seq, acked: true, ackedAtMs: nowMs } : null,
    witnessBehind: persisted.forcedWithoutWitness,
    lastPingMs: -Infinity, lastLeaseAskMs: -Infinity, lastNoticeAskMs: -Infinity, lastChangeAskMs: -Infinity,
    blocked: null,
  };
  return { state, actions: [{ type: 'persist', persisted }] };
}

/** May this site acknowledge a write for the group now, and how. Evaluate at the moment of acknowledging. */
export function writeGate(s: RoleState, nowMs: number): WriteGate {
  const p = s.persisted;
  if (p.primary !== s.config.site || s.switchover || p.confirmSeq !== null || p.changeRequested) return 'closed';
  // Forced without the witness: the operator's order is the quorum until the witness has the epoch.
  const quorum = s.peerLeaseUntilMs > nowMs || s.witnessLeaseUntilMs > nowMs || p.forcedWithoutWitness;
  if (!quorum) return 'closed';
  return s.notice && !s.notice.upToDate && s.notice.acked ? 'local' : 'mirrored';
}

export function accessState(s: RoleState, nowMs: number): GroupAccessState {
  const p = s.persisted;
  if (isPrimary(s)) {
    if (writeGate(s, nowMs) !== 'closed') return 'active-optimized';
    return s.switchover || s.force || p.changeRequested || p.confirmSeq !== null ? 'transitioning' : 'unavailable';
  }
  if (p.changeRequested || s.force) return 'transitioning';
  return peerAlive(s, nowMs) && s.mirrorInSync === true ? 'active-non-optimized' : 'unavailable';
}

function peerAlive(s: RoleState, nowMs: number): boolean {
  return s.peerSeenMs !== null && nowMs - s.peerSeenMs <= s.config.timing.peerLeaseMs;
}

interface Draft {
  s: RoleState;
  sends: RoleAction[];
  divergent: boolean;
  refusal?: RoleRefusal;
}

export function roleStep(state: RoleState, input: RoleInput): RoleStep {
  assert(input.nowMs >= state.nowMs, `${state.config.site}: clock went back ${state.nowMs} -> ${input.nowMs}`);
  const d: Draft = { s: { ...state, nowMs: input.nowMs }, sends: [], divergent: false };
  apply(d, input);
  if (d.refusal === undefined) drive(d);
  checkTransition(state, d.s);
  return { state: d.s, actions: derive(state, d), ...(d.refusal ? { refusal: d.refusal } : {}) };
}

function apply(d: Draft, input: RoleInput): void {
  switch (input.type) {
    case 'tick':
      return;
    case 'peer-lost':
      d.s = { ...d.s, peerSeenMs: null };
      return;
    case 'mirror':
      d.s = { ...d.s, mirrorInSync: input.inSync, mirrorLagMs: input.lagMs };
      return;
    case 'peer-message':
      return onPeer(d, input.message);
    case 'witness-reply':
      return onWitness(d, input.reply);
    case 'operator':
      return onOperator(d, input.command);
  }
}

function onOperator(d: Draft, command: OperatorCommand): void {
  const s = d.s;
  if (command === 'switchover') {
    if (!isPrimary(s)) d.refusal = 'NOT_PRIMARY';
    else if (s.switchover || s.persisted.changeRequested) d.refusal = 'SWITCHOVER_IN_PROGRESS';
    else if (s.persisted.forcedWithoutWitness) d.refusal = 'WITNESS_NOT_TOLD';
    else d.s = { ...s, switchover: { sinceMs: s.nowMs, handingOver: false }, force: null, blocked: null };
    return;
  }
  // A serving primary has nothing to force; a fenced one may be forced to serve again.
  if (isPrimary(s) && writeGate(s, s.nowMs) !== 'closed') d.refusal = 'ALREADY_PRIMARY';
  else if (s.switchover) d.refusal = 'SWITCHOVER_IN_PROGRESS';
  else d.s = { ...s, force: s.force ?? { sinceMs: s.nowMs }, blocked: null };
}

function onPeer(d: Draft, m: PeerMessage): void {
  const { config } = d.s;
  if (m.from !== config.peer || m.key.cluster !== config.key.cluster || m.key.group !== config.key.group) return;
  if (m.epoch > d.s.persisted.epoch) adopt(d, m.epoch, m.primary, null);
  const s = d.s;
  const p = s.persisted;
  if (m.epoch === p.epoch) {
    // The primary of an epoch is the same wherever it is known (the parity argument above).
    assert(m.primary === p.primary, `${config.key.group} epoch ${p.epoch}: primary ${m.primary} at ${m.from}, ${p.primary} here`);
    // The peer has come up: from now on its loss is a failure, not a late start.
    d.s = { ...s, peerSeenMs: s.nowMs, startGraceUntilMs: -Infinity };
  }
  if (m.kind === 'ping') {
    const promise = m.epoch === p.epoch && canPromise(d.s);
    if (promise) d.s = { ...d.s, promiseUntilMs: Math.max(d.s.promiseUntilMs, s.nowMs + config.timing.peerLeaseMs) };
    d.sends.push({
      type: 'send-peer',
      message: {
        kind: 'pong', key: config.key, from: config.site, epoch: p.epoch, primary: p.primary,
        echoSentAtMs: m.sentAtMs, echoIncarnation: m.incarnation, promise,
      },
    });
  } else if (m.promise && m.epoch === p.epoch && isPrimary(s) && m.echoIncarnation === p.incarnation) {
    const until = usableUntilMs(m.echoSentAtMs, config.timing.peerLeaseMs, config.timing);
    d.s = { ...d.s, peerLeaseUntilMs: Math.max(d.s.peerLeaseUntilMs, until) };
  }
}

/** A secondary promises only while nothing it asked the witness could make it primary. */
function canPromise(s: RoleState): boolean {
  const p = s.persisted;
  return !isPrimary(s) && !p.changeRequested && p.confirmSeq === null && s.force === null;
}

function onWitness(d: Draft, r: WitnessReply): void {
  const { config } = d.s;
  if (r.site !== config.site || r.key.cluster !== config.key.cluster || r.key.group !== config.key.group) return;
  d.s = { ...d.s, witnessSeenMs: d.s.nowMs };
  if (r.record && r.record.epoch > d.s.persisted.epoch) {
    adopt(d, r.record.epoch, r.record.primary, r.record);
    return;
  }
  if (r.record) d.s = { ...d.s, witnessBehind: r.record.epoch < d.s.persisted.epoch };
  const s = d.s;
  const p = s.persisted;
  const o = r.outcome;
  if (r.epoch !== p.epoch || r.incarnation !== p.incarnation) return;
  if (!o.granted && (o.reason === 'STALE_REQUEST' || o.reason === 'UNKNOWN_GROUP' || o.reason === 'UNKNOWN_SITE')) return;
  // The witness has recorded this seq: every older request of ours is fenced now.
  if (p.confirmSeq !== null && r.seq >= p.confirmSeq) d.s = { ...d.s, persisted: { ...p, confirmSeq: null } };
  if (isPrimary(s) && r.record && d.s.notice === null && r.seq === p.seq) {
    const rec = r.record;
    d.s = { ...d.s, notice: { upToDate: rec.secondaryUpToDate, lagMs: rec.lagMs, seq: r.seq, acked: true, ackedAtMs: d.s.nowMs } };
  }
  // The record disagrees with what the witness acknowledged to this primary, in the answer to a
  // request sent after that acknowledgement (so decided after it): the record was lost and made
  // anew (a replacement witness that adopted this epoch from a report). Tell the witness again.
  const n = d.s.notice;
  if (isPrimary(s) && !p.forcedWithoutWitness && r.record && r.record.epoch === p.epoch && n && n.ackedAtMs !== null
    && r.sentAtMs > n.ackedAtMs && r.record.secondaryUpToDate !== n.upToDate) {
    newNotice(d, n.upToDate, n.lagMs);
  }
  switch (r.ask) {
    case 'lease':
      if (o.granted && isPrimary(s) && o.leaseMs > 0) {
        const until = usableUntilMs(r.sentAtMs, o.leaseMs, config.timing);
        d.s = { ...d.s, witnessLeaseUntilMs: Math.max(d.s.witnessLeaseUntilMs, until) };
      }
      return;
    case 'epoch-report': {
      if (!o.granted) return;
      d.s = { ...d.s, witnessBehind: false };
      if (!isPrimary(s)) return;
      const until = o.leaseMs > 0 ? usableUntilMs(r.sentAtMs, o.leaseMs, config.timing) : -Infinity;
      d.s = { ...d.s, witnessLeaseUntilMs: Math.max(d.s.witnessLeaseUntilMs, until) };
      if (d.s.persisted.forcedWithoutWitness) {
        // The witness holds the epoch: leases from now on. The new seq fences the reports still in
        // flight, so the witness's hold ends with the next request and is not set again by a late one.
        const q = d.s.persisted;
        d.s = { ...d.s, persisted: { ...q, forcedWithoutWitness: false, seq: q.seq + 1 }, lastLeaseAskMs: -Infinity };
      }
      return;
    }
    case 'secondary-status': {
      const n = d.s.notice;
      if (o.granted && n && n.seq === r.seq && !n.acked) d.s = { ...d.s, notice: { ...n, acked: true, ackedAtMs: d.s.nowMs } };
      return;
    }
    case 'promotion':
      if (!o.granted) {
        // Ask again when the witness says the old lease ends, not a retry period later.
        const at = o.retryInMs === null ? d.s.lastChangeAskMs : d.s.nowMs + o.retryInMs - config.timing.witnessRetryMs;
        d.s = { ...d.s, blocked: o.reason, lastChangeAskMs: at };
      }
      return;
    case 'handover':
      if (!o.granted && d.s.switchover?.handingOver) {
        // Refused: an earlier copy of the request may still arrive; fence it before writing again.
        const q = d.s.persisted;
        d.s = { ...d.s, switchover: null, blocked: o.reason, persisted: { ...q, seq: q.seq + 1, confirmSeq: q.seq + 1, changeRequested: false } };
      }
      return;
  }
}

/** A newer epoch, from the peer or the witness (its record then says how it sees the secondary). */
function adopt(d: Draft, epoch: number, primary: SiteName, record: { secondaryUpToDate: boolean; lagMs: number | null } | null): void {
  const s = d.s;
  const p = s.persisted;
  assert(epoch > p.epoch, `adopt: epoch ${epoch} is not newer than ${p.epoch}`);
  const wasPrimary = isPrimary(s);
  const handedOver = wasPrimary && s.switchover?.handingOver === true && primary === s.config.peer;
  if (wasPrimary && primary !== s.config.site && !handedOver) d.divergent = true;
  const nowPrimary = primary === s.config.site;
  d.s = {
    ...s,
    persisted: { ...p, epoch, primary, changeRequested: false, confirmSeq: null, forcedWithoutWitness: false },
    peerLeaseUntilMs: -Infinity,
    witnessLeaseUntilMs: -Infinity,
    // The mirror must confirm in the new epoch; until then the witness's view (or up-to-date) holds.
    mirrorInSync: null,
    notice: nowPrimary && record ? { upToDate: record.secondaryUpToDate, lagMs: record.lagMs, seq: p.seq, acked: true, ackedAtMs: s.nowMs } : null,
    switchover: null,
    force: null,
    blocked: null,
    // The witness's record said so; a peer's newer epoch, the next reply tells.
    witnessBehind: record ? false : s.witnessBehind,
    lastLeaseAskMs: -Infinity,
  };
}

/** Timers and standing wishes: heartbeats, leases, notices, promotion, handover. */
function drive(d: Draft): void {
  const t = d.s.config.timing;
  if (isPrimary(d.s)) drivePrimary(d);
  else driveSecondary(d);
  if (d.s.nowMs - d.s.lastPingMs >= t.heartbeatMs) {
    const { config, persisted: p, nowMs } = d.s;
    d.sends.push({
      type: 'send-peer',
      message: { kind: 'ping', key: config.key, from: config.site, epoch: p.epoch, primary: p.primary, sentAtMs: nowMs, incarnation: p.incarnation },
    });
    d.s = { ...d.s, lastPingMs: nowMs };
  }
}

function drivePrimary(d: Draft): void {
  const t = d.s.config.timing;
  const now = d.s.nowMs;
  const f = d.s.force;
  if (f) {
    // A fenced primary the operator forces: done once it serves again (the witness answered after all).
    if (writeGate(d.s, now) !== 'closed') d.s = { ...d.s, force: null };
    else if (now - f.sinceMs > t.forceFailoverMaxMs) d.s = { ...d.s, force: null, blocked: 'FORCE_TIMEOUT' };
    else if (mayForceWithoutWitness(d.s, now)) forceWithoutWitness(d);
  }
  if (d.s.persisted.forcedWithoutWitness) {
    // Until the witness adopts the epoch: no notices (the peer is recorded outdated, and the witness
    // records it so when it adopts), no lease asks (it has none to give at an epoch it lacks).
    if (now - d.s.lastLeaseAskMs >= t.witnessRetryMs) {
      ask(d, { kind: 'epoch-report', primary: d.s.config.site });
      d.s = { ...d.s, lastLeaseAskMs: now };
    }
    return;
  }
  const secondaryFine = peerAlive(d.s, now) && d.s.mirrorInSync === true;
  const secondaryBehind = !peerAlive(d.s, now) || d.s.mirrorInSync === false;
  const n = d.s.notice;
  if (secondaryBehind && !(n && !n.upToDate)) {
    const lagMs = peerAlive(d.s, now) ? d.s.mirrorLagMs : null;
    newNotice(d, false, lagMs);
  } else if (secondaryFine && n && !n.upToDate) {
    newNotice(d, true, null);
  } else if (n && !n.acked && now - d.s.lastNoticeAskMs >= t.witnessRetryMs) {
    ask(d, { kind: 'secondary-status', upToDate: n.upToDate, lagMs: n.lagMs });
    d.s = { ...d.s, lastNoticeAskMs: now };
  }
  const so = d.s.switchover;
  if (so && !so.handingOver) {
    const witnessAgrees = d.s.notice === null || (d.s.notice.upToDate && d.s.notice.acked);
    if (now - so.sinceMs > t.switchoverDrainMaxMs) {
      d.s = { ...d.s, switchover: null, blocked: 'SWITCHOVER_TIMEOUT' };
    } else if (secondaryFine && witnessAgrees && d.s.persisted.confirmSeq === null) {
      d.s = { ...d.s, switchover: { ...so, handingOver: true }, persisted: { ...d.s.persisted, changeRequested: true }, lastChangeAskMs: -Infinity };
    }
  }
  if (d.s.switchover?.handingOver) {
    if (now - d.s.lastChangeAskMs >= t.witnessRetryMs) {
      ask(d, { kind: 'handover', to: d.s.config.peer });
      d.s = { ...d.s, lastChangeAskMs: now };
    }
    return;
  }
  const leaseDue = now - d.s.lastLeaseAskMs >= t.leaseRenewMs
    || (d.s.witnessLeaseUntilMs <= now && now - d.s.lastLeaseAskMs >= t.witnessRetryMs);
  if (leaseDue) {
    ask(d, d.s.witnessBehind ? { kind: 'epoch-report', primary: d.s.config.site } : { kind: 'lease' });
    d.s = { ...d.s, lastLeaseAskMs: now };
  }
}

/** Forced, and neither the witness nor the peer answers: may this site make the epoch itself now? */
function mayForceWithoutWitness(s: RoleState, nowMs: number): boolean {
  const t = s.config.timing;
  if (!s.force || peerAlive(s, nowMs) || nowMs < s.promiseUntilMs) return false;
  // The witness is declared gone from the order on: what it granted until then (or until it last
  // answered, if later) may still be in use by the old primary.
  const quietSinceMs = Math.max(s.force.sinceMs, s.witnessSeenMs ?? -Infinity);
  return nowMs - quietSinceMs >= forceWaitMs(s.config.timing);
}

/** How long a forced failover waits, once the witness is quiet, before this site makes the epoch itself. */
export function forceWaitMs(t: RoleTiming): number {
  return Math.max(t.forceWitnessWaitMs, heldAtMostMs(t.witnessLeaseMs, t));
}

/** The operator's order stands in for the witness: a new epoch made here (the argument at the top). */
function forceWithoutWitness(d: Draft): void {
  const s = d.s;
  const p = s.persisted;
  const epoch = p.epoch + (isPrimary(s) ? 2 : 3);
  const seq = p.seq + 1;
  d.s = {
    ...s,
    persisted: { ...p, epoch, primary: s.config.site, seq, changeRequested: false, confirmSeq: null, forcedWithoutWitness: true },
    peerLeaseUntilMs: -Infinity,
    witnessLeaseUntilMs: -Infinity,
    mirrorInSync: null,
    notice: { upToDate: false, lagMs: null, seq, acked: true, ackedAtMs: s.nowMs },
    switchover: null,
    force: null,
    blocked: null,
    witnessBehind: true,
    lastLeaseAskMs: -Infinity,
  };
}

function newNotice(d: Draft, upToDate: boolean, lagMs: number | null): void {
  const p = d.s.persisted;
  const seq = p.seq + 1;
  d.s = { ...d.s, persisted: { ...p, seq }, notice: { upToDate, lagMs, seq, acked: false, ackedAtMs: null }, lastNoticeAskMs: d.s.nowMs };
  ask(d, { kind: 'secondary-status', upToDate, lagMs });
}

function driveSecondary(d: Draft): void {
  const t = d.s.config.timing;
  const now = d.s.nowMs;
  if (d.s.force && now - d.s.force.sinceMs > t.forceFailoverMaxMs) d.s = { ...d.s, force: null, blocked: 'FORCE_TIMEOUT' };
  if (mayForceWithoutWitness(d.s, now)) {
    forceWithoutWitness(d);
    drivePrimary(d);
    return;
  }
  const wanted = d.s.force !== null || !peerAlive(d.s, now);
  const p = d.s.persisted;
  const waiting = now < d.s.promiseUntilMs || (d.s.force === null && now < d.s.startGraceUntilMs);
  if (wanted && !waiting && p.confirmSeq === null) {
    if (!p.changeRequested) d.s = { ...d.s, persisted: { ...p, changeRequested: true }, lastChangeAskMs: -Infinity };
    if (now - d.s.lastChangeAskMs >= t.witnessRetryMs) {
      // A witness behind this site's epoch refuses promotion there: it must learn the epoch first.
      ask(d, d.s.witnessBehind ? { kind: 'epoch-report', primary: p.primary } : { kind: 'promotion', forced: d.s.force !== null });
      d.s = { ...d.s, lastChangeAskMs: now };
    }
    return;
  }
  if (p.changeRequested && !wanted) {
    // The primary is back: withdraw, and fence the promotion requests still in flight.
    d.s = { ...d.s, persisted: { ...p, seq: p.seq + 1, confirmSeq: p.seq + 1, changeRequested: false }, lastLeaseAskMs: -Infinity };
  }
  const pollMs = d.s.persisted.confirmSeq !== null ? t.witnessRetryMs : t.witnessPollMs;
  if (now - d.s.lastLeaseAskMs >= pollMs) {
    ask(d, d.s.witnessBehind ? { kind: 'epoch-report', primary: d.s.persisted.primary } : { kind: 'lease' });
    d.s = { ...d.s, lastLeaseAskMs: now };
  }
}

function ask(d: Draft, a: WitnessAsk): void {
  const { config, persisted: p, nowMs } = d.s;
  d.sends.push({
    type: 'send-witness',
    request: { key: config.key, site: config.site, epoch: p.epoch, seq: p.seq, sentAtMs: nowMs, incarnation: p.incarnation, ask: a },
  });
}

function checkTransition(before: RoleState, after: RoleState): void {
  const a = before.persisted;
  const b = after.persisted;
  const g = after.config.key.group;
  assert(b.epoch >= a.epoch, `${g}: epoch went back from ${a.epoch} to ${b.epoch}`);
  assert(b.seq >= a.seq, `${g}: request sequence went back`);
  assert(b.incarnation === a.incarnation, `${g}: incarnation changed outside restore`);
  assert(b.primary === a.primary || b.epoch > a.epoch, `${g}: primary changed within epoch ${a.epoch}`);
  assert(!(b.changeRequested && b.confirmSeq !== null), `${g}: asking for a change while fencing old requests`);
  assert(!b.forcedWithoutWitness || b.primary === after.config.site, `${g}: forced without the witness, yet not primary`);
  if (b.forcedWithoutWitness && !a.forcedWithoutWitness) {
    const step = b.epoch - a.epoch;
    assert(step === (a.primary === after.config.site ? 2 : 3), `${g}: a forced epoch ${b.epoch} from ${a.epoch} breaks the parity of primaries`);
  }
}

function samePersisted(a: PersistedRole, b: PersistedRole): boolean {
  return a.epoch === b.epoch && a.primary === b.primary && a.seq === b.seq && a.incarnation === b.incarnation
    && a.changeRequested === b.changeRequested && a.confirmSeq === b.confirmSeq && a.forcedWithoutWitness === b.forcedWithoutWitness;
}

/** Actions from old vs new state: persist first, then what acts on it. */
function derive(before: RoleState, d: Draft): RoleAction[] {
  const after = d.s;
  const out: RoleAction[] = [];
  if (!samePersisted(before.persisted, after.persisted)) out.push({ type: 'persist', persisted: after.persisted });
  if (d.divergent) out.push({ type: 'save-divergent-writes', epoch: after.persisted.epoch });
  const gate = writeGate(after, after.nowMs);
  if (gate !== writeGate(before, before.nowMs)) out.push({ type: 'write-gate', gate });
  const alua = accessState(after, after.nowMs);
  if (alua !== accessState(before, before.nowMs)) out.push({ type: 'alua', state: alua });
  out.push(...d.sends);
  return out;
}
