// Persistent reservations of one logical unit (SPC-4 5.13, 6.15, 6.16) as a pure state machine:
// `prOut(state, request)` returns the new state, the response, the unit attentions to establish and
// the nexuses whose tasks to abort; `prIn` builds parameter data; `prConflicts` is the access table.
// The state is a plain JSON value: it is persisted for APTPL and will travel in the mirror stream.
import { assert } from '../../common/assert.ts';
import { u16, u32 } from './cdb.ts';
import {
  Asc,
  SenseKey,
  checkCondition,
  goodStatus,
  invalidFieldInCdb,
  invalidFieldInParameterList,
  type AdditionalSense,
} from './sense.ts';
import { ScsiStatus, type ScsiResponse } from './types.ts';

/** Reservation types (SPC-4 table 217). */
export const PrType = {
  WriteExclusive: 1,
  ExclusiveAccess: 3,
  WriteExclusiveRegistrantsOnly: 5,
  ExclusiveAccessRegistrantsOnly: 6,
  WriteExclusiveAllRegistrants: 7,
  ExclusiveAccessAllRegistrants: 8,
} as const;
export type PrType = (typeof PrType)[keyof typeof PrType];

const validTypes: ReadonlySet<number> = new Set(Object.values(PrType));

/** One I_T nexus as persistent reservations see it: the iSCSI initiator port and the target port. */
export interface PrNexus {
  /** iSCSI initiator port name: `${initiatorName},i,0x${isid}` (SPC-4 7.6.4.6, ISID lowercase hex). */
  readonly initiatorPort: string;
  readonly relativeTargetPortId: number;
}

export interface Registration {
  /** Reservation key as 16 lowercase hex digits (a JSON-safe 64-bit value). */
  readonly key: string;
  readonly initiatorPort: string;
  readonly relativeTargetPortId: number;
  /** Registered through every target port (ALL_TG_PT, SPC-4 6.16.4). */
  readonly allTargetPorts: boolean;
}

export interface Reservation {
  readonly type: PrType;
  /** The nexus that reserved; for the all-registrants types every registrant holds it. */
  readonly holder: PrNexus;
}

export interface PrState {
  /** PRgeneration (SPC-4 6.15.2): 32 bits, wraps. */
  readonly generation: number;
  /** Activate Persist Through Power Loss, from the last REGISTER that carried it. */
  readonly aptpl: boolean;
  readonly registrations: readonly Registration[];
  readonly reservation?: Reservation;
}

export const emptyPrState: PrState = Object.freeze({ generation: 0, aptpl: false, registrations: Object.freeze([]) });

/** Whom a unit attention goes to: every nexus of this initiator port (through this or every target port). */
export interface AttentionTarget {
  readonly initiatorPort: string;
  readonly relativeTargetPortId: number;
  readonly allTargetPorts: boolean;
  readonly code: AdditionalSense;
}

export interface PrOutRequest {
  readonly nexus: PrNexus;
  readonly cdb: Buffer;
  readonly dataOut: Buffer | undefined;
  /** Relative target port identifiers of the logical unit (every site's), for REGISTER AND MOVE. */
  readonly relativeTargetPortIds: readonly number[];
  readonly registrationsMax: number;
}

export interface PrOutResult {
  /** Unchanged (the same object) when the command changed nothing. */
  readonly state: PrState;
  readonly response: ScsiResponse;
  readonly attentions: readonly AttentionTarget[];
  /** PREEMPT AND ABORT: the nexuses whose tasks must be aborted (SPC-4 5.13.11.2.6). */
  readonly abort: readonly Registration[];
}

/** Service actions of PERSISTENT RESERVE OUT (SPC-4 table 218). */
export const PrOutAction = {
  Register: 0x00,
  Reserve: 0x01,
  Release: 0x02,
  Clear: 0x03,
  Preempt: 0x04,
  PreemptAndAbort: 0x05,
  RegisterAndIgnoreExistingKey: 0x06,
  RegisterAndMove: 0x07,
} as const;

export const PrInAction = { ReadKeys: 0x00, ReadReservation: 0x01, ReportCapabilities: 0x02, ReadFullStatus: 0x03 } as const;

const basicParameterListBytes = 24;
const zeroKey = '0000000000000000';

export const reservationConflict: ScsiResponse = Object.freeze({ status: ScsiStatus.ReservationConflict });

function sameNexus(a: PrNexus, b: PrNexus): boolean {
  return a.initiatorPort === b.initiatorPort && a.relativeTargetPortId === b.relativeTargetPortId;
}

/** The registration an I_T nexus is registered under, if any. */
export function registrationOf(state: PrState, nexus: PrNexus): Registration | undefined {
  for (const r of state.registrations) {
    if (r.initiatorPort === nexus.initiatorPort && (r.allTargetPorts || r.relativeTargetPortId === nexus.relativeTargetPortId)) return r;
  }
  return undefined;
}

export function isAllRegistrants(type: PrType): boolean {
  return type === PrType.WriteExclusiveAllRegistrants || type === PrType.ExclusiveAccessAllRegistrants;
}

function isRegistrantsOnlyOrAll(type: PrType): boolean {
  return type >= PrType.WriteExclusiveRegistrantsOnly;
}

/** SPC-4 5.13.10: every registrant holds an all-registrants reservation; otherwise the reserving nexus. */
export function isHolder(state: PrState, nexus: PrNexus): boolean {
  const res = state.reservation;
  if (!res) return false;
  const reg = registrationOf(state, nexus);
  if (!reg) return false;
  if (isAllRegistrants(res.type)) return true;
  return reg === registrationOf(state, res.holder);
}

/** How a command touches the medium, for the access table. */
export type AccessClass = 'unrestricted' | 'read' | 'write';

/**
 * SPC-4 5.13.1 table 66 (and SBC-3 table 13) for a command from a nexus that does not hold the
 * reservation: WRITE EXCLUSIVE types refuse writes, EXCLUSIVE ACCESS types refuse reads too; the
 * registrants-only and all-registrants types admit registered nexuses as if they held it.
 */
export function prConflicts(state: PrState, nexus: PrNexus, access: AccessClass): boolean {
  const res = state.reservation;
  if (!res || access === 'unrestricted') return false;
  const reg = registrationOf(state, nexus);
  if (reg) {
    if (isRegistrantsOnlyOrAll(res.type)) return false;
    if (reg === registrationOf(state, res.holder)) return false;
  }
  const exclusiveAccess =
    res.type === PrType.ExclusiveAccess ||
    res.type === PrType.ExclusiveAccessRegistrantsOnly ||
    res.type === PrType.ExclusiveAccessAllRegistrants;
  return access === 'write' || exclusiveAccess;
}

// ---- PERSISTENT RESERVE IN ----

/** REPORT CAPABILITIES (SPC-4 6.15.4) as this implementation behaves. */
function reportCapabilities(state: PrState): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16BE(8, 0);
  // CRH 0 (SCSI-2 RESERVE is refused while persistent reservations exist), SIP_C 0 (SPEC_I_PT is
  // refused), ATP_C 1 (ALL_TG_PT honoured), PTPL_C 1 (APTPL kept in the agent's metadata).
  b[2] = 0x04 | 0x01;
  // TMV 1; ALLOW COMMANDS 001b: TEST UNIT READY is allowed through every reservation.
  b[3] = 0x80 | (0b001 << 4) | (state.aptpl ? 0x01 : 0);
  b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
  b[5] = 0x01; // EX_AC_AR
  return b;
}

function header(generation: number, additionalLength: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(generation >>> 0, 0);
  b.writeUInt32BE(additionalLength, 4);
  return b;
}

function keyBytes(hex: string): Buffer {
  return Buffer.from(hex, 'hex');
}

/** iSCSI TransportID, format 01b: initiator port name with ISID (SPC-4 7.6.4.6). */
export function encodeTransportId(initiatorPort: string): Buffer {
  const name = Buffer.from(initiatorPort, 'utf8');
  const padded = (name.length + 1 + 3) & ~3; // NUL terminated, multiple of four
  const b = Buffer.alloc(4 + Math.max(20, padded));
  b[0] = 0x40 | 0x05;
  b.writeUInt16BE(b.length - 4, 2);
  name.copy(b, 4);
  return b;
}

/** A TransportID naming one iSCSI initiator port, or a refusal reason. */
export function decodeTransportId(data: Buffer): { initiatorPort: string; bytes: number } | 'invalid' {
  if (data.length < 24) return 'invalid';
  if ((data[0] & 0x0f) !== 0x05 || (data[0] & 0xc0) !== 0x40) return 'invalid';
  const length = u16(data, 2);
  if (length < 20 || length % 4 !== 0 || 4 + length > data.length) return 'invalid';
  const body = data.subarray(4, 4 + length);
  const nul = body.indexOf(0);
  const text = body.subarray(0, nul < 0 ? body.length : nul).toString('utf8');
  const m = /^(.+),i,0x([0-9a-fA-F]{12})$/.exec(text);
  if (!m) return 'invalid';
  return { initiatorPort: `${m[1].toLowerCase()},i,0x${m[2].toLowerCase()}`, bytes: 4 + length };
}

/** PERSISTENT RESERVE IN parameter data, before truncation to the allocation length. */
export function prIn(state: PrState, serviceAction: number): Buffer | ScsiResponse {
  switch (serviceAction) {
    case PrInAction.ReadKeys: {
      const keys = state.registrations.map((r) => keyBytes(r.key));
      return Buffer.concat([header(state.generation, 8 * keys.length), ...keys]);
    }
    case PrInAction.ReadReservation: {
      const res = state.reservation;
      if (!res) return header(state.generation, 0);
      const d = Buffer.alloc(16);
      // SPC-4 6.15.3.3: the key of an all-registrants reservation is reported as zero.
      const holderKey = isAllRegistrants(res.type) ? zeroKey : (registrationOf(state, res.holder)?.key ?? zeroKey);
      keyBytes(holderKey).copy(d, 0);
      d[13] = res.type; // SCOPE 0 (LU_SCOPE)
      return Buffer.concat([header(state.generation, 16), d]);
    }
    case PrInAction.ReportCapabilities:
      return reportCapabilities(state);
    case PrInAction.ReadFullStatus: {
      const descriptors = state.registrations.map((r) => fullStatusDescriptor(state, r));
      const body = Buffer.concat(descriptors);
      return Buffer.concat([header(state.generation, body.length), body]);
    }
    default:
      return invalidFieldInCdb(1, 4);
  }
}

/** SPC-4 6.15.5.2. */
function fullStatusDescriptor(state: PrState, r: Registration): Buffer {
  const tid = encodeTransportId(r.initiatorPort);
  const d = Buffer.alloc(24);
  keyBytes(r.key).copy(d, 0);
  const res = state.reservation;
  const holder = res !== undefined && (isAllRegistrants(res.type) || registrationOf(state, res.holder) === r);
  d[12] = (r.allTargetPorts ? 0x02 : 0) | (holder ? 0x01 : 0);
  if (holder) d[13] = res.type;
  d.writeUInt16BE(r.allTargetPorts ? 0 : r.relativeTargetPortId, 18);
  d.writeUInt32BE(tid.length, 20);
  return Buffer.concat([d, tid]);
}

// ---- PERSISTENT RESERVE OUT ----

interface Parameters {
  readonly key: string;
  readonly serviceActionKey: string;
  readonly specIPt: boolean;
  readonly allTgPt: boolean;
  readonly aptpl: boolean;
}

function unchanged(state: PrState, response: ScsiResponse): PrOutResult {
  return { state, response, attentions: [], abort: [] };
}

function nextGeneration(state: PrState): number {
  return (state.generation + 1) >>> 0;
}

function attention(r: Registration, code: AdditionalSense): AttentionTarget {
  return { initiatorPort: r.initiatorPort, relativeTargetPortId: r.relativeTargetPortId, allTargetPorts: r.allTargetPorts, code };
}

export function prOut(state: PrState, req: PrOutRequest): PrOutResult {
  const cdb = req.cdb;
  const action = cdb[1] & 0x1f;
  const scope = cdb[2] >> 4;
  const type = cdb[2] & 0x0f;
  const listLength = u32(cdb, 5);
  const data = req.dataOut ?? Buffer.alloc(0);
  if (action > PrOutAction.RegisterAndMove) return unchanged(state, invalidFieldInCdb(1, 4));
  if (data.length < listLength) return unchanged(state, lengthError());
  if (action === PrOutAction.RegisterAndMove) return registerAndMove(state, req, data.subarray(0, listLength), { scope, type });
  // SPC-4 6.16.3: 24 bytes exactly unless SPEC_I_PT adds TransportIDs (which we refuse below).
  if (listLength !== basicParameterListBytes) {
    const specIPt = listLength > 20 && (data[20] & 0x08) !== 0;
    return unchanged(state, specIPt ? invalidFieldInParameterList(20, 3) : lengthError());
  }
  const p: Parameters = {
    key: data.subarray(0, 8).toString('hex'),
    serviceActionKey: data.subarray(8, 16).toString('hex'),
    specIPt: (data[20] & 0x08) !== 0,
    allTgPt: (data[20] & 0x04) !== 0,
    aptpl: (data[20] & 0x01) !== 0,
  };
  const usesType = action === PrOutAction.Reserve || action === PrOutAction.Release || action === PrOutAction.Preempt || action === PrOutAction.PreemptAndAbort;
  if (usesType) {
    if (scope !== 0) return unchanged(state, invalidFieldInCdb(2, 7));
    if (!validTypes.has(type)) return unchanged(state, invalidFieldInCdb(2, 3));
  }
  // SIP_C and the other capability bits (REPORT CAPABILITIES): SPEC_I_PT is never honoured.
  if (p.specIPt) return unchanged(state, invalidFieldInParameterList(20, 3));
  switch (action) {
    case PrOutAction.Register:
    case PrOutAction.RegisterAndIgnoreExistingKey:
      return register(state, req, p, action === PrOutAction.RegisterAndIgnoreExistingKey);
    case PrOutAction.Reserve:
      return reserve(state, req.nexus, p, type as PrType);
    case PrOutAction.Release:
      return release(state, req.nexus, p, type as PrType);
    case PrOutAction.Clear:
      return clear(state, req.nexus, p);
    default:
      return preempt(state, req.nexus, p, type as PrType, action === PrOutAction.PreemptAndAbort);
  }
}

function lengthError(): ScsiResponse {
  return checkCondition({ key: SenseKey.IllegalRequest, code: Asc.ParameterListLengthError });
}

/** Caller registered and presenting its own key, or the refusal (SPC-4 5.13.11.2.1). */
function ownRegistration(state: PrState, nexus: PrNexus, key: string): Registration | undefined {
  const reg = registrationOf(state, nexus);
  return reg !== undefined && reg.key === key ? reg : undefined;
}

/** Removing registrations ends a reservation they held (SPC-4 5.13.11.2.3 and 5.13.10). */
function withoutRegistrations(state: PrState, removed: ReadonlySet<Registration>): Pick<PrState, 'registrations' | 'reservation'> {
  const registrations = state.registrations.filter((r) => !removed.has(r));
  let reservation = state.reservation;
  if (reservation) {
    const holderReg = registrationOf(state, reservation.holder);
    if (isAllRegistrants(reservation.type)) {
      if (registrations.length === 0) reservation = undefined;
      else if (holderReg === undefined || removed.has(holderReg)) {
        // The nexus recorded as holder left; any remaining registrant keeps holding it.
        const next = registrations[0];
        reservation = { type: reservation.type, holder: { initiatorPort: next.initiatorPort, relativeTargetPortId: next.relativeTargetPortId } };
      }
    } else if (holderReg === undefined || removed.has(holderReg)) {
      reservation = undefined;
    }
  }
  return reservation ? { registrations, reservation } : { registrations };
}

/** SPC-4 5.13.7 / 6.16.2 REGISTER and REGISTER AND IGNORE EXISTING KEY. */
function register(state: PrState, req: PrOutRequest, p: Parameters, ignoreKey: boolean): PrOutResult {
  const nexus = req.nexus;
  const reg = registrationOf(state, nexus);
  if (!reg) {
    if (!ignoreKey && p.key !== zeroKey) return unchanged(state, reservationConflict);
    if (p.serviceActionKey === zeroKey) return unchanged(state, goodStatus);
    if (state.registrations.length >= req.registrationsMax) {
      return unchanged(state, checkCondition({ key: SenseKey.IllegalRequest, code: Asc.InsufficientRegistrationResources }));
    }
    const added: Registration = {
      key: p.serviceActionKey,
      initiatorPort: nexus.initiatorPort,
      relativeTargetPortId: nexus.relativeTargetPortId,
      allTargetPorts: p.allTgPt,
    };
    return unchanged({ ...state, generation: nextGeneration(state), aptpl: p.aptpl, registrations: [...state.registrations, added] }, goodStatus);
  }
  if (!ignoreKey && p.key !== reg.key) return unchanged(state, reservationConflict);
  if (p.serviceActionKey === zeroKey) {
    const before = state.reservation;
    const after = withoutRegistrations(state, new Set([reg]));
    const next: PrState = { generation: nextGeneration(state), aptpl: p.aptpl, ...after };
    // SPC-4 5.13.11.2.3: a registrants-only reservation released by unregistering its holder
    // tells the other registrants.
    const released = before !== undefined && after.reservation === undefined && before.type !== PrType.WriteExclusive && before.type !== PrType.ExclusiveAccess;
    const attentions = released ? after.registrations.map((r) => attention(r, Asc.ReservationsReleased)) : [];
    return { state: next, response: goodStatus, attentions, abort: [] };
  }
  const changed: Registration = { ...reg, key: p.serviceActionKey };
  const registrations = state.registrations.map((r) => (r === reg ? changed : r));
  return unchanged({ ...state, generation: nextGeneration(state), aptpl: p.aptpl, registrations }, goodStatus);
}

function withoutRes(state: PrState): Omit<PrState, 'reservation'> {
  return { generation: state.generation, aptpl: state.aptpl, registrations: state.registrations };
}

/** SPC-4 5.13.9 RESERVE: PRgeneration does not change. */
function reserve(state: PrState, nexus: PrNexus, p: Parameters, type: PrType): PrOutResult {
  if (!ownRegistration(state, nexus, p.key)) return unchanged(state, reservationConflict);
  const res = state.reservation;
  if (res) {
    // Held already: the same type by a holder is a no-op; anything else conflicts.
    if (isHolder(state, nexus) && res.type === type) return unchanged(state, goodStatus);
    return unchanged(state, reservationConflict);
  }
  return unchanged({ ...state, reservation: { type, holder: { initiatorPort: nexus.initiatorPort, relativeTargetPortId: nexus.relativeTargetPortId } } }, goodStatus);
}

/** SPC-4 5.13.11.2.2 RELEASE. */
function release(state: PrState, nexus: PrNexus, p: Parameters, type: PrType): PrOutResult {
  if (!ownRegistration(state, nexus, p.key)) return unchanged(state, reservationConflict);
  const res = state.reservation;
  if (!res || !isHolder(state, nexus)) return unchanged(state, goodStatus);
  if (res.type !== type) {
    return unchanged(state, checkCondition({ key: SenseKey.IllegalRequest, code: Asc.InvalidReleaseOfPersistentReservation }));
  }
  const own = registrationOf(state, nexus);
  const attentions =
    res.type === PrType.WriteExclusive || res.type === PrType.ExclusiveAccess
      ? []
      : state.registrations.filter((r) => r !== own).map((r) => attention(r, Asc.ReservationsReleased));
  return { state: withoutRes(state), response: goodStatus, attentions, abort: [] };
}

/** SPC-4 5.13.11.2.5 CLEAR: every registration and the reservation go; the others are told. */
function clear(state: PrState, nexus: PrNexus, p: Parameters): PrOutResult {
  const own = ownRegistration(state, nexus, p.key);
  if (!own) return unchanged(state, reservationConflict);
  const attentions = state.registrations.filter((r) => r !== own).map((r) => attention(r, Asc.ReservationsPreempted));
  return { state: { generation: nextGeneration(state), aptpl: state.aptpl, registrations: [] }, response: goodStatus, attentions, abort: [] };
}

/** SPC-4 5.13.11.2.4 PREEMPT and 5.13.11.2.6 PREEMPT AND ABORT. */
function preempt(state: PrState, nexus: PrNexus, p: Parameters, type: PrType, abort: boolean): PrOutResult {
  const own = ownRegistration(state, nexus, p.key);
  if (!own) return unchanged(state, reservationConflict);
  const res = state.reservation;
  const holderReg = res ? registrationOf(state, res.holder) : undefined;
  const byKey = (key: string) => state.registrations.filter((r) => r.key === key && r !== own);
  const newHolder = { initiatorPort: nexus.initiatorPort, relativeTargetPortId: nexus.relativeTargetPortId };
  let removed: Registration[];
  let reservation: Reservation | undefined = res;
  let released = false;
  if (res && isAllRegistrants(res.type) && p.serviceActionKey === zeroKey) {
    // Every other registrant goes; the caller now holds a reservation of the requested type.
    removed = state.registrations.filter((r) => r !== own);
    reservation = { type, holder: newHolder };
  } else if (res && !isAllRegistrants(res.type) && holderReg !== undefined && holderReg.key === p.serviceActionKey) {
    removed = byKey(p.serviceActionKey);
    reservation = { type, holder: newHolder };
    released = res.type !== type;
  } else {
    // No reservation affected: remove the registrations of that key (SPC-4 5.13.11.2.4.2/4).
    if (p.serviceActionKey === zeroKey) return unchanged(state, invalidFieldInParameterList(8));
    removed = byKey(p.serviceActionKey);
    if (removed.length === 0) return unchanged(state, reservationConflict);
  }
  const gone = new Set(removed);
  const registrations = state.registrations.filter((r) => !gone.has(r));
  const remaining = reservation === res ? withoutRegistrations(state, gone).reservation : reservation;
  const next: PrState = { generation: nextGeneration(state), aptpl: state.aptpl, registrations, ...(remaining ? { reservation: remaining } : {}) };
  const attentions = [
    ...removed.map((r) => attention(r, Asc.RegistrationsPreempted)),
    // A changed type releases the old reservation for the registrants that stay (5.13.11.2.4.3).
    ...(released ? registrations.filter((r) => r !== own).map((r) => attention(r, Asc.ReservationsReleased)) : []),
  ];
  return { state: next, response: goodStatus, attentions, abort: abort ? removed : [] };
}

/** SPC-4 5.13.8 REGISTER AND MOVE: the holder hands its reservation to another nexus. */
function registerAndMove(state: PrState, req: PrOutRequest, data: Buffer, f: { scope: number; type: number }): PrOutResult {
  if (data.length < basicParameterListBytes) return unchanged(state, lengthError());
  const key = data.subarray(0, 8).toString('hex');
  const serviceActionKey = data.subarray(8, 16).toString('hex');
  const unreg = (data[17] & 0x02) !== 0;
  const aptpl = (data[17] & 0x01) !== 0;
  const rtpi = u16(data, 18);
  const tidLength = u32(data, 20);
  if (basicParameterListBytes + tidLength > data.length) return unchanged(state, lengthError());
  const own = ownRegistration(state, req.nexus, key);
  if (!own) return unchanged(state, reservationConflict);
  const res = state.reservation;
  // No reservation, not its holder, or an all-registrants one (which cannot move): conflict.
  if (!res || isAllRegistrants(res.type) || !isHolder(state, req.nexus)) return unchanged(state, reservationConflict);
  if (f.scope !== 0) return unchanged(state, invalidFieldInCdb(2, 7));
  if (serviceActionKey === zeroKey) return unchanged(state, invalidFieldInParameterList(8));
  if (!req.relativeTargetPortIds.includes(rtpi)) return unchanged(state, invalidFieldInParameterList(18));
  const tid = decodeTransportId(data.subarray(basicParameterListBytes, basicParameterListBytes + tidLength));
  if (tid === 'invalid') return unchanged(state, invalidFieldInParameterList(basicParameterListBytes));
  const dest: PrNexus = { initiatorPort: tid.initiatorPort, relativeTargetPortId: rtpi };
  if (sameNexus(dest, req.nexus)) return unchanged(state, invalidFieldInParameterList(basicParameterListBytes));
  const existing = registrationOf(state, dest);
  if (!existing && state.registrations.length >= req.registrationsMax) {
    return unchanged(state, checkCondition({ key: SenseKey.IllegalRequest, code: Asc.InsufficientRegistrationResources }));
  }
  const destReg: Registration = existing
    ? { ...existing, key: serviceActionKey }
    : { key: serviceActionKey, initiatorPort: dest.initiatorPort, relativeTargetPortId: dest.relativeTargetPortId, allTargetPorts: false };
  let registrations = existing ? state.registrations.map((r) => (r === existing ? destReg : r)) : [...state.registrations, destReg];
  if (unreg) registrations = registrations.filter((r) => r !== own);
  const next: PrState = { generation: nextGeneration(state), aptpl, registrations, reservation: { type: res.type, holder: dest } };
  return { state: next, response: goodStatus, attentions: [], abort: [] };
}

/** Checks a value read back from storage (APTPL) before it is trusted. */
export function assertPrState(value: unknown): PrState {
  assert(isPrState(value), 'stored persistent reservation state is malformed');
  return value;
}

/** The shape of a PrState (from the metadata file or the peer site's mirror stream). */
export function isPrState(value: unknown): value is PrState {
  const s = value as PrState;
  return !(
    typeof s !== 'object' || s === null || !Number.isInteger(s.generation) || typeof s.aptpl !== 'boolean' ||
    !Array.isArray(s.registrations) ||
    !s.registrations.every((r) => typeof r.key === 'string' && /^[0-9a-f]{16}$/.test(r.key) && typeof r.initiatorPort === 'string' && Number.isInteger(r.relativeTargetPortId) && typeof r.allTargetPorts === 'boolean') ||
    (s.reservation !== undefined && (!validTypes.has(s.reservation.type) || typeof s.reservation.holder?.initiatorPort !== 'string'))
  );
}
