// The key=value text format of Login and Text PDUs (RFC 7143 §6.1): NUL-terminated UTF-8 pairs,
// split across PDUs with the C bit. Pure: decode, encode, accumulate continued requests, split long
// responses into segments.

export type TextPair = readonly [key: string, value: string];

/** Key names: RFC 7143 §6.1 standard-label, up to 63 bytes. */
const keyNamePattern = /^[A-Za-z0-9.\-+@_:#]{1,63}$/;
/** Long enough for CHAP_C/CHAP_R with generous challenge lengths (§12.1.3 caps them at 1024 bytes). */
export const textValueBytesMax = 8192;

export type TextDecodeResult = { ok: true; pairs: TextPair[] } | { ok: false; reason: string };

export function decodeText(data: Buffer): TextDecodeResult {
  const pairs: TextPair[] = [];
  let at = 0;
  while (at < data.length) {
    let end = data.indexOf(0, at);
    if (end < 0) end = data.length; // tolerate a missing final NUL
    if (end === at) {
      at++; // stray NUL (padding some initiators leave in)
      continue;
    }
    const item = data.toString('utf8', at, end);
    at = end + 1;
    const eq = item.indexOf('=');
    if (eq <= 0) return { ok: false, reason: `text item without key=value: ${JSON.stringify(item.slice(0, 64))}` };
    const key = item.slice(0, eq);
    const value = item.slice(eq + 1);
    if (!keyNamePattern.test(key)) return { ok: false, reason: `bad key name ${JSON.stringify(key.slice(0, 64))}` };
    if (Buffer.byteLength(value) > textValueBytesMax) return { ok: false, reason: `value of ${key} too long` };
    pairs.push([key, value]);
  }
  return { ok: true, pairs };
}

export function encodeText(pairs: Iterable<TextPair>): Buffer {
  let s = '';
  for (const [key, value] of pairs) s += `${key}=${value}\0`;
  return Buffer.from(s, 'utf8');
}

/** Collects the data segments of a request sent with the C bit until the last one (C=0). */
export class TextAccumulator {
  private parts: Buffer[] = [];
  private length = 0;

  constructor(private readonly bytesMax: number) {}

  /** False when the total would pass the limit (the caller refuses the negotiation). */
  append(data: Buffer): boolean {
    if (this.length + data.length > this.bytesMax) return false;
    if (data.length > 0) this.parts.push(Buffer.from(data)); // copy: the PDU's chunk is not ours to keep
    this.length += data.length;
    return true;
  }

  get pending(): boolean {
    return this.length > 0;
  }

  take(): Buffer {
    const all = Buffer.concat(this.parts, this.length);
    this.parts = [];
    this.length = 0;
    return all;
  }
}

/** Splits a response into data segments of at most segmentBytesMax (the receiver's
 *  MaxRecvDataSegmentLength); the split may fall inside a pair, as the C bit allows (§11.10.2). */
export function splitText(data: Buffer, segmentBytesMax: number): Buffer[] {
  if (data.length <= segmentBytesMax) return [data];
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += segmentBytesMax) out.push(data.subarray(at, at + segmentBytesMax));
  return out;
}
