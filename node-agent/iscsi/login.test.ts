import test from 'ava';
import { createHash } from 'node:crypto';
import { LoginStatus } from './constants.ts';
import { finishLogin, initialLoginState, loginStep, type LoginConfig, type LoginState, type LoginStep } from './login.ts';
import type { TargetPreferences } from './negotiation.ts';
import { encodeText } from './text-keys.ts';
import { loginPdu, nopOutPdu, textOf, type LoginFields } from './test-support.ts';

const target = 'iqn.2026-11.io.metrocluster:demo.db';
const initiator = 'iqn.2026-11.org.example:host1';
const prefs: TargetPreferences = {
  digests: ['CRC32C', 'None'],
  maxRecvDataSegmentBytes: 262144,
  maxBurstBytes: 8388608,
  firstBurstBytes: 262144,
  initialR2T: false,
  immediateData: true,
  maxOutstandingR2T: 16,
  defaultTime2WaitS: 2,
  defaultTime2RetainS: 0,
};
const chap = { user: 'host1', secret: 'initiator-secret-1', mutual: { user: 'tgt', secret: 'target-secret-22' } };

function config(over: Partial<LoginConfig> = {}): LoginConfig {
  return {
    prefs,
    portalGroupTag: 2,
    targetExists: (iqn) => iqn === target,
    initiatorsAllowed: [],
    random: (n) => Buffer.alloc(n, 0x5c),
    sessionExists: (name, _isid, tsih) => name === initiator && tsih === 77,
    ...over,
  };
}

const firstKeys = { InitiatorName: initiator, TargetName: target, SessionType: 'Normal' };

/** Runs requests in order; stops at the first step that is not 'continue'. */
function drive(cfg: LoginConfig, requests: LoginFields[], start: LoginState = initialLoginState(prefs, 1000)): LoginStep[] {
  const steps: LoginStep[] = [];
  let s = start;
  for (const r of requests) {
    const step = loginStep(s, loginPdu(r), cfg);
    steps.push(step);
    if (step.kind !== 'continue') break;
    s = step.state;
  }
  return steps;
}

function flagsOf(step: LoginStep): { transit: boolean; cont: boolean; csg: number; nsg: number } {
  if (step.kind !== 'continue') throw new Error(`step is ${step.kind}`);
  const f = step.response.bhs[1];
  return { transit: (f & 0x80) !== 0, cont: (f & 0x40) !== 0, csg: (f >> 2) & 3, nsg: f & 3 };
}
function keysOf(step: LoginStep): Record<string, string> {
  if (step.kind === 'continue') return textOf(step.response);
  if (step.kind === 'admit') return textOf({ data: step.responseText });
  return {};
}

test('security then operational stage: each transit is granted and the target declares what it must', (t) => {
  const steps = drive(config(), [
    { csg: 0, nsg: 1, transit: true, keys: { ...firstKeys, AuthMethod: 'None' } },
    { csg: 1, nsg: 3, transit: true, keys: { HeaderDigest: 'None', MaxRecvDataSegmentLength: '65536', MaxBurstLength: '1048576' } },
  ]);
  t.deepEqual(flagsOf(steps[0]), { transit: true, cont: false, csg: 0, nsg: 1 });
  t.deepEqual(keysOf(steps[0]), { TargetPortalGroupTag: '2', AuthMethod: 'None' });
  const last = steps[1];
  if (last.kind !== 'admit') return t.fail(last.kind);
  t.deepEqual(keysOf(last), { HeaderDigest: 'None', MaxBurstLength: '1048576', MaxRecvDataSegmentLength: '262144' });
  const { response, result } = finishLogin(last.state, last, 5, 128);
  t.is(response.bhs[1], 0x80 | (1 << 2) | 3);
  t.is(response.bhs.readUInt16BE(14), 5, 'TSIH assigned');
  t.is(response.bhs.readUInt16BE(36), 0, 'status success');
  t.is(response.bhs.readUInt32BE(24), 1001, 'StatSN: one per login response');
  t.is(response.bhs.readUInt32BE(28), 1, 'ExpCmdSN = the login CmdSN');
  t.is(response.bhs.readUInt32BE(32), 128, 'MaxCmdSN opens the window');
  t.like(result, { tsih: 5, statSN: 1002, cmdSN: 1, initiatorName: initiator, targetName: target, sessionType: 'Normal' });
  t.like(result.params, { initiatorMaxRecvDataSegmentBytes: 65536, maxBurstBytes: 1048576 });
});

test('an initiator may go straight to the operational stage and on to full feature phase', (t) => {
  const [step] = drive(config(), [{ csg: 1, nsg: 3, transit: true, keys: { ...firstKeys, ImmediateData: 'Yes' } }]);
  if (step.kind !== 'admit') return t.fail(step.kind);
  t.deepEqual(keysOf(step), { TargetPortalGroupTag: '2', ImmediateData: 'Yes', MaxRecvDataSegmentLength: '262144' });
});

test('a discovery session needs no TargetName and gets no TargetPortalGroupTag', (t) => {
  const [step] = drive(config(), [{ csg: 1, nsg: 3, transit: true, keys: { InitiatorName: initiator, SessionType: 'Discovery', MaxBurstLength: '65536' } }]);
  if (step.kind !== 'admit') return t.fail(step.kind);
  t.deepEqual(keysOf(step), { MaxBurstLength: 'Irrelevant', MaxRecvDataSegmentLength: '262144' });
  t.is(step.state.sessionType, 'Discovery');
});

test('a request without T stays in its stage; the target never sets T unasked', (t) => {
  const steps = drive(config(), [
    { csg: 0, nsg: 0, transit: false, keys: { ...firstKeys, AuthMethod: 'None' } },
    { csg: 0, nsg: 1, transit: true, keys: {} },
    { csg: 1, nsg: 0, transit: false, keys: { MaxBurstLength: '65536' } },
    { csg: 1, nsg: 3, transit: true, keys: {} },
  ]);
  t.deepEqual(flagsOf(steps[0]), { transit: false, cont: false, csg: 0, nsg: 0 });
  t.deepEqual(flagsOf(steps[1]), { transit: true, cont: false, csg: 0, nsg: 1 });
  t.deepEqual(flagsOf(steps[2]), { transit: false, cont: false, csg: 1, nsg: 0 });
  t.deepEqual(keysOf(steps[2]), { MaxBurstLength: '65536', MaxRecvDataSegmentLength: '262144' });
  t.is(steps[3].kind, 'admit');
  t.deepEqual(keysOf(steps[3]), {}, 'MaxRecvDataSegmentLength is declared once');
});

function chapAnswer(keys: Record<string, string>, secret: string): string {
  const challenge = Buffer.from(keys.CHAP_C.slice(2), 'hex');
  return `0x${createHash('md5').update(Buffer.of(Number(keys.CHAP_I))).update(secret).update(challenge).digest('hex')}`;
}

test('one-way CHAP: method, algorithm, response, then the transit is granted', (t) => {
  const cfg = config({ chap });
  const s1 = drive(cfg, [{ csg: 0, nsg: 1, transit: true, keys: { ...firstKeys, AuthMethod: 'CHAP,None' } }]);
  t.deepEqual(keysOf(s1[0]), { TargetPortalGroupTag: '2', AuthMethod: 'CHAP' });
  t.false(flagsOf(s1[0]).transit, 'not before authentication');
  const st1 = s1[0].state;
  const s2 = loginStep(st1, loginPdu({ csg: 0, nsg: 1, keys: { CHAP_A: '5' } }), cfg);
  const challenge = keysOf(s2);
  t.is(challenge.CHAP_A, '5');
  const s3 = loginStep(s2.state, loginPdu({ csg: 0, nsg: 1, transit: true, keys: { CHAP_N: 'host1', CHAP_R: chapAnswer(challenge, chap.secret) } }), cfg);
  t.deepEqual(flagsOf(s3), { transit: true, cont: false, csg: 0, nsg: 1 });
  t.deepEqual(keysOf(s3), {});
  const s4 = loginStep(s3.state, loginPdu({ csg: 1, nsg: 3, transit: true, keys: {} }), cfg);
  t.is(s4.kind, 'admit');
});

test('mutual CHAP: the target proves itself in the response that ends the security stage', (t) => {
  const cfg = config({ chap });
  const [s1] = drive(cfg, [{ csg: 0, nsg: 1, keys: { ...firstKeys, AuthMethod: 'CHAP' } }]);
  const s2 = loginStep(s1.state, loginPdu({ csg: 0, nsg: 1, keys: { CHAP_A: '5' } }), cfg);
  const challenge = keysOf(s2);
  const mine = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const s3 = loginStep(
    s2.state,
    loginPdu({ csg: 0, nsg: 1, transit: true, keys: { CHAP_N: 'host1', CHAP_R: chapAnswer(challenge, chap.secret), CHAP_I: '9', CHAP_C: `0x${mine.toString('hex')}` } }),
    cfg,
  );
  t.true(flagsOf(s3).transit);
  t.deepEqual(keysOf(s3), { CHAP_N: 'tgt', CHAP_R: chapAnswer({ CHAP_I: '9', CHAP_C: `0x${mine.toString('hex')}` }, chap.mutual.secret) });
});

type Refusal = [name: string, cfg: Partial<LoginConfig>, requests: LoginFields[], status: LoginStatus];
const refusals: Refusal[] = [
  ['no InitiatorName', {}, [{ csg: 1, nsg: 3, transit: true, keys: { TargetName: target } }], LoginStatus.MissingParameter],
  ['a normal session without TargetName', {}, [{ csg: 1, nsg: 3, transit: true, keys: { InitiatorName: initiator } }], LoginStatus.MissingParameter],
  ['an unknown target', {}, [{ csg: 1, nsg: 3, transit: true, keys: { InitiatorName: initiator, TargetName: 'iqn.x:nope' } }], LoginStatus.TargetNotFound],
  ['an initiator outside the allow-list', { initiatorsAllowed: ['iqn.2026-11.org.example:other'] }, [{ csg: 1, nsg: 3, transit: true, keys: firstKeys }], LoginStatus.AuthorizationFailure],
  ['an unknown session type', {}, [{ csg: 1, nsg: 3, transit: true, keys: { ...firstKeys, SessionType: 'Sideways' } }], LoginStatus.SessionTypeNotSupported],
  ['a version we do not speak', {}, [{ csg: 1, nsg: 3, transit: true, versionMin: 1, keys: firstKeys }], LoginStatus.UnsupportedVersion],
  ['a TSIH that names no session', {}, [{ csg: 1, nsg: 3, transit: true, tsih: 12, keys: firstKeys }], LoginStatus.SessionDoesNotExist],
  ['AuthMethod=None when CHAP is required', { chap }, [{ csg: 0, nsg: 1, transit: true, keys: { ...firstKeys, AuthMethod: 'None' } }], LoginStatus.AuthenticationFailure],
  ['skipping the security stage when CHAP is required', { chap }, [{ csg: 1, nsg: 3, transit: true, keys: firstKeys }], LoginStatus.AuthenticationFailure],
  ['leaving the security stage without authenticating', { chap }, [{ csg: 0, nsg: 1, transit: true, keys: firstKeys }], LoginStatus.AuthenticationFailure],
  ['offering only CHAP to a target without CHAP', {}, [{ csg: 0, nsg: 1, transit: true, keys: { ...firstKeys, AuthMethod: 'CHAP' } }], LoginStatus.AuthenticationFailure],
  ['a wrong CHAP secret', { chap }, [
    { csg: 0, nsg: 1, keys: { ...firstKeys, AuthMethod: 'CHAP' } },
    { csg: 0, nsg: 1, keys: { CHAP_A: '5' } },
    { csg: 0, nsg: 1, transit: true, keys: { CHAP_N: 'host1', CHAP_R: '0x00112233445566778899aabbccddeeff' } },
  ], LoginStatus.AuthenticationFailure],
  ['T and C both set', {}, [{ csg: 1, nsg: 3, transit: true, cont: true, keys: firstKeys }], LoginStatus.InitiatorError],
  ['a transit backwards', {}, [{ csg: 1, nsg: 0, transit: true, keys: firstKeys }], LoginStatus.InitiatorError],
  ['a transit to the reserved stage 2', {}, [{ csg: 1, nsg: 2, transit: true, keys: firstKeys }], LoginStatus.InitiatorError],
  ['CSG 3 in a login request', {}, [{ csg: 3, nsg: 3, transit: false, keys: firstKeys }], LoginStatus.InitiatorError],
  ['a CSG other than the current stage', {}, [
    { csg: 0, nsg: 1, transit: true, keys: { ...firstKeys, AuthMethod: 'None' } },
    { csg: 0, nsg: 1, transit: true, keys: {} },
  ], LoginStatus.InitiatorError],
  ['a key twice in one request', {}, [{ csg: 1, nsg: 3, transit: true, keys: [['InitiatorName', initiator], ['TargetName', target], ['MaxBurstLength', '512'], ['MaxBurstLength', '1024']] }], LoginStatus.InitiatorError],
  ['a key renegotiated in a later request', {}, [
    { csg: 1, nsg: 0, keys: { ...firstKeys, MaxBurstLength: '65536' } },
    { csg: 1, nsg: 3, transit: true, keys: { MaxBurstLength: '65536' } },
  ], LoginStatus.InitiatorError],
  ['InitiatorName declared again', {}, [
    { csg: 1, nsg: 0, keys: firstKeys },
    { csg: 1, nsg: 3, transit: true, keys: { InitiatorName: initiator } },
  ], LoginStatus.InitiatorError],
  ['security keys in the operational stage', {}, [
    { csg: 1, nsg: 0, keys: firstKeys },
    { csg: 1, nsg: 3, transit: true, keys: { AuthMethod: 'None' } },
  ], LoginStatus.InitiatorError],
  ['an ISID that changes mid-login', {}, [
    { csg: 1, nsg: 0, keys: firstKeys },
    { csg: 1, nsg: 3, transit: true, isid: Buffer.from([1, 2, 3, 4, 5, 6]), keys: {} },
  ], LoginStatus.InitiatorError],
  ['text that is not key=value', {}, [{ csg: 1, nsg: 3, transit: true, data: Buffer.from('garbage\0') }], LoginStatus.InitiatorError],
];

for (const [name, cfg, requests, status] of refusals) {
  test(`login refuses ${name} with status 0x${status.toString(16).padStart(4, '0')}`, (t) => {
    const steps = drive(config(cfg), requests);
    const last = steps[steps.length - 1];
    if (last.kind !== 'fail') return t.fail(`expected a refusal, got ${last.kind}`);
    t.is(last.status, status);
    t.is(last.response.bhs[0], 0x23);
    t.is(last.response.bhs.readUInt16BE(36), status, 'status class and detail on the wire');
    t.is(last.response.bhs[1] & 0x80, 0, 'no transit on a refusal');
  });
}

test('a PDU other than a Login Request during login is refused as invalid during login', (t) => {
  const step = loginStep(initialLoginState(prefs, 1), nopOutPdu({ itt: 1, cmdSN: 1, immediate: true }), config());
  t.like(step, { kind: 'fail', status: LoginStatus.InvalidDuringLogin });
});

test('a request continued with the C bit is answered empty, then negotiated whole, even split inside a key', (t) => {
  const text = encodeText(Object.entries({ ...firstKeys, MaxBurstLength: '65536' }));
  const cut = text.indexOf('MaxBurst') + 3;
  const steps = drive(config(), [
    { csg: 1, nsg: 0, cont: true, data: text.subarray(0, cut) },
    { csg: 1, nsg: 3, transit: true, data: text.subarray(cut) },
  ]);
  t.deepEqual(flagsOf(steps[0]), { transit: false, cont: false, csg: 1, nsg: 0 });
  if (steps[0].kind !== 'continue') return;
  t.is(steps[0].response.data.length, 0);
  t.is(steps[1].kind, 'admit');
  t.is(keysOf(steps[1]).MaxBurstLength, '65536');
});

test('an answer longer than 8192 bytes goes out in C-bit segments; the transit comes with the last', (t) => {
  const many: Array<[string, string]> = Array.from({ length: 300 }, (_, i) => [`X-com.example.vendor-key-number-${i}`, 'value']);
  const cfg = config();
  const first = loginStep(initialLoginState(prefs, 1), loginPdu({ csg: 1, nsg: 3, transit: true, keys: [...Object.entries(firstKeys), ...many] }), cfg);
  t.deepEqual(flagsOf(first), { transit: false, cont: true, csg: 1, nsg: 0 });
  const parts: Buffer[] = [];
  let step: LoginStep = first;
  while (step.kind === 'continue') {
    parts.push(step.response.data);
    t.true(step.response.data.length <= 8192);
    step = loginStep(step.state, loginPdu({ csg: 1, nsg: 3, transit: true, keys: {} }), cfg);
  }
  if (step.kind !== 'admit') return t.fail(step.kind);
  parts.push(step.responseText);
  t.true(parts.length >= 2);
  const all = textOf({ data: Buffer.concat(parts) });
  t.is(all['X-com.example.vendor-key-number-299'], 'NotUnderstood');
  t.is(all.MaxRecvDataSegmentLength, '262144');
});

test('a login with the TSIH of an existing session of the same initiator port is admitted (connection reinstatement)', (t) => {
  const [step] = drive(config(), [{ csg: 1, nsg: 3, transit: true, tsih: 77, keys: firstKeys }]);
  t.is(step.kind, 'admit');
  if (step.kind === 'admit') t.is(step.state.tsih, 77);
});
