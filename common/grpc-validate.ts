// Checks of gRPC request fields, run before a request touches any state (issue 7 item 4). Each check
// returns the refusal reason as one sentence, or undefined when the field is acceptable; callers turn
// a reason into a gRPC status (refusalStatus) or their stream's refusal message. Pure, no allocation
// on the accepting path: the mirror applies these to every entry.
import * as grpc from '@grpc/grpc-js';

/** Logical block of every volume: offsets and lengths on the wire are multiples of it. */
export const blockBytes = 512;
/** Cluster, group and site names: an IQN's length bound, ample for any name the topology allows. */
export const nameBytesMax = 223;
/** Entries of a repeated field a request may carry where the protocol has no tighter bound. */
export const listItemsMax = 4096;

const decimalU53 = /^[0-9]{1,16}$/;

/** A uint64/int64 field as proto-loader gives it (`longs: String`), or a number. Undefined when it is
 *  not an integer JavaScript holds exactly: 2^64-1, values that are negative as int64 (>= 2^63), and
 *  anything at or above 2^53 are refused rather than rounded. */
export function safeU64(raw: unknown): number | undefined {
  let n: number;
  if (typeof raw === 'number') n = raw;
  else if (typeof raw === 'string') {
    if (!decimalU53.test(raw)) return undefined;
    n = Number(raw);
  } else if (typeof raw === 'bigint') {
    if (raw < 0n || raw > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    n = Number(raw);
  } else return undefined;
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

export function checkU64(field: string, raw: unknown, max = Number.MAX_SAFE_INTEGER, min = 0): string | undefined {
  const n = safeU64(raw);
  if (n === undefined) return `${field} ${describe(raw)} is not an integer from ${min} to ${max}`;
  if (n < min || n > max) return `${field} ${n} is not from ${min} to ${max}`;
  return undefined;
}

/** A uint32 field (proto-loader gives a number; absent is 0). */
export function checkU32(field: string, raw: unknown, max = 0xffffffff, min = 0): string | undefined {
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < min || raw > max) return `${field} ${describe(raw)} is not an integer from ${min} to ${max}`;
  return undefined;
}

export function checkName(field: string, raw: unknown): string | undefined {
  if (typeof raw !== 'string' || raw.length === 0) return `${field} is missing`;
  if (Buffer.byteLength(raw) > nameBytesMax) return `${field} is longer than ${nameBytesMax} bytes`;
  return undefined;
}

export function checkBytes(field: string, raw: unknown, bytesMax: number, bytesMin = 0): string | undefined {
  if (!Buffer.isBuffer(raw)) return `${field} is not bytes`;
  if (raw.length < bytesMin || raw.length > bytesMax) return `${field} holds ${raw.length} bytes, expected ${bytesMin} to ${bytesMax}`;
  return undefined;
}

export function checkList(field: string, raw: unknown, itemsMax = listItemsMax): string | undefined {
  if (!Array.isArray(raw)) return `${field} is not a list`;
  if (raw.length > itemsMax) return `${field} holds ${raw.length} items, at most ${itemsMax} allowed`;
  return undefined;
}

/** A fixed32 CRC32C field: present as a number, and (when data is given) matching it. */
export function checkCrc(field: string, raw: unknown, computed?: number): string | undefined {
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 0 || raw > 0xffffffff) return `${field} is missing or not a 32-bit value`;
  if (computed !== undefined && computed >>> 0 !== raw) return `${field} does not match the data`;
  return undefined;
}

export interface VolumeRange {
  /** Sizes in bytes of the volumes a request may name, indexed by volume (LUN) number. */
  readonly volumeSizes: readonly number[];
  readonly volume: unknown;
  readonly offsetBytes: unknown;
  readonly lengthBytes: unknown;
  /** Longest range one request may name. */
  readonly lengthBytesMax: number;
  /** Default blockBytes; 1 for byte-granular ranges. */
  readonly alignBytes?: number;
}

/** Volume index exists; offset and length are safe integers, aligned, non-empty, under the limit,
 *  and the range lies inside the volume. */
export function checkVolumeRange(field: string, r: VolumeRange): string | undefined {
  const align = r.alignBytes ?? blockBytes;
  const v = r.volume;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= r.volumeSizes.length) {
    return `${field}: volume ${describe(v)} does not exist (the group has ${r.volumeSizes.length})`;
  }
  const offset = safeU64(r.offsetBytes);
  if (offset === undefined) return `${field}: offset ${describe(r.offsetBytes)} is not a valid byte offset`;
  const length = safeU64(r.lengthBytes);
  if (length === undefined || length === 0) return `${field}: length ${describe(r.lengthBytes)} is not a positive byte count`;
  if (length > r.lengthBytesMax) return `${field}: length ${length} is over the limit of ${r.lengthBytesMax} bytes`;
  if (offset % align !== 0 || length % align !== 0) return `${field}: offset ${offset} and length ${length} must be multiples of ${align}`;
  const size = r.volumeSizes[v];
  if (offset > size || length > size - offset) return `${field}: bytes ${offset}..${offset + length} lie outside volume ${v} of ${size} bytes`;
  return undefined;
}

export type EpochClass =
  | { readonly kind: 'invalid'; readonly reason: string }
  | { readonly kind: 'stale' | 'current' | 'future'; readonly epoch: number };

/** An epoch field against the receiver's own: epochs start at 1 and stay below 2^53. */
export function classifyEpoch(field: string, raw: unknown, current: number): EpochClass {
  const epoch = safeU64(raw);
  if (epoch === undefined || epoch === 0) return { kind: 'invalid', reason: `${field} ${describe(raw)} is not an epoch (an integer from 1 to 2^53-1)` };
  return { kind: epoch < current ? 'stale' : epoch > current ? 'future' : 'current', epoch };
}

/** The first reason of several checks, in order. */
export function firstRefusal(...reasons: Array<string | undefined>): string | undefined {
  for (const r of reasons) if (r !== undefined) return r;
  return undefined;
}

/** A refusal as the error a unary callback or a stream's 'error' event carries to the client. */
export function refusalStatus(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/** Ends a server stream with a status other than OK (grpc-js turns an 'error' on the call into it). */
export function endStreamWith(call: { emit(event: 'error', err: grpc.ServiceError): boolean }, code: grpc.status, details: string): void {
  call.emit('error', refusalStatus(code, details));
}

/** A value for a refusal sentence: short, and never a whole attacker-sized buffer. */
function describe(raw: unknown): string {
  if (raw === undefined || raw === null) return 'absent';
  if (Buffer.isBuffer(raw)) return `<${raw.length} bytes>`;
  const s = typeof raw === 'string' ? JSON.stringify(raw) : String(raw);
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}
