import test from 'ava';
import { Asc, SenseKey, buildFixedSense, parseFixedSense } from './sense.ts';

test('fixed-format sense carries key, ASC/ASCQ and length per SPC-4 4.5.3', (t) => {
  const s = buildFixedSense({ key: SenseKey.IllegalRequest, code: Asc.LbaOutOfRange });
  t.is(s.length, 18);
  t.is(s[0], 0x70); // current error, fixed format, VALID clear
  t.is(s[2], 0x05);
  t.is(s[7], 10); // additional sense length
  t.is(s[12], 0x21);
  t.is(s[13], 0x00);
  t.is(s[15], 0); // no sense-key specific data
});

test('INFORMATION sets VALID and is big-endian in bytes 3-6', (t) => {
  const s = buildFixedSense({ key: SenseKey.Miscompare, code: Asc.MiscompareDuringVerify, information: 0x01020304 });
  t.is(s[0], 0xf0);
  t.deepEqual([...s.subarray(3, 7)], [1, 2, 3, 4]);
  t.is(parseFixedSense(s).information, 0x01020304);
});

const pointers = [
  { name: 'CDB byte with bit', fp: { inCdb: true, byte: 2, bit: 5 }, b15: 0x80 | 0x40 | 0x08 | 5 },
  { name: 'CDB byte', fp: { inCdb: true, byte: 7 }, b15: 0x80 | 0x40 },
  { name: 'parameter list byte 300', fp: { inCdb: false, byte: 300 }, b15: 0x80 },
  { name: 'parameter list bit 0', fp: { inCdb: false, byte: 9, bit: 0 }, b15: 0x80 | 0x08 },
];
for (const { name, fp, b15 } of pointers) {
  test(`field pointer: ${name}`, (t) => {
    const s = buildFixedSense({ key: SenseKey.IllegalRequest, code: Asc.InvalidFieldInCdb, fieldPointer: fp });
    t.is(s[15], b15);
    t.is(s.readUInt16BE(16), fp.byte);
    t.deepEqual(parseFixedSense(s).fieldPointer, fp);
  });
}
