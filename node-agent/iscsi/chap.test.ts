import test from 'ava';
import { createHash } from 'node:crypto';
import { chapResponse, chapStep, decodeChapBinary, type ChapCredentials, type ChapState } from './chap.ts';

const creds: ChapCredentials = { user: 'host1', secret: 'initiator-secret-1', mutual: { user: 'target1', secret: 'target-secret-22' } };
/** Deterministic "randomness": byte i of every draw is seed + i. */
const random = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (7 + i) & 0xff));

function challenged(): { state: Extract<ChapState, { step: 'await-response' }>; keys: Record<string, string> } {
  const r = chapStep({ step: 'await-algorithm' }, new Map([['CHAP_A', '7,5']]), creds, random);
  if (!r.ok || r.state.step !== 'await-response') throw new Error('no challenge');
  return { state: r.state, keys: Object.fromEntries(r.responses) };
}

function answer(id: number, secret: string, challenge: Buffer): string {
  return `0x${createHash('md5').update(Buffer.of(id)).update(secret).update(challenge).digest('hex')}`;
}

test('RFC 1994 response: MD5 over identifier, secret and challenge', (t) => {
  const c = Buffer.from('0123456789abcdef', 'hex');
  t.is(chapResponse(1, 'secret', c).toString('hex'), createHash('md5').update(Buffer.from([1])).update('secret').update(c).digest('hex'));
});

test('the target picks MD5 from the initiator list and sends an identifier and a 16-byte challenge', (t) => {
  const { state, keys } = challenged();
  t.is(keys.CHAP_A, '5');
  t.is(keys.CHAP_I, String(state.id));
  t.regex(keys.CHAP_C, /^0x[0-9a-f]{32}$/);
});

test('an initiator offering no MD5 fails authentication', (t) => {
  const r = chapStep({ step: 'await-algorithm' }, new Map([['CHAP_A', '6,7']]), creds, random);
  t.false(r.ok);
});

test('one-way CHAP: the right name and response authenticate, and nothing is answered', (t) => {
  const { state } = challenged();
  const r = chapStep(state, new Map([['CHAP_N', 'host1'], ['CHAP_R', answer(state.id, creds.secret, state.challenge)]]), creds, random);
  t.deepEqual(r, { ok: true, state: { step: 'done', mutual: false }, responses: [] });
});

test('a response in base64 (0b) is accepted too', (t) => {
  const { state } = challenged();
  const b64 = `0b${Buffer.from(answer(state.id, creds.secret, state.challenge).slice(2), 'hex').toString('base64')}`;
  const r = chapStep(state, new Map([['CHAP_N', 'host1'], ['CHAP_R', b64]]), creds, random);
  t.true(r.ok);
});

const refusals: Array<[string, (s: { id: number; challenge: Buffer }) => Record<string, string>]> = [
  ['a wrong secret', (s) => ({ CHAP_N: 'host1', CHAP_R: answer(s.id, 'not-the-secret', s.challenge) })],
  ['a wrong user name', (s) => ({ CHAP_N: 'host2', CHAP_R: answer(s.id, creds.secret, s.challenge) })],
  ['a response to another identifier', (s) => ({ CHAP_N: 'host1', CHAP_R: answer((s.id + 1) & 0xff, creds.secret, s.challenge) })],
  ['a truncated response', (s) => ({ CHAP_N: 'host1', CHAP_R: answer(s.id, creds.secret, s.challenge).slice(0, 20) })],
  ['a response that is not binary', () => ({ CHAP_N: 'host1', CHAP_R: 'hello' })],
  ['no CHAP_R at all', () => ({ CHAP_N: 'host1' })],
  [
    'mutual CHAP that reflects our own challenge',
    (s) => ({ CHAP_N: 'host1', CHAP_R: answer(s.id, creds.secret, s.challenge), CHAP_I: '3', CHAP_C: `0x${s.challenge.toString('hex')}` }),
  ],
  ['mutual CHAP with CHAP_C but no CHAP_I', (s) => ({ CHAP_N: 'host1', CHAP_R: answer(s.id, creds.secret, s.challenge), CHAP_C: '0x0102' })],
  ['mutual CHAP with an identifier over 255', (s) => ({ CHAP_N: 'host1', CHAP_R: answer(s.id, creds.secret, s.challenge), CHAP_I: '256', CHAP_C: '0x0102' })],
];
for (const [name, keys] of refusals) {
  test(`CHAP refuses ${name}`, (t) => {
    const { state } = challenged();
    const r = chapStep(state, new Map(Object.entries(keys(state))), creds, random);
    t.false(r.ok);
    if (!r.ok) t.false(r.reason.includes(creds.secret), 'the reason never names the secret');
  });
}

test('mutual CHAP: the target answers the initiator challenge with its own name and secret', (t) => {
  const { state } = challenged();
  const theirs = Buffer.from('ffeeddccbbaa99887766554433221100', 'hex');
  const r = chapStep(
    state,
    new Map([
      ['CHAP_N', 'host1'],
      ['CHAP_R', answer(state.id, creds.secret, state.challenge)],
      ['CHAP_I', '42'],
      ['CHAP_C', `0x${theirs.toString('hex')}`],
    ]),
    creds,
    random,
  );
  if (!r.ok) return t.fail(r.reason);
  t.deepEqual(Object.fromEntries(r.responses), { CHAP_N: 'target1', CHAP_R: answer(42, 'target-secret-22', theirs) });
});

test('mutual CHAP requested of a target configured one-way is refused', (t) => {
  const oneWay: ChapCredentials = { user: 'host1', secret: creds.secret };
  const r0 = chapStep({ step: 'await-algorithm' }, new Map([['CHAP_A', '5']]), oneWay, random);
  if (!r0.ok || r0.state.step !== 'await-response') return t.fail();
  const s = r0.state;
  const r = chapStep(s, new Map([['CHAP_N', 'host1'], ['CHAP_R', answer(s.id, creds.secret, s.challenge)], ['CHAP_I', '1'], ['CHAP_C', '0xabcd']]), oneWay, random);
  t.false(r.ok);
});

test('binary values: hex with odd digits, base64, and garbage', (t) => {
  t.deepEqual(decodeChapBinary('0xabc'), Buffer.from([0x0a, 0xbc]));
  t.deepEqual(decodeChapBinary('0bAQID'), Buffer.from([1, 2, 3]));
  t.is(decodeChapBinary('abc'), undefined);
  t.is(decodeChapBinary('0x'), undefined);
});
