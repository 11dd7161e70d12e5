// Unit attention conditions (SAM-5 5.14, SPC-4 5.14): one bounded queue per I_T nexus per logical
// unit, oldest reported first. Pure bookkeeping; the target decides when to establish and report.
import type { AdditionalSense } from './sense.ts';

export class UnitAttentions {
  private readonly queues = new Map<string, Map<number, AdditionalSense[]>>();
  /** Total conditions queued, so the command path skips the lookups when nothing is pending. */
  private pending = 0;

  constructor(private readonly queueMaxConditions: number) {}

  knows(nexusId: string): boolean {
    return this.queues.has(nexusId);
  }

  /** A new nexus: every logical unit has `code` pending for it (SAM-5 6.3.1, power on / new nexus). */
  openNexus(nexusId: string, luns: Iterable<number>, code: AdditionalSense): void {
    this.closeNexus(nexusId);
    const perLun = new Map<number, AdditionalSense[]>();
    this.queues.set(nexusId, perLun);
    for (const lun of luns) {
      perLun.set(lun, [code]);
      this.pending++;
    }
  }

  closeNexus(nexusId: string): void {
    const perLun = this.queues.get(nexusId);
    if (!perLun) return;
    for (const q of perLun.values()) this.pending -= q.length;
    this.queues.delete(nexusId);
  }

  /** Establishes `code` on `lun` for every nexus (or those `only` admits). */
  establish(lun: number, code: AdditionalSense, only?: (nexusId: string) => boolean): void {
    for (const [nexusId, perLun] of this.queues) {
      if (only && !only(nexusId)) continue;
      let q = perLun.get(lun);
      if (!q) perLun.set(lun, (q = []));
      // A condition already pending need not be reported twice; a full queue keeps the older
      // conditions (SAM-5 5.14 lets a logical unit drop conditions it cannot queue).
      if (q.some((c) => c.asc === code.asc && c.ascq === code.ascq)) continue;
      if (q.length >= this.queueMaxConditions) continue;
      q.push(code);
      this.pending++;
    }
  }

  /** Removes and returns the oldest condition pending for this nexus and LUN. */
  take(nexusId: string, lun: number): AdditionalSense | undefined {
    if (this.pending === 0) return undefined;
    const q = this.queues.get(nexusId)?.get(lun);
    if (!q || q.length === 0) return undefined;
    this.pending--;
    return q.shift();
  }

  peek(nexusId: string, lun: number): AdditionalSense | undefined {
    if (this.pending === 0) return undefined;
    return this.queues.get(nexusId)?.get(lun)?.[0];
  }
}
