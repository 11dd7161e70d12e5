// Logical block provisioning (SBC-4 4.7): WRITE SAME(10/16) with UNMAP and NDOB, UNMAP and GET LBA
// STATUS on a thin volume with LBPRZ=1 (a deallocated block reads as zeros). Deallocation goes to
// BlockDevice.deallocate (a punched hole in the sparse file) or, without it, to written zeros.
//
// GET LBA STATUS reports a block as mapped when the device knows it was written since it was opened
// (BlockDevice.mappedBytesFrom: no data is read for those), otherwise as deallocated when it reads as
// zeros and mapped when not. Node cannot ask the filesystem for holes (no lseek SEEK_DATA/SEEK_HOLE).
// A host cannot tell a deallocated block from a mapped block of zeros on an LBPRZ=1 unit, which is
// what it uses the answer for: skipping ranges that need no copying.
import { u16, u32, u64, usage } from './cdb.ts';
import { unmapDescriptorsMax, unmapMaxBlocks, writeSameMaxBlocks } from './block-limits.ts';
import type { CommandSpec, LogicalUnit } from './command-table.ts';
import { lbaOf, layout10, layout16, lbaOutOfRange, outOfRange, type Layout } from './sbc-commands.ts';
import { allocated } from './spc-commands.ts';
import { Asc, SenseKey, checkCondition, good, goodStatus, illegalRequest, invalidFieldInCdb, invalidFieldInParameterList } from './sense.ts';
import type { ScsiRequest, ScsiResponse } from './types.ts';
import { readPooled } from '../storage/block-device.ts';

const chunkBytes = 1024 * 1024;
const zeroChunk = Buffer.alloc(chunkBytes);

/** Writes `block` repeated over [offsetBytes, offsetBytes + lengthBytes), a chunk at a time. */
async function writeRepeated(lu: LogicalUnit, offsetBytes: number, lengthBytes: number, block: Buffer): Promise<void> {
  const zero = isZero(block);
  const chunk = zero ? zeroChunk : Buffer.allocUnsafe(Math.min(chunkBytes, lengthBytes)).fill(block);
  for (let at = 0; at < lengthBytes; at += chunk.length) {
    const n = Math.min(chunk.length, lengthBytes - at);
    await lu.device.write(offsetBytes + at, n === chunk.length ? chunk : chunk.subarray(0, n));
  }
}

export function isZero(buf: Buffer): boolean {
  for (let at = 0; at < buf.length; at += chunkBytes) {
    const part = buf.subarray(at, at + chunkBytes);
    if (!part.equals(zeroChunk.subarray(0, part.length))) return false;
  }
  return true;
}

async function deallocate(lu: LogicalUnit, offsetBytes: number, lengthBytes: number): Promise<void> {
  if (lu.device.deallocate) await lu.device.deallocate(offsetBytes, lengthBytes);
  else await writeRepeated(lu, offsetBytes, lengthBytes, zeroChunk.subarray(0, lu.blockSizeBytes));
}

/**
 * SBC-3 5.42/5.43. NUMBER OF LOGICAL BLOCKS 0 means "to the last LBA" (WSNZ=0) and is held to
 * MAXIMUM WRITE SAME LENGTH like any other length. UNMAP=1 deallocates the range whatever the
 * Data-Out block holds: afterwards it reads zeros (LBPRZ=1), which is what hosts (and libiscsi's
 * WriteSame*.UnmapUntilEnd) expect. ANCHOR is refused through the usage data (ANC_SUP=0).
 */
function writeSame(l: Layout) {
  return async (req: ScsiRequest, lu: LogicalUnit): Promise<ScsiResponse> => {
    const cdb = req.cdb;
    const unmap = (cdb[1] & 0x08) !== 0;
    const ndob = l === layout16 && (cdb[1] & 0x01) !== 0;
    const lba = lbaOf(cdb, l);
    const field = l.lengthBytes === 2 ? u16(cdb, l.lengthAt) : u32(cdb, l.lengthAt);
    const dataBytes = ndob ? 0 : lu.blockSizeBytes;
    if (outOfRange(lu, lba, field)) return lbaOutOfRange(dataBytes);
    const blocks = field === 0 ? lu.blockCount - lba : field;
    if (blocks > writeSameMaxBlocks(lu)) return invalidFieldInCdb(l.lengthAt);
    const data = req.dataOut;
    if (req.expectedDataLength !== dataBytes || (data?.length ?? 0) < dataBytes) {
      return illegalRequest(Asc.InvalidFieldInCommandInformationUnit, dataBytes);
    }
    if (blocks === 0) return good(undefined, dataBytes);
    const block = ndob || data === undefined ? zeroChunk.subarray(0, lu.blockSizeBytes) : data.subarray(0, dataBytes);
    const offsetBytes = lba * lu.blockSizeBytes;
    const lengthBytes = blocks * lu.blockSizeBytes;
    if (unmap) await deallocate(lu, offsetBytes, lengthBytes);
    else await writeRepeated(lu, offsetBytes, lengthBytes, block);
    return good(undefined, dataBytes);
  };
}

interface Extent {
  lba: number;
  blocks: number;
}

const unmapHeaderBytes = 8;
const unmapDescriptorBytes = 16;

/** Parses and checks a whole UNMAP parameter list (SBC-4 5.32.2) before anything is deallocated. */
function unmapExtents(list: Buffer, lu: LogicalUnit): Extent[] | ScsiResponse {
  const parameterListError = checkCondition({ key: SenseKey.IllegalRequest, code: Asc.ParameterListLengthError });
  if (list.length < unmapHeaderBytes) return parameterListError;
  const dataLength = u16(list, 0);
  const descriptorBytes = u16(list, 2);
  if (dataLength + 2 > list.length || unmapHeaderBytes + descriptorBytes > list.length) return parameterListError;
  if (dataLength < 6 + descriptorBytes) return invalidFieldInParameterList(0);
  // A trailing partial descriptor is ignored (SBC-4 5.32.2).
  const count = Math.floor(descriptorBytes / unmapDescriptorBytes);
  if (count > unmapDescriptorsMax) return invalidFieldInParameterList(2);
  const extents: Extent[] = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const at = unmapHeaderBytes + i * unmapDescriptorBytes;
    const lba = u64(list, at);
    const blocks = u32(list, at + 8);
    if (outOfRange(lu, lba, blocks)) return lbaOutOfRange();
    total += blocks;
    if (total > unmapMaxBlocks(lu)) return invalidFieldInParameterList(at + 8);
    if (blocks > 0) extents.push({ lba, blocks });
  }
  return mergeExtents(extents);
}

/** Sorted, with overlapping and touching extents joined, so each range is deallocated once. */
export function mergeExtents(extents: Extent[]): Extent[] {
  const sorted = [...extents].sort((a, b) => a.lba - b.lba);
  const out: Extent[] = [];
  for (const e of sorted) {
    const last = out[out.length - 1];
    if (last && e.lba <= last.lba + last.blocks) last.blocks = Math.max(last.blocks, e.lba + e.blocks - last.lba);
    else out.push({ ...e });
  }
  return out;
}

async function unmap(req: ScsiRequest, lu: LogicalUnit): Promise<ScsiResponse> {
  const listBytes = u16(req.cdb, 7);
  if (listBytes === 0) return goodStatus; // SBC-4 5.32.1: not an error
  const received = req.dataOut;
  if (received === undefined || received.length < listBytes) {
    return checkCondition({ key: SenseKey.IllegalRequest, code: Asc.ParameterListLengthError }, listBytes);
  }
  const extents = unmapExtents(received.subarray(0, listBytes), lu);
  if (!Array.isArray(extents)) return extents;
  for (const e of extents) await deallocate(lu, e.lba * lu.blockSizeBytes, e.blocks * lu.blockSizeBytes);
  return good(undefined, listBytes);
}

/** How far one GET LBA STATUS looks ahead; the last descriptor ends there. */
const statusScanMaxBytes = 1024 * 1024;
const Provisioning = { mapped: 0, deallocated: 1 } as const;

/** A descriptor's NUMBER OF LOGICAL BLOCKS field is 32 bits. */
const descriptorBlocksMax = 0xffff_ffff;

interface StatusRun {
  lba: number;
  blocks: number;
  status: number;
}

/** SBC-4 5.8: descriptors from STARTING LOGICAL BLOCK ADDRESS on, each a run of one status. A run
 *  the device knows to be mapped is reported whole (it may reach far past the scan window, so a
 *  host caching the answer asks again less often); what follows it in the window is scanned. */
async function getLbaStatus(req: ScsiRequest, lu: LogicalUnit): Promise<ScsiResponse> {
  const cdb = req.cdb;
  const lba = u64(cdb, 2);
  const allocationLength = u32(cdb, 10);
  if (lba >= lu.blockCount) return lbaOutOfRange();
  const bs = lu.blockSizeBytes;
  const knownBytes = lu.device.mappedBytesFrom?.(lba * bs, Math.min(lu.blockCount - lba, descriptorBlocksMax) * bs) ?? 0;
  const known = Math.floor(knownBytes / bs);
  const runs: StatusRun[] = known > 0 ? [{ lba, blocks: known, status: Provisioning.mapped }] : [];
  const scanFrom = lba + known;
  const scanEnd = Math.min(lu.blockCount, lba + statusScanMaxBytes / bs);
  if (scanFrom < scanEnd) await scanStatus(lu, scanFrom, scanEnd - scanFrom, runs);
  const out = Buffer.alloc(8 + 16 * runs.length);
  out.writeUInt32BE(out.length - 4, 0); // PARAMETER DATA LENGTH
  runs.forEach((r, i) => {
    out.writeBigUInt64BE(BigInt(r.lba), 8 + 16 * i);
    out.writeUInt32BE(r.blocks, 16 + 16 * i);
    out[20 + 16 * i] = r.status;
  });
  return allocated(out, allocationLength);
}

/** Blocks looked at with one compare before the scan goes block by block (where data is). */
const scanStretchBytes = 64 * 1024;

/** Appends the runs of [lba, +blocks) as the data shows them: zeros deallocated, the rest mapped. */
async function scanStatus(lu: LogicalUnit, lba: number, blocks: number, runs: StatusRun[]): Promise<void> {
  const bs = lu.blockSizeBytes;
  // Looked at and dropped here: a pooled buffer (a new 1 MiB one per command, on every large read a
  // host prefaces with GET LBA STATUS, kept the garbage collector busy).
  const pooled = await readPooled(lu.device, lba * bs, blocks * bs);
  try {
    classify(pooled.data, bs, lba, blocks, runs);
  } finally {
    pooled.release();
  }
}

/** The runs of data (blocks of bs bytes from lba) appended to runs. */
function classify(data: Buffer, bs: number, lba: number, blocks: number, runs: StatusRun[]): void {
  const add = (first: number, count: number, status: number): void => {
    const last = runs[runs.length - 1];
    if (last && last.status === status && last.blocks + count <= descriptorBlocksMax) last.blocks += count;
    else runs.push({ lba: first, blocks: count, status });
  };
  const stretchBlocks = Math.max(1, Math.floor(scanStretchBytes / bs));
  for (let i = 0; i < blocks; i += stretchBlocks) {
    const n = Math.min(stretchBlocks, blocks - i);
    // A stretch of zeros (a hole, mostly) in one compare, which stops at the first byte of data.
    if (zeroChunk.compare(data, i * bs, (i + n) * bs, 0, n * bs) === 0) {
      add(lba + i, n, Provisioning.deallocated);
      continue;
    }
    for (let j = i; j < i + n; j++) {
      // Written blocks rarely start and end with zero bytes: most are told apart without a compare,
      // and no block gets a Buffer view of its own.
      const at = j * bs;
      const zero = data[at] === 0 && data[at + bs - 1] === 0 && zeroChunk.compare(data, at, at + bs, 0, bs) === 0;
      add(lba + j, 1, zero ? Provisioning.deallocated : Provisioning.mapped);
    }
  }
}

const group = 0x1f;
const lba4 = [0xff, 0xff, 0xff, 0xff];
const lba8 = [...lba4, ...lba4];
const ioTimeouts = { nominal: 0, recommended: 60 };

export const thinProvisioningCommands: readonly CommandSpec[] = [
  {
    opcode: 0x41,
    name: 'WRITE SAME(10)',
    // UNMAP; ANCHOR (ANC_SUP=0), WRPROTECT, PBDATA and LBDATA are refused.
    usage: usage(0x41, 0x08, ...lba4, group, 0xff, 0xff, 0),
    handler: writeSame(layout10),
    mediumError: Asc.WriteError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0x42,
    name: 'UNMAP',
    usage: usage(0x42, 0, 0, 0, 0, 0, group, 0xff, 0xff, 0),
    handler: unmap,
    mediumError: Asc.WriteError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0x93,
    name: 'WRITE SAME(16)',
    // UNMAP and NDOB; ANCHOR and WRPROTECT are refused.
    usage: usage(0x93, 0x09, ...lba8, 0xff, 0xff, 0xff, 0xff, group, 0),
    handler: writeSame(layout16),
    mediumError: Asc.WriteError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0x9e,
    serviceAction: 0x12,
    name: 'GET LBA STATUS',
    usage: usage(0x9e, 0x1f, ...lba8, 0xff, 0xff, 0xff, 0xff, 0, 0),
    handler: getLbaStatus,
    mediumError: Asc.UnrecoveredReadError,
  },
];
