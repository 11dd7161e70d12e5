// ReservationStore: the edge through which a target keeps persistent reservation state across
// restarts (APTPL, SPC-4 5.13.5). `save` resolves once the state is durable; the target waits for
// it before the PERSISTENT RESERVE OUT command completes. The agent's adapter is in node-agent/.
import type { PrState } from './persistent-reservations.ts';

export interface ReservationStore {
  /** The state saved for this logical unit, unchecked; undefined when none was saved. */
  load(lunKey: string): unknown;
  save(lunKey: string, state: PrState): Promise<void>;
}

/** Keeps states in memory (tests, and targets whose reservations need not survive a restart). */
export class MemoryReservationStore implements ReservationStore {
  readonly saved = new Map<string, PrState>();
  saves = 0;

  load(lunKey: string): unknown {
    const s = this.saved.get(lunKey);
    return s === undefined ? undefined : structuredClone(s);
  }

  async save(lunKey: string, state: PrState): Promise<void> {
    this.saves++;
    this.saved.set(lunKey, structuredClone(state));
  }
}
