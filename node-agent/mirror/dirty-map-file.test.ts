// Dirty-map file against real files: transactions replay to the same map after reopening, a torn
// tail at any byte is ignored, an interrupted compaction leaves the old file whole, a foreign
// geometry is refused, and a DirtyMap driven through it reloads with every AL extent to resync.
import test from 'ava';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirtyMap, dirtyMapDefaults, type DirtyMapTransaction } from './dirty-map.ts';
import { DirtyMapFileMismatchError, encodeTransaction, openDirtyMapFile, replayLog, type DirtyMapGeometry } from './dirty-map-file.ts';
import { RegionBitmap } from './region-bitmap.ts';

const g: DirtyMapGeometry = { regionSizeBytes: 65536, regionCount: 100, extentRegions: 8 };
const txn = (id: number, over: Partial<DirtyMapTransaction> = {}): DirtyMapTransaction => ({ id, alAdd: [], alRemove: [], setRuns: [], clearRuns: [], ...over });

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'metro-dirty-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('a new file is clean; transactions survive close and reopen', async (t) => {
  const path = join(await tempDir(t), 'data.dirty');
  const first = await openDirtyMapFile(path, g);
  t.is(first.image, undefined);
  await first.file.persist(txn(1, { alAdd: [0, 3], setRuns: [[10, 5]] }));
  await first.file.persist(txn(2, { alRemove: [0], setRuns: [[0, 2], [99, 1]], clearRuns: [[12, 1]] }));
  await first.file.close();
  const again = await openDirtyMapFile(path, g);
  t.is(again.records, 3, 'the image written at open, then two transactions');
  t.is(again.tornTailBytes, 0);
  t.deepEqual(again.image?.alExtents, [3]);
  t.deepEqual(new RegionBitmap(100, again.image!.dirty).runs(), [[0, 2], [10, 2], [13, 2], [99, 1]]);
  await again.file.close();
});

test('a torn tail at every byte of the last record is ignored; the records before it stand', async (t) => {
  const path = join(await tempDir(t), 'data.dirty');
  const f = await openDirtyMapFile(path, g);
  await f.file.persist(txn(1, { alAdd: [1], setRuns: [[3, 1]] }));
  await f.file.close();
  const whole = await readFile(path);
  const last = encodeTransaction(txn(2, { alAdd: [2], setRuns: [[40, 4]] }));
  for (let cut = 0; cut < last.length; cut++) {
    const r = replayLog(Buffer.concat([whole, last.subarray(0, cut)]), g);
    t.deepEqual(r.image.alExtents, [1], `cut at ${cut}`);
    t.is(r.tornTailBytes, cut);
  }
  const flipped = Buffer.from(last);
  flipped[flipped.length - 1] ^= 0x40;
  t.deepEqual(replayLog(Buffer.concat([whole, flipped]), g).image.alExtents, [1], 'a CRC mismatch ends the log');
  t.deepEqual(replayLog(Buffer.concat([whole, last]), g).image.alExtents, [1, 2]);
  // On disk: reopening drops the torn tail for good.
  await writeFile(path, Buffer.concat([whole, last.subarray(0, 11)]));
  const reopened = await openDirtyMapFile(path, g);
  t.is(reopened.tornTailBytes, 11);
  await reopened.file.persist(txn(1, { alAdd: [5] }));
  await reopened.file.close();
  const after = await openDirtyMapFile(path, g);
  t.deepEqual(after.image?.alExtents, [1, 5]);
  await after.file.close();
});

test('compaction replaces the log atomically; a crash during it leaves the old file', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'data.dirty');
  const f = await openDirtyMapFile(path, g);
  for (let i = 1; i <= 50; i++) await f.file.persist(txn(i, { setRuns: [[i, 1]], clearRuns: i > 1 ? [[i - 1, 1]] : [] }));
  const before = f.file.sizeBytes;
  const dirty = new RegionBitmap(100);
  dirty.set(50);
  await f.file.persist(txn(51, { image: { dirty: dirty.bytes, alExtents: [4] } }));
  t.true(f.file.sizeBytes < before, `${f.file.sizeBytes} < ${before}`);
  await f.file.persist(txn(52, { setRuns: [[60, 1]] }));
  await f.file.close();
  // A crash halfway through the next compaction: a partial temp file beside the whole old one.
  await writeFile(`${path}.tmp`, Buffer.from([1, 2, 3]));
  const r = await openDirtyMapFile(path, g);
  t.deepEqual(new RegionBitmap(100, r.image!.dirty).runs(), [[50, 1], [60, 1]]);
  t.deepEqual(r.image?.alExtents, [4]);
  await r.file.close();
  await t.throwsAsync(stat(`${path}.tmp`));
});

test('a file of another region size is refused with a named error; garbage in a checked record asserts', async (t) => {
  const path = join(await tempDir(t), 'data.dirty');
  await (await openDirtyMapFile(path, g)).file.close();
  await t.throwsAsync(openDirtyMapFile(path, { ...g, regionSizeBytes: g.regionSizeBytes * 2 }), { instanceOf: DirtyMapFileMismatchError });
  await t.throwsAsync(openDirtyMapFile(path, { ...g, extentRegions: g.extentRegions * 2 }), { instanceOf: DirtyMapFileMismatchError });
  const log = await readFile(path);
  t.throws(() => replayLog(Buffer.concat([log, encodeTransaction(txn(1, { alAdd: [13] }))]), g), { message: /AL extent 13 outside/ });
  t.throws(() => replayLog(Buffer.concat([log, encodeTransaction(txn(2)), encodeTransaction(txn(2))]), g), { message: /ids only grow/ });
  t.throws(() => replayLog(encodeTransaction(txn(1)), g), { message: /header/ });
});

test('a DirtyMap persisted through the file reloads with every AL extent and dirty bit to resync', async (t) => {
  const path = join(await tempDir(t), 'data.dirty');
  const cfg = { ...dirtyMapDefaults, volumeSizeBytes: 100 * 65536, regionSizeBytes: 65536, extentRegions: 8, alExtentsMax: 2 };
  const f = await openDirtyMapFile(path, g);
  const map = new DirtyMap(cfg, f.image);
  const flush = async () => {
    const x = map.takeTransaction(0);
    if (x) { await f.file.persist(x); return map.transactionPersisted(x.id); }
    return [];
  };
  const a = map.beginWrite(0, 4096);          // extent 0
  const b = map.beginWrite(30 * 65536, 4096);  // extent 3
  t.deepEqual(await flush(), [a.ticket, b.ticket]);
  map.localDone(a.ticket);
  map.notMirrored(a.ticket);                    // region 0 awaits resync; extent 0 idle
  const c = map.beginWrite(90 * 65536, 4096);  // extent 11 evicts extent 0
  t.deepEqual(await flush(), [c.ticket]);
  // The primary crashes here. After restart: region 0 (bit), extents 3 and 11 (AL).
  await f.file.close();
  const r = await openDirtyMapFile(path, g);
  const reloaded = new DirtyMap(cfg, r.image);
  t.deepEqual(reloaded.resyncRegions().runs(), [[0, 1], [24, 8], [88, 8]]);
  await r.file.close();
});

test('a file written before its volume was resized replays into the new geometry: bits kept when grown, cut when shrunk', async (t) => {
  const path = join(await tempDir(t), 'data.dirty');
  const opened = await openDirtyMapFile(path, g);
  await opened.file.persist(txn(1, { alAdd: [2], setRuns: [[5, 1], [90, 2]] }));
  await opened.file.close();
  const grown = await openDirtyMapFile(path, { ...g, regionCount: 200 });
  t.deepEqual(new RegionBitmap(200, grown.image!.dirty).runs(), [[5, 1], [16, 8], [90, 2]]);
  t.deepEqual(grown.image?.alExtents, [2]);
  await grown.file.close();
  // The grown geometry is what the file holds now; a shrink to 20 regions keeps what lies below.
  const shrunk = await openDirtyMapFile(path, { ...g, regionCount: 20 });
  t.deepEqual(new RegionBitmap(20, shrunk.image!.dirty).runs(), [[5, 1], [16, 4]]);
  t.deepEqual(shrunk.image?.alExtents, [2]);
  await shrunk.file.close();
});
