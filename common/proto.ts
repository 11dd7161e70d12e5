// Loads the .proto contracts in protos/ with explicit proto-loader options, so every daemon and
// client decodes messages the same way (field names as written, 64-bit values as strings).
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { installRoot } from './install-root.ts';

const protosDir = path.join(installRoot, 'protos');

export const protoLoaderOptions: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [protosDir],
};

/** Parsed once per file: dial() reaches here on every call, and parsing agent.proto takes ms. */
const loaded = new Map<string, grpc.GrpcObject>();

/** Loads protos/<file> and returns the package object (e.g. `metrocluster.v1`). */
export function loadProto(file: string): grpc.GrpcObject {
  let pkg = loaded.get(file);
  if (pkg === undefined) {
    const def = protoLoader.loadSync(path.join(protosDir, file), protoLoaderOptions);
    const root = grpc.loadPackageDefinition(def);
    pkg = (root.metrocluster as grpc.GrpcObject).v1 as grpc.GrpcObject;
    loaded.set(file, pkg);
  }
  return pkg;
}

export function serviceOf(file: string, name: string): grpc.ServiceClientConstructor {
  return loadProto(file)[name] as grpc.ServiceClientConstructor;
}

/** Keepalive and size options shared by every channel (STYLE.md: pass library options explicitly). */
export const channelOptions: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_receive_message_length': 8 * 1024 * 1024,
  'grpc.max_send_message_length': 8 * 1024 * 1024,
};
