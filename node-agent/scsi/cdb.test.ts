import test from 'ava';
import { cdbLengthOf, findUnsupportedCdbBit, u64, usage } from './cdb.ts';

const lengths: Array<[number, number | undefined]> = [
  [0x00, 6], [0x12, 6], [0x28, 10], [0x5a, 10], [0x88, 16], [0x9e, 16], [0xa0, 12], [0xa8, 12], [0x7f, undefined], [0xc0, undefined],
];
for (const [opcode, len] of lengths) {
  test(`group code of 0x${opcode.toString(16)} gives CDB length ${len}`, (t) => t.is(cdbLengthOf(opcode), len));
}

test('u64 decodes up to 2^53 and maps larger LBAs to Infinity', (t) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(0x1f_ffff_ffff_ffffn);
  t.is(u64(b, 0), Number.MAX_SAFE_INTEGER);
  b.writeBigUInt64BE(0x20_0000_0000_0000n);
  t.is(u64(b, 0), Infinity);
  b.writeBigUInt64BE(0xffff_ffff_ffff_ffffn);
  t.is(u64(b, 0), Infinity);
});

const u = usage(0x28, 0x1e, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x00);
const cases: Array<{ name: string; cdb: number[]; want?: { byte: number; bit: number } }> = [
  { name: 'all allowed bits set', cdb: [0x28, 0x1e, 1, 2, 3, 4, 0x1f, 5, 6, 0] },
  { name: 'RDPROTECT', cdb: [0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0], want: { byte: 1, bit: 5 } },
  { name: 'highest bad bit reported', cdb: [0x28, 0xe1, 0, 0, 0, 0, 0, 0, 1, 0], want: { byte: 1, bit: 7 } },
  { name: 'reserved bits of the group byte', cdb: [0x28, 0, 0, 0, 0, 0, 0x40, 0, 1, 0], want: { byte: 6, bit: 6 } },
  { name: 'NACA in the control byte', cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0x04], want: { byte: 9, bit: 2 } },
  { name: 'LINK in the control byte', cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0x01], want: { byte: 9, bit: 0 } },
  { name: 'vendor-specific control bits are ignored', cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0xc0] },
];
for (const c of cases) {
  test(`reserved-bit check: ${c.name}`, (t) => {
    const got = findUnsupportedCdbBit(Buffer.from(c.cdb), u);
    t.deepEqual(got, c.want ? { inCdb: true, ...c.want } : undefined);
  });
}
