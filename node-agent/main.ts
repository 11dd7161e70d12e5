// metro-agent: one per site. Wires the cores to their edges: topology -> volume files (sparse,
// created on first start) -> SCSI targets (one per group, one LUN per volume) -> the iSCSI portal,
// plus the gRPC control service for metroctl. The only place where adapters meet cores.
import fs from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import { distance } from 'fastest-levenshtein';
import type { Site, Topology } from '../common/topology/index.ts';
import { createLogger, type Logger } from '../common/log.ts';
import { serviceOf } from '../common/proto.ts';
import { startGrpcServer, shutdownGrpcServer } from '../common/grpc-server.ts';
import {
  loadTopologyOrExit, announceReady, onStopSignal, runMain, DaemonError, EXIT_USAGE,
} from '../common/daemon.ts';
import { VERSION } from '../common/version.ts';
import { openMetaStore, volumeKey, type MetaStore } from './meta-store.ts';
import { openVolumes, type OpenVolume } from './volumes.ts';
import { buildTargets } from './targets.ts';
import { metaReservationStore } from './meta-reservations.ts';
import { readAccess } from './access.ts';
import { startPortal } from './iscsi/portal.ts';

async function main(): Promise<void> {
  const program = new Command('metro-agent')
    .description('run the agent of one site of a metrocluster topology')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .requiredOption('--site <name>', 'the site this agent runs')
    .option('--log-file <file>', 'JSON log file (default: <dataDir>/logs/agent.log)')
    .version(VERSION)
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE));
  program.parse();
  const opts = program.opts<{ file: string; site: string; logFile?: string }>();

  const topology = await loadTopologyOrExit(opts.file);
  const site = findSite(topology, opts.site);
  await fs.mkdir(site.dataDir, { recursive: true });
  const log = createLogger({
    component: `agent/${site.name}`,
    file: opts.logFile ?? path.join(site.dataDir, 'logs', 'agent.log'),
  });

  const meta = await openMetaStore(path.join(site.dataDir, 'agent-meta.json'), { cluster: topology.name, site: site.name });
  checkIdentity(meta, topology, site);
  await initGroups(meta, topology, site);
  const volumes = await openVolumes({ topology, site, meta, log });
  const targets = buildTargets({
    topology, site, volumes,
    primarySiteOf: (group) => primarySiteOf(meta, topology, site, group),
    reservationStore: metaReservationStore(meta),
  });
  const access = await readAccess(topology);

  const portal = await startPortal({
    address: site.portal.address,
    port: site.portal.port,
    portalGroupTag: site.index,
    registry: targets.registry,
    auth: access,
    logger: log.child({ part: 'iscsi' }),
  });
  const control = await startControl({ topology, site, meta, volumes, log, sessions: () => portal.sessionCount() });

  log.info('agent serving', {
    cluster: topology.name, site: site.name,
    portal: `${portal.address.address}:${portal.address.port}`, grpc: `${site.agent.address}:${control.port}`,
    groups: topology.groups.map((g) => g.name),
  });
  announceReady({
    type: 'ready', role: 'agent', name: site.name,
    listen: [
      { what: 'iscsi', address: portal.address.address, port: portal.address.port },
      { what: 'grpc', address: site.agent.address, port: control.port },
    ],
  });

  onStopSignal(async () => {
    log.info('agent stopping');
    await portal.close();
    await shutdownGrpcServer(control.server);
    await Promise.all(volumes.map((v) => v.device.close()));
  });
}

function findSite(t: Topology, name: string): Site {
  const site = t.sites.find((s) => s.name === name);
  if (site) return site;
  const names = t.sites.map((s) => s.name);
  const near = names.filter((n) => distance(n, name) <= 2);
  throw new DaemonError(
    `site "${name}" is not in topology ${t.file}: its sites are ${names.join(', ')}` +
      (near.length ? ` (did you mean "${near[0]}"?)` : ''),
    EXIT_USAGE,
  );
}

/** A data directory belongs to one site of one cluster: refuse to serve another's volumes. */
function checkIdentity(meta: MetaStore, t: Topology, site: Site): void {
  const m = meta.read();
  if (m.cluster !== t.name || m.site !== site.name) {
    throw new DaemonError(
      `data directory ${site.dataDir} belongs to site "${m.site}" of cluster "${m.cluster}", not to site "${site.name}" of cluster "${t.name}"`,
    );
  }
}

/** Until arbitration exists, each group's primary is its preferred site, in epoch 1. */
async function initGroups(meta: MetaStore, t: Topology, site: Site): Promise<void> {
  const missing = t.groups.filter((g) => !meta.read().groups[g.name]);
  if (missing.length === 0) return;
  await meta.update((m) => {
    for (const g of missing) m.groups[g.name] = { epoch: 1, role: g.preferredSite === site.name ? 'primary' : 'secondary' };
  });
}

/** Two sites: the group's primary is this site when its role here says so, else the other. */
function primarySiteOf(meta: MetaStore, t: Topology, site: Site, group: string): string {
  if (meta.read().groups[group]?.role === 'primary') return site.name;
  return t.sites.find((s) => s !== site)?.name ?? site.name;
}

async function startControl(ctx: {
  topology: Topology; site: Site; meta: MetaStore; volumes: OpenVolume[]; log: Logger; sessions: () => number;
}): ReturnType<typeof startGrpcServer> {
  const startedAt = performance.now();
  const Agent = serviceOf('agent.proto', 'MetroAgent');
  const { topology: t, site } = ctx;
  return startGrpcServer({
    address: site.agent.address,
    port: site.agent.port,
    services: [{
      definition: Agent.service,
      implementation: {
        Health: (_call: unknown, cb: (err: null, reply: object) => void) => cb(null, {
          role: 'agent', cluster: t.name, site: site.name, version: VERSION,
          uptime_ms: String(Math.round(performance.now() - startedAt)), pid: process.pid,
        }),
        Status: (_call: unknown, cb: (err: null, reply: object) => void) => {
          const m = ctx.meta.read();
          cb(null, {
            cluster: t.name,
            site: site.name,
            portal: { address: site.portal.address, port: site.portal.port, portal_group_tag: site.index, sessions: ctx.sessions() },
            groups: t.groups.map((g) => ({
              name: g.name, iqn: g.iqn, preferred_site: g.preferredSite,
              role: m.groups[g.name]?.role ?? 'secondary', epoch: String(m.groups[g.name]?.epoch ?? 0),
              volumes: g.volumes.map((v) => {
                const rec = m.volumes[volumeKey(g.name, v.name)];
                return { name: v.name, lun: v.lun, size_bytes: String(v.sizeBytes), file: rec?.file ?? '', naa: rec?.naaHex ?? '' };
              }),
            })),
          });
        },
      },
    }],
  });
}

await runMain(main);
