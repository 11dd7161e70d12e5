// metro-agent: one per site. Wires the cores to their edges: topology -> volume files (sparse,
// created on first start) -> SCSI targets (one per group, one LUN per volume) -> the iSCSI portal,
// plus the gRPC control service for metroctl. The only place where adapters meet cores.
import fs from 'node:fs/promises';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
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
import { openVolumes, dirtyMapPath, type OpenVolume } from './volumes.ts';
import { MirrorSession, type SessionVolume } from './mirror/mirror-session.ts';
import { MirroredBlockDevice } from './mirror/mirrored-block-device.ts';
import { startApplierLink } from './mirror/mirror-applier.ts';
import { DirtyMap, dirtyMapDefaults } from './mirror/dirty-map.ts';
import { openDirtyMapFile } from './mirror/dirty-map-file.ts';
import { ackPolicyDefaults } from './mirror/ack-policy.ts';
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
  const mirrors = await startMirrors({ topology, site, meta, volumes, log });
  const targets = buildTargets({
    topology, site, volumes: mirrors.volumes,
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
  const control = await startControl({ topology, site, meta, volumes, log, sessions: () => portal.sessionCount(), mirrorSessions: mirrors.sessions });
  mirrors.startAppliers();

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
    mirrors.close();
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

/**
 * The mirror of every group (DESIGN.md "Data path"): at the group's primary a MirrorSession with a
 * dirty map per volume, and MirroredBlockDevices for its targets; at the secondary an applier that
 * dials the primary's agent. Roles are static (the preferred site) until arbitration comes.
 * Not driven yet: resync of the regions a detached secondary missed (they stay dirty, it stays outdated).
 */
async function startMirrors(ctx: { topology: Topology; site: Site; meta: MetaStore; volumes: OpenVolume[]; log: Logger }) {
  const { topology: t, site, meta, log } = ctx;
  const sessions = new Map<string, MirrorSession>();
  const links: Array<{ close(): void }> = [];
  const appliers: Array<() => void> = [];
  const volumes: OpenVolume[] = [...ctx.volumes];
  const peer = t.sites.find((s) => s !== site);
  // METRO_MIRROR=0 turns mirroring off (one-site runs, comparisons against the unmirrored path).
  if (!peer || process.env.METRO_MIRROR === '0') return { volumes, sessions, startAppliers: () => undefined, close: () => undefined };
  for (const g of t.groups) {
    const rec = meta.read().groups[g.name];
    const own = ctx.volumes.filter((v) => v.group.name === g.name).sort((a, b) => a.volume.lun - b.volume.lun);
    const regionSizeBytes = dirtyMapDefaults.regionSizeBytes;
    if (rec?.role !== 'primary') {
      appliers.push(() => links.push(startApplierLink({
        cluster: t.name, group: g.name, site: site.name, epoch: rec?.epoch ?? 0,
        devices: own.map((v) => v.device), regionSizeBytes,
        address: peer.agent.address, port: peer.agent.port, log: log.child({ part: 'mirror', group: g.name }),
        adoptEpoch: (epoch) => meta.update((m) => { m.groups[g.name] = { ...m.groups[g.name], epoch }; }),
      })));
      continue;
    }
    const sessionVolumes: SessionVolume[] = [];
    for (const [index, v] of own.entries()) {
      const { file, image } = await openDirtyMapFile(dirtyMapPath(site, g.name, v.volume.name), {
        regionSizeBytes, regionCount: Math.ceil(v.volume.sizeBytes / regionSizeBytes), extentRegions: dirtyMapDefaults.extentRegions,
      });
      const dirty = new DirtyMap({ ...dirtyMapDefaults, volumeSizeBytes: v.volume.sizeBytes }, image);
      sessionVolumes.push({ index, sizeBytes: v.volume.sizeBytes, regionSizeBytes, dirty, dirtyFile: file });
    }
    const r = g.replication;
    const session = new MirrorSession({
      cluster: t.name, group: g.name, site: site.name, epoch: rec.epoch, volumes: sessionVolumes,
      policy: { ...ackPolicyDefaults, policy: r.ack, syncMaxRttMs: r.syncMaxRttMs, maxLagMs: r.maxLagMs },
      secondaryRecord: rec.peerOutdated ? 'outdated' : 'up-to-date',
      recorder: {
        markOutdated: (reason) => meta.update((m) => { m.groups[g.name].peerOutdated = { reason, since: new Date().toISOString() }; }),
        markUpToDate: () => meta.update((m) => { delete m.groups[g.name].peerOutdated; }),
      },
      log: log.child({ part: 'mirror', group: g.name }),
    });
    sessions.set(g.name, session);
    for (const [index, v] of own.entries()) {
      volumes[volumes.indexOf(v)] = { ...v, device: new MirroredBlockDevice(v.device, session, index) };
    }
  }
  return {
    volumes,
    sessions,
    /** After the gRPC server listens: two agents starting together each find the other's. */
    startAppliers: () => { for (const a of appliers) a(); },
    close: () => {
      for (const l of links) l.close();
      for (const s of sessions.values()) s.close();
    },
  };
}

/** MetroMirror.Attach: the first message names the group; its session takes the stream over. */
function mirrorAttach(t: Topology, sessions: Map<string, MirrorSession>, log: Logger) {
  return (call: grpc.ServerDuplexStream<Record<string, any>, Record<string, unknown>>): void => {
    call.once('data', (m: Record<string, any>) => {
      const refuse = (reason: string, message: string): void => {
        log.warn('mirror stream refused', { reason, message });
        call.write({ refusal: { epoch_seen: String(m.hello?.epoch ?? 0), epoch_current: '0', reason, message } });
        call.end();
      };
      if (m.kind !== 'hello') return refuse('WRONG_GROUP', 'the first message of a mirror stream must be a hello');
      if (m.hello.cluster !== t.name) return refuse('WRONG_CLUSTER', `this agent serves cluster ${t.name}, not ${m.hello.cluster}`);
      const session = sessions.get(m.hello.group);
      if (!session) return refuse('NOT_PRIMARY', `this site is not the primary of group ${m.hello.group}`);
      session.attach(call, m.hello);
    });
    call.on('error', () => undefined);
  };
}

async function startControl(ctx: {
  topology: Topology; site: Site; meta: MetaStore; volumes: OpenVolume[]; log: Logger; sessions: () => number;
  mirrorSessions: Map<string, MirrorSession>;
}): ReturnType<typeof startGrpcServer> {
  const startedAt = performance.now();
  const Agent = serviceOf('agent.proto', 'MetroAgent');
  const Mirror = serviceOf('mirror.proto', 'MetroMirror');
  const { topology: t, site } = ctx;
  return startGrpcServer({
    address: site.agent.address,
    port: site.agent.port,
    services: [{
      definition: Mirror.service,
      implementation: { Attach: mirrorAttach(t, ctx.mirrorSessions, ctx.log.child({ part: 'mirror' })) },
    }, {
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
