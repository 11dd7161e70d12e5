// The storage edge of the SCSI layer: a fixed-size byte-addressed device.
// Offsets and lengths are bytes; callers keep them inside sizeBytes (the SCSI layer checks LBA ranges first).

export interface BlockDevice {
  /** Capacity in bytes; a multiple of blockSizeBytes. */
  readonly sizeBytes: number;
  readonly blockSizeBytes: number;
  read(offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  /** Writes data; with fua the data is durable (fdatasync) before the promise resolves. */
  write(offsetBytes: number, data: Buffer, opts?: { fua?: boolean }): Promise<void>;
  /** Optional: writes parts back to back from offsetBytes, as write() would their concatenation,
   *  without joining them first. Devices without it get one joined buffer through write(). */
  writev?(offsetBytes: number, parts: readonly Buffer[], opts?: { fua?: boolean }): Promise<void>;
  /** Makes every completed write durable (fdatasync). */
  flush(): Promise<void>;
  /**
   * Optional thin provisioning: afterwards the range reads as zeros, and the space behind it is
   * released where the storage can (SBC-4 4.7.3.4 deallocation with LBPRZ=1). Devices without it
   * get the range written with zeros by the SCSI layer.
   */
  deallocate?(offsetBytes: number, lengthBytes: number): Promise<void>;
  close(): Promise<void>;
}
