// Per-volume dirty-region map with an activity log in the spirit of DRBD's (DESIGN.md "Resync and
// verify"). In memory: regions whose writes the peer has not durably acknowledged. On disk: those bits
// plus the activity log (AL), the extents with writes in flight; a write is issued only once its
// extents are in the persisted AL, so after a crash of the primary "on-disk bits ∪ AL extents" covers
// every region where the sites may differ. Pure: it says what to persist and which writes may go.
//
// Invariant (checked by the tests): every dirty region is dirty on disk or inside a persisted AL
// extent. Cleared bits reach the disk lazily (an extra dirty bit on disk only costs an extra resync).
import Denque from 'denque';
import { assert } from '../../common/assert.ts';
import { RegionBitmap, fitBitmap } from './region-bitmap.ts';

export interface DirtyMapConfig {
  volumeSizeBytes: number;
  /** Dirty granularity; a power of two, default 64 KiB. Both sites must use the same. */
  regionSizeBytes: number;
  /** Regions per AL extent (default 64: 4 MiB extents with 64 KiB regions). */
  extentRegions: number;
  /** Extents the AL holds at most: bounds the resync after a crash of the primary. */
  alExtentsMax: number;
  /** Memory bound: volumes needing a larger bitmap are refused (choose larger regions). */
  bitmapBytesMax: number;
  /** Cleared bits alone trigger a transaction at most this often. */
  cleanFlushIntervalMs: number;
}

export const dirtyMapDefaults = {
  regionSizeBytes: 64 * 1024,
  extentRegions: 64,
  alExtentsMax: 256,
  bitmapBytesMax: 16 * 1024 * 1024,
  cleanFlushIntervalMs: 5000,
} as const;

/** One durable update of the on-disk map; persisted in order, one at a time. */
export interface DirtyMapTransaction {
  readonly id: number;
  /** Extents entering the AL: writes to them wait until this transaction is durable. */
  readonly alAdd: number[];
  /** Extents leaving the AL; their dirty regions are in setRuns. */
  readonly alRemove: number[];
  /** Regions to mark dirty on disk, as [first, count] runs. */
  readonly setRuns: Array<[number, number]>;
  /** Regions to mark clean on disk (clean in memory when the transaction was taken). */
  readonly clearRuns: Array<[number, number]>;
  /** A compaction: the whole map after this transaction, replacing everything before it on disk. */
  readonly image?: DirtyMapImage;
}

/** What the on-disk map holds after replay: the bits and the AL extents. */
export interface DirtyMapImage {
  dirty: Uint8Array;
  alExtents: number[];
}

export type BeginWrite =
  /** The extents are in the persisted AL: issue the write now. */
  | { kind: 'go'; ticket: number }
  /** Wait until transactionPersisted() releases this ticket (its extents enter the AL first). */
  | { kind: 'wait'; ticket: number };

interface WriteRecord {
  first: number;
  last: number;
  extents: number[];
  issued: boolean;
  localDone: boolean;
  peerDone: boolean;
}

interface Pending {
  seq: number;
  ticket?: number;
  resyncRegion?: number;
}

export function regionGeometry(volumeSizeBytes: number, regionSizeBytes: number) {
  assert(Number.isSafeInteger(volumeSizeBytes) && volumeSizeBytes > 0, `volume size ${volumeSizeBytes} must be positive`);
  assert(regionSizeBytes >= 512 && (regionSizeBytes & (regionSizeBytes - 1)) === 0, `region size ${regionSizeBytes} must be a power of two >= 512`);
  return { regionCount: Math.ceil(volumeSizeBytes / regionSizeBytes) };
}

export class DirtyMap {
  regionCount: number;
  extentCount: number;
  /** The truth in memory: the peer may lack these regions. */
  private dirty: RegionBitmap;
  /** Dirty with no tracked write behind them (peer unreachable, reloaded, gap): only a resync cleans them. */
  private stuck: RegionBitmap;
  /** Clean in memory, maybe still dirty on disk. */
  private toClear: RegionBitmap;
  /** Tracked writes (and resync entries) per region not yet finished. */
  private readonly tracked = new Map<number, number>();
  private readonly writes = new Map<number, WriteRecord>();
  /** Entries sent and not yet durable at the peer, in sequence order (thousands while the peer's page cache fills). */
  private readonly pending = new Denque<Pending>();
  private nextTicket = 1;
  /** Persisted AL extents -> last use (for least-recently-used eviction). */
  private readonly al = new Map<number, number>();
  private readonly alHolds = new Map<number, number>();
  private readonly alWanted = new Set<number>();
  private readonly waiting: number[] = [];
  private inflight: DirtyMapTransaction | undefined;
  private nextTxnId = 1;
  private useClock = 0;
  private lastCleanFlushMs = -Infinity;

  constructor(public config: DirtyMapConfig, image?: DirtyMapImage) {
    this.regionCount = regionGeometry(config.volumeSizeBytes, config.regionSizeBytes).regionCount;
    assert(Math.ceil(this.regionCount / 8) <= config.bitmapBytesMax,
      `a ${config.volumeSizeBytes}-byte volume needs ${Math.ceil(this.regionCount / 8)} bitmap bytes, more than bitmapBytesMax ${config.bitmapBytesMax}: choose larger regions`);
    assert(Number.isSafeInteger(config.extentRegions) && config.extentRegions >= 1 && config.alExtentsMax >= 1, 'AL geometry must be positive');
    this.extentCount = Math.ceil(this.regionCount / config.extentRegions);
    this.dirty = new RegionBitmap(this.regionCount, image?.dirty);
    this.stuck = this.dirty.copy();
    this.toClear = new RegionBitmap(this.regionCount);
    for (const e of image?.alExtents ?? []) {
      assert(Number.isInteger(e) && e >= 0 && e < this.extentCount, `AL extent ${e} outside the volume`);
      // After a crash of the primary every AL extent may differ between the sites.
      for (let r = e * config.extentRegions; r < Math.min(this.regionCount, (e + 1) * config.extentRegions); r++) {
        this.dirty.set(r);
        this.stuck.set(r);
      }
      this.al.set(e, 0);
    }
  }

  regionsOf(offsetBytes: number, lengthBytes: number): { first: number; last: number } {
    assert(offsetBytes >= 0 && lengthBytes > 0 && offsetBytes + lengthBytes <= this.config.volumeSizeBytes, `range ${offsetBytes}+${lengthBytes} outside the volume`);
    return { first: this.regionOf(offsetBytes), last: this.lastRegionOf(offsetBytes, lengthBytes) };
  }

  /** The region holding byte offsetBytes (unchecked and allocation-free, for the per-write paths). */
  regionOf(offsetBytes: number): number {
    return Math.floor(offsetBytes / this.config.regionSizeBytes);
  }

  /** The region holding the last byte of a range; a zero-length range's is the region of its offset. */
  lastRegionOf(offsetBytes: number, lengthBytes: number): number {
    return this.regionOf(offsetBytes + Math.max(1, lengthBytes) - 1);
  }

  /** A host write (or deallocation) is about to be issued: its regions become dirty now. */
  beginWrite(offsetBytes: number, lengthBytes: number): BeginWrite {
    const { first, last } = this.regionsOf(offsetBytes, lengthBytes);
    const ticket = this.nextTicket++;
    const extents: number[] = [];
    for (let e = Math.floor(first / this.config.extentRegions); e <= Math.floor(last / this.config.extentRegions); e++) extents.push(e);
    const w: WriteRecord = { first, last, extents, issued: false, localDone: false, peerDone: false };
    this.writes.set(ticket, w);
    for (let r = first; r <= last; r++) {
      this.dirty.set(r);
      this.toClear.clear(r);
      this.tracked.set(r, (this.tracked.get(r) ?? 0) + 1);
    }
    for (const e of extents) {
      this.alHolds.set(e, (this.alHolds.get(e) ?? 0) + 1);
      if (this.al.has(e)) this.al.set(e, ++this.useClock);
      else this.alWanted.add(e);
    }
    if (this.ready(w)) {
      w.issued = true;
      return { kind: 'go', ticket };
    }
    this.waiting.push(ticket);
    return { kind: 'wait', ticket };
  }

  /** The local write finished (successfully or not: the region stays dirty until the peer has it). */
  localDone(ticket: number): void {
    const w = this.writes.get(ticket);
    assert(w !== undefined && w.issued && !w.localDone, `localDone for ticket ${ticket} in the wrong state`);
    w.localDone = true;
    if (w.peerDone) this.finish(ticket, w);
  }

  /** The write entered the mirror window as sequence seq (in sequence order). */
  mirrored(ticket: number, seq: number): void {
    const w = this.writes.get(ticket);
    assert(w !== undefined && !w.peerDone, `mirrored for ticket ${ticket} in the wrong state`);
    this.pushPending({ seq, ticket });
  }

  /** The write will not reach the peer by the stream (peer down): its regions wait for a resync. */
  notMirrored(ticket: number): void {
    const w = this.writes.get(ticket);
    assert(w !== undefined && !w.peerDone, `notMirrored for ticket ${ticket} in the wrong state`);
    this.strand(ticket, w);
  }

  /** A resync entry for region went out as sequence seq. */
  resyncSent(region: number, seq: number): void {
    assert(this.stuck.has(region), `resync of region ${region}, which does not need one`);
    this.tracked.set(region, (this.tracked.get(region) ?? 0) + 1);
    this.pushPending({ seq, resyncRegion: region });
  }

  /** The peer's durable sequence: finished writes clean their regions; resynced regions clean. */
  peerDurable(durableSeq: number): void {
    for (let p = this.pending.peekFront(); p !== undefined && p.seq <= durableSeq; p = this.pending.peekFront()) {
      this.pending.shift();
      if (p.resyncRegion !== undefined) {
        this.stuck.clear(p.resyncRegion);
        this.untrack(p.resyncRegion);
        continue;
      }
      const w = this.writes.get(p.ticket!)!;
      w.peerDone = true;
      if (w.localDone) this.finish(p.ticket!, w);
    }
  }

  /**
   * The stream is gone (or a gap or new epoch): nothing pending can be trusted to arrive, so every
   * region with a pending entry waits for a resync.
   */
  peerLost(): void {
    const pend = this.pending.toArray();
    this.pending.clear();
    for (const p of pend) {
      if (p.resyncRegion !== undefined) {
        this.untrack(p.resyncRegion);
        continue;
      }
      const w = this.writes.get(p.ticket!);
      if (w && !w.peerDone) this.strand(p.ticket!, w);
    }
  }

  /**
   * The next transaction to persist, if one is due: extents wanted by waiting writes (with
   * evictions to stay within alExtentsMax), or cleared bits once cleanFlushIntervalMs has passed.
   * Only one is in flight at a time: this bounds the persist rate and batches many writes into one.
   */
  takeTransaction(nowMs: number, opts: { compact?: boolean } = {}): DirtyMapTransaction | undefined {
    if (this.inflight) return undefined;
    const alAdd = [...this.alWanted].filter((e) => !this.al.has(e));
    const room = this.config.alExtentsMax - this.al.size;
    const alRemove = alAdd.length > room ? this.evictionCandidates(alAdd.length - room) : [];
    // Without enough idle extents only part of the wanted set fits; the rest waits for holds to drop.
    const fits = alAdd.slice(0, Math.max(0, room + alRemove.length));
    const cleanDue = this.toClear.count > 0 && nowMs - this.lastCleanFlushMs >= this.config.cleanFlushIntervalMs;
    if (fits.length === 0 && !cleanDue && !opts.compact) return undefined;
    const setBits = new RegionBitmap(this.regionCount);
    for (const e of alRemove) {
      for (let r = e * this.config.extentRegions; r < Math.min(this.regionCount, (e + 1) * this.config.extentRegions); r++) {
        if (this.dirty.has(r)) setBits.set(r);
      }
    }
    const clearRuns = this.toClear.runs();
    this.toClear.clearAll();
    this.lastCleanFlushMs = nowMs;
    for (const e of alRemove) this.al.delete(e);
    for (const e of fits) this.alWanted.delete(e);
    const txn: DirtyMapTransaction = { id: this.nextTxnId++, alAdd: fits, alRemove, setRuns: setBits.runs(), clearRuns };
    this.inflight = opts.compact
      ? { ...txn, image: { dirty: this.dirty.bytes.slice(), alExtents: [...new Set([...this.al.keys(), ...fits])].sort((a, b) => a - b) } }
      : txn;
    return this.inflight;
  }

  /** The transaction is durable: returns the tickets whose writes may now be issued. */
  transactionPersisted(id: number): number[] {
    const txn = this.inflight;
    assert(txn !== undefined && txn.id === id, `transaction ${id} persisted, but ${txn?.id ?? 'none'} was in flight`);
    this.inflight = undefined;
    for (const e of txn.alAdd) this.al.set(e, ++this.useClock);
    const released: number[] = [];
    let kept = 0;
    // One pass, order kept: a splice per released write cost time in the square of the writes waiting.
    for (const ticket of this.waiting) {
      const w = this.writes.get(ticket)!;
      if (this.ready(w)) {
        w.issued = true;
        released.push(ticket);
      } else this.waiting[kept++] = ticket;
    }
    this.waiting.length = kept;
    return released;
  }

  /**
   * The volume was resized (a topology change). Growing adds clean regions at the end. Shrinking
   * forgets the regions past the new end: the caller has quiesced them (no write or resync entry in
   * flight there). Between transactions only; the caller persists a compaction next (the on-disk
   * map has the old geometry).
   */
  resize(volumeSizeBytes: number): void {
    assert(this.inflight === undefined, 'resize with a dirty-map transaction in flight');
    const regionCount = regionGeometry(volumeSizeBytes, this.config.regionSizeBytes).regionCount;
    assert(Math.ceil(regionCount / 8) <= this.config.bitmapBytesMax, `a ${volumeSizeBytes}-byte volume needs more than bitmapBytesMax ${this.config.bitmapBytesMax} bitmap bytes`);
    for (const r of this.tracked.keys()) assert(r < regionCount, `region ${r} has an entry in flight past the new end`);
    const fit = (b: RegionBitmap): RegionBitmap => new RegionBitmap(regionCount, fitBitmap(b.bytes, regionCount));
    this.dirty = fit(this.dirty);
    this.stuck = fit(this.stuck);
    this.toClear = fit(this.toClear);
    this.config = { ...this.config, volumeSizeBytes };
    this.regionCount = regionCount;
    this.extentCount = Math.ceil(regionCount / this.config.extentRegions);
    for (const e of [...this.al.keys()]) if (e >= this.extentCount) this.al.delete(e);
    for (const e of [...this.alWanted]) if (e >= this.extentCount) this.alWanted.delete(e);
  }

  /**
   * This site's copy was resynced whole from the primary: no region differs any more. Only while
   * nothing is tracked (a secondary); the caller persists a compaction next.
   */
  forgetAll(): void {
    assert(this.writes.size === 0 && this.tracked.size === 0 && this.inflight === undefined, 'forgetAll with writes or a transaction in flight');
    this.dirty = new RegionBitmap(this.regionCount);
    this.stuck = new RegionBitmap(this.regionCount);
    this.toClear = new RegionBitmap(this.regionCount);
    this.al.clear();
    this.alWanted.clear();
  }

  /** Some write or resync entry in flight touches a region at or past `region` (a shrink waits for none). */
  tracksFrom(region: number): boolean {
    for (const r of this.tracked.keys()) if (r >= region) return true;
    return false;
  }

  /** Regions a resync must send (dirty, no tracked write that will deliver them). */
  resyncRegions(): RegionBitmap {
    return this.stuck.copy();
  }

  /** The region is dirty with nothing tracked to deliver it: only a resync entry cleans it. */
  needsResync(region: number): boolean {
    return this.stuck.has(region);
  }

  /** Writes the peer has not durably acknowledged touch the region (verify rechecks it). */
  isDirty(region: number): boolean {
    return this.dirty.has(region);
  }

  dirtyBitmap(): RegionBitmap {
    return this.dirty.copy();
  }

  stats() {
    return {
      dirtyRegions: this.dirty.count,
      dirtyBytes: this.dirty.count * this.config.regionSizeBytes,
      resyncRegions: this.stuck.count,
      alExtents: this.al.size,
      writesInFlight: this.writes.size,
      writesWaiting: this.waiting.length,
      pendingEntries: this.pending.length,
      transactionInFlight: this.inflight !== undefined,
    };
  }

  /**
   * The invariant that makes a crash of the primary safe, against the on-disk map as replayed:
   * every region that may differ between the sites (awaiting resync, or under an issued write) is
   * dirty on disk or inside an AL extent on disk. For tests and simulators.
   */
  checkInvariant(disk: { dirty: RegionBitmap; al: ReadonlySet<number> }): void {
    const covered = (r: number) => disk.dirty.has(r) || disk.al.has(Math.floor(r / this.config.extentRegions));
    for (let r = this.stuck.nextSet(0); r >= 0; r = this.stuck.nextSet(r + 1)) {
      assert(covered(r), `region ${r} awaits resync but is neither dirty on disk nor in the AL`);
    }
    for (const [ticket, w] of this.writes) {
      if (!w.issued) continue;
      for (const e of w.extents) assert(disk.al.has(e), `write ${ticket} issued outside the persisted AL (extent ${e})`);
    }
  }

  private ready(w: WriteRecord): boolean {
    return w.extents.every((e) => this.al.has(e));
  }

  private evictionCandidates(n: number): number[] {
    return [...this.al.entries()]
      .filter(([e]) => (this.alHolds.get(e) ?? 0) === 0)
      .sort((a, b) => a[1] - b[1])
      .slice(0, n)
      .map(([e]) => e);
  }

  private pushPending(p: Pending): void {
    const last = this.pending.peekBack();
    assert(last === undefined || p.seq > last.seq, `sequence ${p.seq} after ${last?.seq}: entries must be recorded in order`);
    this.pending.push(p);
  }

  private strand(ticket: number, w: WriteRecord): void {
    w.peerDone = true;
    for (let r = w.first; r <= w.last; r++) this.stuck.set(r);
    if (w.localDone) this.finish(ticket, w);
  }

  private finish(ticket: number, w: WriteRecord): void {
    this.writes.delete(ticket);
    for (let r = w.first; r <= w.last; r++) this.untrack(r);
    for (const e of w.extents) {
      const h = (this.alHolds.get(e) ?? 0) - 1;
      assert(h >= 0, `AL holds of extent ${e} went negative`);
      if (h === 0) this.alHolds.delete(e);
      else this.alHolds.set(e, h);
    }
  }

  private untrack(r: number): void {
    const n = (this.tracked.get(r) ?? 0) - 1;
    assert(n >= 0, `tracked count of region ${r} went negative`);
    if (n > 0) {
      this.tracked.set(r, n);
      return;
    }
    this.tracked.delete(r);
    if (!this.stuck.has(r) && this.dirty.clear(r)) this.toClear.set(r);
  }
}
