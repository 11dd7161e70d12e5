// Certificate work through the openssl tool (no hand-made ASN.1): a cluster CA and leaf
// certificates that carry a metrocluster identity URI plus the daemon's addresses. Keys are ECDSA
// P-256, made by Node's crypto and written mode 0600 before any other process can open them; every
// openssl run gets its own minimal config, so the system's openssl.cnf changes nothing.
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { DaemonError } from '../daemon.ts';
import { writePrivateFileSync } from '../private-file.ts';
import { describeIdentity, identityUri, type Identity } from './identity.ts';

const run = promisify(execFile);
/** X.509 caps a CN at 64 characters (RFC 5280 ub-common-name). */
const commonNameCharsMax = 64;

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd, timeout: 30_000, env: { ...process.env, OPENSSL_CONF: path.join(cwd, 'openssl.cnf') } });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new DaemonError('certificates are made with the openssl tool, which is not installed (apt-get install openssl)', 1, { cause: err });
    // openssl names files and options on stderr, never key material.
    throw new DaemonError(`openssl ${args[0]} failed: ${(e.stderr ?? e.message).trim().split('\n')[0]}`, 1, { cause: err });
  }
}

async function withWorkDir<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'metro-pki-'));
  try {
    return await work(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A new ECDSA P-256 private key, PKCS#8 PEM. */
function newKeyPem(): string {
  return crypto.generateKeyPairSync('ec', {
    namedCurve: 'P-256',
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  }).privateKey;
}

/** `YYYYMMDDHHMMSSZ`, the GeneralizedTime form `openssl ca -startdate/-enddate` takes. */
function generalizedTime(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z');
}

export function subjectAltNames(id: Identity, hosts: readonly string[]): string {
  const names = [`URI:${identityUri(id)}`];
  for (const h of new Set(hosts)) names.push(net.isIP(h) ? `IP:${h}` : `DNS:${h}`);
  return names.join(',');
}

function commonName(text: string): string {
  return text.slice(0, commonNameCharsMax).replace(/[/\\=+,]/g, '-');
}

/** A self-signed CA certificate for one cluster; its key is written first, mode 0600. */
export async function createCa(o: { cluster: string; certFile: string; keyFile: string; days: number }): Promise<void> {
  const key = newKeyPem();
  await withWorkDir(async (dir) => {
    fs.writeFileSync(path.join(dir, 'ca.key'), key, { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'openssl.cnf'), [
      '[req]', 'distinguished_name = dn', 'prompt = no', 'x509_extensions = v3_ca',
      '[dn]', `CN = ${commonName(`metrocluster ${o.cluster} CA`)}`,
      '[v3_ca]', 'basicConstraints = critical,CA:TRUE,pathlen:0', 'keyUsage = critical,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash', '',
    ].join('\n'));
    const out = path.join(dir, 'ca.crt');
    await openssl(['req', '-x509', '-new', '-config', 'openssl.cnf', '-key', 'ca.key', '-sha256', '-days', String(o.days), '-out', out], dir);
    writePrivateFileSync(o.keyFile, key);
    fs.copyFileSync(out, o.certFile);
  });
}

export interface IssueOptions {
  caCert: string;
  caKey: string;
  identity: Identity;
  /** Addresses the holder serves on (daemons): IP or DNS SANs beside the identity URI. */
  hosts: readonly string[];
  notBefore: Date;
  notAfter: Date;
  certFile: string;
  keyFile: string;
}

/**
 * A new key and a certificate for it signed by the cluster CA (`openssl req` then `openssl ca`).
 * Both are made aside, then renamed over the old files (key first): a holder restarting during a
 * rotation reads the old pair or the new one.
 */
export async function issueCertificate(o: IssueOptions): Promise<void> {
  const key = newKeyPem();
  await withWorkDir(async (dir) => {
    fs.writeFileSync(path.join(dir, 'leaf.key'), key, { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'index.txt'), '');
    fs.writeFileSync(path.join(dir, 'openssl.cnf'), [
      '[req]', 'distinguished_name = dn', 'prompt = no',
      '[dn]', `CN = ${commonName(`${describeIdentity(o.identity)} of ${o.identity.cluster}`)}`,
      '[ca]', 'default_ca = cluster_ca',
      '[cluster_ca]', `database = ${path.join(dir, 'index.txt')}`, `new_certs_dir = ${dir}`, 'default_md = sha256',
      'policy = any_name', 'unique_subject = no', 'copy_extensions = none', 'rand_serial = yes',
      '[any_name]', 'commonName = supplied',
      '[leaf]', 'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature',
      'extendedKeyUsage = serverAuth,clientAuth', 'subjectKeyIdentifier = hash', 'authorityKeyIdentifier = keyid',
      `subjectAltName = ${subjectAltNames(o.identity, o.hosts)}`, '',
    ].join('\n'));
    await openssl(['req', '-new', '-config', 'openssl.cnf', '-key', 'leaf.key', '-out', 'leaf.csr'], dir);
    await openssl([
      'ca', '-batch', '-notext', '-config', 'openssl.cnf', '-extensions', 'leaf', '-in', 'leaf.csr', '-out', 'leaf.crt',
      '-cert', o.caCert, '-keyfile', o.caKey, '-startdate', generalizedTime(o.notBefore), '-enddate', generalizedTime(o.notAfter),
    ], dir);
    const tmp = `${o.certFile}.tmp-${process.pid}`;
    fs.copyFileSync(path.join(dir, 'leaf.crt'), tmp);
    writePrivateFileSync(o.keyFile, key);
    fs.renameSync(tmp, o.certFile);
  });
}
