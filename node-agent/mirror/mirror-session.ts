// The primary's side of one group's mirror (DESIGN.md "Data path", "Acknowledgement policy"): the only
// owner of the group's timers and stream. It serves MetroMirror.Attach for the group, feeds the window
// from the group's RoleGatedDevices (node-agent/role/group-data-path.ts), batches to the stream
// honouring write(), releases completions on acks, feeds heartbeat RTT and lag into the ack policy, and records the secondary outdated before any write
// it may miss completes. When the attached secondary lacks what the stream cannot deliver, a
// ResyncDriver sends it in the background; the secondary is up-to-date only once that completes.
import type * as grpc from '@grpc/grpc-js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { endStreamWith } from '../../common/grpc-validate.ts';
import { checkSecondaryMessage, invalidMessageReason } from './mirror-checks.ts';
import { crc32c } from '@node-rs/crc32';
import { assert } from '../../common/assert.ts';
import type { Logger } from '../../common/log.ts';
import type { BlockDevice } from '../storage/block-device.ts';
import {
  initialAckPolicy, stepAckPolicy, writeCompletion, ackPolicyStatus,
  type AckPolicyConfig, type AckPolicyInput, type AckPolicyState, type WriteCompletion,
} from './ack-policy.ts';
import { MirrorWindow, mirrorWindowDefaults, type MirrorWindowConfig, type WindowEntry } from './mirror-window.ts';
import { regionGeometry, type DirtyMap } from './dirty-map.ts';
import type { DirtyMapFile } from './dirty-map-file.ts';
import { RegionGate, type GatePass } from './region-gate.ts';
import { ResyncDriver, peerBitmap, type ResyncRunProgress } from './resync-driver.ts';
import type { RegionBitmap } from './region-bitmap.ts';

/**
 * Heartbeats and policy ticks; the only periodic work of a group. Every 50 ms: the ack policy's RTT
 * window then holds 40 samples, so its high percentile reads the link, not a lone scheduling stall
 * of either agent (an idle VM stalls a process for 5-10 ms every few seconds).
 */
export const heartbeatIntervalMs = 50;
/** At start, writes wait this long for the secondary to attach before it is declared down. */
export const attachWaitMs = 3000;
/** A topology change waits at most this long for a volume's writes or dirty map to settle. */
const untilMaxMs = 10_000;
/** A deallocate or flush entry counts this many bytes in the window. */
const markerEntryBytes = 64;

export interface SessionVolume {
  index: number;
  sizeBytes: number;
  regionSizeBytes: number;
  dirty: DirtyMap;
  dirtyFile: DirtyMapFile;
  /** The local copy: resync and verify read it directly. */
  device: BlockDevice;
}

/**
 * Fits a volume's dirty map (in memory and its file, rewritten whole with the new header) and its
 * recorded size to a new size; returns the tickets the compaction released. Between dirty-map
 * transactions only: a session calls it with its persists held, a site without a session at any time.
 */
export async function resizeSessionVolume(v: SessionVolume, sizeBytes: number, nowMs: number): Promise<number[]> {
  v.dirty.resize(sizeBytes);
  v.dirtyFile.setGeometry({ regionSizeBytes: v.regionSizeBytes, regionCount: v.dirty.regionCount, extentRegions: v.dirty.config.extentRegions });
  const released = await compactDirtyMap(v, nowMs);
  v.sizeBytes = sizeBytes;
  return released;
}

/** A site without a session whose copy was resynced whole: its own dirty regions are forgotten, on disk too. */
export async function forgetOwnDirtyRegions(v: SessionVolume, nowMs: number): Promise<void> {
  v.dirty.forgetAll();
  await compactDirtyMap(v, nowMs);
}

/** Rewrites the dirty-map file whole from memory (through its path: a fresh file, a new header). */
async function compactDirtyMap(v: SessionVolume, nowMs: number): Promise<number[]> {
  const txn = v.dirty.takeTransaction(nowMs, { compact: true });
  assert(txn !== undefined, 'a compaction is always due');
  await v.dirtyFile.persist(txn);
  return v.dirty.transactionPersisted(txn.id);
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
  /** Writes waiting for the outdated record (or their ack, which removes them). */
  private readonly outdatedWaiters = new Set<() => void>();
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
  /** Why and since when (ISO 8601) the secondary is outdated, for status; undefined while up-to-date. */
  private outdated: { reason: string; since: string } | undefined;
  /** Holds host writes off a region while the resync reads it. */
  private readonly gate = new RegionGate();
  /** Read when asked: a topology apply resizes, adds and removes volumes while the session runs. */
  private readonly volumeSizes = (): number[] => this.ctx.volumes.map((v) => v.sizeBytes);
  private resync: ResyncDriver | undefined;
  /** Repairs of regions an online verify found differing (metroctl verify --repair). */
  private readonly repairs = new Set<ResyncDriver>();
  private verifying = false;
  /** While a verify runs: per region (volume << 32 | region) the stamp of its latest host write. */
  private verifyWrites: Map<number, number> | undefined;
  private writeStamp = 0;
  /** The last run's progress, kept for status once it is over. */
  private lastResync: ResyncRunProgress | undefined;
  /** Resync data entered in the stream since this process started (every run). */
  private resyncBytesSentTotal = 0;
  private resyncRateBytesPerSec: number;
  private nextChecksumRequest = 1;
  private readonly checksumWaiters = new Map<string, { resolve: (c: Uint32Array) => void; reject: (e: Error) => void; count: number }>();


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
    /** Bandwidth bound of resync and verify (bytes per second). */
    resyncRateBytesPerSec?: number;
    /** Every host-visible state record of the group now (complete states), sent to each attaching secondary. */
    stateSnapshot?: () => Array<{ volume: number; kind: string; payload: Buffer }>;
  }) {
    this.resyncRateBytesPerSec = ctx.resyncRateBytesPerSec ?? 100e6;
    this.startedAtMs = this.now();
    this.policy = initialAckPolicy(ctx.policy, this.startedAtMs, ctx.secondaryRecord);
    if (ctx.secondaryRecord === 'outdated') this.outdated = { reason: 'recorded outdated when this site became primary', since: new Date().toISOString() };
    this.window = new MirrorWindow<Pending>(ctx.window ?? mirrorWindowDefaults);
    this.timer = setInterval(() => this.tick(), heartbeatIntervalMs);
    this.timer.unref();
  }

  private now(): number {
    return this.ctx.now ? this.ctx.now() : performance.now();
  }

  // ------------------------------------------------------------ the write path (RoleGatedDevice)

  /** Local write and mirror entry in the same turn; resolves per the ack policy. */
  async write(volume: number, device: BlockDevice, offsetBytes: number, data: Buffer, fua: boolean): Promise<void> {
    const v = this.ctx.volumes[volume];
    // The common case waits for nothing: no promise turn before the local write starts.
    const gated = this.enterGate(v, offsetBytes, data.length);
    const pass = gated instanceof Promise ? await gated : gated;
    const begun = this.beginDirty(v, offsetBytes, data.length);
    const ticket = begun instanceof Promise ? await begun : begun;
    // After the region turned dirty: a verify step sees this write as dirty before it or stamped after.
    if (this.verifyWrites) this.noteWrite(v, offsetBytes, data.length);
    const admitted = this.admitNow();
    const completion = admitted instanceof Promise ? await admitted : admitted;
    const local = device.write(offsetBytes, data, fua ? { fua } : undefined);
    const entry = { write: { volume, offset_bytes: String(offsetBytes), data, crc32c: crc32c(data), fua } };
    const peer = this.mirror(v, ticket, entry, data.length, fua, completion);
    await this.finishLocal(v, ticket, local, pass);
    await peer;
  }

  async deallocate(volume: number, device: BlockDevice, offsetBytes: number, lengthBytes: number): Promise<void> {
    const v = this.ctx.volumes[volume];
    const gated = this.enterGate(v, offsetBytes, lengthBytes);
    const pass = gated instanceof Promise ? await gated : gated;
    const begun = this.beginDirty(v, offsetBytes, lengthBytes);
    const ticket = begun instanceof Promise ? await begun : begun;
    // After the region turned dirty: a verify step sees this write as dirty before it or stamped after.
    if (this.verifyWrites) this.noteWrite(v, offsetBytes, lengthBytes);
    const admitted = this.admitNow();
    const completion = admitted instanceof Promise ? await admitted : admitted;
    const local = device.deallocate ? device.deallocate(offsetBytes, lengthBytes) : Promise.resolve();
    const entry = { deallocate: { volume, offset_bytes: String(offsetBytes), length_bytes: String(lengthBytes) } };
    const peer = this.mirror(v, ticket, entry, markerEntryBytes, false, completion);
    await this.finishLocal(v, ticket, local, pass);
    await peer;
  }

  /**
   * Host-visible state (a LUN's complete persistent reservation state): a state record ordered with
   * the writes, resolving as a write does under the ack policy. Entered in the window in this turn
   * when there is room. Not streamed while the peer is down: the next attach sends every state.
   */
  recordState(volume: number, kind: string, payload: Buffer): Promise<void> {
    // Like a plain write: complete once applied there (the secondary keeps APTPL state durably as it adopts it).
    const admitted = this.admitNow();
    if (admitted instanceof Promise) return admitted.then((later) => this.mirrorState(volume, kind, payload, later));
    return this.mirrorState(volume, kind, payload, admitted);
  }

  /** A newly attached secondary gets every state record first: it may have missed changes while away. */
  private sendStates(): void {
    for (const r of this.ctx.stateSnapshot?.() ?? []) void this.mirrorState(r.volume, r.kind, r.payload, { kind: 'local' });
  }

  /** One state record as a mirror entry, ordered with the writes; resolves per completion. */
  private mirrorState(volume: number, kind: string, payload: Buffer, completion: WriteCompletion): Promise<void> {
    const entry = { state: { kind, volume, payload, crc32c: crc32c(payload) } };
    return this.mirror(undefined, undefined, entry, payload.length + markerEntryBytes, false, completion);
  }

  /** SYNCHRONIZE CACHE: local fdatasync and a flush entry made durable at the secondary (sync mode). */
  async flush(volume: number, device: BlockDevice): Promise<void> {
    const admitted = this.admitNow();
    const completion = admitted instanceof Promise ? await admitted : admitted;
    const local = device.flush();
    const peer = this.mirror(undefined, undefined, { flush: { all_volumes: false, volume } }, markerEntryBytes, true, completion);
    await local;
    await peer;
  }

  /** The write's regions turn dirty; its ticket now, or once its extents are in the persisted activity log. */
  private beginDirty(v: SessionVolume, offsetBytes: number, lengthBytes: number): number | Promise<number> {
    const b = v.dirty.beginWrite(offsetBytes, lengthBytes);
    return b.kind === 'go' ? b.ticket : this.activityLogged(v, b.ticket);
  }

  /** A write whose extents must enter the persisted activity log first (a crash must find them dirty). */
  private async activityLogged(v: SessionVolume, ticket: number): Promise<number> {
    const released = new Promise<void>((resolve) => this.alWaiters.set(`${v.index}/${ticket}`, resolve));
    this.pumpDirty(v);
    await released;
    return ticket;
  }

  private async finishLocal(v: SessionVolume, ticket: number, local: Promise<void>, pass: GatePass): Promise<void> {
    try {
      await local;
    } finally {
      this.gate.leave(pass);
      v.dirty.localDone(ticket);
      this.pumpDirty(v);
    }
  }

  /** Until the local write is done: a resync reading one of its regions waits for it (and it for the read). */
  private enterGate(v: SessionVolume, offsetBytes: number, lengthBytes: number): GatePass | Promise<GatePass> {
    return this.gate.enter(v.index, v.dirty.regionOf(offsetBytes), v.dirty.lastRegionOf(offsetBytes, lengthBytes));
  }

  /** The completion rule for a write admitted now; a promise only while throttled (admit() holds the write). */
  private admitNow(): WriteCompletion | Promise<WriteCompletion> {
    const c = writeCompletion(this.policy);
    return c.kind === 'throttled' ? this.admit() : c;
  }

  /** Holds the write while throttled (never drops it), then its completion rule. */
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
    if (completion.kind === 'peer-ack-or-outdated-recorded') return this.ackedOrOutdatedRecorded(acked);
    return acked;
  }

  /** Whichever comes first; the waiter is removed when the ack comes, so a healthy link keeps no waiter per write. */
  private ackedOrOutdatedRecorded(acked: Promise<void>): Promise<void> {
    if (this.policy.secondary === 'outdated') return Promise.resolve();
    return new Promise((resolve) => {
      this.outdatedWaiters.add(resolve);
      void acked.then(() => {
        this.outdatedWaiters.delete(resolve);
        resolve();
      });
    });
  }

  private outdatedRecorded(): Promise<void> {
    if (this.policy.secondary === 'outdated') return Promise.resolve();
    return new Promise((resolve) => this.outdatedWaiters.add(resolve));
  }

  // ------------------------------------------------------------ dirty map persistence

  private pumpDirty(v: SessionVolume): void {
    if (this.persisting.has(v.index)) return;
    const txn = v.dirty.takeTransaction(this.now());
    if (!txn) return;
    this.persisting.add(v.index);
    v.dirtyFile.persist(txn).then(() => {
      this.persisting.delete(v.index);
      this.releaseTickets(v, v.dirty.transactionPersisted(txn.id));
      this.pumpDirty(v);
    }, (err: Error) => {
      // Without a durable dirty map a crash could hide divergent regions: stop rather than guess.
      this.ctx.log.error('dirty map persist failed', { group: this.ctx.group, volume: v.index, error: err.message });
      process.exit(1);
    });
  }

  /** Writes whose extents a persisted transaction put in the activity log may go (activityLogged). */
  private releaseTickets(v: SessionVolume, tickets: readonly number[]): void {
    for (const t of tickets) {
      const key = `${v.index}/${t}`;
      this.alWaiters.get(key)?.();
      this.alWaiters.delete(key);
    }
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
    let resyncNeeded = !hello.up_to_date || !hello.has_data || this.ctx.volumes.some((v) => v.dirty.stats().resyncRegions > 0);
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
    call.write({ welcome: {
      epoch: String(this.ctx.epoch), site: this.ctx.site, resume_seq: String(r.fromSeq), resync_needed: resyncNeeded, full_resync: !hello.has_data,
      volume_size_bytes: this.volumeSizes().map(String),
    } });
    call.on('data', (m: Record<string, any>) => this.onMessage(call, m));
    call.on('drain', () => { if (this.stream === call) { this.window.drained(); this.pump(); } });
    const ended = (why: string) => { if (this.stream === call) this.detach(why); };
    call.on('end', () => { ended('stream ended'); call.end(); });
    call.on('error', (err: Error) => ended(err.message));
    call.on('cancelled', () => ended('cancelled'));
    this.ctx.log.info('secondary attached', { group: this.ctx.group, site: hello.site, resumeSeq: r.fromSeq, resyncNeeded });
    this.step({ kind: 'peer-up', nowMs: this.now() });
    this.sendStates();
    if (resyncNeeded) this.startResync(hello);
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
    this.stopResync();
    // Resync entries waiting for room give up (their regions stay dirty); host writes push again.
    this.wakeSpaceWaiters();
    for (const w of this.checksumWaiters.values()) w.reject(new Error(`secondary detached: ${why}`));
    this.checksumWaiters.clear();
    this.ctx.log.warn('secondary detached', { group: this.ctx.group, why });
    try { call?.end(); } catch { /* already gone */ }
    this.step({ kind: 'peer-down', nowMs: this.now() });
  }

  private onMessage(call: Stream, m: Record<string, any>): void {
    if (this.stream !== call) return;
    const invalid = checkSecondaryMessage(m, this.volumeSizes) ?? (m.kind === 'heartbeat' ? this.impossibleEcho(m.heartbeat) : undefined);
    if (invalid) {
      this.ctx.log.warn('mirror message refused', { group: this.ctx.group, kind: m.kind, reason: invalid });
      // The 'error' this raises on the call detaches the stream (see attach).
      call.write({ refusal: { epoch_seen: '0', epoch_current: String(this.ctx.epoch), reason: invalidMessageReason, message: invalid } });
      endStreamWith(call, grpcStatus.INVALID_ARGUMENT, `${invalidMessageReason}: ${invalid}`);
      return;
    }
    switch (m.kind) {
      case 'ack': return this.onAck(m.ack);
      case 'heartbeat': return this.onHeartbeat(m.heartbeat);
      case 'refusal':
        this.ctx.log.error('secondary refused the stream', { group: this.ctx.group, ...m.refusal });
        return this.detach(`refused: ${m.refusal.reason}`);
      case 'resync_request': return this.onResyncRequest(call, m.resync_request);
      case 'checksums': return this.onChecksums(m.checksums);
      default:
        return;
    }
  }

  private onAck(a: Record<string, string>): void {
    if (Number(a.epoch) !== this.ctx.epoch) return;
    const r = this.window.ack(Number(a.applied_seq), Number(a.durable_seq));
    if (r.kind === 'refused') {
      this.ctx.log.error('secondary sent an impossible ack', { group: this.ctx.group, reason: r.reason, message: r.message });
      this.stream?.write({ refusal: { epoch_seen: String(a.epoch), epoch_current: String(this.ctx.epoch), reason: invalidMessageReason, message: r.message } });
      this.detach(r.message);
      return;
    }
    this.settleEntries(r.applied.filter((e) => !e.durable));
    this.settleEntries(r.durable);
    for (const v of this.ctx.volumes) {
      v.dirty.peerDurable(Number(a.durable_seq));
      this.pumpDirty(v);
    }
    this.resync?.onDurable(Number(a.durable_seq));
    for (const d of this.repairs) d.onDurable(Number(a.durable_seq));
    this.wakeSpaceWaiters();
    // Coalesced with the writes of this turn: fewer, larger batches.
    this.schedulePump();
  }

  /** Entries waiting for room in the window push again (room was made, or the stream is gone). */
  private wakeSpaceWaiters(): void {
    const space = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const w of space) w();
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

  /** An echo of a heartbeat this session cannot have sent (before it started, or in the future). */
  private impossibleEcho(h: Record<string, string>): string | undefined {
    const echoUs = Number(h.echo_sent_at_us);
    if (echoUs === 0) return undefined;
    const nowUs = this.now() * 1000;
    if (echoUs < this.startedAtMs * 1000 - 1000 || echoUs > nowUs + 1000) return `heartbeat.echo_sent_at_us ${h.echo_sent_at_us} is not a time this primary sent`;
    if (Number(h.echo_held_us) > nowUs - echoUs) return `heartbeat.echo_held_us ${h.echo_held_us} is longer than the round trip`;
    return undefined;
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
      // The sequence is set on the entry itself: a spread into a new literal costs more per entry
      // than the rest of the batch's bookkeeping (node-agent/scsi/request.ts).
      const entries = batch.map((e) => {
        const m = e.payload.entry;
        m.seq = String(e.seq);
        return m;
      });
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
    const resyncBytes = this.ctx.volumes.reduce((n, v) => n + v.dirty.stats().resyncRegions * v.regionSizeBytes, 0) + (this.resync?.remainingBytes() ?? 0);
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
          this.outdated = { reason: o.reason, since: new Date().toISOString() };
          this.record(() => this.ctx.recorder.markOutdated(o.reason), () => this.step({ kind: 'outdated-recorded', nowMs: this.now() }));
          break;
        case 'mark-up-to-date':
          this.ctx.log.info('secondary up-to-date', { group: this.ctx.group });
          this.outdated = undefined;
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
    if (this.policy.secondary === 'outdated' && (this.outdatedWaiters.size > 0 || this.waiting.size > 0)) this.releaseOnOutdated();
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
    // Promise resolvers: none runs code here, so none can add to the set while it is walked.
    for (const r of this.outdatedWaiters) r();
    this.outdatedWaiters.clear();
    if (writeCompletion(this.policy).kind !== 'local') return;
    for (const p of this.waiting) {
      const s = p.settle;
      p.settle = undefined;
      s?.();
    }
    this.waiting.clear();
  }

  // ------------------------------------------------------------ resync and verify

  /** The secondary lacks what the stream cannot deliver: outdated until its ResyncRequests are served. */
  private startResync(hello: Record<string, any>): void {
    const reason = !hello.has_data ? 'secondary has no data of this group: full resync'
      : !hello.up_to_date ? 'secondary copy inconsistent (resync interrupted)' : 'regions missed while detached: resync';
    this.step({ kind: 'resync-needed', nowMs: this.now(), reason });
    this.resync = new ResyncDriver(this.resyncHost(), {
      kind: hello.has_data ? 'bitmap' : 'full', rateBytesPerSec: this.resyncRateBytesPerSec, volumesExpected: this.ctx.volumes.length,
    });
    const driver = this.resync;
    driver.finished().then(() => {
      if (this.resync !== driver) return;
      this.lastResync = driver.progress();
      this.resyncBytesSentTotal += driver.bytesSent;
      this.resync = undefined;
      // The policy records the secondary up-to-date at its next lag tick (nothing left to resync).
    }, (err: Error) => {
      this.ctx.log.error('resync failed', { group: this.ctx.group, error: err.message });
      if (this.resync === driver) this.detach(`resync failed: ${err.message}`);
    });
  }

  private stopResync(): void {
    for (const r of this.repairs) r.stop();
    const d = this.resync;
    if (!d) return;
    this.resync = undefined;
    d.stop();
    this.lastResync = d.progress();
    this.resyncBytesSentTotal += d.bytesSent;
  }

  private onResyncRequest(call: Stream, q: Record<string, any>): void {
    const v = this.ctx.volumes[q.volume];
    const driver = this.resync;
    if (!v || !driver || Number(q.epoch) !== this.ctx.epoch || q.region_size_bytes !== v.regionSizeBytes) {
      this.refuse(call, 'GEOMETRY_MISMATCH', Number(q.epoch), `resync request for volume ${q.volume} does not match this primary's plan`);
      return this.detach('bad resync request');
    }
    const peer = peerBitmap(q.dirty_bitmap, v.dirty.regionCount);
    if (!peer.ok) {
      this.refuse(call, 'GEOMETRY_MISMATCH', Number(q.epoch), peer.message);
      return this.detach('bad resync request');
    }
    driver.add(v.index, q.full ? 'full' : 'bitmap', peer.bitmap);
  }

  private onChecksums(c: Record<string, any>): void {
    const w = this.checksumWaiters.get(c.request_id);
    if (!w) return;
    this.checksumWaiters.delete(c.request_id);
    const crcs = c.crc32c as number[];
    if (crcs.length !== w.count) return w.reject(new Error(`secondary sent ${crcs.length} checksums, ${w.count} asked`));
    w.resolve(Uint32Array.from(crcs));
  }

  /** The secondary's checksums of regions, after it applied every entry queued until now. */
  peerChecksums(purpose: 'resync' | 'verify', volume: number, firstRegion: number, regionCount: number): Promise<Uint32Array> {
    const call = this.stream;
    if (!call) return Promise.reject(new Error('secondary not attached'));
    const id = String(this.nextChecksumRequest++);
    const v = this.ctx.volumes[volume];
    return new Promise((resolve, reject) => {
      this.checksumWaiters.set(id, { resolve, reject, count: regionCount });
      call.write({ checksum_request: {
        epoch: String(this.ctx.epoch), request_id: id, purpose, volume, region_size_bytes: v.regionSizeBytes,
        first_region: String(firstRegion), region_count: regionCount, after_seq: String(this.window.stats().nextSeq - 1),
      } });
    });
  }

  private resyncHost() {
    return {
      group: this.ctx.group,
      volumes: this.ctx.volumes,
      gate: this.gate,
      log: this.ctx.log,
      now: () => this.now(),
      push: (entry: Record<string, unknown>, bytes: number, onQueued: (seq: number) => void) => this.pushOwn(entry, bytes, onQueued),
      peerChecksums: (purpose: 'resync' | 'verify', volume: number, first: number, count: number) => this.peerChecksums(purpose, volume, first, count),
    };
  }

  /** An entry of the session's own (resync data, markers): waits for room like a host write. */
  private async pushOwn(entry: Record<string, unknown>, bytes: number, onQueued: (seq: number) => void): Promise<void> {
    for (;;) {
      if (!this.stream) throw new Error('secondary detached');
      const r = this.window.push({ entry, settle: undefined }, bytes, this.now());
      if (r.kind === 'queued') {
        onQueued(r.seq);
        break;
      }
      await new Promise<void>((resolve) => this.spaceWaiters.push(resolve));
    }
    this.schedulePump();
  }

  /**
   * Starts an online verify (one at a time). Refused as a value while the secondary is detached or a
   * resync runs: the copies are known to differ then.
   */
  beginVerify(): { ok: true; end: () => void } | { ok: false; reason: string } {
    if (!this.stream) return { ok: false, reason: 'the secondary is not attached' };
    if (this.resync) return { ok: false, reason: 'a resync is running; verify once it completes' };
    if (this.verifying) return { ok: false, reason: 'a verify of this group is already running' };
    this.verifying = true;
    this.verifyWrites = new Map();
    return { ok: true, end: () => { this.verifying = false; this.verifyWrites = undefined; } };
  }

  private noteWrite(v: SessionVolume, offsetBytes: number, lengthBytes: number): void {
    const stamp = ++this.writeStamp;
    const last = v.dirty.lastRegionOf(offsetBytes, lengthBytes);
    for (let r = v.dirty.regionOf(offsetBytes); r <= last; r++) this.verifyWrites!.set(v.index * 2 ** 32 + r, stamp);
  }

  /** For verify: a stamp now, and whether a host write touched the region after a stamp. */
  verifyStamp(): number {
    return this.writeStamp;
  }

  writtenSince(volume: number, region: number, stamp: number): boolean {
    return (this.verifyWrites?.get(volume * 2 ** 32 + region) ?? 0) > stamp;
  }

  /** Sends regions again as resync entries (verify --repair); resolves once they are durable at the secondary. */
  async repair(regions: Map<number, RegionBitmap>): Promise<ResyncRunProgress> {
    if (!this.stream) throw new Error('the secondary is not attached');
    const d = new ResyncDriver(this.resyncHost(), { kind: 'repair', rateBytesPerSec: this.resyncRateBytesPerSec, volumesExpected: regions.size });
    this.repairs.add(d);
    try {
      for (const [volume, bitmap] of regions) d.addRegions(volume, 'bitmap', bitmap);
      await d.finished();
      if (!d.done) throw new Error('the secondary detached during the repair');
      return d.progress();
    } finally {
      this.repairs.delete(d);
      this.resyncBytesSentTotal += d.bytesSent;
    }
  }

  /** Admin-set bandwidth of resync and verify, effective at once. */
  setResyncRate(rateBytesPerSec: number): void {
    this.resyncRateBytesPerSec = rateBytesPerSec;
    this.resync?.setRate(rateBytesPerSec);
  }

  /** For verify: the group's volumes (local copy, dirty map) and the bandwidth bound. */
  get verifySide() {
    return { volumes: this.ctx.volumes, rateBytesPerSec: this.resyncRateBytesPerSec, now: () => this.now() };
  }

  /** The role runtime knows the secondary is gone: stop waiting for it to attach (writes then wait for the outdated record, not attachWaitMs). */
  declarePeerDown(): void {
    if (this.policy.peer !== 'unknown') return;
    this.ctx.log.warn('secondary not reachable: serving alone, the dirty map records what it lacks', { group: this.ctx.group });
    this.step({ kind: 'peer-down', nowMs: this.now() });
  }

  /** What the group's role needs ten times a second: the few fields of status() it reads, without building the rest. */
  roleReport(): { peer: AckPolicyState['peer']; secondary: AckPolicyState['secondary']; mode: AckPolicyState['mode']; lagMs: number } {
    const p = this.policy;
    return { peer: p.peer, secondary: p.secondary, mode: p.mode, lagMs: this.window.lag(this.now()).lagMs };
  }

  status() {
    const resync = this.resync?.progress() ?? this.lastResync;
    // The lag now, not as of the policy's last tick (up to a heartbeat old): a drill reads the
    // handover's lag from Status.
    const lag = this.window.lag(this.now());
    return {
      ...ackPolicyStatus(this.policy), lagBytes: lag.lagBytes, lagMs: lag.lagMs, window: this.window.stats(), ...this.stats,
      attached: this.stream !== undefined,
      resync, resyncBytesSentTotal: this.resyncBytesSentTotal + (this.resync?.bytesSent ?? 0),
      resyncRateBytesPerSec: this.resyncRateBytesPerSec,
      outdatedReason: this.outdated?.reason, outdatedSince: this.outdated?.since,
    };
  }

  // ------------------------------------------------------------ topology changes (topology-apply.ts)

  /**
   * A volume of the group was resized. Growing: its file is already larger; the dirty map grows
   * and is rewritten (new header) before a write past the old end can begin. Shrinking: hosts no
   * longer reach the tail; waits until no write of the volume is in flight, then fits the map.
   */
  async resizeVolume(index: number, sizeBytes: number): Promise<void> {
    const v = this.ctx.volumes[index];
    assert(v !== undefined, `resize of volume ${index}, which the group does not have`);
    if (sizeBytes < v.sizeBytes) {
      // A resync (or repair) planned on the old size may be reading or sending the tail: the stream
      // is dropped so the secondary attaches again and the next resync plans on the new size.
      if (this.stream && (this.resync || this.repairs.size > 0)) this.detach(`volume ${index} shrinks: the resync restarts on the new size`);
      await this.until(() => v.dirty.stats().writesInFlight === 0 && !this.gate.inUse && !v.dirty.tracksFrom(regionGeometry(sizeBytes, v.regionSizeBytes).regionCount), `writes and resync entries of volume ${index} to finish`);
    }
    await this.until(() => !this.persisting.has(v.index), `the dirty map of volume ${index} to settle`);
    this.persisting.add(v.index);
    try {
      this.releaseTickets(v, await resizeSessionVolume(v, sizeBytes, this.now()));
    } finally {
      this.persisting.delete(v.index);
    }
    this.pumpDirty(v);
  }

  /** Resolves once no write of the volume waits for the peer (acknowledged, or left to the resync). */
  async volumeSettled(index: number): Promise<void> {
    const v = this.ctx.volumes[index];
    if (v) await this.until(() => v.dirty.stats().writesInFlight === 0, `writes of volume ${index} to reach the peer`);
  }

  /** A volume added at the end of the group (its LUN is not shown to hosts yet). */
  addVolume(v: SessionVolume): void {
    assert(v.index === this.ctx.volumes.length, `volume ${v.index} added after ${this.ctx.volumes.length} volumes`);
    this.ctx.volumes.push(v);
  }

  /** The group's last volume is deleted (hosts no longer reach it): waits for its writes, forgets it. */
  async removeLastVolume(): Promise<SessionVolume> {
    const v = this.ctx.volumes[this.ctx.volumes.length - 1];
    assert(v !== undefined && this.ctx.volumes.length > 1, 'a group keeps at least one volume');
    await this.until(() => v.dirty.stats().writesInFlight === 0 && !this.persisting.has(v.index), `writes of volume ${v.index} to finish`);
    this.ctx.volumes.pop();
    return v;
  }

  /** New replication settings: limits apply to the next admission; a fixed policy sets its mode now. */
  setPolicy(config: AckPolicyConfig): void {
    const mode = config.policy === 'adaptive' ? this.policy.mode : config.policy;
    if (mode !== this.policy.mode) this.ctx.log.warn('mirror mode changed', { group: this.ctx.group, from: this.policy.mode, to: mode, reason: 'topology apply' });
    this.policy = { ...this.policy, config, mode };
    this.step({ kind: 'tick', nowMs: this.now() });
  }

  private async until(done: () => boolean, what: string): Promise<void> {
    const deadline = this.now() + untilMaxMs;
    while (!done()) {
      if (this.now() > deadline) throw new Error(`waited ${untilMaxMs} ms for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.stopResync();
    this.ctx.log.info('mirror session closing', { group: this.ctx.group, ...this.status() });
    if (this.stream) {
      const call = this.stream;
      this.stream = undefined;
      try { call.end(); } catch { /* already gone */ }
    }
  }
}
