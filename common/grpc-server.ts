// Starts a gRPC server on one address:port with the process's security (mutual TLS unless the
// topology says insecure) and a central role check: every service comes with an access table
// (method -> who may call it, see common/tls/authorization.ts); a method without an entry makes
// the start fail, and a call whose certificate may not make it is refused with PERMISSION_DENIED
// and a reason, and logged with who and what. Bind failures become one clear sentence.
import crypto from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { channelOptions } from './proto.ts';
import { DaemonError } from './daemon.ts';
import { assert } from './assert.ts';
import type { Logger } from './log.ts';
import { LogLimiter } from './log-limiter.ts';
import { endStreamWith, refusalStatus } from './grpc-validate.ts';
import { authorize, requirementsOf, type AccessTable } from './tls/authorization.ts';
import { describeIdentity, identityUri } from './tls/identity.ts';
import {
  callerIdentity, currentGrpcSecurity, loadGrpcSecurity, serverCredentials, useGrpcSecurity, type GrpcSecurity,
} from './tls/grpc-security.ts';

export type { AccessTable, Requirement } from './tls/authorization.ts';

export interface ServiceEntry {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
  /** Who may call each method of the service (every method needs an entry). */
  access: AccessTable;
}

type Handler = (call: any, callback?: (err: Partial<grpc.StatusObject> | null) => void) => void;

function guarded(entry: ServiceEntry, sec: GrpcSecurity, logRefusal: (meta: Record<string, unknown>) => void): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  const t = sec.topology;
  const ctx = { cluster: t.name, sites: t.sites.map((s) => s.name), self: sec.self };
  for (const [name, attrs] of Object.entries(entry.definition)) {
    const key = name in entry.implementation ? name : attrs.originalName;
    const fn = (key !== undefined ? entry.implementation[key] : undefined) as Handler | undefined;
    if (fn === undefined) continue;
    const reqs = requirementsOf(entry.access, name);
    assert(reqs.length > 0, `${attrs.path}: no entry in the service's access table (who may call it?)`);
    const handler: Handler = (call, callback) => {
      if (sec.mode === 'insecure') return fn(call, callback);
      const caller = callerIdentity(call);
      const d = authorize(reqs, caller, ctx);
      if (d.allowed) return fn(call, callback);
      logRefusal({
        method: attrs.path, caller: caller ? identityUri(caller) : 'no identity', peer: call.getPeer?.(), reason: d.reason,
      });
      const details = `permission denied: ${d.reason}`;
      if (attrs.responseStream) endStreamWith(call, grpc.status.PERMISSION_DENIED, details);
      else callback!(refusalStatus(grpc.status.PERMISSION_DENIED, details));
    };
    out[name] = handler as grpc.UntypedHandleCall;
  }
  for (const method of Object.keys(entry.access)) {
    assert(method in entry.definition, `access table names ${method}, which the service does not have`);
  }
  return out;
}

/** Credentials of the servers that serve with the process's security: SIGHUP renews them. */
const reloadable = new Set<grpc.ServerCredentials>();
let reloadInstalled = false;

/**
 * SIGHUP re-reads the process's own certificate and key (after `metroctl certs rotate`), checks them
 * as at start, and hands them to every server of the process: new connections get the new pair,
 * open ones keep theirs; channels dialled from then on present it too. A pair that fails the checks
 * is not taken: the old one stays, and the log says why.
 */
function installReload(log: Logger): void {
  if (reloadInstalled) return;
  reloadInstalled = true;
  process.on('SIGHUP', () => {
    const old = currentGrpcSecurity();
    if (old.mode !== 'tls') return log.warn('SIGHUP: running insecure, no certificates to reload');
    let sec: GrpcSecurity;
    try {
      sec = loadGrpcSecurity(old.topology, old.self);
    } catch (err) {
      return log.error('certificates not reloaded; still presenting the previous ones', { reason: (err as Error).message });
    }
    if (sec.mode !== 'tls') return;
    useGrpcSecurity(sec);
    // grpc-js applies new context options to a running secure server (Server.setSecureContext).
    for (const c of reloadable) (c as unknown as { updateSecureContextOptions(o: object): void }).updateSecureContextOptions({ ca: sec.ca, cert: [sec.cert], key: [sec.key] });
    for (const w of sec.warnings) log.warn(w);
    log.info('certificates reloaded', { cert: sec.files.cert, serial: new crypto.X509Certificate(sec.cert).serialNumber });
  });
}

export async function startGrpcServer(opts: {
  address: string;
  port: number;
  services: ServiceEntry[];
  /** Refused calls and the insecure warning go here. */
  log: Logger;
  /** Default: the process's (useGrpcSecurity). */
  security?: GrpcSecurity;
}): Promise<{ server: grpc.Server; port: number }> {
  const sec = opts.security ?? currentGrpcSecurity();
  for (const w of sec.warnings) opts.log.warn(w, { security: sec.mode });
  const credentials = serverCredentials(sec);
  if (opts.security === undefined && sec.mode === 'tls') {
    reloadable.add(credentials);
    installReload(opts.log);
  }
  const server = new grpc.Server(channelOptions);
  // A flood of refused calls writes a bounded number of lines (common/log-limiter.ts).
  const refusals = new LogLimiter(opts.log);
  const logRefusal = (meta: Record<string, unknown>): void => refusals.warn('call refused', meta);
  for (const s of opts.services) server.addService(s.definition, guarded(s, sec, logRefusal));
  const host = opts.address.includes(':') ? `[${opts.address}]` : opts.address;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${opts.port}`, credentials, (err, bound) => {
      if (err) reject(new DaemonError(`cannot listen on ${host}:${opts.port}: ${err.message}`, 1, { cause: err }));
      else resolve(bound);
    });
  });
  opts.log.info('gRPC serving', { address: `${host}:${port}`, security: sec.mode, identity: describeIdentity(sec.self) });
  return { server, port };
}

export function shutdownGrpcServer(server: grpc.Server, graceMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { server.forceShutdown(); resolve(); }, graceMs);
    server.tryShutdown(() => { clearTimeout(timer); resolve(); });
  });
}
