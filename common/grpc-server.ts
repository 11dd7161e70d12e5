// Starts a gRPC server on one address:port and maps bind failures to one clear sentence.
import * as grpc from '@grpc/grpc-js';
import { channelOptions } from './proto.ts';
import { DaemonError } from './daemon.ts';

export async function startGrpcServer(opts: {
  address: string;
  port: number;
  services: Array<{ definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation }>;
}): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server(channelOptions);
  for (const s of opts.services) server.addService(s.definition, s.implementation);
  const host = opts.address.includes(':') ? `[${opts.address}]` : opts.address;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${opts.port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err) reject(new DaemonError(`cannot listen on ${host}:${opts.port}: ${err.message}`, 1, { cause: err }));
      else resolve(bound);
    });
  });
  return { server, port };
}

export function shutdownGrpcServer(server: grpc.Server, graceMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { server.forceShutdown(); resolve(); }, graceMs);
    server.tryShutdown(() => { clearTimeout(timer); resolve(); });
  });
}
