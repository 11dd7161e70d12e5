import test from 'ava';
import { AllocationMap } from './allocation-map.ts';

const KiB = 1024;
const GiB = 1024 ** 3;

const cases: Array<{ name: string; size: number; mark: Array<[number, number]>; forget?: Array<[number, number]>; at: number; limit: number; expect: number }> = [
  { name: 'nothing written', size: 64 * KiB, mark: [], at: 0, limit: 64 * KiB, expect: 0 },
  { name: 'one whole granule', size: 64 * KiB, mark: [[4 * KiB, 4 * KiB]], at: 4 * KiB, limit: 64 * KiB, expect: 4 * KiB },
  { name: 'from inside a mapped granule', size: 64 * KiB, mark: [[4 * KiB, 8 * KiB]], at: 5 * KiB, limit: 64 * KiB, expect: 7 * KiB },
  { name: 'a write covering a granule in part maps nothing', size: 64 * KiB, mark: [[4 * KiB + 512, 4 * KiB]], at: 4 * KiB, limit: 64 * KiB, expect: 0 },
  { name: 'partial ends: only the granules covered whole', size: 64 * KiB, mark: [[2 * KiB, 12 * KiB]], at: 4 * KiB, limit: 64 * KiB, expect: 8 * KiB },
  { name: 'cut at the limit', size: 64 * KiB, mark: [[0, 64 * KiB]], at: 0, limit: 10 * KiB, expect: 10 * KiB },
  { name: 'adjacent writes join', size: 64 * KiB, mark: [[0, 8 * KiB], [8 * KiB, 8 * KiB]], at: 0, limit: 64 * KiB, expect: 16 * KiB },
  { name: 'a forgotten range ends the run, even in part of a granule', size: 64 * KiB, mark: [[0, 64 * KiB]], forget: [[20 * KiB + 512, 512]], at: 0, limit: 64 * KiB, expect: 20 * KiB },
  { name: 'the last, short granule counts when the write reaches the end', size: 10 * KiB, mark: [[8 * KiB, 2 * KiB]], at: 8 * KiB, limit: 64 * KiB, expect: 2 * KiB },
  { name: 'more than 32 granules (whole words) and across a bitmap page', size: 2 * GiB, mark: [[GiB - 256 * KiB, 1024 * KiB]], at: GiB - 256 * KiB, limit: GiB, expect: 1024 * KiB },
  { name: 'a run starting mid-word', size: 2 * GiB, mark: [[12 * KiB, 400 * KiB]], at: 12 * KiB, limit: GiB, expect: 400 * KiB },
];

for (const c of cases) {
  test(`allocation map: ${c.name}`, (t) => {
    const m = new AllocationMap(c.size, 4 * KiB);
    for (const [o, n] of c.mark) m.markMapped(o, n);
    for (const [o, n] of c.forget ?? []) m.forget(o, n);
    t.is(m.mappedBytesFrom(c.at, c.limit), c.expect);
  });
}

test('allocation map: forgetting unknown pages of a large volume is cheap and changes nothing', (t) => {
  const m = new AllocationMap(1024 * GiB, 4 * KiB);
  m.markMapped(512 * GiB, 64 * KiB);
  m.forget(0, 1024 * GiB);
  t.is(m.mappedBytesFrom(512 * GiB, GiB), 0);
});

test('allocation map: a shrink forgets the cut tail and the new last granule; a regrown tail is unknown', (t) => {
  const m = new AllocationMap(64 * KiB, 4 * KiB);
  m.markMapped(0, 64 * KiB);
  m.resize(30 * KiB);
  t.is(m.mappedBytesFrom(0, 64 * KiB), 28 * KiB, 'granule 7 (28-32 KiB) is cut short: unknown');
  m.resize(64 * KiB);
  t.is(m.mappedBytesFrom(0, 64 * KiB), 28 * KiB);
  t.is(m.mappedBytesFrom(32 * KiB, 64 * KiB), 0);
});
