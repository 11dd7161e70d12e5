// Sizes on a forward stream (protos/forward.proto): every gRPC message stays well under the channels'
// 8 MiB limit. Data larger than a piece travels as a first piece in its command (or result) and
// continuation events right behind it; a batch message closes once its events carry enough bytes.
// Pure helpers, shared by both sides.

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
