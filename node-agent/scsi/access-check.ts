// The one place that decides whether a command from this I_T nexus may run on a logical unit: the
// local port group's ALUA state (SPC-4 5.15.2.4), SCSI-2 RESERVE/RELEASE and persistent
// reservations (SPC-4 5.13.1 table 66). The target calls accessConflict() only while
// `reservations.held` is true or the port group is not active/optimized: one or two field reads.
import { aluaRefusal, type AluaState } from './alua.ts';
import type { CommandSpec, LogicalUnit } from './command-table.ts';
import { emptyPrState, prConflicts, type AccessClass, type PrNexus, type PrState } from './persistent-reservations.ts';
import { ScsiStatus, type Nexus, type ScsiRequest, type ScsiResponse } from './types.ts';

/** Reservation state of one logical unit. */
export class LunReservations {
  /** Nexus id holding the SCSI-2 reservation (SPC-2 7.21 RESERVE(6)), if any. */
  private scsi2Holder: string | undefined;
  /** Persistent reservation state (registrations, reservation, PRgeneration); replaced, never mutated. */
  private prState: PrState = emptyPrState;
  /** True while any reservation exists: the only thing the command path looks at. */
  held = false;

  scsi2HeldBy(): string | undefined {
    return this.scsi2Holder;
  }

  get pr(): PrState {
    return this.prState;
  }

  /** Commits a new persistent reservation state (after it was persisted when APTPL asks for it). */
  setPr(state: PrState): void {
    this.prState = state;
    this.refresh();
  }

  /** SPC-2 7.21: granted when free or already held by the same nexus. */
  reserveScsi2(nexusId: string): boolean {
    if (this.scsi2Holder !== undefined && this.scsi2Holder !== nexusId) return false;
    this.scsi2Holder = nexusId;
    this.refresh();
    return true;
  }

  /** SPC-2 7.20: a RELEASE from a nexus that does not hold the reservation changes nothing. */
  releaseScsi2(nexusId: string): void {
    if (this.scsi2Holder === nexusId) this.scsi2Holder = undefined;
    this.refresh();
  }

  /** The nexus is gone (logout, connection loss): its SCSI-2 reservation goes with it (SPC-2 5.5.1). */
  nexusLost(nexusId: string): void {
    this.releaseScsi2(nexusId);
  }

  /** LUN reset and target reset release SCSI-2 reservations (SPC-2 5.5.1; SAM-5 6.3.3). */
  reset(): void {
    this.scsi2Holder = undefined;
    this.refresh();
  }

  private refresh(): void {
    // Registrations alone restrict nothing but RESERVE/RELEASE (SPC-4 5.13.3), checked here too.
    this.held = this.scsi2Holder !== undefined || this.prState.registrations.length > 0;
  }
}

/**
 * Commands another nexus may still run on a logical unit reserved with RESERVE(6)/(10): the ones
 * that touch no medium and no reservation state (SPC-2 5.5.1): INQUIRY, REQUEST SENSE, REPORT
 * LUNS and RELEASE (which changes nothing for a non-holder).
 */
const scsi2ExemptOpcodes = new Set([0x03, 0x12, 0x17, 0x57, 0xa0]);

const reservationConflict: ScsiResponse = Object.freeze({ status: ScsiStatus.ReservationConflict });

/** The nexus as persistent reservations name it: iSCSI initiator port and relative target port. */
export function prNexusOf(nexus: Nexus): PrNexus {
  // The portal group tag is the site's relative target port identifier (DESIGN.md).
  return { initiatorPort: `${nexus.initiatorName.toLowerCase()},i,0x${nexus.isidHex.toLowerCase()}`, relativeTargetPortId: nexus.portalGroupTag };
}

const Unrestricted = 0;
const Read = 1;
const Write = 2;

/**
 * Access class per opcode for persistent reservations (SPC-4 table 66, SBC-3 table 13, with ALLOW
 * COMMANDS 001b as REPORT CAPABILITIES says). Unlisted opcodes are treated as writes: refusing
 * too much is safe, admitting a write past a reservation is not.
 */
const classByOpcode = new Uint8Array(256).fill(Write);
for (const op of [
  0x00, // TEST UNIT READY
  0x03, // REQUEST SENSE
  0x12, // INQUIRY
  0x25, // READ CAPACITY(10)
  0x4d, // LOG SENSE
  0x5e, 0x5f, // PERSISTENT RESERVE IN/OUT: each service action applies its own rules
  0xa0, // REPORT LUNS
]) {
  classByOpcode[op] = Unrestricted;
}
for (const op of [
  0x08, 0x28, 0xa8, 0x88, // READ 6/10/12/16
  0x2f, 0xaf, 0x8f, // VERIFY 10/12/16
  0x34, 0x90, // PRE-FETCH 10/16
  0x37, 0xb7, // READ DEFECT DATA 10/12
  0x1a, 0x5a, // MODE SENSE 6/10
  0x1c, 0x3c, // RECEIVE DIAGNOSTIC RESULTS, READ BUFFER
  0x84, // RECEIVE COPY RESULTS
]) {
  classByOpcode[op] = Read;
}

function prAccessClass(cdb: Buffer): AccessClass {
  const op = cdb[0];
  switch (op) {
    case 0x9e: // SERVICE ACTION IN(16): READ CAPACITY(16) is unrestricted, GET LBA STATUS reads
      return (cdb[1] & 0x1f) === 0x10 ? 'unrestricted' : 'read';
    case 0xa3: // MAINTENANCE IN: REPORT TARGET PORT GROUPS is unrestricted, the others read
      return (cdb[1] & 0x1f) === 0x0a ? 'unrestricted' : 'read';
    case 0x1e: // PREVENT ALLOW MEDIUM REMOVAL: only PREVENT conflicts
      return (cdb[4] & 0x03) === 0 ? 'unrestricted' : 'write';
    default: {
      const c = classByOpcode[op];
      return c === Unrestricted ? 'unrestricted' : c === Read ? 'read' : 'write';
    }
  }
}

/** SCSI-2 RESERVE/RELEASE while any persistent registration exists (SPC-4 5.13.3, CRH 0). */
const scsi2Opcodes = new Set([0x16, 0x17, 0x56, 0x57]);

/**
 * The refusal of this command, or undefined when it may run: NOT READY for an inaccessible port
 * group state first (the order SPC-4 5.15.2.4 and LIO use), then RESERVATION CONFLICT.
 */
export function accessConflict(spec: CommandSpec, req: ScsiRequest, lu: LogicalUnit, alua: AluaState = 'active-optimized'): ScsiResponse | undefined {
  const notReady = aluaRefusal(alua, spec.opcode);
  if (notReady) return notReady;
  const r = lu.reservations;
  const holder = r.scsi2HeldBy();
  if (holder !== undefined && holder !== req.nexus.id && !scsi2ExemptOpcodes.has(spec.opcode)) return reservationConflict;
  const pr = r.pr;
  if (pr.registrations.length > 0 && scsi2Opcodes.has(spec.opcode)) return reservationConflict;
  if (pr.reservation !== undefined && prConflicts(pr, prNexusOf(req.nexus), prAccessClass(req.cdb))) return reservationConflict;
  return undefined;
}
