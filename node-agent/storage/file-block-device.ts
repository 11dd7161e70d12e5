// A BlockDevice backed by one sparse file per volume: created with ftruncate on first open (never
// preallocated, so unwritten regions cost no disk and read back as zeros), positional I/O on the
// libuv thread pool so commands run concurrently, fdatasync for flush() and for FUA writes;
// deallocate() punches holes (hole-punch.ts) for large aligned ranges and writes zeros for the rest.
// An AllocationMap records the granules written since open, so mappedBytesFrom() answers without I/O.
// Small whole-page writes without FUA, and small reads, are tried on the calling thread first (inline
// I/O): the same pwrite(2)/pwritev(2)/pread(2), the same completion semantics, without a thread-pool round trip
// per command.
// READ and WRITE call fs.read/fs.write (fs.writev for Data-Out in pieces) on the descriptor: one promise per call and none of the
// FileHandle promise machinery, which costs more than a 4 KiB copy into the page cache.
import { open, type FileHandle } from 'node:fs/promises';
import fs, { constants } from 'node:fs';
import { assert } from '../../common/assert.ts';
import { AllocationMap } from './allocation-map.ts';
import type { BlockDevice } from './block-device.ts';
import { punchHole } from './hole-punch.ts';
import { BufferPool, type PooledBuffer } from './buffer-pool.ts';
import { directRead, directReadRefusal } from './scan-read.ts';

/** One pool for every volume of the process: READ data on its way to the initiators. */
export const readBufferPool = new BufferPool();

export interface FileBlockDeviceOptions {
  path: string;
  sizeBytes: number;
  /** Logical block size; 512 unless given. */
  blockSizeBytes?: number;
  /** Small writes on the calling thread first; inlineWriteDefaults unless given, false for never. */
  inlineWrites?: InlineIoPolicy | false;
  /** Small reads on the calling thread first; inlineReadDefaults unless given, false for never. */
  inlineReads?: InlineIoPolicy | false;
  /** A larger file is cut to sizeBytes (a shrink the admin forced) instead of refused. */
  shrink?: boolean;
}

/** Opening refused: the file exists and is larger than the volume (shrinking would lose data). */
export class VolumeFileTooLargeError extends Error {
  override name = 'VolumeFileTooLargeError';
}

export async function openFileBlockDevice(opts: FileBlockDeviceOptions): Promise<FileBlockDevice> {
  const blockSizeBytes = opts.blockSizeBytes ?? 512;
  assert(Number.isSafeInteger(opts.sizeBytes) && opts.sizeBytes > 0, `volume size ${opts.sizeBytes} must be a positive integer`);
  assert(blockSizeBytes >= 512 && (blockSizeBytes & (blockSizeBytes - 1)) === 0, `block size ${blockSizeBytes} must be a power of two >= 512`);
  assert(opts.sizeBytes % blockSizeBytes === 0, `volume size ${opts.sizeBytes} is not a multiple of the block size ${blockSizeBytes}`);
  const handle = await open(opts.path, constants.O_RDWR | constants.O_CREAT, 0o600);
  try {
    const { size } = await handle.stat();
    if (size > opts.sizeBytes && !opts.shrink) {
      throw new VolumeFileTooLargeError(
        `volume file ${opts.path} holds ${size} bytes, more than the volume's ${opts.sizeBytes}; refusing to shrink it`,
      );
    }
    // Growing (first start, or a volume enlarged in the topology) only extends the sparse tail.
    if (size !== opts.sizeBytes) await handle.truncate(opts.sizeBytes);
  } catch (err) {
    await handle.close();
    throw err;
  }
  return new FileBlockDevice(handle, opts.sizeBytes, blockSizeBytes, opts.path, opts.inlineWrites ?? inlineWriteDefaults, opts.inlineReads ?? inlineReadDefaults);
}

/** Ranges shorter than this are written with zeros: cheaper than spawning a process. */
const punchMinBytes = 256 * 1024;
/** Holes are punched on filesystem-block boundaries; the unaligned head and tail are zero-written. */
const punchAlignBytes = 4096;
const zeroChunkBytes = 1024 * 1024;
const zeros = Buffer.alloc(zeroChunkBytes);
/** AllocationMap granule: the filesystem's usual block, and the Block Limits unmap granularity. */
const mapGranuleBytes = 4096;

/**
 * When I/O runs on the event loop's thread instead of the pool. A whole-page pwrite(2) into the
 * page cache, or a pread(2) the page cache (or a hole) answers, takes microseconds; a pool round
 * trip (queue, wake a thread, signal the loop back) costs several times that in CPU on every
 * command, and on a busy machine the woken thread takes the loop's core first. Only writes of whole
 * pages qualify (a partial page may first have to be read from disk) and never FUA (fdatasync waits
 * for the disk). The disk can still make a call wait (dirty-page throttling, a read the cache does
 * not hold): one that took longer than stallMs turns that kind of inline I/O off for backoffMs, so
 * the loop stalls rarely and briefly. stallMs sits well above what the scheduler alone costs a call
 * on a busy machine (the loop descheduled for a few milliseconds while the initiator and the
 * collector's threads run): on 2 cores a 2 ms limit tripped five to seven times per 120,000 4 KiB
 * writes with no disk wait at all, and each trip sent a second of writes to the pool. Dirty-page
 * throttling sleeps for tens to hundreds of milliseconds, far past 10.
 */
export interface InlineIoPolicy {
  readonly bytesMax: number;
  readonly stallMs: number;
  readonly backoffMs: number;
}
export const inlineWriteDefaults: InlineIoPolicy = { bytesMax: 64 * 1024, stallMs: 10, backoffMs: 1000 };
export const inlineReadDefaults: InlineIoPolicy = { bytesMax: 64 * 1024, stallMs: 10, backoffMs: 1000 };
const pageBytes = 4096;

export class FileBlockDevice implements BlockDevice {
  private closed = false;
  private readonly allocation: AllocationMap;
  /** Inline writes are off until this time (performance.now()) after one that stalled. */
  private inlineOffUntilMs = 0;
  /** Writes done inline and writes that stalled, for tests and logs. */
  readonly inlineStats = { writes: 0, stalls: 0 };
  /** Inline reads are off until this time after one that stalled. */
  private inlineReadsOffUntilMs = 0;
  /** Reads done inline and reads that stalled, for tests and logs. */
  readonly inlineReadStats = { reads: 0, stalls: 0 };
  /** The O_DIRECT descriptor of scans, opened at the first; 'cached' where the storage refuses direct reads. */
  private direct: Promise<number | 'cached'> | undefined;
  private directHandle: FileHandle | undefined;
  /** Scans read directly and through the page cache, for tests and logs. */
  readonly scanStats = { direct: 0, cached: 0 };

  constructor(
    private readonly handle: FileHandle,
    public sizeBytes: number,
    readonly blockSizeBytes: number,
    private readonly path: string,
    private readonly inline: InlineIoPolicy | false,
    private readonly inlineRead: InlineIoPolicy | false,
  ) {
    this.allocation = new AllocationMap(sizeBytes, mapGranuleBytes);
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.checkRange(offsetBytes, lengthBytes);
    return this.readInto(Buffer.allocUnsafe(lengthBytes), offsetBytes);
  }

  async readPooled(offsetBytes: number, lengthBytes: number): Promise<PooledBuffer> {
    this.checkRange(offsetBytes, lengthBytes);
    const p = readBufferPool.acquire(lengthBytes);
    try {
      const read = this.readInto(p.data, offsetBytes);
      if (read instanceof Promise) await read;
    } catch (err) {
      p.release();
      throw err;
    }
    return p;
  }

  async write(offsetBytes: number, data: Buffer, opts?: { fua?: boolean }): Promise<void> {
    this.checkRange(offsetBytes, data.length);
    if (opts?.fua !== true && this.inlineAllowed(offsetBytes, data.length)) {
      this.writeInline(offsetBytes, data);
      return;
    }
    const written = new Promise<void>((resolve, reject) => writeFully(this.handle.fd, data, 0, offsetBytes, () => {
      this.allocation.markMapped(offsetBytes, data.length);
      resolve();
    }, reject));
    return opts?.fua ? written.then(() => this.handle.datasync()) : written;
  }

  /** pwritev(2) of the parts (Data-Out as received from the socket), no joined copy. */
  async writev(offsetBytes: number, parts: readonly Buffer[], opts?: { fua?: boolean }): Promise<void> {
    let total = 0;
    for (const part of parts) total += part.length;
    this.checkRange(offsetBytes, total);
    if (opts?.fua !== true && this.inlineAllowed(offsetBytes, total)) {
      this.writevInline(offsetBytes, parts, total);
      return;
    }
    const written = new Promise<void>((resolve, reject) => writevFully(this.handle.fd, parts, 0, offsetBytes, () => {
      this.allocation.markMapped(offsetBytes, total);
      resolve();
    }, reject));
    return opts?.fua ? written.then(() => this.handle.datasync()) : written;
  }

  /** A background scan's read, past the page cache where the filesystem allows (scan-read.ts). */
  async scan<T>(offsetBytes: number, lengthBytes: number, use: (data: Buffer) => T): Promise<T> {
    this.checkRange(offsetBytes, lengthBytes);
    const fd = directReadRefusal(offsetBytes, lengthBytes) === undefined ? await this.directFd() : 'cached';
    if (fd !== 'cached') {
      try {
        const r = await directRead(fd, offsetBytes, lengthBytes, use);
        this.scanStats.direct++;
        return r;
      } catch (err) {
        // The storage wants another alignment than directAlignBytes: scans go through the cache.
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
        this.direct = Promise.resolve('cached');
      }
    }
    this.scanStats.cached++;
    return use(await this.readInto(Buffer.allocUnsafe(lengthBytes), offsetBytes));
  }

  private directFd(): Promise<number | 'cached'> {
    this.direct ??= open(this.path, constants.O_RDONLY | constants.O_DIRECT).then(
      (h) => {
        this.directHandle = h;
        return h.fd;
      },
      // tmpfs and some network filesystems refuse O_DIRECT (EINVAL): read through the cache there.
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'EINVAL') return 'cached' as const;
        throw err;
      },
    );
    return this.direct;
  }

  private inlineAllowed(offsetBytes: number, lengthBytes: number): boolean {
    const p = this.inline;
    return p !== false && lengthBytes <= p.bytesMax && offsetBytes % pageBytes === 0 && lengthBytes % pageBytes === 0 && performance.now() >= this.inlineOffUntilMs;
  }

  private inlineReadAllowed(lengthBytes: number): boolean {
    const p = this.inlineRead;
    return p !== false && lengthBytes <= p.bytesMax && performance.now() >= this.inlineReadsOffUntilMs;
  }

  /** buf filled from offsetBytes: on this thread when allowed (buf itself, a failure throws), else on the pool. */
  private readInto(buf: Buffer, offsetBytes: number): Buffer | Promise<Buffer> {
    if (this.inlineReadAllowed(buf.length)) return this.readInline(buf, offsetBytes);
    return new Promise((resolve, reject) => readFully(this.handle.fd, buf, 0, offsetBytes, resolve, reject));
  }

  /** pread(2) on this thread until buf is full (zeros past the end of a shorter file); a failure throws. */
  private readInline(buf: Buffer, offsetBytes: number): Buffer {
    const startMs = performance.now();
    let done = 0;
    while (done < buf.length) {
      const n = fs.readSync(this.handle.fd, buf, done, buf.length - done, offsetBytes + done);
      if (n === 0) {
        buf.fill(0, done);
        break;
      }
      done += n;
    }
    const tookMs = performance.now() - startMs;
    this.inlineReadStats.reads++;
    if (this.inlineRead !== false && tookMs > this.inlineRead.stallMs) {
      this.inlineReadStats.stalls++;
      this.inlineReadsOffUntilMs = startMs + tookMs + this.inlineRead.backoffMs;
    }
    return buf;
  }

  /** pwrite(2) on this thread; a failure throws (the caller's promise rejects, as from the pool). */
  private writeInline(offsetBytes: number, data: Buffer): void {
    const startMs = performance.now();
    writeSyncFully(this.handle.fd, data, offsetBytes);
    this.inlineWritten(startMs, offsetBytes, data.length);
  }

  /** pwritev(2) of the parts on this thread, no joined copy; only what a short write leaves (rare) is
   *  joined, and written with pwrite(2). A failure throws, as in writeInline. */
  private writevInline(offsetBytes: number, parts: readonly Buffer[], lengthBytes: number): void {
    const startMs = performance.now();
    const written = fs.writevSync(this.handle.fd, parts.length > iovMax ? parts.slice(0, iovMax) : parts, offsetBytes);
    if (written < lengthBytes) writeSyncFully(this.handle.fd, bytesAfter(parts, written), offsetBytes + written);
    this.inlineWritten(startMs, offsetBytes, lengthBytes);
  }

  /** An inline write that began at startMs is done: one that took over stallMs turns inline writes off for backoffMs. */
  private inlineWritten(startMs: number, offsetBytes: number, lengthBytes: number): void {
    const tookMs = performance.now() - startMs;
    this.inlineStats.writes++;
    if (this.inline !== false && tookMs > this.inline.stallMs) {
      this.inlineStats.stalls++;
      this.inlineOffUntilMs = startMs + tookMs + this.inline.backoffMs;
    }
    this.allocation.markMapped(offsetBytes, lengthBytes);
  }

  /** Bytes from offsetBytes on (at most limitBytes) written since open and not deallocated since:
   *  mapped, without reading them. 0 says nothing (the data may still be mapped). */
  mappedBytesFrom(offsetBytes: number, limitBytes: number): number {
    return this.allocation.mappedBytesFrom(offsetBytes, limitBytes);
  }

  async flush(): Promise<void> {
    assert(!this.closed, 'flush on a closed volume file');
    await this.handle.datasync();
  }

  /** Punches a hole where the range covers whole filesystem blocks and is large; zeros elsewhere. */
  async deallocate(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.checkRange(offsetBytes, lengthBytes);
    // Unknown from now on (before any zeros land, so no answer claims the old data is still there).
    this.allocation.forget(offsetBytes, lengthBytes);
    const end = offsetBytes + lengthBytes;
    const holeStart = Math.ceil(offsetBytes / punchAlignBytes) * punchAlignBytes;
    const holeEnd = Math.floor(end / punchAlignBytes) * punchAlignBytes;
    if (holeEnd - holeStart >= punchMinBytes && (await punchHole(this.path, holeStart, holeEnd - holeStart))) {
      await this.writeZeros(offsetBytes, holeStart);
      await this.writeZeros(holeEnd, end);
      return;
    }
    await this.writeZeros(offsetBytes, end);
  }

  /** Zeros written for a deallocation: the granules stay unknown (not mapped), so the scan of
   *  GET LBA STATUS reports them deallocated. */
  private async writeZeros(fromBytes: number, toBytes: number): Promise<void> {
    for (let at = fromBytes; at < toBytes; at += zeroChunkBytes) {
      const data = zeros.subarray(0, Math.min(zeroChunkBytes, toBytes - at));
      await new Promise<void>((resolve, reject) => writeFully(this.handle.fd, data, 0, at, resolve, reject));
    }
  }

  /** Grows the sparse file (the new tail reads as zeros) or truncates it; the new size is durable on return. */
  async resize(sizeBytes: number): Promise<void> {
    assert(!this.closed, 'resize of a closed volume file');
    assert(Number.isSafeInteger(sizeBytes) && sizeBytes > 0 && sizeBytes % this.blockSizeBytes === 0,
      `volume size ${sizeBytes} must be a positive multiple of the block size ${this.blockSizeBytes}`);
    if (sizeBytes < this.sizeBytes) this.sizeBytes = sizeBytes;
    // The old last granule and anything cut off are unknown again (a regrown tail reads zeros).
    this.allocation.resize(sizeBytes);
    await this.handle.truncate(sizeBytes);
    await this.handle.sync();
    this.sizeBytes = sizeBytes;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.direct?.catch(() => undefined);
    await this.directHandle?.close();
    await this.handle.close();
  }

  private checkRange(offsetBytes: number, lengthBytes: number): void {
    assert(!this.closed, 'I/O on a closed volume file');
    assert(
      offsetBytes >= 0 && lengthBytes >= 0 && offsetBytes + lengthBytes <= this.sizeBytes,
      `I/O [${offsetBytes}, +${lengthBytes}) outside the volume of ${this.sizeBytes} bytes`,
    );
  }
}

/** pread(2) until buf is full from done on; past the end of the file (someone truncated it under
 *  us) the volume reads as zeros. */
function readFully(fd: number, buf: Buffer, done: number, positionBytes: number, resolve: (b: Buffer) => void, reject: (e: Error) => void): void {
  fs.read(fd, buf, done, buf.length - done, positionBytes + done, (err, bytesRead) => {
    if (err) reject(err);
    else if (bytesRead === 0) resolve(buf.fill(0, done));
    else if (done + bytesRead === buf.length) resolve(buf);
    else readFully(fd, buf, done + bytesRead, positionBytes, resolve, reject);
  });
}

/** pwrite(2) until every byte of data from done on is written. */
function writeFully(fd: number, data: Buffer, done: number, positionBytes: number, resolve: () => void, reject: (e: Error) => void): void {
  fs.write(fd, data, done, data.length - done, positionBytes + done, (err, bytesWritten) => {
    if (err) reject(err);
    else if (done + bytesWritten >= data.length) resolve();
    else writeFully(fd, data, done + bytesWritten, positionBytes, resolve, reject);
  });
}

/** pwrite(2) on this thread until every byte of data is written. */
function writeSyncFully(fd: number, data: Buffer, positionBytes: number): void {
  for (let done = 0; done < data.length; ) done += fs.writeSync(fd, data, done, data.length - done, positionBytes + done);
}

/** The bytes of parts after the first skipBytes (fewer than they hold), joined. */
function bytesAfter(parts: readonly Buffer[], skipBytes: number): Buffer {
  let i = 0;
  let skip = skipBytes;
  while (skip >= parts[i].length) skip -= parts[i++].length;
  return Buffer.concat([parts[i].subarray(skip), ...parts.slice(i + 1)]);
}

/** Buffers per pwritev(2) call; Linux's IOV_MAX. */
const iovMax = 1024;

/** pwritev(2) until every part from index `first` on is written; a short write resumes mid-part. */
function writevFully(fd: number, parts: readonly Buffer[], first: number, positionBytes: number, resolve: () => void, reject: (e: Error) => void): void {
  const batch = parts.slice(first, first + iovMax);
  fs.writev(fd, batch, positionBytes, (err, bytesWritten) => {
    if (err) return reject(err);
    let i = 0;
    let left = bytesWritten;
    while (i < batch.length && left >= batch[i].length) left -= batch[i++].length;
    const next = first + i;
    if (next >= parts.length) return resolve();
    const rest = left > 0 ? [parts[next].subarray(left), ...parts.slice(next + 1)] : parts;
    writevFully(fd, rest, left > 0 ? 0 : next, positionBytes + bytesWritten, resolve, reject);
  });
}
