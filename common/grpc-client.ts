// Clients of the daemons' gRPC services for metroctl: one call with a deadline, the error mapped to
// a sentence an admin can act on.
import * as grpc from '@grpc/grpc-js';
import { channelOptions, serviceOf } from './proto.ts';

export function dial(file: string, service: string, address: string, port: number): grpc.Client {
  const Ctor = serviceOf(file, service);
  const host = address.includes(':') ? `[${address}]` : address;
  return new Ctor(`${host}:${port}`, grpc.credentials.createInsecure(), channelOptions);
}

export type CallResult<T> = { ok: true; value: T } | { ok: false; reason: string };

/** One unary call with a deadline; never throws. */
export function call<T>(client: grpc.Client, method: string, request: object, deadlineMs = 2000): Promise<CallResult<T>> {
  return new Promise((resolve) => {
    const fn = (client as unknown as Record<string, Function>)[method];
    fn.call(client, request, { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, value: T) => {
      if (err) resolve({ ok: false, reason: err.code === grpc.status.UNAVAILABLE ? 'unreachable' : err.details || err.message });
      else resolve({ ok: true, value });
    });
  });
}
