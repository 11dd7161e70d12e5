// Assembles command forwarding for an agent (main.ts calls it): the GroupPaths over the site's
// local targets, the MetroForward service the agent's gRPC server adds, and the links a secondary
// opens to the primary's agent over one channel made by common/grpc-client.ts (through the site's
// routes.peer, where the site reaches its peer's agent).
import { randomUUID } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { dial } from '../../common/grpc-client.ts';
import type { ServiceEntry } from '../../common/grpc-server.ts';
import { callerIdentity } from '../../common/tls/grpc-security.ts';
import type { Logger } from '../../common/log.ts';
import { serviceOf } from '../../common/proto.ts';
import type { Group, Site, Topology } from '../../common/topology/index.ts';
import type { AluaPortGroups } from '../scsi/alua.ts';
import type { ScsiTarget, TargetRegistry } from '../scsi/types.ts';
import { ForwardLink } from './forward-link.ts';
import { ForwardService } from './forward-service.ts';
import { GroupPaths } from './group-paths.ts';
import type { RoleView } from '../role/role-runtime.ts';

/** How often a primary reads its secondaries' up-to-date records for their ALUA states. */
const upToDatePollMs = 250;

/** Read answers (the bulk) flow primary -> secondary on this client's streams: a larger window. */
const flowControlWindowBytes = 16 * 1024 * 1024;

export interface Forwarding {
  readonly paths: GroupPaths;
  readonly registry: TargetRegistry;
  readonly service: ServiceEntry;
  /** Opens the secondary's links (after the agent's gRPC server listens); `roleStatus` tells, at a
   *  primary, whether its secondary is up-to-date (its port group's ALUA state). */
  start(roleStatus?: () => ReadonlyArray<{ group: string; isPrimary: boolean; secondaryUpToDate: boolean | null }>): void;
  /** The role runtime's view of a group: who is primary, whether this site may serve. */
  applyRoleView(group: string, view: Pick<RoleView, 'primary' | 'isPrimary' | 'access'>): void;
  /** The targets' add/remove as a topology apply drives them, each group's path following. */
  follow<T extends TargetsLike>(targets: T): T;
  close(): void;
}

interface TargetsLike {
  targets: Map<string, ScsiTarget>;
  alua: Map<string, AluaPortGroups>;
  addGroup(g: Group, ...rest: any[]): ScsiTarget;
  removeGroup(iqn: string): void;
}

export function startForwarding(o: {
  topology: Topology;
  site: Site;
  targets: { targets: Map<string, ScsiTarget>; registry: TargetRegistry; alua: Map<string, AluaPortGroups> };
  primarySiteOf: (group: string) => string;
  epochOf: (group: string) => number;
  peerUpToDate: (group: string) => boolean;
  log: Logger;
}): Forwarding {
  const { topology: t, site } = o;
  const incarnation = randomUUID();
  let poll: NodeJS.Timeout | undefined;
  const clients = new Map<string, grpc.Client>();
  const clientFor = (primary: string): grpc.Client => {
    let c = clients.get(primary);
    if (!c) {
      // Two sites: the peer is reached where the site's routes say (a proxy in tests, the agent otherwise).
      const peer = t.sites.find((s) => s.name === primary)!;
      const route = t.sites.length === 2 ? site.routes.peer : peer.agent;
      c = dial('forward.proto', 'MetroForward', route.address, route.port, {
        expect: { kind: 'agent', cluster: t.name, site: primary },
        channel: { 'grpc-node.flow_control_window': flowControlWindowBytes },
      });
      clients.set(primary, c);
    }
    return c;
  };
  const paths = new GroupPaths({
    self: site.name,
    sites: t.sites.map((s) => s.name),
    groups: t.groups.map((g) => ({ name: g.name, iqn: g.iqn, local: o.targets.targets.get(g.iqn)!, alua: o.targets.alua.get(g.iqn)! })),
    primaryOf: o.primarySiteOf,
    epochOf: o.epochOf,
    peerUpToDate: o.peerUpToDate,
    log: o.log,
    openLink: ({ group, primary, nexuses, onState }) => {
      const client = clientFor(primary);
      const link = new ForwardLink({
        cluster: t.name, group, site: site.name, incarnation,
        epoch: () => o.epochOf(group),
        open: () => (client as unknown as { Forward(): grpc.ClientDuplexStream<Record<string, unknown>, Record<string, any>> }).Forward(),
        log: o.log.child({ group }),
        onState,
      }, nexuses);
      return link;
    },
  });
  const service = new ForwardService({
    cluster: t.name,
    site: site.name,
    lookup: (group) => paths.lookupPrimary(group),
    portOf: (name) => t.sites.find((s) => s.name === name)?.index,
    onAttached: (group, secondary, attached) => paths.forwardAttached(group, secondary, attached),
    // With mutual TLS, a stream speaks for the site its certificate names, no other.
    callerSite: (call) => { const id = callerIdentity(call); return id?.kind === 'agent' ? id.site : undefined; },
    log: o.log,
  });
  paths.onLeavePrimary = (group, why) => service.dropGroup(group, why);
  return {
    paths,
    registry: paths.registry(o.targets.registry),
    service: { definition: serviceOf('forward.proto', 'MetroForward').service, implementation: service.implementation(), access: { Forward: 'peer-agent' } },
    start: (roleStatus) => {
      paths.start();
      if (!roleStatus) return;
      poll = setInterval(() => {
        for (const g of roleStatus()) if (g.isPrimary && g.secondaryUpToDate !== null) paths.setPeerUpToDate(g.group, g.secondaryUpToDate);
      }, upToDatePollMs);
      poll.unref();
    },
    applyRoleView: (group, view) => {
      if (!paths.has(group)) return;
      if (view.isPrimary) {
        // No quorum: fenced; a switchover under way: no primary to forward to (transitioning).
        paths.fence(group, view.access === 'unavailable');
        paths.setPrimary(group, view.access === 'transitioning' ? undefined : view.primary);
      } else {
        paths.fence(group, false);
        paths.setPrimary(group, view.primary);
      }
    },
    follow: (targets) => ({
      ...targets,
      addGroup: (g: Group, ...rest: any[]) => {
        const target = targets.addGroup(g, ...rest);
        paths.addGroup({ name: g.name, iqn: g.iqn, local: target, alua: targets.alua.get(g.iqn)! });
        return target;
      },
      removeGroup: (iqn: string) => {
        targets.removeGroup(iqn);
        paths.removeGroup(iqn);
      },
    }),
    close: () => {
      clearInterval(poll);
      paths.close();
      service.close();
      for (const c of clients.values()) c.close();
    },
  };
}
