// SCSI-2 RESERVE and RELEASE, 6 and 10 byte (SPC-2 7.20, 7.21): one I_T nexus reserves the whole
// logical unit; third-party and extent reservations are refused through the CDB usage data. The
// state lives in the logical unit's LunReservations; access-check.ts enforces it for every command.
import { usage } from './cdb.ts';
import type { CommandSpec, LogicalUnit } from './command-table.ts';
import { goodStatus } from './sense.ts';
import { ScsiStatus, type ScsiRequest, type ScsiResponse } from './types.ts';

const reservationConflict: ScsiResponse = Object.freeze({ status: ScsiStatus.ReservationConflict });

function reserve(req: ScsiRequest, lu: LogicalUnit): ScsiResponse {
  return lu.reservations.reserveScsi2(req.nexus.id) ? goodStatus : reservationConflict;
}

function release(req: ScsiRequest, lu: LogicalUnit): ScsiResponse {
  lu.reservations.releaseScsi2(req.nexus.id);
  return goodStatus;
}

export const reserveReleaseCommands: readonly CommandSpec[] = [
  { opcode: 0x16, name: 'RESERVE(6)', usage: usage(0x16, 0, 0, 0, 0, 0), handler: reserve },
  { opcode: 0x17, name: 'RELEASE(6)', usage: usage(0x17, 0, 0, 0, 0, 0), handler: release },
  { opcode: 0x56, name: 'RESERVE(10)', usage: usage(0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0), handler: reserve },
  { opcode: 0x57, name: 'RELEASE(10)', usage: usage(0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0), handler: release },
];
