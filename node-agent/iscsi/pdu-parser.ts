// Incremental PDU framing: takes the byte stream in chunks of any size (one byte works) and yields
// whole PDUs, checking digests and the declared data segment limit. Pure; a data segment is returned
// as views into the chunks it arrived in (a list of them when it spans chunks: Pdu.dataParts), never
// copied; the header and the small fields around the data are copied.
import { crc32c } from '@node-rs/crc32';
import { bhsBytes, digestBytes } from './constants.ts';
import { dataPartsOf, dataSegmentLengthOf, paddingOf, type Pdu } from './pdu.ts';

const empty = Buffer.alloc(0);

export interface ParserOptions {
  readonly headerDigest: boolean;
  readonly dataDigest: boolean;
  /** Our declared MaxRecvDataSegmentLength: a longer data segment is a protocol error. */
  readonly dataSegmentBytesMax: number;
}

export type ParseResult =
  | { readonly kind: 'pdu'; readonly pdu: Pdu }
  /** Framing is intact, the data is not: the PDU is returned so its header can be rejected. */
  | { readonly kind: 'data-digest-error'; readonly pdu: Pdu }
  /** The stream cannot be trusted past this point; the connection must be closed. */
  | { readonly kind: 'fatal'; readonly reason: 'header-digest' | 'data-segment-too-long'; readonly bhs: Buffer };

export class PduParser {
  private chunks: Buffer[] = [];
  private head = 0; // index of the first unread chunk
  private offset = 0; // read offset into chunks[head]
  private buffered = 0;
  private bhs: Buffer | undefined; // parsed header awaiting the rest of its PDU
  private failed = false;

  constructor(private options: ParserOptions) {}

  /** Takes effect from the next PDU: digests start after the final login response (§13.1). */
  setOptions(options: ParserOptions): void {
    this.options = options;
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0 || this.failed) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The next complete PDU, or undefined until more bytes arrive. After a fatal result, nothing. */
  next(): ParseResult | undefined {
    if (this.failed) return undefined;
    if (this.bhs === undefined) {
      if (this.buffered < bhsBytes) return undefined;
      this.bhs = this.take(bhsBytes, false);
      if (dataSegmentLengthOf(this.bhs) > this.options.dataSegmentBytesMax) {
        this.failed = true;
        return { kind: 'fatal', reason: 'data-segment-too-long', bhs: this.bhs };
      }
    }
    const bhs = this.bhs;
    const ahsBytes = bhs[4] * 4;
    const hd = this.options.headerDigest ? digestBytes : 0;
    const dataBytes = dataSegmentLengthOf(bhs);
    const pad = paddingOf(dataBytes);
    const dd = this.options.dataDigest && dataBytes > 0 ? digestBytes : 0;
    const rest = ahsBytes + hd + dataBytes + pad + dd;
    if (this.buffered < rest) return undefined;
    this.bhs = undefined;
    const head = ahsBytes + hd > 0 ? this.take(ahsBytes + hd, true) : empty;
    const ahs = head.subarray(0, ahsBytes);
    if (hd > 0) {
      let crc = crc32c(bhs);
      if (ahsBytes > 0) crc = crc32c(ahs, crc);
      if (crc >>> 0 !== head.readUInt32LE(ahsBytes)) {
        this.failed = true;
        return { kind: 'fatal', reason: 'header-digest', bhs };
      }
    }
    const pdu = dataBytes === 0 ? { bhs, ahs, data: empty } : this.takeData(bhs, ahs, dataBytes);
    const tail = pad + dd > 0 ? this.take(pad + dd, true) : empty;
    if (dd > 0) {
      let crc = 0;
      for (const part of dataPartsOf(pdu)) crc = crc32c(part, crc);
      if (pad > 0) crc = crc32c(tail.subarray(0, pad), crc);
      if (crc >>> 0 !== tail.readUInt32LE(pad)) return { kind: 'data-digest-error', pdu };
    }
    return { kind: 'pdu', pdu };
  }

  /** The data segment: a view when it lies in one chunk, else views of each chunk it spans (joined
   *  only if someone reads `data`). */
  private takeData(bhs: Buffer, ahs: Buffer, n: number): Pdu {
    const first = this.chunks[this.head];
    if (first.length - this.offset >= n) return { bhs, ahs, data: this.take(n, true) };
    const parts: Buffer[] = [];
    for (let left = n; left > 0; ) {
      const chunk = this.chunks[this.head];
      const count = Math.min(left, chunk.length - this.offset);
      parts.push(chunk.subarray(this.offset, this.offset + count));
      left -= count;
      this.advance(count);
    }
    let joined: Buffer | undefined;
    return {
      bhs,
      ahs,
      dataParts: parts,
      get data(): Buffer {
        return (joined ??= Buffer.concat(parts, n));
      },
    };
  }

  /** Consumes n buffered bytes: a view when they lie in one chunk, else one copy. Small pieces
   *  (the header) are always copied so a PDU never pins a large socket chunk by its header alone. */
  private take(n: number, allowView: boolean): Buffer {
    const first = this.chunks[this.head];
    if (allowView && first.length - this.offset >= n) {
      const view = first.subarray(this.offset, this.offset + n);
      this.advance(n);
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[this.head];
      const count = Math.min(n - filled, chunk.length - this.offset);
      chunk.copy(out, filled, this.offset, this.offset + count);
      filled += count;
      this.advance(count);
    }
    return out;
  }

  private advance(n: number): void {
    this.buffered -= n;
    this.offset += n;
    while (this.head < this.chunks.length && this.offset >= this.chunks[this.head].length) {
      this.offset -= this.chunks[this.head].length;
      this.head++;
    }
    if (this.head > 64 || this.head === this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}
