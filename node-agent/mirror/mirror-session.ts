// The primary's side of one group's mirror (DESIGN.md "Data path", "Acknowledgement policy"): the only
// owner of the group's timers and stream. It serves MetroMirror.Attach for the group, feeds the window
// from MirroredBlockDevices, batches to the stream honouring write(), releases completions on acks,
// feeds heartbeat RTT and lag into the ack policy, and records the secondary outdated before any write
// it may miss completes. Resync of stuck regions is a later step: they stay dirty (and the peer outdated).
import type * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { assert } from '../../common/assert.ts';
import type { Logger } from '../../common/log.ts';
import type { BlockDevice } from '../storage/block-device.ts';
import {
  initialAckPolicy, stepAckPolicy, writeCompletion, ackPolicyStatus,
  type AckPolicyConfig, type AckPolicyInput, type AckPolicyState, type WriteCompletion,
} from './ack-policy.ts';
import { MirrorWindow, mirrorWindowDefaults, type MirrorWindowConfig, type WindowEntry } from './mirror-window.ts';
import type { DirtyMap } from './dirty-map.ts';
import type { DirtyMapFile } from './dirty-map-file.ts';

/** Heartbeats and policy ticks; the only periodic work of a group. */
export const heartbeatIntervalMs = 100;
/** At start, writes wait this long for the secondary to attach before it is declared down. */
export const attachWaitMs = 3000;
/** A deallocate or flush entry counts this many bytes in the window. */
const markerEntryBytes = 64;

export interface SessionVolume {
  index: number;
  sizeBytes: number;
  regionSizeBytes: number;
  dirty: DirtyMap;
  dirtyFile: DirtyMapFile;
}

/** Durable record of the secondary's state (the agent's metadata; the witness comes with issue 5). */
export interface OutdatedRecorder {
  markOutdated(reason: string): Promise<void>;
  markUpToDate(): Promise<void>;
}

interface Pending {
  /** MirrorEntry fields but seq. */
  entry: Record<string, unknown>;
  /** Host completion waiting for this entry's ack; cleared once called. */
  settle: (() => void) | undefined;
}

type Stream = grpc.ServerDuplexStream<Record<string, any>, Record<string, unknown>>;

export class MirrorSession {
  private policy: AckPolicyState;
  private readonly window: MirrorWindow<Pending>;
  private stream: Stream | undefined;
  private pumpScheduled = false;
  /** Completions waiting for an ack: released all at once when the secondary is recorded outdated. */
  private readonly waiting = new Set<Pending>();
  private outdatedWaiters: Array<() => void> = [];
  private throttleWaiters: Array<() => void> = [];
  private spaceWaiters: Array<() => void> = [];
  private readonly alWaiters = new Map<string, () => void>();
  private readonly persisting = new Set<number>();
  private recordChain: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  private readonly startedAtMs: number;
  private lastPeerHeartbeat: { sentAtUs: string; receivedAtMs: number } | undefined;
  private heartbeatOutstandingSinceMs: number | undefined;
  private stats = { writes: 0, batches: 0, modeSwitches: 0 };

  constructor(private readonly ctx: {
    cluster: string;
    group: string;
    site: string;
    epoch: number;
    volumes: SessionVolume[];
    policy: AckPolicyConfig;
    secondaryRecord: 'up-to-date' | 'outdated';
    recorder: OutdatedRecorder;
    log: Logger;
    window?: MirrorWindowConfig;
    now?: () => number;
  }) {
    this.startedAtMs = this.now();
    this.policy = initialAckPolicy(ctx.policy, this.startedAtMs, ctx.secondaryRecord);
    this.window = new MirrorWindow<Pending>(ctx.window ?? mirrorWindowDefaults);
    this.timer = setInterval(() => this.tick(), heartbeatIntervalMs);
    this.timer.unref();
  }

  private now(): number {
    return this.ctx.now ? this.ctx.now() : performance.now();
  }

  // ------------------------------------------------------------ the write path (MirroredBlockDevice)

  /** Local write and mirror entry in the same turn; resolves per the ack policy. */
  async write(volume: number, device: BlockDevice, offsetBytes: number, data: Buffer, fua: boolean): Promise<void> {
    const v = this.ctx.volumes[volume];
    const ticket = await this.beginDirty(v, offsetBytes, data.length);
    const completion = await this.admit();
    const local = device.write(offsetBytes, data, fua ? { fua } : undefined);
    const entry = { write: { volume, offset_bytes: String(offsetBytes), data, crc32c: crc32c(data), fua } };
    const peer = this.mirror(v, ticket, entry, data.length, fua, completion);
    await this.finishLocal(v, ticket, local);
    await peer;
  }

  async deallocate(volume: number, device: BlockDevice, offsetBytes: number, lengthBytes: number): Promise<void> {
    const v = this.ctx.volumes[volume];
    const ticket = await this.beginDirty(v, offsetBytes, lengthBytes);
    const completion = await this.admit();
    const local = device.deallocate ? device.deallocate(offsetBytes, lengthBytes) : Promise.resolve();
    const entry = { deallocate: { volume, offset_bytes: String(offsetBytes), length_bytes: String(lengthBytes) } };
    const peer = this.mirror(v, ticket, entry, markerEntryBytes, false, completion);
    await this.finishLocal(v, ticket, local);
    await peer;
  }

  /** SYNCHRONIZE CACHE: local fdatasync and a flush entry made durable at the secondary (sync mode). */
  async flush(volume: number, device: BlockDevice): Promise<void> {
    const completion = await this.admit();
    const local = device.flush();
    const peer = this.mirror(undefined, undefined, { flush: { all_volumes: false, volume } }, markerEntryBytes, true, completion);
    await local;
    await peer;
  }

  private async beginDirty(v: SessionVolume, offsetBytes: number, lengthBytes: number): Promise<number> {
    const b = v.dirty.beginWrite(offsetBytes, lengthBytes);
    if (b.kind === 'go') return b.ticket;
    // Its extents must enter the persisted activity log first (a crash must find them dirty).
    const released = new Promise<void>((resolve) => this.alWaiters.set(`${v.index}/${b.ticket}`, resolve));
    this.pumpDirty(v);
    await released;
    return b.ticket;
  }

  private async finishLocal(v: SessionVolume, ticket: number, local: Promise<void>): Promise<void> {
    try {
      await local;
    } finally {
      v.dirty.localDone(ticket);
      this.pumpDirty(v);
    }
  }

  /** The completion rule for a write admitted now; holds the write while throttled (never drops it). */
  private async admit(): Promise<WriteCompletion> {
    for (;;) {
      const c = writeCompletion(this.policy);
      if (c.kind !== 'throttled') return c;
      await new Promise<void>((resolve) => this.throttleWaiters.push(resolve));
    }
  }

  private async mirror(v: SessionVolume | undefined, ticket: number | undefined, entry: Record<string, unknown>, bytes: number, durable: boolean, completion: WriteCompletion): Promise<void> {
    this.stats.writes++;
    if (this.policy.peer === 'down') {
      // Not streamed: the regions wait for a resync; the secondary is (being) recorded outdated.
      if (v && ticket !== undefined) v.dirty.notMirrored(ticket);
      return completion.kind === 'local' ? undefined : this.outdatedRecorded();
    }
    const p: Pending = { entry, settle: undefined };
    const acked = completion.kind === 'local' ? undefined : new Promise<void>((resolve) => { p.settle = resolve; });
    for (;;) {
      const r = this.window.push(p, bytes, this.now(), { durable });
      if (r.kind === 'queued') {
        if (v && ticket !== undefined) v.dirty.mirrored(ticket, r.seq);
        break;
      }
      await new Promise<void>((resolve) => this.spaceWaiters.push(resolve));
    }
    if (p.settle) this.waiting.add(p);
    this.schedulePump();
    if (acked === undefined) return;
    if (completion.kind === 'peer-ack-or-outdated-recorded') return Promise.race([acked, this.outdatedRecorded()]);
    return acked;
  }

  private outdatedRecorded(): Promise<void> {
    if (this.policy.secondary === 'outdated') return Promise.resolve();
    return new Promise((resolve) => this.outdatedWaiters.push(resolve));
  }

  // ------------------------------------------------------------ dirty map persistence

  private pumpDirty(v: SessionVolume): void {
    if (this.persisting.has(v.index)) return;
    const txn = v.dirty.takeTransaction(this.now());
    if (!txn) return;
    this.persisting.add(v.index);
    v.dirtyFile.persist(txn).then(() => {
      this.persisting.delete(v.index);
      for (const t of v.dirty.transactionPersisted(txn.id)) {
        const key = `${v.index}/${t}`;
        this.alWaiters.get(key)?.();
        this.alWaiters.delete(key);
      }
      this.pumpDirty(v);
    }, (err: Error) => {
      // Without a durable dirty map a crash could hide divergent regions: stop rather than guess.
      this.ctx.log.error('dirty map persist failed', { group: this.ctx.group, volume: v.index, error: err.message });
      process.exit(1);
    });
  }

  // ------------------------------------------------------------ the stream

  /** MetroMirror.Attach for this group, after the server checked the hello's cluster and group. */
  attach(call: Stream, hello: Record<string, any>): void {
    if (this.stream) this.detach('replaced by a new stream');
    const epoch = Number(hello.epoch);
    if (epoch > this.ctx.epoch) {
      this.refuse(call, 'NOT_PRIMARY', epoch, `the secondary knows epoch ${epoch}, newer than this primary's ${this.ctx.epoch}`);
      return;
    }
    const geometry = this.geometryMismatch(hello.volumes ?? []);
    if (geometry) {
      this.refuse(call, 'GEOMETRY_MISMATCH', epoch, geometry);
      return;
    }
    // Sequences restart with a new epoch (and a restarted primary): a peer ahead holds another stream's numbers.
    const sameEpoch = epoch === this.ctx.epoch;
    let r = this.window.attached(sameEpoch ? Number(hello.applied_seq) : 0, sameEpoch ? Number(hello.durable_seq) : 0);
    let resyncNeeded = !hello.up_to_date || !hello.has_data;
    if (r.kind === 'peer-ahead') {
      this.ctx.log.warn('secondary holds sequences of an earlier stream: resync needed', { group: this.ctx.group, peerAppliedSeq: r.peerAppliedSeq });
      resyncNeeded = true;
      for (const v of this.ctx.volumes) v.dirty.peerLost();
      r = this.window.attached(0, 0);
    }
    assert(r.kind !== 'peer-ahead', 'window refused a fresh attach');
    if (r.kind === 'gap') {
      this.ctx.log.warn('secondary lost acknowledged entries: their regions need a resync', { group: this.ctx.group, from: r.missingFromSeq, to: r.missingToSeq });
      resyncNeeded = true;
      for (const v of this.ctx.volumes) v.dirty.peerLost();
      this.settleEntries(r.durable);
      this.settleEntries(r.stranded);
    } else {
      this.settleEntries(r.applied.filter((e) => !e.durable));
      this.settleEntries(r.durable);
    }
    this.stream = call;
    call.write({ welcome: { epoch: String(this.ctx.epoch), site: this.ctx.site, resume_seq: String(r.fromSeq), resync_needed: resyncNeeded, full_resync: !hello.has_data } });
    call.on('data', (m: Record<string, any>) => this.onMessage(call, m));
    call.on('drain', () => { if (this.stream === call) { this.window.drained(); this.pump(); } });
    const ended = (why: string) => { if (this.stream === call) this.detach(why); };
    call.on('end', () => { ended('stream ended'); call.end(); });
    call.on('error', (err: Error) => ended(err.message));
    call.on('cancelled', () => ended('cancelled'));
    this.ctx.log.info('secondary attached', { group: this.ctx.group, site: hello.site, resumeSeq: r.fromSeq, resyncNeeded });
    this.step({ kind: 'peer-up', nowMs: this.now() });
    this.pump();
  }

  private geometryMismatch(volumes: Array<Record<string, any>>): string | undefined {
    if (volumes.length !== this.ctx.volumes.length) return `the secondary serves ${volumes.length} volumes, the primary ${this.ctx.volumes.length}`;
    for (const v of this.ctx.volumes) {
      const o = volumes[v.index];
      if (Number(o.size_bytes) !== v.sizeBytes || o.region_size_bytes !== v.regionSizeBytes) {
        return `volume ${v.index}: secondary ${o.size_bytes} bytes / ${o.region_size_bytes}-byte regions, primary ${v.sizeBytes} / ${v.regionSizeBytes}`;
      }
    }
    return undefined;
  }

  private refuse(call: Stream, reason: string, epochSeen: number, message: string): void {
    this.ctx.log.warn('mirror stream refused', { group: this.ctx.group, reason, message });
    call.write({ refusal: { epoch_seen: String(epochSeen), epoch_current: String(this.ctx.epoch), reason, message } });
    call.end();
  }

  private detach(why: string): void {
    const call = this.stream;
    this.stream = undefined;
    this.window.detached();
    // Pending entries may never be acknowledged now: their regions wait for a resync.
    for (const v of this.ctx.volumes) v.dirty.peerLost();
    this.heartbeatOutstandingSinceMs = undefined;
    this.lastPeerHeartbeat = undefined;
    this.ctx.log.warn('secondary detached', { group: this.ctx.group, why });
    try { call?.end(); } catch { /* already gone */ }
    this.step({ kind: 'peer-down', nowMs: this.now() });
  }

  private onMessage(call: Stream, m: Record<string, any>): void {
    if (this.stream !== call) return;
    switch (m.kind) {
      case 'ack': return this.onAck(m.ack);
      case 'heartbeat': return this.onHeartbeat(m.heartbeat);
      case 'refusal':
        this.ctx.log.error('secondary refused the stream', { group: this.ctx.group, ...m.refusal });
        return this.detach(`refused: ${m.refusal.reason}`);
      default:
        // Resync requests and checksums come with the resync driver.
        return;
    }
  }

  private onAck(a: Record<string, string>): void {
    if (Number(a.epoch) !== this.ctx.epoch) return;
    const r = this.window.ack(Number(a.applied_seq), Number(a.durable_seq));
    if (r.kind === 'refused') {
      this.ctx.log.error('secondary sent an impossible ack', { group: this.ctx.group, reason: r.reason, message: r.message });
      this.detach(r.message);
      return;
    }
    this.settleEntries(r.applied.filter((e) => !e.durable));
    this.settleEntries(r.durable);
    for (const v of this.ctx.volumes) {
      v.dirty.peerDurable(Number(a.durable_seq));
      this.pumpDirty(v);
    }
    const space = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const w of space) w();
    // Coalesced with the writes of this turn: fewer, larger batches.
    this.schedulePump();
  }

  private settleEntries(entries: WindowEntry<Pending>[]): void {
    for (const e of entries) {
      const s = e.payload.settle;
      if (!s) continue;
      e.payload.settle = undefined;
      this.waiting.delete(e.payload);
      s();
    }
  }

  private onHeartbeat(h: Record<string, string>): void {
    const nowMs = this.now();
    this.lastPeerHeartbeat = { sentAtUs: h.sent_at_us, receivedAtMs: nowMs };
    if (h.echo_sent_at_us !== '0') {
      const rttMs = Math.max(0, nowMs - Number(h.echo_sent_at_us) / 1000 - Number(h.echo_held_us) / 1000);
      this.heartbeatOutstandingSinceMs = undefined;
      this.step({ kind: 'rtt', nowMs, rttMs });
    }
  }

  private schedulePump(): void {
    if (this.pumpScheduled || !this.stream) return;
    this.pumpScheduled = true;
    // Natural batching: whatever the host queued in this turn goes in one batch.
    setImmediate(() => { this.pumpScheduled = false; this.pump(); });
  }

  private pump(): void {
    const call = this.stream;
    if (!call) return;
    for (let batch = this.window.takeBatch(); batch; batch = this.window.takeBatch()) {
      const entries = batch.map((e) => ({ seq: String(e.seq), ...e.payload.entry }));
      this.stats.batches++;
      if (!call.write({ batch: { epoch: String(this.ctx.epoch), entries } })) {
        this.window.blocked();
        return;
      }
    }
  }

  // ------------------------------------------------------------ ticks, policy, records

  private tick(): void {
    const nowMs = this.now();
    if (this.policy.peer === 'unknown' && nowMs - this.startedAtMs >= attachWaitMs) {
      this.ctx.log.warn('secondary not attached: serving alone, the dirty map records what it lacks', { group: this.ctx.group });
      this.step({ kind: 'peer-down', nowMs });
    }
    const call = this.stream;
    if (call) {
      const echo = this.lastPeerHeartbeat;
      call.write({ heartbeat: {
        epoch: String(this.ctx.epoch), sent_at_us: String(Math.round(nowMs * 1000)),
        echo_sent_at_us: echo?.sentAtUs ?? '0', echo_held_us: echo ? String(Math.round((nowMs - echo.receivedAtMs) * 1000)) : '0',
        last_seq: String(this.window.stats().nextSeq - 1), lag_bytes: String(this.window.lag(nowMs).lagBytes), lag_ms: String(Math.round(this.window.lag(nowMs).lagMs)),
      } });
      this.heartbeatOutstandingSinceMs ??= nowMs;
    }
    const outstanding = this.heartbeatOutstandingSinceMs === undefined ? 0 : nowMs - this.heartbeatOutstandingSinceMs;
    this.step({ kind: 'tick', nowMs, heartbeatOutstandingMs: outstanding });
    const lag = this.window.lag(nowMs);
    const resyncBytes = this.ctx.volumes.reduce((n, v) => n + v.dirty.stats().resyncRegions * v.regionSizeBytes, 0);
    this.step({ kind: 'lag', nowMs, lagBytes: lag.lagBytes, lagMs: lag.lagMs, resyncBytes });
    for (const v of this.ctx.volumes) this.pumpDirty(v);
  }

  private step(input: AckPolicyInput): void {
    const { state, outputs } = stepAckPolicy(this.policy, input);
    this.policy = state;
    for (const o of outputs) {
      switch (o.kind) {
        case 'mark-outdated':
          this.ctx.log.warn('secondary outdated', { group: this.ctx.group, reason: o.reason });
          this.record(() => this.ctx.recorder.markOutdated(o.reason), () => this.step({ kind: 'outdated-recorded', nowMs: this.now() }));
          break;
        case 'mark-up-to-date':
          this.ctx.log.info('secondary up-to-date', { group: this.ctx.group });
          this.record(() => this.ctx.recorder.markUpToDate(), () => undefined);
          break;
        case 'mode-changed':
          this.stats.modeSwitches++;
          this.ctx.log.warn('mirror mode changed', { group: this.ctx.group, ...o });
          break;
        case 'throttle-started':
          this.ctx.log.warn('mirror lag bound reached: writes throttled', { group: this.ctx.group, ...o });
          break;
        case 'throttle-ended': {
          this.ctx.log.info('mirror lag back under its bound', { group: this.ctx.group, ...o });
          const w = this.throttleWaiters;
          this.throttleWaiters = [];
          for (const r of w) r();
          break;
        }
      }
    }
    if (this.policy.secondary === 'outdated' && (this.outdatedWaiters.length > 0 || this.waiting.size > 0)) this.releaseOnOutdated();
  }

  /** Records land in order, one at a time. */
  private record(write: () => Promise<void>, then: () => void): void {
    this.recordChain = this.recordChain.then(write).then(then, (err: Error) => {
      // A secondary that may miss acknowledged writes but is not recorded so: stop rather than lie.
      this.ctx.log.error('cannot record the secondary state', { group: this.ctx.group, error: err.message });
      process.exit(1);
    });
  }

  /** The secondary is durably outdated: writes that waited for it complete on local durability. */
  private releaseOnOutdated(): void {
    const w = this.outdatedWaiters;
    this.outdatedWaiters = [];
    for (const r of w) r();
    if (writeCompletion(this.policy).kind !== 'local') return;
    for (const p of this.waiting) {
      const s = p.settle;
      p.settle = undefined;
      s?.();
    }
    this.waiting.clear();
  }

  status() {
    return { ...ackPolicyStatus(this.policy), window: this.window.stats(), ...this.stats };
  }

  close(): void {
    clearInterval(this.timer);
    this.ctx.log.info('mirror session closing', { group: this.ctx.group, ...this.status() });
    if (this.stream) {
      const call = this.stream;
      this.stream = undefined;
      try { call.end(); } catch { /* already gone */ }
    }
  }
}
