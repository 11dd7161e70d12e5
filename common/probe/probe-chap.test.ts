// The probe initiator's CHAP, pure: the keys it sends at each step, the exchange driven against the
// agent's target-side CHAP (node-agent/iscsi/chap.ts), and every answer of a target it refuses.
import test from 'ava';
import { createHash } from 'node:crypto';
import { initiatorChapStep, type InitiatorChapState, type ProbeChapCredentials } from './probe-chap.ts';
import { chapStep, type ChapCredentials, type ChapState } from '../../node-agent/iscsi/chap.ts';

const oneWay: ProbeChapCredentials = { user: 'host1', secret: 'initiator-secret-1' };
const mutual: ProbeChapCredentials = { ...oneWay, mutual: { user: 'metro', secret: 'target-secret-22' } };
/** Deterministic "randomness": byte i of every draw is seed + i. */
const random = (seed: number) => (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (seed + i) & 0xff));
const md5 = (id: number, secret: string, c: Buffer) => createHash('md5').update(Buffer.of(id)).update(secret).update(c).digest('hex');

function run(s: InitiatorChapState, target: Record<string, string>, creds: ProbeChapCredentials) {
  return initiatorChapStep(s, target, creds, random(40));
}

test('the probe offers CHAP only, then asks for MD5', (t) => {
  const a = run({ step: 'start' }, {}, oneWay);
  t.deepEqual(a, { ok: true, state: { step: 'await-method' }, send: { AuthMethod: 'CHAP' } });
  const b = run({ step: 'await-method' }, { AuthMethod: 'CHAP', TargetPortalGroupTag: '1' }, oneWay);
  t.deepEqual(b, { ok: true, state: { step: 'await-challenge' }, send: { CHAP_A: '5' } });
});

test('one-way: the response is MD5 over the identifier, the secret and the challenge', (t) => {
  const c = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const r = run({ step: 'await-challenge' }, { CHAP_A: '5', CHAP_I: '17', CHAP_C: `0x${c.toString('hex')}` }, oneWay);
  t.deepEqual(r, { ok: true, state: { step: 'done' }, send: { CHAP_N: 'host1', CHAP_R: `0x${md5(17, oneWay.secret, c)}` } });
});

test('a challenge in base64 (0b) is answered too', (t) => {
  const c = Buffer.from('challenge-bytes!');
  const r = run({ step: 'await-challenge' }, { CHAP_A: '5', CHAP_I: '3', CHAP_C: `0b${c.toString('base64')}` }, oneWay);
  t.true(r.ok && r.send.CHAP_R === `0x${md5(3, oneWay.secret, c)}`);
});

test('mutual: the probe challenges the target and accepts only its proof of the target secret', (t) => {
  const r = run({ step: 'await-challenge' }, { CHAP_A: '5', CHAP_I: '9', CHAP_C: '0x0102030405' }, mutual);
  if (!r.ok || r.state.step !== 'await-proof') { t.fail(JSON.stringify(r)); return; }
  t.is(r.send.CHAP_I, String(r.state.id));
  t.is(r.send.CHAP_C, `0x${r.state.challenge.toString('hex')}`);
  t.is(r.state.challenge.length, 16);
  const proof = `0x${md5(r.state.id, mutual.mutual!.secret, r.state.challenge)}`;
  t.deepEqual(run(r.state, { CHAP_N: 'metro', CHAP_R: proof }, mutual), { ok: true, state: { step: 'done' }, send: {} });
});

const refusals: Array<[string, InitiatorChapState, Record<string, string>, RegExp]> = [
  ['a target that picks no authentication', { step: 'await-method' }, { AuthMethod: 'None' }, /AuthMethod=None to an offer of CHAP only/],
  ['another algorithm than MD5', { step: 'await-challenge' }, { CHAP_A: '7', CHAP_I: '1', CHAP_C: '0x01' }, /CHAP_A=7/],
  ['an identifier over 255', { step: 'await-challenge' }, { CHAP_A: '5', CHAP_I: '256', CHAP_C: '0x01' }, /CHAP_I 256/],
  ['no identifier', { step: 'await-challenge' }, { CHAP_A: '5', CHAP_C: '0x01' }, /CHAP_I \(missing\)/],
  ['a challenge that is not binary', { step: 'await-challenge' }, { CHAP_A: '5', CHAP_I: '1', CHAP_C: 'hello' }, /CHAP_C is not a binary value/],
  ['a challenge over 1024 bytes', { step: 'await-challenge' }, { CHAP_A: '5', CHAP_I: '1', CHAP_C: `0x${'ab'.repeat(1025)}` }, /1 to 1024 bytes/],
  ['CHAP keys after CHAP completed', { step: 'done' }, { CHAP_C: '0x01' }, /after CHAP completed/],
];
for (const [name, state, keys, reason] of refusals) {
  test(`the probe refuses ${name}`, (t) => {
    const r = run(state, keys, mutual);
    t.false(r.ok);
    if (!r.ok) t.regex(r.reason, reason);
  });
}

const proofState = { step: 'await-proof' as const, id: 4, challenge: Buffer.alloc(16, 0x5a) };
const badProofs: Array<[string, Record<string, string>]> = [
  ['no proof at all', {}],
  ['a proof made with another secret', { CHAP_N: 'metro', CHAP_R: `0x${md5(4, 'not-the-target-secret', proofState.challenge)}` }],
  ['a proof for another identifier', { CHAP_N: 'metro', CHAP_R: `0x${md5(5, mutual.mutual!.secret, proofState.challenge)}` }],
  ['the right proof under another name', { CHAP_N: 'impostor', CHAP_R: `0x${md5(4, mutual.mutual!.secret, proofState.challenge)}` }],
  ['a proof that is not binary', { CHAP_N: 'metro', CHAP_R: 'proof' }],
];
for (const [name, keys] of badProofs) {
  test(`mutual CHAP: the probe refuses a target with ${name}`, (t) => {
    const r = run(proofState, keys, mutual);
    t.false(r.ok);
    if (!r.ok) {
      t.regex(r.reason, /did not (answer|prove)/);
      t.false(r.reason.includes(mutual.secret) || r.reason.includes(mutual.mutual!.secret), 'no reason names a secret');
    }
  });
}

/** Drives the probe's steps against the agent's target-side chapStep, as a login would carry them. */
function exchange(probe: ProbeChapCredentials, target: ChapCredentials): { probeOk: boolean; targetOk: boolean; reason: string } {
  const first = run({ step: 'start' }, {}, probe);
  if (!first.ok) return { probeOk: false, targetOk: true, reason: first.reason };
  const asked = run(first.state, { AuthMethod: 'CHAP' }, probe);
  if (!asked.ok) return { probeOk: false, targetOk: true, reason: asked.reason };
  let ts: ChapState = { step: 'await-algorithm' };
  const challenge = chapStep(ts, new Map(Object.entries(asked.send)), target, random(90));
  if (!challenge.ok) return { probeOk: true, targetOk: false, reason: challenge.reason };
  ts = challenge.state;
  const answered = initiatorChapStep(asked.state, Object.fromEntries(challenge.responses), probe, random(7));
  if (!answered.ok) return { probeOk: false, targetOk: true, reason: answered.reason };
  const checked = chapStep(ts, new Map(Object.entries(answered.send)), target, random(90));
  if (!checked.ok) return { probeOk: true, targetOk: false, reason: checked.reason };
  const last = initiatorChapStep(answered.state, Object.fromEntries(checked.responses), probe, random(7));
  if (!last.ok) return { probeOk: false, targetOk: true, reason: last.reason };
  return { probeOk: last.state.step === 'done', targetOk: checked.state.step === 'done', reason: '' };
}

const exchanges: Array<[string, ProbeChapCredentials, ChapCredentials, { probeOk: boolean; targetOk: boolean }]> = [
  ['one-way with the right secret', oneWay, { user: 'host1', secret: oneWay.secret }, { probeOk: true, targetOk: true }],
  ['mutual with both secrets right', mutual, { user: 'host1', secret: oneWay.secret, mutual: mutual.mutual }, { probeOk: true, targetOk: true }],
  ['a wrong initiator secret', { ...oneWay, secret: 'wrong-secret-000' }, { user: 'host1', secret: oneWay.secret }, { probeOk: true, targetOk: false }],
  ['a wrong CHAP user', { ...oneWay, user: 'host2' }, { user: 'host1', secret: oneWay.secret }, { probeOk: true, targetOk: false }],
  ['mutual asked of a target without a target secret', mutual, { user: 'host1', secret: oneWay.secret }, { probeOk: true, targetOk: false }],
  ['a target that proves another target secret', mutual, { user: 'host1', secret: oneWay.secret, mutual: { user: 'metro', secret: 'impostor-secret-9' } }, { probeOk: false, targetOk: true }],
];
for (const [name, probe, target, want] of exchanges) {
  test(`exchange with the agent's CHAP: ${name}`, (t) => {
    const r = exchange(probe, target);
    t.like(r, want, r.reason);
  });
}
