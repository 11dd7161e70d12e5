// The probe initiator's side of CHAP in the login's security stage (RFC 7143 §12.1.3, RFC 1994):
// offer CHAP, ask for MD5 (CHAP_A=5), answer the target's challenge, and with mutual CHAP challenge
// the target and check its proof. Pure: (state, the target's keys) -> (state, our keys) or a
// refusal; randomness is passed in. No refusal names a secret.
import { chapAlgorithmMd5, chapChallengeBytes, chapChallengeBytesMax, chapResponse, decodeChapBinary, equalConstantTime, type ChapCredentials } from '../chap/chap-digest.ts';

/** The probe's CHAP: `user`/`secret` it proves (access.chap.user, secretFile), `mutual` it checks. */
export type ProbeChapCredentials = ChapCredentials;

export type InitiatorChapState =
  | { readonly step: 'start' }
  /** AuthMethod=CHAP offered; the target's choice is due. */
  | { readonly step: 'await-method' }
  /** CHAP_A sent; the target's algorithm, identifier and challenge are due. */
  | { readonly step: 'await-challenge' }
  /** Mutual: our response and challenge sent; the target's CHAP_N and CHAP_R are due. */
  | { readonly step: 'await-proof'; readonly id: number; readonly challenge: Buffer }
  | { readonly step: 'done' };

export type InitiatorChapStep =
  | { readonly ok: true; readonly state: InitiatorChapState; readonly send: Record<string, string> }
  | { readonly ok: false; readonly reason: string };

/**
 * Advances the exchange by the keys of one login response (none for 'start'). `send` are the CHAP
 * keys of our next request; once the state is 'await-proof' or 'done' that request may ask to
 * leave the security stage (T=1).
 */
export function initiatorChapStep(
  s: InitiatorChapState,
  target: Readonly<Record<string, string>>,
  creds: ProbeChapCredentials,
  random: (bytes: number) => Buffer,
): InitiatorChapStep {
  const no = (reason: string): InitiatorChapStep => ({ ok: false, reason });
  switch (s.step) {
    case 'start':
      return { ok: true, state: { step: 'await-method' }, send: { AuthMethod: 'CHAP' } };
    case 'await-method':
      // Offered CHAP only: a target that picks anything else (None) would let an impostor skip
      // the proof mutual CHAP asks of it.
      if (target.AuthMethod !== 'CHAP') return no(`the target answered AuthMethod=${target.AuthMethod ?? '(nothing)'} to an offer of CHAP only`);
      return { ok: true, state: { step: 'await-challenge' }, send: { CHAP_A: String(chapAlgorithmMd5) } };
    case 'await-challenge':
      return answerChallenge(target, creds, random);
    case 'await-proof':
      return checkProof(s, target, creds);
    case 'done':
      if (Object.keys(target).some((k) => k.startsWith('CHAP_'))) return no('the target sent CHAP keys after CHAP completed');
      return { ok: true, state: s, send: {} };
  }
}

function answerChallenge(target: Readonly<Record<string, string>>, creds: ProbeChapCredentials, random: (bytes: number) => Buffer): InitiatorChapStep {
  const no = (reason: string): InitiatorChapStep => ({ ok: false, reason });
  if (target.CHAP_A !== String(chapAlgorithmMd5)) return no(`the target chose CHAP_A=${target.CHAP_A ?? '(nothing)'}, the probe offered MD5 (5) only`);
  const idText = target.CHAP_I;
  if (idText === undefined || !/^[0-9]{1,3}$/.test(idText) || Number(idText) > 255) return no(`the target's CHAP_I ${idText ?? '(missing)'} is not an identifier 0-255`);
  const challenge = target.CHAP_C === undefined ? undefined : decodeChapBinary(target.CHAP_C);
  if (challenge === undefined || challenge.length === 0 || challenge.length > chapChallengeBytesMax) {
    return no(`the target's CHAP_C is not a binary value of 1 to ${chapChallengeBytesMax} bytes`);
  }
  const send: Record<string, string> = {
    CHAP_N: creds.user,
    CHAP_R: `0x${chapResponse(Number(idText), creds.secret, challenge).toString('hex')}`,
  };
  if (!creds.mutual) return { ok: true, state: { step: 'done' }, send };
  const id = random(1)[0];
  const ours = random(chapChallengeBytes);
  // §12.1.3: the two directions must not share a challenge (the target would answer itself).
  if (ours.equals(challenge)) return no('the probe drew the target\'s own challenge; log in again');
  return {
    ok: true,
    state: { step: 'await-proof', id, challenge: ours },
    send: { ...send, CHAP_I: String(id), CHAP_C: `0x${ours.toString('hex')}` },
  };
}

function checkProof(s: { id: number; challenge: Buffer }, target: Readonly<Record<string, string>>, creds: ProbeChapCredentials): InitiatorChapStep {
  const mutual = creds.mutual!;
  if (target.CHAP_N === undefined || target.CHAP_R === undefined) return { ok: false, reason: 'the target did not answer the probe\'s challenge (mutual CHAP)' };
  const proof = decodeChapBinary(target.CHAP_R);
  const nameOk = equalConstantTime(Buffer.from(target.CHAP_N, 'utf8'), Buffer.from(mutual.user, 'utf8'));
  const proofOk = proof !== undefined && equalConstantTime(proof, chapResponse(s.id, mutual.secret, s.challenge));
  if (!nameOk || !proofOk) {
    return { ok: false, reason: `the target ${JSON.stringify(target.CHAP_N)} did not prove access.chap.mutual's secret: it may not be the cluster's portal` };
  }
  return { ok: true, state: { step: 'done' }, send: {} };
}
