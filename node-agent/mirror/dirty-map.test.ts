// Dirty map and activity log: writes wait for their AL extents, transactions batch, bits clear only
// when both the local write and the peer's durable ack are done, peer loss leaves regions for
// resync, the AL stays bounded; and a seeded crash simulation: whatever differs between the sites
// after a crash of the primary is covered by what the disk holds.
import test from 'ava';
import { prng, seedFromEnv } from '../../common/prng.ts';
import { DirtyMap, dirtyMapDefaults, type DirtyMapConfig, type DirtyMapTransaction } from './dirty-map.ts';
import { RegionBitmap } from './region-bitmap.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
// 16 MiB volume: 256 regions of 64 KiB, 32 AL extents of 8 regions (512 KiB).
const small: DirtyMapConfig = { ...dirtyMapDefaults, volumeSizeBytes: 16 * MiB, regionSizeBytes: 64 * KiB, extentRegions: 8, alExtentsMax: 4, cleanFlushIntervalMs: 1000 };

/** The on-disk map as a replay of the transactions persisted so far. */
class Disk {
  dirty: RegionBitmap;
  al = new Set<number>();
  constructor(regionCount: number) {
    this.dirty = new RegionBitmap(regionCount);
  }
  apply(txn: DirtyMapTransaction): void {
    if (txn.image) {
      this.dirty = new RegionBitmap(this.dirty.regionCount, txn.image.dirty);
      this.al = new Set(txn.image.alExtents);
      return;
    }
    for (const e of txn.alRemove) this.al.delete(e);
    for (const e of txn.alAdd) this.al.add(e);
    for (const [f, n] of txn.setRuns) for (let r = f; r < f + n; r++) this.dirty.set(r);
    for (const [f, n] of txn.clearRuns) for (let r = f; r < f + n; r++) this.dirty.clear(r);
  }
}

function persist(map: DirtyMap, disk: Disk, nowMs = 0, compact = false): { txn: DirtyMapTransaction | undefined; released: number[] } {
  const txn = map.takeTransaction(nowMs, { compact });
  if (!txn) return { txn, released: [] };
  disk.apply(txn);
  return { txn, released: map.transactionPersisted(txn.id) };
}

test('a write to a cold extent waits for its AL transaction; the next write there goes at once', (t) => {
  const map = new DirtyMap(small);
  const disk = new Disk(map.regionCount);
  const w1 = map.beginWrite(0, 4096);
  t.is(w1.kind, 'wait');
  t.is(map.takeTransaction(0)?.id, 1);
  t.is(map.takeTransaction(0), undefined, 'one transaction in flight at a time');
  disk.apply({ id: 1, alAdd: [0], alRemove: [], setRuns: [], clearRuns: [] });
  t.deepEqual(map.transactionPersisted(1), [w1.ticket]);
  t.is(map.beginWrite(64 * KiB, 4096).kind, 'go', 'same extent (regions 0-7)');
  map.checkInvariant(disk);
});

test('writes arriving while a transaction is in flight share the next one', (t) => {
  const map = new DirtyMap({ ...small, alExtentsMax: 16 });
  const disk = new Disk(map.regionCount);
  map.beginWrite(0, 512);
  const first = map.takeTransaction(0)!;
  const waiting = [1, 2, 3, 4].map((e) => map.beginWrite(e * 512 * KiB, 512).ticket);
  disk.apply(first);
  t.deepEqual(map.transactionPersisted(first.id), [1]);
  const { txn, released } = persist(map, disk);
  t.deepEqual(txn?.alAdd, [1, 2, 3, 4]);
  t.deepEqual(released, waiting);
  t.is(map.stats().writesWaiting, 0);
});

test('a region cleans only when the local write and the peer durable ack are both done; disk bits clear lazily', (t) => {
  const map = new DirtyMap(small);
  const disk = new Disk(map.regionCount);
  const a = map.beginWrite(60 * KiB, 8 * KiB); // regions 0 and 1
  persist(map, disk);
  map.mirrored(a.ticket, 1);
  map.peerDurable(1);
  t.is(map.stats().dirtyRegions, 2, 'peer has it, the local write is still in flight');
  map.localDone(a.ticket);
  t.is(map.stats().dirtyRegions, 0);
  const b = map.beginWrite(0, 512);
  map.localDone(b.ticket);
  map.mirrored(b.ticket, 2);
  t.is(map.stats().dirtyRegions, 1, 'applied but not durable at the peer');
  map.peerDurable(2);
  t.is(map.stats().dirtyRegions, 0);
  t.is(map.takeTransaction(500), undefined, 'cleared bits alone wait for cleanFlushIntervalMs');
  t.like(map.takeTransaction(1000), { alAdd: [], clearRuns: [[0, 2]] }, 'then they go out');
});

test('peer down: regions wait for resync; only a resync entry acknowledged durable cleans them', (t) => {
  const map = new DirtyMap(small);
  const disk = new Disk(map.regionCount);
  const a = map.beginWrite(0, 4096);
  const b = map.beginWrite(128 * KiB, 4096);
  persist(map, disk);
  map.mirrored(a.ticket, 1);
  map.mirrored(b.ticket, 2);
  map.localDone(a.ticket);
  map.localDone(b.ticket);
  map.peerLost(); // neither was durably acknowledged
  const c = map.beginWrite(256 * KiB, 4096);
  map.localDone(c.ticket);
  map.notMirrored(c.ticket);
  map.peerDurable(10);
  t.deepEqual(map.resyncRegions().runs(), [[0, 1], [2, 1], [4, 1]]);
  map.resyncSent(0, 11);
  map.resyncSent(2, 12);
  map.peerDurable(11);
  t.deepEqual(map.resyncRegions().runs(), [[2, 1], [4, 1]]);
  t.is(map.stats().dirtyRegions, 2);
  map.checkInvariant(disk);
});

test('the AL stays bounded: idle extents are evicted with their dirty bits, busy ones never', (t) => {
  const map = new DirtyMap({ ...small, alExtentsMax: 2 });
  const disk = new Disk(map.regionCount);
  const extent = (e: number) => e * 8 * 64 * KiB;
  const a = map.beginWrite(extent(0), 512);
  const b = map.beginWrite(extent(1), 512);
  persist(map, disk);
  map.localDone(a.ticket);
  map.notMirrored(a.ticket); // extent 0 idle, region 0 awaits resync
  const c = map.beginWrite(extent(2), 512);
  t.is(c.kind, 'wait');
  const { txn, released } = persist(map, disk);
  t.deepEqual(txn?.alRemove, [0]);
  t.deepEqual(txn?.setRuns, [[0, 1]], "the evicted extent's dirty region is written as a bit");
  t.deepEqual(released, [c.ticket]);
  map.checkInvariant(disk);
  // Both AL extents are held by writes in flight: a write to a third extent waits, no transaction helps.
  const d = map.beginWrite(extent(3), 512);
  t.is(d.kind, 'wait');
  t.is(map.takeTransaction(0), undefined);
  map.localDone(b.ticket);
  map.mirrored(b.ticket, 1);
  map.peerDurable(1);
  const next = persist(map, disk);
  t.deepEqual(next.txn?.alRemove, [1]);
  t.deepEqual(next.released, [d.ticket]);
  t.true(disk.al.size <= 2);
  map.checkInvariant(disk);
});

test('reloading after a crash: every AL extent and dirty bit awaits resync', (t) => {
  const dirty = new RegionBitmap(256);
  dirty.set(100);
  const map = new DirtyMap(small, { dirty: dirty.bytes, alExtents: [2] });
  t.deepEqual(map.resyncRegions().runs(), [[16, 8], [100, 1]]);
  t.is(map.stats().alExtents, 1);
  t.throws(() => new DirtyMap(small, { dirty: dirty.bytes, alExtents: [32] }), { message: /AL extent 32 outside/ });
  t.throws(() => new DirtyMap(small, { dirty: new Uint8Array(3), alExtents: [] }), { message: /bitmap of 3 bytes/ });
});

test('memory is bounded by the bitmap size: huge volumes need larger regions', (t) => {
  const cfg = { ...dirtyMapDefaults, volumeSizeBytes: 2 ** 50, regionSizeBytes: 4096, bitmapBytesMax: 16 * MiB };
  t.throws(() => new DirtyMap(cfg), { message: /choose larger regions/ });
  t.is(new DirtyMap({ ...cfg, regionSizeBytes: 64 * MiB }).regionCount, 2 ** 24);
});

test('seeded crash simulation: what differs between the sites is always covered on disk', (t) => {
  const seed = seedFromEnv();
  t.log(`seed ${seed}`);
  const rand = prng(seed);
  for (let run = 0; run < 20; run++) {
    const cfg = { ...small, alExtentsMax: 1 + Math.floor(rand() * 5), cleanFlushIntervalMs: 50 };
    const map = new DirtyMap(cfg);
    const disk = new Disk(map.regionCount);
    const local = new Uint32Array(map.regionCount); // version written locally (counted when issued: it may land)
    const peer = new Uint32Array(map.regionCount);
    let version = 0;
    let seq = 0;
    let peerUp = true;
    const issued: Array<{ ticket: number; first: number; last: number; v: number; local: boolean }> = [];
    const wire: Array<{ seq: number; first: number; last: number; v: number }> = [];
    let peerDurableSeq = 0;
    let txn: DirtyMapTransaction | undefined;
    const issue = (ticket: number) => {
      const w = writesByTicket.get(ticket)!;
      for (let r = w.first; r <= w.last; r++) local[r] = w.v;
      issued.push({ ticket, ...w, local: false });
      if (peerUp) { map.mirrored(ticket, ++seq); wire.push({ seq, ...w }); } else map.notMirrored(ticket);
    };
    const writesByTicket = new Map<number, { first: number; last: number; v: number }>();
    for (let step = 0; step < 2000; step++) {
      const r = rand();
      if (r < 0.3) {
        // Hot spots and scattered writes, some spanning regions.
        const off = (rand() < 0.7 ? Math.floor(rand() * 2 * MiB) : Math.floor(rand() * (16 * MiB - 256 * KiB))) & ~511;
        const len = 512 * (1 + Math.floor(rand() * 256));
        const b = map.beginWrite(off, len);
        const { first, last } = map.regionsOf(off, len);
        writesByTicket.set(b.ticket, { first, last, v: ++version });
        if (b.kind === 'go') issue(b.ticket);
      } else if (r < 0.45) {
        if (!txn) txn = map.takeTransaction(step, { compact: rand() < 0.05 });
        else {
          disk.apply(txn);
          for (const ticket of map.transactionPersisted(txn.id)) issue(ticket);
          txn = undefined;
        }
      } else if (r < 0.6 && issued.length > 0) {
        const i = Math.floor(rand() * issued.length);
        const w = issued[i];
        if (!w.local) { w.local = true; map.localDone(w.ticket); }
      } else if (r < 0.8 && wire.length > 0) {
        const e = wire.shift()!; // the peer applies in order
        for (let x = e.first; x <= e.last; x++) peer[x] = e.v;
        if (rand() < 0.5) { peerDurableSeq = e.seq; map.peerDurable(e.seq); }
      } else if (r < 0.83) {
        peerUp = !peerUp;
        if (!peerUp) { wire.length = 0; map.peerLost(); }
      } else if (r < 0.9 && peerUp) {
        // Resync one region: the peer gets the current local version.
        const todo = map.resyncRegions().nextSet(Math.floor(rand() * map.regionCount));
        if (todo >= 0 && !issued.some((w) => w.first <= todo && todo <= w.last && !w.local)) {
          map.resyncSent(todo, ++seq);
          wire.push({ seq, first: todo, last: todo, v: local[todo] });
        }
      }
      for (let k = issued.length - 1; k >= 0; k--) if (issued[k].local && !map['writes'].has(issued[k].ticket)) issued.splice(k, 1);
      map.checkInvariant(disk);
      // A crash now: the regions where the sites differ must all be resynced after restart.
      for (let x = 0; x < map.regionCount; x++) {
        if (local[x] !== peer[x]) {
          const covered = disk.dirty.has(x) || disk.al.has(Math.floor(x / cfg.extentRegions));
          if (!covered) return t.fail(`run ${run} step ${step}: region ${x} differs (local v${local[x]}, peer v${peer[x]}) but the disk does not cover it`);
        }
      }
      t.true(disk.al.size <= cfg.alExtentsMax);
    }
    void peerDurableSeq;
  }
  t.pass();
});

test('resize: growing adds clean regions and keeps dirty ones; shrinking forgets the regions past the new end', (t) => {
  const map = new DirtyMap(small);
  const disk = new Disk(map.regionCount);
  const a = map.beginWrite(10 * 64 * KiB, 4096);
  persist(map, disk);
  map.localDone(a.ticket);
  map.notMirrored(a.ticket); // peer down: region 10 waits for a resync
  const b = map.beginWrite(250 * 64 * KiB, 4096);
  persist(map, disk);
  map.localDone(b.ticket);
  map.notMirrored(b.ticket);
  map.resize(32 * MiB);
  t.is(map.regionCount, 512);
  t.deepEqual(map.resyncRegions().runs(), [[10, 1], [250, 1]]);
  const c = map.beginWrite(500 * 64 * KiB, 4096); // past the old end
  const grownDisk = new Disk(map.regionCount);
  const { released } = persist(map, grownDisk, 0, true);
  if (c.kind === 'wait') t.true(released.includes(c.ticket));
  map.localDone(c.ticket);
  map.notMirrored(c.ticket);
  map.checkInvariant(grownDisk);
  map.resize(8 * MiB);
  t.is(map.regionCount, 128);
  t.deepEqual(map.resyncRegions().runs(), [[10, 1]]);
  const shrunkDisk = new Disk(map.regionCount);
  persist(map, shrunkDisk, 0, true);
  map.checkInvariant(shrunkDisk);
});

test('a shrink waits for what is tracked past the new end: writes and resync entries in flight there', (t) => {
  const map = new DirtyMap(small);
  const disk = new Disk(map.regionCount);
  const w = map.beginWrite(200 * 64 * KiB, 4096); // region 200
  persist(map, disk);
  t.true(map.tracksFrom(128));
  t.false(map.tracksFrom(201));
  map.mirrored(w.ticket, 1);
  map.localDone(w.ticket);
  map.peerLost(); // region 200 now waits for a resync
  t.false(map.tracksFrom(128), 'a stranded write is no longer in flight');
  map.resyncSent(200, 2);
  t.true(map.tracksFrom(128), 'the resync entry for region 200 is in flight');
  map.peerDurable(2);
  t.false(map.tracksFrom(0));
  map.resize(8 * MiB);
  t.is(map.regionCount, 128);
});

test('forgetAll: a resynced secondary forgets its own dirty regions; refused while anything is in flight', (t) => {
  const map = new DirtyMap(small);
  const disk = new Disk(map.regionCount);
  const w = map.beginWrite(0, 4096);
  persist(map, disk);
  t.throws(() => map.forgetAll(), { message: /in flight/ });
  map.localDone(w.ticket);
  map.notMirrored(w.ticket);
  t.is(map.stats().dirtyRegions, 1);
  map.forgetAll();
  t.is(map.stats().dirtyRegions, 0);
  t.is(map.resyncRegions().count, 0);
  const txn = map.takeTransaction(0, { compact: true })!;
  t.deepEqual([...txn.image!.dirty].filter((b) => b !== 0), []);
  t.deepEqual(txn.image!.alExtents, []);
});

test('releasing many waiting or pending writes at once takes time in proportion to their number', (t) => {
  // A peer that syncs only every 64 MiB leaves 131,072 entries of 512-byte writes waiting for its
  // durable ack, and one ack releases them all on the event loop's thread; one AL transaction may
  // release as many waiting writes. Each release costs about what beginning the writes did; taken
  // from the front of an array, or spliced out one by one, they cost time in the square of their
  // number (seconds with the loop stalled at this count).
  const count = 131_072;
  const map = new DirtyMap({ ...dirtyMapDefaults, volumeSizeBytes: 64 * MiB, regionSizeBytes: 64 * KiB, alExtentsMax: 1024 });
  const elapsed = (f: () => void): number => {
    const start = performance.now();
    f();
    return performance.now() - start;
  };
  const tickets: number[] = [];
  const beginMs = elapsed(() => {
    for (let i = 0; i < count; i++) tickets.push(map.beginWrite((i * 4 * KiB) % (64 * MiB), 512).ticket);
  });
  let released: number[] = [];
  const alMs = elapsed(() => {
    const txn = map.takeTransaction(0);
    if (txn) released = map.transactionPersisted(txn.id);
  });
  t.is(released.length, count, 'every write waited for the one AL transaction');
  for (let i = 0; i < count; i++) {
    map.mirrored(tickets[i], i + 1);
    map.localDone(tickets[i]);
  }
  const durableMs = elapsed(() => {
    for (let seq = 256; seq <= count; seq += 256) map.peerDurable(seq);
  });
  t.is(map.stats().dirtyRegions, 0);
  const bound = 2 * beginMs + 50;
  t.true(alMs < bound, `AL transaction released the writes in ${alMs.toFixed(0)} ms; beginning them took ${beginMs.toFixed(0)} ms`);
  t.true(durableMs < bound, `durable acks released the entries in ${durableMs.toFixed(0)} ms; beginning the writes took ${beginMs.toFixed(0)} ms`);
});
