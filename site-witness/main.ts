// metro-witness: the arbiter of a topology, run in the third fire zone. It keeps its records in a
// lowdb file under the witness dataDir and answers health calls; arbitration comes with its own issue.
import fs from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import { JSONFilePreset } from 'lowdb/node';
import { createLogger } from '../common/log.ts';
import { serviceOf } from '../common/proto.ts';
import { startGrpcServer, shutdownGrpcServer } from '../common/grpc-server.ts';
import { loadTopologyOrExit, announceReady, onStopSignal, runMain, EXIT_USAGE } from '../common/daemon.ts';
import { VERSION } from '../common/version.ts';

interface WitnessRecords {
  formatVersion: 1;
  clusters: Record<string, { firstSeenAt: string; startCount: number }>;
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

  const db = await JSONFilePreset<WitnessRecords>(path.join(w.dataDir, 'witness.json'), { formatVersion: 1, clusters: {} });
  await db.update((d) => {
    const c = (d.clusters[topology.name] ??= { firstSeenAt: new Date().toISOString(), startCount: 0 });
    c.startCount += 1;
  });

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
