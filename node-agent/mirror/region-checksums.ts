// Per-region CRC32C checksums of a BlockDevice range: what resync compares and online verify
// reports. Reads at most readBytesMax at a time, so a large range never holds much memory, as
// background scans (past the page cache where the device allows: storage/scan-read.ts).
import { crc32c } from '@node-rs/crc32';
import { assert } from '../../common/assert.ts';
import { scanRead, type BlockDevice } from '../storage/block-device.ts';
import { scanBytesMax } from '../storage/scan-read.ts';

/** CRC32C of each region firstRegion..firstRegion+regionCount-1; the volume's last region may be short. */
export async function regionChecksums(
  dev: BlockDevice,
  regionSizeBytes: number,
  firstRegion: number,
  regionCount: number,
  readBytesMax = scanBytesMax,
): Promise<Uint32Array> {
  assert(regionSizeBytes > 0 && regionSizeBytes % dev.blockSizeBytes === 0, `region size ${regionSizeBytes} must be a multiple of the block size ${dev.blockSizeBytes}`);
  const regionsTotal = Math.ceil(dev.sizeBytes / regionSizeBytes);
  assert(firstRegion >= 0 && regionCount >= 0 && firstRegion + regionCount <= regionsTotal, `regions ${firstRegion}+${regionCount} outside 0..${regionsTotal - 1}`);
  const out = new Uint32Array(regionCount);
  const regionsPerRead = Math.max(1, Math.floor(readBytesMax / regionSizeBytes));
  for (let i = 0; i < regionCount; i += regionsPerRead) {
    const n = Math.min(regionsPerRead, regionCount - i);
    const offset = (firstRegion + i) * regionSizeBytes;
    const length = Math.min(n * regionSizeBytes, dev.sizeBytes - offset);
    await scanRead(dev, offset, length, (data) => {
      for (let k = 0; k < n; k++) {
        const start = k * regionSizeBytes;
        out[i + k] = crc32c(data.subarray(start, Math.min(start + regionSizeBytes, data.length)));
      }
    });
  }
  return out;
}
