// COMPARE AND WRITE (SBC-4 5.3), ORWRITE(16) (SBC-4 5.10) and WRITE ATOMIC(16) (SBC-4 5.48):
// read-compare-write, read-or-write and an all-or-nothing write that no other command on the
// logical unit may interleave with. The specs are `exclusive`: the task set runs them as ORDERED tasks, after every earlier command and before
// any later one, so READ/WRITE pay nothing while none is queued.
import { u16, u32, u64, usage } from './cdb.ts';
import { atomicMaxBlocks, compareAndWriteMaxBlocks } from './block-limits.ts';
import type { CommandSpec, LogicalUnit } from './command-table.ts';
import { firstDifference, lbaOutOfRange, outOfRange } from './sbc-commands.ts';
import { Asc, SenseKey, checkCondition, good, illegalRequest, invalidFieldInCdb } from './sense.ts';
import type { ScsiRequest, ScsiResponse } from './types.ts';

const fuaOn = Object.freeze({ fua: true });

/**
 * The Data-Out buffer holds the verify data then the write data, NUMBER OF LOGICAL BLOCKS each.
 * A Data-Out of another size makes the command ambiguous: refused before anything is read, with
 * the NUMBER OF LOGICAL BLOCKS field pointed at (libiscsi CompareAndWrite.InvalidDataOutSize).
 */
async function compareAndWrite(req: ScsiRequest, lu: LogicalUnit): Promise<ScsiResponse> {
  const cdb = req.cdb;
  const lba = u64(cdb, 2);
  const blocks = cdb[13];
  const bytes = blocks * lu.blockSizeBytes;
  const transferBytes = 2 * bytes;
  if (outOfRange(lu, lba, blocks)) return lbaOutOfRange(transferBytes);
  if (blocks > compareAndWriteMaxBlocks) return invalidFieldInCdb(13);
  const data = req.dataOut;
  if (req.expectedDataLength !== transferBytes || (data?.length ?? 0) < transferBytes) return invalidFieldInCdb(13);
  if (blocks === 0 || data === undefined) return good(undefined, 0); // SBC-4 5.3: not an error
  const offsetBytes = lba * lu.blockSizeBytes;
  const stored = await lu.device.read(offsetBytes, bytes);
  const at = firstDifference(stored, data.subarray(0, bytes), bytes);
  if (at !== undefined) {
    // SBC-4 5.3: INFORMATION = offset of the first differing byte in the verify data; nothing is written.
    return checkCondition({ key: SenseKey.Miscompare, code: Asc.MiscompareDuringVerify, information: at }, transferBytes);
  }
  const fua = (cdb[1] & 0x08) !== 0;
  await lu.device.write(offsetBytes, data.subarray(bytes, transferBytes), fua ? fuaOn : undefined);
  return good(undefined, transferBytes);
}

/** ORWRITE(16) with ORPROTECT 0: each stored byte becomes stored OR Data-Out. */
async function orWrite(req: ScsiRequest, lu: LogicalUnit): Promise<ScsiResponse> {
  const cdb = req.cdb;
  const lba = u64(cdb, 2);
  const blocks = u32(cdb, 10);
  const bytes = blocks * lu.blockSizeBytes;
  if (outOfRange(lu, lba, blocks)) return lbaOutOfRange(bytes);
  if (blocks > lu.transferMaxBlocks) return invalidFieldInCdb(10);
  if (blocks === 0) return good(undefined, 0);
  const data = req.dataOut;
  if (data === undefined || data.length < bytes) return illegalRequest(Asc.InvalidFieldInCommandInformationUnit, bytes);
  const offsetBytes = lba * lu.blockSizeBytes;
  const merged = await lu.device.read(offsetBytes, bytes);
  for (let i = 0; i < bytes; i++) merged[i] |= data[i];
  const fua = (cdb[1] & 0x08) !== 0;
  await lu.device.write(offsetBytes, merged, fua ? fuaOn : undefined);
  return good(undefined, bytes);
}

/**
 * WRITE ATOMIC(16) (SBC-4 5.48, atomic writes 4.29): no other command sees the range half written,
 * because the command runs alone on the logical unit. TRANSFER LENGTH above MAXIMUM ATOMIC TRANSFER
 * LENGTH is refused; ATOMIC BOUNDARY is refused through the usage data (MAXIMUM ATOMIC BOUNDARY
 * SIZE 0). A Data-Out shorter than the transfer length is refused whole: writing what arrived would
 * be the partial write the command exists to rule out.
 */
async function writeAtomic(req: ScsiRequest, lu: LogicalUnit): Promise<ScsiResponse> {
  const cdb = req.cdb;
  const lba = u64(cdb, 2);
  const blocks = u16(cdb, 12);
  const bytes = blocks * lu.blockSizeBytes;
  if (outOfRange(lu, lba, blocks)) return lbaOutOfRange(bytes);
  if (blocks > atomicMaxBlocks(lu)) return invalidFieldInCdb(12);
  if (blocks === 0) return good(undefined, 0); // SBC-4 5.48: not an error
  const data = req.dataOut;
  if (data === undefined || data.length < bytes) return illegalRequest(Asc.InvalidFieldInCommandInformationUnit, bytes);
  const fua = (cdb[1] & 0x08) !== 0;
  await lu.device.write(lba * lu.blockSizeBytes, data.length === bytes ? data : data.subarray(0, bytes), fua ? fuaOn : undefined);
  return good(undefined, bytes);
}

const lba8 = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
const group = 0x1f;
const ioTimeouts = { nominal: 0, recommended: 30 };

export const compareAndWriteCommands: readonly CommandSpec[] = [
  {
    opcode: 0x89,
    name: 'COMPARE AND WRITE',
    // DPO, FUA; WRPROTECT unsupported, FUA_NV obsolete.
    usage: usage(0x89, 0x18, ...lba8, 0, 0, 0, 0xff, group, 0),
    handler: compareAndWrite,
    exclusive: true,
    mediumError: Asc.WriteError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0x8b,
    name: 'ORWRITE(16)',
    // DPO, FUA; ORPROTECT unsupported.
    usage: usage(0x8b, 0x18, ...lba8, 0xff, 0xff, 0xff, 0xff, group, 0),
    handler: orWrite,
    exclusive: true,
    mediumError: Asc.WriteError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0x9c,
    name: 'WRITE ATOMIC(16)',
    // DPO, FUA; WRPROTECT unsupported, ATOMIC BOUNDARY (bytes 10-11) unsupported.
    usage: usage(0x9c, 0x18, ...lba8, 0, 0, 0xff, 0xff, group, 0),
    handler: writeAtomic,
    exclusive: true,
    mediumError: Asc.WriteError,
    timeoutSeconds: ioTimeouts,
  },
];
