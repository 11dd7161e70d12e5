// INQUIRY and VPD pages, REPORT LUNS, MODE SENSE/SELECT, REQUEST SENSE, REPORT SUPPORTED
// OPERATION CODES and refusals of unknown commands, against a real temp-file volume.
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { diskCommandTable } from './target.ts';
import { be, iqn, makeFixture, type Fixture } from './test-harness.ts';

const MiB = 1024 * 1024;
const GOOD = 0;
const CHECK = 2;

const inquiry = (alloc: number, evpd = 0, page = 0) => [0x12, evpd, page, ...be(alloc, 2), 0];

/** Designation descriptors of a VPD 0x83 page. */
function designators(page: Buffer) {
  const out: Array<{ proto: number; codeSet: number; piv: boolean; assoc: number; type: number; value: Buffer }> = [];
  let off = 4;
  const end = 4 + page.readUInt16BE(2);
  while (off < end) {
    const len = page[off + 3];
    out.push({
      proto: page[off] >> 4,
      codeSet: page[off] & 0x0f,
      piv: (page[off + 1] & 0x80) !== 0,
      assoc: (page[off + 1] >> 4) & 3,
      type: page[off + 1] & 0x0f,
      value: page.subarray(off + 4, off + 4 + len),
    });
    off += 4 + len;
  }
  t_assertEnd(off, end);
  return out;
}
function t_assertEnd(off: number, end: number) {
  if (off !== end) throw new Error(`descriptors overrun the page: ${off} != ${end}`);
}

test('standard INQUIRY: disk, SPC-4, HiSup, format 2, CmdQue, vendor and product in ASCII', async (t) => {
  const f = await makeFixture(t);
  const r = await f.exec(inquiry(255));
  t.is(r.status, GOOD);
  const d = r.dataIn!;
  t.is(d.length, 96);
  t.is(d[0], 0x00);
  t.is(d[2], 0x06);
  t.is(d[3], 0x12);
  t.is(d[4], d.length - 5);
  t.is(d[7] & 0x02, 0x02);
  t.is(d.subarray(8, 16).toString('latin1'), 'METRO   ');
  t.is(d.subarray(16, 32).toString('latin1').trimEnd(), 'metrocluster');
  t.deepEqual([d.readUInt16BE(58), d.readUInt16BE(60), d.readUInt16BE(62), d.readUInt16BE(64)], [0x00a0, 0x0960, 0x0460, 0x04c0]);
});

test('INQUIRY honours every allocation length, including 0 and 16-bit ones', async (t) => {
  const f = await makeFixture(t);
  const full = (await f.exec(inquiry(512))).dataIn!;
  for (const alloc of [1, 5, 36, 95, 96, 255, 511]) {
    const r = await f.exec(inquiry(alloc));
    t.true(r.dataIn?.equals(full.subarray(0, Math.min(alloc, full.length))), `alloc ${alloc}`);
  }
  const zero = await f.exec(inquiry(0));
  t.is(zero.status, GOOD);
  t.is(zero.dataIn, undefined);
  t.true((await f.exec(inquiry(7, 1, 0x83))).dataIn?.length === 7);
});

test('INQUIRY refusals: page code without EVPD, unknown VPD page, CMDDT', async (t) => {
  const f = await makeFixture(t);
  const a = await f.exec(inquiry(255, 0, 0x80));
  t.deepEqual([a.status, a.sk, a.asc, a.ascq, a.field?.byte], [CHECK, 0x5, 0x24, 0x00, 2]);
  const b = await f.exec(inquiry(255, 1, 0x81));
  t.deepEqual([b.sk, b.asc, b.field?.byte], [0x5, 0x24, 2]);
  const c = await f.exec(inquiry(255, 2, 0));
  t.deepEqual([c.sk, c.asc, c.field], [0x5, 0x24, { inCdb: true, byte: 1, bit: 1 }]);
});

test('INQUIRY at a LUN that does not exist: peripheral qualifier 3, device type 0x1F', async (t) => {
  const f = await makeFixture(t);
  const r = await f.exec(inquiry(96), { lun: 9 });
  t.is(r.status, GOOD);
  t.is(r.dataIn?.[0], 0x7f);
  const vpd = await f.exec(inquiry(255, 1, 0x83), { lun: 9 });
  t.deepEqual([vpd.sk, vpd.asc], [0x5, 0x25]);
});

test('VPD 0x00 lists the pages sorted, and each listed page is served with its own page code', async (t) => {
  const f = await makeFixture(t);
  const r = await f.exec(inquiry(255, 1, 0x00));
  const list = [...r.dataIn!.subarray(4, 4 + r.dataIn!.readUInt16BE(2))];
  t.deepEqual(list, [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]);
  for (const page of list) {
    const p = await f.exec(inquiry(255, 1, page));
    t.is(p.status, GOOD);
    t.is(p.dataIn?.[1], page);
    t.is(p.dataIn?.length, 4 + p.dataIn!.readUInt16BE(2), `page 0x${page.toString(16)} length field`);
  }
});

test('VPD 0x80 serial and 0x83 NAA come from the volume identity and differ per volume', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: MiB, volume: 'data' }, { sizeBytes: MiB, volume: 'log' }] });
  const s0 = (await f.exec(inquiry(255, 1, 0x80))).dataIn!;
  const s1 = (await f.exec(inquiry(255, 1, 0x80), { lun: 1 })).dataIn!;
  t.regex(s0.subarray(4).toString('latin1'), /^[0-9A-F]{24}$/);
  t.not(s0.subarray(4).toString(), s1.subarray(4).toString());
  const n0 = designators((await f.exec(inquiry(255, 1, 0x83))).dataIn!)[0];
  const n1 = designators((await f.exec(inquiry(255, 1, 0x83), { lun: 1 })).dataIn!)[0];
  t.deepEqual([n0.type, n0.assoc, n0.codeSet, n0.value.length, n0.value[0] >> 4], [3, 0, 1, 16, 6]);
  t.false(n0.value.equals(n1.value));
});

test('VPD 0x83 at two sites: same NAA, different port group and relative port, port names and device name', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'metro-scsi-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const alpha = await makeFixture(t, { dir, port: { relativeTargetPortId: 1, targetPortGroupId: 1, targetPortName: `${iqn},t,0x0001` } });
  const beta = await makeFixture(t, { dir, port: { relativeTargetPortId: 2, targetPortGroupId: 2, targetPortName: `${iqn},t,0x0002` } });
  const a = designators((await alpha.exec(inquiry(1024, 1, 0x83))).dataIn!);
  const b = designators((await beta.exec(inquiry(1024, 1, 0x83))).dataIn!);
  const byType = (ds: typeof a, type: number, assoc: number) => ds.find((d) => d.type === type && d.assoc === assoc)!;
  t.true(byType(a, 3, 0).value.equals(byType(b, 3, 0).value), 'NAA identical at both sites');
  for (const ds of [a, b]) {
    for (const d of ds.slice(1)) t.deepEqual([d.proto, d.piv], [5, true], 'iSCSI protocol identifier on port designators');
  }
  t.is(byType(a, 4, 1).value.readUInt16BE(2), 1);
  t.is(byType(b, 4, 1).value.readUInt16BE(2), 2);
  t.is(byType(a, 5, 1).value.readUInt16BE(2), 1);
  t.is(byType(b, 5, 1).value.readUInt16BE(2), 2);
  const name = (d: { value: Buffer; codeSet: number }) => {
    t.is(d.codeSet, 3);
    t.is(d.value.length % 4, 0);
    t.is(d.value[d.value.length - 1], 0);
    return d.value.toString('utf8').replace(/\0+$/, '');
  };
  t.is(name(byType(a, 8, 1)), `${iqn},t,0x0001`);
  t.is(name(byType(b, 8, 1)), `${iqn},t,0x0002`);
  t.is(name(byType(a, 8, 2)), iqn);
  t.is(name(byType(b, 8, 2)), iqn);
});

test('VPD 0xB0 block limits, 0xB1 non-rotating, 0xB2 thin provisioning', async (t) => {
  const f = await makeFixture(t);
  const b0 = (await f.exec(inquiry(255, 1, 0xb0))).dataIn!;
  t.is(b0.readUInt16BE(2), 0x3c);
  t.is(b0.readUInt16BE(6), 8, 'optimal granularity: 4 KiB of 512-byte blocks');
  t.is(b0.readUInt32BE(8), 16384, 'maximum transfer: 8 MiB');
  t.is(b0[5], 255, 'maximum COMPARE AND WRITE length');
  t.is(b0.readUInt32BE(20), 1024 * 1024, 'maximum UNMAP LBA count: 512 MiB, at most 2^20 blocks');
  t.is(b0.readUInt32BE(32), 0x80000000, 'UGAVALID, unmap granularity alignment 0');
  t.is(b0.readUInt32BE(44), 2048, 'maximum atomic transfer length: 1 MiB');
  t.deepEqual([b0.readUInt32BE(48), b0.readUInt32BE(52), b0.readUInt32BE(56), b0.readUInt32BE(60)], [0, 0, 0, 0], 'no atomic alignment, granularity or boundaries');
  t.is(b0.readBigUInt64BE(36), 16384n, 'maximum WRITE SAME length: the maximum transfer, 8 MiB');
  const b1 = (await f.exec(inquiry(255, 1, 0xb1))).dataIn!;
  t.is(b1.readUInt16BE(4), 1);
  const b2 = (await f.exec(inquiry(255, 1, 0xb2))).dataIn!;
  t.is(b2[5] & 0xe0, 0xe0, 'LBPU, LBPWS, LBPWS10');
  t.is(b2[6] & 0x07, 2, 'thin');
});

test('REPORT LUNS lists every LUN, with select report 0 and 2; 1 (well known) is empty', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: MiB }, { sizeBytes: MiB }, { sizeBytes: MiB }] });
  for (const select of [0, 2]) {
    const r = await f.exec([0xa0, 0, select, 0, 0, 0, ...be(1024, 4), 0, 0]);
    t.is(r.dataIn?.readUInt32BE(0), 24);
    t.deepEqual([0, 1, 2].map((i) => r.dataIn!.subarray(8 + 8 * i, 16 + 8 * i).toString('hex')), [
      '0000000000000000',
      '0001000000000000',
      '0002000000000000',
    ]);
  }
  const wellKnown = await f.exec([0xa0, 0, 1, 0, 0, 0, ...be(1024, 4), 0, 0]);
  t.deepEqual([...wellKnown.dataIn!], [0, 0, 0, 0, 0, 0, 0, 0]);
});

test('REPORT LUNS: allocation length under 16 refused, 16 truncates but keeps the full list length', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: MiB }, { sizeBytes: MiB }] });
  const small = await f.exec([0xa0, 0, 0, 0, 0, 0, ...be(15, 4), 0, 0]);
  t.deepEqual([small.sk, small.asc, small.field?.byte], [0x5, 0x24, 6]);
  const r = await f.exec([0xa0, 0, 0, 0, 0, 0, ...be(16, 4), 0, 0]);
  t.is(r.dataIn?.length, 16);
  t.is(r.dataIn?.readUInt32BE(0), 16);
  const bad = await f.exec([0xa0, 0, 3, 0, 0, 0, ...be(64, 4), 0, 0]);
  t.deepEqual([bad.sk, bad.asc, bad.field?.byte], [0x5, 0x24, 2]);
});

test('REPORT LUNS works at a LUN that does not exist', async (t) => {
  const f = await makeFixture(t);
  const r = await f.exec([0xa0, 0, 0, 0, 0, 0, ...be(64, 4), 0, 0], { lun: 77 });
  t.is(r.status, GOOD);
  t.is(r.dataIn?.readUInt32BE(0), 8);
});

test('commands other than INQUIRY, REPORT LUNS and REQUEST SENSE at a missing LUN: LOGICAL UNIT NOT SUPPORTED', async (t) => {
  const f = await makeFixture(t);
  for (const c of [[0x00], [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], [0x25], [0x42], [0x1a, 0, 0x3f, 0, 255, 0]]) {
    const r = await f.exec(c, { lun: 3 });
    t.deepEqual([r.status, r.sk, r.asc, r.ascq], [CHECK, 0x5, 0x25, 0x00], `opcode 0x${c[0].toString(16)}`);
  }
  const rs = await f.exec([0x03, 0, 0, 0, 18, 0], { lun: 3 });
  t.is(rs.status, GOOD);
  t.deepEqual([rs.dataIn![2] & 0x0f, rs.dataIn![12], rs.dataIn![13]], [0x5, 0x25, 0x00]);
});

test('unsupported opcodes -> INVALID COMMAND OPERATION CODE; unknown service action -> INVALID FIELD IN CDB', async (t) => {
  const f = await makeFixture(t);
  for (const op of [0x83, 0x84, 0x48, 0x5c, 0x7f, 0xc0, 0x04]) {
    const r = await f.exec([op]);
    t.deepEqual([r.status, r.sk, r.asc, r.ascq], [CHECK, 0x5, 0x20, 0x00], `opcode 0x${op.toString(16)}`);
  }
  const sa = await f.exec([0xa3, 0x0b, 0, 0, 0, 0, ...be(64, 4), 0, 0]); // MAINTENANCE IN 0x0B: not served
  t.deepEqual([sa.sk, sa.asc, sa.field], [0x5, 0x24, { inCdb: true, byte: 1, bit: 4 }]);
});

test('TEST UNIT READY is GOOD; reserved bits in it are refused', async (t) => {
  const f = await makeFixture(t);
  t.is((await f.exec([0x00, 0, 0, 0, 0, 0])).status, GOOD);
  const r = await f.exec([0x00, 0, 0, 1, 0, 0]);
  t.deepEqual([r.sk, r.asc, r.field?.byte], [0x5, 0x24, 3]);
});

test('REQUEST SENSE without a pending condition: NO SENSE; DESC=1 refused; allocation honoured', async (t) => {
  const f = await makeFixture(t);
  const r = await f.exec([0x03, 0, 0, 0, 252, 0]);
  t.is(r.status, GOOD);
  t.is(r.dataIn?.length, 18);
  t.deepEqual([r.dataIn![0], r.dataIn![2], r.dataIn![12], r.dataIn![13]], [0x70, 0, 0, 0]);
  t.is((await f.exec([0x03, 0, 0, 0, 8, 0])).dataIn?.length, 8);
  const d = await f.exec([0x03, 1, 0, 0, 252, 0]);
  t.deepEqual([d.sk, d.asc, d.field], [0x5, 0x24, { inCdb: true, byte: 1, bit: 0 }]);
});

// ---- MODE SENSE / MODE SELECT

function pagesOf(data: Buffer, tenByte: boolean): Map<number, Buffer> {
  const headerBytes = tenByte ? 8 : 4;
  const bdl = tenByte ? data.readUInt16BE(6) : data[3];
  const pages = new Map<number, Buffer>();
  for (let off = headerBytes + bdl; off < data.length; off += 2 + data[off + 1]) {
    pages.set(data[off] & 0x3f, data.subarray(off, off + 2 + data[off + 1]));
  }
  return pages;
}

const sense6 = (page: number, opts: { pc?: number; dbd?: boolean; sub?: number; alloc?: number } = {}) => [
  0x1a,
  opts.dbd ? 0x08 : 0,
  ((opts.pc ?? 0) << 6) | page,
  opts.sub ?? 0,
  opts.alloc ?? 255,
  0,
];
const sense10 = (page: number, opts: { pc?: number; dbd?: boolean; llbaa?: boolean; alloc?: number } = {}) => [
  0x5a,
  (opts.dbd ? 0x08 : 0) | (opts.llbaa ? 0x10 : 0),
  ((opts.pc ?? 0) << 6) | page,
  0,
  0,
  0,
  0,
  ...be(opts.alloc ?? 1024, 2),
  0,
];

test('MODE SENSE(6) all pages: caching with WCE=1, control page, block descriptor, DPOFUA', async (t) => {
  const f = await makeFixture(t);
  const r = await f.exec(sense6(0x3f));
  const d = r.dataIn!;
  t.is(d[0], d.length - 1);
  t.is(d[2], 0x10, 'DPOFUA, not write protected');
  t.is(d[3], 8);
  t.is(d.readUInt32BE(4), 8192, 'block descriptor: number of blocks');
  t.is(d.readUIntBE(9, 3), 512, 'block descriptor: block length');
  const pages = pagesOf(d, false);
  t.deepEqual([...pages.keys()], [0x08, 0x0a]);
  t.is(pages.get(0x08)![1], 0x12);
  t.is(pages.get(0x08)![2] & 0x04, 0x04, 'WCE');
  t.is(pages.get(0x08)![2] & 0x01, 0, 'RCD clear');
  t.is(pages.get(0x0a)![1], 0x0a);
  t.is(pages.get(0x0a)![2] & 0x04, 0, 'D_SENSE clear: fixed format sense');
});

test('MODE SENSE(10): one page, DBD, long LBA descriptor, mode data length', async (t) => {
  const f = await makeFixture(t);
  const one = (await f.exec(sense10(0x08))).dataIn!;
  t.is(one.readUInt16BE(0), one.length - 2);
  t.deepEqual([...pagesOf(one, true).keys()], [0x08]);
  const dbd = (await f.exec(sense10(0x0a, { dbd: true }))).dataIn!;
  t.is(dbd.readUInt16BE(6), 0);
  t.is(dbd.length, 8 + 12);
  const long = (await f.exec(sense10(0x3f, { llbaa: true }))).dataIn!;
  t.is(long[4] & 1, 1, 'LONGLBA');
  t.is(long.readUInt16BE(6), 16);
  t.is(long.readBigUInt64BE(8), 8192n);
  t.is(long.readUInt32BE(20), 512);
});

test('MODE SENSE page control: changeable is all zeros, default equals current, saved is refused', async (t) => {
  const f = await makeFixture(t);
  const current = (await f.exec(sense6(0x3f, { dbd: true }))).dataIn!;
  const changeable = (await f.exec(sense6(0x3f, { dbd: true, pc: 1 }))).dataIn!;
  const dflt = (await f.exec(sense6(0x3f, { dbd: true, pc: 2 }))).dataIn!;
  t.deepEqual(dflt, current);
  for (const [code, page] of pagesOf(changeable, false)) {
    t.is(page.length, pagesOf(current, false).get(code)!.length);
    t.true(page.subarray(2).equals(Buffer.alloc(page.length - 2)), `page 0x${code.toString(16)} has nothing changeable`);
  }
  const saved = await f.exec(sense6(0x08, { pc: 3 }));
  t.deepEqual([saved.status, saved.sk, saved.asc, saved.ascq], [CHECK, 0x5, 0x39, 0x00]);
});

test('MODE SENSE refusals: unknown page, unknown subpage; allocation length truncates', async (t) => {
  const f = await makeFixture(t);
  const page = await f.exec(sense6(0x1c));
  t.deepEqual([page.sk, page.asc, page.field], [0x5, 0x24, { inCdb: true, byte: 2, bit: 5 }]);
  const sub = await f.exec(sense6(0x08, { sub: 0x01 }));
  t.deepEqual([sub.sk, sub.asc, sub.field?.byte], [0x5, 0x24, 3]);
  t.is((await f.exec(sense6(0x3f, { sub: 0xff }))).status, GOOD);
  const full = (await f.exec(sense6(0x3f))).dataIn!;
  const four = await f.exec(sense6(0x3f, { alloc: 4 }));
  t.true(four.dataIn?.equals(full.subarray(0, 4)));
  t.is(four.dataIn![0], full.length - 1, 'mode data length still describes all the data');
});

async function currentModeData(f: Fixture, tenByte: boolean): Promise<Buffer> {
  const d = Buffer.from((await f.exec(tenByte ? sense10(0x3f) : sense6(0x3f))).dataIn!);
  if (tenByte) d.writeUInt16BE(0, 0);
  else d[0] = 0; // MODE DATA LENGTH is reserved in MODE SELECT
  d[tenByte ? 3 : 2] = 0; // device-specific parameter: DPOFUA is reserved in MODE SELECT
  return d;
}
const select6 = (len: number, flags = 0x10) => [0x15, flags, 0, 0, len, 0];
const select10 = (len: number, flags = 0x10) => [0x55, flags, 0, 0, 0, 0, 0, ...be(len, 2), 0];

test('MODE SELECT accepts the current values back (6 and 10 byte)', async (t) => {
  const f = await makeFixture(t);
  const d6 = await currentModeData(f, false);
  t.is((await f.exec(select6(d6.length), { dataOut: d6 })).status, GOOD);
  const d10 = await currentModeData(f, true);
  t.is((await f.exec(select10(d10.length), { dataOut: d10 })).status, GOOD);
  t.is((await f.exec(select6(0))).status, GOOD, 'empty parameter list');
});

test('MODE SELECT refuses changing WCE with INVALID FIELD IN PARAMETER LIST pointing at it; WCE stays 1', async (t) => {
  const f = await makeFixture(t);
  const d = await currentModeData(f, false);
  const cachingAt = 4 + 8;
  t.is(d[cachingAt], 0x08);
  d[cachingAt + 2] &= ~0x04;
  const r = await f.exec(select6(d.length), { dataOut: d });
  t.deepEqual([r.status, r.sk, r.asc, r.ascq], [CHECK, 0x5, 0x26, 0x00]);
  t.deepEqual(r.field, { inCdb: false, byte: cachingAt + 2, bit: 2 });
  const after = pagesOf((await f.exec(sense6(0x08))).dataIn!, false).get(0x08)!;
  t.is(after[2] & 0x04, 0x04);
});

test('MODE SELECT refusals: SP, no PF, unknown page, wrong page length, other block size, short list', async (t) => {
  const f = await makeFixture(t);
  const d = await currentModeData(f, false);
  const sp = await f.exec(select6(d.length, 0x11), { dataOut: d });
  t.deepEqual([sp.sk, sp.asc, sp.field], [0x5, 0x24, { inCdb: true, byte: 1, bit: 0 }]);
  const pf = await f.exec(select6(d.length, 0x00), { dataOut: d });
  t.deepEqual([pf.sk, pf.asc, pf.field?.byte], [0x5, 0x24, 1]);

  const unknown = Buffer.concat([d.subarray(0, 12), Buffer.from([0x1c, 0x0a, ...Buffer.alloc(10)])]);
  const u = await f.exec(select6(unknown.length), { dataOut: unknown });
  t.deepEqual([u.sk, u.asc, u.field?.byte, u.field?.inCdb], [0x5, 0x26, 12, false]);

  const badLen = Buffer.from(d);
  badLen[13] = 0x10;
  t.deepEqual([(await f.exec(select6(badLen.length), { dataOut: badLen })).asc], [0x26]);

  const otherBlock = Buffer.from(d);
  otherBlock.writeUIntBE(4096, 9, 3);
  const ob = await f.exec(select6(otherBlock.length), { dataOut: otherBlock });
  t.deepEqual([ob.asc, ob.field?.byte], [0x26, 9]);

  const truncated = await f.exec(select6(d.length), { dataOut: d.subarray(0, d.length - 3) });
  t.deepEqual([truncated.sk, truncated.asc], [0x5, 0x1a]);
  const cut = d.subarray(0, d.length - 3);
  const cutPage = await f.exec(select6(cut.length), { dataOut: cut });
  t.deepEqual([cutPage.sk, cutPage.asc], [0x5, 0x1a], 'a page cut short by the list length');
});

// ---- REPORT SUPPORTED OPERATION CODES

const rsoc = (opts: { options?: number; rctd?: boolean; op?: number; sa?: number; alloc?: number }) => [
  0xa3,
  0x0c,
  (opts.rctd ? 0x80 : 0) | (opts.options ?? 0),
  opts.op ?? 0,
  ...be(opts.sa ?? 0, 2),
  ...be(opts.alloc ?? 65535, 4),
  0,
  0,
];

test('REPORT SUPPORTED OPERATION CODES lists exactly the command table, each executable', async (t) => {
  const f = await makeFixture(t);
  const d = (await f.exec(rsoc({}))).dataIn!;
  t.is(d.readUInt32BE(0), d.length - 4);
  const listed: string[] = [];
  for (let off = 4; off < d.length; off += 8) {
    const servactv = (d[off + 5] & 1) === 1;
    t.is(d[off + 5] & 2, 0, 'no timeouts descriptor without RCTD');
    if (!servactv) t.is(d.readUInt16BE(off + 2), 0);
    listed.push(`${d[off].toString(16)}/${servactv ? d.readUInt16BE(off + 2).toString(16) : '-'}/${d.readUInt16BE(off + 6)}`);
  }
  const table = diskCommandTable.all.map(
    (s) => `${s.opcode.toString(16)}/${s.serviceAction === undefined ? '-' : s.serviceAction.toString(16)}/${s.usage.length}`,
  );
  t.deepEqual(listed, table);
  t.true(listed.includes('28/-/10') && listed.includes('9e/10/16') && listed.includes('a3/c/12'));
  for (const spec of diskCommandTable.all) {
    const c = Buffer.alloc(16);
    c[0] = spec.opcode;
    if (spec.serviceAction !== undefined) c[1] = spec.serviceAction;
    const r = await f.exec(c, { dataOut: Buffer.alloc(0) });
    t.false(r.asc === 0x20, `${spec.name} is executable`);
  }
});

test('every CDB bit the usage data marks unused is refused with INVALID FIELD IN CDB at that bit', async (t) => {
  const f = await makeFixture(t);
  for (const spec of diskCommandTable.all) {
    for (let byte = 1; byte < spec.usage.length - 1; byte++) {
      const unused = ~spec.usage[byte] & 0xff;
      if (unused === 0) continue;
      const bit = 31 - Math.clz32(unused);
      const c = Buffer.alloc(16);
      c[0] = spec.opcode;
      if (spec.serviceAction !== undefined) c[1] = spec.serviceAction;
      c[byte] |= 1 << bit;
      const r = await f.exec(c);
      t.deepEqual([r.sk, r.asc, r.field], [0x5, 0x24, { inCdb: true, byte, bit }], `${spec.name} byte ${byte} bit ${bit}`);
    }
  }
});

test('RSOC with RCTD: every descriptor carries a 0x0A-long timeouts descriptor', async (t) => {
  const f = await makeFixture(t);
  const d = (await f.exec(rsoc({ rctd: true }))).dataIn!;
  let n = 0;
  for (let off = 4; off < d.length; off += 20, n++) {
    t.is(d[off + 5] & 2, 2, 'CTDP');
    t.is(d.readUInt16BE(off + 8), 0x0a);
  }
  t.is(n, diskCommandTable.all.length);
});

test('RSOC one command: option 1 for plain opcodes, option 2 with service action, usage data', async (t) => {
  const f = await makeFixture(t);
  const read10 = (await f.exec(rsoc({ options: 1, op: 0x28 }))).dataIn!;
  t.is(read10[1] & 0x07, 0x03, 'supported per standard');
  t.is(read10.readUInt16BE(2), 10);
  t.deepEqual([...read10.subarray(4, 14)], [0x28, 0x1e, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x00]);
  const rc16 = (await f.exec(rsoc({ options: 2, op: 0x9e, sa: 0x10, rctd: true }))).dataIn!;
  t.is(rc16[1], 0x80 | 0x03);
  t.is(rc16.readUInt16BE(2), 16);
  t.deepEqual([rc16[4], rc16[5]], [0x9e, 0x1f]);
  t.is(rc16.readUInt16BE(4 + 16), 0x0a, 'timeouts descriptor after the usage data');
  const missing = (await f.exec(rsoc({ options: 1, op: 0x83 }))).dataIn!;
  t.deepEqual([missing[1] & 7, missing.readUInt16BE(2)], [0x01, 0]);
  const missingSa = (await f.exec(rsoc({ options: 2, op: 0x9e, sa: 0x13 }))).dataIn!;
  t.is(missingSa[1] & 7, 0x01);
  const either = (await f.exec(rsoc({ options: 3, op: 0x28, sa: 0x55 }))).dataIn!;
  t.is(either[1] & 7, 0x03);
});

test('RSOC refusals: option 1 on an opcode with service actions, option 2 without, unknown option', async (t) => {
  const f = await makeFixture(t);
  const a = await f.exec(rsoc({ options: 1, op: 0x9e }));
  t.deepEqual([a.sk, a.asc, a.field?.byte], [0x5, 0x24, 3]);
  const b = await f.exec(rsoc({ options: 2, op: 0x28 }));
  t.deepEqual([b.sk, b.asc, b.field?.byte], [0x5, 0x24, 3]);
  const c = await f.exec(rsoc({ options: 4 }));
  t.deepEqual([c.sk, c.asc, c.field?.byte], [0x5, 0x24, 2]);
});

test('RSOC honours the allocation length', async (t) => {
  const f = await makeFixture(t);
  const full = (await f.exec(rsoc({}))).dataIn!;
  const r = await f.exec(rsoc({ alloc: 12 }));
  t.true(r.dataIn?.equals(full.subarray(0, 12)));
  t.is((await f.exec(rsoc({ alloc: 0 }))).dataIn, undefined);
});
