// The secondary's side of one group's mirror: MirrorApplier applies the primary's entries strictly in
// sequence order to the local volume files and acknowledges applied and durable sequences (fdatasync at
// flush and FUA entries, when unsynced bytes pass a bound, and when idle); it refuses old epochs and
// entries whose CRC32C does not match. startApplierLink dials the primary and reconnects with backoff.
import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import type { Logger } from '../../common/log.ts';
import { channelOptions, serviceOf } from '../../common/proto.ts';
import type { BlockDevice } from '../storage/block-device.ts';

/** Past this many bytes applied and not yet fdatasync'd, the applier syncs before acknowledging durable. */
export const unsyncedBytesMax = 64 * 1024 * 1024;
/** Batches received and not yet applied; past it the stream is paused (the primary bounds it anyway). */
const queuedBatchesMax = 8;
/** The receiving side's HTTP/2 window: the bulk data flows primary -> secondary on this client's stream. */
const flowControlWindowBytes = 16 * 1024 * 1024;
const reconnectMinMs = 100;
const reconnectMaxMs = 5000;
const idleSyncMs = 200;

export type ApplierFault =
  | { kind: 'old-epoch'; epochSeen: number; epochCurrent: number }
  | { kind: 'crc-mismatch'; seq: number; volume: number }
  | { kind: 'out-of-order'; expectedSeq: number; seq: number }
  | { kind: 'bad-entry'; seq: number; message: string }
  | { kind: 'refused-by-primary'; reason: string; message: string };

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
}

/** One stream's worth of state; a new stream starts from the primary's welcome. */
export class MirrorApplier {
  epoch: number;
  appliedSeq = 0;
  durableSeq = 0;
  private expectedSeq = 0;
  private unsyncedBytes = 0;
  private welcomed = false;
  private chain: Promise<void> = Promise.resolve();
  private queued = 0;

  constructor(private readonly o: ApplierOptions) {
    this.epoch = o.epoch;
  }

  hello(): Record<string, unknown> {
    return {
      hello: {
        cluster: this.o.cluster, group: this.o.group, site: this.o.site, epoch: String(this.epoch),
        applied_seq: String(this.appliedSeq), durable_seq: String(this.durableSeq),
        // Whether this copy holds every acknowledged write is the primary's record (resync comes later).
        up_to_date: true, has_data: true,
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
    switch (m.kind) {
      case 'welcome': return this.onWelcome(m.welcome);
      case 'batch': return this.onBatch(m.batch);
      case 'heartbeat': return this.onHeartbeat(m.heartbeat);
      case 'refusal': return { kind: 'refused-by-primary', reason: m.refusal.reason, message: m.refusal.message };
      default: return undefined;
    }
  }

  private async onWelcome(w: Record<string, string | boolean>): Promise<ApplierFault | undefined> {
    const epoch = Number(w.epoch);
    if (epoch < this.epoch) return this.refuseEpoch(epoch);
    if (epoch > this.epoch) {
      await this.o.adoptEpoch(epoch);
      this.epoch = epoch;
    }
    // The primary numbers this stream: what came before resume_seq we hold or it resyncs.
    this.expectedSeq = Number(w.resume_seq);
    this.appliedSeq = this.expectedSeq - 1;
    this.durableSeq = Math.min(this.durableSeq, this.appliedSeq);
    this.welcomed = true;
    if (w.resync_needed) this.o.log.warn('primary says a resync is needed (not driven yet)', { group: this.o.group, full: w.full_resync });
    return undefined;
  }

  private refuseEpoch(epochSeen: number): ApplierFault {
    this.o.send({ refusal: { epoch_seen: String(epochSeen), epoch_current: String(this.epoch), reason: 'OLD_EPOCH', message: `epoch ${epochSeen} is older than ${this.epoch}` } });
    return { kind: 'old-epoch', epochSeen, epochCurrent: this.epoch };
  }

  private async onBatch(b: { epoch: string; entries: Array<Record<string, any>> }): Promise<ApplierFault | undefined> {
    const epoch = Number(b.epoch);
    if (epoch < this.epoch) return this.refuseEpoch(epoch);
    // A newer epoch arrives only with a welcome: anything else is a protocol fault (reconnect).
    if (epoch > this.epoch || !this.welcomed) return { kind: 'bad-entry', seq: 0, message: `batch of epoch ${epoch} before a welcome of that epoch` };
    // The whole batch is checked before any of it is applied: a bad entry leaves the volume untouched.
    let expected = this.expectedSeq;
    for (const e of b.entries) {
      const seq = Number(e.seq);
      if (seq !== expected) return { kind: 'out-of-order', expectedSeq: expected, seq };
      const fault = this.check(e, seq);
      if (fault) return fault;
      expected++;
    }
    let durableWanted = false;
    // Writes run concurrently while their ranges do not overlap; anything else waits for them (order).
    let run: Array<{ volume: number; start: number; end: number }> = [];
    let running: Promise<void>[] = [];
    for (const e of b.entries) {
      const r = e.kind === 'write' ? { volume: e.write.volume, start: Number(e.write.offset_bytes), end: Number(e.write.offset_bytes) + e.write.data.length } : undefined;
      if (!r || run.some((x) => x.volume === r.volume && x.start < r.end && r.start < x.end)) {
        await Promise.all(running);
        run = [];
        running = [];
      }
      if (r) {
        run.push(r);
        running.push(this.o.devices[r.volume].write(r.start, e.write.data));
        this.unsyncedBytes += e.write.data.length;
        if (e.write.fua) durableWanted = true;
      } else {
        await this.apply(e);
        if (e.kind === 'flush') durableWanted = true;
      }
    }
    await Promise.all(running);
    this.appliedSeq = expected - 1;
    this.expectedSeq = expected;
    if (durableWanted || this.unsyncedBytes > unsyncedBytesMax) await this.sync();
    this.sendAck();
    return undefined;
  }

  /** Refusals of one entry, before anything of its batch is applied. */
  private check(e: Record<string, any>, seq: number): ApplierFault | undefined {
    switch (e.kind) {
      case 'write': {
        const w = e.write as { volume: number; offset_bytes: string; data: Buffer; crc32c: number };
        const dev = this.o.devices[w.volume];
        if (!dev || Number(w.offset_bytes) + w.data.length > dev.sizeBytes) return { kind: 'bad-entry', seq, message: `write outside volume ${w.volume}` };
        if (crc32c(w.data) !== w.crc32c) return { kind: 'crc-mismatch', seq, volume: w.volume };
        return undefined;
      }
      case 'deallocate': {
        const d = e.deallocate as { volume: number; offset_bytes: string; length_bytes: string };
        const dev = this.o.devices[d.volume];
        if (!dev || Number(d.offset_bytes) + Number(d.length_bytes) > dev.sizeBytes) return { kind: 'bad-entry', seq, message: `deallocate outside volume ${d.volume}` };
        return undefined;
      }
      case 'flush':
        return undefined;
      default:
        // State records and resync entries come with the steps that produce them.
        return { kind: 'bad-entry', seq, message: `entry kind ${e.kind} not handled yet` };
    }
  }

  /** Deallocations (flushes only mark the batch durable). */
  private async apply(e: Record<string, any>): Promise<void> {
    if (e.kind !== 'deallocate') return;
    const dev = this.o.devices[e.deallocate.volume];
    const offset = Number(e.deallocate.offset_bytes);
    const length = Number(e.deallocate.length_bytes);
    if (dev.deallocate) await dev.deallocate(offset, length);
    else for (let at = offset; at < offset + length; at += 1 << 20) await dev.write(at, Buffer.alloc(Math.min(1 << 20, offset + length - at)));
    this.unsyncedBytes += 1;
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

  /** Idle: make what was applied durable so the primary's dirty map can clean. */
  idleSync(): void {
    if (this.unsyncedBytes === 0 || this.queued > 0) return;
    this.queued++;
    const done = this.chain.then(async () => { await this.sync(); this.sendAck(); });
    this.chain = done.then(() => { this.queued--; }, () => { this.queued--; });
  }

  private sendAck(): void {
    this.o.send({ ack: { epoch: String(this.epoch), applied_seq: String(this.appliedSeq), durable_seq: String(this.durableSeq) } });
  }
}

/** Dials the primary's agent for one group and keeps a stream attached, with backoff between tries. */
export function startApplierLink(o: Omit<ApplierOptions, 'send'> & { address: string; port: number }): { close(): void } {
  const Mirror = serviceOf('mirror.proto', 'MetroMirror');
  const host = o.address.includes(':') ? `[${o.address}]` : o.address;
  const client = new Mirror(`${host}:${o.port}`, grpc.credentials.createInsecure(), {
    ...channelOptions, 'grpc-node.flow_control_window': flowControlWindowBytes,
  });
  let closed = false;
  let epoch = o.epoch;
  let delayMs = reconnectMinMs;
  let timer: NodeJS.Timeout | undefined;
  let call: grpc.ClientDuplexStream<Record<string, unknown>, Record<string, any>> | undefined;
  let idle: NodeJS.Timeout | undefined;
  // Sequences survive a reconnect to the same primary: the hello tells it where to resume.
  let applied = 0;
  let durable = 0;

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
    const end = (why: string): void => {
      if (over) return;
      over = true;
      applied = applier.appliedSeq;
      durable = applier.durableSeq;
      clearInterval(idle);
      c.cancel();
      if (closed) return;
      o.log.warn('mirror stream to the primary ended; reconnecting', { group: o.group, why, delayMs });
      timer = setTimeout(connect, delayMs);
      delayMs = Math.min(reconnectMaxMs, delayMs * 2);
    };
    idle = setInterval(() => applier.idleSync(), idleSyncMs);
    c.on('data', (m: Record<string, any>) => {
      if (m.kind === 'welcome') {
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
    close() {
      closed = true;
      clearTimeout(timer);
      call?.cancel();
      client.close();
    },
  };
}
