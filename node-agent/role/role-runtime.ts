// Drives the role machine of every group of this site (role-machine.ts) with the monotonic clock:
// ticks, peer messages, witness replies, mirror reports and operator commands in; its actions carried
// out per group strictly in order, a persist completing before anything after it acts (the write gate
// stays closed while a persist is outstanding). The edges (metadata, data path, peer link, witness)
// are passed in; this module opens no socket and no file itself.
import type { Logger } from '../../common/log.ts';
import type { RecordView, WitnessReply, WitnessRequest } from '../../site-witness/arbiter-messages.ts';
import type { WitnessClient } from './witness-client.ts';
import {
  accessState, isPrimary, restoreRole, roleStep, writeGate,
  type GroupAccessState, type OperatorCommand, type PeerMessage, type PersistedRole, type RoleAction,
  type RoleConfig, type RoleInput, type RoleRefusal, type RoleState, type RoleTiming, type WriteGate,
} from './role-machine.ts';

/** The role machine's timing from the topology's failover.leaseMs (DESIGN.md "Arbitration"). */
export function roleTiming(leaseMs: number): RoleTiming {
  return {
    driftMax: 0.01,
    // Event-loop latency between checking the gate and the acknowledgement leaving, under load.
    safetyMarginMs: Math.min(200, Math.max(50, Math.round(leaseMs / 20))),
    peerLeaseMs: leaseMs,
    heartbeatMs: 100,
    leaseRenewMs: Math.max(100, Math.round(leaseMs / 4)),
    witnessPollMs: Math.max(200, Math.round(leaseMs / 4)),
    witnessRetryMs: 200,
    switchoverDrainMaxMs: 5000,
    forceFailoverMaxMs: 2 * leaseMs + 5000,
    witnessLeaseMs: leaseMs,
    // A few of the witness's retries: a witness that answers at all answers within them.
    forceWitnessWaitMs: 1000,
    // Daemons of one cluster rarely start within a lease of each other (metroctl up on a busy host).
    startGraceMs: 4 * leaseMs,
  };
}

export const roleTickMs = 50;

/** What the runtime needs from the rest of the agent. */
export interface RoleEdges {
  now(): number;
  /** Durably record a group's role (the agent metadata); resolves once written. */
  persist(group: string, p: PersistedRole): Promise<void>;
  /** Keep this site's writes the new primary lacks aside (a file per volume), before it resyncs. */
  saveDivergentWrites(group: string, epoch: number): Promise<void>;
  /** After every step whose persisted role, gate or access state changed, in order, after its persist. */
  applied(group: string, view: RoleView): void;
  witness: WitnessClient;
  /** One exchange with the peer agent: our messages out, its answers back; 'unreachable' when it is not. */
  exchange(messages: PeerMessage[]): Promise<PeerMessage[] | 'unreachable' | 'failed'>;
  log: Logger;
}

export interface RoleView {
  readonly epoch: number;
  readonly primary: string;
  readonly isPrimary: boolean;
  readonly gate: WriteGate;
  readonly access: GroupAccessState;
  /** The peer answered at this epoch within the peer lease. */
  readonly peerAlive: boolean;
}

export interface GroupRoleStatus extends RoleView {
  readonly group: string;
  readonly preferredSite: string;
  readonly peerLeaseRemainingMs: number;
  readonly witnessLeaseRemainingMs: number;
  readonly witnessReachable: boolean;
  readonly witnessSeenAgoMs: number | null;
  readonly secondaryUpToDate: boolean | null;
  readonly switchover: boolean;
  readonly failoverRequested: boolean;
  /** Primary here on an operator's forced failover that the witness has not adopted yet. */
  readonly forcedWithoutWitness: boolean;
  readonly blocked: string | null;
}

class GroupRole {
  state!: RoleState;
  private chain: Promise<void> = Promise.resolve();
  /** Persists of a new epoch or primary not yet completed. */
  private persisting = 0;
  /** Epoch and primary of the last persist queued (the chain writes them in this order). */
  private queuedEpoch = -1;
  private queuedPrimary = '';
  private lastView: RoleView | undefined;
  private waiters: Array<() => void> = [];

  constructor(readonly name: string, private readonly rt: RoleRuntime) {}

  /** Steps the machine now; its actions run in order behind the earlier steps' actions. */
  step(input: RoleInput, peerOut: PeerMessage[]): { refusal?: RoleRefusal; done: Promise<void> } {
    const r = roleStep(this.state, input);
    this.state = r.state;
    const done = this.run(r.actions, peerOut);
    return { ...(r.refusal ? { refusal: r.refusal } : {}), done };
  }

  run(actions: readonly RoleAction[], peerOut: PeerMessage[]): Promise<void> {
    const e = this.rt.edges;
    // A new epoch or primary is not acted on before it is durable: the gate stays closed until then.
    // Which persists change them is decided here, against what is already queued, and each of
    // those opens its share once written: a later persist of the same epoch and primary (a notice's
    // sequence) queued before the first is written neither closes nor opens anything.
    const changes = new Set<RoleAction>();
    for (const a of actions) {
      if (a.type !== 'persist' || (a.persisted.epoch === this.queuedEpoch && a.persisted.primary === this.queuedPrimary)) continue;
      changes.add(a);
      this.queuedEpoch = a.persisted.epoch;
      this.queuedPrimary = a.persisted.primary;
    }
    this.persisting += changes.size;
    let viewChanged = false;
    const work = async (): Promise<void> => {
      for (const a of actions) {
        switch (a.type) {
          case 'persist': {
            await e.persist(this.name, a.persisted);
            if (changes.has(a)) this.persisting--;
            viewChanged = true;
            break;
          }
          case 'save-divergent-writes':
            await e.saveDivergentWrites(this.name, a.epoch);
            break;
          case 'write-gate':
          case 'alua':
            viewChanged = true;
            break;
          case 'send-peer':
            peerOut.push(a.message);
            break;
          case 'send-witness':
            this.rt.toWitness(this.name, a.request);
            break;
        }
      }
      if (viewChanged) this.publish();
      this.wake();
    };
    const run = this.chain.then(work);
    this.chain = run.catch((err: Error) => {
      // A role that cannot be persisted must not be acted on: stop rather than risk two primaries.
      e.log.error('cannot carry out the group role', { group: this.name, error: err.message });
      process.exit(1);
    });
    return run;
  }

  gate(nowMs: number): WriteGate {
    return this.persisting > 0 ? 'closed' : writeGate(this.state, nowMs);
  }

  view(nowMs: number): RoleView {
    const s = this.state;
    return {
      epoch: s.persisted.epoch, primary: s.persisted.primary, isPrimary: isPrimary(s),
      gate: this.gate(nowMs), access: accessState(s, nowMs),
      peerAlive: s.peerSeenMs !== null && nowMs - s.peerSeenMs <= s.config.timing.peerLeaseMs,
    };
  }

  publish(): void {
    const v = this.view(this.rt.edges.now());
    const l = this.lastView;
    if (l && l.epoch === v.epoch && l.primary === v.primary && l.gate === v.gate && l.access === v.access && l.peerAlive === v.peerAlive) return;
    this.lastView = v;
    this.rt.edges.applied(this.name, v);
  }

  /** Resolves once pred holds after a step, or false after timeoutMs. */
  until(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    if (pred()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.waiters = this.waiters.filter((w) => w !== check); resolve(false); }, timeoutMs);
      const check = (): void => {
        if (!pred()) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(true);
      };
      this.waiters.push(check);
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

export class RoleRuntime {
  private readonly groups = new Map<string, GroupRole>();
  private timer: NodeJS.Timeout | undefined;
  private exchanging = false;
  private witnessSeen = new Map<string, number>();
  private readonly records = new Map<string, RecordView>();

  constructor(readonly edges: RoleEdges, private readonly cluster: string) {}

  /** Restores each group from what was persisted; resolves once the restored roles are written. */
  async start(configs: Array<{ config: RoleConfig; saved: PersistedRole | null }>): Promise<void> {
    for (const c of configs) await this.addGroup(c.config, c.saved);
    this.timer = setInterval(() => this.tick(), roleTickMs);
  }

  /** A group joins (at start, or added by a topology apply); resolves once its restored role is written. */
  async addGroup(config: RoleConfig, saved: PersistedRole | null): Promise<void> {
    const g = new GroupRole(config.key.group, this);
    const r = restoreRole(config, saved, this.edges.now());
    g.state = r.state;
    this.groups.set(g.name, g);
    await g.run(r.actions, []);
    g.publish();
  }

  /** A group removed by a topology apply: no more steps, its role is forgotten here. */
  dropGroup(group: string): void {
    this.groups.delete(group);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  has(group: string): boolean {
    return this.groups.has(group);
  }

  /** The authority for every write and read at this site, evaluated at the moment of acting. */
  gate(group: string): WriteGate {
    return this.groups.get(group)?.gate(this.edges.now()) ?? 'closed';
  }

  view(group: string): RoleView | undefined {
    return this.groups.get(group)?.view(this.edges.now());
  }

  epoch(group: string): number {
    return this.groups.get(group)?.state.persisted.epoch ?? 0;
  }

  status(): GroupRoleStatus[] {
    const now = this.edges.now();
    return [...this.groups.values()].map((g) => this.statusAt(g, now));
  }

  statusOf(group: string): GroupRoleStatus | undefined {
    const g = this.groups.get(group);
    return g && this.statusAt(g, this.edges.now());
  }

  private statusAt(g: GroupRole, now: number): GroupRoleStatus {
    const s = g.state;
    const seen = this.witnessSeen.get(g.name);
    return {
      group: g.name, preferredSite: s.config.preferredSite, ...g.view(now),
      peerLeaseRemainingMs: Math.max(0, Math.round(s.peerLeaseUntilMs - now)),
      witnessLeaseRemainingMs: Math.max(0, Math.round(s.witnessLeaseUntilMs - now)),
      witnessReachable: seen !== undefined && now - seen <= 2 * s.config.timing.witnessPollMs + 1000,
      witnessSeenAgoMs: seen === undefined ? null : Math.round(now - seen),
      secondaryUpToDate: s.notice ? s.notice.upToDate : isPrimary(s) ? s.mirrorInSync : null,
      switchover: s.switchover !== null,
      failoverRequested: s.force !== null || s.persisted.changeRequested,
      forcedWithoutWitness: s.persisted.forcedWithoutWitness,
      blocked: s.blocked,
    };
  }

  /** Answers from the peer agent's Exchange: steps every message, returns our answers (pongs). */
  async onPeerMessages(messages: PeerMessage[]): Promise<PeerMessage[]> {
    const out: PeerMessage[] = [];
    const done: Promise<void>[] = [];
    for (const m of messages) {
      const g = this.groups.get(m.key.group);
      if (!g || m.key.cluster !== this.cluster) continue;
      done.push(g.step({ type: 'peer-message', nowMs: this.edges.now(), message: m }, out).done);
    }
    await Promise.all(done);
    return out;
  }

  /** From the mirror: whether the secondary holds every acknowledged write, else its lag bound. */
  mirror(group: string, inSync: boolean, lagMs: number | null): void {
    const g = this.groups.get(group);
    if (!g) return;
    const s = g.state;
    if (s.mirrorInSync === inSync && s.mirrorLagMs === lagMs) return;
    this.stepOut(g, { type: 'mirror', nowMs: this.edges.now(), inSync, lagMs });
  }

  /**
   * The mirror's recorder hook: the secondary may miss acknowledged writes from now on. Resolves once
   * the witness has acknowledged it outdated (the gate is 'local'); false when this site stopped
   * being the primary of the epoch meanwhile or the witness did not answer within waitMs.
   */
  async markOutdated(group: string, lagMs: number | null, waitMs: number): Promise<boolean> {
    const g = this.groups.get(group);
    if (!g) return false;
    const epoch = g.state.persisted.epoch;
    this.mirror(group, false, lagMs);
    const ok = await g.until(() => g.gate(this.edges.now()) === 'local' || g.state.persisted.epoch !== epoch || !isPrimary(g.state), waitMs);
    return ok && g.state.persisted.epoch === epoch && isPrimary(g.state) && g.gate(this.edges.now()) === 'local';
  }

  /** An operator command; resolves with the machine's refusal, if any. */
  operator(group: string, command: OperatorCommand): RoleRefusal | 'UNKNOWN_GROUP' | undefined {
    const g = this.groups.get(group);
    if (!g) return 'UNKNOWN_GROUP';
    return this.stepOut(g, { type: 'operator', nowMs: this.edges.now(), command });
  }

  /** Waits until pred holds for the group's state (checked after every step) or the time runs out. */
  until(group: string, pred: (s: RoleState) => boolean, timeoutMs: number): Promise<boolean> {
    const g = this.groups.get(group);
    if (!g) return Promise.resolve(false);
    return g.until(() => pred(g.state), timeoutMs);
  }

  /** The witness's record of the group as last heard, and how long ago. */
  lastRecord(group: string): { record: RecordView; agoMs: number } | undefined {
    const record = this.records.get(group);
    const seen = this.witnessSeen.get(group);
    return record && seen !== undefined ? { record, agoMs: this.edges.now() - seen } : undefined;
  }

  state(group: string): RoleState | undefined {
    return this.groups.get(group)?.state;
  }

  private stepOut(g: GroupRole, input: RoleInput): RoleRefusal | undefined {
    const out: PeerMessage[] = [];
    const r = g.step(input, out);
    r.done.then(() => { if (out.length > 0) this.sendPeer(out); }, () => undefined);
    return r.refusal;
  }

  toWitness(group: string, request: WitnessRequest): void {
    this.edges.witness.arbitrate(request).then((r) => {
      if (!r.ok) return;
      this.witnessSeen.set(group, this.edges.now());
      if (r.reply.record) this.records.set(group, r.reply.record);
      this.onWitnessReply(r.reply);
    }, () => undefined);
  }

  private onWitnessReply(reply: WitnessReply): void {
    const g = this.groups.get(reply.key.group);
    if (!g) return;
    this.stepOut(g, { type: 'witness-reply', nowMs: this.edges.now(), reply });
  }

  private tick(): void {
    const out: PeerMessage[] = [];
    const done: Promise<void>[] = [];
    for (const g of this.groups.values()) {
      done.push(g.step({ type: 'tick', nowMs: this.edges.now() }, out).done);
      g.publish();
    }
    Promise.all(done).then(() => { if (out.length > 0) this.sendPeer(out); }, () => undefined);
  }

  private sendPeer(messages: PeerMessage[]): void {
    // One exchange at a time: a slow peer does not pile calls up; the next tick repeats what matters.
    if (this.exchanging && messages.every((m) => m.kind === 'ping')) return;
    this.exchanging = true;
    this.edges.exchange(messages).then((answers) => {
      this.exchanging = false;
      if (answers === 'failed') return;
      if (answers === 'unreachable') {
        for (const g of this.groups.values()) {
          if (g.state.peerSeenMs !== null) this.stepOut(g, { type: 'peer-lost', nowMs: this.edges.now() });
        }
        return;
      }
      for (const m of answers) {
        const g = this.groups.get(m.key.group);
        if (g && m.key.cluster === this.cluster) this.stepOut(g, { type: 'peer-message', nowMs: this.edges.now(), message: m });
      }
    }, () => { this.exchanging = false; });
  }
}
