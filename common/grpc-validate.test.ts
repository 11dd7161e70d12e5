// Table-driven checks of the gRPC field validators: 64-bit values JavaScript cannot hold exactly,
// volume ranges at and past the end, alignment, limits, epochs.
import test from 'ava';
import { checkCrc, checkName, checkU64, checkVolumeRange, classifyEpoch, safeU64 } from './grpc-validate.ts';

test('safeU64 takes exact integers below 2^53 and nothing else', (t) => {
  const table: Array<[unknown, number | undefined]> = [
    ['0', 0], ['1', 1], ['9007199254740991', 9007199254740991], [42, 42],
    ['9007199254740992', undefined], ['18446744073709551615', undefined], ['9223372036854775808', undefined],
    ['-1', undefined], [-1, undefined], ['', undefined], ['0x10', undefined], ['1e3', undefined], [' 1', undefined],
    [1.5, undefined], [Number.NaN, undefined], [undefined, undefined], [null, undefined], [{}, undefined], [2n ** 63n, undefined], [7n, 7],
  ];
  for (const [raw, want] of table) t.is(safeU64(raw), want, `safeU64(${String(raw)})`);
});

test('checkU64 names the field and the bounds', (t) => {
  t.is(checkU64('seq', '5', 10, 1), undefined);
  t.regex(checkU64('seq', '0', 10, 1)!, /^seq 0 is not from 1 to 10$/);
  t.regex(checkU64('seq', '18446744073709551615')!, /^seq "18446744073709551615" is not an integer/);
});

test('volume ranges: index, alignment, length limit, the end of the volume', (t) => {
  const volumeSizes = [1 << 20, 4096];
  const r = (volume: unknown, offsetBytes: unknown, lengthBytes: unknown, lengthBytesMax = 1 << 20) =>
    checkVolumeRange('write', { volumeSizes, volume, offsetBytes, lengthBytes, lengthBytesMax });
  t.is(r(0, '0', 512), undefined);
  t.is(r(0, String((1 << 20) - 512), 512), undefined);
  t.is(r(1, '0', 4096), undefined);
  const refused: Array<[unknown, unknown, unknown, RegExp]> = [
    [2, '0', 512, /volume 2 does not exist/],
    [-1, '0', 512, /volume -1 does not exist/],
    [0.5, '0', 512, /volume 0.5 does not exist/],
    [undefined, '0', 512, /volume absent does not exist/],
    [0, String(1 << 20), 512, /outside volume 0/],
    [0, '18446744073709551104', 512, /offset "18446744073709551104" is not a valid byte offset/],
    [0, '9007199254740480', 512, /outside volume 0/],
    [0, '0', 0, /length 0 is not a positive/],
    [0, '100', 512, /multiples of 512/],
    [0, '0', 100, /multiples of 512/],
    [1, '3584', 1024, /outside volume 1/],
    [0, '0', '18446744073709551615', /length "18446744073709551615" is not a positive/],
  ];
  for (const [v, o, l, re] of refused) t.regex(r(v, o, l) ?? '', re, `volume ${String(v)} offset ${String(o)} length ${String(l)}`);
  t.regex(r(0, '0', 1 << 20, 65536)!, /over the limit of 65536 bytes/);
});

test('epochs: invalid, stale, current, future', (t) => {
  t.like(classifyEpoch('e', '3', 3), { kind: 'current', epoch: 3 });
  t.like(classifyEpoch('e', '2', 3), { kind: 'stale', epoch: 2 });
  t.like(classifyEpoch('e', '4', 3), { kind: 'future', epoch: 4 });
  t.is(classifyEpoch('e', '0', 3).kind, 'invalid');
  t.is(classifyEpoch('e', '18446744073709551615', 3).kind, 'invalid');
  t.is(classifyEpoch('e', '9223372036854775809', 3).kind, 'invalid');
});

test('names and CRCs', (t) => {
  t.is(checkName('group', 'db'), undefined);
  t.regex(checkName('group', '')!, /missing/);
  t.regex(checkName('group', 'x'.repeat(224))!, /longer than 223 bytes/);
  t.is(checkCrc('crc', 0xffffffff, 0xffffffff), undefined);
  t.regex(checkCrc('crc', 5, 6)!, /does not match/);
  t.regex(checkCrc('crc', undefined)!, /missing/);
});
