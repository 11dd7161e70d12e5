// Everything role-related at one site, assembled from the topology: per group the data path (dirty
// maps, mirror session or applier, gated LUN devices), one role runtime for all groups, the witness
// client and the peer link. main.ts builds it, gives its devices to the SCSI targets, serves its
// gRPC handlers and starts it once the gRPC server listens.
import type { Logger } from '../../common/log.ts';
import type { Group, Site, Topology } from '../../common/topology/index.ts';
import type { MetaStore } from '../meta-store.ts';
import type { OpenVolume } from '../volumes.ts';
import type { MirrorSession } from '../mirror/mirror-session.ts';
import { openSessionVolume } from '../mirror-setup.ts';
import { GroupDataPath, type PathVolume } from './group-data-path.ts';
import { RoleRuntime, roleTiming, type RoleView } from './role-runtime.ts';
import type { PersistedRole, RoleConfig } from './role-machine.ts';
import { grpcWitnessClient, type WitnessClient } from './witness-client.ts';
import { grpcPeerLink, type PeerLink } from './peer-link.ts';
import { reservationMirror, type HostStateOwner } from '../reservation-mirror.ts';
import type { StateMirror } from '../scsi/target.ts';

export interface SiteRoles {
  runtime: RoleRuntime;
  paths: Map<string, GroupDataPath>;
  /** The group's sessions by name (MetroMirror.Attach). */
  sessions: Map<string, MirrorSession>;
  /** The OpenVolumes with their devices replaced by the role-gated ones. */
  volumes: OpenVolume[];
  /** The parts a topology apply changes in place (topology-apply.ts AgentParts.mirrors). */
  mirrors: {
    sessions: Map<string, MirrorSession>;
    mirrorGroup(g: Group, own: OpenVolume[]): Promise<OpenVolume[]>;
    dropGroup(name: string): void;
    /** A volume added at the end of a group: returns it as the targets serve it. */
    addVolume(group: string, raw: OpenVolume, index: number): Promise<OpenVolume>;
    /** The group's last volume is deleted: its data path (mirror or applier, LUN devices, dirty map) lets it go. */
    removeLastVolume(group: string): Promise<void>;
  };
  /** The primary as persisted, for building the targets before the runtime runs. */
  primaryOf(group: string): string;
  /** Starts the runtime (after onView: the role views it publishes go there). */
  start(): Promise<void>;
  /** Who sets the ALUA states and paths from the role views (command forwarding). */
  onView(fn: (group: string, view: RoleView) => void): void;
  /** Where each group's host-visible state lives (its SCSI target), once the targets are built. */
  setHostStates(of: (group: string) => HostStateOwner | undefined): void;
  /** The group's target hands its reservation changes to the group's mirror through this. */
  stateMirrorOf(group: string): StateMirror;
  /** Resolves once every group this site is primary of may write (quorum reached), or after timeoutMs. */
  serving(timeoutMs: number): Promise<boolean>;
  close(): void;
}

export async function openSiteRoles(ctx: { topology: Topology; site: Site; meta: MetaStore; volumes: OpenVolume[]; log: Logger }): Promise<SiteRoles> {
  const { topology: t, site, meta, log } = ctx;
  const peer = t.sites.find((s) => s !== site);
  // Where this site dials the peer's agent and the witness (the topology's routes: a proxy, a replication network).
  const routes = { peer: peer ? site.routes.peer : undefined, witness: site.routes.witness };
  // METRO_MIRROR=0 turns mirroring off (one-site runs, comparisons against the unmirrored path).
  const mirroring = !!peer && process.env.METRO_MIRROR !== '0';
  const sessions = new Map<string, MirrorSession>();
  const paths = new Map<string, GroupDataPath>();
  const volumes: OpenVolume[] = [...ctx.volumes];
  const witness: WitnessClient = grpcWitnessClient(routes.witness.address, routes.witness.port, { kind: 'witness', cluster: t.name }, t.failover.leaseMs);
  const link: PeerLink | undefined = routes.peer ? grpcPeerLink(routes.peer.address, routes.peer.port, { kind: 'agent', cluster: t.name, site: peer!.name }, Math.round(t.failover.leaseMs / 2)) : undefined;
  const roleLog = log.child({ part: 'role' });
  let viewListener: ((group: string, view: RoleView) => void) | undefined;
  let hostStates: ((group: string) => HostStateOwner | undefined) | undefined;
  let tick: NodeJS.Timeout | undefined;

  const runtime: RoleRuntime = new RoleRuntime({
    now: () => performance.now(),
    persist: (group, p) => meta.update((m) => {
      m.groups[group] = { ...m.groups[group], epoch: p.epoch, role: p.primary === site.name ? 'primary' : 'secondary', roleState: { ...p } };
    }),
    saveDivergentWrites: async (group, epoch) => {
      const saved = await paths.get(group)!.saveDivergentWrites(epoch, site.dataDir);
      if (saved.length > 0) await meta.update((m) => { m.divergent = [...(m.divergent ?? []), ...saved]; });
    },
    applied: (group, view) => {
      roleLog.info('role', { group, ...view });
      paths.get(group)?.configure(view);
      viewListener?.(group, view);
    },
    witness,
    exchange: async (messages) => link ? link.exchange(messages) : 'unreachable',
    log: roleLog,
  }, t.name);

  const openPath = async (g: Group, own: OpenVolume[]): Promise<GroupDataPath> => {
    const pv: PathVolume[] = [];
    for (const [index, v] of own.entries()) pv.push({ open: v, ...(await openSessionVolume(site, g.name, v.volume, index, v.device)) });
    const p = new GroupDataPath({
      topology: t, site, peer, peerAgent: routes.peer, group: g, volumes: pv, runtime, sessions, mirroring,
      log: log.child({ part: 'path', group: g.name }), meta,
      hostState: () => hostStates?.(g.name),
    });
    paths.set(g.name, p);
    return p;
  };
  for (const g of t.groups) {
    const own = ctx.volumes.filter((v) => v.group.name === g.name).sort((a, b) => a.volume.lun - b.volume.lun);
    const p = await openPath(g, own);
    for (const [i, v] of own.entries()) volumes[volumes.indexOf(v)] = { ...v, device: p.devices[i] };
  }
  const timing = roleTiming(t.failover.leaseMs);
  const roleConfig = (g: Group): RoleConfig => ({ key: { cluster: t.name, group: g.name }, site: site.name, peer: peer!.name, preferredSite: g.preferredSite, timing });
  let started = false;

  const saved = (group: string): PersistedRole | null => {
    const rec = meta.read().groups[group];
    if (!rec) return null;
    // Metadata from before forced failovers without the witness lacks their flag: none was made.
    if (rec.roleState) return { ...rec.roleState, forcedWithoutWitness: rec.roleState.forcedWithoutWitness ?? false };
    // Metadata from before arbitration: the role it recorded, in its epoch.
    return { epoch: rec.epoch, primary: rec.role === 'primary' ? site.name : peer?.name ?? site.name, seq: 0, incarnation: 0, changeRequested: false, confirmSeq: null, forcedWithoutWitness: false };
  };

  const mirrors: SiteRoles['mirrors'] = {
    sessions,
    async mirrorGroup(g, own) {
      const p = await openPath(g, own);
      if (started && peer) await runtime.addGroup(roleConfig(g), saved(g.name));
      return own.map((v, i) => ({ ...v, device: p.devices[i] }));
    },
    dropGroup(name) {
      paths.get(name)?.close();
      paths.delete(name);
      runtime.dropGroup(name);
    },
    async addVolume(group, raw, index) {
      const p = paths.get(group)!;
      const device = p.addVolume({ open: raw, ...(await openSessionVolume(site, group, raw.volume, index, raw.device)) });
      return { ...raw, device };
    },
    async removeLastVolume(group) {
      await paths.get(group)?.removeLastVolume();
    },
  };

  return {
    runtime, paths, sessions, volumes, mirrors,
    primaryOf: (group) => saved(group)?.primary ?? site.name,
    onView: (fn) => { viewListener = fn; },
    setHostStates: (of) => { hostStates = of; },
    stateMirrorOf: (group) => reservationMirror((volume, kind, payload) => paths.get(group)?.recordState(volume, kind, payload) ?? Promise.resolve()),
    async start() {
      if (!peer) return;
      for (const g of t.groups) {
        // Idempotent; the witness registers its topology's groups itself. Not awaited: it may be down.
        void witness.register({ key: { cluster: t.name, group: g.name }, sites: [t.sites[0].name, t.sites[1].name], preferredSite: g.preferredSite, leaseMs: t.failover.leaseMs, maxDataLossMs: t.failover.maxDataLossMs });
      }
      await runtime.start(t.groups.map((g) => ({ config: roleConfig(g), saved: saved(g.name) })));
      started = true;
      tick = setInterval(() => { for (const p of paths.values()) p.reportMirror(); }, 100);
    },
    async serving(timeoutMs) {
      const ready = await Promise.all(t.groups.map((g) => runtime.until(g.name, (x) => x.persisted.primary !== site.name || runtime.gate(g.name) !== 'closed', timeoutMs)));
      return ready.every(Boolean);
    },
    close() {
      clearInterval(tick);
      runtime.stop();
      for (const p of paths.values()) p.close();
      witness.close();
      link?.close();
    },
  };
}
