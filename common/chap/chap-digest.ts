// CHAP's response and binary values (RFC 1994 §4.1, RFC 7143 §6.1, §12.1.3), shared by the agent's
// target and the drill probe's initiator, so both sides compute the one digest the same way. Pure.
import { createHash, timingSafeEqual } from 'node:crypto';

export const chapAlgorithmMd5 = 5;

/** A CHAP name and the secret behind it, and for mutual CHAP the other side's name and secret.
 *  The target checks `user`/`secret` and proves `mutual`; the initiator proves `user`/`secret` and
 *  checks `mutual` (access.chap in the topology). */
export interface ChapCredentials {
  readonly user: string;
  readonly secret: string;
  readonly mutual?: { readonly user: string; readonly secret: string };
}

/** Bytes of the challenges we send (target or probe initiator); as long as the MD5 digest. */
export const chapChallengeBytes = 16;
/** RFC 7143 §12.1.3: challenges are at most 1024 bytes. */
export const chapChallengeBytesMax = 1024;

/** CHAP binary values: 0x hex or 0b base64 (RFC 7143 §6.1 binary-value). */
export function decodeChapBinary(value: string): Buffer | undefined {
  if (/^0[xX][0-9a-fA-F]+$/.test(value)) {
    const hex = value.slice(2);
    return Buffer.from(hex.length % 2 === 1 ? `0${hex}` : hex, 'hex');
  }
  if (/^0[bB][A-Za-z0-9+/]+={0,2}$/.test(value)) return Buffer.from(value.slice(2), 'base64');
  return undefined;
}

/** RFC 1994 §4.1: MD5 over the identifier, the secret and the challenge. */
export function chapResponse(id: number, secret: string, challenge: Buffer): Buffer {
  return createHash('md5').update(Buffer.of(id & 0xff)).update(secret, 'utf8').update(challenge).digest();
}

/** Constant time in the length of `expected`; unequal lengths compare against a copy of itself. */
export function equalConstantTime(actual: Buffer, expected: Buffer): boolean {
  if (actual.length !== expected.length) {
    timingSafeEqual(expected, expected);
    return false;
  }
  return timingSafeEqual(actual, expected);
}
