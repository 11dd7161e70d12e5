// Resync and online verify planning for one volume (DESIGN.md "Resync and verify"). Resync: the
// union of both sites' dirty regions (bitmap), or every region compared by checksum first (full:
// regions that already match are not sent), paced by a token bucket the admin can re-rate, with
// progress as values. Verify: compare per-region checksums of both copies, list mismatches.
// Pure: time passed in; the runtime reads, checksums and sends, holding host writes to a region
// while it reads that region for resync.
import { assert } from '../../common/assert.ts';
import { RegionBitmap } from './region-bitmap.ts';

// ---------------------------------------------------------------- token bucket

export interface TokenBucket {
  /** Admin-settable; Infinity for unlimited. */
  readonly rateBytesPerSec: number;
  readonly burstBytes: number;
  /** May go negative: a large request is let through when the bucket is full, then paid back. */
  readonly tokens: number;
  readonly atMs: number;
}

export function tokenBucket(rateBytesPerSec: number, burstBytes: number, nowMs: number): TokenBucket {
  assert(rateBytesPerSec > 0 && burstBytes > 0, 'bucket rate and burst must be positive');
  return { rateBytesPerSec, burstBytes, tokens: burstBytes, atMs: nowMs };
}

function refill(b: TokenBucket, nowMs: number): TokenBucket {
  const elapsedMs = Math.max(0, nowMs - b.atMs);
  const tokens = b.rateBytesPerSec === Infinity ? b.burstBytes : Math.min(b.burstBytes, b.tokens + (elapsedMs * b.rateBytesPerSec) / 1000);
  return { ...b, tokens, atMs: Math.max(nowMs, b.atMs) };
}

/** Takes bytes if the bucket holds any tokens (so any size passes eventually), else says how long to wait. */
export function takeTokens(b: TokenBucket, nowMs: number, bytes: number): { ok: true; bucket: TokenBucket } | { ok: false; waitMs: number; bucket: TokenBucket } {
  const r = refill(b, nowMs);
  if (r.tokens > 0) return { ok: true, bucket: { ...r, tokens: r.tokens - bytes } };
  return { ok: false, waitMs: Math.ceil(((1 - r.tokens) * 1000) / r.rateBytesPerSec), bucket: r };
}

export function setBucketRate(b: TokenBucket, nowMs: number, rateBytesPerSec: number): TokenBucket {
  assert(rateBytesPerSec > 0, `rate ${rateBytesPerSec} must be positive`);
  return { ...refill(b, nowMs), rateBytesPerSec };
}

// ---------------------------------------------------------------- resync

export interface ResyncPlanConfig {
  volumeSizeBytes: number;
  regionSizeBytes: number;
  /** Regions per checksum request or send step. */
  batchRegionsMax: number;
  /** Resync data sent and not yet acknowledged durable. */
  inflightBytesMax: number;
  rateBytesPerSec: number;
  burstBytes: number;
}

export type ResyncKind =
  /** Only the dirty regions (union of both sites'). */
  | 'bitmap'
  /** Every region; checksums decide which travel (new or replaced site, foreign data). */
  | 'full';

export interface RegionRange {
  region: number;
  offsetBytes: number;
  lengthBytes: number;
}

export type ResyncStep =
  /** Ask both sites for the checksums of these regions (full resync), then call compared(). */
  | { kind: 'compare'; firstRegion: number; regionCount: number }
  /** Read and send these regions as resync entries, then call acked() per region. */
  | { kind: 'send'; regions: RegionRange[] }
  /** The bandwidth bound: ask again at untilMs. */
  | { kind: 'wait'; untilMs: number }
  /** Answers (checksums or acks) outstanding: ask again when one arrives. */
  | { kind: 'busy' }
  | { kind: 'done' };

export interface ResyncProgress {
  kind: ResyncKind;
  bytesTotal: number;
  /** Sent and acknowledged, plus regions found matching. */
  bytesDone: number;
  bytesSent: number;
  bytesMatched: number;
  regionsTotal: number;
  regionsDone: number;
  rateBytesPerSec: number;
  /** Estimated time to completion; undefined until a rate is known. */
  etaMs: number | undefined;
  done: boolean;
}

/** The regions a bitmap resync sends: either site's dirty regions (after a forced failover, both). */
export function resyncRegions(local: RegionBitmap, peer?: RegionBitmap): RegionBitmap {
  return peer ? local.union(peer) : local.copy();
}

export class ResyncPlan {
  /** Regions still to decide (full: to compare; bitmap: to send), scanned in order by cursor. */
  private readonly todo: RegionBitmap;
  private cursor = 0;
  private readonly sendQueue: number[] = [];
  private readonly inflight = new Map<number, number>();
  private inflightBytes = 0;
  private compareOutstanding: { first: number; count: number } | undefined;
  private bucket: TokenBucket;
  private readonly regionCount: number;
  private readonly regionsTotal: number;
  private readonly bytesTotal: number;
  private bytesSent = 0;
  private bytesMatched = 0;
  private regionsDone = 0;
  private readonly samples: Array<{ atMs: number; bytes: number }> = [];

  constructor(readonly config: ResyncPlanConfig, readonly kind: ResyncKind, regions: RegionBitmap, nowMs: number) {
    this.regionCount = Math.ceil(config.volumeSizeBytes / config.regionSizeBytes);
    assert(regions.regionCount === this.regionCount, `plan of ${regions.regionCount} regions for a volume of ${this.regionCount}`);
    assert(config.batchRegionsMax >= 1 && config.inflightBytesMax > 0, 'resync batch and window must be positive');
    this.todo = kind === 'full' ? RegionBitmap.full(this.regionCount) : regions.copy();
    this.regionsTotal = this.todo.count;
    let bytes = 0;
    for (let r = this.todo.nextSet(0); r >= 0; r = this.todo.nextSet(r + 1)) bytes += this.range(r).lengthBytes;
    this.bytesTotal = bytes;
    this.bucket = tokenBucket(config.rateBytesPerSec, config.burstBytes, nowMs);
    this.samples.push({ atMs: nowMs, bytes: 0 });
  }

  range(region: number): RegionRange {
    const offsetBytes = region * this.config.regionSizeBytes;
    return { region, offsetBytes, lengthBytes: Math.min(this.config.regionSizeBytes, this.config.volumeSizeBytes - offsetBytes) };
  }

  next(nowMs: number): ResyncStep {
    if (this.sendQueue.length > 0) return this.nextSend(nowMs);
    if (this.kind === 'full' && this.compareOutstanding === undefined) {
      const first = this.todo.nextSet(this.cursor);
      if (first >= 0) {
        const count = Math.min(this.config.batchRegionsMax, this.regionCount - first);
        this.compareOutstanding = { first, count };
        this.cursor = first + count;
        return { kind: 'compare', firstRegion: first, regionCount: count };
      }
    }
    if (this.kind === 'bitmap') {
      for (let r = this.todo.nextSet(this.cursor); r >= 0 && this.sendQueue.length < this.config.batchRegionsMax; r = this.todo.nextSet(r + 1)) {
        this.sendQueue.push(r);
        this.cursor = r + 1;
      }
      if (this.sendQueue.length > 0) return this.nextSend(nowMs);
    }
    return this.finished() ? { kind: 'done' } : { kind: 'busy' };
  }

  /** Checksums of a compare step (one per region, source and target): matching regions are done. */
  compared(firstRegion: number, sourceCrcs: ArrayLike<number>, targetCrcs: ArrayLike<number>): { matched: number; toSend: number } {
    const c = this.compareOutstanding;
    assert(c !== undefined && c.first === firstRegion, `checksums for region ${firstRegion}, none asked there`);
    assert(sourceCrcs.length === c.count && targetCrcs.length === c.count, `expected ${c.count} checksums per site`);
    this.compareOutstanding = undefined;
    let matched = 0;
    for (let i = 0; i < c.count; i++) {
      const r = c.first + i;
      if (sourceCrcs[i] === targetCrcs[i]) {
        this.todo.clear(r);
        this.regionsDone++;
        this.bytesMatched += this.range(r).lengthBytes;
        matched++;
      } else this.sendQueue.push(r);
    }
    return { matched, toSend: c.count - matched };
  }

  /** The resync entry of region is durable at the target. */
  acked(region: number, nowMs: number): void {
    const bytes = this.inflight.get(region);
    assert(bytes !== undefined, `ack for region ${region}, which is not in flight`);
    this.inflight.delete(region);
    this.inflightBytes -= bytes;
    this.todo.clear(region);
    this.regionsDone++;
    this.bytesSent += bytes;
    const last = this.samples[this.samples.length - 1];
    // The rate is measured over the last few seconds: one sample per quarter second, 32 kept.
    if (nowMs - last.atMs >= 250) {
      this.samples.push({ atMs: nowMs, bytes: this.bytesSent });
      if (this.samples.length > 32) this.samples.shift();
    }
  }

  /** The stream broke: what was in flight goes again (the dirty map still holds those regions). */
  requeueInflight(): void {
    for (const r of [...this.inflight.keys()].sort((a, b) => a - b)) this.sendQueue.unshift(r);
    this.sendQueue.sort((a, b) => a - b);
    this.inflight.clear();
    this.inflightBytes = 0;
    if (this.compareOutstanding) {
      this.cursor = Math.min(this.cursor, this.compareOutstanding.first);
      this.compareOutstanding = undefined;
    }
  }

  setRate(nowMs: number, rateBytesPerSec: number): void {
    this.bucket = setBucketRate(this.bucket, nowMs, rateBytesPerSec);
  }

  progress(nowMs: number): ResyncProgress {
    const first = this.samples[0];
    const spanMs = nowMs - first.atMs;
    const rate = spanMs > 0 ? ((this.bytesSent - first.bytes) * 1000) / spanMs : 0;
    const bytesDone = this.bytesSent + this.bytesMatched;
    const remaining = this.bytesTotal - bytesDone;
    return {
      kind: this.kind,
      bytesTotal: this.bytesTotal,
      bytesDone,
      bytesSent: this.bytesSent,
      bytesMatched: this.bytesMatched,
      regionsTotal: this.regionsTotal,
      regionsDone: this.regionsDone,
      rateBytesPerSec: rate,
      etaMs: remaining === 0 ? 0 : rate > 0 ? Math.ceil((remaining * 1000) / rate) : undefined,
      done: this.finished(),
    };
  }

  private nextSend(nowMs: number): ResyncStep {
    const regions: RegionRange[] = [];
    while (this.sendQueue.length > 0 && regions.length < this.config.batchRegionsMax) {
      const rr = this.range(this.sendQueue[0]);
      if (this.inflightBytes > 0 && this.inflightBytes + rr.lengthBytes > this.config.inflightBytesMax) break;
      const t = takeTokens(this.bucket, nowMs, rr.lengthBytes);
      this.bucket = t.bucket;
      if (!t.ok) {
        if (regions.length > 0) break;
        return { kind: 'wait', untilMs: nowMs + t.waitMs };
      }
      this.sendQueue.shift();
      this.inflight.set(rr.region, rr.lengthBytes);
      this.inflightBytes += rr.lengthBytes;
      regions.push(rr);
    }
    return regions.length > 0 ? { kind: 'send', regions } : { kind: 'busy' };
  }

  private finished(): boolean {
    return this.todo.count === 0 && this.inflight.size === 0 && this.sendQueue.length === 0 && this.compareOutstanding === undefined;
  }
}

// ---------------------------------------------------------------- verify

/** Regions whose checksums differ between the two copies, firstRegion onward. */
export function compareChecksums(firstRegion: number, a: ArrayLike<number>, b: ArrayLike<number>): number[] {
  assert(a.length === b.length, `${a.length} checksums against ${b.length}`);
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) out.push(firstRegion + i);
  return out;
}

export interface VerifyConfig {
  volumeSizeBytes: number;
  regionSizeBytes: number;
  batchRegionsMax: number;
  /** Mismatches listed at most; past it they are only counted. */
  mismatchesMax: number;
  /** A mismatch in a region with writes in flight is checked again up to this many times. */
  rechecksMax: number;
  rateBytesPerSec: number;
  burstBytes: number;
}

export type VerifyStep =
  | { kind: 'compare'; firstRegion: number; regionCount: number }
  | { kind: 'wait'; untilMs: number }
  | { kind: 'busy' }
  | { kind: 'done' };

/**
 * Online verify of one volume while I/O runs: a mismatch in a region that had writes in flight
 * (dirty in the dirty map) may be a write caught at one site and not yet at the other, so it is
 * compared again later; only a mismatch in a quiet region, or one that persists, is reported.
 */
export class VerifyRun {
  private cursor = 0;
  private readonly rechecks: Array<{ region: number; tries: number }> = [];
  private outstanding: { first: number; count: number; tries: number } | undefined;
  private bucket: TokenBucket;
  private readonly regionCount: number;
  private regionsChecked = 0;
  private readonly mismatches: number[] = [];
  private mismatchCount = 0;
  /** Regions that kept changing under the verify: neither confirmed equal nor reported. */
  private readonly unsettled: number[] = [];

  constructor(readonly config: VerifyConfig, nowMs: number) {
    this.regionCount = Math.ceil(config.volumeSizeBytes / config.regionSizeBytes);
    assert(config.batchRegionsMax >= 1 && config.mismatchesMax >= 0 && config.rechecksMax >= 0, 'verify limits must be non-negative');
    this.bucket = tokenBucket(config.rateBytesPerSec, config.burstBytes, nowMs);
  }

  next(nowMs: number): VerifyStep {
    if (this.outstanding) return { kind: 'busy' };
    let first: number;
    let count: number;
    let tries = 0;
    if (this.cursor < this.regionCount) {
      first = this.cursor;
      count = Math.min(this.config.batchRegionsMax, this.regionCount - first);
    } else if (this.rechecks.length > 0) {
      ({ region: first, tries } = this.rechecks[0]);
      count = 1;
    } else return { kind: 'done' };
    const t = takeTokens(this.bucket, nowMs, count * this.config.regionSizeBytes);
    this.bucket = t.bucket;
    if (!t.ok) return { kind: 'wait', untilMs: nowMs + t.waitMs };
    if (this.cursor < this.regionCount) this.cursor += count;
    else this.rechecks.shift();
    this.outstanding = { first, count, tries };
    return { kind: 'compare', firstRegion: first, regionCount: count };
  }

  /** Both copies' checksums of the last compare step; inFlux: whether a region had writes in flight. */
  compared(firstRegion: number, local: ArrayLike<number>, peer: ArrayLike<number>, inFlux: (region: number) => boolean): void {
    const o = this.outstanding;
    assert(o !== undefined && o.first === firstRegion && local.length === o.count, `checksums for region ${firstRegion} not asked for`);
    this.outstanding = undefined;
    if (o.tries === 0) this.regionsChecked += o.count;
    for (const r of compareChecksums(firstRegion, local, peer)) {
      if (inFlux(r)) {
        if (o.tries < this.config.rechecksMax) this.rechecks.push({ region: r, tries: o.tries + 1 });
        else this.unsettled.push(r);
        continue;
      }
      this.mismatchCount++;
      if (this.mismatches.length < this.config.mismatchesMax) this.mismatches.push(r);
    }
  }

  setRate(nowMs: number, rateBytesPerSec: number): void {
    this.bucket = setBucketRate(this.bucket, nowMs, rateBytesPerSec);
  }

  report() {
    const done = this.cursor >= this.regionCount && this.rechecks.length === 0 && this.outstanding === undefined;
    return {
      regionsTotal: this.regionCount,
      regionsChecked: this.regionsChecked,
      bytesChecked: Math.min(this.config.volumeSizeBytes, this.regionsChecked * this.config.regionSizeBytes),
      mismatches: [...this.mismatches].sort((a, b) => a - b),
      mismatchCount: this.mismatchCount,
      mismatchesTruncated: this.mismatchCount > this.mismatches.length,
      unsettled: [...this.unsettled],
      done,
    };
  }
}
