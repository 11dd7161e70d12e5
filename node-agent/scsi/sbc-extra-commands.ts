// The rest of the direct-access command set (SBC-4 5): WRITE AND VERIFY 10/12/16, VERIFY(12),
// PRE-FETCH 10/16, START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL and READ DEFECT DATA 10/12, for
// a non-removable disk that is always ready and keeps no defect list.
import { u16, u32, usage } from './cdb.ts';
import type { CommandSpec, LogicalUnit } from './command-table.ts';
import { firstDifference, lbaOf, layout10, layout12, layout16, lbaOutOfRange, outOfRange, verify, write, type Layout } from './sbc-commands.ts';
import { allocated } from './spc-commands.ts';
import { Asc, SenseKey, checkCondition, goodStatus, invalidFieldInCdb } from './sense.ts';
import { ScsiStatus, type ScsiRequest, type ScsiResponse } from './types.ts';

/**
 * SBC-4 5.46-5.48: WRITE exactly as WRITE does (ranges, residuals, torn blocks), then with
 * BYTCHK 01b the blocks are read back and compared with the Data-Out buffer.
 */
function writeAndVerify(l: Layout) {
  const writeBlocks = write(l);
  return async (req: ScsiRequest, lu: LogicalUnit): Promise<ScsiResponse> => {
    const written = await writeBlocks(req, lu);
    const data = req.dataOut;
    if (written.status !== ScsiStatus.Good || (req.cdb[1] & 0x02) === 0 || data === undefined) return written;
    const bytes = Math.min(data.length, written.commandTransferBytes ?? 0);
    const wholeBytes = bytes - (bytes % lu.blockSizeBytes);
    if (wholeBytes === 0) return written;
    const stored = await lu.device.read(lbaOf(req.cdb, l) * lu.blockSizeBytes, wholeBytes);
    const at = firstDifference(stored, data.subarray(0, wholeBytes), wholeBytes);
    if (at === undefined) return written;
    return checkCondition({ key: SenseKey.Miscompare, code: Asc.MiscompareDuringVerify, information: at }, written.commandTransferBytes);
  };
}

const conditionMet: ScsiResponse = Object.freeze({ status: ScsiStatus.ConditionMet });

/**
 * SBC-4 5.9/5.10: length 0 means "to the last LBA". The page cache is the cache: a range up to
 * MAXIMUM TRANSFER LENGTH is read into it and answered CONDITION MET; a longer one does not fit,
 * which SBC answers with GOOD. IMMED is honoured by completing after the read anyway.
 */
function preFetch(l: Layout) {
  return async (req: ScsiRequest, lu: LogicalUnit): Promise<ScsiResponse> => {
    const cdb = req.cdb;
    const lba = lbaOf(cdb, l);
    const field = l.lengthBytes === 2 ? u16(cdb, l.lengthAt) : u32(cdb, l.lengthAt);
    if (outOfRange(lu, lba, field)) return lbaOutOfRange();
    const blocks = field === 0 ? lu.blockCount - lba : field;
    if (blocks > lu.transferMaxBlocks) return goodStatus;
    if (blocks > 0) await lu.device.read(lba * lu.blockSizeBytes, blocks * lu.blockSizeBytes);
    return conditionMet;
  };
}

/** Highest POWER CONDITION MODIFIER per POWER CONDITION (SBC-4 table 100); absent = reserved. */
const powerConditionModifierMax: ReadonlyMap<number, number> = new Map([
  [0x0, 0], // START_VALID: START and LOEJ apply
  [0x1, 0], // ACTIVE
  [0x2, 2], // IDLE (a, b, c)
  [0x3, 1], // STANDBY (z, y)
  [0x7, 0], // LU_CONTROL
  [0xa, 0], // FORCE_IDLE_0
  [0xb, 0], // FORCE_STANDBY_0
]);

/**
 * SBC-4 5.27. The unit never stops and there is no medium to eject: a valid request is accepted
 * and the unit stays ready. Stopping (START 0, NO_FLUSH 0) flushes the write-back cache first,
 * as a real disk would before spinning down.
 */
async function startStopUnit(req: ScsiRequest, lu: LogicalUnit): Promise<ScsiResponse> {
  const cdb = req.cdb;
  const condition = cdb[4] >> 4;
  const modifierMax = powerConditionModifierMax.get(condition);
  if (modifierMax === undefined) return invalidFieldInCdb(4, 7);
  if ((cdb[3] & 0x0f) > modifierMax) return invalidFieldInCdb(3, 3);
  const stop = condition === 0 && (cdb[4] & 0x01) === 0;
  const noFlush = (cdb[4] & 0x04) !== 0;
  if (stop && !noFlush) await lu.device.flush();
  return goodStatus;
}

/** SBC-4 5.11: nothing is removable, so PREVENT 00b and 01b are accepted and change nothing. */
function preventAllowMediumRemoval(): ScsiResponse {
  return goodStatus;
}

/** DEFECT LIST FORMAT 111b is reserved (SBC-4 table 6). */
const reservedDefectListFormat = 0x07;

/**
 * SBC-4 5.19/5.20: the defect lists are empty. The header echoes the requested format and sets
 * PLISTV/GLISTV for the lists asked for, each valid and empty.
 */
function readDefectData(twelve: boolean) {
  return (req: ScsiRequest): ScsiResponse => {
    const cdb = req.cdb;
    const request = twelve ? cdb[1] : cdb[2];
    if ((request & 0x07) === reservedDefectListFormat) return invalidFieldInCdb(twelve ? 1 : 2, 2);
    const header = Buffer.alloc(twelve ? 8 : 4);
    header[1] = request & 0x1f; // PLISTV, GLISTV, DEFECT LIST FORMAT; DEFECT LIST LENGTH 0
    return allocated(header, twelve ? u32(cdb, 6) : u16(cdb, 7));
  };
}

const group = 0x1f;
const lba4 = [0xff, 0xff, 0xff, 0xff];
const lba8 = [...lba4, ...lba4];
const writeVerifyFlags = 0x12; // DPO, BYTCHK 01b; WRPROTECT and BYTCHK 1xb refused
const verifyFlags = 0x16; // DPO, BYTCHK; VRPROTECT unsupported
const ioTimeouts = { nominal: 0, recommended: 30 };

export const sbcExtraCommands: readonly CommandSpec[] = [
  {
    opcode: 0x1b,
    name: 'START STOP UNIT',
    usage: usage(0x1b, 0x01, 0, 0x0f, 0xf7, 0),
    handler: startStopUnit,
    timeoutSeconds: { nominal: 0, recommended: 60 },
  },
  { opcode: 0x1e, name: 'PREVENT ALLOW MEDIUM REMOVAL', usage: usage(0x1e, 0, 0, 0, 0x01, 0), handler: preventAllowMediumRemoval },
  {
    opcode: 0x2e,
    name: 'WRITE AND VERIFY(10)',
    usage: usage(0x2e, writeVerifyFlags, ...lba4, group, 0xff, 0xff, 0),
    handler: writeAndVerify(layout10),
    mediumError: Asc.WriteError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0x34,
    name: 'PRE-FETCH(10)',
    usage: usage(0x34, 0x02, ...lba4, group, 0xff, 0xff, 0),
    handler: preFetch(layout10),
    mediumError: Asc.UnrecoveredReadError,
    timeoutSeconds: ioTimeouts,
  },
  { opcode: 0x37, name: 'READ DEFECT DATA(10)', usage: usage(0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0), handler: readDefectData(false) },
  {
    opcode: 0x8e,
    name: 'WRITE AND VERIFY(16)',
    usage: usage(0x8e, writeVerifyFlags, ...lba8, 0xff, 0xff, 0xff, 0xff, group, 0),
    handler: writeAndVerify(layout16),
    mediumError: Asc.WriteError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0x90,
    name: 'PRE-FETCH(16)',
    usage: usage(0x90, 0x02, ...lba8, 0xff, 0xff, 0xff, 0xff, group, 0),
    handler: preFetch(layout16),
    mediumError: Asc.UnrecoveredReadError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0xae,
    name: 'WRITE AND VERIFY(12)',
    usage: usage(0xae, writeVerifyFlags, ...lba4, 0xff, 0xff, 0xff, 0xff, group, 0),
    handler: writeAndVerify(layout12),
    mediumError: Asc.WriteError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0xaf,
    name: 'VERIFY(12)',
    usage: usage(0xaf, verifyFlags, ...lba4, 0xff, 0xff, 0xff, 0xff, group, 0),
    handler: verify(layout12),
    mediumError: Asc.UnrecoveredReadError,
    timeoutSeconds: ioTimeouts,
  },
  {
    opcode: 0xb7,
    name: 'READ DEFECT DATA(12)',
    usage: usage(0xb7, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),
    handler: readDefectData(true),
  },
];
