// The read buffer pool: exact lengths, reuse after release (never before), bounded free memory,
// small and huge requests outside the pool, release idempotent.
import test from 'ava';
import { BufferPool } from './buffer-pool.ts';

const KiB = 1024;

test('a released buffer is handed out again; one still in use never is', (t) => {
  const pool = new BufferPool({ minBytes: 64 * KiB, maxBytes: 1024 * KiB, freeBytesMax: 4 * 1024 * KiB });
  const a = pool.acquire(100 * KiB);
  t.is(a.data.length, 100 * KiB);
  const b = pool.acquire(100 * KiB);
  t.not(a.data.buffer, b.data.buffer, 'two buffers in use are distinct');
  a.release();
  a.release();
  const c = pool.acquire(120 * KiB); // same 128 KiB class
  t.is(c.data.buffer, a.data.buffer);
  t.is(c.data.length, 120 * KiB);
  const d = pool.acquire(120 * KiB);
  t.not(d.data.buffer, a.data.buffer, 'a double release gave the buffer back once');
  t.deepEqual(pool.stats, { reused: 1, allocated: 3, unpooled: 0 });
});

test('requests below minBytes or above maxBytes are plain buffers; free memory stays under its bound', (t) => {
  const pool = new BufferPool({ minBytes: 64 * KiB, maxBytes: 256 * KiB, freeBytesMax: 512 * KiB });
  pool.acquire(4 * KiB).release();
  pool.acquire(1024 * KiB).release();
  t.is(pool.stats.unpooled, 2);
  const held = [1, 2, 3, 4].map(() => pool.acquire(256 * KiB));
  for (const h of held) h.release();
  const again = [1, 2, 3, 4].map(() => pool.acquire(256 * KiB));
  t.is(pool.stats.reused, 2, 'only 512 KiB were kept');
  t.is(new Set(again.map((x) => x.data.buffer)).size, 4);
});
