// The storage edge of the SCSI layer: a fixed-size byte-addressed device.
// Offsets and lengths are bytes; callers keep them inside sizeBytes (the SCSI layer checks LBA ranges first).

export interface BlockDevice {
  /** Capacity in bytes; a multiple of blockSizeBytes. */
  readonly sizeBytes: number;
  readonly blockSizeBytes: number;
  read(offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  /** Writes data; with fua the data is durable (fdatasync) before the promise resolves. */
  write(offsetBytes: number, data: Buffer, opts?: { fua?: boolean }): Promise<void>;
  /** Makes every completed write durable (fdatasync). */
  flush(): Promise<void>;
  close(): Promise<void>;
}
