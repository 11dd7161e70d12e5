// Acknowledgement policy: scenarios read as stories (time in ms), tables for the write decision,
// and a seeded flapping link that must not flap the mode.
import test from 'ava';
import { prng, seedFromEnv } from '../../common/prng.ts';
import {
  ackPolicyDefaults, initialAckPolicy, rttPercentileMs, stepAckPolicy, writeCompletion,
  type AckPolicyConfig, type AckPolicyInput, type AckPolicyOutput, type AckPolicyState, type WriteCompletion,
} from './ack-policy.ts';

const base: AckPolicyConfig = { ...ackPolicyDefaults, rttWindowMs: 1000, policy: 'adaptive', syncMaxRttMs: 5, maxLagMs: 2000, holdDownMs: 5000, holdDownMaxMs: 40_000 };

/** Drives one group's policy; every output is kept with the time it came out. */
class Story {
  state: AckPolicyState;
  log: Array<{ atMs: number; out: AckPolicyOutput }> = [];
  nowMs = 0;
  constructor(config: Partial<AckPolicyConfig> = {}, secondary: 'up-to-date' | 'outdated' = 'up-to-date') {
    this.state = initialAckPolicy({ ...base, ...config }, 0, secondary);
  }
  feed(input: AckPolicyInput): AckPolicyOutput[] {
    this.nowMs = input.nowMs;
    const { state, outputs } = stepAckPolicy(this.state, input);
    this.state = state;
    for (const out of outputs) this.log.push({ atMs: input.nowMs, out });
    return outputs;
  }
  at(ms: number) {
    const nowMs = ms;
    return {
      rtt: (rttMs: number) => this.feed({ kind: 'rtt', nowMs, rttMs }),
      tick: (heartbeatOutstandingMs?: number) => this.feed({ kind: 'tick', nowMs, heartbeatOutstandingMs }),
      lag: (lagBytes: number, lagMs: number, resyncBytes = 0) => this.feed({ kind: 'lag', nowMs, lagBytes, lagMs, resyncBytes }),
      peerUp: () => this.feed({ kind: 'peer-up', nowMs }),
      peerDown: () => this.feed({ kind: 'peer-down', nowMs }),
      outdatedRecorded: () => this.feed({ kind: 'outdated-recorded', nowMs }),
      resyncNeeded: (reason: string) => this.feed({ kind: 'resync-needed', nowMs, reason }),
    };
  }
  /** Heartbeats every everyMs (100 by default) from..to with the given RTT. */
  heartbeats(fromMs: number, toMs: number, rttMs: number, everyMs = 100) {
    for (let t = fromMs; t < toMs; t += everyMs) this.at(t).rtt(rttMs);
  }
  kinds(): string[] {
    return this.log.map(({ out }) => (out.kind === 'mode-changed' ? `mode ${out.to}` : out.kind));
  }
  completion() {
    return writeCompletion(this.state).kind;
  }
}

test('adaptive: starts in sync; writes wait for the peer until it is attached', (t) => {
  const s = new Story();
  s.at(0).tick();
  t.is(s.state.mode, 'sync');
  t.is(s.completion(), 'peer-ack');
  s.at(10).peerUp();
  s.heartbeats(100, 3000, 0.4);
  t.is(s.completion(), 'peer-ack');
  t.deepEqual(s.kinds(), []);
});

test('adaptive: a degraded link switches to async, the secondary is marked outdated before any local completion', (t) => {
  const s = new Story();
  s.at(0).peerUp();
  s.heartbeats(100, 1000, 0.5);
  s.at(1000).rtt(20.5); // one spike: p90 over ten samples is still healthy
  t.is(s.state.mode, 'sync');
  const out = s.at(1100).rtt(20.5);
  t.deepEqual(out.map((o) => o.kind), ['mode-changed', 'mark-outdated']);
  t.like(out[0], { from: 'sync', to: 'async', rttPercentileMs: 20.5 });
  t.is(s.state.secondary, 'outdating');
  // Until the outdated record is durable, a write completes only if the peer acks it first.
  t.is(s.completion(), 'peer-ack-or-outdated-recorded');
  s.at(1130).outdatedRecorded();
  t.is(s.completion(), 'local');
  t.is(s.state.secondary, 'outdated');
});

test('adaptive: back to sync only after the hold-down of healthy link and a drained lag; then up-to-date', (t) => {
  const s = new Story();
  s.at(0).peerUp();
  s.heartbeats(100, 400, 30); // degraded from the start
  t.is(s.state.mode, 'async');
  s.at(450).outdatedRecorded();
  s.at(460).lag(1024 * 1024, 300);
  s.heartbeats(500, 1600, 30);
  s.heartbeats(1600, 8000, 0.5); // healthy again from 1600 + window
  s.at(8000).lag(4 * 1024 * 1024, 900); // backlog left from the degraded period
  t.is(s.state.mode, 'async', 'lag not drained');
  s.at(8100).lag(8192, 2);
  t.is(s.state.mode, 'sync');
  const switchMs = s.nowMs;
  const back = s.log.find((l) => l.out.kind === 'mode-changed' && l.out.to === 'sync');
  t.truthy(back);
  t.true(switchMs - 2600 >= 5000, 'healthy for the whole hold-down (window of bad samples ends at 2600)');
  t.is(s.completion(), 'peer-ack');
  // A write admitted in async mode at 8099 is still unacknowledged: not yet up-to-date.
  s.at(8105).lag(4096, 6);
  t.is(s.state.secondary, 'outdated');
  // The oldest unacknowledged write was admitted after the switch: everything acknowledged before is on the peer.
  s.at(8110).lag(4096, 3);
  t.is(s.state.secondary, 'up-to-date');
  t.deepEqual(s.kinds(), ['mode async', 'mark-outdated', 'mode sync', 'mark-up-to-date']);
});

test('adaptive: an unanswered heartbeat counts as a slow round trip', (t) => {
  const s = new Story();
  s.at(0).peerUp();
  s.heartbeats(100, 1000, 0.5);
  s.at(1000).tick(3);
  t.is(s.state.mode, 'sync');
  s.at(1100).tick(12);
  t.is(s.state.mode, 'async');
  t.is(rttPercentileMs(s.state), 12);
});

test('sync policy: the peer going away marks it outdated, writes go on; resync must finish before up-to-date', (t) => {
  const s = new Story({ policy: 'sync' });
  s.at(0).peerUp();
  s.heartbeats(100, 500, 50); // sync never switches, whatever the RTT
  t.is(s.state.mode, 'sync');
  t.is(s.completion(), 'peer-ack');
  t.deepEqual(s.at(600).peerDown().map((o) => o.kind), ['mark-outdated']);
  t.is(s.completion(), 'peer-ack-or-outdated-recorded');
  s.at(620).outdatedRecorded();
  t.is(s.completion(), 'local');
  s.at(5000).peerUp();
  t.is(s.completion(), 'peer-ack');
  s.at(5100).lag(0, 0, 10 * 65536);
  t.is(s.state.secondary, 'outdated', 'dirty regions still to resync');
  s.at(9000).lag(0, 0, 0);
  t.is(s.state.secondary, 'up-to-date');
  t.deepEqual(s.kinds(), ['mark-outdated', 'mark-up-to-date']);
});

test('a secondary attaching with data to resync is recorded outdated, writes still wait for it; up-to-date only once the resync is done', (t) => {
  const s = new Story({ policy: 'sync' });
  s.at(0).peerUp();
  t.deepEqual(s.at(10).resyncNeeded('secondary has no data: full resync').map((o) => o.kind), ['mark-outdated']);
  t.is(s.state.secondary, 'outdating');
  t.is(s.completion(), 'peer-ack', 'sync writes keep waiting for the attached secondary');
  s.at(20).outdatedRecorded();
  t.is(s.state.secondary, 'outdated');
  s.at(100).lag(0, 0, 1);
  t.is(s.state.secondary, 'outdated', 'resync not finished');
  t.deepEqual(s.at(200).resyncNeeded('again'), [], 'already outdated: nothing more to record');
  s.at(300).lag(0, 0, 0);
  t.is(s.state.secondary, 'up-to-date');
  t.deepEqual(s.kinds(), ['mark-outdated', 'mark-up-to-date']);
});

test('async policy: outdated from the start, lag bound throttles and releases, never while the peer is down', (t) => {
  const s = new Story({ policy: 'async', maxLagMs: 2000, lagBytesMax: 1 << 20 });
  t.deepEqual(s.at(0).peerUp().map((o) => o.kind), ['mark-outdated']);
  s.at(5).outdatedRecorded();
  t.is(s.completion(), 'local');
  s.at(100).lag(512 * 1024, 1500);
  t.is(s.completion(), 'local');
  t.like(s.at(200).lag(512 * 1024, 2001)[0], { kind: 'throttle-started', lagMs: 2001 });
  t.is(s.completion(), 'throttled');
  t.like(s.at(300).lag(64 * 1024, 40)[0], { kind: 'throttle-ended' });
  s.at(400).lag((1 << 20) + 1, 10);
  t.is(s.completion(), 'throttled', 'bytes bound too');
  const out = s.at(500).peerDown();
  t.deepEqual(out.map((o) => o.kind), ['throttle-ended'], 'peer down: the dirty map takes over, writes go on');
  t.is(s.completion(), 'local');
  s.heartbeats(600, 60_000, 0.2);
  t.is(s.state.mode, 'async', 'async never switches');
});

test('write decision table', (t) => {
  const rows: Array<{ title: string; state: Partial<AckPolicyState>; expect: WriteCompletion['kind'] }> = [
    { title: 'sync, peer up', state: { mode: 'sync', peer: 'up', secondary: 'up-to-date' }, expect: 'peer-ack' },
    { title: 'sync, peer unknown', state: { mode: 'sync', peer: 'unknown', secondary: 'up-to-date' }, expect: 'peer-ack' },
    { title: 'sync, peer down, record pending', state: { mode: 'sync', peer: 'down', secondary: 'outdating' }, expect: 'peer-ack-or-outdated-recorded' },
    { title: 'sync, peer down, recorded', state: { mode: 'sync', peer: 'down', secondary: 'outdated' }, expect: 'local' },
    { title: 'async, up-to-date', state: { mode: 'async', peer: 'up', secondary: 'up-to-date' }, expect: 'peer-ack-or-outdated-recorded' },
    { title: 'async, outdated', state: { mode: 'async', peer: 'up', secondary: 'outdated' }, expect: 'local' },
    { title: 'async, throttled', state: { mode: 'async', peer: 'up', secondary: 'outdated', throttled: true }, expect: 'throttled' },
  ];
  const s0 = initialAckPolicy(base, 0);
  for (const row of rows) t.is(writeCompletion({ ...s0, ...row.state }).kind, row.expect, row.title);
});

/** A link flapping between healthy and degraded phases of 0.1 to 30 s, heartbeats every 100 ms. */
function flap(t: { true(c: boolean, m?: string): void }, seed: number, config: Partial<AckPolicyConfig>, durationMs: number): Story {
  const rand = prng(seed);
  const s = new Story(config);
  const holdDownMs = s.state.config.holdDownMs;
  s.at(0).peerUp();
  let bad = false;
  let phaseEndMs = 0;
  let lagBytes = 0;
  let lagMs = 0;
  let lastToAsyncMs = -Infinity;
  for (let now = 100; now < durationMs; now += 100) {
    if (now >= phaseEndMs) {
      bad = !bad;
      phaseEndMs = now + 100 + Math.floor(rand() * rand() * 30_000);
    }
    s.at(now).rtt(bad ? 8 + rand() * 30 : 0.2 + rand() * 1.5);
    // A crude mirror: async on a bad link builds a backlog that drains on a good one.
    if (s.state.mode === 'async' && bad) { lagBytes += 256 * 1024; lagMs = Math.min(lagMs + 100, 1900); }
    else { lagBytes = Math.max(0, lagBytes - 1024 * 1024); lagMs = lagBytes === 0 ? 0 : Math.max(1, lagMs - 200); }
    const before = s.state.mode;
    s.at(now).lag(lagBytes, lagMs);
    if (s.state.secondary === 'outdating') s.at(now).outdatedRecorded();
    if (before === 'sync' && s.state.mode === 'async') lastToAsyncMs = now;
    if (before === 'async' && s.state.mode === 'sync') {
      t.true(now - lastToAsyncMs >= holdDownMs, `back to sync ${now - lastToAsyncMs} ms after leaving it`);
      t.true(lagMs <= base.syncMaxRttMs || lagBytes === 0, 'back to sync only with the lag drained');
    }
  }
  return s;
}

test('a flapping link does not flap the mode (seeded)', (t) => {
  const seed = seedFromEnv();
  t.log(`seed ${seed} (METRO_TEST_SEED replays it)`);
  const durationMs = 20 * 60_000;
  const s = flap(t, seed, {}, durationMs);
  const switches = s.log.filter((l) => l.out.kind === 'mode-changed');
  const undamped = flap(t, seed, { holdDownMaxMs: base.holdDownMs }, durationMs).log.filter((l) => l.out.kind === 'mode-changed');
  t.log(`${switches.length} mode switches in ${durationMs / 60_000} minutes of flapping (${undamped.length} with a fixed hold-down)`);
  t.true(switches.length <= 2 * (durationMs / base.holdDownMaxMs) + 4, `${switches.length} switches`);
  t.true(switches.length * 3 < undamped.length, 'the damped hold-down is what keeps it calm');
  // Every return to sync that failed again grew the hold-down.
  const holdDowns = switches.filter((l) => l.out.kind === 'mode-changed' && l.out.to === 'async').map((l) => (l.out as { holdDownMs: number }).holdDownMs);
  t.true(holdDowns.some((h) => h > base.holdDownMs), `hold-downs ${holdDowns.join(',')}`);
  // The order invariant: mark-outdated right after the switch, before any local completion.
  for (let i = 0; i < s.log.length; i++) {
    const out = s.log[i].out;
    if (out.kind === 'mode-changed' && out.to === 'async') t.is(s.log[i + 1]?.out.kind, 'mark-outdated');
  }
});

test('the damped hold-down decays after a long stable sync period', (t) => {
  const s = new Story();
  s.at(0).peerUp();
  s.heartbeats(100, 300, 20);            // async, hold-down 5 s
  s.heartbeats(300, 6500, 0.5);          // back to sync at ~6.3 s
  s.heartbeats(6500, 6700, 20);          // fails soon: hold-down 10 s
  t.is(s.state.holdDownMs, 10_000);
  s.heartbeats(6700, 18_000, 0.5);       // back to sync after 10 s
  t.is(s.state.mode, 'sync');
  s.heartbeats(18_000, 60_000, 0.5);     // stable for holdDownMaxMs
  t.is(s.state.holdDownMs, 5000);
});

test('adaptive with the default window: two stalled heartbeats among 40 do not leave sync; a degraded link does within a second', (t) => {
  const s = new Story({ ...ackPolicyDefaults, policy: 'adaptive', syncMaxRttMs: 5, maxLagMs: 2000, holdDownMs: 5000, holdDownMaxMs: 40_000 });
  s.at(0).peerUp();
  s.heartbeats(50, 3000, 1.5, 50);
  s.at(3010).rtt(9); // one scheduling stall of an agent
  s.at(3030).rtt(7);
  s.heartbeats(3050, 5000, 1.5, 50);
  t.is(s.state.mode, 'sync', 'two slow samples in the 2 s window');
  s.heartbeats(5000, 6000, 21, 50); // 10 ms each way from now on
  t.is(s.state.mode, 'async');
  const switched = s.log.find((l) => l.out.kind === 'mode-changed' && l.out.to === 'async');
  t.true(switched !== undefined && switched.atMs - 5000 <= 1000, `switched ${switched ? switched.atMs - 5000 : '-'} ms after the link degraded`);
});

test('the RTT percentile follows the window: each new window is read afresh, whatever percentile its config asks', (t) => {
  // The percentile of a window is kept once computed (windows are never changed in place); a state
  // with another window or another percentile must not read a kept value.
  const story = new Story();
  story.at(0).peerUp();
  for (const [i, rtt] of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].entries()) story.at(10 * (i + 1)).rtt(rtt);
  t.is(rttPercentileMs(story.state), 9, 'p90 of 1..10');
  const median = { ...story.state, config: { ...story.state.config, rttPercentile: 0.5 } };
  t.is(median.samples, story.state.samples, 'the same window');
  t.is(rttPercentileMs(median), 5, 'p50 of the same window');
  t.is(rttPercentileMs(story.state), 9, 'p90 again');
  story.at(200).rtt(50);
  t.is(rttPercentileMs(story.state), 10, 'a new sample: p90 of 1..10 and 50');
  story.at(1095).tick();
  t.is(rttPercentileMs(story.state), 50, 'the first samples left the 1000 ms window: 10 and 50 remain');
  story.at(1095).tick(70);
  t.is(rttPercentileMs(story.state), 70, 'raised to an unanswered heartbeat');
});
