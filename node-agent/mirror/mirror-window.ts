// The primary's side of one group's mirror stream: sequence numbers, a bounded in-flight window by
// bytes and entries released by the secondary's acks (never by write()'s callbacks), natural batching
// (whatever queued while earlier batches were in flight; no timers) and retransmit after a reconnect.
// Pure and synchronous: every decision is a returned value; the runtime owns the stream and the clock.
import { assert } from '../../common/assert.ts';

export interface MirrorWindowConfig {
  /** Bytes sent and not yet acknowledged as applied. */
  inflightBytesMax: number;
  /** Entries sent and not yet acknowledged as applied (about 32 single writes saturate a link). */
  inflightEntriesMax: number;
  /** Batches on the wire at once; what queues meanwhile goes in the next batch. */
  inflightBatchesMax: number;
  /** Bytes accepted but not yet sent; past it push() answers 'full' and the caller holds the write. */
  queuedBytesMax: number;
  /** Per batch message (stay under the channel's max message length). */
  batchBytesMax: number;
  batchEntriesMax: number;
}

export const mirrorWindowDefaults: MirrorWindowConfig = {
  inflightBytesMax: 4 * 1024 * 1024,
  inflightEntriesMax: 64,
  inflightBatchesMax: 2,
  queuedBytesMax: 32 * 1024 * 1024,
  batchBytesMax: 2 * 1024 * 1024,
  batchEntriesMax: 64,
};

export interface WindowEntry<T> {
  readonly seq: number;
  readonly bytes: number;
  /** When the write was admitted (the runtime's monotonic clock): lag is measured from here. */
  readonly admittedAtMs: number;
  /** FUA write or flush: completes only when the secondary's durable sequence passes it. */
  readonly durable: boolean;
  readonly payload: T;
}

export type PushResult = { kind: 'queued'; seq: number } | { kind: 'full'; queuedBytes: number; queuedBytesMax: number };

export type AckResult<T> =
  /** applied: newly applied entries in order (released from the window); durable: newly durable entries that asked for it. */
  | { kind: 'acked'; applied: WindowEntry<T>[]; durable: WindowEntry<T>[] }
  /** A protocol fault of the peer: it acknowledged what was never sent, or durable beyond applied. */
  | { kind: 'refused'; reason: 'beyond-sent' | 'durable-beyond-applied'; message: string };

export type AttachResult<T> =
  /** The stream continues at fromSeq; every unacknowledged entry is sent again first. */
  | { kind: 'resume'; fromSeq: number; retransmitEntries: number; applied: WindowEntry<T>[]; durable: WindowEntry<T>[] }
  /**
   * The peer lost entries the window had already released as applied (it restarted before making
   * them durable): they travel as resync of their dirty regions; the secondary is outdated until it
   * completes. stranded: durable-waiting entries the stream can no longer acknowledge.
   */
  | { kind: 'gap'; missingFromSeq: number; missingToSeq: number; fromSeq: number; durable: WindowEntry<T>[]; stranded: WindowEntry<T>[] }
  /** The peer claims entries this window never sent: another history (old epoch, replaced site). */
  | { kind: 'peer-ahead'; peerAppliedSeq: number; lastSentSeq: number };

export class MirrorWindow<T> {
  /** Unapplied entries in sequence order from index head; the first `sent` of them are on the wire. */
  private entries: WindowEntry<T>[] = [];
  private head = 0;
  private sent = 0;
  private inflightBytes = 0;
  private queuedBytes = 0;
  /** Last sequence of each batch on the wire. */
  private batchEnds: number[] = [];
  /** Applied entries still waiting for the durable sequence to pass them. */
  private awaitingDurable: WindowEntry<T>[] = [];
  private nextSeq: number;
  private appliedSeq: number;
  private durableSeq: number;
  private connected = false;
  private writable = true;

  constructor(private readonly config: MirrorWindowConfig = mirrorWindowDefaults, firstSeq = 1) {
    assert(config.inflightBytesMax > 0 && config.inflightEntriesMax > 0 && config.inflightBatchesMax > 0, 'window limits must be positive');
    assert(config.batchBytesMax > 0 && config.batchEntriesMax > 0 && config.queuedBytesMax > 0, 'batch and queue limits must be positive');
    assert(Number.isSafeInteger(firstSeq) && firstSeq >= 1, `first sequence ${firstSeq} must be a positive integer`);
    this.nextSeq = firstSeq;
    this.appliedSeq = firstSeq - 1;
    this.durableSeq = firstSeq - 1;
  }

  /** Assigns the next sequence number, or refuses when the queue is at its bound (backpressure). */
  push(payload: T, bytes: number, nowMs: number, opts: { durable?: boolean } = {}): PushResult {
    assert(Number.isSafeInteger(bytes) && bytes >= 0, `entry size ${bytes} must be a non-negative integer`);
    // An empty queue takes any single entry, so one large write cannot wedge the stream.
    if (this.queuedBytes > 0 && this.queuedBytes + bytes > this.config.queuedBytesMax) {
      return { kind: 'full', queuedBytes: this.queuedBytes, queuedBytesMax: this.config.queuedBytesMax };
    }
    const seq = this.nextSeq++;
    this.entries.push({ seq, bytes, admittedAtMs: nowMs, durable: opts.durable ?? false, payload });
    this.queuedBytes += bytes;
    return { kind: 'queued', seq };
  }

  /**
   * The next batch to write to the stream, or undefined when there is nothing to send, no stream,
   * the stream is blocked (write() returned false), or the window is full. Call it after a push,
   * an ack, a 'drain' and a reconnect.
   */
  takeBatch(): WindowEntry<T>[] | undefined {
    if (!this.connected || !this.writable || this.batchEnds.length >= this.config.inflightBatchesMax) return undefined;
    const batch: WindowEntry<T>[] = [];
    let batchBytes = 0;
    while (this.head + this.sent < this.entries.length) {
      const e = this.entries[this.head + this.sent];
      const windowEmpty = this.sent === 0;
      const fitsWindow = this.inflightBytes + e.bytes <= this.config.inflightBytesMax && this.sent < this.config.inflightEntriesMax;
      const fitsBatch = batch.length < this.config.batchEntriesMax && batchBytes + e.bytes <= this.config.batchBytesMax;
      if (!(windowEmpty || fitsWindow) || !(batch.length === 0 || fitsBatch)) break;
      batch.push(e);
      batchBytes += e.bytes;
      this.sent++;
      this.inflightBytes += e.bytes;
      this.queuedBytes -= e.bytes;
    }
    if (batch.length === 0) return undefined;
    this.batchEnds.push(batch[batch.length - 1].seq);
    return batch;
  }

  /** write() returned false: nothing more until 'drain'. */
  blocked(): void {
    this.writable = false;
  }

  drained(): void {
    this.writable = true;
  }

  ack(appliedSeq: number, durableSeq: number): AckResult<T> {
    const lastSent = this.lastSentSeq();
    if (appliedSeq > lastSent) {
      return { kind: 'refused', reason: 'beyond-sent', message: `peer acknowledged sequence ${appliedSeq}, only ${lastSent} was sent` };
    }
    if (durableSeq > appliedSeq) {
      return { kind: 'refused', reason: 'durable-beyond-applied', message: `durable sequence ${durableSeq} is beyond applied ${appliedSeq}` };
    }
    // Older acks (reordered across a reconnect) change nothing: sequences only grow.
    const applied = this.releaseApplied(appliedSeq);
    const durable = this.releaseDurable(durableSeq);
    return { kind: 'acked', applied, durable };
  }

  /** The stream ended (or failed). */
  detached(): void {
    this.connected = false;
    this.writable = true;
    // Everything on the wire is sent again on the next stream.
    this.queuedBytes += this.inflightBytes;
    this.inflightBytes = 0;
    this.sent = 0;
    this.batchEnds = [];
  }

  /** A stream is attached (first or again): the secondary's hello says what it holds. */
  attached(peerAppliedSeq: number, peerDurableSeq: number): AttachResult<T> {
    assert(!this.connected, 'attached() twice without detached()');
    const lastSent = this.nextSeq - 1;
    if (peerAppliedSeq > lastSent) return { kind: 'peer-ahead', peerAppliedSeq, lastSentSeq: lastSent };
    this.connected = true;
    if (peerAppliedSeq < this.appliedSeq) {
      const durable = this.releaseDurable(Math.min(peerDurableSeq, peerAppliedSeq));
      const stranded = this.awaitingDurable;
      this.awaitingDurable = [];
      return { kind: 'gap', missingFromSeq: peerAppliedSeq + 1, missingToSeq: this.appliedSeq, fromSeq: this.appliedSeq + 1, durable, stranded };
    }
    const applied = this.releaseApplied(peerAppliedSeq);
    const durable = this.releaseDurable(Math.min(peerDurableSeq, peerAppliedSeq));
    return { kind: 'resume', fromSeq: peerAppliedSeq + 1, retransmitEntries: this.entries.length - this.head, applied, durable };
  }

  /** Unacknowledged data: what the ack policy bounds (lag) and status shows. */
  lag(nowMs: number): { lagBytes: number; lagMs: number; lagEntries: number } {
    const oldest = this.entries[this.head];
    return {
      lagBytes: this.inflightBytes + this.queuedBytes,
      lagMs: oldest === undefined ? 0 : Math.max(0, nowMs - oldest.admittedAtMs),
      lagEntries: this.entries.length - this.head,
    };
  }

  stats() {
    return {
      nextSeq: this.nextSeq,
      appliedSeq: this.appliedSeq,
      durableSeq: this.durableSeq,
      inflightBytes: this.inflightBytes,
      inflightEntries: this.sent,
      inflightBatches: this.batchEnds.length,
      queuedBytes: this.queuedBytes,
      queuedEntries: this.entries.length - this.head - this.sent,
      awaitingDurable: this.awaitingDurable.length,
      connected: this.connected,
      writable: this.writable,
    };
  }

  private lastSentSeq(): number {
    return this.sent === 0 ? this.appliedSeq : this.entries[this.head + this.sent - 1].seq;
  }

  private releaseApplied(appliedSeq: number): WindowEntry<T>[] {
    const out: WindowEntry<T>[] = [];
    while (this.head < this.entries.length && this.entries[this.head].seq <= appliedSeq) {
      const e = this.entries[this.head++];
      if (this.sent > 0) {
        this.sent--;
        this.inflightBytes -= e.bytes;
      } else {
        // Acknowledged after a reconnect before being sent again (the peer had it already).
        this.queuedBytes -= e.bytes;
      }
      if (e.durable) this.awaitingDurable.push(e);
      out.push(e);
    }
    if (appliedSeq > this.appliedSeq) this.appliedSeq = appliedSeq;
    while (this.batchEnds.length > 0 && this.batchEnds[0] <= this.appliedSeq) this.batchEnds.shift();
    // Compact now and then so the array does not keep released entries alive.
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    assert(this.inflightBytes >= 0 && this.queuedBytes >= 0, 'window byte counters went negative');
    return out;
  }

  private releaseDurable(durableSeq: number): WindowEntry<T>[] {
    if (durableSeq > this.durableSeq) this.durableSeq = durableSeq;
    let n = 0;
    while (n < this.awaitingDurable.length && this.awaitingDurable[n].seq <= this.durableSeq) n++;
    return n === 0 ? [] : this.awaitingDurable.splice(0, n);
  }
}
