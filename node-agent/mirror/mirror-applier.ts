// The secondary's side of one group's mirror: MirrorApplier applies the primary's entries strictly in
// sequence order to the local volume files and acknowledges applied and durable sequences (fdatasync at
// flush and FUA entries, when unsynced bytes pass a bound, and when idle); it refuses old epochs and
// entries whose CRC32C does not match. When the primary says a resync is needed it records its copy
// inconsistent, asks for the resync of every volume (with its own dirty regions), answers checksum
// requests, and records the copy consistent once every volume's ResyncComplete is durable here.
// startApplierLink dials the primary and reconnects with backoff.
import type * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import type { Logger } from '../../common/log.ts';
import { serviceOf } from '../../common/proto.ts';
import { channelFor } from '../../common/grpc-client.ts';
import type { Identity } from '../../common/tls/identity.ts';
import type { BlockDevice } from '../storage/block-device.ts';
import { fitBitmap } from './region-bitmap.ts';
import { regionChecksums } from './region-checksums.ts';
import { classifyEpoch, checkList, safeU64 } from '../../common/grpc-validate.ts';
import { checkEntry, checkPrimaryControl, checkWelcome, invalidMessageReason } from './mirror-checks.ts';

/** How the applier fits its own dirty bitmaps to the primary's sizes (its tests import it from here). */
export { fitBitmap };

/** Past this many bytes applied and not yet fdatasync'd, the applier starts an fdatasync beside the
 *  apply chain (writes and their applied acks go on meanwhile) and acknowledges durable when it ends. */
export const unsyncedBytesMax = 64 * 1024 * 1024;
/** Batches received and not yet applied; past it the stream is paused (the primary bounds it anyway). */
const queuedBatchesMax = 8;
/** The receiving side's HTTP/2 window: the bulk data flows primary -> secondary on this client's stream. */
export const applierFlowControlWindowBytes = 16 * 1024 * 1024;
const reconnectMinMs = 100;
const reconnectMaxMs = 5000;
const idleSyncMs = 200;
const streamLingerMs = 1000;

export type ApplierFault =
  | { kind: 'old-epoch'; epochSeen: number; epochCurrent: number }
  | { kind: 'crc-mismatch'; seq: number; volume: number }
  | { kind: 'out-of-order'; expectedSeq: number; seq: number }
  | { kind: 'bad-entry'; seq: number; message: string }
  | { kind: 'refused-by-primary'; reason: string; message: string };

/** This site's copy of the group as its metadata records it (GroupRecord.copy). */
export interface CopyState {
  /** It held the group's data in sync at least once (false: new volume files, never resynced). */
  hasData: boolean;
  /** No resync is half done: every region is from one moment of the primary's history. */
  consistent: boolean;
}

export interface ApplierOptions {
  cluster: string;
  group: string;
  site: string;
  /** The group's epoch as this site's metadata holds it. */
  epoch: number;
  /** The group's volumes in LUN order. */
  devices: BlockDevice[];
  regionSizeBytes: number;
  /** Persist a newer epoch learnt from the primary before acting on it. */
  adoptEpoch: (epoch: number) => Promise<void>;
  send: (msg: Record<string, unknown>) => void;
  log: Logger;
  /** The copy's state, read at each hello. Absent: a copy that always claims data in sync (unit tests). */
  copy?: () => CopyState;
  /** Persists the copy's state before the applier acts on it (inconsistent before any resync data). */
  recordCopy?: (c: CopyState) => Promise<void>;
  /** This site's own dirty regions of a volume (writes it made as a primary that its peer may lack). */
  ownDirty?: (volume: number) => Promise<Uint8Array | undefined>;
  /** Host-visible state records (persistent reservations) from the primary; absent: none are accepted. */
  hostState?: HostStateSink;
}

/** Where a secondary's state records go (their owner: the group's SCSI target), checked before applied. */
export interface HostStateSink {
  /** Why the record cannot be applied (unknown kind, malformed payload), or undefined. */
  check(kind: string, volume: number, payload: Buffer): string | undefined;
  /** Adopts the record durably, before the entry counts as applied. */
  adopt(kind: string, volume: number, payload: Buffer): Promise<void>;
}

function describeFault(f: ApplierFault): string {
  switch (f.kind) {
    case 'bad-entry': return `entry ${f.seq}: ${f.message}`;
    case 'crc-mismatch': return `entry ${f.seq}: CRC32C does not match the data of volume ${f.volume}`;
    case 'out-of-order': return `entry ${f.seq} where ${f.expectedSeq} was due`;
    default: return f.kind;
  }
}

/** One stream's worth of state; a new stream starts from the primary's welcome. */
export class MirrorApplier {
  epoch: number;
  appliedSeq = 0;
  durableSeq = 0;
  private expectedSeq = 0;
  private unsyncedBytes = 0;
  /** The fdatasync started beside the chain, while it runs; its failure ends the stream at the next message. */
  private backgroundSync: Promise<void> | undefined;
  private backgroundFailure: Error | undefined;
  private welcomed = false;
  private chain: Promise<void> = Promise.resolve();
  private queued = 0;
  /** Volumes whose resync this stream asked for, and those whose ResyncComplete was applied. */
  private resyncRequested = 0;
  private resyncCompleted = 0;
  /** Checksum requests waiting for the entries before them to be applied. */
  private deferredChecksums: Array<Record<string, any>> = [];

  constructor(private readonly o: ApplierOptions) {
    this.epoch = o.epoch;
  }

  /** Read at each batch: a topology apply grows the devices and adds volumes while the stream runs. */
  private get volumeSizes(): readonly number[] {
    return this.o.devices.map((d) => d.sizeBytes);
  }

  hello(): Record<string, unknown> {
    return {
      hello: {
        cluster: this.o.cluster, group: this.o.group, site: this.o.site, epoch: String(this.epoch),
        applied_seq: String(this.appliedSeq), durable_seq: String(this.durableSeq),
        // Whether this copy holds every acknowledged write is the primary's record; this says whether
        // it holds the group's data at all and whether a resync was left half done.
        up_to_date: this.o.copy?.().consistent ?? true, has_data: this.o.copy?.().hasData ?? true,
        volumes: this.o.devices.map((d, i) => ({ volume: i, size_bytes: String(d.sizeBytes), region_size_bytes: this.o.regionSizeBytes })),
      },
    };
  }

  get backlog(): number {
    return this.queued;
  }

  /** One message from the primary; resolves when it is handled, or with the fault that ends the stream. */
  receive(m: Record<string, any>): Promise<ApplierFault | undefined> {
    this.queued++;
    const done = this.chain.then(() => this.handle(m));
    this.chain = done.then(() => { this.queued--; }, () => { this.queued--; });
    return done;
  }

  private async handle(m: Record<string, any>): Promise<ApplierFault | undefined> {
    if (this.backgroundFailure) throw this.backgroundFailure;
    const invalid = checkPrimaryControl(m);
    if (invalid) return this.refuseInvalid(invalid);
    switch (m.kind) {
      case 'welcome': return this.onWelcome(m.welcome);
      case 'batch': return this.onBatch(m.batch);
      case 'heartbeat': return this.onHeartbeat(m.heartbeat);
      case 'refusal': return { kind: 'refused-by-primary', reason: m.refusal.reason, message: m.refusal.message };
      case 'checksum_request': return this.onChecksumRequest(m.checksum_request);
      default: return undefined;
    }
  }

  private async onWelcome(w: Record<string, string | boolean>): Promise<ApplierFault | undefined> {
    const e = classifyEpoch('welcome.epoch', w.epoch, this.epoch);
    if (e.kind === 'invalid') return this.refuseInvalid(e.reason);
    const invalid = checkWelcome(w);
    if (invalid) return this.refuseInvalid(invalid);
    const epoch = e.epoch;
    if (e.kind === 'stale') return this.refuseEpoch(epoch);
    if (e.kind === 'future') {
      await this.o.adoptEpoch(epoch);
      this.epoch = epoch;
    }
    // The primary numbers this stream: what came before resume_seq we hold or it resyncs.
    this.expectedSeq = Number(w.resume_seq);
    this.appliedSeq = this.expectedSeq - 1;
    this.durableSeq = Math.min(this.durableSeq, this.appliedSeq);
    this.welcomed = true;
    const sizes = ((w as Record<string, unknown>).volume_size_bytes ?? []) as unknown[];
    if (w.resync_needed) await this.requestResync(Boolean(w.full_resync), sizes.map(Number));
    return undefined;
  }

  /** Recorded inconsistent first: a crash in the middle of the resync must not look like a whole copy. */
  private async requestResync(full: boolean, primarySizes: readonly number[]): Promise<void> {
    const was = this.o.copy?.() ?? { hasData: true, consistent: true };
    if (was.consistent) await this.o.recordCopy?.({ hasData: was.hasData, consistent: false });
    this.resyncRequested = this.o.devices.length;
    this.resyncCompleted = 0;
    this.o.log.warn('resync needed: this copy is inconsistent until it completes', { group: this.o.group, full });
    for (const [volume] of this.o.devices.entries()) {
      const own = full ? undefined : await this.o.ownDirty?.(volume);
      // The primary plans on its own size: bits past its end (a shrink not yet applied here) are
      // regions that no longer exist; regions past this copy's end (a grow) were never written here.
      const primarySize = primarySizes[volume];
      const bitmap = own && primarySize ? fitBitmap(own, Math.ceil(primarySize / this.o.regionSizeBytes)) : own;
      this.o.send({ resync_request: {
        epoch: String(this.epoch), volume, region_size_bytes: this.o.regionSizeBytes, full, dirty_bitmap: bitmap ?? Buffer.alloc(0),
      } });
    }
  }

  private async onChecksumRequest(q: Record<string, any>): Promise<ApplierFault | undefined> {
    if (Number(q.epoch) < this.epoch) return this.refuseEpoch(Number(q.epoch));
    const dev = this.o.devices[q.volume];
    const regionsTotal = dev ? Math.ceil(dev.sizeBytes / this.o.regionSizeBytes) : 0;
    const first = Number(q.first_region);
    if (!dev || q.region_size_bytes !== this.o.regionSizeBytes || q.region_count < 1 || first + q.region_count > regionsTotal) {
      return { kind: 'bad-entry', seq: 0, message: `checksum request for regions ${first}+${q.region_count} of volume ${q.volume} outside it` };
    }
    // Computed once every entry the primary had queued when it asked is applied here.
    if (Number(q.after_seq) > this.appliedSeq) this.deferredChecksums.push(q);
    else this.answerChecksums(q);
    return undefined;
  }

  /**
   * Read and checksummed beside the apply chain, not in it: entries and heartbeat echoes do not wait
   * for it. Later entries landing during the read only make a region differ (it is sent or rechecked).
   */
  private answerChecksums(q: Record<string, any>): void {
    const atSeq = this.appliedSeq;
    regionChecksums(this.o.devices[q.volume], this.o.regionSizeBytes, Number(q.first_region), q.region_count).then((crcs) => {
      this.o.send({ checksums: {
        epoch: String(this.epoch), request_id: q.request_id, volume: q.volume, region_size_bytes: this.o.regionSizeBytes,
        first_region: q.first_region, crc32c: Array.from(crcs), at_seq: String(atSeq),
      } });
    }, (err: Error) => this.o.log.error('region checksums failed', { group: this.o.group, volume: q.volume, error: err.message }));
  }

  private answerDeferred(): void {
    if (this.deferredChecksums.length === 0) return;
    const ready = this.deferredChecksums.filter((q) => Number(q.after_seq) <= this.appliedSeq);
    this.deferredChecksums = this.deferredChecksums.filter((q) => Number(q.after_seq) > this.appliedSeq);
    for (const q of ready) this.answerChecksums(q);
  }

  private refuseEpoch(epochSeen: number): ApplierFault {
    this.o.send({ refusal: { epoch_seen: String(epochSeen), epoch_current: String(this.epoch), reason: 'OLD_EPOCH', message: `epoch ${epochSeen} is older than ${this.epoch}` } });
    return { kind: 'old-epoch', epochSeen, epochCurrent: this.epoch };
  }

  /** A message that fails the field checks: the primary is told why, and the stream ends untouched. */
  private refuseInvalid(message: string): ApplierFault {
    this.o.send({ refusal: { epoch_seen: '0', epoch_current: String(this.epoch), reason: invalidMessageReason, message } });
    return { kind: 'bad-entry', seq: 0, message };
  }

  private async onBatch(b: { epoch: string; entries: Array<Record<string, any>> }): Promise<ApplierFault | undefined> {
    const e = classifyEpoch('batch.epoch', b.epoch, this.epoch);
    if (e.kind === 'invalid') return this.refuseInvalid(e.reason);
    const listed = checkList('batch.entries', b.entries);
    if (listed) return this.refuseInvalid(listed);
    const epoch = e.epoch;
    if (e.kind === 'stale') return this.refuseEpoch(epoch);
    // A newer epoch arrives only with a welcome: anything else is a protocol fault (reconnect).
    if (e.kind === 'future' || !this.welcomed) return this.refuseInvalid(`batch of epoch ${epoch} before a welcome of that epoch`);
    // The whole batch is checked before any of it is applied: a bad entry leaves the volume untouched.
    let expected = this.expectedSeq;
    const sizes = this.volumeSizes;
    for (const e of b.entries) {
      const seq = safeU64(e.seq);
      const fault = seq === undefined ? { kind: 'bad-entry' as const, seq: 0, message: `entry sequence ${String(e.seq).slice(0, 24)} is not a valid sequence` }
        : seq !== expected ? { kind: 'out-of-order' as const, expectedSeq: expected, seq }
          : this.check(e, seq, sizes);
      if (fault) {
        // The primary learns why its stream ends (the volume is untouched).
        this.o.send({ refusal: { epoch_seen: String(epoch), epoch_current: String(this.epoch), reason: invalidMessageReason, message: describeFault(fault) } });
        return fault;
      }
      expected++;
    }
    let durableWanted = false;
    let completes = 0;
    // Writes run concurrently while their ranges do not overlap; anything else waits for them (order).
    let run: Array<{ volume: number; start: number; end: number }> = [];
    let running: Promise<void>[] = [];
    for (const e of b.entries) {
      const w = e.kind === 'write' ? e.write : e.kind === 'resync' ? e.resync : undefined;
      const r = w ? { volume: w.volume as number, start: Number(w.offset_bytes), end: Number(w.offset_bytes) + (w.data as Buffer).length, data: w.data as Buffer } : undefined;
      if (!r || run.some((x) => x.volume === r.volume && x.start < r.end && r.start < x.end)) {
        await Promise.all(running);
        run = [];
        running = [];
      }
      if (r) {
        run.push(r);
        running.push(this.o.devices[r.volume].write(r.start, r.data));
        this.unsyncedBytes += r.data.length;
        // Resync data is made durable at once: the primary cleans its dirty map only then.
        if (e.kind === 'resync' || e.write.fua) durableWanted = true;
      } else {
        await this.apply(e);
        if (e.kind === 'flush' || e.kind === 'resync_complete') durableWanted = true;
        if (e.kind === 'resync_complete') completes++;
      }
    }
    await Promise.all(running);
    this.appliedSeq = expected - 1;
    this.expectedSeq = expected;
    if (durableWanted) await this.sync();
    else if (this.unsyncedBytes > unsyncedBytesMax) this.syncBeside();
    if (completes > 0) await this.resyncCompletes(completes);
    this.sendAck();
    this.answerDeferred();
    return undefined;
  }

  /** Refusals of one entry, before anything of its batch is applied; volumeSizes as the batch began. */
  private check(e: Record<string, any>, seq: number, volumeSizes: readonly number[]): ApplierFault | undefined {
    const invalid = checkEntry(e, volumeSizes);
    if (invalid) return { kind: 'bad-entry', seq, message: invalid };
    switch (e.kind) {
      case 'write':
        if (crc32c(e.write.data) !== e.write.crc32c) return { kind: 'crc-mismatch', seq, volume: e.write.volume };
        return undefined;
      case 'resync': {
        const r = e.resync as { volume: number; region: string; offset_bytes: string; data: Buffer; crc32c: number };
        const dev = this.o.devices[r.volume];
        const offset = Number(r.offset_bytes);
        if (!dev || offset !== Number(r.region) * this.o.regionSizeBytes || offset + r.data.length > dev.sizeBytes || r.data.length > this.o.regionSizeBytes) {
          return { kind: 'bad-entry', seq, message: `resync data outside region ${r.region} of volume ${r.volume}` };
        }
        if (crc32c(r.data) !== r.crc32c) return { kind: 'crc-mismatch', seq, volume: r.volume };
        return undefined;
      }
      case 'resync_complete':
        if (!this.o.devices[e.resync_complete.volume]) return { kind: 'bad-entry', seq, message: `resync complete for volume ${e.resync_complete.volume}` };
        return undefined;
      case 'deallocate':
      case 'flush':
        return undefined;
      case 'state': {
        const r = e.state as { kind: string; volume: number; payload: Buffer };
        const refused = this.o.hostState ? this.o.hostState.check(r.kind, r.volume, r.payload) : 'this secondary keeps no host state';
        return refused ? { kind: 'bad-entry', seq, message: `state record ${r.kind} for volume ${r.volume}: ${refused}` } : undefined;
      }
      default:
        return { kind: 'bad-entry', seq, message: `entry kind ${e.kind} not handled` };
    }
  }

  /** Deallocations and state records (flushes only mark the batch durable). */
  private async apply(e: Record<string, any>): Promise<void> {
    if (e.kind === 'state') return this.o.hostState!.adopt(e.state.kind, e.state.volume, e.state.payload);
    if (e.kind !== 'deallocate') return;
    const dev = this.o.devices[e.deallocate.volume];
    const offset = Number(e.deallocate.offset_bytes);
    const length = Number(e.deallocate.length_bytes);
    if (dev.deallocate) await dev.deallocate(offset, length);
    else for (let at = offset; at < offset + length; at += 1 << 20) await dev.write(at, Buffer.alloc(Math.min(1 << 20, offset + length - at)));
    this.unsyncedBytes += 1;
  }

  /** Every requested volume's resync is applied and durable: the copy is whole again. */
  private async resyncCompletes(n: number): Promise<void> {
    this.resyncCompleted += n;
    if (this.resyncRequested === 0 || this.resyncCompleted < this.resyncRequested) return;
    this.resyncRequested = 0;
    await this.o.recordCopy?.({ hasData: true, consistent: true });
    this.o.log.info('resync complete: this copy is consistent', { group: this.o.group, appliedSeq: this.appliedSeq });
  }

  private async onHeartbeat(h: Record<string, string>): Promise<undefined> {
    // Echo at once: the primary measures the mirror round trip behind whatever is queued here.
    this.o.send({ heartbeat: {
      epoch: String(this.epoch), sent_at_us: String(Math.round(performance.now() * 1000)),
      echo_sent_at_us: h.sent_at_us, echo_held_us: '0', last_seq: String(this.appliedSeq), lag_bytes: '0', lag_ms: '0',
    } });
    return undefined;
  }

  /** fdatasync every volume of the group: everything applied so far is durable. */
  async sync(): Promise<void> {
    const upTo = this.appliedSeq;
    this.unsyncedBytes = 0;
    await Promise.all(this.o.devices.map((d) => d.flush()));
    if (upTo > this.durableSeq) this.durableSeq = upTo;
  }

  /**
   * A large amount applied and not yet durable: fdatasync without holding up the chain (a sync of
   * 64 MiB of scattered pages takes long enough to stall every host write of a sync-mode group), then
   * acknowledge what it made durable. One at a time; the writes applied meanwhile wait for the next.
   */
  private syncBeside(): void {
    if (this.backgroundSync) return;
    this.backgroundSync = this.sync().then(
      () => { this.backgroundSync = undefined; this.sendAck(); },
      (err: Error) => { this.backgroundSync = undefined; this.backgroundFailure = err; },
    );
  }

  /**
   * Every idleSyncMs: what was applied and is not durable yet is made durable (so the primary's
   * dirty map can clean), beside the apply chain like syncBeside: in the chain, every write of a
   * sync-mode group waited behind the fdatasync of the last fifth of a second of writes, five times
   * a second. Returns the failure of an earlier sync, which ends the stream.
   */
  idleSync(): Error | undefined {
    if (this.backgroundFailure) return this.backgroundFailure;
    if (this.unsyncedBytes > 0) this.syncBeside();
    return undefined;
  }

  private sendAck(): void {
    this.o.send({ ack: { epoch: String(this.epoch), applied_seq: String(this.appliedSeq), durable_seq: String(this.durableSeq) } });
  }
}

/** A secondary's stream to its primary as status shows it (mirror-status.ts). */
export interface LinkStatus {
  attached: boolean;
  appliedSeq: number;
  durableSeq: number;
}

export interface ApplierLink {
  close(): void;
  status(): LinkStatus;
}

/** Dials the primary's agent for one group and keeps a stream attached, with backoff between tries. */
export function startApplierLink(o: Omit<ApplierOptions, 'send'> & { address: string; port: number; /** whose certificate the primary must present */ peer: Identity }): ApplierLink {
  const Mirror = serviceOf('mirror.proto', 'MetroMirror');
  const channel = channelFor(o.address, o.port, { expect: o.peer, channel: { 'grpc-node.flow_control_window': applierFlowControlWindowBytes } });
  const client = new Mirror(channel.target, channel.credentials, channel.options);
  let closed = false;
  let epoch = o.epoch;
  let delayMs = reconnectMinMs;
  let timer: NodeJS.Timeout | undefined;
  let call: grpc.ClientDuplexStream<Record<string, unknown>, Record<string, any>> | undefined;
  let idle: NodeJS.Timeout | undefined;
  // Sequences survive a reconnect to the same primary: the hello tells it where to resume.
  let applied = 0;
  let durable = 0;
  let current: { applier: MirrorApplier; welcomed: boolean; over: () => boolean } | undefined;

  const connect = (): void => {
    if (closed) return;
    const c = client.Attach() as grpc.ClientDuplexStream<Record<string, unknown>, Record<string, any>>;
    call = c;
    let over = false;
    const applier = new MirrorApplier({
      ...o, epoch,
      send: (m) => { if (!over) c.write(m); },
      adoptEpoch: async (e) => { await o.adoptEpoch(e); epoch = e; },
    });
    applier.appliedSeq = applied;
    applier.durableSeq = durable;
    const link = { applier, welcomed: false, over: () => over };
    current = link;
    const end = (why: string): void => {
      if (over) return;
      over = true;
      applied = applier.appliedSeq;
      durable = applier.durableSeq;
      clearInterval(idle);
      // Half-close first so a refusal just written reaches the primary; cancel if it lingers.
      c.end();
      setTimeout(() => c.cancel(), streamLingerMs).unref();
      if (closed) return;
      o.log.warn('mirror stream to the primary ended; reconnecting', { group: o.group, why, delayMs });
      timer = setTimeout(connect, delayMs);
      delayMs = Math.min(reconnectMaxMs, delayMs * 2);
    };
    idle = setInterval(() => {
      const failed = applier.idleSync();
      if (!failed) return;
      o.log.error('making mirrored writes durable failed', { group: o.group, error: failed.message });
      end(failed.message);
    }, idleSyncMs);
    c.on('data', (m: Record<string, any>) => {
      if (m.kind === 'welcome') {
        link.welcomed = true;
        delayMs = reconnectMinMs;
        o.log.info('mirror attached to the primary', { group: o.group, primary: m.welcome.site, resumeSeq: m.welcome.resume_seq });
      }
      if (applier.backlog >= queuedBatchesMax) c.pause();
      applier.receive(m).then((fault) => {
        if (applier.backlog < queuedBatchesMax && !over) c.resume();
        if (fault) {
          o.log.error('mirror stream fault', { group: o.group, ...fault });
          end(fault.kind);
        }
      }, (err: Error) => {
        o.log.error('applying a mirror entry failed', { group: o.group, error: err.message });
        end(err.message);
      });
    });
    c.on('error', (err: Error) => end(err.message));
    c.on('end', () => end('primary ended the stream'));
    c.write(applier.hello());
  };
  connect();
  return {
    status() {
      const c = current;
      const attached = c !== undefined && c.welcomed && !c.over();
      return { attached, appliedSeq: c?.applier.appliedSeq ?? applied, durableSeq: c?.applier.durableSeq ?? durable };
    },
    close() {
      closed = true;
      clearTimeout(timer);
      call?.cancel();
      client.close();
    },
  };
}
