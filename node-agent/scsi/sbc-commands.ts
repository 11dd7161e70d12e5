// Block commands for a direct access device (SBC-3 5): READ CAPACITY, READ and WRITE 6/10/12/16,
// VERIFY 10/16, SYNCHRONIZE CACHE 10/16. The READ/WRITE path is kept short: decode, range check,
// one BlockDevice call on a view of the Data-Out buffer (or, for Data-Out received in several PDUs,
// on the pieces through writev when the device has it), no copies.
import { u16, u32, u64, usage } from './cdb.ts';
import type { CommandSpec, LogicalUnit } from './command-table.ts';
import { allocated } from './spc-commands.ts';
import { Asc, SenseKey, checkCondition, good, goodStatus, illegalRequest, invalidFieldInCdb } from './sense.ts';
import type { ScsiRequest, ScsiResponse } from './types.ts';
import { readPooled } from '../storage/block-device.ts';
import { noRelease } from '../storage/buffer-pool.ts';

/** Where a CDB layout keeps its fields. */
export interface Layout {
  readonly lbaAt: number;
  readonly lbaBytes: 3 | 4 | 8;
  readonly lengthAt: number;
  readonly lengthBytes: 1 | 2 | 4;
}

export const layout6: Layout = { lbaAt: 1, lbaBytes: 3, lengthAt: 4, lengthBytes: 1 };
export const layout10: Layout = { lbaAt: 2, lbaBytes: 4, lengthAt: 7, lengthBytes: 2 };
export const layout12: Layout = { lbaAt: 2, lbaBytes: 4, lengthAt: 6, lengthBytes: 4 };
export const layout16: Layout = { lbaAt: 2, lbaBytes: 8, lengthAt: 10, lengthBytes: 4 };

export function lbaOf(cdb: Buffer, l: Layout): number {
  if (l.lbaBytes === 3) return ((cdb[1] & 0x1f) << 16) | u16(cdb, 2);
  return l.lbaBytes === 4 ? u32(cdb, l.lbaAt) : u64(cdb, l.lbaAt);
}

export function lengthOf(cdb: Buffer, l: Layout): number {
  if (l.lengthBytes === 1) return cdb[4] === 0 ? 256 : cdb[4]; // SBC-3 5.16: READ/WRITE(6) 0 means 256
  return l.lengthBytes === 2 ? u16(cdb, l.lengthAt) : u32(cdb, l.lengthAt);
}

export const lbaOutOfRange = (bytes?: number): ScsiResponse => illegalRequest(Asc.LbaOutOfRange, bytes);

/** SBC-3 4.5: the whole range must lie within the capacity; a zero-length range may end at it. */
export function outOfRange(lu: LogicalUnit, lba: number, blocks: number): boolean {
  return lba + blocks > lu.blockCount;
}

function read(l: Layout) {
  return async (req: ScsiRequest, lu: LogicalUnit): Promise<ScsiResponse> => {
    const cdb = req.cdb;
    const lba = lbaOf(cdb, l);
    const blocks = lengthOf(cdb, l);
    const bytes = blocks * lu.blockSizeBytes;
    if (outOfRange(lu, lba, blocks)) return lbaOutOfRange(bytes);
    if (blocks > lu.transferMaxBlocks) return invalidFieldInCdb(l.lengthAt);
    if (blocks === 0) return good(undefined, 0);
    const p = await readPooled(lu.device, lba * lu.blockSizeBytes, bytes);
    // A buffer the pool does not own (small reads) has nothing to give back: no release to carry.
    return good(p.data, bytes, p.release === noRelease ? undefined : p.release);
  };
}

/** FUA in byte 1 bit 3 of WRITE(10/12/16); WRITE(6) has none. */
export function write(l: Layout) {
  return async (req: ScsiRequest, lu: LogicalUnit): Promise<ScsiResponse> => {
    const cdb = req.cdb;
    const lba = lbaOf(cdb, l);
    const blocks = lengthOf(cdb, l);
    const bytes = blocks * lu.blockSizeBytes;
    if (outOfRange(lu, lba, blocks)) return lbaOutOfRange(bytes);
    if (blocks > lu.transferMaxBlocks) return invalidFieldInCdb(l.lengthAt);
    if (blocks === 0) return good(undefined, 0);
    const fua = l.lbaBytes !== 3 && (cdb[1] & 0x08) !== 0;
    const device = lu.device;
    if (req.dataOutParts !== undefined && device.writev !== undefined) {
      const parts = partsToWrite(req.dataOutParts, bytes, lu.blockSizeBytes);
      if (parts === undefined) return illegalRequest(Asc.InvalidFieldInCommandInformationUnit, bytes);
      if (parts.length > 0) await device.writev(lba * lu.blockSizeBytes, parts, fua ? fuaOn : undefined);
      return good(undefined, bytes);
    }
    const data = dataToWrite(req.dataOut, bytes, lu.blockSizeBytes);
    if (data === undefined) return illegalRequest(Asc.InvalidFieldInCommandInformationUnit, bytes);
    if (data.length > 0) await device.write(lba * lu.blockSizeBytes, data, fua ? fuaOn : undefined);
    // commandTransferBytes stays the CDB's length, so a short Data-Out shows as an overflow residual.
    return good(undefined, bytes);
  };
}
const fuaOn = Object.freeze({ fua: true });

/**
 * The bytes a WRITE stores. More Data-Out than the CDB asks for: the CDB's length (the rest is
 * the underflow residual). Less (EDTL < transfer length, RFC 7143 11.4.5.2): the command runs on
 * what arrived, as FCP-4 9.4.2 a) describes, when that is whole blocks; a partial block would be
 * a torn write, so the command is refused and nothing is written. undefined = refuse.
 */
function dataToWrite(received: Buffer | undefined, bytes: number, blockSizeBytes: number): Buffer | undefined {
  const have = received?.length ?? 0;
  if (have >= bytes) return have === bytes ? received : received!.subarray(0, bytes);
  if (have % blockSizeBytes !== 0) return undefined;
  return received ?? emptyBuffer;
}
const emptyBuffer = Buffer.alloc(0);

/** dataToWrite for Data-Out in pieces: the leading pieces holding the bytes to store (the last one
 *  cut short where the CDB's length ends), [] for none, undefined = refuse. */
function partsToWrite(received: readonly Buffer[], bytes: number, blockSizeBytes: number): readonly Buffer[] | undefined {
  let have = 0;
  for (const part of received) have += part.length;
  if (have < bytes) return have % blockSizeBytes === 0 ? received : undefined;
  if (have === bytes) return received;
  const out: Buffer[] = [];
  for (let i = 0, left = bytes; left > 0; i++) {
    const part = received[i];
    out.push(part.length <= left ? part : part.subarray(0, left));
    left -= part.length;
  }
  return out;
}

/** SBC-3 5.29/5.31: BYTCHK 00b checks the range only; 01b compares Data-Out; 11b compares one block with each. */
export function verify(l: Layout) {
  return async (req: ScsiRequest, lu: LogicalUnit): Promise<ScsiResponse> => {
    const cdb = req.cdb;
    const byteCheck = (cdb[1] >> 1) & 0x03;
    if (byteCheck === 0x02) return invalidFieldInCdb(1, 2);
    const lba = lbaOf(cdb, l);
    const blocks = lengthOf(cdb, l);
    const expectBytes = byteCheck === 0 ? 0 : byteCheck === 1 ? blocks * lu.blockSizeBytes : lu.blockSizeBytes;
    const transferBytes = blocks === 0 ? 0 : expectBytes;
    if (outOfRange(lu, lba, blocks)) return lbaOutOfRange(transferBytes);
    if (blocks > lu.transferMaxBlocks) return invalidFieldInCdb(l.lengthAt);
    if (blocks === 0 || byteCheck === 0) return good(undefined, transferBytes);
    const received = req.dataOut;
    if (received === undefined || received.length < expectBytes) {
      return illegalRequest(Asc.InvalidFieldInCommandInformationUnit, transferBytes);
    }
    const stored = await lu.device.read(lba * lu.blockSizeBytes, blocks * lu.blockSizeBytes);
    const offset = firstDifference(stored, received, byteCheck === 1 ? stored.length : lu.blockSizeBytes);
    if (offset === undefined) return good(undefined, transferBytes);
    // SBC-3 5.29: INFORMATION = offset from the start of the Data-Out buffer of the first miscompare.
    return checkCondition(
      { key: SenseKey.Miscompare, code: Asc.MiscompareDuringVerify, information: offset },
      transferBytes,
    );
  };
}

/** Offset of the first byte where stored differs from expected (expected repeats every `period` bytes). */
export function firstDifference(stored: Buffer, expected: Buffer, period: number): number | undefined {
  for (let base = 0; base < stored.length; base += period) {
    const a = stored.subarray(base, base + period);
    const b = expected.subarray(0, period);
    if (a.equals(b)) continue;
    for (let i = 0; i < period; i++) if (a[i] !== b[i]) return period === stored.length ? base + i : i;
  }
  return undefined;
}

/** SBC-3 5.22/5.23: fdatasync covers every range, so the range is only checked. IMMED is honoured
 *  by completing after the flush anyway (allowed: GOOD means the cache was synchronized). */
function synchronizeCache(l: Layout) {
  return async (req: ScsiRequest, lu: LogicalUnit): Promise<ScsiResponse> => {
    const cdb = req.cdb;
    const lba = lbaOf(cdb, l);
    const blocks = l.lengthBytes === 2 ? u16(cdb, l.lengthAt) : u32(cdb, l.lengthAt);
    if (outOfRange(lu, lba, blocks)) return lbaOutOfRange(); // 0 blocks: from lba to the end
    await lu.device.flush();
    return goodStatus;
  };
}

/** SBC-3 5.15/5.16: with PMI 0 the LBA field must be 0; with PMI 1 it must lie on the medium.
 *  Returns the refusal, or undefined when the CDB is acceptable. */
function capacityCdbRefusal(lu: LogicalUnit, pmi: boolean, lba: number): ScsiResponse | undefined {
  if (!pmi && lba !== 0) return invalidFieldInCdb(2);
  if (pmi && lba > lu.blockCount - 1) return lbaOutOfRange();
  return undefined;
}

function readCapacity10(req: ScsiRequest, lu: LogicalUnit): ScsiResponse {
  const cdb = req.cdb;
  const refusal = capacityCdbRefusal(lu, (cdb[8] & 0x01) !== 0, u32(cdb, 2));
  if (refusal) return refusal;
  const lastLba = lu.blockCount - 1;
  const data = Buffer.alloc(8);
  data.writeUInt32BE(lastLba > 0xfffffffe ? 0xffffffff : lastLba, 0);
  data.writeUInt32BE(lu.blockSizeBytes, 4);
  return good(data);
}

/**
 * LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (SBC-4 5.20.2): 0, one logical block per physical
 * block. A volume file has no physical block of its own (the filesystem's, here and at the peer
 * site, may differ), and a write of one logical block is never torn against its neighbours. Hosts
 * still align to 4 KiB from the Block Limits page: OPTIMAL TRANSFER LENGTH GRANULARITY (Linux
 * io_min) and OPTIMAL UNMAP GRANULARITY with UGAVALID (discard granularity).
 */
const physicalBlockExponent = 0;

function readCapacity16(req: ScsiRequest, lu: LogicalUnit): ScsiResponse {
  const cdb = req.cdb;
  const refusal = capacityCdbRefusal(lu, (cdb[14] & 0x01) !== 0, u64(cdb, 2));
  if (refusal) return refusal;
  const lastLba = lu.blockCount - 1;
  const data = Buffer.alloc(32);
  data.writeBigUInt64BE(BigInt(lastLba), 0);
  data.writeUInt32BE(lu.blockSizeBytes, 8);
  data[13] = physicalBlockExponent;
  // bytes 14-15: LBPME and LBPRZ (thin; deallocated blocks read zeros: thin-provisioning.ts), LOWEST ALIGNED LBA 0.
  data[14] = 0x80 | 0x40;
  return allocated(data, u32(cdb, 10));
}

const readFlags = 0x1e; // DPO, FUA, RARC, FUA_NV; RDPROTECT unsupported
const writeFlags = 0x1a; // DPO, FUA, FUA_NV; WRPROTECT unsupported
const verifyFlags = 0x16; // DPO, BYTCHK; VRPROTECT unsupported
const group = 0x1f;
const ioTimeouts = { nominal: 0, recommended: 30 };

export const sbcCommands: readonly CommandSpec[] = [
  { opcode: 0x08, name: 'READ(6)', usage: usage(0x08, 0x1f, 0xff, 0xff, 0xff, 0), handler: read(layout6), timeoutSeconds: ioTimeouts, mediumError: Asc.UnrecoveredReadError },
  { opcode: 0x0a, name: 'WRITE(6)', usage: usage(0x0a, 0x1f, 0xff, 0xff, 0xff, 0), handler: write(layout6), timeoutSeconds: ioTimeouts, mediumError: Asc.WriteError },
  {
    opcode: 0x25,
    name: 'READ CAPACITY(10)',
    usage: usage(0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0),
    handler: readCapacity10,
  },
  {
    opcode: 0x28,
    name: 'READ(10)',
    usage: usage(0x28, readFlags, 0xff, 0xff, 0xff, 0xff, group, 0xff, 0xff, 0),
    handler: read(layout10),
    mediumError: Asc.UnrecoveredReadError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0x2a,
    name: 'WRITE(10)',
    usage: usage(0x2a, writeFlags, 0xff, 0xff, 0xff, 0xff, group, 0xff, 0xff, 0),
    handler: write(layout10),
    mediumError: Asc.WriteError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0x2f,
    name: 'VERIFY(10)',
    usage: usage(0x2f, verifyFlags, 0xff, 0xff, 0xff, 0xff, group, 0xff, 0xff, 0),
    handler: verify(layout10),
    mediumError: Asc.UnrecoveredReadError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0x35,
    name: 'SYNCHRONIZE CACHE(10)',
    usage: usage(0x35, 0x06, 0xff, 0xff, 0xff, 0xff, group, 0xff, 0xff, 0),
    handler: synchronizeCache(layout10),
    mediumError: Asc.WriteError,
    timeoutSeconds: { nominal: 0, recommended: 60 },
  },
  {
    opcode: 0x88,
    name: 'READ(16)',
    usage: usage(0x88, readFlags, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, group, 0),
    handler: read(layout16),
    mediumError: Asc.UnrecoveredReadError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0x8a,
    name: 'WRITE(16)',
    usage: usage(0x8a, writeFlags, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, group, 0),
    handler: write(layout16),
    mediumError: Asc.WriteError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0x8f,
    name: 'VERIFY(16)',
    usage: usage(0x8f, verifyFlags, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, group, 0),
    handler: verify(layout16),
    mediumError: Asc.UnrecoveredReadError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0x91,
    name: 'SYNCHRONIZE CACHE(16)',
    usage: usage(0x91, 0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, group, 0),
    handler: synchronizeCache(layout16),
    mediumError: Asc.WriteError,
    timeoutSeconds: { nominal: 0, recommended: 60 },
  },
  {
    opcode: 0x9e,
    serviceAction: 0x10,
    name: 'READ CAPACITY(16)',
    usage: usage(0x9e, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0),
    handler: readCapacity16,
  },
  {
    opcode: 0xa8,
    name: 'READ(12)',
    usage: usage(0xa8, readFlags, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, group, 0),
    handler: read(layout12),
    mediumError: Asc.UnrecoveredReadError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0xaa,
    name: 'WRITE(12)',
    usage: usage(0xaa, writeFlags, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, group, 0),
    handler: write(layout12),
    mediumError: Asc.WriteError,
    timeoutSeconds: ioTimeouts,
  },
];
