// A BlockDevice backed by one sparse file per volume: created with ftruncate on first open (never
// preallocated, so unwritten regions cost no disk and read back as zeros), positional I/O on the
// libuv thread pool so commands run concurrently, fdatasync for flush() and for FUA writes;
// deallocate() punches holes (hole-punch.ts) for large aligned ranges and writes zeros for the rest.
// READ and WRITE call fs.read/fs.write (fs.writev for Data-Out in pieces) on the descriptor: one promise per call and none of the
// FileHandle promise machinery, which costs more than a 4 KiB copy into the page cache.
import { open, type FileHandle } from 'node:fs/promises';
import fs, { constants } from 'node:fs';
import { assert } from '../../common/assert.ts';
import type { BlockDevice } from './block-device.ts';
import { punchHole } from './hole-punch.ts';

export interface FileBlockDeviceOptions {
  path: string;
  sizeBytes: number;
  /** Logical block size; 512 unless given. */
  blockSizeBytes?: number;
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
    if (size > opts.sizeBytes) {
      throw new VolumeFileTooLargeError(
        `volume file ${opts.path} holds ${size} bytes, more than the volume's ${opts.sizeBytes}; refusing to shrink it`,
      );
    }
    // Growing (first start, or a volume enlarged in the topology) only extends the sparse tail.
    if (size < opts.sizeBytes) await handle.truncate(opts.sizeBytes);
  } catch (err) {
    await handle.close();
    throw err;
  }
  return new FileBlockDevice(handle, opts.sizeBytes, blockSizeBytes, opts.path);
}

/** Ranges shorter than this are written with zeros: cheaper than spawning a process. */
const punchMinBytes = 256 * 1024;
/** Holes are punched on filesystem-block boundaries; the unaligned head and tail are zero-written. */
const punchAlignBytes = 4096;
const zeroChunkBytes = 1024 * 1024;
const zeros = Buffer.alloc(zeroChunkBytes);

export class FileBlockDevice implements BlockDevice {
  private closed = false;

  constructor(
    private readonly handle: FileHandle,
    readonly sizeBytes: number,
    readonly blockSizeBytes: number,
    private readonly path: string,
  ) {}

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.checkRange(offsetBytes, lengthBytes);
    const buf = Buffer.allocUnsafe(lengthBytes);
    return new Promise((resolve, reject) => readFully(this.handle.fd, buf, 0, offsetBytes, resolve, reject));
  }

  async write(offsetBytes: number, data: Buffer, opts?: { fua?: boolean }): Promise<void> {
    this.checkRange(offsetBytes, data.length);
    const written = new Promise<void>((resolve, reject) => writeFully(this.handle.fd, data, 0, offsetBytes, resolve, reject));
    return opts?.fua ? written.then(() => this.handle.datasync()) : written;
  }

  /** pwritev(2) of the parts (Data-Out as received from the socket), no joined copy. */
  async writev(offsetBytes: number, parts: readonly Buffer[], opts?: { fua?: boolean }): Promise<void> {
    let total = 0;
    for (const part of parts) total += part.length;
    this.checkRange(offsetBytes, total);
    const written = new Promise<void>((resolve, reject) => writevFully(this.handle.fd, parts, 0, offsetBytes, resolve, reject));
    return opts?.fua ? written.then(() => this.handle.datasync()) : written;
  }

  async flush(): Promise<void> {
    assert(!this.closed, 'flush on a closed volume file');
    await this.handle.datasync();
  }

  /** Punches a hole where the range covers whole filesystem blocks and is large; zeros elsewhere. */
  async deallocate(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.checkRange(offsetBytes, lengthBytes);
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

  private async writeZeros(fromBytes: number, toBytes: number): Promise<void> {
    for (let at = fromBytes; at < toBytes; at += zeroChunkBytes) {
      await this.write(at, zeros.subarray(0, Math.min(zeroChunkBytes, toBytes - at)));
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
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
