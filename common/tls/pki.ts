// The cluster's certificates on disk. With no `security` block, a topology runs secure by default
// on an automatic PKI: a folder `pki` beside the witness's data directory holding the cluster CA,
// every daemon's certificate and a local admin's, made on first start (keys mode 0600, the folder
// 0700) and reused after. Creation is race-free: the whole set is built in a fresh folder that is
// renamed into place, so daemons starting together agree on one CA.
import fs from 'node:fs';
import path from 'node:path';
import type { Topology, TlsKeyPair } from '../topology/index.ts';
import { DaemonError } from '../daemon.ts';
import { createCa, issueCertificate } from './openssl.ts';
import type { Identity } from './identity.ts';

export const caValidityDays = 3650;
export const leafValidityDays = 365;
/** Certificates start a little in the past: another machine's clock may run behind. */
const backdateMs = 5 * 60_000;
/** Waiting for another process that holds the PKI lock; a lock older than this was left by a crash. */
const lockWaitMs = 30_000;
const lockStaleMs = 60_000;
const lockRetryMs = 100;
/** The admin that `metroctl` is on the automatic PKI. */
export const localAdminName = 'local';

export function autoPkiDir(t: Topology): string {
  return path.join(path.dirname(t.witness.dataDir), 'pki');
}

/** Whether the topology runs on the automatic PKI (no `security` block). */
export function usesAutoPki(t: Topology): boolean {
  return t.security === undefined;
}

export function caFiles(dir: string): TlsKeyPair {
  return { cert: path.join(dir, 'ca.crt'), key: path.join(dir, 'ca.key') };
}

/** File names of an identity's pair inside a PKI folder: agent-<site>, witness, admin-<name>, viewer-<name>. */
export function pairFiles(dir: string, id: Identity): TlsKeyPair {
  const base = id.kind === 'agent' ? `agent-${id.site}` : id.kind === 'witness' ? 'witness' : `${id.kind}-${id.name}`;
  return { cert: path.join(dir, `${base}.crt`), key: path.join(dir, `${base}.key`) };
}

/** The addresses a daemon serves on: its gRPC address and, for an agent, its portal's. */
export function hostsOf(t: Topology, id: Identity): string[] {
  if (id.kind === 'witness') return [t.witness.address];
  if (id.kind !== 'agent') return [];
  const site = t.sites.find((s) => s.name === id.site);
  return site ? [site.agent.address, site.portal.address] : [];
}

export function daemonIdentities(t: Topology): Identity[] {
  return [
    ...t.sites.map((s): Identity => ({ kind: 'agent', cluster: t.name, site: s.name })),
    { kind: 'witness', cluster: t.name },
  ];
}

/** The admin `metroctl` is on the automatic PKI (and when insecure). */
export function localAdmin(t: Topology): Identity {
  return { kind: 'admin', cluster: t.name, name: localAdminName };
}

/** Every identity the automatic PKI issues a certificate to: the daemons and the local admin. */
export function autoPkiIdentities(t: Topology): Identity[] {
  return [...daemonIdentities(t), localAdmin(t)];
}

export async function issueFor(t: Topology, ca: TlsKeyPair, id: Identity, out: TlsKeyPair, days = leafValidityDays): Promise<void> {
  const now = Date.now();
  await issueCertificate({
    caCert: ca.cert, caKey: ca.key, identity: id, hosts: hostsOf(t, id),
    notBefore: new Date(now - backdateMs), notAfter: new Date(now + days * 86_400_000),
    certFile: out.cert, keyFile: out.key,
  });
}

async function buildFresh(t: Topology, dir: string): Promise<void> {
  fs.mkdirSync(dir, { mode: 0o700 });
  const ca = caFiles(dir);
  await createCa({ cluster: t.name, certFile: ca.cert, keyFile: ca.key, days: caValidityDays });
  for (const id of autoPkiIdentities(t)) {
    await issueFor(t, ca, id, pairFiles(dir, id));
  }
}

/** A lock whose holder is gone (killed while issuing) or that is older than any issuing takes. */
function lockIsStale(lock: string): boolean {
  const st = fs.statSync(lock, { throwIfNoEntry: false });
  if (st === undefined) return true;
  if (Date.now() - st.mtimeMs > lockStaleMs) return true;
  const pid = Number(fs.readFileSync(lock, 'utf8'));
  if (!Number.isInteger(pid) || pid <= 0) return false; // being written right now
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

async function withLock<T>(dir: string, work: () => Promise<T>): Promise<T> {
  const lock = path.join(dir, '.lock');
  const until = Date.now() + lockWaitMs;
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx', mode: 0o600 });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (lockIsStale(lock)) { fs.rmSync(lock, { force: true }); continue; }
      if (Date.now() > until) throw new DaemonError(`the PKI folder ${dir} stays locked by ${lock}; remove it if no metrocluster process is making certificates`);
      await new Promise((r) => setTimeout(r, lockRetryMs));
    }
  }
  try {
    return await work();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

/**
 * Makes the automatic PKI of a topology complete: the CA and every daemon's and the local admin's
 * certificate. Returns what it made (empty on a restart). A topology with a `security` block is
 * left alone: its files are its operator's.
 */
export async function ensureAutoPki(t: Topology): Promise<{ dir: string; made: string[] }> {
  if (!usesAutoPki(t)) return { dir: autoPkiDir(t), made: [] };
  return ensurePkiAt(t, autoPkiDir(t));
}

/** The same for any folder (metroctl certs init --dir): what exists is kept, what is missing is made. */
export async function ensurePkiAt(t: Topology, dir: string): Promise<{ dir: string; made: string[] }> {
  const made: string[] = [];
  if (!fs.existsSync(caFiles(dir).cert)) {
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    const fresh = `${dir}.new-${process.pid}-${Date.now()}`;
    try {
      await buildFresh(t, fresh);
      fs.renameSync(fresh, dir);
      made.push(`cluster CA and certificates in ${dir}`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      // Another process won the race: its set is the cluster's.
    } finally {
      fs.rmSync(fresh, { recursive: true, force: true });
    }
  }
  const missing = (): Identity[] => autoPkiIdentities(t)
    .filter((id) => { const f = pairFiles(dir, id); return !fs.existsSync(f.cert) || !fs.existsSync(f.key); });
  if (!fs.existsSync(caFiles(dir).cert)) throw new DaemonError(`${dir} exists but holds no cluster CA (ca.crt): move it aside or name an empty folder`);
  // A restart finds everything in place and takes no lock.
  if (!fs.existsSync(caFiles(dir).key) || missing().length === 0) return { dir, made };
  await withLock(dir, async () => {
    for (const id of missing()) {
      const files = pairFiles(dir, id);
      await issueFor(t, caFiles(dir), id, files);
      made.push(files.cert);
    }
  });
  return { dir, made };
}
