// The one place that turns a topology and "who am I" into gRPC credentials. Mutual TLS by default:
// every daemon and every client presents a certificate of the cluster CA; a server requires one
// (the handshake fails without it, with another CA's or an expired one) and a client accepts a
// server only if its certificate names the daemon it dialled (the identity URI, not the address,
// so a daemon moved behind a proxy or NAT is still recognised). Plaintext only with
// `security.insecure: true`, warned about at every start.
import crypto from 'node:crypto';
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Topology, TlsKeyPair } from '../topology/index.ts';
import { DaemonError } from '../daemon.ts';
import { assert } from '../assert.ts';
import { readPrivateFileSync } from '../private-file.ts';
import { describeIdentity, identityFromSan, sameIdentity, type Identity } from './identity.ts';
import { autoPkiDir, caFiles, localAdmin, pairFiles, usesAutoPki } from './pki.ts';

export type GrpcSecurity =
  | { mode: 'insecure'; topology: Topology; self: Identity; warnings: string[] }
  | {
    mode: 'tls'; topology: Topology; self: Identity; warnings: string[];
    ca: Buffer; cert: Buffer; key: Buffer;
    /** Where the pair came from, for messages (paths only). */
    files: TlsKeyPair & { ca: string };
  };

/** Certificates closer to their end than this are warned about at every start. */
const expiryWarningDays = 30;

export const insecureWarning =
  'INSECURE: security.insecure is true: gRPC runs in plaintext without certificates; anyone who reaches ' +
  'these ports can read mirrored data and call every operation. Remove it to run with mutual TLS.';

/** Who the local metroctl is: explicit files, else the topology's `security.tls.metroctl`, else the local admin. */
export interface ClientFiles { cert?: string; key?: string }

function readPublic(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new DaemonError(`${what}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, 1, { cause: err });
  }
}

function parseCert(pem: Buffer, file: string, what: string): crypto.X509Certificate {
  try {
    return new crypto.X509Certificate(pem);
  } catch (err) {
    throw new DaemonError(`${what}: ${file} holds no PEM certificate`, 1, { cause: err });
  }
}

/** Where the pair of `self` lives for this topology, or a sentence saying what is missing. */
function filesFor(t: Topology, self: Identity | 'operator', given: ClientFiles): TlsKeyPair & { ca: string } {
  const tls = t.security?.tls;
  const ca = tls?.ca ?? caFiles(autoPkiDir(t)).cert;
  if (given.cert !== undefined || given.key !== undefined) {
    if (given.cert === undefined || given.key === undefined) throw new DaemonError('--cert and --key go together: give both or neither', 2);
    return { ca, cert: given.cert, key: given.key };
  }
  if (tls) {
    const key = self === 'operator' ? 'metroctl' : self.kind === 'agent' ? self.site : 'witness';
    const pair = self === 'operator' ? tls.metroctl : tls.daemons[key];
    if (!pair) {
      throw new DaemonError(
        self === 'operator'
          ? 'security.tls names no certificate for metroctl: add security.tls.metroctl { cert, key } or pass --cert and --key'
          : `security.tls.daemons has no { cert, key } for ${key}`,
      );
    }
    return { ca, ...pair };
  }
  const id: Identity = self === 'operator' ? localAdmin(t) : self;
  return { ca, ...pairFiles(autoPkiDir(t), id) };
}

/**
 * Loads and checks the certificate `self` presents: issued by the cluster CA, valid now, naming
 * `self` (for 'operator': an admin or viewer of this cluster), matching its key. The key file must
 * be private. Every refusal names files, never their contents.
 */
export function loadGrpcSecurity(t: Topology, self: Identity | 'operator', given: ClientFiles = {}): GrpcSecurity {
  const operatorDefault = localAdmin(t);
  if (t.security?.insecure) return { mode: 'insecure', topology: t, self: self === 'operator' ? operatorDefault : self, warnings: [insecureWarning] };
  const files = filesFor(t, self, given);
  if (usesAutoPki(t) && !fs.existsSync(files.ca) && given.cert === undefined) {
    throw new DaemonError(`no cluster CA at ${files.ca}: start the cluster once with metroctl up, or run metroctl certs init -f ${t.file}`);
  }
  const caPem = readPublic(files.ca, 'cluster CA');
  const certPem = readPublic(files.cert, 'certificate');
  const key = readPrivateFileSync(files.key, 'private key');
  const ca = parseCert(caPem, files.ca, 'cluster CA');
  const cert = parseCert(certPem, files.cert, 'certificate');
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    throw new DaemonError(`certificate ${files.cert} is not issued by the cluster CA ${files.ca}`);
  }
  const now = Date.now();
  const notAfter = Date.parse(cert.validTo);
  if (now < Date.parse(cert.validFrom)) throw new DaemonError(`certificate ${files.cert} is not valid before ${cert.validFrom}`);
  if (now > notAfter) throw new DaemonError(`certificate ${files.cert} expired on ${cert.validTo}; issue a new one with metroctl certs rotate`);
  const named = identityFromSan(cert.subjectAltName);
  if (self === 'operator') {
    if (!named || (named.kind !== 'admin' && named.kind !== 'viewer') || named.cluster !== t.name) {
      throw new DaemonError(`certificate ${files.cert} is for ${named ? `${describeIdentity(named)} of cluster ${named.cluster}` : 'no metrocluster identity'}, expected an admin or viewer of cluster ${t.name}`);
    }
  } else if (!named || !sameIdentity(named, self)) {
    throw new DaemonError(`certificate ${files.cert} is for ${named ? `${describeIdentity(named)} of cluster ${named.cluster}` : 'no metrocluster identity'}, expected ${describeIdentity(self)} of cluster ${t.name}`);
  }
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey(key);
  } catch (err) {
    throw new DaemonError(`private key: ${files.key} holds no readable private key`, 1, { cause: err });
  }
  if (!cert.checkPrivateKey(privateKey)) throw new DaemonError(`private key ${files.key} does not belong to certificate ${files.cert}`);
  const warnings: string[] = [];
  const daysLeft = Math.floor((notAfter - now) / 86_400_000);
  if (daysLeft < expiryWarningDays) warnings.push(`certificate ${files.cert} expires in ${daysLeft} day(s) (${cert.validTo}); rotate it with metroctl certs rotate`);
  return { mode: 'tls', topology: t, self: named, warnings, ca: caPem, cert: certPem, key, files };
}

export function serverCredentials(sec: GrpcSecurity): grpc.ServerCredentials {
  if (sec.mode === 'insecure') return grpc.ServerCredentials.createInsecure();
  // checkClientCertificate: the handshake fails for a client without a certificate of this CA.
  return grpc.ServerCredentials.createSsl(sec.ca, [{ private_key: sec.key, cert_chain: sec.cert }], true);
}

/**
 * Credentials for a channel to the daemon `expect` at `target`: its certificate must name exactly
 * it. The TLS server name sent is a DNS form of the identity (SNI may not carry an IP address).
 */
export function channelCredentials(sec: GrpcSecurity, expect: Identity, target: string): { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  if (sec.mode === 'insecure') return { credentials: grpc.credentials.createInsecure(), options: {} };
  const credentials = grpc.credentials.createSsl(sec.ca, sec.key, sec.cert, {
    checkServerIdentity: (_serverName, cert) => {
      const named = identityFromSan(cert.subjectaltname);
      if (named && sameIdentity(named, expect)) return undefined;
      return new Error(`the server at ${target} presented a certificate for ${named ? `${describeIdentity(named)} of cluster ${named.cluster}` : 'no metrocluster identity'}, expected ${describeIdentity(expect)} of cluster ${expect.cluster}`);
    },
  });
  return { credentials, options: { 'grpc.ssl_target_name_override': serverName(expect) } };
}

/** `alpha.agent.demo.metrocluster`: names are DNS labels already (topology name rules). */
function serverName(id: Identity): string {
  const parts = id.kind === 'agent' ? [id.site, 'agent'] : id.kind === 'witness' ? ['witness'] : [id.name, id.kind];
  return [...parts, id.cluster, 'metrocluster'].join('.');
}

/**
 * The daemon of a topology reached at address:port, if any: one listening there, or, for an agent
 * dialling, the daemon its site's routes (a replication network, a proxy) lead to.
 */
export function daemonAt(t: Topology, address: string, port: number, dialler?: Identity): Identity | undefined {
  const at = (e: { address: string; port: number }): boolean => e.address === address && e.port === port;
  if (at(t.witness)) return { kind: 'witness', cluster: t.name };
  const site = t.sites.find((s) => at(s.agent));
  if (site) return { kind: 'agent', cluster: t.name, site: site.name };
  const own = dialler?.kind === 'agent' ? t.sites.find((s) => s.name === dialler.site) : undefined;
  const peer = t.sites.find((s) => s !== own);
  if (own && peer && at(own.routes.peer)) return { kind: 'agent', cluster: t.name, site: peer.name };
  if (own && at(own.routes.witness)) return { kind: 'witness', cluster: t.name };
  return undefined;
}

/** The identity in the certificate of the client of a server call; undefined without TLS or identity. */
export function callerIdentity(call: { getAuthContext?: () => { sslPeerCertificate?: { subjectaltname?: string } } | null }): Identity | undefined {
  return identityFromSan(call.getAuthContext?.()?.sslPeerCertificate?.subjectaltname);
}

let processSecurity: GrpcSecurity | (() => GrpcSecurity) | undefined;

/**
 * Sets the security every dial() and startGrpcServer() of this process uses unless given one.
 * Daemons set it once at start; metroctl sets a loader that runs at the first dial.
 */
export function useGrpcSecurity(sec: GrpcSecurity | (() => GrpcSecurity)): void {
  processSecurity = sec;
}

export function currentGrpcSecurity(): GrpcSecurity {
  assert(processSecurity !== undefined, 'gRPC security is not configured: call useGrpcSecurity() at process start');
  if (typeof processSecurity === 'function') processSecurity = processSecurity();
  return processSecurity;
}
