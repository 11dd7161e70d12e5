import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openFileBlockDevice, VolumeFileTooLargeError } from './file-block-device.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'metro-fbd-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('a new 1 GiB volume is sparse: full apparent size, almost no allocated blocks', async (t) => {
  const path = join(await tempDir(t), 'vol');
  const dev = await openFileBlockDevice({ path, sizeBytes: GiB });
  await dev.write(512 * MiB, Buffer.alloc(4096, 0xab));
  await dev.flush();
  const st = await stat(path);
  t.is(st.size, GiB);
  t.is(dev.sizeBytes, GiB);
  t.is(dev.blockSizeBytes, 512);
  // st.blocks counts 512-byte units; one written 4 KiB page plus metadata stays far below 1 MiB.
  t.true(st.blocks * 512 < MiB, `allocated ${st.blocks * 512} bytes`);
  await dev.close();
});

test('unwritten regions read as zeros, written data reads back at odd offsets', async (t) => {
  const path = join(await tempDir(t), 'vol');
  const dev = await openFileBlockDevice({ path, sizeBytes: 8 * MiB });
  t.deepEqual(await dev.read(3 * MiB + 512, 1536), Buffer.alloc(1536));
  const data = Buffer.from(Array.from({ length: 3 * 512 }, (_, i) => (i * 7 + 3) & 0xff));
  await dev.write(7 * 512, data);
  t.deepEqual(await dev.read(7 * 512, data.length), data);
  // A read straddling written and unwritten blocks.
  const around = await dev.read(6 * 512, 5 * 512);
  t.deepEqual(around.subarray(0, 512), Buffer.alloc(512));
  t.deepEqual(around.subarray(512, 512 + data.length), data);
  t.deepEqual(around.subarray(4 * 512), Buffer.alloc(512));
  await dev.close();
});

test('data survives close and reopen, with FUA and with flush', async (t) => {
  const path = join(await tempDir(t), 'vol');
  const a = await openFileBlockDevice({ path, sizeBytes: 4 * MiB });
  await a.write(0, Buffer.alloc(512, 1), { fua: true });
  await a.write(4 * MiB - 4096, Buffer.alloc(4096, 2));
  await a.flush();
  await a.close();
  const b = await openFileBlockDevice({ path, sizeBytes: 4 * MiB });
  t.deepEqual(await b.read(0, 512), Buffer.alloc(512, 1));
  t.deepEqual(await b.read(4 * MiB - 4096, 4096), Buffer.alloc(4096, 2));
  await b.close();
});

test('many concurrent writes and reads land at their own offsets', async (t) => {
  const path = join(await tempDir(t), 'vol');
  const dev = await openFileBlockDevice({ path, sizeBytes: 4 * MiB });
  const n = 64;
  await Promise.all(Array.from({ length: n }, (_, i) => dev.write(i * 4096, Buffer.alloc(4096, i + 1))));
  const reads = await Promise.all(Array.from({ length: n }, (_, i) => dev.read(i * 4096, 4096)));
  reads.forEach((buf, i) => t.deepEqual(buf, Buffer.alloc(4096, i + 1), `block ${i}`));
  await dev.close();
});

test('an enlarged volume keeps its data and grows sparsely; a shrunk one is refused', async (t) => {
  const path = join(await tempDir(t), 'vol');
  const a = await openFileBlockDevice({ path, sizeBytes: MiB });
  await a.write(MiB - 512, Buffer.alloc(512, 9));
  await a.close();
  const b = await openFileBlockDevice({ path, sizeBytes: 2 * MiB });
  t.is((await stat(path)).size, 2 * MiB);
  t.deepEqual(await b.read(MiB - 512, 1024), Buffer.concat([Buffer.alloc(512, 9), Buffer.alloc(512)]));
  await b.close();
  await t.throwsAsync(openFileBlockDevice({ path, sizeBytes: MiB }), { instanceOf: VolumeFileTooLargeError });
});

test('an existing shorter file (truncated by hand) reads zeros past its old end', async (t) => {
  const path = join(await tempDir(t), 'vol');
  await writeFile(path, Buffer.alloc(1000, 5));
  const dev = await openFileBlockDevice({ path, sizeBytes: 4096 });
  const buf = await dev.read(0, 4096);
  t.deepEqual(buf.subarray(0, 1000), Buffer.alloc(1000, 5));
  t.deepEqual(buf.subarray(1000), Buffer.alloc(3096));
  await dev.close();
});

test('I/O outside the volume is a bug and throws', async (t) => {
  const path = join(await tempDir(t), 'vol');
  const dev = await openFileBlockDevice({ path, sizeBytes: MiB });
  await t.throwsAsync(dev.read(MiB - 512, 1024));
  await t.throwsAsync(dev.write(-512, Buffer.alloc(512)));
  await dev.close();
});

test('deallocate: the range reads zeros, a large range gives its space back, neighbours keep their data', async (t) => {
  const path = join(await tempDir(t), 'vol');
  const dev = await openFileBlockDevice({ path, sizeBytes: 8 * MiB });
  const data = Buffer.alloc(8 * MiB, 0x5c);
  await dev.write(0, data);
  await dev.flush();
  const before = (await stat(path)).blocks * 512;
  await dev.deallocate(512, 4 * MiB); // unaligned at both ends
  await dev.deallocate(6 * MiB + 100 * 512, 3 * 512); // small: written with zeros
  t.deepEqual(await dev.read(512, 4 * MiB), Buffer.alloc(4 * MiB));
  t.deepEqual(await dev.read(6 * MiB + 100 * 512, 3 * 512), Buffer.alloc(3 * 512));
  t.deepEqual(await dev.read(0, 512), Buffer.alloc(512, 0x5c));
  t.deepEqual(await dev.read(4 * MiB + 512, 4096), Buffer.alloc(4096, 0x5c));
  const after = (await stat(path)).blocks * 512;
  t.true(after <= before - 4 * MiB + 8192, `allocated ${before} -> ${after} bytes`);
  t.is((await stat(path)).size, 8 * MiB, 'the file keeps its size');
  await dev.close();
});

test('writev stores its parts back to back, also more parts than one pwritev(2) takes, and with FUA', async (t) => {
  const path = join(await tempDir(t), 'vol');
  const dev = await openFileBlockDevice({ path, sizeBytes: 8 * MiB });
  const parts = Array.from({ length: 2500 }, (_, i) => Buffer.alloc(1 + (i % 7) * 100, i & 0xff));
  const whole = Buffer.concat(parts);
  await dev.writev(3 * 512, parts);
  t.deepEqual(await dev.read(3 * 512, whole.length), whole);
  await dev.writev(MiB, [Buffer.alloc(512, 1), Buffer.alloc(1024, 2)], { fua: true });
  t.deepEqual(await dev.read(MiB, 1536), Buffer.concat([Buffer.alloc(512, 1), Buffer.alloc(1024, 2)]));
  await t.throwsAsync(dev.writev(8 * MiB - 512, [Buffer.alloc(512), Buffer.alloc(1)]));
  await dev.close();
});

test('small whole-page writes run inline and read back; partial pages, FUA and large writes go through the pool', async (t) => {
  const path = join(await tempDir(t), 'vol');
  const dev = await openFileBlockDevice({ path, sizeBytes: 8 * MiB });
  t.teardown(() => dev.close());
  const page = Buffer.alloc(4096, 0x5a);
  await dev.write(8192, page);
  t.is(dev.inlineStats.writes, 1);
  t.deepEqual(await dev.read(8192, 4096), page);
  await dev.writev(16384, [page.subarray(0, 1000), page.subarray(1000)]);
  t.is(dev.inlineStats.writes, 2, 'pieces of one page are written inline');
  t.deepEqual(await dev.read(16384, 4096), page);
  await dev.write(512, Buffer.alloc(4096, 1)); // not page aligned
  await dev.write(4096 * 10, page, { fua: true }); // FUA waits for fdatasync: never inline
  await dev.write(MiB, Buffer.alloc(MiB, 2)); // above the size limit
  t.is(dev.inlineStats.writes, 2);
  t.deepEqual(await dev.read(512, 4096), Buffer.alloc(4096, 1));
  t.deepEqual(await dev.read(MiB, MiB), Buffer.alloc(MiB, 2));
});

test('an inline writev of more parts than one pwritev(2) takes writes the rest after it, back to back', async (t) => {
  const path = join(await tempDir(t), 'vol');
  const dev = await openFileBlockDevice({ path, sizeBytes: 8 * MiB });
  t.teardown(() => dev.close());
  const parts = Array.from({ length: 2048 }, (_, i) => Buffer.alloc(32, i & 0xff)); // 64 KiB, whole pages
  await dev.writev(65536, parts);
  t.is(dev.inlineStats.writes, 1);
  t.deepEqual(await dev.read(65536, 65536), Buffer.concat(parts));
});

test('an inline write that stalls turns inline writes off for the back-off time', async (t) => {
  const path = join(await tempDir(t), 'vol');
  // Every inline write counts as a stall (it took longer than -1 ms).
  const dev = await openFileBlockDevice({ path, sizeBytes: 8 * MiB, inlineWrites: { bytesMax: 65536, stallMs: -1, backoffMs: 60_000 } });
  t.teardown(() => dev.close());
  await dev.write(0, Buffer.alloc(4096, 3));
  await dev.write(4096, Buffer.alloc(4096, 4));
  t.deepEqual(dev.inlineStats, { writes: 1, stalls: 1 });
  t.deepEqual(await dev.read(0, 8192), Buffer.concat([Buffer.alloc(4096, 3), Buffer.alloc(4096, 4)]));
});

test('small reads run inline and return what the pool returns; large ones go through the pool; a stall turns them off', async (t) => {
  const path = join(await tempDir(t), 'vol');
  const dev = await openFileBlockDevice({ path, sizeBytes: 8 * MiB });
  t.teardown(() => dev.close());
  const data = Buffer.alloc(65536);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
  await dev.write(4096 * 3, data);
  // Inline: an unaligned small read, a pooled one, and a hole (zeros).
  t.deepEqual(await dev.read(4096 * 3 + 100, 1000), data.subarray(100, 1100));
  const pooled = await dev.readPooled(4096 * 3, 65536);
  t.deepEqual(Buffer.from(pooled.data), data);
  pooled.release();
  t.deepEqual(await dev.read(4 * MiB, 4096), Buffer.alloc(4096));
  t.is(dev.inlineReadStats.reads, 3);
  // Above the size limit: the pool.
  t.deepEqual((await dev.read(0, 2 * 65536)).subarray(4096 * 3, 4096 * 3 + 65536), data);
  t.is(dev.inlineReadStats.reads, 3);
  await dev.close();

  // Every inline read counts as a stall (it took longer than -1 ms): the next ones use the pool.
  const slow = await openFileBlockDevice({ path, sizeBytes: 8 * MiB, inlineReads: { bytesMax: 65536, stallMs: -1, backoffMs: 60_000 } });
  t.teardown(() => slow.close());
  t.deepEqual(await slow.read(4096 * 3, 4096), data.subarray(0, 4096));
  t.deepEqual(await slow.read(4096 * 4, 4096), data.subarray(4096, 8192));
  t.deepEqual(slow.inlineReadStats, { reads: 1, stalls: 1 });
  // Off: the same answers, through the pool.
  const never = await openFileBlockDevice({ path, sizeBytes: 8 * MiB, inlineReads: false });
  t.deepEqual(await never.read(4096 * 3, 4096), data.subarray(0, 4096));
  t.is(never.inlineReadStats.reads, 0);
  await never.close();
});

/** Bytes of the file in the page cache now (util-linux fincore). */
function cachedBytes(path: string): number {
  return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' }).trim());
}

test('scan() reads what read() reads: holes, data not yet flushed, a last block past a 4 KiB boundary', async (t) => {
  const path = join(await tempDir(t), 'vol');
  const size = 4 * MiB + 512;
  const dev = await openFileBlockDevice({ path, sizeBytes: size });
  const data = Buffer.from(Array.from({ length: 3 * 4096 }, (_, i) => (i * 13 + 5) & 0xff));
  await dev.write(MiB + 4096, data);
  await dev.write(4 * MiB, Buffer.alloc(512, 0x5a));
  for (const [offset, length] of [[0, 4 * MiB], [MiB, 64 * 1024], [4 * MiB, 512], [MiB + 4096, 4096]]) {
    const scanned = await dev.scan(offset, length, (d) => Buffer.from(d));
    t.deepEqual(scanned, await dev.read(offset, length), `${offset}+${length}`);
  }
  t.true(dev.scanStats.direct > 0, `scans on ${path} went through the page cache (${JSON.stringify(dev.scanStats)})`);
  await dev.close();
});

test('a scan of a whole volume leaves it out of the page cache; a read() of it does not', async (t) => {
  const path = join(await tempDir(t), 'vol');
  const size = 64 * MiB;
  const dev = await openFileBlockDevice({ path, sizeBytes: size });
  await dev.write(8 * MiB, Buffer.alloc(MiB, 0x11));
  await dev.flush();
  for (let at = 0; at < size; at += 4 * MiB) await dev.scan(at, 4 * MiB, (d) => d.length);
  const afterScan = cachedBytes(path);
  // At most the written MiB (still cached from the write itself).
  t.true(afterScan <= MiB, `${afterScan} bytes cached after the scan`);
  for (let at = 0; at < size; at += 4 * MiB) await dev.read(at, 4 * MiB);
  const afterRead = cachedBytes(path);
  t.true(afterRead >= size / 2, `${afterRead} bytes cached after reading the volume through the cache`);
  await dev.close();
});
