import test from 'ava';
import { crc32c } from '@node-rs/crc32';
import { PduParser, type ParseResult } from './pdu-parser.ts';
import {
  decodeLun,
  decodeScsiCommand,
  encodeDataIn,
  encodeLun,
  encodeLoginResponse,
  encodeR2T,
  encodeReject,
  encodeScsiResponse,
  encodeAsyncMessage,
  encodeNopIn,
  encodeLogoutResponse,
  encodeTaskManagementResponse,
  encodeTextResponse,
  framePdu,
  snAdd,
  snLess,
  snWithin,
  lunUnsupported,
  noDigests,
  type Digests,
} from './pdu.ts';
import { pduOf, scsiCommandPdu, wire } from './test-support.ts';

// RFC 3720 appendix B.4: CRC32C examples, digest bytes as they appear on the wire.
const crcVectors: Array<[string, Buffer, string]> = [
  ['32 bytes of zeroes', Buffer.alloc(32, 0), 'aa36918a'],
  ['32 bytes of ones', Buffer.alloc(32, 0xff), '43aba862'],
  ['32 bytes incrementing', Buffer.from(Array.from({ length: 32 }, (_, i) => i)), '4e79dd46'],
  ['32 bytes decrementing', Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i)), '5cdb3f11'],
  [
    'an iSCSI SCSI Read (10) command PDU',
    Buffer.from(
      '01c000000000000000000000000000001400000000000400000000140000001828000000000000000200000000000000',
      'hex',
    ),
    '563a96d9',
  ],
];

for (const [name, bytes, wireHex] of crcVectors) {
  test(`CRC32C digest of ${name} matches RFC 3720 B.4`, (t) => {
    const le = Buffer.alloc(4);
    le.writeUInt32LE(crc32c(bytes) >>> 0);
    t.is(le.toString('hex'), wireHex);
  });
}

test('framePdu puts the header digest of RFC 3720 B.4 after the BHS, on the wire byte order', (t) => {
  const bhs = crcVectors[4][1];
  const parts = framePdu(bhs, undefined, { header: true, data: false });
  const bytes = Buffer.concat(parts);
  t.is(bytes.length, 52);
  t.is(bytes.subarray(48).toString('hex'), '563a96d9');
});

test('framePdu pads the data segment with zeroes and covers the padding with the data digest', (t) => {
  const bhs = encodeNopIn({ statSN: 1, expCmdSN: 2, maxCmdSN: 3, lun: 0, initiatorTaskTag: 7, targetTransferTag: 0xffffffff, dataLength: 5 });
  const data = Buffer.from('hello');
  const bytes = Buffer.concat(framePdu(bhs, data, { header: false, data: true }));
  t.is(bytes.length, 48 + 8 + 4);
  t.deepEqual(bytes.subarray(53, 56), Buffer.alloc(3));
  const expected = Buffer.alloc(4);
  expected.writeUInt32LE(crc32c(Buffer.concat([data, Buffer.alloc(3)])) >>> 0);
  t.deepEqual(bytes.subarray(56), expected);
});

/** Feeds bytes in the given chunk sizes (cycled) and collects every result. */
function feed(bytes: Buffer, chunkSizes: number[], digests: Digests = noDigests, max = 1 << 20): ParseResult[] {
  const parser = new PduParser({ headerDigest: digests.header, dataDigest: digests.data, dataSegmentBytesMax: max });
  const out: ParseResult[] = [];
  let at = 0;
  let i = 0;
  while (at < bytes.length) {
    const n = chunkSizes[i++ % chunkSizes.length];
    parser.push(bytes.subarray(at, at + n));
    at += n;
    for (let r = parser.next(); r !== undefined; r = parser.next()) out.push(r);
  }
  return out;
}

const chunkings: Array<[string, number[]]> = [
  ['byte by byte', [1]],
  ['odd chunks', [3, 7, 1, 13, 48, 5]],
  ['header-sized chunks', [48]],
  ['one chunk', [1 << 30]],
  ['chunks splitting the header from its data', [47, 2, 64]],
];

// Every target PDU the transport can send, framed, must come back out of the parser intact.
const targetPdus: Array<[string, Buffer, Buffer | undefined]> = [
  [
    'Login Response',
    encodeLoginResponse({ transit: true, continue: false, csg: 1, nsg: 3, isidHex: '80123456789a', tsih: 9, initiatorTaskTag: 5, statSN: 1, expCmdSN: 2, maxCmdSN: 33, status: 0, dataLength: 9 }),
    Buffer.from('A=B\0C=DE\0'),
  ],
  ['Text Response', encodeTextResponse({ final: false, continue: true, lun: 0, initiatorTaskTag: 3, targetTransferTag: 77, statSN: 4, expCmdSN: 5, maxCmdSN: 6, dataLength: 3 }), Buffer.from('X=Y')],
  ['SCSI Response', encodeScsiResponse({ response: 0, status: 2, initiatorTaskTag: 8, expDataSN: 0, residual: { overflow: false, underflow: true, count: 512 }, statSN: 1, expCmdSN: 1, maxCmdSN: 1, dataLength: 20 }), Buffer.alloc(20, 1)],
  ['Data-In', encodeDataIn({ final: true, lun: 3, initiatorTaskTag: 9, expCmdSN: 10, maxCmdSN: 20, dataSN: 4, bufferOffset: 65536, dataLength: 1001, status: { status: 0, statSN: 44, residual: { overflow: true, underflow: false, count: 7 } } }), Buffer.alloc(1001, 0x5a)],
  ['R2T', encodeR2T({ lun: 1, initiatorTaskTag: 2, targetTransferTag: 3, statSN: 4, expCmdSN: 5, maxCmdSN: 6, r2tSN: 7, bufferOffset: 8192, desiredLength: 262144 }), undefined],
  ['NOP-In', encodeNopIn({ lun: 0, initiatorTaskTag: 0xffffffff, targetTransferTag: 12, statSN: 1, expCmdSN: 1, maxCmdSN: 1, dataLength: 0 }), undefined],
  ['Logout Response', encodeLogoutResponse({ response: 0, initiatorTaskTag: 1, time2WaitS: 2, time2RetainS: 0, statSN: 1, expCmdSN: 1, maxCmdSN: 1 }), undefined],
  ['Reject', encodeReject({ reason: 9, dataSN: 0, statSN: 1, expCmdSN: 1, maxCmdSN: 1 }), Buffer.alloc(48, 7)],
  ['Task Management Response', encodeTaskManagementResponse({ response: 1, initiatorTaskTag: 4, statSN: 1, expCmdSN: 1, maxCmdSN: 1 }), undefined],
  ['Async Message', encodeAsyncMessage({ lun: 0, event: 1, vcode: 0, parameter1: 0, parameter2: 0, parameter3: 5, statSN: 1, expCmdSN: 1, maxCmdSN: 1, dataLength: 0 }), undefined],
];

for (const digests of [noDigests, { header: true, data: true }] as Digests[]) {
  for (const [chunkName, sizes] of chunkings) {
    test(`target PDUs round-trip through the parser ${chunkName}${digests.header ? ' with digests' : ''}`, (t) => {
      const stream = Buffer.concat(targetPdus.flatMap(([, bhs, data]) => framePdu(bhs, data, digests)));
      const results = feed(stream, sizes, digests);
      t.is(results.length, targetPdus.length);
      results.forEach((r, i) => {
        const [name, bhs, data] = targetPdus[i];
        t.is(r.kind, 'pdu', name);
        if (r.kind !== 'pdu') return;
        t.deepEqual(r.pdu.bhs, bhs, name);
        t.deepEqual(r.pdu.data, data ?? Buffer.alloc(0), name);
      });
    });
  }
}

test('Data-In with status carries S and F bits, status, StatSN and the residual', (t) => {
  const bhs = encodeDataIn({ final: false, lun: 0, initiatorTaskTag: 1, expCmdSN: 2, maxCmdSN: 3, dataSN: 0, bufferOffset: 0, dataLength: 4, status: { status: 0, statSN: 99, residual: { overflow: false, underflow: true, count: 100 } } });
  t.is(bhs[0], 0x25);
  t.is(bhs[1], 0x80 | 0x02 | 0x01);
  t.is(bhs.readUInt32BE(24), 99);
  t.is(bhs.readUInt32BE(44), 100);
  t.is(bhs.readUInt32BE(20), 0xffffffff);
});

test('a PDU that lies in one chunk is parsed without copying its data', (t) => {
  const data = Buffer.alloc(4096, 0x33);
  const stream = wire(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: [0x2a], write: true, edtl: 4096, data }).bhs, data);
  const results = feed(stream, [stream.length]);
  t.is(results.length, 1);
  const r = results[0];
  if (r.kind !== 'pdu') return t.fail();
  t.is(r.pdu.data.buffer, stream.buffer);
  t.deepEqual(r.pdu.data, data);
});

test('a data segment spanning chunks comes back as views of those chunks, not a copy', (t) => {
  const data = Buffer.alloc(9000);
  for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
  const stream = wire(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: [0x2a], write: true, edtl: 9000, data }).bhs, data);
  // Three separate chunks, each its own allocation (as socket reads are): header + 100 data bytes,
  // 5000 bytes, the rest.
  const cuts = [48 + 100, 48 + 5100, stream.length];
  const chunks = cuts.map((end, i) => Buffer.from(stream.subarray(i === 0 ? 0 : cuts[i - 1], end)));
  const parser = new PduParser({ headerDigest: false, dataDigest: false, dataSegmentBytesMax: 1 << 20 });
  for (const c of chunks) parser.push(c);
  const r = parser.next();
  if (r?.kind !== 'pdu') return t.fail();
  const parts = r.pdu.dataParts ?? [];
  t.deepEqual(parts.map((p) => p.length), [100, 5000, 3900]);
  t.deepEqual(parts.map((p) => p.buffer), chunks.map((c) => c.buffer), 'each piece shares its chunk\'s memory');
  t.deepEqual(r.pdu.data, data, 'data joins the pieces when read');
});

test('a header digest mismatch is fatal and stops the parser', (t) => {
  const pdu = scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: [0], edtl: 0 });
  const bytes = wire(pdu.bhs, undefined, { header: true, data: false });
  bytes[48] ^= 1;
  const results = feed(Buffer.concat([bytes, bytes]), [1], { header: true, data: false });
  t.is(results.length, 1);
  t.like(results[0], { kind: 'fatal', reason: 'header-digest' });
});

test('a data digest mismatch returns the PDU flagged, and parsing continues', (t) => {
  const data = Buffer.from('abcdefg');
  const pdu = scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: [0x2a], write: true, edtl: 7, data });
  const bad = wire(pdu.bhs, data, { header: true, data: true });
  bad[bad.length - 1] ^= 0x80;
  const good = wire(pdu.bhs, data, { header: true, data: true });
  const results = feed(Buffer.concat([bad, good]), [5], { header: true, data: true });
  t.deepEqual(results.map((r) => r.kind), ['data-digest-error', 'pdu']);
});

test('a data segment longer than our MaxRecvDataSegmentLength is fatal as soon as the header arrives', (t) => {
  const pdu = scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: [0x2a], write: true, edtl: 9000, data: Buffer.alloc(8193) });
  const header = wire(pdu.bhs, pdu.data).subarray(0, 48);
  const results = feed(header, [48], noDigests, 8192);
  t.like(results[0], { kind: 'fatal', reason: 'data-segment-too-long' });
});

test('an incomplete PDU yields nothing until its last byte', (t) => {
  const data = Buffer.alloc(10, 1);
  const bytes = wire(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: [0x2a], write: true, edtl: 10, data }).bhs, data);
  const parser = new PduParser({ headerDigest: false, dataDigest: false, dataSegmentBytesMax: 1 << 20 });
  parser.push(bytes.subarray(0, bytes.length - 1));
  t.is(parser.next(), undefined);
  parser.push(bytes.subarray(bytes.length - 1));
  t.is(parser.next()?.kind, 'pdu');
  t.is(parser.bufferedBytes, 0);
});

const lunCases: Array<[number, string]> = [
  [0, '0000'],
  [1, '0001'],
  [255, '00ff'],
  [256, '4100'],
  [16383, '7fff'],
];
for (const [lun, hex] of lunCases) {
  test(`LUN ${lun} encodes as ${hex} and decodes back`, (t) => {
    const b = Buffer.alloc(48);
    encodeLun(lun, b);
    t.is(b.toString('hex', 8, 10), hex);
    t.is(decodeLun(b), lun);
  });
}

test('a LUN in an addressing method we do not serve decodes to a LUN no target has', (t) => {
  const b = Buffer.alloc(48);
  b[8] = 0xc0; // extended logical unit addressing
  t.is(decodeLun(b), lunUnsupported);
});

test('an extended CDB AHS makes a 32-byte CDB; a bidirectional AHS gives the read length', (t) => {
  const cdb16 = Buffer.from(Array.from({ length: 16 }, (_, i) => i + 1));
  const ext = Buffer.alloc(20);
  ext.writeUInt16BE(17, 0); // 16 more CDB bytes + the reserved byte
  ext[2] = 1;
  for (let i = 0; i < 16; i++) ext[4 + i] = 100 + i;
  const bidi = Buffer.alloc(8);
  bidi.writeUInt16BE(5, 0);
  bidi[2] = 2;
  bidi.writeUInt32BE(4096, 4);
  const base = scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: cdb16, read: true, write: true, edtl: 512 });
  const r = decodeScsiCommand(pduOf(base.bhs, Buffer.alloc(0), Buffer.concat([ext, bidi])));
  if (!r.ok) return t.fail(r.reason);
  t.is(r.value.cdb.length, 32);
  t.is(r.value.cdb[16], 100);
  t.is(r.value.cdb[31], 115);
  t.is(r.value.expectedReadLength, 4096);
});

test('an AHS that runs past TotalAHSLength is refused', (t) => {
  const ahs = Buffer.alloc(8);
  ahs.writeUInt16BE(40, 0);
  ahs[2] = 1;
  const base = scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: [0], edtl: 0 });
  t.false(decodeScsiCommand(pduOf(base.bhs, Buffer.alloc(0), ahs)).ok);
});

test('serial number arithmetic wraps at 2^32 (RFC 1982)', (t) => {
  t.true(snLess(0xfffffff0, 5));
  t.false(snLess(5, 0xfffffff0));
  t.is(snAdd(0xffffffff, 2), 1);
  t.true(snWithin(2, 0xfffffffe, 10));
  t.false(snWithin(11, 0xfffffffe, 10));
});
