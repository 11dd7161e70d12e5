// Table-driven negotiation of the operational text keys (RFC 7143 §13, §6.2): the target answers
// each key the initiator offers by its result function (list, numerical min/max, boolean AND/OR),
// records declarations, and answers Irrelevant, NotUnderstood or Reject where the RFC says so.
// Pure: (state, pairs) -> (state, response pairs). Security keys and names are left to login.ts.
import type { TextPair } from './text-keys.ts';

export type SessionType = 'Normal' | 'Discovery';
export type DigestName = 'CRC32C' | 'None';

/** The operational parameters of a session once login completes. */
export interface SessionParams {
  readonly headerDigest: boolean;
  readonly dataDigest: boolean;
  readonly maxConnections: number;
  readonly initialR2T: boolean;
  readonly immediateData: boolean;
  /** Declared by the initiator: our Data-In, Text and NOP-In segments stay within it. */
  readonly initiatorMaxRecvDataSegmentBytes: number;
  /** Declared by us: the initiator's segments stay within it. */
  readonly targetMaxRecvDataSegmentBytes: number;
  readonly maxBurstBytes: number;
  readonly firstBurstBytes: number;
  readonly defaultTime2WaitS: number;
  readonly defaultTime2RetainS: number;
  readonly maxOutstandingR2T: number;
  readonly dataPduInOrder: boolean;
  readonly dataSequenceInOrder: boolean;
  readonly errorRecoveryLevel: number;
}

/** The target's side of each negotiated key. */
export interface TargetPreferences {
  /** Digests the target accepts, in any order (the initiator's order decides, §6.2.1). */
  readonly digests: readonly DigestName[];
  readonly maxRecvDataSegmentBytes: number;
  readonly maxBurstBytes: number;
  readonly firstBurstBytes: number;
  readonly initialR2T: boolean;
  readonly immediateData: boolean;
  readonly maxOutstandingR2T: number;
  readonly defaultTime2WaitS: number;
  readonly defaultTime2RetainS: number;
}

/** RFC 7143 §13 defaults; what holds for every key the initiator does not offer. */
export function rfcDefaults(prefs: TargetPreferences): SessionParams {
  return {
    headerDigest: false,
    dataDigest: false,
    maxConnections: 1,
    initialR2T: true,
    immediateData: true,
    initiatorMaxRecvDataSegmentBytes: 8192,
    targetMaxRecvDataSegmentBytes: prefs.maxRecvDataSegmentBytes,
    maxBurstBytes: 262144,
    firstBurstBytes: 65536,
    defaultTime2WaitS: 2,
    defaultTime2RetainS: 20,
    maxOutstandingR2T: 1,
    dataPduInOrder: true,
    dataSequenceInOrder: true,
    errorRecoveryLevel: 0,
  };
}

export const byteLengthRange: readonly [number, number] = [512, 2 ** 24 - 1];

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type ParamsDraft = Mutable<SessionParams>;

/** Where a key may be used (RFC 7143 §13 "Use"): LO = leading login only, IO = login only,
 *  ALL = login and Text, FFPO = full feature phase only. */
type Use = 'LO' | 'IO' | 'ALL' | 'FFPO';

type Rule =
  | { type: 'list'; ours: (p: TargetPreferences) => readonly string[]; set?: (d: ParamsDraft, v: string) => void }
  | {
      type: 'min' | 'max';
      range: readonly [number, number];
      ours: (p: TargetPreferences) => number;
      set?: (d: ParamsDraft, v: number) => void;
    }
  | { type: 'and' | 'or'; ours: (p: TargetPreferences) => boolean; set?: (d: ParamsDraft, v: boolean) => void }
  | { type: 'declare'; range: readonly [number, number]; set: (d: ParamsDraft, v: number) => void }
  /** Handled by login.ts (names, session type, authentication) or the connection (SendTargets). */
  | { type: 'external' }
  /** Sent only by targets, or obsolete with no acceptable value: answered Reject. */
  | { type: 'reject' }
  /** Applies only to transports we do not offer (iSER): answered Irrelevant. */
  | { type: 'irrelevant' };

interface KeySpec {
  readonly use: Use;
  readonly irrelevantInDiscovery?: boolean;
  readonly rule: Rule;
}

export const keyTable: Readonly<Record<string, KeySpec>> = {
  HeaderDigest: {
    use: 'IO',
    rule: { type: 'list', ours: (p) => p.digests, set: (d, v) => (d.headerDigest = v === 'CRC32C') },
  },
  DataDigest: {
    use: 'IO',
    rule: { type: 'list', ours: (p) => p.digests, set: (d, v) => (d.dataDigest = v === 'CRC32C') },
  },
  MaxConnections: {
    use: 'LO',
    irrelevantInDiscovery: true,
    rule: { type: 'min', range: [1, 65535], ours: () => 1, set: (d, v) => (d.maxConnections = v) },
  },
  InitialR2T: {
    use: 'LO',
    irrelevantInDiscovery: true,
    rule: { type: 'or', ours: (p) => p.initialR2T, set: (d, v) => (d.initialR2T = v) },
  },
  ImmediateData: {
    use: 'LO',
    irrelevantInDiscovery: true,
    rule: { type: 'and', ours: (p) => p.immediateData, set: (d, v) => (d.immediateData = v) },
  },
  MaxRecvDataSegmentLength: {
    use: 'ALL',
    rule: { type: 'declare', range: byteLengthRange, set: (d, v) => (d.initiatorMaxRecvDataSegmentBytes = v) },
  },
  MaxBurstLength: {
    use: 'LO',
    irrelevantInDiscovery: true,
    rule: { type: 'min', range: byteLengthRange, ours: (p) => p.maxBurstBytes, set: (d, v) => (d.maxBurstBytes = v) },
  },
  FirstBurstLength: {
    use: 'LO',
    irrelevantInDiscovery: true,
    rule: {
      type: 'min',
      range: byteLengthRange,
      ours: (p) => p.firstBurstBytes,
      set: (d, v) => (d.firstBurstBytes = v),
    },
  },
  DefaultTime2Wait: {
    use: 'LO',
    rule: { type: 'max', range: [0, 3600], ours: (p) => p.defaultTime2WaitS, set: (d, v) => (d.defaultTime2WaitS = v) },
  },
  DefaultTime2Retain: {
    use: 'LO',
    rule: {
      type: 'min',
      range: [0, 3600],
      ours: (p) => p.defaultTime2RetainS,
      set: (d, v) => (d.defaultTime2RetainS = v),
    },
  },
  MaxOutstandingR2T: {
    use: 'LO',
    irrelevantInDiscovery: true,
    rule: {
      type: 'min',
      range: [1, 65535],
      ours: (p) => p.maxOutstandingR2T,
      set: (d, v) => (d.maxOutstandingR2T = v),
    },
  },
  DataPDUInOrder: {
    use: 'LO',
    irrelevantInDiscovery: true,
    // We reassemble by offset but require order: OR with our Yes makes the result Yes.
    rule: { type: 'or', ours: () => true, set: (d, v) => (d.dataPduInOrder = v) },
  },
  DataSequenceInOrder: {
    use: 'LO',
    irrelevantInDiscovery: true,
    rule: { type: 'or', ours: () => true, set: (d, v) => (d.dataSequenceInOrder = v) },
  },
  ErrorRecoveryLevel: {
    use: 'LO',
    rule: { type: 'min', range: [0, 2], ours: () => 0, set: (d, v) => (d.errorRecoveryLevel = v) },
  },
  // RFC 7144 §2.1: the result is the lesser level; 1 is RFC 7143.
  iSCSIProtocolLevel: { use: 'LO', rule: { type: 'min', range: [0, 31], ours: () => 1 } },
  // RFC 7143 §13.23.
  TaskReporting: { use: 'LO', irrelevantInDiscovery: true, rule: { type: 'list', ours: () => ['RFC3720'] } },
  // RFC 7143 §13.25 obsoletes markers: "No" for xFMarker (allowed), Reject for xFMarkInt (required).
  OFMarker: { use: 'IO', rule: { type: 'and', ours: () => false } },
  IFMarker: { use: 'IO', rule: { type: 'and', ours: () => false } },
  OFMarkInt: { use: 'IO', rule: { type: 'reject' } },
  IFMarkInt: { use: 'IO', rule: { type: 'reject' } },
  // RFC 7145 (iSER): we offer only TCP.
  RDMAExtensions: { use: 'LO', rule: { type: 'and', ours: () => false } },
  InitiatorRecvDataSegmentLength: { use: 'IO', rule: { type: 'irrelevant' } },
  TargetRecvDataSegmentLength: { use: 'IO', rule: { type: 'irrelevant' } },
  // Declared by the initiator, read by login.ts.
  InitiatorName: { use: 'IO', rule: { type: 'external' } },
  TargetName: { use: 'IO', rule: { type: 'external' } },
  SessionType: { use: 'LO', rule: { type: 'external' } },
  InitiatorAlias: { use: 'ALL', rule: { type: 'external' } },
  AuthMethod: { use: 'IO', rule: { type: 'external' } },
  CHAP_A: { use: 'IO', rule: { type: 'external' } },
  CHAP_I: { use: 'IO', rule: { type: 'external' } },
  CHAP_C: { use: 'IO', rule: { type: 'external' } },
  CHAP_N: { use: 'IO', rule: { type: 'external' } },
  CHAP_R: { use: 'IO', rule: { type: 'external' } },
  SendTargets: { use: 'FFPO', rule: { type: 'external' } },
  // Sent by targets only.
  TargetAlias: { use: 'ALL', rule: { type: 'reject' } },
  TargetAddress: { use: 'ALL', rule: { type: 'reject' } },
  TargetPortalGroupTag: { use: 'IO', rule: { type: 'reject' } },
};

export function isSecurityKey(key: string): boolean {
  return key === 'AuthMethod' || key.startsWith('CHAP_');
}

export interface NegotiationState {
  readonly sessionType: SessionType;
  readonly params: SessionParams;
  /** Keys already offered or declared in this login phase / Text negotiation. */
  readonly seen: ReadonlySet<string>;
}

export function initialNegotiation(prefs: TargetPreferences, sessionType: SessionType): NegotiationState {
  return { sessionType, params: rfcDefaults(prefs), seen: new Set() };
}

export type NegotiationResult =
  | { ok: true; state: NegotiationState; responses: TextPair[] }
  /** A key negotiated twice in one login phase: the login fails with an initiator error (§6.2). */
  | { ok: false; reason: string };

const numberPattern = /^(?:0[xX][0-9a-fA-F]{1,16}|[0-9]{1,20})$/;

export function parseNumber(value: string): number | undefined {
  if (!numberPattern.test(value)) return undefined;
  return value.length > 1 && (value[1] === 'x' || value[1] === 'X') ? Number.parseInt(value.slice(2), 16) : Number(value);
}
function parseBoolean(value: string): boolean | undefined {
  return value === 'Yes' ? true : value === 'No' ? false : undefined;
}
function yesNo(v: boolean): string {
  return v ? 'Yes' : 'No';
}

/** Special values an offer may not carry: they are only answers (§6.2). */
const answerValues = new Set(['NotUnderstood', 'Irrelevant', 'Reject']);

/**
 * Answers the keys of one request (or one continued request, reassembled). `where` is 'login'
 * during the login phase and 'ffp' for a Text request; `external` keys are skipped (no answer).
 */
export function negotiate(
  state: NegotiationState,
  pairs: readonly TextPair[],
  prefs: TargetPreferences,
  where: 'login' | 'ffp',
): NegotiationResult {
  const draft: ParamsDraft = { ...state.params };
  const seen = new Set(state.seen);
  // Answers are rendered after the whole request is applied: FirstBurstLength's irrelevance
  // depends on InitialR2T and ImmediateData, which may come after it in the same request.
  const answers: Array<[string, () => string]> = [];
  for (const [key, value] of pairs) {
    const spec = keyTable[key];
    if (spec === undefined) {
      answers.push([key, () => 'NotUnderstood']);
      continue;
    }
    if (where === 'login' && spec.use === 'FFPO') {
      answers.push([key, () => 'Irrelevant']);
      continue;
    }
    if (spec.rule.type === 'external') continue;
    if (seen.has(key)) {
      if (where === 'login') return { ok: false, reason: `key ${key} negotiated twice` };
      answers.push([key, () => 'Reject']);
      continue;
    }
    seen.add(key);
    if (answerValues.has(value)) continue; // an answer to an offer we never made: nothing to say
    if (where === 'ffp' && spec.use !== 'ALL') {
      answers.push([key, () => 'Reject']);
      continue;
    }
    if (spec.irrelevantInDiscovery && state.sessionType === 'Discovery') {
      answers.push([key, () => 'Irrelevant']);
      continue;
    }
    const answer = applyRule(key, spec.rule, value, draft, prefs);
    if (answer !== undefined) answers.push([key, answer]);
  }
  if (draft.firstBurstBytes > draft.maxBurstBytes) draft.firstBurstBytes = draft.maxBurstBytes;
  const responses: TextPair[] = answers.map(([k, render]) => [k, render()]);
  return { ok: true, state: { ...state, params: draft, seen }, responses };
}

function applyRule(
  key: string,
  rule: Rule,
  value: string,
  draft: ParamsDraft,
  prefs: TargetPreferences,
): (() => string) | undefined {
  switch (rule.type) {
    case 'list': {
      // §6.2.1: the first value of the originator's list that the responder supports.
      const ours = rule.ours(prefs);
      const pick = value.split(',').find((v) => ours.includes(v));
      if (pick === undefined) return () => 'Reject';
      rule.set?.(draft, pick);
      return () => pick;
    }
    case 'min':
    case 'max': {
      const n = parseNumber(value);
      if (n === undefined || n < rule.range[0] || n > rule.range[1]) return () => 'Reject';
      const ours = rule.ours(prefs);
      const result = rule.type === 'min' ? Math.min(n, ours) : Math.max(n, ours);
      rule.set?.(draft, result);
      if (key === 'FirstBurstLength') {
        return () => (draft.initialR2T && !draft.immediateData ? 'Irrelevant' : String(draft.firstBurstBytes));
      }
      return () => String(result);
    }
    case 'and':
    case 'or': {
      const b = parseBoolean(value);
      if (b === undefined) return () => 'Reject';
      const ours = rule.ours(prefs);
      const result = rule.type === 'and' ? b && ours : b || ours;
      rule.set?.(draft, result);
      return () => yesNo(result);
    }
    case 'declare': {
      const n = parseNumber(value);
      if (n === undefined || n < rule.range[0] || n > rule.range[1]) return () => 'Reject';
      rule.set(draft, n);
      return undefined;
    }
    case 'reject':
      return () => 'Reject';
    case 'irrelevant':
      return () => 'Irrelevant';
    case 'external':
      return undefined;
  }
}
