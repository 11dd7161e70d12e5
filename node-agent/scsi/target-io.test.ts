// READ/WRITE 6/10/12/16, VERIFY, SYNCHRONIZE CACHE and READ CAPACITY against a real temp-file volume.
import test from 'ava';
import { be, makeFixture, pattern } from './test-harness.ts';

const MiB = 1024 * 1024;
const GOOD = 0;
const CHECK = 2;

type Size = 6 | 10 | 12 | 16;
function rw(op: 'read' | 'write', size: Size, lba: number, blocks: number, flags = 0): number[] {
  switch (size) {
    case 6:
      return [op === 'read' ? 0x08 : 0x0a, (lba >> 16) & 0x1f, (lba >> 8) & 0xff, lba & 0xff, blocks & 0xff, 0];
    case 10:
      return [op === 'read' ? 0x28 : 0x2a, flags, ...be(lba, 4), 0, ...be(blocks, 2), 0];
    case 12:
      return [op === 'read' ? 0xa8 : 0xaa, flags, ...be(lba, 4), ...be(blocks, 4), 0, 0];
    case 16:
      return [op === 'read' ? 0x88 : 0x8a, flags, ...be(lba, 8), ...be(blocks, 4), 0, 0];
  }
}

const roundTrips: Array<{ size: Size; lba: number; blocks: number }> = [
  { size: 6, lba: 1, blocks: 1 },
  { size: 6, lba: 4093, blocks: 3 },
  { size: 10, lba: 7, blocks: 13 },
  { size: 10, lba: 8191, blocks: 1 },
  { size: 12, lba: 333, blocks: 129 },
  { size: 16, lba: 1001, blocks: 2048 },
  { size: 16, lba: 0, blocks: 8192 }, // the whole 4 MiB volume, 4 MiB per command
];
for (const { size, lba, blocks } of roundTrips) {
  test(`WRITE(${size}) then READ(${size}) of ${blocks} blocks at LBA ${lba} returns the data`, async (t) => {
    const f = await makeFixture(t);
    const data = pattern(blocks * 512, lba + size);
    const w = await f.exec(rw('write', size, lba, blocks), { dataOut: data });
    t.is(w.status, GOOD);
    t.is(w.commandTransferBytes, data.length);
    const r = await f.exec(rw('read', size, lba, blocks));
    t.is(r.status, GOOD);
    t.is(r.commandTransferBytes, data.length);
    t.true(r.dataIn?.equals(data));
    // Neighbours untouched.
    if (lba > 0) t.true((await f.exec(rw('read', 10, lba - 1, 1))).dataIn?.equals(Buffer.alloc(512)));
  });
}

test('READ(6) and WRITE(6) with transfer length 0 move 256 blocks', async (t) => {
  const f = await makeFixture(t);
  const data = pattern(256 * 512, 6);
  const w = await f.exec(rw('write', 6, 100, 0), { dataOut: data });
  t.is(w.status, GOOD);
  t.is(w.commandTransferBytes, 256 * 512);
  const r = await f.exec(rw('read', 6, 100, 0));
  t.true(r.dataIn?.equals(data));
  t.true((await f.exec(rw('read', 10, 100, 256))).dataIn?.equals(data));
});

test('unwritten blocks read as zeros', async (t) => {
  const f = await makeFixture(t);
  const r = await f.exec(rw('read', 16, 5000, 64));
  t.true(r.dataIn?.equals(Buffer.alloc(64 * 512)));
});

test('a 4096-byte-block volume reads and writes in 4 KiB blocks', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: 4 * MiB, blockSizeBytes: 4096 }] });
  const data = pattern(3 * 4096, 9);
  t.is((await f.exec(rw('write', 10, 5, 3), { dataOut: data })).status, GOOD);
  t.true((await f.exec(rw('read', 10, 5, 3))).dataIn?.equals(data));
  const cap = await f.exec([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  t.is(cap.dataIn?.readUInt32BE(0), 1023);
  t.is(cap.dataIn?.readUInt32BE(4), 4096);
  t.is((await f.exec(rw('read', 10, 1023, 2))).asc, 0x21);
});

test('zero-length transfers are GOOD at LBA 0 and at the capacity, out of range past it', async (t) => {
  const f = await makeFixture(t); // 8192 blocks
  for (const size of [10, 12, 16] as const) {
    t.is((await f.exec(rw('read', size, 0, 0))).status, GOOD, `READ(${size}) at 0`);
    t.is((await f.exec(rw('write', size, 0, 0))).status, GOOD, `WRITE(${size}) at 0`);
    t.is((await f.exec(rw('read', size, 8192, 0))).status, GOOD, `READ(${size}) at capacity`);
    t.is((await f.exec(rw('read', size, 8193, 0))).asc, 0x21, `READ(${size}) past capacity`);
    t.is((await f.exec(rw('write', size, 0x80000000, 0))).asc, 0x21, `WRITE(${size}) at 2^31`);
  }
  t.deepEqual(f.devices[0].plainWrites, 0, 'nothing reached the device');
});

const outOfRange: Array<{ name: string; cdb: number[] }> = [
  { name: 'READ(6) last block + 1', cdb: rw('read', 6, 8191, 2) },
  { name: 'READ(10) one past the end', cdb: rw('read', 10, 8192, 1) },
  { name: 'READ(10) LBA 0xFFFFFFFF', cdb: rw('read', 10, 0xffffffff, 1) },
  { name: 'WRITE(12) straddling the end', cdb: rw('write', 12, 8000, 200) },
  { name: 'READ(16) LBA 2^63', cdb: [0x88, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0] },
  { name: 'READ(16) LBA 2^64-1', cdb: [0x88, 0, ...be(0xffffffffffffffffn, 8), 0, 0, 0, 1, 0, 0] },
  { name: 'WRITE(16) huge length', cdb: rw('write', 16, 1, 0xffffffff) },
  { name: 'VERIFY(10) past the end', cdb: [0x2f, 0, ...be(8190, 4), 0, 0, 4, 0] },
  { name: 'VERIFY(16) LBA -1', cdb: [0x8f, 0, ...be(0xffffffffffffffffn, 8), 0, 0, 0, 0, 0, 0] },
  { name: 'SYNCHRONIZE CACHE(10) past the end', cdb: [0x35, 0, ...be(8192, 4), 0, 0, 1, 0] },
  { name: 'SYNCHRONIZE CACHE(16) LBA beyond capacity, 0 blocks', cdb: [0x91, 0, ...be(9000, 8), 0, 0, 0, 0, 0, 0] },
];
for (const c of outOfRange) {
  test(`${c.name} -> ILLEGAL REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE`, async (t) => {
    const f = await makeFixture(t);
    const r = await f.exec(c.cdb, { dataOut: Buffer.alloc(1024) });
    t.is(r.status, CHECK);
    t.deepEqual([r.sk, r.asc, r.ascq], [0x5, 0x21, 0x00]);
    t.is(f.devices[0].plainWrites + f.devices[0].fuaWrites + f.devices[0].reads + f.devices[0].flushes, 0);
  });
}

test('a transfer longer than the Block Limits maximum is refused with the length field pointed at', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: 64 * MiB }] });
  const vpd = await f.exec([0x12, 1, 0xb0, 0, 64, 0]);
  const maxBlocks = vpd.dataIn!.readUInt32BE(8);
  t.is(maxBlocks, 16384);
  t.is((await f.exec(rw('read', 16, 0, maxBlocks))).status, GOOD);
  const r = await f.exec(rw('read', 16, 0, maxBlocks + 1));
  t.deepEqual([r.sk, r.asc], [0x5, 0x24]);
  t.deepEqual(r.field, { inCdb: true, byte: 10 });
});

test('FUA writes reach the device as FUA (fdatasync); plain writes do not', async (t) => {
  const f = await makeFixture(t);
  const dev = f.devices[0];
  await f.exec(rw('write', 10, 0, 1, 0x08), { dataOut: Buffer.alloc(512, 1) });
  await f.exec(rw('write', 12, 1, 1, 0x08), { dataOut: Buffer.alloc(512, 2) });
  await f.exec(rw('write', 16, 2, 1, 0x18), { dataOut: Buffer.alloc(512, 3) }); // DPO + FUA
  t.is(dev.fuaWrites, 3);
  t.is(dev.plainWrites, 0);
  await f.exec(rw('write', 10, 3, 1, 0x10), { dataOut: Buffer.alloc(512, 4) }); // DPO only
  await f.exec(rw('write', 6, 4, 1), { dataOut: Buffer.alloc(512, 5) });
  t.is(dev.fuaWrites, 3);
  t.is(dev.plainWrites, 2);
  t.true((await f.exec(rw('read', 10, 0, 5))).dataIn?.equals(Buffer.concat([1, 2, 3, 4, 5].map((v) => Buffer.alloc(512, v)))));
});

test('READ with DPO, FUA, FUA_NV and RARC set succeeds', async (t) => {
  const f = await makeFixture(t);
  for (const flags of [0x10, 0x08, 0x0a, 0x02, 0x18, 0x04]) {
    t.is((await f.exec(rw('read', 10, 0, 1, flags))).status, GOOD, `flags 0x${flags.toString(16)}`);
  }
});

const protectionFields = [
  { name: 'READ(10) RDPROTECT', cdb: rw('read', 10, 0, 1, 0x20) },
  { name: 'READ(16) RDPROTECT', cdb: rw('read', 16, 0, 1, 0xe0) },
  { name: 'WRITE(10) WRPROTECT', cdb: rw('write', 10, 0, 1, 0x40) },
  { name: 'WRITE(12) WRPROTECT', cdb: rw('write', 12, 0, 1, 0x80) },
  { name: 'VERIFY(10) VRPROTECT', cdb: [0x2f, 0x20, 0, 0, 0, 0, 0, 0, 1, 0] },
];
for (const c of protectionFields) {
  test(`${c.name} (no protection information) -> INVALID FIELD IN CDB at byte 1`, async (t) => {
    const f = await makeFixture(t);
    const r = await f.exec(c.cdb, { dataOut: Buffer.alloc(512, 9) });
    t.deepEqual([r.status, r.sk, r.asc, r.ascq], [CHECK, 0x5, 0x24, 0x00]);
    t.is(r.field?.byte, 1);
    t.true(r.field?.inCdb);
    t.true((await f.exec(rw('read', 10, 0, 1))).dataIn?.equals(Buffer.alloc(512)), 'nothing written');
  });
}

test('Data-Out of fewer whole blocks than the CDB asks: those blocks are written, the rest untouched', async (t) => {
  const f = await makeFixture(t);
  await f.exec(rw('write', 10, 0, 3), { dataOut: Buffer.alloc(1536, 0x61) });
  const none = await f.exec(rw('write', 10, 0, 3), { dataOut: Buffer.alloc(0) });
  t.is(none.status, GOOD);
  t.is(none.commandTransferBytes, 1536, 'the transport reports the missing bytes as overflow');
  t.true((await f.exec(rw('read', 10, 0, 3))).dataIn?.equals(Buffer.alloc(1536, 0x61)));
  const one = await f.exec(rw('write', 16, 0, 3, 0x08), { dataOut: Buffer.alloc(512, 0x62) });
  t.is(one.status, GOOD);
  t.is(one.commandTransferBytes, 1536);
  t.is(f.devices[0].fuaWrites, 1, 'FUA still applies to what was written');
  const back = (await f.exec(rw('read', 10, 0, 3))).dataIn!;
  t.true(back.equals(Buffer.concat([Buffer.alloc(512, 0x62), Buffer.alloc(1024, 0x61)])));
});

test('Data-Out ending inside a block: refused with INVALID FIELD IN COMMAND INFORMATION UNIT, nothing written', async (t) => {
  const f = await makeFixture(t);
  await f.exec(rw('write', 10, 0, 2), { dataOut: Buffer.alloc(1024, 0x61) });
  for (const short of [200, 700]) {
    const r = await f.exec(rw('write', 10, 0, 2), { dataOut: Buffer.alloc(short, 0x62) });
    t.deepEqual([r.status, r.sk, r.asc, r.ascq], [CHECK, 0x5, 0x0e, 0x03], `${short} bytes`);
    t.is(r.commandTransferBytes, 1024);
  }
  t.true((await f.exec(rw('read', 10, 0, 2))).dataIn?.equals(Buffer.alloc(1024, 0x61)));
});

test('Data-Out longer than the CDB asks: only the CDB transfer length is written', async (t) => {
  const f = await makeFixture(t);
  const r = await f.exec(rw('write', 10, 10, 1), { dataOut: Buffer.alloc(10000, 0x62) });
  t.is(r.status, GOOD);
  t.is(r.commandTransferBytes, 512);
  t.true((await f.exec(rw('read', 10, 10, 2))).dataIn?.equals(Buffer.concat([Buffer.alloc(512, 0x62), Buffer.alloc(512)])));
});

test('Data-Out in pieces is written through writev; more than the CDB asks is cut, a partial block refused', async (t) => {
  const f = await makeFixture(t);
  const parts = [Buffer.alloc(700, 0x61), Buffer.alloc(300, 0x62), Buffer.alloc(1560, 0x63)];
  const whole = Buffer.concat(parts);
  const r = await f.exec(rw('write', 10, 20, 5), { dataOutParts: parts });
  t.is(r.status, GOOD);
  t.is(f.devices[0].vectoredWrites, 1);
  t.true((await f.exec(rw('read', 10, 20, 5))).dataIn?.equals(whole));
  // The CDB asks for 2 blocks: 700 + 300 bytes of the first two pieces and 24 of the third, with FUA.
  const cut = await f.exec(rw('write', 10, 40, 2, 0x08), { dataOutParts: parts });
  t.is(cut.status, GOOD);
  t.is(f.devices[0].fuaWrites, 1);
  t.true((await f.exec(rw('read', 10, 40, 3))).dataIn?.equals(Buffer.concat([whole.subarray(0, 1024), Buffer.alloc(512)])));
  const partial = await f.exec(rw('write', 10, 60, 4), { dataOutParts: [Buffer.alloc(700), Buffer.alloc(300)] });
  t.deepEqual([partial.status, partial.sk, partial.asc, partial.ascq], [CHECK, 0x5, 0x0e, 0x03]);
  t.is(f.devices[0].vectoredWrites, 2);
});

test('VERIFY with BYTCHK 0 checks the range only', async (t) => {
  const f = await makeFixture(t);
  const r10 = await f.exec([0x2f, 0, ...be(100, 4), 0, 0, 8, 0]);
  const r16 = await f.exec([0x8f, 0x10, ...be(100, 8), ...be(8, 4), 0, 0]);
  t.is(r10.status, GOOD);
  t.is(r16.status, GOOD);
  t.is(f.devices[0].reads, 0);
});

test('VERIFY with BYTCHK 1: equal data is GOOD, a difference is MISCOMPARE with its offset', async (t) => {
  const f = await makeFixture(t);
  const data = pattern(4 * 512, 3);
  await f.exec(rw('write', 10, 50, 4), { dataOut: data });
  t.is((await f.exec([0x2f, 0x02, ...be(50, 4), 0, 0, 4, 0], { dataOut: data })).status, GOOD);
  const other = Buffer.from(data);
  other[1234] ^= 0xff;
  const r = await f.exec([0x8f, 0x02, ...be(50, 8), ...be(4, 4), 0, 0], { dataOut: other });
  t.deepEqual([r.status, r.sk, r.asc, r.ascq], [CHECK, 0xe, 0x1d, 0x00]);
  t.is(r.info, 1234);
  t.is(r.commandTransferBytes, 2048);
});

test('VERIFY with BYTCHK 3 compares one block against every block in the range', async (t) => {
  const f = await makeFixture(t);
  const block = pattern(512, 4);
  await f.exec(rw('write', 10, 20, 3), { dataOut: Buffer.concat([block, block, block]) });
  t.is((await f.exec([0x2f, 0x06, ...be(20, 4), 0, 0, 3, 0], { dataOut: block })).status, GOOD);
  const r = await f.exec([0x2f, 0x06, ...be(19, 4), 0, 0, 3, 0], { dataOut: block });
  t.is(r.sk, 0xe);
  t.is(r.info, 0, 'block 19 (zeros) differs at its first byte');
});

test('VERIFY BYTCHK 2 is reserved; VERIFY of 0 blocks is GOOD', async (t) => {
  const f = await makeFixture(t);
  const r = await f.exec([0x2f, 0x04, 0, 0, 0, 0, 0, 0, 1, 0]);
  t.deepEqual([r.sk, r.asc], [0x5, 0x24]);
  t.deepEqual(r.field, { inCdb: true, byte: 1, bit: 2 });
  t.is((await f.exec([0x2f, 0x02, 0, 0, 0, 0, 0, 0, 0, 0])).status, GOOD);
});

test('SYNCHRONIZE CACHE 10 and 16 flush the volume (fdatasync), IMMED accepted', async (t) => {
  const f = await makeFixture(t);
  t.is((await f.exec([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0])).status, GOOD);
  t.is((await f.exec([0x35, 0x02, ...be(10, 4), 0, 0, 5, 0])).status, GOOD);
  t.is((await f.exec([0x91, 0, ...be(0, 8), ...be(8192, 4), 0, 0])).status, GOOD);
  t.is(f.devices[0].flushes, 3);
});

test('READ CAPACITY(10) and (16) report the last LBA and block size', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: 3 * MiB }] });
  const r10 = await f.exec([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  t.is(r10.status, GOOD);
  t.is(r10.dataIn?.length, 8);
  t.is(r10.dataIn?.readUInt32BE(0), 6143);
  t.is(r10.dataIn?.readUInt32BE(4), 512);
  const r16 = await f.exec([0x9e, 0x10, ...be(0, 8), ...be(32, 4), 0, 0]);
  t.is(r16.dataIn?.length, 32);
  t.is(r16.dataIn?.readBigUInt64BE(0), 6143n);
  t.is(r16.dataIn?.readUInt32BE(8), 512);
  t.is(r16.dataIn?.[13], 0, 'one logical block per physical block (SBC-4 5.20.2; 4 KiB alignment comes from VPD 0xB0)');
  t.is(r16.dataIn![14] & 0xc0, 0xc0, 'LBPME and LBPRZ: thin, deallocated blocks read zeros');
});

test('READ CAPACITY(16) honours its allocation length', async (t) => {
  const f = await makeFixture(t);
  t.is((await f.exec([0x9e, 0x10, ...be(0, 8), ...be(12, 4), 0, 0])).dataIn?.length, 12);
  const none = await f.exec([0x9e, 0x10, ...be(0, 8), ...be(0, 4), 0, 0]);
  t.is(none.status, GOOD);
  t.is(none.dataIn, undefined);
});

test('READ CAPACITY refusals: LBA without PMI, LBA past the end with PMI, unknown SERVICE ACTION IN', async (t) => {
  const f = await makeFixture(t);
  const a = await f.exec([0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
  t.deepEqual([a.sk, a.asc, a.field?.byte], [0x5, 0x24, 2]);
  const b = await f.exec([0x9e, 0x10, ...be(5, 8), ...be(32, 4), 0, 0]);
  t.deepEqual([b.sk, b.asc, b.field?.byte], [0x5, 0x24, 2]);
  t.is((await f.exec([0x25, 0, ...be(100, 4), 0, 0, 1, 0])).status, GOOD, 'PMI with an LBA inside');
  t.is((await f.exec([0x25, 0, ...be(9000, 4), 0, 0, 1, 0])).asc, 0x21);
  const c = await f.exec([0x9e, 0x11, ...be(0, 8), ...be(32, 4), 0, 0]);
  t.deepEqual([c.sk, c.asc, c.field?.byte], [0x5, 0x24, 1]);
});

test('a volume beyond 2^32 blocks reports 0xFFFFFFFF in READ CAPACITY(10) and the truth in (16)', async (t) => {
  const sizeBytes = 2 ** 32 * 512 + MiB; // sparse: costs nothing on disk
  const f = await makeFixture(t, { luns: [{ sizeBytes }] });
  const r10 = await f.exec([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  t.is(r10.dataIn?.readUInt32BE(0), 0xffffffff);
  const r16 = await f.exec([0x9e, 0x10, ...be(0, 8), ...be(32, 4), 0, 0]);
  t.is(r16.dataIn?.readBigUInt64BE(0), BigInt(sizeBytes / 512 - 1));
  // The far end is addressable with 16-byte CDBs only.
  const last = sizeBytes / 512 - 1;
  const data = pattern(512, 77);
  t.is((await f.exec(rw('write', 16, last, 1), { dataOut: data })).status, GOOD);
  t.true((await f.exec(rw('read', 16, last, 1))).dataIn?.equals(data));
  t.is((await f.exec(rw('read', 16, last, 2))).asc, 0x21);
});
