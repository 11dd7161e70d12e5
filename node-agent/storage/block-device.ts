// The storage edge of the SCSI layer: a fixed-size byte-addressed device.
// Offsets and lengths are bytes; callers keep them inside sizeBytes (the SCSI layer checks LBA ranges first).
import { noRelease, type PooledBuffer } from './buffer-pool.ts';

export interface BlockDevice {
  /** Capacity in bytes; a multiple of blockSizeBytes. */
  readonly sizeBytes: number;
  readonly blockSizeBytes: number;
  read(offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  /** Optional: read() into a buffer the caller gives back with release() once done with it. */
  readPooled?(offsetBytes: number, lengthBytes: number): Promise<PooledBuffer>;
  /** Writes data; with fua the data is durable (fdatasync) before the promise resolves. */
  write(offsetBytes: number, data: Buffer, opts?: { fua?: boolean }): Promise<void>;
  /** Optional: writes parts back to back from offsetBytes, as write() would their concatenation,
   *  without joining them first. Devices without it get one joined buffer through write(). */
  writev?(offsetBytes: number, parts: readonly Buffer[], opts?: { fua?: boolean }): Promise<void>;
  /**
   * Optional: a read for a background scan (resync, verify), at most scanBytesMax, that bypasses
   * the page cache where the storage allows (scan-read.ts). The bytes are valid only while `use`
   * runs. Devices without it are read with read().
   */
  scan?<T>(offsetBytes: number, lengthBytes: number, use: (data: Buffer) => T): Promise<T>;
  /** Makes every completed write durable (fdatasync). */
  flush(): Promise<void>;
  /**
   * Optional thin provisioning: afterwards the range reads as zeros, and the space behind it is
   * released where the storage can (SBC-4 4.7.3.4 deallocation with LBPRZ=1). Devices without it
   * get the range written with zeros by the SCSI layer.
   */
  deallocate?(offsetBytes: number, lengthBytes: number): Promise<void>;
  /**
   * Optional: how many bytes from offsetBytes on (at most limitBytes) are known to be mapped,
   * without reading them (written and not deallocated since the device was opened). 0 claims
   * nothing: the caller looks at the data (GET LBA STATUS).
   */
  mappedBytesFrom?(offsetBytes: number, limitBytes: number): number;
  /**
   * Optional: a new capacity (a topology change). Growing extends the device with zeros; shrinking
   * discards the tail. The caller keeps I/O off the range that goes away.
   */
  resize?(sizeBytes: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * This site may not execute I/O for the group now (not its primary, no quorum, or its epoch
 * changed while the command ran). The SCSI layer answers NOT READY, LOGICAL UNIT NOT ACCESSIBLE
 * (SPC-4 table 50: ASYMMETRIC ACCESS STATE TRANSITION or TARGET PORT IN UNAVAILABLE STATE).
 */
export class AccessUnavailable extends Error {
  override name = 'AccessUnavailable';
  constructor(readonly group: string, readonly transitioning: boolean) {
    super(`group ${group} is ${transitioning ? 'changing primary' : 'not served by this site now'}`);
  }
}

/** A read into a pooled buffer where the device offers one; else a plain read with nothing to give back. */
export function readPooled(device: BlockDevice, offsetBytes: number, lengthBytes: number): Promise<PooledBuffer> {
  if (device.readPooled) return device.readPooled(offsetBytes, lengthBytes);
  return device.read(offsetBytes, lengthBytes).then((data) => ({ data, release: noRelease }));
}

/** A background scan's read: through the device's scan() where it has one, else read(). */
export async function scanRead<T>(device: BlockDevice, offsetBytes: number, lengthBytes: number, use: (data: Buffer) => T): Promise<T> {
  if (device.scan) return device.scan(offsetBytes, lengthBytes, use);
  return use(await device.read(offsetBytes, lengthBytes));
}
