// The primary's resync of one attached secondary (DESIGN.md "Resync and verify"): per volume a
// ResyncPlan (the union of the primary's regions awaiting resync and the secondary's own dirty
// bitmap, or every region compared by checksum first), run in the background under the group's
// bandwidth bound while host writes go on. A region travels as a ResyncData entry in the mirror
// stream: the region is locked (RegionGate) while it is read and its sequence assigned, so the
// entry reflects every earlier write and no later one. Ends with a ResyncComplete entry per volume.
import { crc32c } from '@node-rs/crc32';
import type { Logger } from '../../common/log.ts';
import { scanRead, type BlockDevice } from '../storage/block-device.ts';
import type { DirtyMap } from './dirty-map.ts';
import { RegionBitmap } from './region-bitmap.ts';
import { regionChecksums } from './region-checksums.ts';
import type { RegionGate } from './region-gate.ts';
import { ResyncPlan, resyncRegions, type RegionRange, type ResyncKind, type ResyncPlanConfig, type ResyncProgress } from './resync-plan.ts';

export const resyncDefaults = {
  /** Regions per checksum request or send step. */
  batchRegionsMax: 64,
  /** Resync data sent and not yet durable at the secondary. */
  inflightBytesMax: 8 * 1024 * 1024,
  burstBytes: 1024 * 1024,
};

export interface ResyncVolume {
  index: number;
  sizeBytes: number;
  regionSizeBytes: number;
  dirty: DirtyMap;
  /** The primary's local copy (reads bypass the mirror). */
  device: BlockDevice;
}

/** What the driver needs from the mirror session that owns the stream. */
export interface ResyncHost {
  group: string;
  volumes: ResyncVolume[];
  gate: RegionGate;
  log: Logger;
  now(): number;
  /** Enters an entry in the mirror window (waiting for room); onQueued runs in the turn its sequence is assigned. */
  push(entry: Record<string, unknown>, bytes: number, onQueued: (seq: number) => void): Promise<void>;
  /** The secondary's per-region checksums, computed after it applied every entry queued so far. */
  peerChecksums(purpose: 'resync' | 'verify', volume: number, firstRegion: number, regionCount: number): Promise<Uint32Array>;
}

export class ResyncStopped extends Error {
  override name = 'ResyncStopped';
}

interface Job {
  volume: ResyncVolume;
  plan: ResyncPlan;
  /** Sequence -> region of resync entries not yet durable. */
  inflight: Map<number, number>;
  /** Resync entries of this volume entered in the stream (ResyncComplete.regions_sent). */
  regionsSent: number;
  /** Regions the checksums found equal, not sent (ResyncComplete.regions_matched). */
  regionsMatched: number;
  completeSeq?: number;
}

/** Progress of the whole run (every requested volume) as status shows it. */
export interface ResyncRunProgress extends Omit<ResyncProgress, 'kind'> {
  kind: ResyncKind | 'repair';
  volumesTotal: number;
  volumesDone: number;
  startedAtMs: number;
}

export class ResyncDriver {
  private readonly jobs: Job[] = [];
  private readonly pendingComplete = new Map<number, () => void>();
  private wake: (() => void) | undefined;
  private stopped = false;
  private running: Promise<void> | undefined;
  private readonly completion = deferred();
  private durableSeq = 0;
  private finishedVolumes = 0;
  private rateBytesPerSec: number;
  readonly startedAtMs: number;
  /** Resync data bytes entered in the stream by this run. */
  bytesSent = 0;

  constructor(
    private readonly host: ResyncHost,
    private readonly o: { kind: ResyncKind | 'repair'; rateBytesPerSec: number; volumesExpected: number },
  ) {
    this.rateBytesPerSec = o.rateBytesPerSec;
    this.startedAtMs = host.now();
  }

  /** A volume's request (ResyncRequest, or regions a verify found differing); runs in arrival order. */
  add(volume: number, kind: ResyncKind, peerDirty?: RegionBitmap): void {
    this.addRegions(volume, kind, resyncRegions(this.host.volumes[volume].dirty.resyncRegions(), peerDirty));
  }

  addRegions(volume: number, kind: ResyncKind, regions: RegionBitmap): void {
    const v = this.host.volumes[volume];
    const config: ResyncPlanConfig = {
      volumeSizeBytes: v.sizeBytes, regionSizeBytes: v.regionSizeBytes,
      batchRegionsMax: resyncDefaults.batchRegionsMax, inflightBytesMax: resyncDefaults.inflightBytesMax,
      rateBytesPerSec: this.rateBytesPerSec, burstBytes: resyncDefaults.burstBytes,
    };
    this.jobs.push({ volume: v, plan: new ResyncPlan(config, kind, regions, this.host.now()), inflight: new Map(), regionsSent: 0, regionsMatched: 0 });
    this.host.log.info('resync planned', { group: this.host.group, volume, ...this.jobs[this.jobs.length - 1].plan.progress(this.host.now()) });
    this.running ??= this.run().then(this.completion.resolve, this.completion.reject);
    this.poke();
  }

  /** Resolves when every expected volume is resynced and durable at the secondary, or the run is stopped. */
  finished(): Promise<void> {
    return this.completion.promise;
  }

  get done(): boolean {
    return this.finishedVolumes >= this.o.volumesExpected;
  }

  setRate(rateBytesPerSec: number): void {
    this.rateBytesPerSec = rateBytesPerSec;
    for (const j of this.jobs) j.plan.setRate(this.host.now(), rateBytesPerSec);
  }

  /** The secondary's durable sequence moved: resync entries up to it are done. */
  onDurable(durableSeq: number): void {
    this.durableSeq = Math.max(this.durableSeq, durableSeq);
    const nowMs = this.host.now();
    for (const j of this.jobs) {
      for (const [seq, region] of j.inflight) {
        if (seq > durableSeq) continue;
        j.inflight.delete(seq);
        j.plan.acked(region, nowMs);
      }
    }
    for (const [seq, resolve] of this.pendingComplete) {
      if (seq <= durableSeq) {
        this.pendingComplete.delete(seq);
        resolve();
      }
    }
    this.poke();
  }

  /** The stream is gone: this run ends (the next attach plans again from the dirty maps). */
  stop(): void {
    this.stopped = true;
    this.poke();
    for (const r of this.pendingComplete.values()) r();
    this.pendingComplete.clear();
  }

  /** Bytes still to resync (for the ack policy: the secondary is not up-to-date before 0). */
  remainingBytes(): number {
    if (this.done) return 0;
    const nowMs = this.host.now();
    let n = 0;
    for (const j of this.jobs) { const p = j.plan.progress(nowMs); n += p.bytesTotal - p.bytesDone; }
    // Requested volumes not yet planned, or planned and not yet confirmed complete.
    return Math.max(n, 1);
  }

  progress(): ResyncRunProgress {
    const nowMs = this.host.now();
    const ps = this.jobs.map((j) => j.plan.progress(nowMs));
    const sum = (f: (p: ResyncProgress) => number) => ps.reduce((n, p) => n + f(p), 0);
    const bytesTotal = sum((p) => p.bytesTotal);
    const bytesDone = sum((p) => p.bytesDone);
    const elapsedMs = Math.max(1, nowMs - this.startedAtMs);
    const rate = this.bytesSent > 0 ? (this.bytesSent * 1000) / elapsedMs : sum((p) => p.rateBytesPerSec);
    const remaining = bytesTotal - bytesDone;
    return {
      kind: this.o.kind,
      bytesTotal, bytesDone, bytesSent: this.bytesSent, bytesMatched: sum((p) => p.bytesMatched),
      regionsTotal: sum((p) => p.regionsTotal), regionsDone: sum((p) => p.regionsDone),
      rateBytesPerSec: rate,
      etaMs: remaining <= 0 ? 0 : rate > 0 ? Math.ceil((remaining * 1000) / rate) : undefined,
      done: this.done,
      volumesTotal: this.o.volumesExpected, volumesDone: this.finishedVolumes,
      startedAtMs: this.startedAtMs,
    };
  }

  private poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private sleep(untilMs?: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      this.wake = () => { clearTimeout(timer); resolve(); };
      if (untilMs !== undefined) timer = setTimeout(() => this.poke(), Math.max(1, untilMs - this.host.now()));
    });
  }

  private async run(): Promise<void> {
    await this.host.gate.use();
    try {
      for (let i = 0; !this.stopped; ) {
        if (i >= this.jobs.length) {
          if (this.done) break;
          await this.sleep();
          continue;
        }
        await this.runJob(this.jobs[i]);
        i++;
      }
    } catch (err) {
      // A stopped run (stream gone) ends quietly; the regions stay dirty for the next attach.
      if (!this.stopped) throw err;
    } finally {
      this.host.gate.unuse();
    }
    if (!this.stopped) this.host.log.info('resync complete', { group: this.host.group, ...this.progress() });
  }

  private async runJob(job: Job): Promise<void> {
    const v = job.volume;
    for (;;) {
      if (this.stopped) throw new ResyncStopped(`resync of group ${this.host.group} stopped`);
      const step = job.plan.next(this.host.now());
      switch (step.kind) {
        case 'compare': {
          const [local, peer] = await Promise.all([
            regionChecksums(v.device, v.regionSizeBytes, step.firstRegion, step.regionCount),
            this.host.peerChecksums('resync', v.index, step.firstRegion, step.regionCount),
          ]);
          // A region awaiting resync at the primary is sent whatever its checksum says: the dirty
          // map is what cleans, and only a resync entry cleans it.
          for (let k = 0; k < local.length; k++) if (v.dirty.needsResync(step.firstRegion + k)) peer[k] = ~local[k] >>> 0;
          const r = job.plan.compared(step.firstRegion, local, peer);
          job.regionsMatched += r.matched;
          break;
        }
        case 'send':
          for (const rr of step.regions) await this.sendRegion(job, rr);
          break;
        case 'wait':
          await this.sleep(step.untilMs);
          break;
        case 'busy':
          await this.sleep();
          break;
        case 'done':
          await this.complete(job);
          return;
      }
    }
  }

  private async sendRegion(job: Job, rr: RegionRange): Promise<void> {
    const v = job.volume;
    await this.host.gate.lock(v.index, rr.region);
    try {
      // A copy out of the scan buffer: the entry waits in the mirror window until it is sent.
      const data = await scanRead(v.device, rr.offsetBytes, rr.lengthBytes, (d) => Buffer.from(d));
      const entry = { resync: { volume: v.index, region: String(rr.region), offset_bytes: String(rr.offsetBytes), data, crc32c: crc32c(data) } };
      await this.host.push(entry, data.length, (seq) => {
        if (v.dirty.needsResync(rr.region)) v.dirty.resyncSent(rr.region, seq);
        job.inflight.set(seq, rr.region);
      });
      job.regionsSent++;
      this.bytesSent += data.length;
    } finally {
      this.host.gate.unlock(v.index, rr.region);
    }
  }

  private async complete(job: Job): Promise<void> {
    const p = job.plan.progress(this.host.now());
    let seq = 0;
    const entry = { resync_complete: { volume: job.volume.index, regions_sent: String(job.regionsSent), bytes_sent: String(p.bytesSent), regions_matched: String(job.regionsMatched) } };
    await this.host.push(entry, 64, (s) => { seq = s; });
    if (seq > this.durableSeq) await new Promise<void>((resolve) => this.pendingComplete.set(seq, resolve));
    if (this.stopped) throw new ResyncStopped(`resync of group ${this.host.group} stopped`);
    this.finishedVolumes++;
    this.host.log.info('volume resynced', { group: this.host.group, volume: job.volume.index, regionsSent: job.regionsSent, regionsMatched: job.regionsMatched, bytesSent: p.bytesSent });
  }
}

/** The bitmap carried by a ResyncRequest (LSB-first, one bit per region), or why it does not fit the volume. */
export function peerBitmap(bytes: Uint8Array | undefined, regionCount: number): { ok: true; bitmap?: RegionBitmap } | { ok: false; message: string } {
  if (!bytes || bytes.length === 0) return { ok: true };
  if (bytes.length !== Math.ceil(regionCount / 8)) return { ok: false, message: `dirty bitmap of ${bytes.length} bytes for ${regionCount} regions` };
  const tail = regionCount & 7;
  if (tail !== 0 && bytes[bytes.length - 1] >> tail !== 0) return { ok: false, message: 'dirty bitmap has bits past the last region' };
  return { ok: true, bitmap: new RegionBitmap(regionCount, bytes) };
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}
