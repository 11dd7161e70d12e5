// metro-witness: the arbiter of a topology, run in the third fire zone. Wires the pure arbiter to
// its edges: per-group records in a lowdb file under the witness dataDir (persisted before any
// reply), the monotonic clock, and the gRPC service (Health, RegisterGroup, Arbitrate).
import fs from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import * as grpc from '@grpc/grpc-js';
import { createLogger } from '../common/log.ts';
import { serviceOf } from '../common/proto.ts';
import { startGrpcServer, shutdownGrpcServer } from '../common/grpc-server.ts';
import { loadTopologyOrExit, announceReady, onStopSignal, runMain, EXIT_USAGE } from '../common/daemon.ts';
import { VERSION } from '../common/version.ts';
import { openRecordStore } from './record-store.ts';
import { WitnessService, InvalidWitnessRequest } from './witness-service.ts';
import { requestFromWire, replyToWire } from './arbiter-wire.ts';
import type { Topology } from '../common/topology/index.ts';
import type { GroupRegistration } from './arbiter.ts';

type Callback = (err: grpc.ServiceError | null, reply?: object) => void;

function registrations(t: Topology): GroupRegistration[] {
  return t.groups.map((g) => ({
    key: { cluster: t.name, group: g.name },
    sites: [t.sites[0].name, t.sites[1].name] as const,
    preferredSite: g.preferredSite,
    leaseMs: t.failover.leaseMs,
    maxDataLossMs: t.failover.maxDataLossMs,
  }));
}

/** Maps a refused or failed call to a gRPC status with a reason; never crashes the witness. */
function answer<T extends object>(cb: Callback, work: () => Promise<T>, log: { error(m: string, meta?: Record<string, unknown>): void }): void {
  work().then(
    (reply) => cb(null, reply),
    (err: unknown) => {
      const fail = (code: grpc.status, details: string): void =>
        cb({ code, details, name: 'WitnessRefusal', message: details, metadata: new grpc.Metadata() });
      if (err instanceof InvalidWitnessRequest) return fail(grpc.status.INVALID_ARGUMENT, err.message);
      log.error('arbitration failed', { error: err instanceof Error ? err.message : String(err) });
      fail(grpc.status.INTERNAL, 'the witness could not record the decision');
    },
  );
}

async function main(): Promise<void> {
  const program = new Command('metro-witness')
    .description('run the witness of a metrocluster topology')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .option('--log-file <file>', 'JSON log file (default: <witness dataDir>/logs/witness.log)')
    .version(VERSION)
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE));
  program.parse();
  const opts = program.opts<{ file: string; logFile?: string }>();

  const topology = await loadTopologyOrExit(opts.file);
  const w = topology.witness;
  await fs.mkdir(w.dataDir, { recursive: true });
  const log = createLogger({ component: 'witness', file: opts.logFile ?? path.join(w.dataDir, 'logs', 'witness.log') });

  const store = await openRecordStore(path.join(w.dataDir, 'witness.json'));
  await store.noteStart(topology.name);
  const service = new WitnessService(store, () => performance.now(), log);
  for (const g of registrations(topology)) {
    const r = await service.register(g);
    if (!r.accepted) log.error('group registration refused', { cluster: g.key.cluster, group: g.key.group, refusal: r.refusal });
  }

  const startedAt = performance.now();
  const Witness = serviceOf('witness.proto', 'MetroWitness');
  const { server, port } = await startGrpcServer({
    address: w.address,
    port: w.port,
    services: [{
      definition: Witness.service,
      implementation: {
        Health: (_call: unknown, cb: (err: null, reply: object) => void) => cb(null, {
          role: 'witness', cluster: topology.name, site: '', version: VERSION,
          uptime_ms: String(Math.round(performance.now() - startedAt)), pid: process.pid,
        }),
        RegisterGroup: (call: grpc.ServerUnaryCall<Record<string, any>, object>, cb: Callback) => answer(cb, async () => {
          const q = call.request;
          if (!Array.isArray(q.sites) || q.sites.length !== 2) throw new InvalidWitnessRequest('a group has exactly two sites');
          const r = await service.register({
            key: { cluster: String(q.key?.cluster ?? ''), group: String(q.key?.group ?? '') },
            sites: [String(q.sites?.[0] ?? ''), String(q.sites?.[1] ?? '')] as const,
            preferredSite: String(q.preferred_site ?? ''),
            leaseMs: Number(q.lease_ms), maxDataLossMs: Number(q.max_data_loss_ms),
          });
          return { accepted: r.accepted, refusal: r.refusal ?? 'REFUSAL_NONE' };
        }, log),
        Arbitrate: (call: grpc.ServerUnaryCall<Record<string, any>, object>, cb: Callback) => answer(cb, async () => replyToWire(await service.arbitrate(requestFromWire(call.request))), log),
      },
    }],
  });
  log.info('witness serving', { cluster: topology.name, address: w.address, port });
  announceReady({ type: 'ready', role: 'witness', name: 'witness', listen: [{ what: 'grpc', address: w.address, port }] });

  onStopSignal(async () => {
    log.info('witness stopping');
    await shutdownGrpcServer(server);
  });
}

await runMain(main);
