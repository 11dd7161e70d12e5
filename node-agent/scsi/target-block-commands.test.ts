// COMPARE AND WRITE, ORWRITE, WRITE SAME, UNMAP, GET LBA STATUS, WRITE AND VERIFY, VERIFY(12),
// PRE-FETCH, START STOP UNIT, PREVENT ALLOW, READ DEFECT DATA and RESERVE/RELEASE against real
// temp-file volumes, asserting what a host would observe.
import test from 'ava';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { be, makeFixture, nexus, pattern } from './test-harness.ts';

const MiB = 1024 * 1024;
const GOOD = 0;
const CHECK = 2;
const CONDITION_MET = 4;
const CONFLICT = 0x18;

const write16 = (lba: number, blocks: number) => [0x8a, 0, ...be(lba, 8), ...be(blocks, 4), 0, 0];
const read16 = (lba: number, blocks: number) => [0x88, 0, ...be(lba, 8), ...be(blocks, 4), 0, 0];
const caw = (lba: number, blocks: number, flags = 0) => [0x89, flags, ...be(lba, 8), 0, 0, 0, blocks, 0, 0];
const ws10 = (lba: number, blocks: number, flags = 0) => [0x41, flags, ...be(lba, 4), 0, ...be(blocks, 2), 0];
const ws16 = (lba: number, blocks: number, flags = 0) => [0x93, flags, ...be(lba, 8), ...be(blocks, 4), 0, 0];
const getLbaStatus = (lba: number, alloc = 4096) => [0x9e, 0x12, ...be(lba, 8), ...be(alloc, 4), 0, 0];
const writeAtomic = (lba: number, blocks: number, flags = 0, boundary = 0) => [0x9c, flags, ...be(lba, 8), ...be(boundary, 2), ...be(blocks, 2), 0, 0];
const unmapCdb = (listBytes: number) => [0x42, 0, 0, 0, 0, 0, 0, ...be(listBytes, 2), 0];

function unmapList(extents: Array<[number, number]>, tweak?: (b: Buffer) => void): Buffer {
  const b = Buffer.alloc(8 + 16 * extents.length);
  b.writeUInt16BE(b.length - 2, 0);
  b.writeUInt16BE(16 * extents.length, 2);
  extents.forEach(([lba, n], i) => {
    b.writeBigUInt64BE(BigInt(lba), 8 + 16 * i);
    b.writeUInt32BE(n, 16 + 16 * i);
  });
  tweak?.(b);
  return b;
}

test('COMPARE AND WRITE writes when the verify data matches', async (t) => {
  const f = await makeFixture(t);
  const old = pattern(4 * 512, 1);
  const next = pattern(4 * 512, 2);
  await f.exec(write16(100, 4), { dataOut: old });
  const r = await f.exec(caw(100, 4), { dataOut: Buffer.concat([old, next]) });
  t.is(r.status, GOOD);
  t.true((await f.exec(read16(100, 4))).dataIn?.equals(next));
});

for (const offset of [0, 1, 511, 512, 2047]) {
  test(`COMPARE AND WRITE miscompare at byte ${offset}: MISCOMPARE with the offset, nothing written`, async (t) => {
    const f = await makeFixture(t);
    const old = pattern(4 * 512, 3);
    await f.exec(write16(8, 4), { dataOut: old });
    const verify = Buffer.from(old);
    verify[offset] ^= 0xff;
    const r = await f.exec(caw(8, 4), { dataOut: Buffer.concat([verify, pattern(4 * 512, 4)]) });
    t.is(r.status, CHECK);
    t.deepEqual([r.sk, r.asc, r.ascq, r.info], [0x0e, 0x1d, 0x00, offset]);
    t.true((await f.exec(read16(8, 4))).dataIn?.equals(old));
  });
}

const cawRefusals: Array<{ name: string; cdb: number[]; dataBytes: number; expect: [number, number] }> = [
  { name: 'Data-Out shorter than 2 x NUMBER OF LOGICAL BLOCKS', cdb: caw(0, 2), dataBytes: 2 * 512, expect: [0x05, 0x24] },
  { name: 'Data-Out longer than 2 x NUMBER OF LOGICAL BLOCKS', cdb: caw(0, 1), dataBytes: 4 * 512, expect: [0x05, 0x24] },
  { name: 'NUMBER OF LOGICAL BLOCKS 0 with data', cdb: caw(0, 0), dataBytes: 512, expect: [0x05, 0x24] },
  { name: 'past the end', cdb: caw(8191, 2), dataBytes: 4 * 512, expect: [0x05, 0x21] },
  { name: 'WRPROTECT set', cdb: caw(0, 1, 0x20), dataBytes: 2 * 512, expect: [0x05, 0x24] },
];
for (const c of cawRefusals) {
  test(`COMPARE AND WRITE ${c.name} is refused and writes nothing`, async (t) => {
    const f = await makeFixture(t);
    const r = await f.exec(c.cdb, { dataOut: Buffer.alloc(c.dataBytes, 0) });
    t.is(r.status, CHECK);
    t.deepEqual([r.sk, r.asc], c.expect);
    t.is(f.devices[0].plainWrites + f.devices[0].fuaWrites, 0);
  });
}

test('COMPARE AND WRITE is atomic: concurrent overlapping WRITEs never land between its compare and its write', async (t) => {
  const f = await makeFixture(t);
  const blocks = 8;
  const a = Buffer.alloc(blocks * 512, 0xaa);
  await f.exec(write16(0, blocks), { dataOut: a });
  // Alternate C&W (A -> B, then B -> A) with plain WRITEs of A racing them. Without atomicity a
  // WRITE landing between compare and write is lost or leaves a mixed range.
  const b = Buffer.alloc(blocks * 512, 0xbb);
  let cur = a;
  const ops: Array<Promise<unknown>> = [];
  let good = 0;
  for (let i = 0; i < 200; i++) {
    const from = cur;
    const to = cur === a ? b : a;
    ops.push(
      f.exec(caw(0, blocks), { dataOut: Buffer.concat([from, to]) }).then((r) => {
        if (r.status === GOOD) good++;
      }),
    );
    ops.push(f.exec(write16(0, blocks), { dataOut: i % 2 ? a : b }));
    cur = to;
  }
  await Promise.all(ops);
  const final = (await f.exec(read16(0, blocks))).dataIn!;
  t.true(final.equals(a) || final.equals(b), 'the range holds one whole pattern');
  t.true(good > 0);
});

test('COMPARE AND WRITE waits for an earlier overlapping WRITE and holds back a later READ', async (t) => {
  const f = await makeFixture(t);
  const a = Buffer.alloc(512, 1);
  const b = Buffer.alloc(512, 2);
  const c = Buffer.alloc(512, 3);
  const w = f.exec(write16(5, 1), { dataOut: a });
  const cw = f.exec(caw(5, 1), { dataOut: Buffer.concat([a, b]) });
  const r = f.exec(read16(5, 1));
  const cw2 = f.exec(caw(5, 1), { dataOut: Buffer.concat([b, c]) });
  t.is((await w).status, GOOD);
  t.is((await cw).status, GOOD, 'saw the earlier WRITE');
  t.true((await r).dataIn?.equals(b), 'the READ ran after the first C&W and before the second');
  t.is((await cw2).status, GOOD);
});

test('WRITE ATOMIC(16) writes the range, with DPO and FUA; 0 blocks is GOOD and writes nothing', async (t) => {
  const f = await makeFixture(t);
  const data = pattern(16 * 512, 7);
  t.is((await f.exec(writeAtomic(40, 16), { dataOut: data })).status, GOOD);
  t.true((await f.exec(read16(40, 16))).dataIn?.equals(data));
  const fuaBefore = f.devices[0].fuaWrites;
  t.is((await f.exec(writeAtomic(40, 16, 0x18), { dataOut: data })).status, GOOD, 'DPO and FUA');
  t.is(f.devices[0].fuaWrites, fuaBefore + 1, 'FUA reaches the device');
  const writes = f.devices[0].plainWrites + f.devices[0].fuaWrites;
  t.is((await f.exec(writeAtomic(0, 0))).status, GOOD);
  t.is(f.devices[0].plainWrites + f.devices[0].fuaWrites, writes);
});

test('WRITE ATOMIC(16) refuses: past the end, beyond the maximum atomic length, a boundary, WRPROTECT, a short Data-Out', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: 4 * MiB }] });
  const last = 4 * MiB / 512;
  const bl = (await f.exec([0x12, 1, 0xb0, 0, 64, 0])).dataIn!;
  const atomicMax = bl.readUInt32BE(44);
  t.true(atomicMax > 0 && atomicMax <= bl.readUInt32BE(8), 'within MAXIMUM TRANSFER LENGTH');
  const refused = async (cdb: number[], dataOut?: Buffer) => {
    const r = await f.exec(cdb, { dataOut });
    return [r.status, r.sk, r.asc, r.field?.byte];
  };
  t.deepEqual((await refused(writeAtomic(last - 1, 2), pattern(1024, 1))).slice(0, 3), [CHECK, 0x5, 0x21]);
  t.deepEqual((await refused(writeAtomic(last + 1, 0))).slice(0, 3), [CHECK, 0x5, 0x21], '0 blocks past the end');
  t.deepEqual(await refused(writeAtomic(0, atomicMax + 1), Buffer.alloc((atomicMax + 1) * 512)), [CHECK, 0x5, 0x24, 12]);
  t.deepEqual(await refused(writeAtomic(0, 1, 0, 1), Buffer.alloc(512)), [CHECK, 0x5, 0x24, 11], 'ATOMIC BOUNDARY unsupported');
  t.deepEqual(await refused(writeAtomic(0, 1, 0x20), Buffer.alloc(512)), [CHECK, 0x5, 0x24, 1], 'WRPROTECT');
  const before = (await f.exec(read16(0, 2))).dataIn!;
  t.deepEqual((await refused(writeAtomic(0, 2), Buffer.alloc(512, 9))).slice(0, 2), [CHECK, 0x5], 'short Data-Out');
  t.true((await f.exec(read16(0, 2))).dataIn!.equals(before), 'nothing of it was written');
  t.is((await f.exec(writeAtomic(0, atomicMax), { dataOut: Buffer.alloc(atomicMax * 512, 3) })).status, GOOD);
});

test('WRITE ATOMIC(16) is atomic: a READ racing it sees all old or all new blocks', async (t) => {
  const f = await makeFixture(t);
  const blocks = 64;
  const a = Buffer.alloc(blocks * 512, 0xaa);
  const b = Buffer.alloc(blocks * 512, 0xbb);
  await f.exec(write16(0, blocks), { dataOut: a });
  const ops: Array<Promise<unknown>> = [];
  const seen: Buffer[] = [];
  for (let i = 0; i < 100; i++) {
    ops.push(f.exec(writeAtomic(0, blocks), { dataOut: i % 2 ? a : b }));
    ops.push(f.exec(read16(0, blocks)).then((r) => void seen.push(r.dataIn!)));
  }
  await Promise.all(ops);
  t.true(seen.every((d) => d.equals(a) || d.equals(b)), 'no READ saw a mix');
});

test('ORWRITE ORs the Data-Out into the stored blocks', async (t) => {
  const f = await makeFixture(t);
  await f.exec(write16(3, 2), { dataOut: Buffer.alloc(1024, 0x0f) });
  const r = await f.exec([0x8b, 0, ...be(3, 8), ...be(2, 4), 0, 0], { dataOut: Buffer.alloc(1024, 0xa0) });
  t.is(r.status, GOOD);
  t.true((await f.exec(read16(3, 2))).dataIn?.equals(Buffer.alloc(1024, 0xaf)));
});

test('WRITE SAME(10) and (16) repeat one block over the range', async (t) => {
  const f = await makeFixture(t);
  const block = pattern(512, 7);
  t.is((await f.exec(ws10(10, 300), { dataOut: block })).status, GOOD);
  const back = (await f.exec(read16(9, 302))).dataIn!;
  t.true(back.subarray(0, 512).equals(Buffer.alloc(512)));
  for (let i = 1; i <= 300; i++) t.true(back.subarray(i * 512, (i + 1) * 512).equals(block), `block ${i}`);
  t.true(back.subarray(301 * 512).equals(Buffer.alloc(512)));
  t.is((await f.exec(ws16(4000, 3000), { dataOut: block })).status, GOOD);
  t.true((await f.exec(read16(6999, 1))).dataIn?.equals(block));
});

test('WRITE SAME with length 0 runs to the last LBA; past the end is out of range', async (t) => {
  const f = await makeFixture(t); // 8192 blocks, within MAXIMUM WRITE SAME LENGTH
  const block = Buffer.alloc(512, 0x5a);
  t.is((await f.exec(ws16(8000, 0), { dataOut: block })).status, GOOD);
  t.true((await f.exec(read16(8000, 192))).dataIn?.equals(Buffer.alloc(192 * 512, 0x5a)));
  t.is((await f.exec(ws10(8192, 0), { dataOut: block })).status, GOOD, 'nothing to write at the capacity');
  t.is((await f.exec(ws10(8193, 0), { dataOut: block })).asc, 0x21);
  t.is((await f.exec(ws16(8191, 2), { dataOut: block })).asc, 0x21);
});

test('WRITE SAME longer than MAXIMUM WRITE SAME LENGTH is refused', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: 64 * MiB }] });
  const vpd = (await f.exec([0x12, 1, 0xb0, 0, 64, 0])).dataIn!;
  const max = Number(vpd.readBigUInt64BE(36));
  t.is(max, 16384);
  const r = await f.exec(ws16(0, max + 1), { dataOut: Buffer.alloc(512) });
  t.deepEqual([r.sk, r.asc, r.field?.byte], [0x05, 0x24, 10]);
  t.deepEqual((await f.exec(ws16(0, 0), { dataOut: Buffer.alloc(512) })).asc, 0x24, 'length 0 means the whole 128 Ki blocks');
  t.is((await f.exec(ws16(131072 - max, 0), { dataOut: Buffer.alloc(512) })).status, GOOD, 'length 0 at the maximum from the end');
});

const wsRefusals: Array<{ name: string; cdb: number[]; dataBytes: number; expect: [number, number] }> = [
  // Both sizes, both CDBs: libiscsi's WriteSame*.InvalidDataOutSize run only when LBPPB >= 2.
  { name: 'half a block of Data-Out', cdb: ws10(0, 1, 0x08), dataBytes: 256, expect: [0x05, 0x0e] },
  { name: 'two blocks of Data-Out', cdb: ws16(0, 1, 0x08), dataBytes: 1024, expect: [0x05, 0x0e] },
  { name: 'half a block of Data-Out (16)', cdb: ws16(0, 1, 0x08), dataBytes: 256, expect: [0x05, 0x0e] },
  { name: 'two blocks of Data-Out (10)', cdb: ws10(0, 1, 0x08), dataBytes: 1024, expect: [0x05, 0x0e] },
  { name: 'ANCHOR (ANC_SUP is 0)', cdb: ws10(0, 1, 0x18), dataBytes: 512, expect: [0x05, 0x24] },
  { name: 'WRPROTECT', cdb: ws16(0, 1, 0x20), dataBytes: 512, expect: [0x05, 0x24] },
  { name: 'NDOB with a Data-Out block', cdb: ws16(0, 1, 0x09), dataBytes: 512, expect: [0x05, 0x0e] },
];
for (const c of wsRefusals) {
  test(`WRITE SAME with ${c.name} is refused`, async (t) => {
    const f = await makeFixture(t);
    const r = await f.exec(c.cdb, { dataOut: Buffer.alloc(c.dataBytes, 1) });
    t.deepEqual([r.status, r.sk, r.asc], [CHECK, ...c.expect]);
    t.is(f.devices[0].plainWrites, 0);
  });
}

async function allocatedBytes(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

test('UNMAP: the ranges read zeros, the volume file gives back its space, the rest is untouched', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: 16 * MiB }] });
  const file = join(f.dir, '1-vol0');
  const data = pattern(8 * MiB, 9);
  for (let at = 0; at < data.length; at += MiB) await f.exec(write16(at / 512, 2048), { dataOut: data.subarray(at, at + MiB) });
  await f.devices[0].flush();
  const before = await allocatedBytes(file);
  t.true(before >= 8 * MiB);
  // 6 MiB from LBA 1000 (unaligned start), plus a small one that is written with zeros.
  const list = unmapList([[1000, 12288], [15000, 3]]);
  const r = await f.exec(unmapCdb(list.length), { dataOut: list });
  t.is(r.status, GOOD);
  t.true((await f.exec(read16(1000, 12288))).dataIn?.equals(Buffer.alloc(12288 * 512)));
  t.true((await f.exec(read16(999, 1))).dataIn?.equals(data.subarray(999 * 512, 1000 * 512)));
  t.true((await f.exec(read16(13288, 100))).dataIn?.equals(data.subarray(13288 * 512, 13388 * 512)));
  const after = await allocatedBytes(file);
  t.true(after <= before - 5 * MiB, `allocated ${before} -> ${after} bytes`);
});

test('WRITE SAME with UNMAP and a zero block deallocates; GET LBA STATUS reports it', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: 16 * MiB }] });
  const file = join(f.dir, '1-vol0');
  await f.exec(write16(0, 8192), { dataOut: pattern(4 * MiB, 11) });
  await f.devices[0].flush();
  const before = await allocatedBytes(file);
  t.is((await f.exec(ws16(2048, 4096, 0x08), { dataOut: Buffer.alloc(512) })).status, GOOD);
  t.true((await f.exec(read16(2048, 4096))).dataIn?.equals(Buffer.alloc(4096 * 512)));
  t.true((await allocatedBytes(file)) <= before - MiB);
  const s = (await f.exec(getLbaStatus(2040))).dataIn!;
  const descriptors = (s.readUInt32BE(0) - 4) / 16;
  t.true(descriptors >= 2);
  t.deepEqual([Number(s.readBigUInt64BE(8)), s.readUInt32BE(16), s[20]], [2040, 8, 0], 'mapped up to 2048');
  t.deepEqual([Number(s.readBigUInt64BE(24)), s.readUInt32BE(32), s[36]], [2048, 2040, 1], 'deallocated to the end of the 1 MiB look-ahead');
  const tail = (await f.exec(getLbaStatus(6100))).dataIn!;
  t.deepEqual([Number(tail.readBigUInt64BE(8)), tail.readUInt32BE(16), tail[20]], [6100, 44, 1]);
  t.deepEqual([Number(tail.readBigUInt64BE(24)), tail[36]], [6144, 0], 'mapped again after the range');
});

test('WRITE SAME with UNMAP deallocates whatever the Data-Out block holds', async (t) => {
  const f = await makeFixture(t);
  await f.exec(write16(50, 10), { dataOut: Buffer.alloc(5120, 0x33) });
  t.is((await f.exec(ws10(50, 10, 0x08), { dataOut: Buffer.alloc(512, 0x77) })).status, GOOD);
  t.true((await f.exec(read16(50, 10))).dataIn?.equals(Buffer.alloc(5120)));
  t.is(f.devices[0].deallocations, 1);
});

test('WRITE SAME(16) NDOB writes zeros without a Data-Out buffer', async (t) => {
  const f = await makeFixture(t);
  await f.exec(write16(20, 4), { dataOut: Buffer.alloc(2048, 9) });
  const r = await f.exec(ws16(20, 4, 0x09));
  t.is(r.status, GOOD);
  t.true((await f.exec(read16(20, 4))).dataIn?.equals(Buffer.alloc(2048)));
});

const unmapRefusals: Array<{ name: string; list: Buffer; cdbBytes?: number; expect: [number, number] }> = [
  { name: 'a parameter list shorter than its header', list: Buffer.alloc(6), expect: [0x05, 0x1a] },
  { name: 'fewer Data-Out bytes than PARAMETER LIST LENGTH', list: unmapList([[0, 1]]), cdbBytes: 40, expect: [0x05, 0x1a] },
  { name: 'a descriptor past the end', list: unmapList([[8190, 3]]), expect: [0x05, 0x21] },
  { name: 'a descriptor at LBA 2^64-1', list: unmapList([[0, 1]], (b) => b.writeBigUInt64BE(0xffffffffffffffffn, 8)), expect: [0x05, 0x21] },
  { name: "BLOCK DESCRIPTOR DATA LENGTH beyond the list", list: unmapList([[0, 1]], (b) => b.writeUInt16BE(32, 2)), expect: [0x05, 0x1a] },
  { name: 'UNMAP DATA LENGTH too small for the descriptors', list: unmapList([[0, 1]], (b) => b.writeUInt16BE(6, 0)), expect: [0x05, 0x26] },
  { name: 'more descriptors than MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT', list: unmapList(Array.from({ length: 257 }, (_, i) => [i, 1] as [number, number])), expect: [0x05, 0x26] },
];
for (const c of unmapRefusals) {
  test(`UNMAP with ${c.name} is refused and deallocates nothing`, async (t) => {
    const f = await makeFixture(t);
    await f.exec(write16(0, 16), { dataOut: Buffer.alloc(16 * 512, 0x42) });
    const writes = f.devices[0].plainWrites;
    const r = await f.exec(unmapCdb(c.cdbBytes ?? c.list.length), { dataOut: c.list });
    t.deepEqual([r.status, r.sk, r.asc], [CHECK, ...c.expect]);
    t.is(f.devices[0].plainWrites, writes);
    t.true((await f.exec(read16(0, 16))).dataIn?.equals(Buffer.alloc(16 * 512, 0x42)));
  });
}

test('UNMAP with no list, no descriptors or zero-length descriptors is GOOD', async (t) => {
  const f = await makeFixture(t);
  t.is((await f.exec(unmapCdb(0))).status, GOOD);
  const empty = unmapList([]);
  t.is((await f.exec(unmapCdb(empty.length), { dataOut: empty })).status, GOOD);
  const zeros = unmapList([[8192, 0], [5, 0]]);
  t.is((await f.exec(unmapCdb(zeros.length), { dataOut: zeros })).status, GOOD);
});

test('GET LBA STATUS answers for written blocks without reading them, past the 1 MiB look-ahead; a deallocated range is looked at again', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: 16 * MiB }] });
  await f.exec(write16(0, 8192), { dataOut: pattern(4 * MiB, 12) });
  const reads = f.devices[0].reads;
  const s = (await f.exec(getLbaStatus(100, 24))).dataIn!;
  t.deepEqual([Number(s.readBigUInt64BE(8)), s.readUInt32BE(16), s[20]], [100, 8092, 0], 'one mapped run to the end of the written data');
  t.is(f.devices[0].reads, reads, 'no data read for it');
  // UNMAP of 8 blocks in the middle: that range reads zeros, so it is reported deallocated again.
  const list = unmapList([[4096, 8]]);
  t.is((await f.exec(unmapCdb(list.length), { dataOut: list })).status, GOOD);
  const u = (await f.exec(getLbaStatus(4000))).dataIn!;
  t.deepEqual([Number(u.readBigUInt64BE(8)), u.readUInt32BE(16), u[20]], [4000, 96, 0]);
  t.deepEqual([Number(u.readBigUInt64BE(24)), u.readUInt32BE(32), u[36]], [4096, 8, 1]);
  t.deepEqual([Number(u.readBigUInt64BE(40)), u[52]], [4104, 0], 'mapped after the hole');
});

test('GET LBA STATUS scanning unknown data: zero stretches in one run, and a block with data only in its middle is mapped', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: 16 * MiB }] });
  await f.exec(write16(0, 8192), { dataOut: pattern(4 * MiB, 13) });
  const list = unmapList([[4096, 256]]);
  t.is((await f.exec(unmapCdb(list.length), { dataOut: list })).status, GOOD);
  const middle = Buffer.alloc(512);
  middle[200] = 0x99;
  await f.exec(write16(4200, 1), { dataOut: middle });
  const s = (await f.exec(getLbaStatus(4096, 8 + 16 * 8))).dataIn!;
  const runs = Array.from({ length: (s.readUInt32BE(0) - 4) / 16 }, (_, i) => [Number(s.readBigUInt64BE(8 + 16 * i)), s.readUInt32BE(16 + 16 * i), s[20 + 16 * i]]);
  t.deepEqual(runs.slice(0, 3), [[4096, 104, 1], [4200, 1, 0], [4201, 151, 1]]);
  t.deepEqual(runs[3].slice(0, 1).concat(runs[3][2]), [4352, 0], 'mapped again after the hole');
});

test('GET LBA STATUS: the first descriptor starts at the requested LBA; beyond the end is out of range', async (t) => {
  const f = await makeFixture(t);
  const s = (await f.exec(getLbaStatus(8191, 24))).dataIn!;
  t.deepEqual([Number(s.readBigUInt64BE(8)), s.readUInt32BE(16), s[20]], [8191, 1, 1]);
  for (const lba of [8192n, 0x8000000000000000n, 0xffffffffffffffffn]) {
    const r = await f.exec([0x9e, 0x12, ...be(lba, 8), ...be(24, 4), 0, 0]);
    t.deepEqual([r.sk, r.asc], [0x05, 0x21], `LBA ${lba}`);
  }
});

test('thin provisioning is advertised consistently: LBPME/LBPRZ, VPD 0xB2 and 0xB0', async (t) => {
  const f = await makeFixture(t);
  const cap = (await f.exec([0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0])).dataIn!;
  t.is(cap[14] & 0xc0, 0xc0);
  const lbp = (await f.exec([0x12, 1, 0xb2, 0, 64, 0])).dataIn!;
  t.is(lbp[5] & 0xe0, 0xe0, 'LBPU, LBPWS, LBPWS10');
  t.is(lbp[5] & 0x02, 0, 'ANC_SUP 0');
  t.is(lbp[6] & 0x07, 2, 'thin');
  const bl = (await f.exec([0x12, 1, 0xb0, 0, 64, 0])).dataIn!;
  t.is(bl[5], 255, 'MAXIMUM COMPARE AND WRITE LENGTH');
  t.is(bl.readUInt32BE(24), 256, 'MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT');
  t.is(bl.readUInt32BE(28), 8, 'OPTIMAL UNMAP GRANULARITY');
  t.is(bl[4] & 1, 0, 'WSNZ 0');
});

test('WRITE AND VERIFY 10/12/16 write, compare with BYTCHK, and refuse BYTCHK 1xb', async (t) => {
  const f = await makeFixture(t);
  const data = pattern(3 * 512, 12);
  const cdbs = [
    [0x2e, 0x02, ...be(10, 4), 0, ...be(3, 2), 0],
    [0xae, 0x02, ...be(20, 4), ...be(3, 4), 0, 0],
    [0x8e, 0x00, ...be(30, 8), ...be(3, 4), 0, 0],
  ];
  for (const [i, c] of cdbs.entries()) {
    const r = await f.exec(c, { dataOut: data });
    t.is(r.status, GOOD);
    t.is(r.commandTransferBytes, 1536);
    t.true((await f.exec(read16(10 + 10 * i, 3))).dataIn?.equals(data));
  }
  t.is((await f.exec([0x2e, 0x04, ...be(10, 4), 0, ...be(1, 2), 0], { dataOut: data })).asc, 0x24);
  t.is((await f.exec([0x2e, 0, ...be(8192, 4), 0, ...be(0, 2), 0])).status, GOOD, 'zero blocks at the capacity');
  t.is((await f.exec([0x2e, 0, ...be(8193, 4), 0, ...be(0, 2), 0])).asc, 0x21);
});

test('VERIFY(12) compares with BYTCHK and reports the miscompare offset', async (t) => {
  const f = await makeFixture(t);
  const data = pattern(2 * 512, 13);
  await f.exec(write16(40, 2), { dataOut: data });
  t.is((await f.exec([0xaf, 0x02, ...be(40, 4), ...be(2, 4), 0, 0], { dataOut: data })).status, GOOD);
  const bad = Buffer.from(data);
  bad[700] ^= 1;
  const r = await f.exec([0xaf, 0x02, ...be(40, 4), ...be(2, 4), 0, 0], { dataOut: bad });
  t.deepEqual([r.sk, r.asc, r.info], [0x0e, 0x1d, 700]);
  t.is((await f.exec([0xaf, 0, ...be(8192, 4), ...be(1, 4), 0, 0])).asc, 0x21);
});

test('PRE-FETCH 10/16: CONDITION MET when the range fits, out of range past the end', async (t) => {
  const f = await makeFixture(t);
  t.is((await f.exec([0x34, 0, ...be(0, 4), 0, ...be(256, 2), 0])).status, CONDITION_MET);
  t.is((await f.exec([0x90, 0x02, ...be(8191, 8), ...be(1, 4), 0, 0])).status, CONDITION_MET, 'IMMED');
  t.is((await f.exec([0x34, 0, ...be(100, 4), 0, 0, 0, 0])).status, CONDITION_MET, 'length 0: to the end');
  t.is((await f.exec([0x34, 0, ...be(8193, 4), 0, 0, 0, 0])).asc, 0x21);
  t.is((await f.exec([0x90, 0, ...be(0xffffffffffffffffn, 8), 0, 0, 0, 1, 0, 0])).asc, 0x21);
});

test('START STOP UNIT is accepted and the unit stays ready; reserved power conditions are refused', async (t) => {
  const f = await makeFixture(t);
  for (const byte4 of [0x00, 0x01, 0x02, 0x03, 0x10, 0x20, 0x30, 0x70, 0xa0, 0xb0, 0x04]) {
    t.is((await f.exec([0x1b, 0, 0, 0, byte4, 0])).status, GOOD, `byte 4 = 0x${byte4.toString(16)}`);
    t.is((await f.exec([0x00, 0, 0, 0, 0, 0])).status, GOOD);
  }
  t.true(f.devices[0].flushes >= 1, 'a stop flushed the cache');
  const r = await f.exec([0x1b, 0, 0, 0, 0x40, 0]);
  t.deepEqual([r.sk, r.asc, r.field?.byte], [0x05, 0x24, 4]);
  t.is((await f.exec([0x1b, 0, 0, 0x03, 0x20, 0])).asc, 0x24, 'IDLE with modifier 3');
  t.is((await f.exec([0x1b, 0, 0, 0x02, 0x20, 0])).status, GOOD, 'IDLE_C');
});

test('PREVENT ALLOW MEDIUM REMOVAL accepts 00b and 01b, refuses the obsolete values', async (t) => {
  const f = await makeFixture(t);
  t.is((await f.exec([0x1e, 0, 0, 0, 1, 0])).status, GOOD);
  t.is((await f.exec([0x1e, 0, 0, 0, 0, 0])).status, GOOD);
  t.is((await f.exec([0x1e, 0, 0, 0, 2, 0])).asc, 0x24);
});

test('READ DEFECT DATA 10/12 return empty lists in the requested format', async (t) => {
  const f = await makeFixture(t);
  const r10 = await f.exec([0x37, 0, 0x18 | 0x05, 0, 0, 0, 0, 0, 32, 0]);
  t.deepEqual([...r10.dataIn!], [0, 0x1d, 0, 0]);
  const r12 = await f.exec([0xb7, 0x08 | 0x03, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]);
  t.deepEqual([...r12.dataIn!], [0, 0x0b, 0, 0, 0, 0, 0, 0]);
  t.is((await f.exec([0x37, 0, 0x07, 0, 0, 0, 0, 0, 32, 0])).asc, 0x24);
});

test('RESERVE(6)/(10): the holder runs everything; another nexus gets RESERVATION CONFLICT until release or nexus loss', async (t) => {
  const f = await makeFixture(t);
  const other = nexus('iqn.2026-11.org.example:host2');
  f.target.nexusOpened(other);
  await f.exec([0x00], { who: other }); // power-on unit attention
  t.is((await f.exec([0x16, 0, 0, 0, 0, 0])).status, GOOD);
  t.is((await f.exec([0x16, 0, 0, 0, 0, 0])).status, GOOD, 'the holder may reserve again');
  t.is((await f.exec(read16(0, 1))).status, GOOD);
  t.is((await f.exec(read16(0, 1), { who: other })).status, CONFLICT);
  t.is((await f.exec([0x1a, 0, 0x3f, 0, 255, 0], { who: other })).status, CONFLICT, 'MODE SENSE');
  t.is((await f.exec([0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0], { who: other })).status, CONFLICT, 'RESERVE(10)');
  t.is((await f.exec([0x12, 0, 0, 0, 36, 0], { who: other })).status, GOOD, 'INQUIRY is exempt');
  t.is((await f.exec([0x17, 0, 0, 0, 0, 0], { who: other })).status, GOOD, 'RELEASE by a non-holder changes nothing');
  t.is((await f.exec(write16(0, 1), { who: other, dataOut: Buffer.alloc(512) })).status, CONFLICT);
  t.is((await f.exec([0x17, 0, 0, 0, 0, 0])).status, GOOD);
  t.is((await f.exec([0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0], { who: other })).status, GOOD, 'free after RELEASE');
  t.is((await f.exec(read16(0, 1))).status, CONFLICT);
  f.target.nexusClosed(other);
  t.is((await f.exec([0x16, 0, 0, 0, 0, 0])).status, GOOD, 'released when the holder nexus ended');
});

test('a LUN reset releases a RESERVE(6)', async (t) => {
  const f = await makeFixture(t);
  const other = nexus('iqn.2026-11.org.example:host2');
  f.target.nexusOpened(other);
  await f.exec([0x00], { who: other });
  t.is((await f.exec([0x16, 0, 0, 0, 0, 0])).status, GOOD);
  t.is(await f.target.taskManagement({ fn: 'logical-unit-reset', nexus: other, lun: 0 }), 'function-complete');
  await f.exec([0x00], { who: other }); // the reset's unit attention
  t.is((await f.exec([0x16, 0, 0, 0, 0, 0], { who: other })).status, GOOD);
});

test('every new command is listed by REPORT SUPPORTED OPERATION CODES with its usage data', async (t) => {
  const f = await makeFixture(t);
  const expected: Array<[number, number?]> = [
    [0x89], [0x8b], [0x9c], [0x41], [0x93], [0x42], [0x9e, 0x12], [0x2e], [0xae], [0x8e], [0xaf], [0x34], [0x90],
    [0x1b], [0x1e], [0x37], [0xb7], [0x16], [0x17], [0x56], [0x57],
  ];
  for (const [op, sa] of expected) {
    const r = await f.exec([0xa3, 0x0c, sa === undefined ? 1 : 2, op, ...be(sa ?? 0, 2), 0, 0, 1, 0, 0, 0]);
    t.is(r.status, GOOD, `0x${op.toString(16)}`);
    t.is(r.dataIn![1] & 0x07, 3, `0x${op.toString(16)} supported`);
    t.is(r.dataIn![4], op);
  }
});
