// Reads for background scans of a volume (resync checksums and data, online verify, divergent
// copies): O_DIRECT into page-aligned memory, so that a scan of a whole volume neither evicts the
// hosts' working set nor leaves the file cached behind it. Cached is costly here: on Linux 6.x a
// sequential read fills the page cache with large folios, and every later 4 KiB write into one of
// them costs tens of microseconds of kernel time (measured on this project's machines: 45 us per
// pwrite(2) after a sequential read of a sparse 1 GiB file, against 5 us without), so one full
// resync made every host write of the group several times slower until the cache was evicted.
// Page-aligned memory without a native module: a WebAssembly.Memory's buffer starts on a page.
import fs from 'node:fs';
import { assert } from '../../common/assert.ts';

/** The largest single scan read (one buffer). */
export const scanBytesMax = 4 * 1024 * 1024;
/** O_DIRECT offsets, lengths and memory are aligned to this (the largest logical block size in use). */
export const directAlignBytes = 4096;
/** Scan buffers held at once, over every volume of the process; more scans wait for one. */
const scanBuffersMax = 4;
const wasmPageBytes = 64 * 1024;

/** The one WebAssembly API used here (TypeScript declares WebAssembly only with the DOM library). */
declare const WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => { readonly buffer: ArrayBuffer } };

const free: Buffer[] = [];
let allocated = 0;
const waiters: Array<(b: Buffer) => void> = [];

async function acquire(): Promise<Buffer> {
  const b = free.pop();
  if (b !== undefined) return b;
  if (allocated < scanBuffersMax) {
    allocated++;
    return Buffer.from(new WebAssembly.Memory({ initial: scanBytesMax / wasmPageBytes, maximum: scanBytesMax / wasmPageBytes }).buffer);
  }
  return new Promise((resolve) => waiters.push(resolve));
}

function release(b: Buffer): void {
  const w = waiters.shift();
  if (w !== undefined) w(b);
  else free.push(b);
}

function preadAsync(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

/** Why a direct read cannot serve this range (the caller reads through the page cache), or undefined. */
export function directReadRefusal(offsetBytes: number, lengthBytes: number): string | undefined {
  if (offsetBytes % directAlignBytes !== 0) return `offset ${offsetBytes} is not ${directAlignBytes}-byte aligned`;
  if (lengthBytes > scanBytesMax) return `length ${lengthBytes} is over ${scanBytesMax}`;
  return undefined;
}

/**
 * Reads [offsetBytes, +lengthBytes) from an O_DIRECT descriptor into a scan buffer and hands the
 * bytes to `use` (valid only while it runs; past the end of the file they read as zeros). The
 * read length is rounded up to directAlignBytes. Errors (EINVAL where the storage wants another
 * alignment) reject; the caller decides whether to read through the page cache instead.
 */
export async function directRead<T>(fd: number, offsetBytes: number, lengthBytes: number, use: (data: Buffer) => T): Promise<T> {
  const refusal = directReadRefusal(offsetBytes, lengthBytes);
  assert(refusal === undefined, `direct read of ${offsetBytes}+${lengthBytes}: ${refusal}`);
  const buf = await acquire();
  try {
    const wanted = Math.ceil(lengthBytes / directAlignBytes) * directAlignBytes;
    // A regular file reads short only at its end (a later read there could be unaligned: none is made).
    const done = await preadAsync(fd, buf, 0, wanted, offsetBytes);
    if (done < lengthBytes) buf.fill(0, done, lengthBytes);
    return use(buf.subarray(0, lengthBytes));
  } finally {
    release(buf);
  }
}
