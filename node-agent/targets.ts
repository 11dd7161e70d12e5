// One SCSI target per group, one LUN per volume, and the registry the iSCSI portal looks targets up
// in. Every site presents the same IQN and LUN numbers; the site's index is its target port group
// and relative target port (DESIGN.md, identity across sites), with its ALUA state per group.
import type { Group, Site, Topology } from '../common/topology/index.ts';
import { AluaPortGroups, type AluaState } from './scsi/alua.ts';
import type { ReservationStore } from './scsi/reservation-store.ts';
import type { ScsiTarget, TargetRegistry } from './scsi/types.ts';
import type { TargetPort } from './scsi/command-table.ts';
import { createScsiTarget, type LunInventory, type StateMirror } from './scsi/target.ts';
import type { OpenVolume } from './volumes.ts';

export function targetPortName(iqn: string, site: Site): string {
  return `${iqn},t,0x${site.index.toString(16).padStart(4, '0')}`;
}

/**
 * ALUA state of a site's port group for a group until the group's path (forward/group-paths.ts)
 * knows more: its primary is active/optimized; a secondary is unavailable until its link forwards
 * commands to the primary (then active/non-optimized, DESIGN.md "Data path").
 */
export function aluaStateOf(siteName: string, primarySite: string): AluaState {
  return siteName === primarySite ? 'active-optimized' : 'unavailable';
}

function targetPortOf(iqn: string, site: Site): TargetPort {
  return { relativeTargetPortId: site.index, targetPortGroupId: site.index, targetPortName: targetPortName(iqn, site) };
}

export type GroupTarget = ScsiTarget & LunInventory;

export function buildTargets(ctx: {
  topology: Topology;
  site: Site;
  volumes: OpenVolume[];
  /** The site that is the group's primary now (from the agent's metadata). */
  primarySiteOf: (group: string) => string;
  reservationStore?: ReservationStore;
  /** Where a group's target hands its reservation changes (the group's mirror). */
  stateMirrorOf?: (group: string) => StateMirror;
}): {
  targets: Map<string, GroupTarget>;
  registry: TargetRegistry;
  /** Per target IQN: its port groups; setState() changes one and queues the unit attentions. */
  alua: Map<string, AluaPortGroups>;
  /** A group added by a topology apply: its target is built and listed from now on. */
  addGroup(g: Group, volumes: OpenVolume[]): GroupTarget;
  /** A group removed by a topology apply: no longer found by logins or discovery. */
  removeGroup(iqn: string): void;
} {
  const { topology: t, site } = ctx;
  const targets = new Map<string, GroupTarget>();
  const alua = new Map<string, AluaPortGroups>();
  const addGroup = (g: Group, volumes: OpenVolume[]): GroupTarget => {
    const primary = ctx.primarySiteOf(g.name);
    const groups = new AluaPortGroups(
      t.sites.map((s) => ({ id: s.index, state: aluaStateOf(s.name, primary), relativeTargetPortIds: [s.index] })),
    );
    alua.set(g.iqn, groups);
    const luns = volumes
      .filter((v) => v.group.name === g.name)
      .map((v) => ({ lun: v.volume.lun, device: v.device, identity: v.identity }));
    const target = createScsiTarget({
      iqn: g.iqn,
      luns,
      port: targetPortOf(g.iqn, site),
      // The other sites' portals forward their commands here while this site is the primary.
      remotePorts: t.sites.filter((s) => s !== site).map((s) => targetPortOf(g.iqn, s)),
      alua: groups,
      reservationStore: ctx.reservationStore,
      stateMirror: ctx.stateMirrorOf?.(g.name),
    });
    targets.set(g.iqn, target);
    return target;
  };
  for (const g of t.groups) addGroup(g, ctx.volumes);
  // SendTargets lists the local portal first, then the peer site's (RFC 7143 §13.3 TargetAddress).
  const sitesLocalFirst = [site, ...t.sites.filter((s) => s !== site)];
  const discovery = () => [...targets.keys()].map((iqn) => ({
    iqn,
    portals: sitesLocalFirst.map((s) => ({ address: s.portal.address, port: s.portal.port, portalGroupTag: s.index })),
  }));
  return {
    targets,
    alua,
    registry: { lookup: (iqn) => targets.get(iqn), discovery },
    addGroup,
    removeGroup: (iqn) => { targets.delete(iqn); alua.delete(iqn); },
  };
}
