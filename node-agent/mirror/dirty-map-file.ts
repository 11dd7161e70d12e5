// The dirty map of one volume on disk, in a file beside the volume: an append-only log of
// CRC32C-checked records (header, image, transactions), each appended and fdatasync'd before the
// DirtyMap is told it is durable; compaction writes header + image to a temp file and renames it.
// On open the log is replayed; a torn tail (the only record a crash can break) is ignored.
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { assert } from '../../common/assert.ts';
import type { DirtyMapImage, DirtyMapTransaction } from './dirty-map.ts';
import { RegionBitmap, fitBitmap } from './region-bitmap.ts';

export interface DirtyMapGeometry {
  regionSizeBytes: number;
  regionCount: number;
  extentRegions: number;
}

/** The file belongs to another geometry (volume resized, region size changed): the caller decides (full resync). */
export class DirtyMapFileMismatchError extends Error {
  override name = 'DirtyMapFileMismatchError';
}

const magic = 0x4d43444d; // "MCDM"
const formatVersion = 1;
const frameBytes = 8; // u32 payload length, u32 CRC32C of the payload
const recordBytesMax = 64 * 1024 * 1024;
const RecordType = { Header: 1, Image: 2, Transaction: 3 } as const;

class Writer {
  private parts: Buffer[] = [];
  u8(v: number) { const b = Buffer.alloc(1); b.writeUInt8(v); this.parts.push(b); return this; }
  u32(v: number) { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.parts.push(b); return this; }
  list(vs: number[]) { this.u32(vs.length); for (const v of vs) this.u32(v); return this; }
  runs(rs: Array<[number, number]>) { this.u32(rs.length); for (const [f, n] of rs) this.u32(f).u32(n); return this; }
  bytes(b: Uint8Array) { this.parts.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength)); return this; }
  record(): Buffer {
    const payload = Buffer.concat(this.parts);
    const frame = Buffer.alloc(frameBytes);
    frame.writeUInt32LE(payload.length, 0);
    frame.writeUInt32LE(crc32c(payload), 4);
    return Buffer.concat([frame, payload]);
  }
}

class Reader {
  private at = 0;
  constructor(private readonly b: Buffer) {}
  u8() { return this.b.readUInt8(this.at++); }
  u32() { const v = this.b.readUInt32LE(this.at); this.at += 4; return v; }
  list() { const n = this.u32(); return Array.from({ length: n }, () => this.u32()); }
  runs(): Array<[number, number]> { const n = this.u32(); return Array.from({ length: n }, () => [this.u32(), this.u32()] as [number, number]); }
  rest() { const r = this.b.subarray(this.at); this.at = this.b.length; return r; }
  done() { return this.at === this.b.length; }
}

export function encodeHeader(g: DirtyMapGeometry): Buffer {
  return new Writer().u8(RecordType.Header).u32(magic).u32(formatVersion).u32(g.regionSizeBytes).u32(g.regionCount).u32(g.extentRegions).record();
}

export function encodeImage(txnId: number, image: DirtyMapImage): Buffer {
  return new Writer().u8(RecordType.Image).u32(txnId).list(image.alExtents).bytes(image.dirty).record();
}

export function encodeTransaction(txn: DirtyMapTransaction): Buffer {
  return new Writer().u8(RecordType.Transaction).u32(txn.id).list(txn.alAdd).list(txn.alRemove).runs(txn.setRuns).runs(txn.clearRuns).record();
}

export interface ReplayResult {
  image: DirtyMapImage;
  /** Records applied after the header. */
  records: number;
  /** Bytes of the log that hold whole, checked records. */
  goodBytes: number;
  /** Bytes after them: a record torn by a crash (ignored). */
  tornTailBytes: number;
}

/** Replays a log; asserts what must hold in every record that passed its CRC. */
export function replayLog(log: Buffer, g: DirtyMapGeometry): ReplayResult {
  const extentCount = Math.ceil(g.regionCount / g.extentRegions);
  let dirty = new RegionBitmap(g.regionCount);
  let al = new Set<number>();
  let at = 0;
  let records = 0;
  let lastTxnId = -1;
  let sawHeader = false;
  while (at + frameBytes <= log.length) {
    const length = log.readUInt32LE(at);
    if (length === 0 || length > recordBytesMax || at + frameBytes + length > log.length) break;
    const payload = log.subarray(at + frameBytes, at + frameBytes + length);
    if (crc32c(payload) !== log.readUInt32LE(at + 4)) break;
    const r = new Reader(payload);
    const type = r.u8();
    if (!sawHeader) {
      assert(type === RecordType.Header && r.u32() === magic, 'dirty-map file does not start with its header');
      const version = r.u32();
      assert(version === formatVersion, `dirty-map file format ${version}, expected ${formatVersion}`);
      const found = { regionSizeBytes: r.u32(), regionCount: r.u32(), extentRegions: r.u32() };
      if (found.regionSizeBytes !== g.regionSizeBytes || found.extentRegions !== g.extentRegions) {
        throw new DirtyMapFileMismatchError(`dirty map written for ${JSON.stringify(found)}, the volume now has ${JSON.stringify(g)}`);
      }
      // A resized volume (topology apply; a crash before its map was rewritten): replay in the old
      // geometry, then fit the result to the new one.
      if (found.regionCount !== g.regionCount) return fitReplay(replayLog(log, found), g);
      sawHeader = true;
    } else if (type === RecordType.Image) {
      const id = r.u32();
      assert(id > lastTxnId, `image ${id} after transaction ${lastTxnId}: transaction ids only grow`);
      lastTxnId = id;
      al = new Set(checkExtents(r.list(), extentCount));
      dirty = new RegionBitmap(g.regionCount, r.rest());
    } else {
      assert(type === RecordType.Transaction, `unknown dirty-map record type ${type}`);
      const id = r.u32();
      assert(id > lastTxnId, `transaction ${id} after ${lastTxnId}: transaction ids only grow`);
      lastTxnId = id;
      const add = checkExtents(r.list(), extentCount);
      const remove = checkExtents(r.list(), extentCount);
      const set = r.runs();
      const clear = r.runs();
      assert(r.done(), `transaction ${id} has trailing bytes`);
      for (const e of remove) al.delete(e);
      for (const e of add) al.add(e);
      for (const [f, n] of set) for (let x = f; x < f + n; x++) dirty.set(x);
      for (const [f, n] of clear) for (let x = f; x < f + n; x++) dirty.clear(x);
    }
    at += frameBytes + length;
    records++;
  }
  assert(sawHeader || at === 0, 'dirty-map log without a header');
  return { image: { dirty: dirty.bytes, alExtents: [...al].sort((a, b) => a - b) }, records: Math.max(0, records - 1), goodBytes: at, tornTailBytes: log.length - at };
}

function fitReplay(r: ReplayResult, g: DirtyMapGeometry): ReplayResult {
  const dirty = new RegionBitmap(g.regionCount, fitBitmap(r.image.dirty, g.regionCount));
  const extentCount = Math.ceil(g.regionCount / g.extentRegions);
  // An AL extent cut by a shrink keeps its surviving regions dirty (the sites may differ there).
  for (const e of r.image.alExtents) {
    for (let x = e * g.extentRegions; x < Math.min(g.regionCount, (e + 1) * g.extentRegions); x++) dirty.set(x);
  }
  return { ...r, image: { dirty: dirty.bytes, alExtents: r.image.alExtents.filter((e) => e < extentCount) } };
}

function checkExtents(es: number[], extentCount: number): number[] {
  for (const e of es) assert(e < extentCount, `AL extent ${e} outside 0..${extentCount - 1}`);
  return es;
}

export interface OpenedDirtyMapFile {
  file: DirtyMapFile;
  /** undefined for a new file: nothing is dirty. */
  image: DirtyMapImage | undefined;
  records: number;
  tornTailBytes: number;
}

/**
 * Opens (or creates) the dirty-map file and replays it. The replayed state is compacted into a fresh
 * file at once, so transaction ids restart and a torn tail is gone before anything is appended.
 */
export async function openDirtyMapFile(path: string, g: DirtyMapGeometry): Promise<OpenedDirtyMapFile> {
  await rm(`${path}.tmp`, { force: true }); // a compaction interrupted by a crash; the old file is whole
  let log: Buffer | undefined;
  try {
    const h = await open(path, 'r');
    try { log = await h.readFile(); } finally { await h.close(); }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const replay = log && log.length > 0 ? replayLog(log, g) : undefined;
  const image = replay?.image ?? { dirty: new Uint8Array(Math.ceil(g.regionCount / 8)), alExtents: [] };
  const handle = await writeCompacted(path, g, 0, image);
  return { file: new DirtyMapFile(path, g, handle), image: replay?.image, records: replay?.records ?? 0, tornTailBytes: replay?.tornTailBytes ?? 0 };
}

async function writeCompacted(path: string, g: DirtyMapGeometry, txnId: number, image: DirtyMapImage): Promise<FileHandle> {
  const tmp = `${path}.tmp`;
  const h = await open(tmp, 'w', 0o600);
  try {
    await h.writeFile(Buffer.concat([encodeHeader(g), encodeImage(txnId, image)]));
    await h.datasync();
    await rename(tmp, path);
  } catch (err) {
    await h.close();
    throw err;
  }
  await syncDir(dirname(path));
  return h;
}

async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try { await d.sync(); } finally { await d.close(); }
}

export class DirtyMapFile {
  private bytes = 0;
  private busy = false;

  constructor(readonly path: string, private geometry: DirtyMapGeometry, private handle: FileHandle) {}

  /** The volume was resized: the next transaction persisted must be a compaction (it writes the new header). */
  setGeometry(g: DirtyMapGeometry): void {
    this.geometry = g;
  }

  /** Log size: the runtime asks the DirtyMap for a compacting transaction past a bound. */
  get sizeBytes(): number {
    return this.bytes;
  }

  /** Makes one transaction durable; only then may the DirtyMap be told (transactionPersisted). */
  async persist(txn: DirtyMapTransaction): Promise<void> {
    assert(!this.busy, 'one dirty-map transaction at a time');
    this.busy = true;
    try {
      if (txn.image) {
        const old = this.handle;
        this.handle = await writeCompacted(this.path, this.geometry, txn.id, txn.image);
        await old.close();
        this.bytes = (await this.handle.stat()).size;
        return;
      }
      const record = encodeTransaction(txn);
      const { size } = await this.handle.stat();
      await this.handle.write(record, 0, record.length, size);
      await this.handle.datasync();
      this.bytes = size + record.length;
    } finally {
      this.busy = false;
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}
