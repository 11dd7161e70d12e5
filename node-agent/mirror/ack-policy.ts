// Acknowledgement policy of one group (DESIGN.md "Acknowledgement policy"): sync, async or adaptive.
// Pure: step(state, input) -> { state, outputs }, time passed in. It decides whether a write completes
// on local durability alone or waits for the secondary's ack, when writes are throttled by the lag
// bound, and when the secondary must be recorded outdated: always before a write it may miss completes.
import { assert } from '../../common/assert.ts';

export type AckPolicy = 'sync' | 'async' | 'adaptive';
export type AckMode = 'sync' | 'async';

export interface AckPolicyConfig {
  policy: AckPolicy;
  /** adaptive: sync while the RTT percentile over the window stays at or under this. */
  syncMaxRttMs: number;
  /** async: past this age of the oldest unacknowledged write, writes are throttled. */
  maxLagMs: number;
  /** async: past this many unacknowledged bytes, writes are throttled. */
  lagBytesMax: number;
  /** Short window of RTT samples the percentile is taken over. */
  rttWindowMs: number;
  /** The "high percentile", 0 < p <= 1. */
  rttPercentile: number;
  /** Samples kept at most (oldest dropped first), whatever the window. */
  rttSamplesMax: number;
  /** adaptive: the link must stay healthy this long (and the lag be drained) before sync again. */
  holdDownMs: number;
  /** Damping: a return to sync that fails again within holdDownMaxMs doubles the hold-down, up to this. */
  holdDownMaxMs: number;
}

export const ackPolicyDefaults = {
  rttWindowMs: 2000,
  rttPercentile: 0.9,
  rttSamplesMax: 256,
  holdDownMs: 5000,
  holdDownMaxMs: 80_000,
  lagBytesMax: 256 * 1024 * 1024,
} as const;

/** Whether the secondary holds every write the primary acknowledged, as recorded (witness, metadata). */
export type SecondaryRecord = 'up-to-date' | 'outdating' | 'outdated';

export interface AckPolicyState {
  readonly config: AckPolicyConfig;
  readonly mode: AckMode;
  /** unknown until the runtime attaches the stream or gives up waiting (then 'down'). */
  readonly peer: 'unknown' | 'up' | 'down';
  readonly secondary: SecondaryRecord;
  /** RTT samples inside the window, oldest first. */
  readonly samples: ReadonlyArray<{ atMs: number; rttMs: number }>;
  /** Age of the oldest heartbeat not yet echoed, at the last tick: a stalled link is a slow link. */
  readonly heartbeatOutstandingMs: number;
  /** Since when the link has been healthy without a break; undefined while it is not. */
  readonly healthySinceMs: number | undefined;
  readonly lagBytes: number;
  readonly lagMs: number;
  readonly resyncBytes: number;
  /** When the mode last became sync (damping). */
  readonly syncSinceMs: number | undefined;
  /**
   * Since when writes complete on the secondary's ack; undefined while they complete locally. The
   * secondary is up-to-date again once everything admitted before that moment is acknowledged.
   */
  readonly peerAckSinceMs: number | undefined;
  readonly throttled: boolean;
  /** The hold-down in force now (damped: grows when returns to sync keep failing). */
  readonly holdDownMs: number;
  readonly switches: number;
}

export type AckPolicyInput =
  | { kind: 'rtt'; nowMs: number; rttMs: number }
  | { kind: 'tick'; nowMs: number; heartbeatOutstandingMs?: number }
  /**
   * Lag as the mirror window measures it: unacknowledged bytes and the age of the oldest
   * unacknowledged entry, counted from when the write was admitted (asked writeCompletion and pushed
   * in the same turn); resyncBytes: dirty data still to resync.
   */
  | { kind: 'lag'; nowMs: number; lagBytes: number; lagMs: number; resyncBytes?: number }
  | { kind: 'peer-up'; nowMs: number }
  | { kind: 'peer-down'; nowMs: number }
  /** The runtime has durably recorded the secondary outdated (metadata, and the witness where there is one). */
  | { kind: 'outdated-recorded'; nowMs: number }
  /**
   * The attached secondary lacks data the stream cannot deliver (new or foreign copy, regions missed
   * while detached): it is outdated until the resync completes (resyncBytes reaches 0).
   */
  | { kind: 'resync-needed'; nowMs: number; reason: string };

export type AckPolicyOutput =
  /** Record the secondary outdated durably, then feed 'outdated-recorded'. Comes before any local-only completion. */
  | { kind: 'mark-outdated'; reason: string }
  /** The secondary again holds every acknowledged write: record it up-to-date (after earlier records). */
  | { kind: 'mark-up-to-date' }
  | { kind: 'mode-changed'; from: AckMode; to: AckMode; reason: string; atMs: number; rttPercentileMs: number; holdDownMs: number }
  | { kind: 'throttle-started'; lagBytes: number; lagMs: number }
  | { kind: 'throttle-ended'; lagBytes: number; lagMs: number };

/** How a write admitted now completes towards the host. */
export type WriteCompletion =
  /** After the local write and the secondary's ack (sync). */
  | { kind: 'peer-ack' }
  /** After the local write alone (async, or peer down, with the secondary recorded outdated). */
  | { kind: 'local' }
  /** After the local write and whichever comes first: the secondary's ack or 'outdated-recorded'. */
  | { kind: 'peer-ack-or-outdated-recorded' }
  /** Not admitted: hold the write until 'throttle-ended' (lag bound reached; never dropped). */
  | { kind: 'throttled' };

export interface AckStep {
  state: AckPolicyState;
  outputs: AckPolicyOutput[];
}

/** secondary: as last recorded in the metadata ('outdating' is recorded as outdated: the record may have landed). */
export function initialAckPolicy(config: AckPolicyConfig, nowMs: number, secondary: 'up-to-date' | 'outdated' = 'up-to-date'): AckPolicyState {
  assert(config.syncMaxRttMs > 0 && config.maxLagMs >= 0 && config.lagBytesMax > 0, 'ack policy limits must be positive');
  assert(config.rttPercentile > 0 && config.rttPercentile <= 1, `rttPercentile ${config.rttPercentile} must be in (0, 1]`);
  assert(config.holdDownMs >= 0 && config.holdDownMaxMs >= config.holdDownMs, 'holdDownMaxMs must be >= holdDownMs');
  assert(config.rttSamplesMax >= 1 && config.rttWindowMs > 0, 'RTT window must hold samples');
  const mode: AckMode = config.policy === 'async' ? 'async' : 'sync';
  return {
    config,
    mode,
    // Until the stream is attached nothing is known: writes wait for the peer until the runtime
    // sends 'peer-up', or 'peer-down' once it gives up waiting.
    peer: 'unknown',
    secondary,
    samples: [],
    heartbeatOutstandingMs: 0,
    healthySinceMs: nowMs,
    lagBytes: 0,
    lagMs: 0,
    resyncBytes: 0,
    syncSinceMs: mode === 'sync' ? nowMs : undefined,
    peerAckSinceMs: mode === 'sync' ? nowMs : undefined,
    throttled: false,
    holdDownMs: config.holdDownMs,
    switches: 0,
  };
}

/** Pure read, cheap enough for every write. */
export function writeCompletion(s: AckPolicyState): WriteCompletion {
  if (s.throttled) return { kind: 'throttled' };
  if (!completesLocally(s)) return { kind: 'peer-ack' };
  return s.secondary === 'outdated' ? { kind: 'local' } : { kind: 'peer-ack-or-outdated-recorded' };
}

function completesLocally(s: AckPolicyState): boolean {
  return s.mode === 'async' || s.peer === 'down';
}

/** The measured RTT percentile over the window, raised to an unanswered heartbeat's age. */
export function rttPercentileMs(s: AckPolicyState): number {
  return Math.max(samplesPercentileMs(s.samples, s.config.rttPercentile), s.heartbeatOutstandingMs);
}

/**
 * Percentile of a window's samples, computed once per window: sample arrays are never changed in
 * place (a step makes a new one), and a group's policy reads the same one several times per step,
 * about 60 steps a second, mostly ticks that leave the window as it was.
 */
const percentiles = new WeakMap<ReadonlyArray<{ rttMs: number }>, { percentile: number; ms: number }>();

function samplesPercentileMs(samples: ReadonlyArray<{ rttMs: number }>, percentile: number): number {
  if (samples.length === 0) return 0;
  const known = percentiles.get(samples);
  if (known !== undefined && known.percentile === percentile) return known.ms;
  const values = new Float64Array(samples.length);
  for (let i = 0; i < samples.length; i++) values[i] = samples[i].rttMs;
  values.sort();
  const ms = values[Math.max(0, Math.ceil(percentile * values.length) - 1)];
  percentiles.set(samples, { percentile, ms });
  return ms;
}

export function stepAckPolicy(state: AckPolicyState, input: AckPolicyInput): AckStep {
  const outputs: AckPolicyOutput[] = [];
  let s = absorb(state, input);
  s = trackHealth(s, input.nowMs);
  s = decideMode(s, input.nowMs, outputs);
  if (completesLocally(s) !== (s.peerAckSinceMs === undefined)) {
    s = { ...s, peerAckSinceMs: completesLocally(s) ? undefined : input.nowMs };
  }
  s = decideRecord(s, input, outputs);
  s = decideThrottle(s, outputs);
  return { state: s, outputs };
}

function absorb(s: AckPolicyState, input: AckPolicyInput): AckPolicyState {
  const windowStartMs = input.nowMs - s.config.rttWindowMs;
  switch (input.kind) {
    case 'rtt': {
      assert(input.rttMs >= 0, `RTT ${input.rttMs} must not be negative`);
      const samples = [...s.samples, { atMs: input.nowMs, rttMs: input.rttMs }];
      return { ...s, samples: prune(samples, windowStartMs, s.config.rttSamplesMax), heartbeatOutstandingMs: 0 };
    }
    case 'tick':
      return { ...s, samples: prune(s.samples, windowStartMs, s.config.rttSamplesMax), heartbeatOutstandingMs: input.heartbeatOutstandingMs ?? 0 };
    case 'lag':
      assert(input.lagBytes >= 0 && input.lagMs >= 0, 'lag must not be negative');
      return { ...s, lagBytes: input.lagBytes, lagMs: input.lagMs, resyncBytes: input.resyncBytes ?? 0 };
    case 'peer-up':
      // A fresh link: old samples described another connection.
      return { ...s, peer: 'up', samples: [], heartbeatOutstandingMs: 0 };
    case 'peer-down':
      return { ...s, peer: 'down', samples: [], heartbeatOutstandingMs: 0 };
    case 'outdated-recorded':
    case 'resync-needed':
      return s;
  }
}

function prune(samples: ReadonlyArray<{ atMs: number; rttMs: number }>, windowStartMs: number, max: number) {
  let from = 0;
  while (from < samples.length && (samples[from].atMs < windowStartMs || samples.length - from > max)) from++;
  return from === 0 ? samples : samples.slice(from);
}

function trackHealth(s: AckPolicyState, nowMs: number): AckPolicyState {
  const healthy = s.peer === 'up' && rttPercentileMs(s) <= s.config.syncMaxRttMs;
  if (!healthy) return s.healthySinceMs === undefined ? s : { ...s, healthySinceMs: undefined };
  return s.healthySinceMs === undefined ? { ...s, healthySinceMs: nowMs } : s;
}

function decideMode(s: AckPolicyState, nowMs: number, outputs: AckPolicyOutput[]): AckPolicyState {
  if (s.config.policy !== 'adaptive') return s;
  const rttMs = rttPercentileMs(s);
  if (s.mode === 'sync') {
    if (s.peer === 'up' && s.healthySinceMs === undefined) {
      // A return to sync that did not last: the next hold-down is longer (no flapping).
      const failedSoon = s.syncSinceMs !== undefined && s.switches > 0 && nowMs - s.syncSinceMs < s.config.holdDownMaxMs;
      const holdDownMs = failedSoon ? Math.min(Math.max(1, s.holdDownMs * 2), s.config.holdDownMaxMs) : s.holdDownMs;
      outputs.push({ kind: 'mode-changed', from: 'sync', to: 'async', atMs: nowMs, rttPercentileMs: rttMs, holdDownMs,
        reason: `mirror RTT p${Math.round(s.config.rttPercentile * 100)} ${rttMs} ms exceeds syncMaxRttMs ${s.config.syncMaxRttMs} ms` });
      return { ...s, mode: 'async', syncSinceMs: undefined, holdDownMs, switches: s.switches + 1 };
    }
    // Long stable in sync: the damping decays back to the configured hold-down.
    if (s.syncSinceMs !== undefined && nowMs - s.syncSinceMs >= s.config.holdDownMaxMs && s.holdDownMs !== s.config.holdDownMs) {
      return { ...s, holdDownMs: s.config.holdDownMs };
    }
    return s;
  }
  const healthyLongEnough = s.healthySinceMs !== undefined && nowMs - s.healthySinceMs >= s.holdDownMs;
  if (s.peer === 'up' && healthyLongEnough && lagDrained(s)) {
    outputs.push({ kind: 'mode-changed', from: 'async', to: 'sync', atMs: nowMs, rttPercentileMs: rttMs, holdDownMs: s.holdDownMs,
      reason: `mirror healthy for ${nowMs - (s.healthySinceMs ?? nowMs)} ms and lag drained` });
    return { ...s, mode: 'sync', syncSinceMs: nowMs, switches: s.switches + 1 };
  }
  return s;
}

/**
 * Drained: nothing left to resync and the oldest unacknowledged write is no older than one sync
 * round trip, so switching makes no host write wait for a backlog.
 */
function lagDrained(s: AckPolicyState): boolean {
  return s.resyncBytes === 0 && (s.lagBytes === 0 || s.lagMs <= s.config.syncMaxRttMs);
}

function decideRecord(s: AckPolicyState, input: AckPolicyInput, outputs: AckPolicyOutput[]): AckPolicyState {
  if (input.kind === 'outdated-recorded' && s.secondary === 'outdating') s = { ...s, secondary: 'outdated' };
  if (input.kind === 'resync-needed' && s.secondary === 'up-to-date') {
    outputs.push({ kind: 'mark-outdated', reason: input.reason });
    return { ...s, secondary: 'outdating' };
  }
  if (completesLocally(s)) {
    if (s.secondary !== 'up-to-date') return s;
    outputs.push({ kind: 'mark-outdated', reason: s.peer === 'down' ? 'secondary unreachable' : 'mirror in async mode' });
    return { ...s, secondary: 'outdating' };
  }
  // Writes wait for the peer again: up-to-date once every write admitted before that moment is
  // acknowledged (the oldest unacknowledged one is younger) and no resync is left.
  const since = s.peerAckSinceMs;
  if (s.secondary === 'outdated' && s.peer === 'up' && input.kind === 'lag' && since !== undefined && s.resyncBytes === 0) {
    const backlogAcked = s.lagBytes === 0 || input.nowMs - s.lagMs > since;
    if (backlogAcked) {
      outputs.push({ kind: 'mark-up-to-date' });
      return { ...s, secondary: 'up-to-date' };
    }
  }
  return s;
}

function decideThrottle(s: AckPolicyState, outputs: AckPolicyOutput[]): AckPolicyState {
  // Only an attached async mirror throttles: sync writes wait for their own ack, and while the peer
  // is down the dirty map takes over (resync later), so writes must go on.
  const bounded = s.mode === 'async' && s.peer === 'up';
  const over = bounded && (s.lagMs > s.config.maxLagMs || s.lagBytes > s.config.lagBytesMax);
  if (over && !s.throttled) {
    outputs.push({ kind: 'throttle-started', lagBytes: s.lagBytes, lagMs: s.lagMs });
    return { ...s, throttled: true };
  }
  if (!over && s.throttled) {
    outputs.push({ kind: 'throttle-ended', lagBytes: s.lagBytes, lagMs: s.lagMs });
    return { ...s, throttled: false };
  }
  return s;
}

/** What `metroctl status` shows for the group's mirror policy. */
export function ackPolicyStatus(s: AckPolicyState) {
  return {
    policy: s.config.policy,
    mode: s.mode,
    peer: s.peer,
    secondary: s.secondary,
    rttPercentileMs: rttPercentileMs(s),
    lagBytes: s.lagBytes,
    lagMs: s.lagMs,
    throttled: s.throttled,
    holdDownMs: s.holdDownMs,
    switches: s.switches,
  };
}
