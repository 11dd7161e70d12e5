// Region checksums over a real sparse volume file: CRC32C per region, short last region, chunked reads.
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { openFileBlockDevice } from '../storage/file-block-device.ts';
import { regionChecksums } from './region-checksums.ts';
import { compareChecksums } from './resync-plan.ts';

const KiB = 1024;

test('per-region CRC32C of a volume file; the two copies differ exactly where written', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'metro-sums-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const size = 1024 * KiB + 4 * KiB; // 17 regions of 64 KiB, the last 4 KiB
  const a = await openFileBlockDevice({ path: join(dir, 'a'), sizeBytes: size });
  const b = await openFileBlockDevice({ path: join(dir, 'b'), sizeBytes: size });
  t.teardown(async () => { await a.close(); await b.close(); });
  const block = Buffer.alloc(4 * KiB, 0x5a);
  for (const dev of [a, b]) await dev.write(3 * 64 * KiB + 512, block);
  await b.write(7 * 64 * KiB, Buffer.alloc(512, 1));
  await b.write(size - 512, Buffer.alloc(512, 2));
  const sa = await regionChecksums(a, 64 * KiB, 0, 17);
  const sb = await regionChecksums(b, 64 * KiB, 0, 17, 100 * KiB); // odd read size: one region per read
  t.is(sa[0], crc32c(Buffer.alloc(64 * KiB)));
  t.is(sa[16], crc32c(Buffer.alloc(4 * KiB)), 'the short last region');
  const region3 = Buffer.alloc(64 * KiB);
  block.copy(region3, 512);
  t.is(sa[3], crc32c(region3));
  t.deepEqual(compareChecksums(0, sa, sb), [7, 16]);
  t.deepEqual([...(await regionChecksums(b, 64 * KiB, 6, 3))], [sb[6], sb[7], sb[8]]);
  await t.throwsAsync(regionChecksums(a, 64 * KiB, 10, 8), { message: /outside/ });
});
