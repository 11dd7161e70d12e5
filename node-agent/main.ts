// metro-agent: one per site. Wires the cores to their edges: topology -> volume files (sparse,
// created on first start) -> SCSI targets (one per group, one LUN per volume) -> the iSCSI portal,
// plus the gRPC control service for metroctl. The only place where adapters meet cores.
import fs from 'node:fs/promises';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { Command } from 'commander';
import { distance } from 'fastest-levenshtein';
import { groupIqn, type Site, type Topology } from '../common/topology/index.ts';
import { createLogger, type Logger } from '../common/log.ts';
import { serviceOf } from '../common/proto.ts';
import { startGrpcServer, shutdownGrpcServer } from '../common/grpc-server.ts';
import { endStreamWith, safeU64 } from '../common/grpc-validate.ts';
import { LogLimiter } from '../common/log-limiter.ts';
import {
  loadTopologyOrExit, announceReady, onStopSignal, runMain, DaemonError, EXIT_USAGE,
} from '../common/daemon.ts';
import { VERSION } from '../common/version.ts';
import { newGroupRecord, openMetaStore, volumeKey, type MetaStore } from './meta-store.ts';
import { openVolumes, type OpenVolume } from './volumes.ts';
import type { MirrorSession } from './mirror/mirror-session.ts';
import { mirrorStatusMessage } from './mirror/mirror-status.ts';
import { targetHostState } from './reservation-mirror.ts';
import { readBufferPool } from './storage/file-block-device.ts';
import { runVerify, type VerifyMismatch } from './mirror/verify-runner.ts';
import { checkHello, helloTimeoutMs, invalidMessageReason } from './mirror/mirror-checks.ts';
import { openSiteRoles, type SiteRoles } from './role/site-roles.ts';
import { startForwarding, type Forwarding } from './forward/forwarding.ts';
import { pathStatusMessage } from './forward/path-status.ts';
import { OperatorService } from './role/operator-service.ts';
import { peerExchangeHandler } from './role/peer-link.ts';
import { buildTargets } from './targets.ts';
import { metaReservationStore } from './meta-reservations.ts';
import { readAccess } from './access.ts';
import { startPortal } from './iscsi/portal.ts';
import { TopologyRuntime, servedTopology, topologyService } from './topology-apply.ts';
import { reachService } from '../common/ops/reach-service.ts';
import { ensureAutoPki } from '../common/tls/pki.ts';
import { loadGrpcSecurity, useGrpcSecurity } from '../common/tls/grpc-security.ts';

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

  const fileTopology = await loadTopologyOrExit(opts.file);
  const fileSite = findSite(fileTopology, opts.site);
  await fs.mkdir(fileSite.dataDir, { recursive: true });
  const log = createLogger({
    component: `agent/${fileSite.name}`,
    file: opts.logFile ?? path.join(fileSite.dataDir, 'logs', 'agent.log'),
  });

  // Security comes from the start file: a topology apply refuses changes of the security block.
  const pki = await ensureAutoPki(fileTopology);
  for (const m of pki.made) log.info('made certificates', { what: m });
  useGrpcSecurity(loadGrpcSecurity(fileTopology, { kind: 'agent', cluster: fileTopology.name, site: fileSite.name }));

  const meta = await openMetaStore(path.join(fileSite.dataDir, 'agent-meta.json'), { cluster: fileTopology.name, site: fileSite.name });
  checkIdentity(meta, fileTopology, fileSite);
  // A restart serves the topology last applied here (topology-apply.ts), not necessarily the file's.
  const topology = await servedTopology({ meta, fromFile: fileTopology, log });
  const site = findSite(topology, opts.site);
  await initGroups(meta, topology, site);
  const volumes = await openVolumes({ topology, site, meta, log });
  const roles = await openSiteRoles({ topology, site, meta, volumes, log });
  const targets = buildTargets({
    topology, site, volumes: roles.volumes,
    primarySiteOf: (group) => roles.primaryOf(group),
    reservationStore: metaReservationStore(meta),
    stateMirrorOf: (group) => roles.stateMirrorOf(group),
  });
  // A secondary adopts the primary's reservation states into its own targets (a promotion finds them).
  roles.setHostStates((group) => {
    const target = targets.targets.get(groupIqn(topology.name, group));
    return target ? targetHostState(target) : undefined;
  });
  // Each group's path: its local target while this site is the primary, else forwarding to the
  // primary; the role runtime's views move it (and set the ALUA states).
  const forwarding = startForwarding({
    topology, site, targets, log: log.child({ part: 'forward' }),
    primarySiteOf: (group) => roles.primaryOf(group),
    epochOf: (group) => meta.read().groups[group]?.epoch ?? 0,
    peerUpToDate: (group) => !meta.read().groups[group]?.peerOutdated,
  });
  roles.onView((group, view) => forwarding.applyRoleView(group, view));
  const access = await readAccess(topology);

  const portal = await startPortal({
    address: site.portal.address,
    port: site.portal.port,
    portalGroupTag: site.index,
    registry: forwarding.registry,
    auth: access,
    logger: log.child({ part: 'iscsi' }),
    limits: topology.access.limits,
  });
  const topologyRuntime = new TopologyRuntime({
    site, meta, log: log.child({ part: 'topology' }), opened: volumes, served: roles.volumes, targets: forwarding.follow(targets), mirrors: roles.mirrors, access,
  }, topology);
  const control = await startControl({
    topology, site, meta, volumes, log, sessions: () => portal.sessionCount(), mirrorSessions: roles.sessions, roles,
    current: () => topologyRuntime.topology, topologyService: topologyService(topologyRuntime, site.name, log.child({ part: 'topology' })),
    forwarding,
  });
  // After the gRPC server listens: two agents starting together each find the other's.
  await roles.start();
  forwarding.start(() => roles.runtime.status());
  // Ready means serving: the groups primary here wait for quorum (the peer's or the witness's lease), bounded.
  if (!(await roles.serving(topology.failover.leaseMs + 1000))) log.warn('not every group primary here has quorum yet: they stay unavailable until it has');

  log.info('agent serving', {
    cluster: topology.name, site: site.name,
    portal: `${portal.address.address}:${portal.address.port}`, grpc: `${site.agent.address}:${control.port}`,
    groups: topology.groups.map((g) => g.name),
  });
  // The stop handler first: whoever hears 'ready' may send SIGTERM at once.
  onStopSignal(async () => {
    log.info('agent stopping', { readBuffers: readBufferPool.stats });
    await portal.close();
    forwarding.close();
    roles.close();
    await shutdownGrpcServer(control.server);
    await Promise.all(volumes.map((v) => v.device.close()));
  });
  announceReady({
    type: 'ready', role: 'agent', name: site.name,
    listen: [
      { what: 'iscsi', address: portal.address.address, port: portal.address.port },
      { what: 'grpc', address: site.agent.address, port: control.port },
    ],
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

/** The groups new to this site are recorded (meta-store.ts newGroupRecord). */
async function initGroups(meta: MetaStore, t: Topology, site: Site): Promise<void> {
  const missing = t.groups.filter((g) => !meta.read().groups[g.name]);
  if (missing.length === 0) return;
  await meta.update((m) => {
    for (const g of missing) m.groups[g.name] = newGroupRecord(g.preferredSite, site.name);
  });
}

/** MetroAgent.Verify: runs at the group's primary, streams progress, ends with the outcome. */
function verifyHandler(current: () => Topology, sessions: Map<string, MirrorSession>, log: Logger) {
  return (call: grpc.ServerWritableStream<{ group: string; repair: boolean; rate_bytes_per_sec: string }, Record<string, unknown>>): void => {
    const { group, repair } = call.request;
    const g = current().groups.find((x) => x.name === group);
    const fail = (code: grpc.status, details: string): void => { call.emit('error', { code, details }); };
    if (!g) return fail(grpcStatus.NOT_FOUND, `no group "${group}" in this topology`);
    const session = sessions.get(group);
    if (!session) return fail(grpcStatus.FAILED_PRECONDITION, `this site is not the primary of group ${group}`);
    const begun = session.beginVerify();
    if (!begun.ok) return fail(grpcStatus.UNAVAILABLE, begun.reason);
    const rate = Number(call.request.rate_bytes_per_sec);
    const mismatch = (m: VerifyMismatch) => ({
      volume: g.volumes[m.volume].name, lun: m.volume, region: String(m.region), offset_bytes: String(m.offsetBytes), length_bytes: String(m.lengthBytes),
    });
    log.info('verify started', { group, repair });
    runVerify(session, {
      repair, rateBytesPerSec: rate > 0 ? rate : undefined,
      onProgress: (p) => call.write({ done: false, bytes_total: String(p.bytesTotal), bytes_checked: String(p.bytesChecked), rate_bytes_per_sec: p.rateBytesPerSec, mismatch_count: String(p.mismatchCount) }),
    }).then((o) => {
      log.info('verify finished', { group, mismatches: o.mismatchCount, unsettled: o.unsettled.length, repairedBytes: o.repaired?.bytesSent });
      call.write({
        done: true, bytes_total: String(o.bytesTotal), bytes_checked: String(o.bytesChecked), mismatch_count: String(o.mismatchCount),
        mismatches: o.mismatches.map(mismatch), unsettled: o.unsettled.map(mismatch),
        repaired: o.repaired !== undefined, repair_bytes_sent: String(o.repaired?.bytesSent ?? 0),
      });
      call.end();
    }, (err: Error) => {
      log.warn('verify failed', { group, error: err.message });
      fail(grpcStatus.UNAVAILABLE, `verify of group ${group} failed: ${err.message}`);
    }).finally(begun.end);
  };
}

/** MetroMirror.Attach: the first message names the group; its session takes the stream over. A
 *  stream that sends no valid hello in time, or anything else first, is refused with the reason. */
function mirrorAttach(t: Topology, sessions: Map<string, MirrorSession>, log: Logger) {
  const refusals = new LogLimiter(log);
  return (call: grpc.ServerDuplexStream<Record<string, any>, Record<string, unknown>>): void => {
    const refuse = (reason: string, message: string, code: grpc.status, epochSeen: unknown = '0'): void => {
      clearTimeout(timer);
      refusals.warn('mirror stream refused', { peer: call.getPeer(), reason, message });
      call.write({ refusal: { epoch_seen: safeU64(epochSeen) !== undefined ? String(epochSeen) : '0', epoch_current: '0', reason, message } });
      endStreamWith(call, code, `${reason}: ${message}`);
    };
    const timer = setTimeout(() => refuse(invalidMessageReason, `no hello within ${helloTimeoutMs} ms`, grpcStatus.DEADLINE_EXCEEDED), helloTimeoutMs);
    timer.unref();
    call.once('data', (m: Record<string, any>) => {
      clearTimeout(timer);
      const invalid = checkHello(m.kind === 'hello' ? m.hello : undefined);
      if (invalid) return refuse(m.kind === 'hello' ? invalidMessageReason : 'WRONG_GROUP', invalid, grpcStatus.INVALID_ARGUMENT, m.hello?.epoch);
      if (m.hello.cluster !== t.name) return refuse('WRONG_CLUSTER', `this agent serves cluster ${t.name}, not ${m.hello.cluster}`, grpcStatus.FAILED_PRECONDITION, m.hello.epoch);
      const session = sessions.get(m.hello.group);
      if (!session) return refuse('NOT_PRIMARY', `this site is not the primary of group ${m.hello.group}`, grpcStatus.FAILED_PRECONDITION, m.hello.epoch);
      session.attach(call, m.hello);
    });
    call.on('error', () => clearTimeout(timer));
    call.on('cancelled', () => clearTimeout(timer));
  };
}

async function startControl(ctx: {
  topology: Topology; site: Site; meta: MetaStore; volumes: OpenVolume[]; log: Logger; sessions: () => number;
  mirrorSessions: Map<string, MirrorSession>;
  roles: SiteRoles;
  /** The topology served now (a topology apply changes it) and the service that changes it. */
  current: () => Topology;
  topologyService: grpc.UntypedServiceImplementation;
  forwarding: Forwarding;
}): ReturnType<typeof startGrpcServer> {
  const startedAt = performance.now();
  const Agent = serviceOf('agent.proto', 'MetroAgent');
  const Mirror = serviceOf('mirror.proto', 'MetroMirror');
  const { topology: t, site } = ctx;
  const Peer = serviceOf('peer.proto', 'MetroPeer');
  const ops = new OperatorService(ctx.roles.runtime, site.name, t.failover.leaseMs, (g, ms) => ctx.roles.paths.get(g)!.drain(ms));
  const reply = (r: Awaited<ReturnType<OperatorService['switchover']>>) => ({
    ok: r.ok, message: r.message, epoch: String(r.epoch), primary: r.primary, elapsed_ms: r.elapsedMs,
    witness_consulted: r.witnessConsulted ?? true, data_loss: r.dataLoss ?? '',
  });
  type Cb = (err: null, reply: object) => void;
  return startGrpcServer({
    address: site.agent.address,
    port: site.agent.port,
    log: ctx.log.child({ part: 'grpc' }),
    services: [reachService(t, site.name), ctx.forwarding.service, {
      definition: Mirror.service,
      access: { Attach: 'peer-agent' },
      implementation: { Attach: mirrorAttach(t, ctx.mirrorSessions, ctx.log.child({ part: 'mirror' })) },
    }, {
      definition: Peer.service,
      access: { Exchange: 'peer-agent' },
      implementation: { Exchange: peerExchangeHandler((m) => ctx.roles.runtime.onPeerMessages(m)) },
    }, {
      definition: Agent.service,
      // Verify reads both copies at the resync bandwidth and can rewrite regions (--repair): admins only.
      access: {
        Health: 'viewer', Status: 'viewer', GetTopology: 'viewer', ApplyTopology: 'admin', Switchover: 'admin', Failover: 'admin', FailoverPreviewOf: 'admin',
        Verify: 'admin', SetResyncRate: 'admin',
      },
      implementation: {
        Health: (_call: unknown, cb: (err: null, reply: object) => void) => cb(null, {
          role: 'agent', cluster: t.name, site: site.name, version: VERSION,
          uptime_ms: String(Math.round(performance.now() - startedAt)), pid: process.pid,
        }),
        ...ctx.topologyService,
        Verify: verifyHandler(ctx.current, ctx.mirrorSessions, ctx.log.child({ part: 'verify' })),
        SetResyncRate: (call: grpc.ServerUnaryCall<{ group: string; rate_bytes_per_sec: string }, object>, cb: grpc.sendUnaryData<object>) => {
          const { group } = call.request;
          const rate = Number(call.request.rate_bytes_per_sec);
          const session = ctx.mirrorSessions.get(group);
          if (!ctx.current().groups.some((g) => g.name === group)) return cb({ code: grpcStatus.NOT_FOUND, details: `no group "${group}" in this topology` }, null);
          if (!session) return cb({ code: grpcStatus.FAILED_PRECONDITION, details: `this site is not the primary of group ${group}` }, null);
          if (!Number.isSafeInteger(rate) || rate < 1) return cb({ code: grpcStatus.INVALID_ARGUMENT, details: `rate_bytes_per_sec ${call.request.rate_bytes_per_sec} must be a positive integer` }, null);
          const previous = session.status().resyncRateBytesPerSec;
          session.setResyncRate(rate);
          ctx.log.info('resync rate set', { group, rateBytesPerSec: rate, previousBytesPerSec: previous });
          cb(null, { previous_rate_bytes_per_sec: String(Math.round(previous)) });
        },
        Status: (_call: unknown, cb: (err: null, reply: object) => void) => {
          const m = ctx.meta.read();
          const t = ctx.current();
          cb(null, {
            cluster: t.name,
            site: site.name,
            portal: { address: site.portal.address, port: site.portal.port, portal_group_tag: site.index, sessions: ctx.sessions() },
            groups: t.groups.map((g) => ({
              name: g.name, iqn: g.iqn, preferred_site: g.preferredSite,
              role: m.groups[g.name]?.role ?? 'secondary', epoch: String(m.groups[g.name]?.epoch ?? 0),
              arbitration: roleStatus(ops, g.name),
              volumes: g.volumes.map((v) => {
                const rec = m.volumes[volumeKey(g.name, v.name)];
                return { name: v.name, lun: v.lun, size_bytes: String(v.sizeBytes), file: rec?.file ?? '', naa: rec?.naaHex ?? '' };
              }),
              mirror: process.env.METRO_MIRROR === '0' ? undefined : mirrorStatusMessage({
                peerSite: t.sites.find((s) => s !== site)?.name ?? '', policy: g.replication.ack, record: m.groups[g.name],
                session: ctx.mirrorSessions.get(g.name), link: ctx.roles.paths.get(g.name)?.linkStatus(),
              }),
              // A group added by a topology apply has its path once the forwarding layer follows it.
              path: ctx.forwarding.paths.has(g.name) ? pathStatusMessage(ctx.forwarding.paths.status(g.name), t.sites.map((s) => s.name)) : undefined,
            })),
            divergent: (m.divergent ?? []).map((d) => ({ ...d, epoch: String(d.epoch), bytes: String(d.bytes), saved_at: d.savedAt })),
          });
        },
        Switchover: (c: grpc.ServerUnaryCall<{ group: string }, object>, cb: Cb) => { void ops.switchover(c.request.group).then((r) => cb(null, reply(r))); },
        Failover: (c: grpc.ServerUnaryCall<{ group: string; force: boolean }, object>, cb: Cb) => { void ops.failover(c.request.group, c.request.force).then((r) => cb(null, reply(r))); },
        FailoverPreviewOf: (c: grpc.ServerUnaryCall<{ group: string }, object>, cb: Cb) => {
          const p = ops.preview(c.request.group);
          cb(null, {
            primary_reachable: p.primaryReachable, witness_reachable: p.witnessReachable, secondary: p.secondary,
            lag_bounded: p.lagMs !== null, lag_ms: String(p.lagMs ?? 0), worst_case: p.worstCase, without_witness: p.withoutWitness,
          });
        },
      },
    }],
  });
}

function roleStatus(ops: OperatorService, group: string): object | undefined {
  const r = ops.status(group);
  if (!r) return undefined;
  const peer = r.peerLeaseRemainingMs > 0;
  const witness = r.witnessLeaseRemainingMs > 0;
  return {
    primary: r.primary, epoch: String(r.epoch),
    lease_state: peer && witness ? 'peer+witness' : peer ? 'peer' : witness ? 'witness' : 'none',
    peer_lease_remaining_ms: String(r.peerLeaseRemainingMs), witness_lease_remaining_ms: String(r.witnessLeaseRemainingMs),
    witness_reachable: r.witnessReachable, access: r.access, gate: r.gate, peer_alive: r.peerAlive,
    secondary: r.secondaryUpToDate === null ? 'unknown' : r.secondaryUpToDate ? 'up-to-date' : 'outdated',
    blocked: r.blocked ?? '', switchover: r.switchover, failover_requested: r.failoverRequested,
    forced_without_witness: r.forcedWithoutWitness,
  };
}

await runMain(main);
