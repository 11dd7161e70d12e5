// Primary commands every device type shares (SPC-4 6): TEST UNIT READY, INQUIRY, REPORT LUNS,
// REQUEST SENSE, MODE SENSE/SELECT and REPORT SUPPORTED OPERATION CODES. Each spec carries its
// CDB usage data; the target has already refused bits outside it before a handler runs.
import { u16, u32, usage } from './cdb.ts';
import type { CommandSpec, LogicalUnit, TargetContext } from './command-table.ts';
import { standardInquiry, vpdPageFor } from './inquiry.ts';
import { checkModeSelect, diskModePages, modeSenseData } from './mode-pages.ts';
import { reportSupportedOperationCodes } from './report-opcodes.ts';
import {
  Asc,
  SenseKey,
  buildFixedSense,
  checkCondition,
  good,
  goodStatus,
  invalidFieldInCdb,
} from './sense.ts';
import type { ScsiRequest, ScsiResponse } from './types.ts';

/** Data-In truncated to the allocation length (SPC-4 4.2.5.6); never an error. */
export function allocated(data: Buffer, allocationLength: number): ScsiResponse {
  if (allocationLength === 0) return goodStatus;
  return good(data.length > allocationLength ? data.subarray(0, allocationLength) : data);
}

function inquiry(req: ScsiRequest, lu: LogicalUnit | undefined, target: TargetContext): ScsiResponse {
  const cdb = req.cdb;
  const evpd = (cdb[1] & 0x01) !== 0;
  const pageCode = cdb[2];
  const allocationLength = u16(cdb, 3);
  if (!evpd) {
    if (pageCode !== 0) return invalidFieldInCdb(2);
    return allocated(standardInquiry(target, lu !== undefined), allocationLength);
  }
  // VPD pages describe a logical unit; there is none to describe at a missing LUN.
  if (!lu) return checkCondition({ key: SenseKey.IllegalRequest, code: Asc.LogicalUnitNotSupported });
  const page = vpdPageFor(pageCode, lu, target, target.portOf(req.nexus));
  if (!page) return invalidFieldInCdb(2);
  return allocated(page, allocationLength);
}

/** SAM-5 4.7.7: single level LUN structure, peripheral (< 256) or flat space addressing. */
export function encodeLun(lun: number): Buffer {
  const b = Buffer.alloc(8);
  if (lun < 256) b[1] = lun;
  else b.writeUInt16BE(0x4000 | (lun & 0x3fff), 0);
  return b;
}

function reportLuns(req: ScsiRequest, _lu: LogicalUnit | undefined, target: TargetContext): ScsiResponse {
  const cdb = req.cdb;
  const selectReport = cdb[2];
  const allocationLength = u32(cdb, 6);
  // SPC-4 6.33: 00h all logical units, 01h well known ones only (we have none), 02h all.
  if (selectReport > 0x02) return invalidFieldInCdb(2);
  // SPC-4 6.33: an allocation length under 16 bytes is refused.
  if (allocationLength < 16) return invalidFieldInCdb(6);
  const luns = selectReport === 0x01 ? [] : target.lunNumbers();
  const data = Buffer.alloc(8 + 8 * luns.length);
  data.writeUInt32BE(8 * luns.length, 0);
  luns.forEach((lun, i) => encodeLun(lun).copy(data, 8 + 8 * i));
  return allocated(data, allocationLength);
}

function testUnitReady(): ScsiResponse {
  return goodStatus;
}

function requestSense(req: ScsiRequest, lu: LogicalUnit | undefined, target: TargetContext): ScsiResponse {
  const allocationLength = req.cdb[4];
  // SPC-4 6.39: at a missing LUN, GOOD with sense data saying so.
  if (!lu) {
    return allocated(buildFixedSense({ key: SenseKey.IllegalRequest, code: Asc.LogicalUnitNotSupported }), allocationLength);
  }
  const ua = target.takeUnitAttention(req.nexus.id, lu.lun);
  const sense = ua
    ? buildFixedSense({ key: SenseKey.UnitAttention, code: ua })
    : buildFixedSense({ key: SenseKey.NoSense, code: Asc.NoAdditionalSense });
  return allocated(sense, allocationLength);
}

function modeSense(tenByte: boolean) {
  return (req: ScsiRequest, lu: LogicalUnit): ScsiResponse => {
    const cdb = req.cdb;
    const result = modeSenseData(
      {
        tenByte,
        pageControl: cdb[2] >> 6,
        pageCode: cdb[2] & 0x3f,
        subpageCode: cdb[3],
        disableBlockDescriptors: (cdb[1] & 0x08) !== 0,
        longLba: tenByte && (cdb[1] & 0x10) !== 0,
        blockCount: lu.blockCount,
        blockSizeBytes: lu.blockSizeBytes,
      },
      diskModePages,
    );
    if (!Buffer.isBuffer(result)) return result;
    return allocated(result, tenByte ? u16(cdb, 7) : cdb[4]);
  };
}

function modeSelect(tenByte: boolean) {
  return (req: ScsiRequest, lu: LogicalUnit): ScsiResponse => {
    const cdb = req.cdb;
    const listLength = tenByte ? u16(cdb, 7) : cdb[4];
    if (listLength === 0) return goodStatus;
    // PF 0 would mean vendor-specific pages; we only read the standard format.
    if ((cdb[1] & 0x10) === 0) return invalidFieldInCdb(1, 4);
    const received = req.dataOut ?? Buffer.alloc(0);
    if (received.length < listLength) {
      return checkCondition({ key: SenseKey.IllegalRequest, code: Asc.ParameterListLengthError }, listLength);
    }
    const refusal = checkModeSelect(
      { tenByte, parameters: received.subarray(0, listLength), blockCount: lu.blockCount, blockSizeBytes: lu.blockSizeBytes },
      diskModePages,
    );
    return refusal ?? good(undefined, listLength);
  };
}

export const spcCommands: readonly CommandSpec[] = [
  { opcode: 0x00, name: 'TEST UNIT READY', usage: usage(0x00, 0, 0, 0, 0, 0), handler: testUnitReady },
  {
    opcode: 0x03,
    name: 'REQUEST SENSE',
    // DESC (byte 1 bit 0) is refused: descriptor-format sense is not implemented.
    usage: usage(0x03, 0x00, 0, 0, 0xff, 0),
    onMissingLun: true,
    skipsUnitAttention: true,
    handler: requestSense,
  },
  {
    opcode: 0x12,
    name: 'INQUIRY',
    usage: usage(0x12, 0x01, 0xff, 0xff, 0xff, 0),
    onMissingLun: true,
    skipsUnitAttention: true,
    handler: inquiry,
  },
  { opcode: 0x15, name: 'MODE SELECT(6)', usage: usage(0x15, 0x10, 0, 0, 0xff, 0), handler: modeSelect(false) },
  { opcode: 0x1a, name: 'MODE SENSE(6)', usage: usage(0x1a, 0x08, 0xff, 0xff, 0xff, 0), handler: modeSense(false) },
  {
    opcode: 0x55,
    name: 'MODE SELECT(10)',
    usage: usage(0x55, 0x10, 0, 0, 0, 0, 0, 0xff, 0xff, 0),
    handler: modeSelect(true),
  },
  {
    opcode: 0x5a,
    name: 'MODE SENSE(10)',
    usage: usage(0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0),
    handler: modeSense(true),
  },
  {
    opcode: 0xa0,
    name: 'REPORT LUNS',
    usage: usage(0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0),
    onMissingLun: true,
    skipsUnitAttention: true,
    handler: reportLuns,
  },
  {
    opcode: 0xa3,
    serviceAction: 0x0c,
    name: 'REPORT SUPPORTED OPERATION CODES',
    usage: usage(0xa3, 0x1f, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),
    handler: (req, _lu, target) => reportSupportedOperationCodes(req.cdb, target.commands),
  },
];
