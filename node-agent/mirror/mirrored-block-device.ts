// A BlockDevice at a group's primary: the local volume file plus the group's mirror session. Reads are
// local; writes, FUA writes, flushes and deallocations are executed locally and entered in the mirror
// stream in the same turn, and complete as the group's ack policy says (MirrorSession).
import type { BlockDevice } from '../storage/block-device.ts';
import type { MirrorSession } from './mirror-session.ts';

export class MirroredBlockDevice implements BlockDevice {
  readonly sizeBytes: number;
  readonly blockSizeBytes: number;

  constructor(private readonly local: BlockDevice, private readonly session: MirrorSession, private readonly volume: number) {
    this.sizeBytes = local.sizeBytes;
    this.blockSizeBytes = local.blockSizeBytes;
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.local.read(offsetBytes, lengthBytes);
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

  close(): Promise<void> {
    return this.local.close();
  }
}
