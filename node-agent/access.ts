// Reads the topology's access rules for the iSCSI portal: the initiator allow-list and the CHAP
// secrets. A secret file readable by group or others is refused, as ssh refuses such a key; a
// secret's bytes never reach a log line or an error message.
import fs from 'node:fs/promises';
import type { Topology } from '../common/topology/index.ts';
import { DaemonError } from '../common/daemon.ts';

export interface PortalAccess {
  initiators: string[];
  chap?: { user: string; secret: string; mutual?: { user: string; secret: string } };
}

/** Short CHAP secrets fall to an offline dictionary attack on a captured exchange; 12 bytes (96
 *  bits) is the floor that initiators such as Windows enforce too. */
const secretBytesMin = 12;
const secretBytesMax = 255;

export async function readSecretFile(file: string, what: string): Promise<string> {
  let st;
  try {
    st = await fs.stat(file);
  } catch (err) {
    throw new DaemonError(`${what}: cannot read secret file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, 1, { cause: err });
  }
  if ((st.mode & 0o077) !== 0) {
    throw new DaemonError(
      `${what}: secret file ${file} is accessible by group or others (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 ${file}`,
    );
  }
  const secret = (await fs.readFile(file, 'utf8')).replace(/\r?\n$/, '');
  const n = Buffer.byteLength(secret);
  if (n < secretBytesMin || n > secretBytesMax) {
    throw new DaemonError(`${what}: secret in ${file} must be ${secretBytesMin} to ${secretBytesMax} bytes long, it is ${n}`);
  }
  return secret;
}

export async function readAccess(t: Topology): Promise<PortalAccess> {
  const chap = t.access.chap;
  if (!chap) return { initiators: t.access.initiators };
  const secret = await readSecretFile(chap.secretFile, 'access.chap.secretFile');
  const mutual = chap.mutual
    ? { user: chap.mutual.user, secret: await readSecretFile(chap.mutual.secretFile, 'access.chap.mutual.secretFile') }
    : undefined;
  if (mutual && mutual.secret === secret) {
    throw new DaemonError('access.chap: the mutual (target) secret must differ from the initiator secret (RFC 7143 §12.1.3)');
  }
  return { initiators: t.access.initiators, chap: { user: chap.user, secret, ...(mutual ? { mutual } : {}) } };
}
