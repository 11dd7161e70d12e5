// A BlockDevice at a group's primary: the local volume file plus the group's mirror session. Reads are
// local; writes, FUA writes, flushes and deallocations are executed locally and entered in the mirror
// stream in the same turn, and complete as the group's ack policy says (MirrorSession).
import { readPooled, type BlockDevice } from '../storage/block-device.ts';
import type { MirrorSession } from './mirror-session.ts';
import type { PooledBuffer } from '../storage/buffer-pool.ts';

export class MirroredBlockDevice implements BlockDevice {
  readonly blockSizeBytes: number;

  constructor(private readonly local: BlockDevice, private readonly session: MirrorSession, private readonly volume: number) {
    this.blockSizeBytes = local.blockSizeBytes;
  }

  get sizeBytes(): number {
    return this.local.sizeBytes;
  }

  /** Grows the file before the mirror's structures (writes past the old end come after both);
   *  shrinks the mirror's structures first (nothing past the new end is in flight then). */
  async resize(sizeBytes: number): Promise<void> {
    if (!this.local.resize) throw new Error('the volume cannot be resized');
    if (sizeBytes >= this.local.sizeBytes) {
      await this.local.resize(sizeBytes);
      await this.session.resizeVolume(this.volume, sizeBytes);
    } else {
      await this.session.resizeVolume(this.volume, sizeBytes);
      await this.local.resize(sizeBytes);
    }
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.local.read(offsetBytes, lengthBytes);
  }

  readPooled(offsetBytes: number, lengthBytes: number): Promise<PooledBuffer> {
    return readPooled(this.local, offsetBytes, lengthBytes);
  }

  write(offsetBytes: number, data: Buffer, opts?: { fua?: boolean }): Promise<void> {
    return this.session.write(this.volume, this.local, offsetBytes, data, opts?.fua ?? false);
  }

  flush(): Promise<void> {
    return this.session.flush(this.volume, this.local);
  }

  deallocate(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.session.deallocate(this.volume, this.local, offsetBytes, lengthBytes);
  }

  mappedBytesFrom(offsetBytes: number, limitBytes: number): number {
    return this.local.mappedBytesFrom?.(offsetBytes, limitBytes) ?? 0;
  }

  close(): Promise<void> {
    return this.local.close();
  }
}
