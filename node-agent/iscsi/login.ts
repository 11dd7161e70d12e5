// The login phase of one connection (RFC 7143 §6.3, §11.12-11.13): security stage (CHAP or none),
// operational negotiation, the CSG/NSG/T/C rules, and a status class/detail for every refusal.
// Pure: (state, request PDU) -> (state, response). The portal assigns the TSIH on admission.
import { LoginStage, LoginStatus, InitiatorOpcode, textBytesMax } from './constants.ts';
import { chapStep, type ChapCredentials, type ChapState, type RandomBytes } from './chap.ts';
import {
  initialNegotiation,
  isSecurityKey,
  negotiate,
  type NegotiationState,
  type SessionParams,
  type SessionType,
  type TargetPreferences,
} from './negotiation.ts';
import { decodeLoginRequest, encodeLoginResponse, opcodeOf, type Pdu } from './pdu.ts';
import { decodeText, encodeText, splitText, type TextPair } from './text-keys.ts';

/** Login PDUs carry at most 8192 data bytes each way: MaxRecvDataSegmentLength is not yet in
 *  effect (RFC 7143 §13.12). */
export const loginSegmentBytesMax = 8192;

export interface LoginConfig {
  readonly prefs: TargetPreferences;
  readonly portalGroupTag: number;
  /** Whether a normal session may name this target. */
  readonly targetExists: (iqn: string) => boolean;
  /** Initiator names allowed to log in; empty = any. */
  readonly initiatorsAllowed: readonly string[];
  readonly chap?: ChapCredentials;
  readonly random: RandomBytes;
  /** For a login with a non-zero TSIH: does that session exist for this initiator port? */
  readonly sessionExists: (initiatorName: string, isidHex: string, tsih: number) => boolean;
}

type Auth =
  | { readonly method: 'unset' }
  | { readonly method: 'None' }
  | { readonly method: 'CHAP'; readonly chap: ChapState };

export interface LoginState {
  readonly started: boolean;
  readonly stage: LoginStage;
  readonly isidHex: string;
  readonly tsih: number;
  readonly cid: number;
  readonly cmdSN: number;
  /** The StatSN of the next login response. */
  readonly statSN: number;
  readonly initiatorName: string;
  readonly initiatorAlias?: string;
  readonly targetName?: string;
  readonly sessionType: SessionType;
  readonly auth: Auth;
  readonly negotiation: NegotiationState;
  /** Bytes of a request sent with the C bit, awaiting its last PDU. */
  readonly requestText: Buffer;
  /** Our answer's segments not yet sent (we set the C bit, §11.13.2). */
  readonly responseSegments: readonly Buffer[];
  /** The header fields of the answer being continued. */
  readonly pendingTransit?: { readonly transit: boolean; readonly nsg: number };
  readonly declaredMaxRecv: boolean;
  readonly exchangedBytes: number;
}

export function initialLoginState(prefs: TargetPreferences, statSN: number): LoginState {
  return {
    started: false,
    stage: LoginStage.Security,
    isidHex: '000000000000',
    tsih: 0,
    cid: 0,
    cmdSN: 0,
    statSN,
    initiatorName: '',
    sessionType: 'Normal',
    auth: { method: 'unset' },
    negotiation: initialNegotiation(prefs, 'Normal'),
    requestText: Buffer.alloc(0),
    responseSegments: [],
    declaredMaxRecv: false,
    exchangedBytes: 0,
  };
}

/** A login response ready to frame (login PDUs never carry digests). */
export interface LoginResponse {
  readonly bhs: Buffer;
  readonly data: Buffer;
}

export type LoginStep =
  | { readonly kind: 'continue'; readonly state: LoginState; readonly response: LoginResponse }
  /** The initiator asked for full feature phase and may have it; the portal assigns the TSIH
   *  (reinstating an older session first) and calls finishLogin or refuseLogin. */
  | { readonly kind: 'admit'; readonly state: LoginState; readonly itt: number; readonly responseText: Buffer }
  | {
      readonly kind: 'fail';
      readonly state: LoginState;
      readonly status: LoginStatus;
      readonly reason: string;
      readonly response: LoginResponse;
    };

/** What a completed login hands to the full feature phase. */
export interface LoginResult {
  readonly initiatorName: string;
  readonly initiatorAlias?: string;
  readonly targetName?: string;
  readonly sessionType: SessionType;
  readonly isidHex: string;
  readonly tsih: number;
  readonly cid: number;
  readonly params: SessionParams;
  /** ExpCmdSN at the start of full feature phase (the login's CmdSN; logins are immediate). */
  readonly cmdSN: number;
  /** The StatSN of the first status PDU in full feature phase. */
  readonly statSN: number;
}

export function loginStep(state: LoginState, pdu: Pdu, cfg: LoginConfig): LoginStep {
  if (opcodeOf(pdu.bhs) !== InitiatorOpcode.LoginRequest) {
    return fail(state, LoginStatus.InvalidDuringLogin, `opcode 0x${opcodeOf(pdu.bhs).toString(16)} during login`);
  }
  const req = decodeLoginRequest(pdu);
  let s = state;
  const reqCtx = { itt: req.initiatorTaskTag };
  if (!s.started) {
    s = { ...s, started: true, isidHex: req.isidHex, tsih: req.tsih, cid: req.cid, cmdSN: req.cmdSN, stage: req.csg };
    if (req.versionMin > 0) return fail(s, LoginStatus.UnsupportedVersion, `version-min ${req.versionMin}`, reqCtx);
  } else if (req.isidHex !== s.isidHex || req.tsih !== s.tsih) {
    return fail(s, LoginStatus.InitiatorError, 'ISID or TSIH changed during login', reqCtx);
  }
  if (req.csg !== s.stage || (req.csg !== LoginStage.Security && req.csg !== LoginStage.Operational)) {
    return fail(s, LoginStatus.InitiatorError, `CSG ${req.csg} in stage ${s.stage}`, reqCtx);
  }
  if (req.transit && req.continue) return fail(s, LoginStatus.InitiatorError, 'T and C both set', reqCtx);
  if (req.transit && (req.nsg <= req.csg || req.nsg === 2)) {
    return fail(s, LoginStatus.InitiatorError, `transit from stage ${req.csg} to ${req.nsg}`, reqCtx);
  }
  s = { ...s, exchangedBytes: s.exchangedBytes + req.data.length };
  if (s.exchangedBytes > textBytesMax) return fail(s, LoginStatus.InitiatorError, 'too much login text', reqCtx);

  // We are in the middle of a continued answer: the initiator asks for the rest with empty requests.
  if (s.responseSegments.length > 0) {
    if (req.data.length > 0) return fail(s, LoginStatus.InitiatorError, 'text while our answer continues', reqCtx);
    return sendSegments(s, req.initiatorTaskTag, req.csg, s.pendingTransit ?? { transit: false, nsg: 0 }, s.responseSegments);
  }

  const text = Buffer.concat([s.requestText, req.data]);
  if (req.continue) {
    return respond({ ...s, requestText: text }, req.initiatorTaskTag, req.csg, { transit: false, nsg: 0 }, Buffer.alloc(0));
  }
  s = { ...s, requestText: Buffer.alloc(0) };
  const decoded = decodeText(text);
  if (!decoded.ok) return fail(s, LoginStatus.InitiatorError, decoded.reason, reqCtx);
  const keys = new Map<string, string>();
  for (const [k, v] of decoded.pairs) {
    if (keys.has(k)) return fail(s, LoginStatus.InitiatorError, `key ${k} twice in one request`, reqCtx);
    keys.set(k, v);
  }

  const first = s.initiatorName === '';
  const named = first ? admitNames(s, keys, cfg) : refuseRenaming(s, keys);
  if (!named.ok) return fail(s, named.status, named.reason, reqCtx);
  s = named.state;

  const responses: TextPair[] = [];
  if (first && s.stage === LoginStage.Operational && cfg.chap !== undefined) {
    return fail(s, LoginStatus.AuthenticationFailure, 'login skipped the security stage; CHAP is required', reqCtx);
  }
  if (first && s.sessionType === 'Normal') responses.push(['TargetPortalGroupTag', String(cfg.portalGroupTag)]);

  const securityKeys = new Map([...keys].filter(([k]) => isSecurityKey(k)));
  if (s.stage === LoginStage.Operational && securityKeys.size > 0) {
    return fail(s, LoginStatus.InitiatorError, 'security keys in the operational stage', reqCtx);
  }
  if (s.stage === LoginStage.Security || securityKeys.size > 0) {
    const auth = authenticate(s, securityKeys, cfg);
    if (!auth.ok) return fail(s, LoginStatus.AuthenticationFailure, auth.reason, reqCtx);
    s = { ...s, auth: auth.auth };
    responses.push(...auth.responses);
  }

  const negotiated = negotiate(s.negotiation, decoded.pairs, cfg.prefs, 'login');
  if (!negotiated.ok) return fail(s, LoginStatus.InitiatorError, negotiated.reason, reqCtx);
  s = { ...s, negotiation: negotiated.state };
  responses.push(...negotiated.responses);

  // Our declarations: MaxRecvDataSegmentLength once, in the operational stage or, if the initiator
  // skips it, in the response that ends the login.
  const toFullFeature = req.transit && req.nsg === LoginStage.FullFeature;
  if (!s.declaredMaxRecv && (s.stage === LoginStage.Operational || toFullFeature)) {
    responses.push(['MaxRecvDataSegmentLength', String(cfg.prefs.maxRecvDataSegmentBytes)]);
    s = { ...s, declaredMaxRecv: true };
  }

  let transit = req.transit;
  if (req.transit && s.stage === LoginStage.Security) {
    const ready = securityDone(s, cfg);
    if (ready === 'refuse') return fail(s, LoginStatus.AuthenticationFailure, 'authentication required', reqCtx);
    transit = ready === 'yes';
  }
  const segments = splitText(encodeText(responses), loginSegmentBytesMax);
  return sendSegments(s, req.initiatorTaskTag, req.csg, { transit, nsg: transit ? req.nsg : 0 }, segments);
}

/** Builds the final response of a successful login and the state full feature phase starts from. */
export function finishLogin(
  state: LoginState,
  admitted: { itt: number; responseText: Buffer },
  tsih: number,
  windowMax: number,
): { response: LoginResponse; result: LoginResult } {
  const bhs = encodeLoginResponse({
    transit: true,
    continue: false,
    csg: state.stage,
    nsg: LoginStage.FullFeature,
    isidHex: state.isidHex,
    tsih,
    initiatorTaskTag: admitted.itt,
    statSN: state.statSN,
    expCmdSN: state.cmdSN,
    maxCmdSN: (state.cmdSN + windowMax - 1) >>> 0,
    status: LoginStatus.Success,
    dataLength: admitted.responseText.length,
  });
  return {
    response: { bhs, data: admitted.responseText },
    result: {
      initiatorName: state.initiatorName,
      initiatorAlias: state.initiatorAlias,
      targetName: state.targetName,
      sessionType: state.sessionType,
      isidHex: state.isidHex,
      tsih,
      cid: state.cid,
      params: state.negotiation.params,
      cmdSN: state.cmdSN,
      statSN: (state.statSN + 1) >>> 0,
    },
  };
}

/** A refusal decided outside the state machine (the portal's limits). */
export function refuseLogin(state: LoginState, itt: number, status: LoginStatus): LoginResponse {
  return failureResponse(state, status, itt);
}

/** A refusal of a login request judged by its header alone (the portal's connection limit, a data
 *  segment over the login limit): the answer echoes the request's ISID, TSIH, stage and ITT. */
export function refuseLoginRequest(state: LoginState, bhs: Buffer, status: LoginStatus): LoginResponse {
  const req = decodeLoginRequest({ bhs, ahs: noBytes, data: noBytes });
  const csg = req.csg === LoginStage.Operational ? LoginStage.Operational : LoginStage.Security;
  const s = state.started ? state : { ...state, isidHex: req.isidHex, tsih: req.tsih, cmdSN: req.cmdSN, stage: csg };
  return failureResponse(s, status, req.initiatorTaskTag);
}

const noBytes = Buffer.alloc(0);

// ---- helpers ----

type Named = { ok: true; state: LoginState } | { ok: false; status: LoginStatus; reason: string };

function admitNames(s: LoginState, keys: ReadonlyMap<string, string>, cfg: LoginConfig): Named {
  const initiatorName = keys.get('InitiatorName');
  if (initiatorName === undefined || initiatorName === '') {
    return { ok: false, status: LoginStatus.MissingParameter, reason: 'InitiatorName missing' };
  }
  const type = keys.get('SessionType') ?? 'Normal';
  if (type !== 'Normal' && type !== 'Discovery') {
    return { ok: false, status: LoginStatus.SessionTypeNotSupported, reason: `SessionType=${type}` };
  }
  if (cfg.initiatorsAllowed.length > 0 && !cfg.initiatorsAllowed.includes(initiatorName)) {
    return { ok: false, status: LoginStatus.AuthorizationFailure, reason: `initiator ${initiatorName} not allowed` };
  }
  let targetName: string | undefined;
  if (type === 'Normal') {
    targetName = keys.get('TargetName');
    if (targetName === undefined || targetName === '') {
      return { ok: false, status: LoginStatus.MissingParameter, reason: 'TargetName missing' };
    }
    if (!cfg.targetExists(targetName)) {
      return { ok: false, status: LoginStatus.TargetNotFound, reason: `no target ${targetName}` };
    }
  }
  if (s.tsih !== 0 && !cfg.sessionExists(initiatorName, s.isidHex, s.tsih)) {
    return { ok: false, status: LoginStatus.SessionDoesNotExist, reason: `no session with TSIH ${s.tsih}` };
  }
  return {
    ok: true,
    state: {
      ...s,
      initiatorName,
      initiatorAlias: keys.get('InitiatorAlias'),
      targetName,
      sessionType: type,
      negotiation: { ...s.negotiation, sessionType: type },
    },
  };
}

function refuseRenaming(s: LoginState, keys: ReadonlyMap<string, string>): Named {
  for (const k of ['InitiatorName', 'TargetName', 'SessionType']) {
    if (keys.has(k)) return { ok: false, status: LoginStatus.InitiatorError, reason: `${k} declared again` };
  }
  return { ok: true, state: s };
}

type AuthOutcome = { ok: true; auth: Auth; responses: TextPair[] } | { ok: false; reason: string };

function authenticate(s: LoginState, keys: ReadonlyMap<string, string>, cfg: LoginConfig): AuthOutcome {
  let auth = s.auth;
  const responses: TextPair[] = [];
  const offered = keys.get('AuthMethod');
  if (offered !== undefined) {
    if (auth.method !== 'unset') return { ok: false, reason: 'AuthMethod negotiated twice' };
    const methods = offered.split(',');
    const want = cfg.chap !== undefined ? 'CHAP' : 'None';
    if (!methods.includes(want)) return { ok: false, reason: `AuthMethod=${offered}, target requires ${want}` };
    auth = want === 'CHAP' ? { method: 'CHAP', chap: { step: 'await-algorithm' } } : { method: 'None' };
    responses.push(['AuthMethod', want]);
  }
  const chapKeys = new Map([...keys].filter(([k]) => k.startsWith('CHAP_')));
  if (auth.method === 'CHAP' && cfg.chap !== undefined) {
    const step = chapStep(auth.chap, chapKeys, cfg.chap, cfg.random);
    if (!step.ok) return step;
    auth = { method: 'CHAP', chap: step.state };
    responses.push(...step.responses);
  } else if (chapKeys.size > 0) {
    return { ok: false, reason: 'CHAP keys without AuthMethod=CHAP' };
  }
  return { ok: true, auth, responses };
}

/** May the login leave the security stage? 'no' = not yet (CHAP under way: answer T=0). */
function securityDone(s: LoginState, cfg: LoginConfig): 'yes' | 'no' | 'refuse' {
  if (cfg.chap === undefined) return 'yes';
  if (s.auth.method !== 'CHAP') return 'refuse';
  return s.auth.chap.step === 'done' ? 'yes' : 'no';
}

function respond(
  s: LoginState,
  itt: number,
  csg: number,
  t: { transit: boolean; nsg: number },
  data: Buffer,
  more = false,
): LoginStep {
  const bhs = encodeLoginResponse({
    transit: t.transit,
    continue: more,
    csg,
    nsg: t.nsg,
    isidHex: s.isidHex,
    tsih: s.tsih,
    initiatorTaskTag: itt,
    statSN: s.statSN,
    expCmdSN: s.cmdSN,
    maxCmdSN: s.cmdSN,
    status: LoginStatus.Success,
    dataLength: data.length,
  });
  const stage = t.transit ? t.nsg : s.stage;
  return { kind: 'continue', state: { ...s, stage, statSN: (s.statSN + 1) >>> 0 }, response: { bhs, data } };
}

function sendSegments(
  s: LoginState,
  itt: number,
  csg: number,
  t: { transit: boolean; nsg: number },
  segments: readonly Buffer[],
): LoginStep {
  const [head, ...rest] = segments;
  if (rest.length === 0 && t.transit && t.nsg === LoginStage.FullFeature) {
    const done = { ...s, responseSegments: [], pendingTransit: undefined };
    return { kind: 'admit', state: done, itt, responseText: head ?? Buffer.alloc(0) };
  }
  if (rest.length === 0) {
    return respond({ ...s, responseSegments: [], pendingTransit: undefined }, itt, csg, t, head ?? Buffer.alloc(0));
  }
  // T stays 0 while C is 1 (§11.13.2); the transit is answered with the last segment.
  return respond({ ...s, responseSegments: rest, pendingTransit: t }, itt, csg, { transit: false, nsg: 0 }, head, true);
}

function failureResponse(s: LoginState, status: LoginStatus, itt: number): LoginResponse {
  const bhs = encodeLoginResponse({
    transit: false,
    continue: false,
    csg: s.stage === LoginStage.FullFeature ? LoginStage.Operational : s.stage,
    nsg: 0,
    isidHex: s.isidHex,
    tsih: s.tsih,
    initiatorTaskTag: itt,
    statSN: s.statSN,
    expCmdSN: s.cmdSN,
    maxCmdSN: s.cmdSN,
    status,
    dataLength: 0,
  });
  return { bhs, data: Buffer.alloc(0) };
}

function fail(s: LoginState, status: LoginStatus, reason: string, ctx?: { itt: number }): LoginStep {
  return { kind: 'fail', state: s, status, reason, response: failureResponse(s, status, ctx?.itt ?? 0) };
}
