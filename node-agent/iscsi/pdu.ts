// The iSCSI PDU codec (RFC 7143 §11): decoders for every initiator PDU, encoders for every target PDU,
// and framing with padding and CRC32C digests. Pure: Buffers in, Buffers out; decoded fields are
// views or numbers, never copies of data segments.
import { crc32c } from '@node-rs/crc32';
import { bhsBytes, digestBytes, InitiatorOpcode, tagNone, TargetOpcode } from './constants.ts';
import type { TaskAttribute } from '../scsi/types.ts';

/** One PDU as it came off the wire: header, additional header segments and the unpadded data. */
export interface Pdu {
  readonly bhs: Buffer;
  /** Additional header segments (TotalAHSLength * 4 bytes), possibly empty. */
  readonly ahs: Buffer;
  readonly data: Buffer;
  /** Present when the data segment spans socket reads: its pieces back to back, views into the
   *  reads (`data` joins them, once, when read). Data-Out is stored from them without a join. */
  readonly dataParts?: readonly Buffer[];
}

/** The data segment as pieces, without joining them. */
export function dataPartsOf(pdu: Pdu): readonly Buffer[] {
  return pdu.dataParts ?? [pdu.data];
}

export interface Digests {
  readonly header: boolean;
  readonly data: boolean;
}
export const noDigests: Digests = { header: false, data: false };

export function opcodeOf(bhs: Buffer): number {
  return bhs[0] & 0x3f;
}
export function isImmediate(bhs: Buffer): boolean {
  return (bhs[0] & 0x40) !== 0;
}
export function initiatorTaskTagOf(bhs: Buffer): number {
  return bhs.readUInt32BE(16);
}
export function dataSegmentLengthOf(bhs: Buffer): number {
  return (bhs[5] << 16) | (bhs[6] << 8) | bhs[7];
}
export function paddingOf(lengthBytes: number): number {
  return (4 - (lengthBytes & 3)) & 3;
}

/** Serial number arithmetic on 32-bit sequence numbers (RFC 1982, as RFC 7143 §4.2.2.1 requires). */
export function snLess(a: number, b: number): boolean {
  return a !== b && ((b - a) >>> 0) < 0x80000000;
}
export function snAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}
/** a within [lo, hi] in serial arithmetic. */
export function snWithin(a: number, lo: number, hi: number): boolean {
  return ((a - lo) >>> 0) <= ((hi - lo) >>> 0);
}

// ---- LUN (SAM-5 4.7: peripheral device and flat space addressing) ----

/** LUN number for an encoding this target does not serve (no LUN has it). */
export const lunUnsupported = 0xffff;

export function decodeLun(bhs: Buffer, at = 8): number {
  const method = bhs[at] >> 6;
  if (method === 0 && (bhs[at] & 0x3f) === 0) return bhs[at + 1];
  if (method === 1) return ((bhs[at] & 0x3f) << 8) | bhs[at + 1];
  return lunUnsupported;
}
export function encodeLun(lun: number, into: Buffer, at = 8): void {
  if (lun < 256) {
    into[at] = 0;
    into[at + 1] = lun;
  } else {
    into[at] = 0x40 | ((lun >> 8) & 0x3f);
    into[at + 1] = lun & 0xff;
  }
}

// ---- initiator PDUs ----

export interface ScsiCommandPdu {
  readonly immediate: boolean;
  readonly final: boolean;
  readonly read: boolean;
  readonly write: boolean;
  readonly attribute: TaskAttribute;
  readonly lun: number;
  readonly initiatorTaskTag: number;
  readonly expectedDataLength: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
  readonly cdb: Buffer;
  readonly expectedReadLength?: number;
}

const attributes: readonly TaskAttribute[] = ['untagged', 'simple', 'ordered', 'head-of-queue', 'aca'];

/** AHS types (RFC 7143 §11.2.2). */
const ahsExtendedCdb = 1;
const ahsBidiReadLength = 2;

export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string };

export function decodeScsiCommand(pdu: Pdu): Decoded<ScsiCommandPdu> {
  const b = pdu.bhs;
  let cdb = b.subarray(32, 48);
  let expectedReadLength: number | undefined;
  let at = 0;
  while (at < pdu.ahs.length) {
    if (at + 4 > pdu.ahs.length) return { ok: false, reason: 'truncated AHS' };
    const len = pdu.ahs.readUInt16BE(at);
    const type = pdu.ahs[at + 2];
    const end = at + 3 + len;
    if (end > pdu.ahs.length) return { ok: false, reason: 'AHS longer than TotalAHSLength' };
    if (type === ahsExtendedCdb) {
      if (len < 2) return { ok: false, reason: 'empty extended CDB AHS' };
      // AHSLength counts the reserved byte, then the CDB bytes beyond the first 16 (§11.2.2.3).
      cdb = Buffer.concat([b.subarray(32, 48), pdu.ahs.subarray(at + 4, end)]);
    } else if (type === ahsBidiReadLength) {
      if (len !== 5) return { ok: false, reason: 'bad bidirectional read length AHS' };
      expectedReadLength = pdu.ahs.readUInt32BE(at + 4);
    } else {
      return { ok: false, reason: `unknown AHS type ${type}` };
    }
    at = end + paddingOf(end - at);
  }
  const attr = b[1] & 0x07;
  if (attr >= attributes.length) return { ok: false, reason: `bad task attribute ${attr}` };
  return {
    ok: true,
    value: {
      immediate: isImmediate(b),
      final: (b[1] & 0x80) !== 0,
      read: (b[1] & 0x40) !== 0,
      write: (b[1] & 0x20) !== 0,
      attribute: attributes[attr],
      lun: decodeLun(b),
      initiatorTaskTag: b.readUInt32BE(16),
      expectedDataLength: b.readUInt32BE(20),
      cmdSN: b.readUInt32BE(24),
      expStatSN: b.readUInt32BE(28),
      cdb,
      expectedReadLength,
    },
  };
}

export interface DataOutPdu {
  readonly final: boolean;
  readonly lun: number;
  readonly initiatorTaskTag: number;
  readonly targetTransferTag: number;
  readonly expStatSN: number;
  readonly dataSN: number;
  readonly bufferOffset: number;
  readonly dataLength: number;
}
/** The data itself stays in the PDU (dataPartsOf): it may be in pieces. */
export function decodeDataOut(pdu: Pdu): DataOutPdu {
  const b = pdu.bhs;
  return {
    final: (b[1] & 0x80) !== 0,
    lun: decodeLun(b),
    initiatorTaskTag: b.readUInt32BE(16),
    targetTransferTag: b.readUInt32BE(20),
    expStatSN: b.readUInt32BE(28),
    dataSN: b.readUInt32BE(36),
    bufferOffset: b.readUInt32BE(40),
    dataLength: dataSegmentLengthOf(b),
  };
}

export interface NopOutPdu {
  readonly immediate: boolean;
  readonly lun: number;
  readonly initiatorTaskTag: number;
  readonly targetTransferTag: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
  readonly data: Buffer;
}
export function decodeNopOut(pdu: Pdu): NopOutPdu {
  const b = pdu.bhs;
  return {
    immediate: isImmediate(b),
    lun: decodeLun(b),
    initiatorTaskTag: b.readUInt32BE(16),
    targetTransferTag: b.readUInt32BE(20),
    cmdSN: b.readUInt32BE(24),
    expStatSN: b.readUInt32BE(28),
    data: pdu.data,
  };
}

export interface TaskManagementPdu {
  readonly immediate: boolean;
  readonly function: number;
  readonly lun: number;
  readonly initiatorTaskTag: number;
  readonly referencedTaskTag: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
  readonly refCmdSN: number;
}
export function decodeTaskManagement(pdu: Pdu): TaskManagementPdu {
  const b = pdu.bhs;
  return {
    immediate: isImmediate(b),
    function: b[1] & 0x7f,
    lun: decodeLun(b),
    initiatorTaskTag: b.readUInt32BE(16),
    referencedTaskTag: b.readUInt32BE(20),
    cmdSN: b.readUInt32BE(24),
    expStatSN: b.readUInt32BE(28),
    refCmdSN: b.readUInt32BE(32),
  };
}

export interface LoginRequestPdu {
  readonly transit: boolean;
  readonly continue: boolean;
  readonly csg: number;
  readonly nsg: number;
  readonly versionMax: number;
  readonly versionMin: number;
  /** 6 bytes as 12 hex digits. */
  readonly isidHex: string;
  readonly tsih: number;
  readonly initiatorTaskTag: number;
  readonly cid: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
  readonly data: Buffer;
}
export function decodeLoginRequest(pdu: Pdu): LoginRequestPdu {
  const b = pdu.bhs;
  return {
    transit: (b[1] & 0x80) !== 0,
    continue: (b[1] & 0x40) !== 0,
    csg: (b[1] >> 2) & 3,
    nsg: b[1] & 3,
    versionMax: b[2],
    versionMin: b[3],
    isidHex: b.toString('hex', 8, 14),
    tsih: b.readUInt16BE(14),
    initiatorTaskTag: b.readUInt32BE(16),
    cid: b.readUInt16BE(20),
    cmdSN: b.readUInt32BE(24),
    expStatSN: b.readUInt32BE(28),
    data: pdu.data,
  };
}

export interface TextRequestPdu {
  readonly immediate: boolean;
  readonly final: boolean;
  readonly continue: boolean;
  readonly lun: number;
  readonly initiatorTaskTag: number;
  readonly targetTransferTag: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
  readonly data: Buffer;
}
export function decodeTextRequest(pdu: Pdu): TextRequestPdu {
  const b = pdu.bhs;
  return {
    immediate: isImmediate(b),
    final: (b[1] & 0x80) !== 0,
    continue: (b[1] & 0x40) !== 0,
    lun: decodeLun(b),
    initiatorTaskTag: b.readUInt32BE(16),
    targetTransferTag: b.readUInt32BE(20),
    cmdSN: b.readUInt32BE(24),
    expStatSN: b.readUInt32BE(28),
    data: pdu.data,
  };
}

export interface LogoutRequestPdu {
  readonly immediate: boolean;
  readonly reason: number;
  readonly initiatorTaskTag: number;
  readonly cid: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
}
export function decodeLogoutRequest(pdu: Pdu): LogoutRequestPdu {
  const b = pdu.bhs;
  return {
    immediate: isImmediate(b),
    reason: b[1] & 0x7f,
    initiatorTaskTag: b.readUInt32BE(16),
    cid: b.readUInt16BE(20),
    cmdSN: b.readUInt32BE(24),
    expStatSN: b.readUInt32BE(28),
  };
}

// ---- target PDUs ----

/** Sequence numbers every status-bearing target PDU carries. */
export interface Sequence {
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
}

function header(opcode: TargetOpcode, flags: number, dataLength: number): Buffer {
  const b = Buffer.allocUnsafe(bhsBytes).fill(0);
  b[0] = opcode;
  b[1] = flags;
  b[5] = (dataLength >> 16) & 0xff;
  b[6] = (dataLength >> 8) & 0xff;
  b[7] = dataLength & 0xff;
  return b;
}
function putSequence(b: Buffer, seq: Sequence): void {
  b.writeUInt32BE(seq.statSN >>> 0, 24);
  b.writeUInt32BE(seq.expCmdSN >>> 0, 28);
  b.writeUInt32BE(seq.maxCmdSN >>> 0, 32);
}

export interface LoginResponseFields extends Sequence {
  readonly transit: boolean;
  readonly continue: boolean;
  readonly csg: number;
  readonly nsg: number;
  readonly isidHex: string;
  readonly tsih: number;
  readonly initiatorTaskTag: number;
  /** Status class << 8 | detail. */
  readonly status: number;
  readonly dataLength: number;
}
export function encodeLoginResponse(f: LoginResponseFields): Buffer {
  const flags = (f.transit ? 0x80 : 0) | (f.continue ? 0x40 : 0) | ((f.csg & 3) << 2) | (f.nsg & 3);
  const b = header(TargetOpcode.LoginResponse, flags, f.dataLength);
  b[2] = 0; // Version-max
  b[3] = 0; // Version-active
  b.write(f.isidHex.padStart(12, '0').slice(0, 12), 8, 'hex');
  b.writeUInt16BE(f.tsih, 14);
  b.writeUInt32BE(f.initiatorTaskTag >>> 0, 16);
  putSequence(b, f);
  b[36] = (f.status >> 8) & 0xff;
  b[37] = f.status & 0xff;
  return b;
}

export interface TextResponseFields extends Sequence {
  readonly final: boolean;
  readonly continue: boolean;
  readonly lun: number;
  readonly initiatorTaskTag: number;
  readonly targetTransferTag: number;
  readonly dataLength: number;
}
export function encodeTextResponse(f: TextResponseFields): Buffer {
  const b = header(TargetOpcode.TextResponse, (f.final ? 0x80 : 0) | (f.continue ? 0x40 : 0), f.dataLength);
  encodeLun(f.lun, b);
  b.writeUInt32BE(f.initiatorTaskTag >>> 0, 16);
  b.writeUInt32BE(f.targetTransferTag >>> 0, 20);
  putSequence(b, f);
  return b;
}

/** Residual flags and counts (RFC 7143 §11.4.5). */
export interface Residual {
  readonly overflow: boolean;
  readonly underflow: boolean;
  readonly count: number;
}
export const noResidual: Residual = { overflow: false, underflow: false, count: 0 };

export interface ScsiResponseFields extends Sequence {
  readonly response: number;
  readonly status: number;
  readonly initiatorTaskTag: number;
  readonly expDataSN: number;
  readonly residual: Residual;
  readonly bidiResidual?: Residual;
  readonly dataLength: number;
}
export function encodeScsiResponse(f: ScsiResponseFields): Buffer {
  let flags = 0x80;
  if (f.residual.overflow) flags |= 0x04;
  if (f.residual.underflow) flags |= 0x02;
  if (f.bidiResidual?.overflow) flags |= 0x10;
  if (f.bidiResidual?.underflow) flags |= 0x08;
  const b = header(TargetOpcode.ScsiResponse, flags, f.dataLength);
  b[2] = f.response;
  b[3] = f.status;
  b.writeUInt32BE(f.initiatorTaskTag >>> 0, 16);
  putSequence(b, f);
  b.writeUInt32BE(f.expDataSN >>> 0, 36);
  b.writeUInt32BE(f.bidiResidual?.count ?? 0, 40);
  b.writeUInt32BE(f.residual.count, 44);
  return b;
}

/** The data segment of a SCSI Response carrying sense (RFC 7143 §11.4.7.2). */
export function senseSegment(sense: Buffer): Buffer {
  const seg = Buffer.allocUnsafe(2 + sense.length);
  seg.writeUInt16BE(sense.length, 0);
  sense.copy(seg, 2);
  return seg;
}

export interface DataInFields {
  readonly final: boolean;
  readonly lun: number;
  readonly initiatorTaskTag: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
  readonly dataSN: number;
  readonly bufferOffset: number;
  readonly dataLength: number;
  /** Present when this PDU carries the command's status (S bit, phase collapse). */
  readonly status?: { readonly status: number; readonly statSN: number; readonly residual: Residual };
  /** StatSN field when no status is carried: the next StatSN (RFC 7143 §11.7.4, reserved otherwise). */
  readonly statSN?: number;
}
export function encodeDataIn(f: DataInFields): Buffer {
  let flags = f.final ? 0x80 : 0;
  const s = f.status;
  if (s !== undefined) {
    flags |= 0x81;
    if (s.residual.overflow) flags |= 0x04;
    if (s.residual.underflow) flags |= 0x02;
  }
  const b = header(TargetOpcode.DataIn, flags, f.dataLength);
  encodeLun(f.lun, b);
  b.writeUInt32BE(f.initiatorTaskTag >>> 0, 16);
  b.writeUInt32BE(tagNone, 20);
  if (s !== undefined) {
    b[3] = s.status;
    b.writeUInt32BE(s.statSN >>> 0, 24);
    b.writeUInt32BE(s.residual.count, 44);
  }
  b.writeUInt32BE(f.expCmdSN >>> 0, 28);
  b.writeUInt32BE(f.maxCmdSN >>> 0, 32);
  b.writeUInt32BE(f.dataSN >>> 0, 36);
  b.writeUInt32BE(f.bufferOffset >>> 0, 40);
  return b;
}

export interface R2TFields extends Sequence {
  readonly lun: number;
  readonly initiatorTaskTag: number;
  readonly targetTransferTag: number;
  readonly r2tSN: number;
  readonly bufferOffset: number;
  readonly desiredLength: number;
}
export function encodeR2T(f: R2TFields): Buffer {
  const b = header(TargetOpcode.R2T, 0x80, 0);
  encodeLun(f.lun, b);
  b.writeUInt32BE(f.initiatorTaskTag >>> 0, 16);
  b.writeUInt32BE(f.targetTransferTag >>> 0, 20);
  putSequence(b, f);
  b.writeUInt32BE(f.r2tSN >>> 0, 36);
  b.writeUInt32BE(f.bufferOffset >>> 0, 40);
  b.writeUInt32BE(f.desiredLength >>> 0, 44);
  return b;
}

export interface NopInFields extends Sequence {
  readonly lun: number;
  readonly initiatorTaskTag: number;
  readonly targetTransferTag: number;
  readonly dataLength: number;
}
export function encodeNopIn(f: NopInFields): Buffer {
  const b = header(TargetOpcode.NopIn, 0x80, f.dataLength);
  encodeLun(f.lun, b);
  b.writeUInt32BE(f.initiatorTaskTag >>> 0, 16);
  b.writeUInt32BE(f.targetTransferTag >>> 0, 20);
  putSequence(b, f);
  return b;
}

export interface LogoutResponseFields extends Sequence {
  readonly response: number;
  readonly initiatorTaskTag: number;
  readonly time2WaitS: number;
  readonly time2RetainS: number;
}
export function encodeLogoutResponse(f: LogoutResponseFields): Buffer {
  const b = header(TargetOpcode.LogoutResponse, 0x80, 0);
  b[2] = f.response;
  b.writeUInt32BE(f.initiatorTaskTag >>> 0, 16);
  putSequence(b, f);
  b.writeUInt16BE(f.time2WaitS, 40);
  b.writeUInt16BE(f.time2RetainS, 42);
  return b;
}

export interface RejectFields extends Sequence {
  readonly reason: number;
  readonly dataSN: number;
}
/** A Reject's data segment is the rejected PDU's header (RFC 7143 §11.17). */
export function encodeReject(f: RejectFields): Buffer {
  const b = header(TargetOpcode.Reject, 0x80, bhsBytes);
  b[2] = f.reason;
  b.writeUInt32BE(tagNone, 16);
  putSequence(b, f);
  b.writeUInt32BE(f.dataSN >>> 0, 36);
  return b;
}

export interface TaskManagementResponseFields extends Sequence {
  readonly response: number;
  readonly initiatorTaskTag: number;
}
export function encodeTaskManagementResponse(f: TaskManagementResponseFields): Buffer {
  const b = header(TargetOpcode.TaskManagementResponse, 0x80, 0);
  b[2] = f.response;
  b.writeUInt32BE(f.initiatorTaskTag >>> 0, 16);
  putSequence(b, f);
  return b;
}

export interface AsyncMessageFields extends Sequence {
  readonly lun: number;
  readonly event: number;
  readonly vcode: number;
  readonly parameter1: number;
  readonly parameter2: number;
  readonly parameter3: number;
  readonly dataLength: number;
}
export function encodeAsyncMessage(f: AsyncMessageFields): Buffer {
  const b = header(TargetOpcode.AsyncMessage, 0x80, f.dataLength);
  encodeLun(f.lun, b);
  b.writeUInt32BE(tagNone, 16);
  putSequence(b, f);
  b[36] = f.event;
  b[37] = f.vcode;
  b.writeUInt16BE(f.parameter1, 38);
  b.writeUInt16BE(f.parameter2, 40);
  b.writeUInt16BE(f.parameter3, 42);
  return b;
}

// ---- framing ----

const zeroPad = Buffer.alloc(4);

function putDigestLE(into: Buffer, at: number, crc: number): void {
  // The digest's first byte on the wire is the CRC's least significant (RFC 3720 B.4 vectors).
  into.writeUInt32LE(crc >>> 0, at);
}

/** The wire buffers of one PDU: header (+digest), data, padding (+digest). The data buffer is not
 *  copied; write the parts in order (socket cork/writev). */
export function framePdu(bhs: Buffer, data: Buffer | undefined, digests: Digests): Buffer[] {
  const parts: Buffer[] = [];
  if (digests.header) {
    const h = Buffer.allocUnsafe(bhsBytes + digestBytes);
    bhs.copy(h, 0, 0, bhsBytes);
    putDigestLE(h, bhsBytes, crc32c(bhs.subarray(0, bhsBytes)));
    parts.push(h);
  } else {
    parts.push(bhs);
  }
  const length = data?.length ?? 0;
  if (length === 0 || data === undefined) return parts;
  parts.push(data);
  const pad = paddingOf(length);
  if (digests.data) {
    const tail = Buffer.alloc(pad + digestBytes);
    let crc = crc32c(data);
    if (pad > 0) crc = crc32c(zeroPad.subarray(0, pad), crc);
    putDigestLE(tail, pad, crc);
    parts.push(tail);
  } else if (pad > 0) {
    parts.push(zeroPad.subarray(0, pad));
  }
  return parts;
}

/** Encodes an initiator-side header for tests and tools (the target never sends these). */
export function encodeInitiatorHeader(fields: {
  opcode: InitiatorOpcode;
  immediate?: boolean;
  flags: number;
  lun?: number;
  initiatorTaskTag: number;
  dataLength: number;
  ahsLength?: number;
  /** Bytes 20..47, as the opcode lays them out. */
  specific?: (b: Buffer) => void;
}): Buffer {
  const b = Buffer.alloc(bhsBytes);
  b[0] = fields.opcode | (fields.immediate ? 0x40 : 0);
  b[1] = fields.flags;
  b[4] = (fields.ahsLength ?? 0) / 4;
  b[5] = (fields.dataLength >> 16) & 0xff;
  b[6] = (fields.dataLength >> 8) & 0xff;
  b[7] = fields.dataLength & 0xff;
  if (fields.lun !== undefined) encodeLun(fields.lun, b);
  b.writeUInt32BE(fields.initiatorTaskTag >>> 0, 16);
  fields.specific?.(b);
  return b;
}
