// The simulated world of the arbitration simulator and the scenario tests: two sites running the
// real role machines, a witness running the real arbiter, a network with per-link delay, loss,
// reordering and one-way partitions, drifting clocks, crashes that keep only persisted state, a
// mirror model and client writes. Invariants are checked after every event; a breach throws
// InvariantViolation with the recent trace.
//
// Forced failovers are the operator's: a forced failover made without the witness declares the old
// primary lost, and the simulator lets the old primary go on serving its older epoch only where that
// declaration was wrong in a way no site could have seen: its lease basis is a witness lease granted
// after the forcing site declared the witness gone. Such a site is 'set aside': its writes are the
// ones saved aside when it meets the newer epoch, accounted in the stats, not required to survive.
// Everything else still breaks an invariant: two sites serving one group otherwise, a forced epoch
// without an operator's order at that site, a lease the forcing site should have waited out.
import { prng } from '../../common/prng.ts';
import {
  arbiterStep,
  newArbiter,
  recordOf,
  restoreArbiter,
  type ArbiterAction,
  type ArbiterState,
  type DurableRecord,
} from '../../site-witness/arbiter.ts';
import { groupKeyString, type GroupKey, type WitnessReply, type WitnessRequest } from '../../site-witness/arbiter-messages.ts';
import { usableUntilMs } from '../../node-agent/role/lease.ts';
import {
  accessState,
  isPrimary,
  restoreRole,
  roleStep,
  writeGate,
  type OperatorCommand,
  type PeerMessage,
  type PersistedRole,
  type RoleAction,
  type RoleInput,
  type RoleRefusal,
  type RoleState,
  type RoleTiming,
  type WriteGate,
} from '../../node-agent/role/role-machine.ts';
import { EventQueue } from './event-queue.ts';

export const SITES = ['alpha', 'beta'] as const;
export const WITNESS = 'witness';
export type SiteId = (typeof SITES)[number];
export type NodeId = SiteId | typeof WITNESS;

export interface WorldOptions {
  seed: number;
  cluster: string;
  groups: readonly { name: string; preferredSite: SiteId }[];
  leaseMs: number;
  maxDataLossMs: number;
  timing: RoleTiming;
  /** Site timer period, on the site's clock. */
  tickMs: number;
  /** 'random': each boot's clock runs at a rate within timing.driftMax of real time. */
  drift: 'none' | 'random';
  /** Default per-message delay range of every link. */
  delayMs: readonly [number, number];
  /** A mirrored write unanswered this long means the mirror no longer keeps up. */
  stallMs: number;
  /** A write not acknowledged within this is failed to the client. */
  writeTimeoutMs: number;
  /** Resend the whole data set to an unsynced secondary at most this often (resync). */
  resyncEveryMs: number;
}

export class InvariantViolation extends Error {
  override name = 'InvariantViolation';
}

interface Clock { bootT: number; offsetMs: number; rate: number }

interface Link { up: boolean; delayMs: readonly [number, number]; loss: number }

type Payload =
  | { readonly t: 'peer'; readonly m: PeerMessage }
  | { readonly t: 'wreq'; readonly r: WitnessRequest }
  /** grantT: real time the witness decided (for leases: when it granted). */
  | { readonly t: 'wrep'; readonly r: WitnessReply; readonly grantT: number }
  | { readonly t: 'mirror'; readonly group: string; readonly epoch: number; readonly ids: readonly number[]; readonly full: boolean }
  | { readonly t: 'mack'; readonly group: string; readonly epoch: number; readonly ids: readonly number[]; readonly full: boolean };

type Ev =
  | { readonly k: 'tick'; readonly site: SiteId; readonly boot: number }
  | { readonly k: 'deliver'; readonly from: NodeId; readonly to: NodeId; readonly p: Payload }
  | { readonly k: 'call'; readonly fn: () => void };

interface GroupAtSite {
  role: RoleState | null;
  /** durable */
  persisted: PersistedRole | null;
  /** durable: ids of the writes this site's volume holds */
  data: Set<number>;
  /** primary side of the mirror, volatile: writes the secondary has not acknowledged in this epoch */
  unacked: Map<number, { sinceT: number; clientAcked: boolean }>;
  /** mirrored writes waiting for the secondary before their acknowledgement */
  pending: Map<number, number>;
  mirrorEpoch: number;
  mirrorReported: boolean | null;
  /** the secondary has answered a full resync in this epoch */
  peerConfirmed: boolean;
  lastResyncT: number;
  /** volatile: witness leases delivered, by the usable-until the role machine computes, with the real grant time */
  leaseGrants: Map<number, number>;
  /** durable: times this site saved its divergent writes aside */
  divergentSaves: number;
}

interface SiteNode {
  up: boolean;
  boot: number;
  clock: Clock;
  groups: Map<string, GroupAtSite>;
}

interface WitnessNode {
  up: boolean;
  clock: Clock;
  state: ArbiterState | null;
  /** durable */
  records: Map<string, DurableRecord>;
}

export interface AckRecord { id: number; group: string; site: SiteId; epoch: number; t: number }

export interface WorldStats {
  events: number;
  writesAcked: number;
  writesRefused: number;
  writesFailed: number;
  failovers: number;
  forcedFailovers: number;
  switchovers: number;
  forcedLossWrites: number;
  divergentSaves: number;
  /** forced failovers made by a site without the witness, on the operator's order */
  forcedWithoutWitness: number;
  /** ... whose epoch the witness adopted later */
  forcedAdoptions: number;
  /** times a site was set aside: it went on serving an epoch a forced failover had replaced */
  setAside: number;
  /** writes acknowledged by a set-aside site: saved aside when it meets the newer epoch */
  setAsideWrites: number;
}

const TRACE_MAX = 400;

export class World {
  readonly opts: WorldOptions;
  readonly rand: () => number;
  t = 0;
  readonly stats: WorldStats = {
    events: 0, writesAcked: 0, writesRefused: 0, writesFailed: 0, failovers: 0, forcedFailovers: 0,
    switchovers: 0, forcedLossWrites: 0, divergentSaves: 0, forcedWithoutWitness: 0, forcedAdoptions: 0,
    setAside: 0, setAsideWrites: 0,
  };
  /** Writes acknowledged that must survive (set-aside sites' writes are in setAsideAcks). */
  readonly acks: AckRecord[] = [];
  readonly setAsideAcks: AckRecord[] = [];
  private readonly queue = new EventQueue<Ev>();
  private readonly sites: Record<SiteId, SiteNode>;
  private readonly witness: WitnessNode;
  private readonly links = new Map<string, Link>();
  private readonly trace: string[] = [];
  private nextWriteId = 1;
  /** per group: acknowledged writes that must survive, with their epoch (less what forced failovers lost) */
  private readonly required = new Map<string, Map<number, number>>();
  private readonly maxAckEpoch = new Map<string, number>();
  private readonly forcedEpochs = new Set<string>();
  /** per group: epochs made by a site without the witness, with the real time it declared the witness gone from */
  private readonly witnessless = new Map<string, Map<number, { site: SiteId; quietSinceT: number }>>();
  /** site/group -> real time of the operator's accepted force order (volatile, as the role machine's) */
  private readonly forceOrders = new Map<string, number>();
  private readonly setAsideNow = new Set<string>();
  private readonly openSite = new Map<string, SiteId | null>();

  constructor(opts: WorldOptions) {
    this.opts = opts;
    this.rand = prng(opts.seed);
    const mkSite = (): SiteNode => ({ up: false, boot: 0, clock: this.newClock(), groups: new Map() });
    this.sites = { alpha: mkSite(), beta: mkSite() };
    for (const s of SITES) {
      for (const g of opts.groups) {
        this.sites[s].groups.set(g.name, {
          role: null, persisted: null, data: new Set(), unacked: new Map(), pending: new Map(),
          mirrorEpoch: 0, mirrorReported: null, peerConfirmed: false, lastResyncT: -Infinity,
          leaseGrants: new Map(), divergentSaves: 0,
        });
      }
    }
    this.witness = { up: false, clock: this.newClock(), state: null, records: new Map() };
    const nodes: NodeId[] = [...SITES, WITNESS];
    for (const a of nodes) for (const b of nodes) if (a !== b) this.links.set(`${a}>${b}`, { up: true, delayMs: opts.delayMs, loss: 0 });
    for (const g of opts.groups) {
      this.required.set(g.name, new Map());
      this.witnessless.set(g.name, new Map());
      this.maxAckEpoch.set(g.name, 0);
      this.openSite.set(g.name, null);
    }
  }

  // ---- running ----

  start(): void {
    this.startWitness();
    for (const s of SITES) this.startSite(s);
  }

  schedule(atT: number, fn: () => void): void {
    this.queue.push(atT, { k: 'call', fn });
  }

  runUntil(endT: number): void {
    while (this.queue.peekTime() <= endT) {
      const { t, item } = this.queue.pop();
      this.t = t;
      this.stats.events++;
      this.handle(item);
      this.checkInvariants();
    }
    this.t = endT;
  }

  private handle(ev: Ev): void {
    switch (ev.k) {
      case 'call':
        ev.fn();
        return;
      case 'tick':
        return this.onTick(ev.site, ev.boot);
      case 'deliver':
        return this.deliver(ev.from, ev.to, ev.p);
    }
  }

  // ---- faults and commands (used by scenarios and the random driver) ----

  setLink(from: NodeId, to: NodeId, change: Partial<Link>): void {
    const l = this.links.get(`${from}>${to}`)!;
    this.links.set(`${from}>${to}`, { ...l, ...change });
  }

  partition(a: NodeId, b: NodeId, oneWay = false): void {
    this.note(`partition ${a}${oneWay ? '->' : '-'}${b}`);
    this.setLink(a, b, { up: false });
    if (!oneWay) this.setLink(b, a, { up: false });
  }

  heal(a?: NodeId, b?: NodeId): void {
    this.note(a && b ? `heal ${a}-${b}` : 'heal all');
    for (const [k, l] of this.links) {
      const [x, y] = k.split('>');
      if (!a || !b || (x === a && y === b) || (x === b && y === a)) this.links.set(k, { ...l, up: true });
    }
  }

  /** All links up, no loss, default delays. */
  healAll(): void {
    this.note('heal all, clean links');
    for (const k of this.links.keys()) this.links.set(k, { up: true, delayMs: this.opts.delayMs, loss: 0 });
  }

  isUp(n: NodeId): boolean {
    return n === WITNESS ? this.witness.up : this.sites[n].up;
  }

  crash(n: NodeId): void {
    if (!this.isUp(n)) return;
    this.note(`crash ${n}`);
    if (n === WITNESS) {
      this.witness.up = false;
      this.witness.state = null;
      return;
    }
    const s = this.sites[n];
    s.up = false;
    for (const g of s.groups.values()) {
      for (const _ of g.pending) this.stats.writesFailed++;
      g.role = null;
      g.unacked = new Map();
      g.pending = new Map();
      g.mirrorReported = null;
      g.peerConfirmed = false;
      g.mirrorEpoch = 0;
      g.leaseGrants = new Map();
    }
    for (const g of this.opts.groups) {
      if (this.openSite.get(g.name) === n) this.openSite.set(g.name, null);
      this.forceOrders.delete(`${n}/${g.name}`);
    }
  }

  /** A new witness on an empty data folder in place of the old one (witness replacement). */
  replaceWitness(): void {
    this.crash(WITNESS);
    this.note('replace the witness: a new one on an empty data folder');
    this.witness.records.clear();
    this.startWitness();
  }

  restart(n: NodeId): void {
    if (this.isUp(n)) return;
    this.note(`restart ${n}`);
    if (n === WITNESS) this.startWitness();
    else this.startSite(n);
  }

  operator(site: SiteId, group: string, command: OperatorCommand): RoleRefusal | 'SITE_DOWN' | null {
    if (!this.sites[site].up) return 'SITE_DOWN';
    this.note(`operator ${command} ${group} at ${site}`);
    // A force ordered while one is pending keeps the first order's time, as the role machine does.
    const fresh = command === 'force-failover' && !this.role(site, group)?.force;
    const step = this.stepRole(site, group, { type: 'operator', nowMs: this.localNow(site), command });
    if (fresh && step === undefined) this.forceOrders.set(`${site}/${group}`, this.t);
    return step ?? null;
  }

  /** A client write sent to `site`: 'acked' at once, 'pending' (waits for the mirror), or 'refused'. */
  write(site: SiteId, group: string): { id: number; outcome: 'acked' | 'pending' | 'refused' } {
    const s = this.sites[site];
    const g = s.groups.get(group)!;
    if (!s.up || !g.role) return { id: 0, outcome: 'refused' };
    const gate = writeGate(g.role, this.localNow(site));
    if (gate === 'closed') {
      this.stats.writesRefused++;
      return { id: 0, outcome: 'refused' };
    }
    this.startMirrorEpoch(g);
    const id = this.nextWriteId++;
    g.data.add(id);
    g.unacked.set(id, { sinceT: this.t, clientAcked: gate === 'local' });
    const epoch = g.role.persisted.epoch;
    this.send(site, peerOf(site), { t: 'mirror', group, epoch, ids: [id], full: false });
    if (gate === 'local') {
      this.acknowledge(site, group, id, epoch);
      return { id, outcome: 'acked' };
    }
    g.pending.set(id, this.t);
    return { id, outcome: 'pending' };
  }

  // ---- views ----

  role(site: SiteId, group: string): RoleState | null {
    return this.sites[site].groups.get(group)!.role;
  }

  persistedRole(site: SiteId, group: string): PersistedRole | null {
    return this.sites[site].groups.get(group)!.persisted;
  }

  gate(site: SiteId, group: string): WriteGate {
    const r = this.role(site, group);
    return r && this.sites[site].up ? writeGate(r, this.localNow(site)) : 'closed';
  }

  alua(site: SiteId, group: string): string {
    const r = this.role(site, group);
    return r && this.sites[site].up ? accessState(r, this.localNow(site)) : 'down';
  }

  hasWrite(site: SiteId, group: string, id: number): boolean {
    return this.sites[site].groups.get(group)!.data.has(id);
  }

  divergentSaves(site: SiteId, group: string): number {
    return this.sites[site].groups.get(group)!.divergentSaves;
  }

  witnessRecord(group: string): DurableRecord | undefined {
    return this.witness.records.get(groupKeyString(this.key(group)));
  }

  witnessLeaseExpiry(group: string): number | undefined {
    return this.witness.state ? recordOf(this.witness.state, this.key(group))?.leaseExpiresAtMs : undefined;
  }

  recentTrace(n = 60): string {
    return this.trace.slice(-n).join('\n');
  }

  note(line: string): void {
    this.trace.push(`${this.t.toFixed(1).padStart(9)} ${line}`);
    if (this.trace.length > TRACE_MAX) this.trace.splice(0, this.trace.length - TRACE_MAX);
  }

  violation(what: string): never {
    this.note(`VIOLATION ${what}`);
    throw new InvariantViolation(`seed ${this.opts.seed} at t=${this.t.toFixed(1)}: ${what}`);
  }

  // ---- clocks ----

  private newClock(): Clock {
    const d = this.opts.timing.driftMax;
    let rate = 1;
    if (this.opts.drift === 'random') {
      const r = this.rand();
      // Half the boots at the extremes of the bound, where the lease arithmetic is tightest.
      rate = r < 0.25 ? 1 - d : r < 0.5 ? 1 + d : 1 - d + 2 * d * this.rand();
    }
    const offsetMs = this.opts.drift === 'random' ? Math.floor(this.rand() * 1e6) : 0;
    return { bootT: this.t, offsetMs, rate };
  }

  localNow(n: NodeId): number {
    const c = n === WITNESS ? this.witness.clock : this.sites[n].clock;
    return c.offsetMs + (this.t - c.bootT) * c.rate;
  }

  /** The real time at which a site's clock (this boot) read localMs. */
  private realT(site: SiteId, localMs: number): number {
    const c = this.sites[site].clock;
    return c.bootT + (localMs - c.offsetMs) / c.rate;
  }

  private key(group: string): GroupKey {
    return { cluster: this.opts.cluster, group };
  }

  // ---- network ----

  private send(from: NodeId, to: NodeId, p: Payload): void {
    const l = this.links.get(`${from}>${to}`)!;
    if (!l.up || (l.loss > 0 && this.rand() < l.loss)) return;
    const [lo, hi] = l.delayMs;
    this.queue.push(this.t + lo + (hi - lo) * this.rand(), { k: 'deliver', from, to, p });
  }

  private deliver(from: NodeId, to: NodeId, p: Payload): void {
    if (!this.isUp(to)) return;
    if (to === WITNESS) {
      if (p.t === 'wreq') this.witnessInput({ type: 'request', nowMs: this.localNow(WITNESS), request: p.r });
      return;
    }
    const site = to;
    switch (p.t) {
      case 'peer':
        this.stepRole(site, p.m.key.group, { type: 'peer-message', nowMs: this.localNow(site), message: p.m });
        return;
      case 'wrep':
        this.noteLeaseGrant(site, p.r, p.grantT);
        this.stepRole(site, p.r.key.group, { type: 'witness-reply', nowMs: this.localNow(site), reply: p.r });
        return;
      case 'mirror':
        return this.onMirror(site, from as SiteId, p);
      case 'mack':
        return this.onMirrorAck(site, p);
      case 'wreq':
        return;
    }
  }

  // ---- witness ----

  private startWitness(): void {
    const w = this.witness;
    w.up = true;
    w.clock = this.newClock();
    const now = this.localNow(WITNESS);
    w.state = w.records.size ? restoreArbiter([...w.records.values()], now) : newArbiter(now);
    for (const g of this.opts.groups) {
      this.witnessInput({
        type: 'register', nowMs: now,
        registration: { key: this.key(g.name), sites: SITES, preferredSite: g.preferredSite, leaseMs: this.opts.leaseMs, maxDataLossMs: this.opts.maxDataLossMs },
      });
    }
  }

  private witnessInput(input: Parameters<typeof arbiterStep>[1]): void {
    const w = this.witness;
    const step = arbiterStep(w.state!, input);
    w.state = step.state;
    for (const a of step.actions) this.witnessAction(a);
  }

  private witnessAction(a: ArbiterAction): void {
    switch (a.type) {
      case 'persist': {
        const k = groupKeyString(a.record.key);
        const before = this.witness.records.get(k);
        if (before && a.record.epoch < before.epoch) this.violation(`witness epoch of ${k} went back ${before.epoch} -> ${a.record.epoch}`);
        this.witness.records.set(k, a.record);
        if (a.record.forced) this.forcedEpochs.add(`${a.record.key.group}@${a.record.epoch}`);
        return;
      }
      case 'primary-changed':
        this.note(`witness: ${a.key.group} primary ${a.from} -> ${a.to} epoch ${a.epoch} (${a.cause})`);
        if (a.cause === 'failover') this.stats.failovers++;
        else if (a.cause === 'forced-failover') this.stats.forcedFailovers++;
        else this.stats.switchovers++;
        return;
      case 'epoch-adopted':
        this.note(`witness: ${a.key.group} adopts epoch ${a.epoch} (primary ${a.primary}, from ${a.fromEpoch}) reported by ${a.reportedBy}`);
        this.stats.forcedAdoptions++;
        return;
      case 'reply':
        this.send(WITNESS, a.reply.site as SiteId, { t: 'wrep', r: a.reply, grantT: this.t });
        return;
    }
  }

  // ---- sites ----

  private startSite(site: SiteId): void {
    const s = this.sites[site];
    s.up = true;
    s.boot++;
    s.clock = this.newClock();
    const now = this.localNow(site);
    for (const g of this.opts.groups) {
      const gs = s.groups.get(g.name)!;
      const step = restoreRole(
        { key: this.key(g.name), site, peer: peerOf(site), preferredSite: g.preferredSite, timing: this.opts.timing },
        gs.persisted, now,
      );
      gs.role = step.state;
      this.roleActions(site, g.name, gs, null, step.actions);
    }
    this.queue.push(this.t, { k: 'tick', site, boot: s.boot });
  }

  private onTick(site: SiteId, boot: number): void {
    const s = this.sites[site];
    if (!s.up || s.boot !== boot) return;
    for (const g of this.opts.groups) {
      this.stepRole(site, g.name, { type: 'tick', nowMs: this.localNow(site) });
      this.mirrorWork(site, g.name);
    }
    this.queue.push(this.t + this.opts.tickMs / s.clock.rate, { k: 'tick', site, boot });
  }

  /** Steps a site's role machine and carries out its actions; returns an operator refusal. */
  private stepRole(site: SiteId, group: string, input: RoleInput): RoleRefusal | undefined {
    const gs = this.sites[site].groups.get(group)!;
    if (!gs.role) return undefined;
    const before = gs.role;
    const step = roleStep(before, input);
    gs.role = step.state;
    this.roleActions(site, group, gs, before, step.actions);
    this.settleWrites(site, group);
    return step.refusal;
  }

  private roleActions(site: SiteId, group: string, gs: GroupAtSite, before: RoleState | null, actions: readonly RoleAction[]): void {
    for (const a of actions) {
      switch (a.type) {
        case 'persist':
          this.persistRole(site, group, gs, before, a.persisted);
          break;
        case 'save-divergent-writes':
          this.stats.divergentSaves++;
          gs.divergentSaves++;
          this.note(`${site}: ${group} saves divergent writes aside (epoch ${a.epoch})`);
          break;
        case 'write-gate':
          this.note(`${site}: ${group} gate ${a.gate} (epoch ${gs.role!.persisted.epoch})`);
          break;
        case 'alua':
          break;
        case 'send-peer':
          this.send(site, peerOf(site), { t: 'peer', m: a.message });
          break;
        case 'send-witness':
          this.send(site, WITNESS, { t: 'wreq', r: a.request });
          break;
      }
    }
  }

  private persistRole(site: SiteId, group: string, gs: GroupAtSite, before: RoleState | null, p: PersistedRole): void {
    const old = gs.persisted;
    if (old && p.epoch < old.epoch) this.violation(`${site}: ${group} epoch went back ${old.epoch} -> ${p.epoch}`);
    gs.persisted = p;
    if (!old || p.epoch !== old.epoch) this.note(`${site}: ${group} epoch ${p.epoch} primary ${p.primary}${p.forcedWithoutWitness ? ' (forced without the witness)' : ''}`);
    if (old && p.epoch > old.epoch && p.forcedWithoutWitness) this.forcedWithoutWitness(site, group, before, p.epoch);
    if (old && p.epoch > old.epoch && p.primary === site) this.checkNoLoss(site, group, gs, p.epoch);
  }

  /**
   * A site made an epoch without the witness: only on the operator's order at that site, and it
   * must have declared the witness gone no earlier than the order (the witness's leases until then
   * it must wait out; checkSetAside holds it to that).
   */
  private forcedWithoutWitness(site: SiteId, group: string, before: RoleState | null, epoch: number): void {
    const order = this.forceOrders.get(`${site}/${group}`);
    const t = this.opts.timing;
    const orderValidMs = t.forceFailoverMaxMs / (1 - t.driftMax) + 2 * this.opts.tickMs;
    if (order === undefined || this.t - order > orderValidMs || !before?.force) {
      this.violation(`${site} made epoch ${epoch} of ${group} without the witness, with no operator's forced failover ordered there`);
    }
    this.forceOrders.delete(`${site}/${group}`);
    const quietSinceT = this.realT(site, Math.max(before.force.sinceMs, before.witnessSeenMs ?? -Infinity));
    if (quietSinceT < order - 1e-6) this.violation(`${site} forced ${group} counting the witness gone from before the order`);
    this.witnessless.get(group)!.set(epoch, { site, quietSinceT });
    this.forcedEpochs.add(`${group}@${epoch}`);
    this.stats.forcedWithoutWitness++;
    this.note(`${site}: ${group} forced to epoch ${epoch} without the witness (witness declared gone at ${quietSinceT.toFixed(1)})`);
  }

  /** A witness lease reaching a site: the role machine's usable-until, and when the witness granted it. */
  private noteLeaseGrant(site: SiteId, r: WitnessReply, grantT: number): void {
    if (!r.outcome.granted || r.outcome.leaseMs <= 0) return;
    const gs = this.sites[site].groups.get(r.key.group)!;
    gs.leaseGrants.set(usableUntilMs(r.sentAtMs, r.outcome.leaseMs, this.opts.timing), grantT);
    if (gs.leaseGrants.size > 32) gs.leaseGrants.delete(gs.leaseGrants.keys().next().value!);
  }

  /**
   * A site becomes primary of a new epoch: every write acknowledged in an earlier epoch must be on
   * its volume. (A site may learn late of an epoch already superseded; later writes are not its.)
   */
  private checkNoLoss(site: SiteId, group: string, gs: GroupAtSite, epoch: number): void {
    const required = this.required.get(group)!;
    const missing = [...required].filter(([id, e]) => e < epoch && !gs.data.has(id));
    if (missing.length === 0) return;
    if (this.forcedEpochs.has(`${group}@${epoch}`)) {
      this.stats.forcedLossWrites += missing.length;
      this.note(`${site}: ${group} forced failover to epoch ${epoch} lost ${missing.length} acknowledged writes (accounted)`);
      for (const [id] of missing) required.delete(id);
      return;
    }
    this.violation(`${site} became primary of ${group} at epoch ${epoch} without acknowledged writes ${listWrites(missing)}`);
  }

  /** A site that starts to serve a group must hold every acknowledged write, whatever its epoch. */
  private checkServes(site: SiteId, group: string): void {
    const gs = this.sites[site].groups.get(group)!;
    const missing = [...this.required.get(group)!].filter(([id]) => !gs.data.has(id));
    if (missing.length === 0) return;
    this.violation(`${site} may serve ${group} at epoch ${gs.role!.persisted.epoch} without acknowledged writes ${listWrites(missing)}`);
  }

  // ---- mirror model ----

  private onMirror(site: SiteId, from: SiteId, p: Extract<Payload, { t: 'mirror' }>): void {
    const gs = this.sites[site].groups.get(p.group)!;
    const r = gs.role;
    if (!r || r.persisted.epoch !== p.epoch || isPrimary(r)) return;
    for (const id of p.ids) gs.data.add(id);
    this.send(site, from, { t: 'mack', group: p.group, epoch: p.epoch, ids: p.ids, full: p.full });
    if (p.full && gs.mirrorReported !== true) {
      gs.mirrorReported = true;
      this.stepRole(site, p.group, { type: 'mirror', nowMs: this.localNow(site), inSync: true, lagMs: null });
    }
  }

  private onMirrorAck(site: SiteId, p: Extract<Payload, { t: 'mack' }>): void {
    const gs = this.sites[site].groups.get(p.group)!;
    const r = gs.role;
    if (!r || r.persisted.epoch !== p.epoch || !isPrimary(r) || gs.mirrorEpoch !== p.epoch) return;
    const gate = writeGate(r, this.localNow(site));
    if (p.full) gs.peerConfirmed = true;
    for (const id of p.ids) {
      gs.unacked.delete(id);
      if (gs.pending.has(id)) {
        gs.pending.delete(id);
        if (gate === 'closed') this.stats.writesFailed++;
        else this.acknowledge(site, p.group, id, r.persisted.epoch);
      }
    }
    this.reportMirror(site, p.group);
  }

  /** Tick work of the primary's mirror: reset on a new epoch, resync, report whether in sync. */
  private mirrorWork(site: SiteId, group: string): void {
    const gs = this.sites[site].groups.get(group)!;
    const r = gs.role;
    if (!r) return;
    if (!isPrimary(r)) {
      gs.mirrorEpoch = 0;
      if (r.mirrorInSync === null) gs.mirrorReported = null;
      return;
    }
    this.startMirrorEpoch(gs);
    if ((gs.unacked.size > 0 || !gs.peerConfirmed) && this.t - gs.lastResyncT >= this.opts.resyncEveryMs) {
      gs.lastResyncT = this.t;
      this.send(site, peerOf(site), { t: 'mirror', group, epoch: r.persisted.epoch, ids: [...gs.data], full: true });
    }
    this.reportMirror(site, group);
  }

  /**
   * New epoch as primary: nothing is known of the secondary's copy; resync everything. Done before
   * the first write of the epoch is taken (a write may come before the next tick).
   */
  private startMirrorEpoch(gs: GroupAtSite): void {
    const r = gs.role!;
    if (gs.mirrorEpoch === r.persisted.epoch) return;
    gs.mirrorEpoch = r.persisted.epoch;
    gs.unacked = new Map([...gs.data].map((id) => [id, { sinceT: this.t, clientAcked: false }]));
    gs.mirrorReported = null;
    gs.peerConfirmed = false;
  }

  private reportMirror(site: SiteId, group: string): void {
    const gs = this.sites[site].groups.get(group)!;
    if (!gs.role || !isPrimary(gs.role) || gs.mirrorEpoch !== gs.role.persisted.epoch) return;
    let behind = false;
    for (const u of gs.unacked.values()) {
      if (u.clientAcked || this.t - u.sinceT > this.opts.stallMs) {
        behind = true;
        break;
      }
    }
    // In sync only once the secondary has confirmed this epoch's whole data set (what this site held
    // when the epoch began may be acknowledged writes the secondary lacks); until then, unknown.
    if (!behind && !gs.peerConfirmed) return;
    const inSync = !behind;
    if (inSync === gs.mirrorReported) return;
    gs.mirrorReported = inSync;
    this.stepRole(site, group, { type: 'mirror', nowMs: this.localNow(site), inSync, lagMs: null });
  }

  /** Pending mirrored writes: acknowledged when the gate turns local, failed when it closes or they time out. */
  private settleWrites(site: SiteId, group: string): void {
    const gs = this.sites[site].groups.get(group)!;
    if (gs.pending.size === 0 || !gs.role) return;
    const gate = writeGate(gs.role, this.localNow(site));
    for (const [id, t0] of gs.pending) {
      if (gate === 'local') {
        gs.pending.delete(id);
        const u = gs.unacked.get(id);
        if (u) u.clientAcked = true;
        this.acknowledge(site, group, id, gs.role.persisted.epoch);
      } else if (gate === 'closed' || this.t - t0 > this.opts.writeTimeoutMs) {
        gs.pending.delete(id);
        this.stats.writesFailed++;
      }
    }
  }

  private acknowledge(site: SiteId, group: string, id: number, epoch: number): void {
    if (this.checkSetAside(site, group)) {
      // Its writes are the ones saved aside when it meets the newer epoch: not required to survive.
      this.setAsideAcks.push({ id, group, site, epoch, t: this.t });
      this.stats.setAsideWrites++;
      this.stats.writesAcked++;
      return;
    }
    const maxEpoch = this.maxAckEpoch.get(group)!;
    if (epoch < maxEpoch) this.violation(`${site} acknowledged write ${id} of ${group} in epoch ${epoch} after a write in epoch ${maxEpoch}`);
    this.maxAckEpoch.set(group, epoch);
    this.required.get(group)!.set(id, epoch);
    this.acks.push({ id, group, site, epoch, t: this.t });
    this.stats.writesAcked++;
  }

  // ---- invariants ----

  private checkInvariants(): void {
    for (const g of this.opts.groups) {
      let open: SiteId | null = null;
      for (const s of SITES) {
        if (this.gate(s, g.name) === 'closed') continue;
        if (this.checkSetAside(s, g.name)) continue;
        if (open) this.violation(`${open} and ${s} both may acknowledge writes for ${g.name}`);
        open = s;
      }
      if (open) this.checkLeaseBasis(open, g.name);
      const was = this.openSite.get(g.name);
      if (open && open !== was) this.checkServes(open, g.name);
      if (open !== was) this.openSite.set(g.name, open);
    }
  }

  /**
   * May `site`, serving the group, be set aside: it serves an epoch a forced failover has replaced,
   * where the operator's declaration that it was lost was wrong? That is: a newer epoch was made
   * without the witness, and this site serves on a witness lease granted after the forcing site
   * declared the witness gone (or on the operator's order itself); or it serves on the operator's
   * order and a newer epoch was forced, at the witness or without it. Serving on anything the
   * forcing site should have waited out breaks the invariant. Returns false when not set aside.
   */
  private checkSetAside(site: SiteId, group: string): boolean {
    const r = this.role(site, group)!;
    const epoch = r.persisted.epoch;
    const key = `${site}/${group}`;
    const witnessless = this.witnessless.get(group)!;
    // The common case, checked on every event: no epoch forced without the witness, and this site
    // not serving on the operator's order: nothing can be set aside.
    if (witnessless.size === 0 && !r.persisted.forcedWithoutWitness) {
      this.setAsideNow.delete(key);
      return false;
    }
    const newer = [...witnessless].filter(([e]) => e > epoch);
    let aside = false;
    if (newer.length > 0) {
      aside = true;
      if (!r.persisted.forcedWithoutWitness) {
        const now = this.localNow(site);
        const declaredT = Math.min(...newer.map(([, v]) => v.quietSinceT));
        const forced = newer.map(([e, v]) => `epoch ${e} at ${v.site}`).join(', ');
        if (r.witnessLeaseUntilMs > now) {
          const grantT = this.sites[site].groups.get(group)!.leaseGrants.get(r.witnessLeaseUntilMs);
          if (grantT === undefined || grantT < declaredT) {
            this.violation(`${site} serves ${group} in epoch ${epoch} on a witness lease granted at ${grantT?.toFixed(1)}, before the forced failover (${forced}) declared the witness gone at ${declaredT.toFixed(1)}: it was not waited out`);
          }
        } else {
          this.violation(`${site} serves ${group} in epoch ${epoch} on its peer's promise after a forced failover (${forced}): it was not waited out`);
        }
      }
    } else if (r.persisted.forcedWithoutWitness) {
      aside = [...this.forcedEpochs].some((k) => k.startsWith(`${group}@`) && Number(k.slice(group.length + 1)) > epoch);
    }
    if (aside && !this.setAsideNow.has(key)) {
      this.setAsideNow.add(key);
      this.stats.setAside++;
      this.note(`${site}: ${group} set aside: serves epoch ${epoch}, replaced by a forced failover it has not heard of`);
    } else if (!aside) this.setAsideNow.delete(key);
    return aside;
  }

  /**
   * The lease arithmetic itself: a site that may write on one lease alone holds it in the
   * grantor's eyes too (the witness has not let it expire; the secondary still keeps its promise).
   */
  private checkLeaseBasis(site: SiteId, group: string): void {
    const r = this.role(site, group)!;
    const now = this.localNow(site);
    const viaPeer = r.peerLeaseUntilMs > now;
    const viaWitness = r.witnessLeaseUntilMs > now;
    if (viaWitness && !viaPeer && this.witness.up) {
      const rec = recordOf(this.witness.state!, this.key(group));
      if (rec && rec.primary === site && rec.epoch === r.persisted.epoch && this.localNow(WITNESS) >= rec.leaseExpiresAtMs) {
        this.violation(`${site} may write ${group} on a witness lease the witness holds expired`);
      }
    }
    const peer = peerOf(site);
    const pr = this.role(peer, group);
    if (viaPeer && !viaWitness && this.sites[peer].up && pr && pr.persisted.epoch === r.persisted.epoch && !isPrimary(pr)) {
      if (this.localNow(peer) >= pr.promiseUntilMs) this.violation(`${site} may write ${group} on a peer lease ${peer} no longer keeps`);
    }
  }

  /** Liveness: each group has exactly one site that may acknowledge writes, both at the witness's epoch. */
  converged(): { ok: true } | { ok: false; why: string } {
    for (const g of this.opts.groups) {
      const rec = this.witnessRecord(g.name);
      if (!rec) return { ok: false, why: `${g.name}: no witness record` };
      const serving = SITES.filter((s) => this.gate(s, g.name) !== 'closed');
      if (serving.length !== 1) return { ok: false, why: `${g.name}: ${serving.length} serving sites (witness: ${rec.primary} epoch ${rec.epoch})` };
      for (const s of SITES) {
        const p = this.persistedRole(s, g.name);
        if (!p || p.epoch !== rec.epoch) return { ok: false, why: `${g.name}: ${s} at epoch ${p?.epoch}, witness at ${rec.epoch}` };
      }
      if (serving[0] !== rec.primary) return { ok: false, why: `${g.name}: ${serving[0]} serves, witness says ${rec.primary}` };
    }
    return { ok: true };
  }
}

/** Write ids with the epoch each was acknowledged in: `54 (epoch 3)`. */
function listWrites(writes: readonly [number, number][]): string {
  const shown = writes.slice(0, 8).map(([id, e]) => `${id} (epoch ${e})`).join(', ');
  return writes.length > 8 ? `${shown}, ... (${writes.length})` : shown;
}

export function peerOf(site: SiteId): SiteId {
  return site === 'alpha' ? 'beta' : 'alpha';
}
