// metro-witness: the arbiter of a topology, run in the third fire zone. Wires the pure arbiter to
// its edges: per-group records in a lowdb file under the witness dataDir (persisted before any
// reply), the monotonic clock, and the gRPC service (Health, RegisterGroup, Arbitrate, ArbitrateBatch).
import fs from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import * as grpc from '@grpc/grpc-js';
import { createLogger } from '../common/log.ts';
import { LogLimiter } from '../common/log-limiter.ts';
import { serviceOf } from '../common/proto.ts';
import { startGrpcServer, shutdownGrpcServer } from '../common/grpc-server.ts';
import { loadTopologyOrExit, announceReady, onStopSignal, runMain, EXIT_USAGE } from '../common/daemon.ts';
import { VERSION } from '../common/version.ts';
import { ensureAutoPki } from '../common/tls/pki.ts';
import { loadGrpcSecurity, useGrpcSecurity } from '../common/tls/grpc-security.ts';
import { openRecordStore } from './record-store.ts';
import { WitnessService, InvalidWitnessRequest } from './witness-service.ts';
import { answer, arbitrationHandlers, type Callback } from './arbitration-handlers.ts';
import { reachService } from '../common/ops/reach-service.ts';
import { openDrillStore } from './drills/drill-store.ts';
import { DrillCoordinator, drillsService } from './drills/drills-service.ts';
import type { Topology } from '../common/topology/index.ts';
import type { GroupRegistration } from './arbiter.ts';
import { witnessTopology, witnessTopologyService } from './topology-apply.ts';

function registrations(t: Topology): GroupRegistration[] {
  return t.groups.map((g) => ({
    key: { cluster: t.name, group: g.name },
    sites: [t.sites[0].name, t.sites[1].name] as const,
    preferredSite: g.preferredSite,
    leaseMs: t.failover.leaseMs,
    maxDataLossMs: t.failover.maxDataLossMs,
  }));
}

/** A RegisterGroup naming a group or site this witness's topology does not have, or undefined. */
function checkKnownGroup(t: Topology, q: Record<string, any>): string | undefined {
  if (q.key?.cluster !== t.name) return `this witness serves cluster ${t.name}, not ${String(q.key?.cluster).slice(0, 64)}`;
  if (!t.groups.some((g) => g.name === q.key?.group)) return `group ${String(q.key?.group).slice(0, 64)} is not in the topology of cluster ${t.name}`;
  const sites = t.sites.map((s) => s.name);
  if (!q.sites.every((s: unknown) => sites.includes(String(s)))) return `the sites of cluster ${t.name} are ${sites.join(' and ')}`;
  return undefined;
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

  const fileTopology = await loadTopologyOrExit(opts.file);
  const w = fileTopology.witness;
  await fs.mkdir(w.dataDir, { recursive: true });
  const log = createLogger({ component: 'witness', file: opts.logFile ?? path.join(w.dataDir, 'logs', 'witness.log') });

  const pki = await ensureAutoPki(fileTopology);
  for (const m of pki.made) log.info('made certificates', { what: m });
  useGrpcSecurity(loadGrpcSecurity(fileTopology, { kind: "witness", cluster: fileTopology.name }));

  const store = await openRecordStore(path.join(w.dataDir, 'witness.json'));
  await store.noteStart(fileTopology.name);
  // A restart serves the topology last applied (site-witness/topology-apply.ts), not necessarily the file's.
  const topology = await witnessTopology(store, fileTopology, log);
  const service = new WitnessService(store, () => performance.now(), log);
  const registerAll = async (t: Topology): Promise<void> => {
    for (const g of registrations(t)) {
      const r = await service.register(g);
      if (!r.accepted) log.error('group registration refused', { cluster: g.key.cluster, group: g.key.group, refusal: r.refusal });
    }
  };
  await registerAll(topology);

  const drillStore = await openDrillStore(path.join(w.dataDir, 'drills.json'), () => new Date().toISOString());
  const drills = new DrillCoordinator({ topology, store: drillStore, records: () => service.records(), log: log.child({ part: 'drills' }), operationTimeoutMs: 120_000 });

  const startedAt = performance.now();
  const refusals = new LogLimiter(log);
  const Witness = serviceOf('witness.proto', 'MetroWitness');
  const { server, port } = await startGrpcServer({
    address: w.address,
    port: w.port,
    log,
    services: [reachService(topology, 'witness'), drillsService(drills), {
      definition: Witness.service,
      access: { Health: 'viewer', RegisterGroup: ['agent', 'admin'], Arbitrate: 'agent', ArbitrateBatch: 'agent', GetTopology: 'viewer', ApplyTopology: 'admin' },
      implementation: {
        Health: (_call: unknown, cb: (err: null, reply: object) => void) => cb(null, {
          role: 'witness', cluster: topology.name, site: '', version: VERSION,
          uptime_ms: String(Math.round(performance.now() - startedAt)), pid: process.pid,
        }),
        RegisterGroup: (call: grpc.ServerUnaryCall<Record<string, any>, object>, cb: Callback) => answer(cb, async () => {
          const q = call.request;
          if (!Array.isArray(q.sites) || q.sites.length !== 2) throw new InvalidWitnessRequest('a group has exactly two sites');
          // Records persist: only the topology's groups, on its sites, may be (re)registered.
          const known = checkKnownGroup(topology, q);
          if (known) throw new InvalidWitnessRequest(known);
          const r = await service.register({
            key: { cluster: String(q.key?.cluster ?? ''), group: String(q.key?.group ?? '') },
            sites: [String(q.sites?.[0] ?? ''), String(q.sites?.[1] ?? '')] as const,
            preferredSite: String(q.preferred_site ?? ''),
            leaseMs: Number(q.lease_ms), maxDataLossMs: Number(q.max_data_loss_ms),
          });
          return { accepted: r.accepted, refusal: r.refusal ?? 'REFUSAL_NONE' };
        }, log, refusals, call),
        ...witnessTopologyService({ store, cluster: topology.name, register: registerAll, log }),
        ...arbitrationHandlers(service, log, refusals),
      },
    }],
  });
  drills.schedule();
  log.info('witness serving', { cluster: topology.name, address: w.address, port, drills: topology.drills.map((d) => d.name) });
  // The stop handler first: whoever hears 'ready' may send SIGTERM at once.
  onStopSignal(async () => {
    log.info('witness stopping');
    drills.stop();
    await shutdownGrpcServer(server);
  });
  announceReady({ type: 'ready', role: 'witness', name: 'witness', listen: [{ what: 'grpc', address: w.address, port }] });
}

await runMain(main);
