// CHAP authentication of the security stage (RFC 1994, RFC 7143 §12.1.3): MD5 only (CHAP_A=5),
// one-way and mutual. Pure: randomness is passed in; responses are compared in constant time; the
// secrets never leave this module except as digests, and no outcome names them.
import type { TextPair } from './text-keys.ts';
import { chapAlgorithmMd5, chapChallengeBytes, chapChallengeBytesMax, chapResponse, decodeChapBinary, equalConstantTime, type ChapCredentials } from '../../common/chap/chap-digest.ts';

export { chapAlgorithmMd5, chapChallengeBytes, chapChallengeBytesMax, chapResponse, decodeChapBinary, type ChapCredentials };

export type ChapState =
  | { readonly step: 'await-algorithm' }
  | { readonly step: 'await-response'; readonly id: number; readonly challenge: Buffer }
  | { readonly step: 'done'; readonly mutual: boolean };

export type ChapOutcome =
  | { readonly ok: true; readonly state: ChapState; readonly responses: TextPair[] }
  /** Authentication failed: the login ends with status 0x0201. `reason` names no secret. */
  | { readonly ok: false; readonly reason: string };

export type RandomBytes = (count: number) => Buffer;

/** Advances CHAP by the keys of one login request. */
export function chapStep(
  state: ChapState,
  keys: ReadonlyMap<string, string>,
  credentials: ChapCredentials,
  random: RandomBytes,
): ChapOutcome {
  switch (state.step) {
    case 'await-algorithm':
      return chooseAlgorithm(keys, random);
    case 'await-response':
      return checkResponse(state, keys, credentials);
    case 'done':
      if ([...keys.keys()].some((k) => k.startsWith('CHAP_'))) return { ok: false, reason: 'CHAP keys after CHAP completed' };
      return { ok: true, state, responses: [] };
  }
}

function chooseAlgorithm(keys: ReadonlyMap<string, string>, random: RandomBytes): ChapOutcome {
  const offered = keys.get('CHAP_A');
  if (offered === undefined) {
    if ([...keys.keys()].some((k) => k.startsWith('CHAP_'))) return { ok: false, reason: 'CHAP keys before CHAP_A' };
    return { ok: true, state: { step: 'await-algorithm' }, responses: [] };
  }
  if (!offered.split(',').some((a) => Number(a) === chapAlgorithmMd5)) {
    return { ok: false, reason: `no supported CHAP algorithm in CHAP_A=${offered}` };
  }
  const id = random(1)[0];
  const challenge = random(chapChallengeBytes);
  return {
    ok: true,
    state: { step: 'await-response', id, challenge },
    responses: [
      ['CHAP_A', String(chapAlgorithmMd5)],
      ['CHAP_I', String(id)],
      ['CHAP_C', `0x${challenge.toString('hex')}`],
    ],
  };
}

function checkResponse(
  state: { id: number; challenge: Buffer },
  keys: ReadonlyMap<string, string>,
  credentials: ChapCredentials,
): ChapOutcome {
  const name = keys.get('CHAP_N');
  const responseText = keys.get('CHAP_R');
  if (name === undefined || responseText === undefined) return { ok: false, reason: 'CHAP_N or CHAP_R missing' };
  const response = decodeChapBinary(responseText);
  if (response === undefined) return { ok: false, reason: 'CHAP_R is not a binary value' };
  const expected = chapResponse(state.id, credentials.secret, state.challenge);
  const nameOk = equalConstantTime(Buffer.from(name, 'utf8'), Buffer.from(credentials.user, 'utf8'));
  const responseOk = equalConstantTime(response, expected);
  if (!nameOk || !responseOk) return { ok: false, reason: `CHAP response from ${JSON.stringify(name)} does not match` };

  const peerId = keys.get('CHAP_I');
  const peerChallengeText = keys.get('CHAP_C');
  if (peerId === undefined && peerChallengeText === undefined) {
    return { ok: true, state: { step: 'done', mutual: false }, responses: [] };
  }
  // Mutual CHAP: the initiator challenges us.
  if (peerId === undefined || peerChallengeText === undefined) return { ok: false, reason: 'CHAP_I without CHAP_C or the reverse' };
  if (credentials.mutual === undefined) return { ok: false, reason: 'mutual CHAP requested but not configured' };
  const id = /^[0-9]{1,3}$/.test(peerId) ? Number(peerId) : -1;
  if (id < 0 || id > 255) return { ok: false, reason: 'CHAP_I out of range' };
  const peerChallenge = decodeChapBinary(peerChallengeText);
  if (peerChallenge === undefined || peerChallenge.length === 0 || peerChallenge.length > chapChallengeBytesMax) {
    return { ok: false, reason: 'bad CHAP_C' };
  }
  // §12.1.3: an initiator that reflects our challenge could make us compute its answer for it.
  if (peerChallenge.equals(state.challenge)) return { ok: false, reason: 'initiator reflected the target challenge' };
  const answer = chapResponse(id, credentials.mutual.secret, peerChallenge);
  return {
    ok: true,
    state: { step: 'done', mutual: true },
    responses: [
      ['CHAP_N', credentials.mutual.user],
      ['CHAP_R', `0x${answer.toString('hex')}`],
    ],
  };
}
