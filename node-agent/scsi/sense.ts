// Fixed-format sense data (SPC-4 4.5.3) and the CHECK CONDITION responses built from it.
// Pure: every refusal the SCSI layer returns goes through here, so keys and codes are named once.
import { ScsiStatus, type ScsiResponse } from './types.ts';

/** SPC-4 table 27. */
export const SenseKey = {
  NoSense: 0x0,
  RecoveredError: 0x1,
  NotReady: 0x2,
  MediumError: 0x3,
  HardwareError: 0x4,
  IllegalRequest: 0x5,
  UnitAttention: 0x6,
  DataProtect: 0x7,
  AbortedCommand: 0xb,
  Miscompare: 0xe,
} as const;
export type SenseKey = (typeof SenseKey)[keyof typeof SenseKey];

export interface AdditionalSense {
  readonly asc: number;
  readonly ascq: number;
}

/** ASC/ASCQ pairs used by this target (SPC-4 annex D). */
export const Asc = {
  NoAdditionalSense: { asc: 0x00, ascq: 0x00 },
  LogicalUnitNotReady: { asc: 0x04, ascq: 0x00 },
  LogicalUnitNotAccessibleTransitioning: { asc: 0x04, ascq: 0x0a },
  LogicalUnitNotAccessibleStandby: { asc: 0x04, ascq: 0x0b },
  LogicalUnitNotAccessibleUnavailable: { asc: 0x04, ascq: 0x0c },
  WriteError: { asc: 0x0c, ascq: 0x00 },
  InvalidFieldInCommandInformationUnit: { asc: 0x0e, ascq: 0x03 },
  UnrecoveredReadError: { asc: 0x11, ascq: 0x00 },
  ParameterListLengthError: { asc: 0x1a, ascq: 0x00 },
  MiscompareDuringVerify: { asc: 0x1d, ascq: 0x00 },
  InvalidCommandOperationCode: { asc: 0x20, ascq: 0x00 },
  LbaOutOfRange: { asc: 0x21, ascq: 0x00 },
  InvalidFieldInCdb: { asc: 0x24, ascq: 0x00 },
  LogicalUnitNotSupported: { asc: 0x25, ascq: 0x00 },
  InvalidFieldInParameterList: { asc: 0x26, ascq: 0x00 },
  InvalidReleaseOfPersistentReservation: { asc: 0x26, ascq: 0x04 },
  SpaceAllocationFailedWriteProtect: { asc: 0x27, ascq: 0x07 },
  PowerOnResetOccurred: { asc: 0x29, ascq: 0x00 },
  BusDeviceResetFunctionOccurred: { asc: 0x29, ascq: 0x03 },
  ModeParametersChanged: { asc: 0x2a, ascq: 0x01 },
  ReservationsPreempted: { asc: 0x2a, ascq: 0x03 },
  ReservationsReleased: { asc: 0x2a, ascq: 0x04 },
  RegistrationsPreempted: { asc: 0x2a, ascq: 0x05 },
  AsymmetricAccessStateChanged: { asc: 0x2a, ascq: 0x06 },
  CapacityDataHasChanged: { asc: 0x2a, ascq: 0x09 },
  SavingParametersNotSupported: { asc: 0x39, ascq: 0x00 },
  ReportedLunsDataHasChanged: { asc: 0x3f, ascq: 0x0e },
  InternalTargetFailure: { asc: 0x44, ascq: 0x00 },
  InsufficientRegistrationResources: { asc: 0x55, ascq: 0x04 },
} as const satisfies Record<string, AdditionalSense>;

/** Where in the CDB or parameter list the offending field is (sense-key specific, SPC-4 4.5.2.4.2). */
export interface FieldPointer {
  /** true: the field is in the CDB; false: in the parameter list (Data-Out). */
  readonly inCdb: boolean;
  readonly byte: number;
  /** Most significant bit of the field, when the field does not start at bit 7. */
  readonly bit?: number;
}

export interface SenseSpec {
  readonly key: SenseKey;
  readonly code: AdditionalSense;
  /** INFORMATION field (sets VALID); must fit in 32 bits in fixed format. */
  readonly information?: number;
  readonly fieldPointer?: FieldPointer;
}

/** Length of fixed-format sense data with no extra bytes. */
export const fixedSenseBytes = 18;

export function buildFixedSense(spec: SenseSpec): Buffer {
  const buf = Buffer.alloc(fixedSenseBytes);
  buf[0] = 0x70; // current error, fixed format
  buf[2] = spec.key;
  if (spec.information !== undefined) {
    buf[0] |= 0x80; // VALID
    buf.writeUInt32BE(spec.information >>> 0, 3);
  }
  buf[7] = fixedSenseBytes - 8; // ADDITIONAL SENSE LENGTH
  buf[12] = spec.code.asc;
  buf[13] = spec.code.ascq;
  const fp = spec.fieldPointer;
  if (fp) {
    buf[15] = 0x80 | (fp.inCdb ? 0x40 : 0) | (fp.bit !== undefined ? 0x08 | (fp.bit & 7) : 0);
    buf.writeUInt16BE(fp.byte, 16);
  }
  return buf;
}

/** Decoded view of fixed-format sense, for tests and logs. */
export function parseFixedSense(sense: Buffer): {
  key: number;
  asc: number;
  ascq: number;
  information?: number;
  fieldPointer?: FieldPointer;
} {
  const key = sense[2] & 0x0f;
  const out: ReturnType<typeof parseFixedSense> = { key, asc: sense[12], ascq: sense[13] };
  if (sense[0] & 0x80) out.information = sense.readUInt32BE(3);
  if (sense.length >= 18 && sense[15] & 0x80) {
    const bpv = (sense[15] & 0x08) !== 0;
    out.fieldPointer = {
      inCdb: (sense[15] & 0x40) !== 0,
      byte: sense.readUInt16BE(16),
      ...(bpv ? { bit: sense[15] & 7 } : {}),
    };
  }
  return out;
}

export function checkCondition(spec: SenseSpec, commandTransferBytes?: number): ScsiResponse {
  return commandTransferBytes === undefined
    ? { status: ScsiStatus.CheckCondition, sense: buildFixedSense(spec) }
    : { status: ScsiStatus.CheckCondition, sense: buildFixedSense(spec), commandTransferBytes };
}

export function invalidFieldInCdb(byte: number, bit?: number): ScsiResponse {
  return checkCondition({
    key: SenseKey.IllegalRequest,
    code: Asc.InvalidFieldInCdb,
    fieldPointer: bit === undefined ? { inCdb: true, byte } : { inCdb: true, byte, bit },
  });
}

export function invalidFieldInParameterList(byte: number, bit?: number): ScsiResponse {
  return checkCondition({
    key: SenseKey.IllegalRequest,
    code: Asc.InvalidFieldInParameterList,
    fieldPointer: bit === undefined ? { inCdb: false, byte } : { inCdb: false, byte, bit },
  });
}

export function illegalRequest(code: AdditionalSense, commandTransferBytes?: number): ScsiResponse {
  return checkCondition({ key: SenseKey.IllegalRequest, code }, commandTransferBytes);
}

export const goodStatus: ScsiResponse = Object.freeze({ status: ScsiStatus.Good });

/** GOOD, with Data-In and its transfer length if any; release gives a pooled Data-In buffer back once it is sent. */
export function good(dataIn?: Buffer, commandTransferBytes?: number, release?: () => void): ScsiResponse {
  if (dataIn === undefined && commandTransferBytes === undefined) return goodStatus;
  if (commandTransferBytes === undefined) return { status: ScsiStatus.Good, dataIn };
  if (release === undefined) return { status: ScsiStatus.Good, dataIn, commandTransferBytes };
  return { status: ScsiStatus.Good, dataIn, commandTransferBytes, release };
}
