// The one place that decides whether a reservation held on a logical unit lets a command from
// this I_T nexus run. The target calls accessConflict() only while `reservations.held` is true,
// so the command path pays one field read. SCSI-2 RESERVE/RELEASE lives here; persistent
// reservations (SPC-4 5.13) plug into the same LunReservations and the same function.
import type { CommandSpec, LogicalUnit } from './command-table.ts';
import { ScsiStatus, type ScsiRequest, type ScsiResponse } from './types.ts';

/** Reservation state of one logical unit. */
export class LunReservations {
  /** Nexus id holding the SCSI-2 reservation (SPC-2 7.21 RESERVE(6)), if any. */
  private scsi2Holder: string | undefined;
  /** True while any reservation exists: the only thing the command path looks at. */
  held = false;

  scsi2HeldBy(): string | undefined {
    return this.scsi2Holder;
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
    this.held = this.scsi2Holder !== undefined;
  }
}

/**
 * Commands another nexus may still run on a logical unit reserved with RESERVE(6)/(10): the ones
 * that touch no medium and no reservation state (SPC-2 5.5.1): INQUIRY, REQUEST SENSE, REPORT
 * LUNS and RELEASE (which changes nothing for a non-holder).
 */
const scsi2ExemptOpcodes = new Set([0x03, 0x12, 0x17, 0x57, 0xa0]);

const reservationConflict: ScsiResponse = Object.freeze({ status: ScsiStatus.ReservationConflict });

/** RESERVATION CONFLICT when a reservation held by another nexus forbids this command, else undefined. */
export function accessConflict(spec: CommandSpec, req: ScsiRequest, lu: LogicalUnit): ScsiResponse | undefined {
  const holder = lu.reservations.scsi2HeldBy();
  if (holder !== undefined && holder !== req.nexus.id && !scsi2ExemptOpcodes.has(spec.opcode)) return reservationConflict;
  return undefined;
}
