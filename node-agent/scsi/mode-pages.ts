// Mode parameters (SPC-4 7.5, SBC-3 6.4): the caching and control pages, MODE SENSE data with its
// header and block descriptor, and MODE SELECT checking. Nothing is changeable yet, so MODE SELECT
// accepts exactly the current values (SPC-4 6.9: a non-changeable field sent with another value is
// INVALID FIELD IN PARAMETER LIST). Pure.
import {
  Asc,
  SenseKey,
  checkCondition,
  invalidFieldInCdb,
  invalidFieldInParameterList,
  type SenseSpec,
} from './sense.ts';
import type { ScsiResponse } from './types.ts';

export interface ModePage {
  readonly code: number;
  /** Whole page as MODE SENSE returns it with page control "current" (PS bit clear). */
  readonly current: Buffer;
  /** Mask of changeable bits (page control "changeable"); header bytes carry code and length. */
  readonly changeable: Buffer;
}

/** SBC-3 6.4.5: write-back cache on (WCE=1); FUA and SYNCHRONIZE CACHE make data durable. */
function cachingPage(): ModePage {
  const current = Buffer.alloc(20);
  current[0] = 0x08;
  current[1] = 0x12;
  current[2] = 0x04; // WCE
  const changeable = Buffer.alloc(20);
  changeable[0] = 0x08;
  changeable[1] = 0x12;
  return { code: 0x08, current, changeable };
}

/**
 * SPC-4 7.5.8: one task set for all nexuses (TST 0), fixed-format sense (D_SENSE 0), unrestricted
 * reordering allowed (QUEUE ALGORITHM MODIFIER 1: SIMPLE tasks run in parallel), QERR 0, TAS 1:
 * a task aborted by another nexus's task management or PREEMPT AND ABORT ends with TASK ABORTED
 * status (SAM-5 5.6) rather than vanishing behind a COMMANDS CLEARED BY ANOTHER INITIATOR UA.
 */
function controlPage(): ModePage {
  const current = Buffer.alloc(12);
  current[0] = 0x0a;
  current[1] = 0x0a;
  current[3] = 0x10; // QUEUE ALGORITHM MODIFIER = 1
  current[5] = 0x40; // TAS
  current.writeUInt16BE(0xffff, 8); // BUSY TIMEOUT PERIOD: unlimited
  const changeable = Buffer.alloc(12);
  changeable[0] = 0x0a;
  changeable[1] = 0x0a;
  return { code: 0x0a, current, changeable };
}

/** Pages in ascending page code, as "return all pages" lists them. */
export const diskModePages: readonly ModePage[] = [cachingPage(), controlPage()];

export const PageControl = { current: 0, changeable: 1, default: 2, saved: 3 } as const;

export interface ModeSenseRequest {
  readonly tenByte: boolean;
  readonly pageControl: number;
  readonly pageCode: number;
  readonly subpageCode: number;
  /** DBD: no block descriptor. */
  readonly disableBlockDescriptors: boolean;
  /** LLBAA (MODE SENSE 10 only): a long LBA block descriptor. */
  readonly longLba: boolean;
  readonly blockCount: number;
  readonly blockSizeBytes: number;
}

/** Byte 2 of both MODE SENSE CDBs holds PC and PAGE CODE; byte 3 the SUBPAGE CODE. */
const pageCodeByte = 2;
const subpageByte = 3;

export function modeSenseData(req: ModeSenseRequest, pages: readonly ModePage[]): Buffer | ScsiResponse {
  if (req.pageControl === PageControl.saved) {
    return checkCondition({ key: SenseKey.IllegalRequest, code: Asc.SavingParametersNotSupported });
  }
  const allPages = req.pageCode === 0x3f;
  // Subpage 0x00 is the page itself; 0xFF asks for every subpage too, and we have none.
  if (req.subpageCode !== 0x00 && req.subpageCode !== 0xff) return invalidFieldInCdb(subpageByte);
  if (req.subpageCode === 0xff && !allPages && !pages.some((p) => p.code === req.pageCode)) {
    return invalidFieldInCdb(pageCodeByte, 5);
  }
  const chosen = allPages ? pages : pages.filter((p) => p.code === req.pageCode);
  if (chosen.length === 0) return invalidFieldInCdb(pageCodeByte, 5);

  const bodies = chosen.map((p) => (req.pageControl === PageControl.changeable ? p.changeable : p.current));
  const descriptor = req.disableBlockDescriptors ? Buffer.alloc(0) : blockDescriptor(req);
  const headerBytes = req.tenByte ? 8 : 4;
  const header = Buffer.alloc(headerBytes);
  const total = headerBytes + descriptor.length + bodies.reduce((n, b) => n + b.length, 0);
  // DEVICE-SPECIFIC PARAMETER (SBC-3 6.4.1): WP 0, DPOFUA 1.
  if (req.tenByte) {
    header.writeUInt16BE(total - 2, 0);
    header[3] = 0x10;
    header[4] = descriptor.length === 16 ? 0x01 : 0x00; // LONGLBA
    header.writeUInt16BE(descriptor.length, 6);
  } else {
    header[0] = Math.min(total - 1, 0xff);
    header[2] = 0x10;
    header[3] = descriptor.length;
  }
  return Buffer.concat([header, descriptor, ...bodies]);
}

/** SBC-3 6.4.2: short (8-byte) or long LBA (16-byte) block descriptor. */
function blockDescriptor(req: ModeSenseRequest): Buffer {
  if (req.tenByte && req.longLba) {
    const d = Buffer.alloc(16);
    d.writeBigUInt64BE(BigInt(req.blockCount), 0);
    d.writeUInt32BE(req.blockSizeBytes, 12);
    return d;
  }
  const d = Buffer.alloc(8);
  d.writeUInt32BE(Math.min(req.blockCount, 0xffffffff), 0);
  d.writeUIntBE(req.blockSizeBytes, 5, 3);
  return d;
}

export interface ModeSelectRequest {
  readonly tenByte: boolean;
  readonly parameters: Buffer;
  readonly blockCount: number;
  readonly blockSizeBytes: number;
}

const parameterListLengthError: SenseSpec = { key: SenseKey.IllegalRequest, code: Asc.ParameterListLengthError };

/** undefined when the parameter list is accepted (it changes nothing); otherwise the refusal. */
export function checkModeSelect(req: ModeSelectRequest, pages: readonly ModePage[]): ScsiResponse | undefined {
  const data = req.parameters;
  const headerBytes = req.tenByte ? 8 : 4;
  if (data.length < headerBytes) return checkCondition(parameterListLengthError);
  // The MODE DATA LENGTH field is reserved in MODE SELECT (SPC-4 7.5.4); the medium type must be 0.
  if (data[req.tenByte ? 2 : 1] !== 0) return invalidFieldInParameterList(req.tenByte ? 2 : 1);
  const longLba = req.tenByte && (data[4] & 0x01) !== 0;
  const descriptorBytes = req.tenByte ? data.readUInt16BE(6) : data[3];
  const expectedDescriptorBytes = longLba ? 16 : 8;
  if (descriptorBytes !== 0 && descriptorBytes !== expectedDescriptorBytes) {
    return invalidFieldInParameterList(req.tenByte ? 6 : 3);
  }
  let offset = headerBytes;
  if (descriptorBytes !== 0) {
    if (data.length < offset + descriptorBytes) return checkCondition(parameterListLengthError);
    const refusal = checkBlockDescriptor(data, offset, longLba, req);
    if (refusal) return refusal;
    offset += descriptorBytes;
  }
  while (offset < data.length) {
    if (data.length < offset + 2) return checkCondition(parameterListLengthError);
    const code = data[offset] & 0x3f;
    if (data[offset] & 0x40) return invalidFieldInParameterList(offset, 6); // SPF: we have no subpages
    const page = pages.find((p) => p.code === code);
    if (!page) return invalidFieldInParameterList(offset, 5);
    const length = data[offset + 1];
    if (length !== page.current.length - 2) return invalidFieldInParameterList(offset + 1);
    if (data.length < offset + 2 + length) return checkCondition(parameterListLengthError);
    for (let i = 2; i < page.current.length; i++) {
      const differs = (data[offset + i] ^ page.current[i]) & ~page.changeable[i] & 0xff;
      if (differs !== 0) return invalidFieldInParameterList(offset + i, 31 - Math.clz32(differs));
    }
    offset += 2 + length;
  }
  return undefined;
}

function checkBlockDescriptor(data: Buffer, offset: number, longLba: boolean, req: ModeSelectRequest): ScsiResponse | undefined {
  // NUMBER OF LOGICAL BLOCKS: zero or the current capacity (SBC-3 6.4.2: we cannot resize).
  const blocks = longLba ? Number(data.readBigUInt64BE(offset)) : data.readUInt32BE(offset);
  const currentShort = Math.min(req.blockCount, 0xffffffff);
  if (blocks !== 0 && blocks !== (longLba ? req.blockCount : currentShort)) return invalidFieldInParameterList(offset);
  const lengthOffset = longLba ? offset + 12 : offset + 5;
  const blockBytes = longLba ? data.readUInt32BE(lengthOffset) : data.readUIntBE(lengthOffset, 3);
  if (blockBytes !== req.blockSizeBytes) return invalidFieldInParameterList(lengthOffset);
  return undefined;
}
