// Resync planning and online verify: union of both sites' dirty regions, checksum-based full
// resync that skips matching regions, the token bucket pacing (and re-rating) it, progress values,
// and verify's mismatch list with rechecks of regions written during the verify.
import test from 'ava';
import { prng } from '../../common/prng.ts';
import { RegionBitmap } from './region-bitmap.ts';
import {
  compareChecksums, ResyncPlan, resyncRegions, setBucketRate, takeTokens, tokenBucket, VerifyRun,
  type ResyncPlanConfig, type ResyncStep,
} from './resync-plan.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const cfg = (over: Partial<ResyncPlanConfig> = {}): ResyncPlanConfig => ({
  volumeSizeBytes: 64 * MiB, regionSizeBytes: 64 * KiB, batchRegionsMax: 8, inflightBytesMax: 1 * MiB,
  rateBytesPerSec: Infinity, burstBytes: 4 * MiB, ...over,
});
const bits = (n: number, regions: number[]) => {
  const b = new RegionBitmap(n);
  for (const r of regions) b.set(r);
  return b;
};

/** Runs a plan to completion with acks arriving ackDelayMs after each send; returns what was sent and when it ended. */
function drive(plan: ResyncPlan, opts: { ackDelayMs?: number; sums?: (r: number) => [number, number]; onStep?: (s: ResyncStep, nowMs: number) => void } = {}) {
  let nowMs = 0;
  const sent: number[] = [];
  const acks: Array<{ atMs: number; region: number }> = [];
  for (let guard = 0; guard < 1_000_000; guard++) {
    const step = plan.next(nowMs);
    opts.onStep?.(step, nowMs);
    if (step.kind === 'done') return { sent, endMs: nowMs };
    if (step.kind === 'send') {
      for (const r of step.regions) { sent.push(r.region); acks.push({ atMs: nowMs + (opts.ackDelayMs ?? 1), region: r.region }); }
    } else if (step.kind === 'compare') {
      const src: number[] = [];
      const dst: number[] = [];
      for (let r = step.firstRegion; r < step.firstRegion + step.regionCount; r++) { const [a, b] = opts.sums!(r); src.push(a); dst.push(b); }
      plan.compared(step.firstRegion, src, dst);
    } else {
      // wait or busy: time moves to the next event.
      const nextAck = acks.length > 0 ? acks[0].atMs : Infinity;
      nowMs = Math.max(nowMs, Math.min(step.kind === 'wait' ? step.untilMs : Infinity, nextAck));
      while (acks.length > 0 && acks[0].atMs <= nowMs) plan.acked(acks.shift()!.region, nowMs);
    }
  }
  throw new Error('plan did not finish');
}

test('token bucket: bursts, then paces; a large request passes when tokens remain and is paid back; re-rated', (t) => {
  let b = tokenBucket(1 * MiB, 64 * KiB, 0);
  let r = takeTokens(b, 0, 64 * KiB);
  t.true(r.ok);
  r = takeTokens(r.bucket, 0, 1);
  t.like(r, { ok: false, waitMs: 1 });
  r = takeTokens(r.bucket, 500, 256 * KiB); // 500 ms refilled up to the 64 KiB burst
  t.true(r.ok);
  t.is(r.bucket.tokens, -192 * KiB);
  r = takeTokens(r.bucket, 600, 1);
  t.false(r.ok);
  t.is(r.ok ? 0 : r.waitMs, Math.ceil(((192 * KiB - 0.1 * MiB + 1) * 1000) / MiB));
  b = setBucketRate(r.bucket, 600, 10 * MiB);
  t.true(takeTokens(b, 630, 1).ok, 'ten times faster now');
  t.throws(() => tokenBucket(0, 1, 0));
});

test('bitmap resync sends the union of both sites dirty regions, in bounded steps, and reports progress', (t) => {
  const volume = 64 * MiB + 4 * KiB; // the last region is 4 KiB
  const n = Math.ceil(volume / (64 * KiB));
  const local = bits(n, [0, 1, 2, 500, 1024]);
  const peer = bits(n, [2, 3, 700]); // the old primary's divergent writes after a forced failover
  const plan = new ResyncPlan(cfg({ volumeSizeBytes: volume, batchRegionsMax: 2, inflightBytesMax: 128 * KiB }), 'bitmap', resyncRegions(local, peer), 0);
  t.like(plan.progress(0), { bytesTotal: 6 * 64 * KiB + 4 * KiB, regionsTotal: 7, bytesDone: 0, done: false, etaMs: undefined });
  let maxStep = 0;
  const { sent } = drive(plan, { onStep: (s) => { if (s.kind === 'send') maxStep = Math.max(maxStep, s.regions.length); } });
  t.deepEqual(sent, [0, 1, 2, 3, 500, 700, 1024]);
  t.is(maxStep, 2);
  t.like(plan.progress(10), { bytesDone: 6 * 64 * KiB + 4 * KiB, bytesSent: 6 * 64 * KiB + 4 * KiB, regionsDone: 7, done: true, etaMs: 0 });
  t.deepEqual(plan.range(1024), { region: 1024, offsetBytes: 64 * MiB, lengthBytes: 4 * KiB });
});

test('full resync compares checksums first: regions that match are not sent', (t) => {
  const n = 1024;
  const rand = prng(42);
  const differs = new Set<number>();
  for (let i = 0; i < 50; i++) differs.add(Math.floor(rand() * n));
  const plan = new ResyncPlan(cfg({ batchRegionsMax: 64 }), 'full', new RegionBitmap(n), 0);
  const { sent } = drive(plan, { sums: (r) => [r * 7 + 1, differs.has(r) ? r * 7 + 2 : r * 7 + 1] });
  t.deepEqual(sent, [...differs].sort((a, b) => a - b));
  const p = plan.progress(100);
  t.like(p, { kind: 'full', regionsTotal: n, regionsDone: n, bytesTotal: 64 * MiB, bytesDone: 64 * MiB, done: true });
  t.is(p.bytesSent, differs.size * 64 * KiB);
  t.is(p.bytesMatched, (n - differs.size) * 64 * KiB);
});

test('bandwidth is bounded by the admin rate, and a new rate takes effect at once', (t) => {
  const n = 1024;
  const all = bits(n, Array.from({ length: 512 }, (_, i) => i * 2)); // 32 MiB dirty
  const slow = new ResyncPlan(cfg({ rateBytesPerSec: 8 * MiB, burstBytes: 256 * KiB }), 'bitmap', all, 0);
  const { endMs } = drive(slow);
  t.true(endMs >= 3900 && endMs <= 4100, `32 MiB at 8 MiB/s took ${endMs} ms`);
  const p = slow.progress(endMs);
  t.true(Math.abs(p.rateBytesPerSec - 8 * MiB) < 0.5 * MiB, `measured rate ${p.rateBytesPerSec}`);
  const rerated = new ResyncPlan(cfg({ rateBytesPerSec: 8 * MiB, burstBytes: 256 * KiB }), 'bitmap', all, 0);
  let changed = false;
  const r = drive(rerated, { onStep: (_s, nowMs) => { if (!changed && nowMs >= 1000) { rerated.setRate(nowMs, 32 * MiB); changed = true; } } });
  t.true(r.endMs >= 1700 && r.endMs <= 1850, `8 MiB in the first second, 24 MiB at 32 MiB/s: ${r.endMs} ms`);
});

test('progress estimates the remaining time from the measured rate', (t) => {
  const plan = new ResyncPlan(cfg({ rateBytesPerSec: 4 * MiB, burstBytes: 64 * KiB, batchRegionsMax: 1 }), 'bitmap', bits(1024, Array.from({ length: 128 }, (_, i) => i)), 0);
  let checked = false;
  drive(plan, { onStep: (_s, nowMs) => {
    if (!checked && nowMs >= 1000) {
      const p = plan.progress(nowMs);
      t.true(p.bytesDone > 3 * MiB && p.bytesDone < 5 * MiB, `done ${p.bytesDone}`);
      t.true(p.etaMs !== undefined && Math.abs(p.etaMs - 1000) < 150, `eta ${p.etaMs} ms for the other half`);
      checked = true;
    }
  } });
  t.true(checked);
});

test('a broken stream requeues what was in flight; nothing is lost or sent twice afterwards', (t) => {
  const plan = new ResyncPlan(cfg({ batchRegionsMax: 4 }), 'bitmap', bits(1024, [1, 2, 3, 4, 5, 6]), 0);
  const first = plan.next(0);
  t.like(first, { kind: 'send' });
  plan.acked(1, 1);
  plan.requeueInflight();
  const { sent } = drive(plan);
  t.deepEqual(sent, [2, 3, 4, 5, 6]);
});

test('verify lists mismatching regions; regions written during the verify are rechecked, not reported', (t) => {
  t.deepEqual(compareChecksums(10, [1, 2, 3, 4], [1, 9, 3, 8]), [11, 13]);
  const run = new VerifyRun({ volumeSizeBytes: 1 * MiB, regionSizeBytes: 64 * KiB, batchRegionsMax: 8, mismatchesMax: 10, rechecksMax: 2, rateBytesPerSec: Infinity, burstBytes: MiB }, 0);
  const broken = new Set([3, 12]); // truly different copies
  let busyRegion5 = 2; // region 5 is mid-write for the first two looks, then settles equal
  for (let i = 0; i < 100; i++) {
    const step = run.next(i);
    if (step.kind === 'done') break;
    if (step.kind !== 'compare') continue;
    const local: number[] = [];
    const peer: number[] = [];
    for (let r = step.firstRegion; r < step.firstRegion + step.regionCount; r++) {
      local.push(r);
      peer.push(broken.has(r) || (r === 5 && busyRegion5 > 0) ? r + 1000 : r);
    }
    const snapshotBusy = busyRegion5 > 0;
    if (step.firstRegion === 5 || (step.firstRegion <= 5 && step.firstRegion + step.regionCount > 5)) busyRegion5--;
    run.compared(step.firstRegion, local, peer, (r) => r === 5 && snapshotBusy);
  }
  t.like(run.report(), { regionsTotal: 16, regionsChecked: 16, mismatches: [3, 12], mismatchCount: 2, unsettled: [], done: true });
});

test('verify bounds its report and gives up on a region that never settles', (t) => {
  const run = new VerifyRun({ volumeSizeBytes: 1 * MiB, regionSizeBytes: 64 * KiB, batchRegionsMax: 16, mismatchesMax: 3, rechecksMax: 1, rateBytesPerSec: Infinity, burstBytes: MiB }, 0);
  for (let i = 0; i < 10; i++) {
    const step = run.next(i);
    if (step.kind !== 'compare') break;
    const local = Array.from({ length: step.regionCount }, () => 1);
    const peer = Array.from({ length: step.regionCount }, () => 2);
    run.compared(step.firstRegion, local, peer, (r) => r === 0);
  }
  t.like(run.report(), { mismatchCount: 15, mismatches: [1, 2, 3], mismatchesTruncated: true, unsettled: [0], done: true });
});
