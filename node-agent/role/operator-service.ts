// The operator commands of one site (agent.proto Switchover, Failover, FailoverPreviewOf) and the
// arbitration part of its status, over the role runtime. Each answers with one sentence; refusals
// are replies with ok=false, never thrown. A forced failover with the witness unreachable goes on
// without it (role-machine.ts, "Forced failover without the witness") and says so in its reply.
import { forceWaitMs, isPrimary, type RoleState } from './role-machine.ts';
import type { RoleRuntime, GroupRoleStatus } from './role-runtime.ts';

export interface OperatorReply {
  ok: boolean;
  message: string;
  epoch: number;
  primary: string;
  elapsedMs: number;
  /** Failover: false when it was forced without the witness. */
  witnessConsulted?: boolean;
  /** Failover: the worst-case data loss, as the preview showed it before. */
  dataLoss?: string;
}

export interface FailoverPreview {
  primaryReachable: boolean;
  witnessReachable: boolean;
  secondary: 'up-to-date' | 'outdated' | 'unknown';
  lagMs: number | null;
  worstCase: string;
  /** The witness is unreachable: what a forced failover does without it; '' otherwise. */
  withoutWitness: string;
}

export class OperatorService {
  constructor(
    private readonly runtime: RoleRuntime,
    private readonly site: string,
    private readonly leaseMs: number,
    /** Holds a group's new I/O and waits for what is in flight to reach the secondary (GroupDataPath.drain). */
    private readonly drain: (group: string, timeoutMs: number) => Promise<{ drained: boolean; release: () => void }>,
  ) {}

  private reply(group: string, ok: boolean, message: string, t0: number): OperatorReply {
    const s = this.runtime.state(group);
    return { ok, message, epoch: s?.persisted.epoch ?? 0, primary: s?.persisted.primary ?? '', elapsedMs: performance.now() - t0 };
  }

  /** Planned move of a group served here to the peer: drain, hand over at the witness, wait for it. */
  async switchover(group: string): Promise<OperatorReply> {
    const t0 = performance.now();
    const s = this.runtime.state(group);
    if (!s) return this.reply(group, false, `group ${group} is not in this cluster`, t0);
    if (!isPrimary(s)) return this.reply(group, false, `${this.site} is not the primary of ${group} (${s.persisted.primary} is, epoch ${s.persisted.epoch})`, t0);
    const epoch = s.persisted.epoch;
    // Drain first, so nothing is in flight when the gate closes: no write fails or diverges.
    const hold = await this.drain(group, s.config.timing.switchoverDrainMaxMs);
    if (!hold.drained) {
      hold.release();
      return this.reply(group, false, `switchover of ${group} refused: the writes in flight did not reach the secondary within ${s.config.timing.switchoverDrainMaxMs} ms`, t0);
    }
    const refusal = this.runtime.operator(group, 'switchover');
    if (refusal) {
      hold.release();
      return this.reply(group, false, `switchover of ${group} refused: ${refusal}`, t0);
    }
    await this.runtime.until(group, (x) => x.persisted.epoch > epoch || (x.switchover === null && x.blocked !== null), s.config.timing.switchoverDrainMaxMs + 2000);
    hold.release();
    const after = this.runtime.state(group)!;
    if (after.persisted.epoch > epoch && !isPrimary(after)) {
      return this.reply(group, true, `${group} handed over to ${after.persisted.primary} in epoch ${after.persisted.epoch}`, t0);
    }
    const why = after.blocked === 'SWITCHOVER_TIMEOUT' ? 'the secondary did not confirm it holds every write in time (is it resynced and reachable?)'
      : after.blocked ? `the witness refused: ${after.blocked}` : 'no answer in time';
    return this.reply(group, false, `switchover of ${group} did not happen: ${why}; ${this.site} still serves it`, t0);
  }

  /**
   * Unplanned promotion of this site. Without force: only what automatic failover would do, now.
   * With force: the operator declares the primary site lost; with the witness unreachable too, the
   * site makes the new epoch itself once the old primary's lease is over. A primary here that is
   * fenced (it reaches neither its peer nor the witness) may be forced to serve the same way.
   */
  async failover(group: string, force: boolean): Promise<OperatorReply> {
    const t0 = performance.now();
    const s = this.runtime.state(group);
    if (!s) return this.reply(group, false, `group ${group} is not in this cluster`, t0);
    const view = this.runtime.view(group)!;
    const peer = s.config.peer;
    const wasPrimary = isPrimary(s);
    if (wasPrimary && view.gate !== 'closed') return this.reply(group, true, `${this.site} is already the primary of ${group} (epoch ${s.persisted.epoch})`, t0);
    if (wasPrimary && !force) {
      return this.reply(group, false, `${this.site} is the primary of ${group} but fenced: it reaches neither ${peer} nor the witness; --force declares ${peer} lost and makes ${this.site} serve without them`, t0);
    }
    if (view.peerAlive) return this.reply(group, false, `the ${wasPrimary ? 'secondary' : 'primary'} ${peer} of ${group} is alive and reachable: use switchover`, t0);
    const st = this.status(group);
    if (!st?.witnessReachable && !force) {
      return this.reply(group, false, `no quorum: ${this.site} reaches neither its peer nor the witness, so it cannot be promoted safely; --force declares ${peer} and the witness lost and promotes it without them`, t0);
    }
    // The bound as the operator saw it, before anything changes.
    const dataLoss = this.preview(group).worstCase;
    const epoch = s.persisted.epoch;
    if (force) {
      const refusal = this.runtime.operator(group, 'force-failover');
      if (refusal) return this.reply(group, false, `forced failover of ${group} refused: ${refusal}`, t0);
    }
    const done = (x: RoleState): boolean => {
      if (x.persisted.epoch > epoch) return isPrimary(x) || x.force === null;
      if (wasPrimary) return x.force === null;
      return isPrimary(x) || (force && x.force === null && x.blocked !== null);
    };
    // The old primary's lease must run out first, at the witness or, without it, here.
    await this.runtime.until(group, done, 2 * this.leaseMs + 6000);
    const after = this.runtime.state(group)!;
    const serving = isPrimary(after) && (after.persisted.epoch > epoch || (wasPrimary && this.runtime.gate(group) !== 'closed'));
    if (!serving) {
      const why = after.blocked ?? (wasPrimary ? 'it did not regain quorum in time' : 'the witness did not grant it in time');
      return { ...this.reply(group, false, `${group} was not promoted: ${why}${force ? '' : ' (--force declares disaster and skips the data checks)'}`, t0), dataLoss };
    }
    const e = after.persisted.epoch;
    // Made here (+3, or +2 from a fenced primary), not by the witness (+1): the witness may have adopted it since.
    const withoutWitness = after.persisted.forcedWithoutWitness || e - epoch === (wasPrimary ? 2 : 3);
    if (!withoutWitness) {
      const how = wasPrimary ? `${this.site} serves ${group} again in epoch ${e}` : `${this.site} is now the primary of ${group} in epoch ${e}`;
      return { ...this.reply(group, true, how, t0), witnessConsulted: true, dataLoss };
    }
    const message = `${this.site} is now the primary of ${group} in epoch ${e}, forced without the witness (unreachable, not consulted): `
      + `it acknowledges writes on your order with ${peer} recorded outdated; the witness adopts epoch ${e} when it is back; `
      + `${peer}, when it returns, steps down, keeps the writes ${this.site} lacks under its dataDir/divergent/ and resyncs`;
    return { ...this.reply(group, true, message, t0), witnessConsulted: false, dataLoss };
  }

  preview(group: string): FailoverPreview {
    const view = this.runtime.view(group);
    const st = this.status(group);
    const s = this.runtime.state(group);
    const peer = s?.config.peer ?? 'the other site';
    const last = this.runtime.lastRecord(group);
    const secondary = last ? (last.record.secondaryUpToDate ? 'up-to-date' : 'outdated') : 'unknown';
    const lagMs = last && !last.record.secondaryUpToDate ? last.record.lagMs : null;
    const ago = last ? `${Math.round(last.agoMs)} ms ago` : 'never';
    const worstCase = s && isPrimary(s)
      ? `none: ${this.site} is the primary of ${group} (epoch ${s.persisted.epoch}) and holds every write it acknowledged`
      : secondary === 'up-to-date'
        ? `none known: the witness recorded ${this.site} up-to-date (heard ${ago}); writes acknowledged after that are lost only if the primary then ran alone`
        : secondary === 'outdated'
          ? (lagMs !== null ? `up to ${lagMs} ms of writes acknowledged by the primary before it was lost` : `every write the primary acknowledged since ${this.site} fell behind (no lag bound recorded)`)
          : `unknown: ${this.site} never heard the witness's record; every write the primary acknowledged may be missing here`;
    const waitMs = s ? Math.round(forceWaitMs(s.config.timing)) : 0;
    const withoutWitness = st?.witnessReachable ? '' : `the witness is unreachable from ${this.site} (${last ? `its record as last heard ${ago}` : 'its record never heard'}): `
      + `a forced failover goes on without it once a lease it may have granted ${peer} is over (${waitMs} ms from the order), on your word that ${peer} is down; `
      + `if ${peer} still reaches the witness, both sites serve ${group} until they meet, and ${peer}'s writes since are then saved aside`;
    return { primaryReachable: view?.peerAlive ?? false, witnessReachable: st?.witnessReachable ?? false, secondary, lagMs, worstCase, withoutWitness };
  }

  status(group: string): GroupRoleStatus | undefined {
    return this.runtime.statusOf(group);
  }
}
