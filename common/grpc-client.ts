// Clients of the daemons' gRPC services: a channel with the process's security (mutual TLS unless
// the topology says insecure; the server must present the certificate of the daemon dialled), and
// one unary call with a deadline, the error mapped to a sentence an admin can act on.
import * as grpc from '@grpc/grpc-js';
import { channelOptions, serviceOf } from './proto.ts';
import { DaemonError } from './daemon.ts';
import { channelCredentials, currentGrpcSecurity, daemonAt, type GrpcSecurity } from './tls/grpc-security.ts';
import type { Identity } from './tls/identity.ts';

export interface DialOptions {
  /** Default: the process's (useGrpcSecurity). */
  security?: GrpcSecurity;
  /** The daemon expected at address:port; default: the topology's daemon listening there. */
  expect?: Identity;
  /** Extra channel options over the shared ones. */
  channel?: grpc.ChannelOptions;
}

/** Credentials and options for a channel to address:port; for clients built by hand (streams). */
export function channelFor(address: string, port: number, o: DialOptions = {}): { target: string; credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  const sec = o.security ?? currentGrpcSecurity();
  const expect = o.expect ?? daemonAt(sec.topology, address, port, sec.self);
  if (expect === undefined) {
    throw new DaemonError(`no daemon of topology ${sec.topology.file} listens on ${address}:${port}: cannot tell which certificate it must present`);
  }
  const host = address.includes(':') ? `[${address}]` : address;
  const target = `${host}:${port}`;
  const c = channelCredentials(sec, expect, target);
  return { target, credentials: c.credentials, options: { ...channelOptions, ...c.options, ...o.channel } };
}

export function dial(file: string, service: string, address: string, port: number, o: DialOptions = {}): grpc.Client {
  const Ctor = serviceOf(file, service);
  const c = channelFor(address, port, o);
  return new Ctor(c.target, c.credentials, c.options);
}

export type CallResult<T> = { ok: true; value: T } | { ok: false; reason: string; code?: grpc.status };

/** The sentence for a failed call: a refused handshake says why, not only "unreachable". */
export function failureReason(err: grpc.ServiceError): string {
  if (err.code !== grpc.status.UNAVAILABLE) return err.details || err.message;
  const tls = /certificate|handshake|SSL|TLS|alert|expected (?:agent|witness)/i.exec(err.details ?? '');
  return tls ? `unreachable (TLS: ${err.details})` : 'unreachable';
}

/** Default deadline of a call: a fresh channel's TCP and TLS handshakes plus the answer of a daemon
 *  on a busy machine; an admin waits this long at most to learn that a daemon is down. */
export const callDeadlineMsDefault = 5000;

/** One unary call with a deadline; never throws. */
export function call<T>(client: grpc.Client, method: string, request: object, deadlineMs = callDeadlineMsDefault): Promise<CallResult<T>> {
  return new Promise((resolve) => {
    const fn = (client as unknown as Record<string, Function>)[method];
    fn.call(client, request, { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, value: T) => {
      if (err) resolve({ ok: false, reason: failureReason(err), code: err.code });
      else resolve({ ok: true, value });
    });
  });
}
