// Sizes on a forward stream (protos/forward.proto): every gRPC message stays well under the channels'
// 8 MiB limit. Data larger than a piece travels as a first piece in its command (or result) and
// continuation events right behind it; a batch message closes once its events carry enough bytes.
// Pure helpers, and the batching of events into messages, shared by both sides.

/** Data-Out and Data-In travel in pieces of at most this many bytes. */
export const pieceBytesMax = 1024 * 1024;
/** A batch message closes once its events carry this many bytes (the limit is 8 MiB). */
export const messageBytesMax = 4 * 1024 * 1024;
/** What an event costs in a message beside its data (ids, lengths, the CDB). */
const eventOverheadBytes = 64;

/** The pieces of `data`, back to back; one piece (the buffer itself) when it is small. */
export function piecesOf(data: Buffer): Buffer[] {
  if (data.length <= pieceBytesMax) return [data];
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += pieceBytesMax) out.push(data.subarray(at, Math.min(data.length, at + pieceBytesMax)));
  return out;
}

/** How a kind of event carries its data in pieces (forward.proto Command and Result). */
export interface PieceFields {
  /** The event holding the message, the message's field for the first piece and the one for the whole length. */
  readonly head: string;
  readonly data: string;
  readonly total: string;
  /** The continuation event ({ id, data }) for each further piece. */
  readonly more: string;
}

export const commandPieces: PieceFields = { head: 'command', data: 'data_out', total: 'data_out_total', more: 'command_data' };
export const resultPieces: PieceFields = { head: 'result', data: 'data_in', total: 'data_in_total', more: 'result_data' };

/**
 * A command or result with its data, given in parts (as the transport received them; never joined):
 * the message with the first piece and the whole length, then a continuation event per further
 * piece. The message alone, as it is, when there is no data.
 */
export function pieceEvents(f: PieceFields, id: string, message: Record<string, unknown>, parts: readonly Buffer[]): SizedEvent[] {
  const pieces = parts.flatMap((p) => piecesOf(p)).filter((p) => p.length > 0);
  if (pieces.length === 0) return [sized({ [f.head]: message })];
  const total = pieces.reduce((n, p) => n + p.length, 0);
  return [
    sized({ [f.head]: { ...message, [f.data]: pieces[0], [f.total]: total } }, pieces[0].length),
    ...pieces.slice(1).map((p) => sized({ [f.more]: { id, data: p } }, p.length)),
  ];
}

/** An event and the bytes it adds to a message. */
export interface SizedEvent {
  readonly event: Record<string, unknown>;
  readonly bytes: number;
}

export function sized(event: Record<string, unknown>, dataBytes = 0): SizedEvent {
  return { event, bytes: dataBytes + eventOverheadBytes };
}

/** Takes the events of one message off the front of `queue` (at least one). */
export function takeMessage(queue: SizedEvent[]): Array<Record<string, unknown>> {
  let bytes = 0;
  let n = 0;
  while (n < queue.length && (n === 0 || bytes + queue[n].bytes <= messageBytesMax)) {
    bytes += queue[n].bytes;
    n++;
  }
  return queue.splice(0, n).map((e) => e.event);
}

/** Collects a body sent in pieces; `add` returns the whole once `total` bytes are in. */
export class Assembly {
  private readonly parts: Buffer[];
  private received: number;

  constructor(first: Buffer, readonly total: number) {
    this.parts = [first];
    this.received = first.length;
  }

  /** undefined while pieces are missing; an error message when they overrun the total. */
  add(piece: Buffer): Buffer[] | string | undefined {
    this.parts.push(piece);
    this.received += piece.length;
    if (this.received > this.total) return `pieces carry ${this.received} bytes of ${this.total}`;
    return this.received === this.total ? this.parts : undefined;
  }
}

/**
 * A stream's outgoing events: whatever is queued in one turn of the event loop travels in as few
 * batch messages as their byte bound allows; once the stream's write() reports it full, nothing more
 * is written until it drains.
 */
export class EventBatcher {
  private queue: SizedEvent[] = [];
  private scheduled = false;
  private full = false;

  constructor(private readonly o: {
    /** Whether the stream takes messages now (queued events wait otherwise). */
    ready: () => boolean;
    /** Writes one message; false when the stream's buffer is full. */
    write: (message: Record<string, unknown>) => boolean;
  }) {}

  /** The stream's buffer is full: heartbeats wait too. */
  get blocked(): boolean {
    return this.full;
  }

  push(e: SizedEvent): void {
    this.queue.push(e);
    if (this.scheduled || this.full) return;
    this.scheduled = true;
    // Natural batching: whatever the hosts queued in this turn travels in one message.
    setImmediate(() => this.flush());
  }

  flush(): void {
    this.scheduled = false;
    while (this.o.ready() && !this.full && this.queue.length > 0) {
      if (!this.o.write({ batch: { events: takeMessage(this.queue) } })) this.full = true;
    }
  }

  /** The stream drained its buffer. */
  drained(): void {
    this.full = false;
    this.flush();
  }

  /** The stream is gone: what was queued for it is dropped. */
  reset(): void {
    this.queue = [];
    this.full = false;
  }
}
