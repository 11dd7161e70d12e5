// Region bitmap: the LSB-first layout of the mirror contract, counts, runs, scans and union.
import test from 'ava';
import { RegionBitmap } from './region-bitmap.ts';

test('layout is LSB first, counts follow sets and clears, runs and scans find set regions', (t) => {
  const b = new RegionBitmap(20);
  for (const r of [0, 1, 2, 9, 19]) t.true(b.set(r));
  t.false(b.set(9), 'already set');
  t.deepEqual([...b.bytes], [0b0000_0111, 0b0000_0010, 0b0000_1000]);
  t.is(b.count, 5);
  t.deepEqual(b.runs(), [[0, 3], [9, 1], [19, 1]]);
  t.is(b.nextSet(3), 9);
  t.is(b.nextSet(20), -1);
  t.true(b.clear(1));
  t.deepEqual(b.runs(), [[0, 1], [2, 1], [9, 1], [19, 1]]);
  t.throws(() => b.set(20), { message: /outside/ });
});

test('loading checks the size and the unused tail bits; union of two sites', (t) => {
  t.throws(() => new RegionBitmap(20, new Uint8Array(2)), { message: /bitmap of 2 bytes/ });
  t.throws(() => new RegionBitmap(20, Uint8Array.from([0, 0, 0x10])), { message: /past the last region/ });
  const a = new RegionBitmap(20, Uint8Array.from([1, 0, 0]));
  const b = new RegionBitmap(20, Uint8Array.from([0, 0x80, 0x08]));
  const u = a.union(b);
  t.deepEqual(u.runs(), [[0, 1], [15, 1], [19, 1]]);
  t.is(u.count, 3);
  t.is(a.count, 1, 'operands untouched');
});
