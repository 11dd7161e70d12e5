// Persistent reservations travel in the group's mirror stream as state records (protos/mirror.proto
// StateRecord, kind "persistent-reservations"): after every change the primary's target enters the
// LUN's complete new state, ordered with the writes; a secondary adopts it into its own target, so a
// promoted secondary enforces exactly the registrations and reservation the old primary did
// (DESIGN.md "Data path"). The payload is the PrState as JSON; it is checked before it is applied.
import type { HostStateSink } from './mirror/mirror-applier.ts';
import type { PrState } from './scsi/persistent-reservations.ts';
import { isPrState } from './scsi/persistent-reservations.ts';
import type { StateMirror } from './scsi/target.ts';
import type { GroupTarget } from './targets.ts';

export const reservationsKind = 'persistent-reservations';

/** A group's host-visible state as its SCSI target holds it: what a secondary gets (snapshot) and
 *  checks and adopts (HostStateSink). */
export interface HostStateOwner extends HostStateSink {
  /** Every LUN's complete state now, for a secondary that attaches. */
  snapshot(): Array<{ volume: number; kind: string; payload: Buffer }>;
}

export function encodeReservations(state: PrState): Buffer {
  return Buffer.from(JSON.stringify(state), 'utf8');
}

/** The state, or why the payload is not one. */
export function decodeReservations(payload: Buffer): { ok: true; state: PrState } | { ok: false; reason: string } {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, reason: 'the payload is not JSON' };
  }
  return isPrState(value) ? { ok: true, state: value } : { ok: false, reason: 'the payload is not a persistent reservation state' };
}

export function targetHostState(target: GroupTarget): HostStateOwner {
  return {
    snapshot: () => target.reservationStates().map(({ lun, state }) => ({ volume: lun, kind: reservationsKind, payload: encodeReservations(state) })),
    check: (kind, volume, payload) => {
      if (kind !== reservationsKind) return `unknown state kind "${kind}"`;
      if (!target.luns().includes(volume)) return `LUN ${volume} is not served here`;
      const d = decodeReservations(payload);
      return d.ok ? undefined : d.reason;
    },
    adopt: async (_kind, volume, payload) => {
      const d = decodeReservations(payload);
      if (d.ok) await target.adoptReservations(volume, d.state);
    },
  };
}

/** The target side of a group's mirror: reservation changes entered through `record`. */
export function reservationMirror(record: (volume: number, kind: string, payload: Buffer) => Promise<void>): StateMirror {
  return { reservations: (lun, state) => record(lun, reservationsKind, encodeReservations(state)) };
}
