// Reads the topology's CHAP secrets (access.chap.secretFile and, for mutual CHAP, the target's
// access.chap.mutual.secretFile) for the agents' portals and the witness's drill probe, under one
// rule set: a file readable by group or others is refused, as ssh refuses such a key; a secret's
// bytes never reach a log line or an error message (errors name the file only).
import type { ChapCredentials } from './chap-digest.ts';
import type { ChapConfig } from '../topology/index.ts';
import { DaemonError } from '../daemon.ts';
import { readPrivateFile } from '../private-file.ts';

/** The secrets as read: the credentials the target checks and the probe proves. */
export type ChapSecrets = ChapCredentials;

/** Short CHAP secrets fall to an offline dictionary attack on a captured exchange; 12 bytes (96
 *  bits) is the floor that initiators such as Windows enforce too. */
export const secretBytesMin = 12;
export const secretBytesMax = 255;

export async function readSecretFile(file: string, what: string): Promise<string> {
  const secret = (await readPrivateFile(file, what)).toString('utf8').replace(/\r?\n$/, '');
  const n = Buffer.byteLength(secret);
  if (n < secretBytesMin || n > secretBytesMax) {
    throw new DaemonError(`${what}: secret in ${file} must be ${secretBytesMin} to ${secretBytesMax} bytes long, it is ${n}`);
  }
  return secret;
}

/** Both secrets of access.chap; throws a DaemonError that names the file and the rule broken. */
export async function readChapSecrets(chap: ChapConfig): Promise<ChapSecrets> {
  const secret = await readSecretFile(chap.secretFile, 'access.chap.secretFile');
  const mutual = chap.mutual
    ? { user: chap.mutual.user, secret: await readSecretFile(chap.mutual.secretFile, 'access.chap.mutual.secretFile') }
    : undefined;
  if (mutual && mutual.secret === secret) {
    throw new DaemonError('access.chap: the mutual (target) secret must differ from the initiator secret (RFC 7143 §12.1.3)');
  }
  return { user: chap.user, secret, ...(mutual ? { mutual } : {}) };
}
