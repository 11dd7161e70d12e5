// The agent's ReservationStore: persistent reservation state per LUN in the lowdb metadata file,
// written atomically before the PERSISTENT RESERVE OUT that changed it completes (APTPL, SPC-4
// 5.13.5). The SCSI target checks what it loads; this adapter only stores and returns it.
import type { MetaStore } from './meta-store.ts';
import type { ReservationStore } from './scsi/reservation-store.ts';

export function metaReservationStore(meta: MetaStore): ReservationStore {
  return {
    load: (lunKey) => meta.read().reservations?.[lunKey],
    save: (lunKey, state) =>
      meta.update((m) => {
        m.reservations = { ...m.reservations, [lunKey]: structuredClone(state) };
      }),
  };
}
