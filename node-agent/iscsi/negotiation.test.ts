import test from 'ava';
import { initialNegotiation, negotiate, parseNumber, type SessionParams, type SessionType, type TargetPreferences } from './negotiation.ts';
import { decodeText, encodeText, splitText, TextAccumulator } from './text-keys.ts';

const prefs: TargetPreferences = {
  digests: ['CRC32C', 'None'],
  maxRecvDataSegmentBytes: 262144,
  maxBurstBytes: 8 * 1024 * 1024,
  firstBurstBytes: 262144,
  initialR2T: false,
  immediateData: true,
  maxOutstandingR2T: 16,
  defaultTime2WaitS: 2,
  defaultTime2RetainS: 0,
};

type Row = [offer: string, value: string, answer: string | undefined, effect?: Partial<SessionParams>, type?: SessionType];

// One row per behaviour: what the initiator offers, what the target answers, what the session gets.
const rows: Row[] = [
  // list: the first of the initiator's values we support (RFC 7143 §6.2.1)
  ['HeaderDigest', 'CRC32C,None', 'CRC32C', { headerDigest: true }],
  ['HeaderDigest', 'None,CRC32C', 'None', { headerDigest: false }],
  ['DataDigest', 'CRC32C', 'CRC32C', { dataDigest: true }],
  ['HeaderDigest', 'MD5', 'Reject', { headerDigest: false }],
  ['TaskReporting', 'FastAbort,RFC3720', 'RFC3720'],
  // numerical minimum, within RFC bounds
  ['MaxBurstLength', '262144', '262144', { maxBurstBytes: 262144 }],
  ['MaxBurstLength', '16776192', '8388608', { maxBurstBytes: 8388608 }],
  ['MaxBurstLength', '511', 'Reject', { maxBurstBytes: 262144 }],
  ['MaxBurstLength', '16777216', 'Reject'],
  ['MaxBurstLength', '0x40000', '262144', { maxBurstBytes: 262144 }],
  ['MaxBurstLength', 'lots', 'Reject'],
  ['FirstBurstLength', '65536', '65536', { firstBurstBytes: 65536 }],
  ['FirstBurstLength', '1048576', '262144', { firstBurstBytes: 262144 }],
  ['MaxConnections', '8', '1', { maxConnections: 1 }],
  ['MaxConnections', '0', 'Reject'],
  ['ErrorRecoveryLevel', '2', '0', { errorRecoveryLevel: 0 }],
  ['ErrorRecoveryLevel', '3', 'Reject'],
  ['MaxOutstandingR2T', '64', '16', { maxOutstandingR2T: 16 }],
  ['MaxOutstandingR2T', '1', '1', { maxOutstandingR2T: 1 }],
  ['DefaultTime2Retain', '20', '0', { defaultTime2RetainS: 0 }],
  ['DefaultTime2Retain', '3601', 'Reject'],
  ['iSCSIProtocolLevel', '2', '1'],
  // numerical maximum
  ['DefaultTime2Wait', '0', '2', { defaultTime2WaitS: 2 }],
  ['DefaultTime2Wait', '10', '10', { defaultTime2WaitS: 10 }],
  // boolean OR (InitialR2T: we say No, so the initiator decides) and AND (ImmediateData: we say Yes)
  ['InitialR2T', 'No', 'No', { initialR2T: false }],
  ['InitialR2T', 'Yes', 'Yes', { initialR2T: true }],
  ['ImmediateData', 'No', 'No', { immediateData: false }],
  ['ImmediateData', 'Yes', 'Yes', { immediateData: true }],
  ['ImmediateData', 'maybe', 'Reject', { immediateData: true }],
  ['DataPDUInOrder', 'No', 'Yes', { dataPduInOrder: true }],
  ['DataSequenceInOrder', 'No', 'Yes', { dataSequenceInOrder: true }],
  // declarative: no answer, the value is the initiator's
  ['MaxRecvDataSegmentLength', '65536', undefined, { initiatorMaxRecvDataSegmentBytes: 65536 }],
  ['MaxRecvDataSegmentLength', '100', 'Reject', { initiatorMaxRecvDataSegmentBytes: 8192 }],
  // obsolete markers (RFC 7143 §13.25)
  ['IFMarker', 'Yes', 'No'],
  ['OFMarker', 'No', 'No'],
  ['OFMarkInt', '2048~4096', 'Reject'],
  // keys only a target sends
  ['TargetPortalGroupTag', '1', 'Reject'],
  ['TargetAddress', '10.0.0.1:3260,1', 'Reject'],
  // unknown and vendor keys
  ['X-com.example.Fancy', 'Yes', 'NotUnderstood'],
  ['MadeUpKey', '1', 'NotUnderstood'],
  // iSER keys without iSER
  ['RDMAExtensions', 'Yes', 'No'],
  ['TargetRecvDataSegmentLength', '8192', 'Irrelevant'],
  // SendTargets belongs to full feature phase
  ['SendTargets', 'All', 'Irrelevant'],
  // names are login.ts's business: no answer here
  ['InitiatorName', 'iqn.2026-11.org.example:host1', undefined],
  // discovery sessions: the data-transfer keys are Irrelevant (RFC 7143 §13)
  ['MaxBurstLength', '262144', 'Irrelevant', { maxBurstBytes: 262144 }, 'Discovery'],
  ['InitialR2T', 'No', 'Irrelevant', { initialR2T: true }, 'Discovery'],
  ['MaxOutstandingR2T', '4', 'Irrelevant', undefined, 'Discovery'],
  ['HeaderDigest', 'CRC32C,None', 'CRC32C', { headerDigest: true }, 'Discovery'],
  ['MaxRecvDataSegmentLength', '4096', undefined, { initiatorMaxRecvDataSegmentBytes: 4096 }, 'Discovery'],
];

for (const [key, value, answer, effect, type] of rows) {
  test(`${type ?? 'Normal'} login: ${key}=${value} is answered ${answer ?? 'with nothing'}`, (t) => {
    const r = negotiate(initialNegotiation(prefs, type ?? 'Normal'), [[key, value]], prefs, 'login');
    if (!r.ok) return t.fail(r.reason);
    t.deepEqual(r.responses, answer === undefined ? [] : [[key, answer]]);
    if (effect) t.like(r.state.params, effect);
  });
}

test('keys spread over several requests accumulate; a key offered twice fails the login', (t) => {
  let s = initialNegotiation(prefs, 'Normal');
  const first = negotiate(s, [['MaxBurstLength', '1048576']], prefs, 'login');
  if (!first.ok) return t.fail();
  s = first.state;
  const second = negotiate(s, [['FirstBurstLength', '65536'], ['ImmediateData', 'No']], prefs, 'login');
  if (!second.ok) return t.fail();
  t.like(second.state.params, { maxBurstBytes: 1048576, firstBurstBytes: 65536, immediateData: false });
  const again = negotiate(second.state, [['MaxBurstLength', '262144']], prefs, 'login');
  t.false(again.ok);
});

test('FirstBurstLength is Irrelevant when InitialR2T=Yes and ImmediateData=No, even offered before them', (t) => {
  const r = negotiate(
    initialNegotiation(prefs, 'Normal'),
    [['FirstBurstLength', '65536'], ['InitialR2T', 'Yes'], ['ImmediateData', 'No']],
    prefs,
    'login',
  );
  if (!r.ok) return t.fail();
  t.deepEqual(r.responses, [['FirstBurstLength', 'Irrelevant'], ['InitialR2T', 'Yes'], ['ImmediateData', 'No']]);
});

test('FirstBurstLength never ends above MaxBurstLength', (t) => {
  const r = negotiate(initialNegotiation(prefs, 'Normal'), [['MaxBurstLength', '65536'], ['FirstBurstLength', '262144']], prefs, 'login');
  if (!r.ok) return t.fail();
  t.is(r.state.params.firstBurstBytes, 65536);
  t.deepEqual(r.responses[1], ['FirstBurstLength', '65536']);
});

test('in a Text request only ALL keys negotiate; login-only keys are rejected', (t) => {
  const r = negotiate(
    initialNegotiation(prefs, 'Normal'),
    [['MaxRecvDataSegmentLength', '16384'], ['MaxBurstLength', '65536'], ['Unheard', 'x']],
    prefs,
    'ffp',
  );
  if (!r.ok) return t.fail();
  t.deepEqual(r.responses, [['MaxBurstLength', 'Reject'], ['Unheard', 'NotUnderstood']]);
  t.is(r.state.params.initiatorMaxRecvDataSegmentBytes, 16384);
});

test('a target that accepts no digests answers Reject to CRC32C-only offers', (t) => {
  const noDigestPrefs = { ...prefs, digests: ['None'] as const };
  const r = negotiate(initialNegotiation(noDigestPrefs, 'Normal'), [['HeaderDigest', 'CRC32C'], ['DataDigest', 'CRC32C,None']], noDigestPrefs, 'login');
  if (!r.ok) return t.fail();
  t.deepEqual(r.responses, [['HeaderDigest', 'Reject'], ['DataDigest', 'None']]);
});

test('numbers: decimal and hex are read, signs, blanks and overlong strings are not', (t) => {
  t.is(parseNumber('8192'), 8192);
  t.is(parseNumber('0x2000'), 8192);
  t.is(parseNumber('-1'), undefined);
  t.is(parseNumber(' 1'), undefined);
  t.is(parseNumber(''), undefined);
  t.is(parseNumber('1'.repeat(30)), undefined);
});

// ---- text codec ----

test('text pairs round-trip; values may contain = and commas', (t) => {
  const pairs: Array<[string, string]> = [['TargetName', 'iqn.2026-11.io.metrocluster:demo.db'], ['X-a', 'b=c,d'], ['Empty', '']];
  const r = decodeText(encodeText(pairs));
  t.deepEqual(r, { ok: true, pairs });
});

test('a missing final NUL and stray NULs are tolerated', (t) => {
  t.deepEqual(decodeText(Buffer.from('A=1\0\0B=2')), { ok: true, pairs: [['A', '1'], ['B', '2']] });
});

const badTexts: Array<[string, string]> = [
  ['an item without =', 'JustAKey\0'],
  ['an empty key', '=value\0'],
  ['a key with spaces', 'Bad Key=1\0'],
  ['a 64-byte key', `${'K'.repeat(64)}=1\0`],
  ['a value over 8192 bytes', `CHAP_C=0x${'a'.repeat(8200)}\0`],
];
for (const [name, text] of badTexts) {
  test(`text with ${name} is refused`, (t) => {
    t.false(decodeText(Buffer.from(text)).ok);
  });
}

test('a long answer splits at the segment limit, possibly inside a pair, and rejoins exactly', (t) => {
  const pairs = Array.from({ length: 200 }, (_, i): [string, string] => [`TargetName`, `iqn.2026-11.io.metrocluster:c.g${i}`]);
  const whole = encodeText(pairs);
  const parts = splitText(whole, 512);
  t.true(parts.length > 1);
  t.true(parts.every((p) => p.length <= 512));
  t.deepEqual(Buffer.concat(parts), whole);
});

test('the accumulator refuses text beyond its limit', (t) => {
  const acc = new TextAccumulator(10);
  t.true(acc.append(Buffer.from('A=123')));
  t.false(acc.append(Buffer.from('B=12345')));
  t.deepEqual(acc.take(), Buffer.from('A=123'));
  t.false(acc.pending);
});
