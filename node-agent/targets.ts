// One SCSI target per group, one LUN per volume, and the registry the iSCSI portal looks targets up
// in. Every site presents the same IQN and LUN numbers; the site's index is its target port group
// and relative target port (DESIGN.md, identity across sites), with its ALUA state per group.
import type { Site, Topology } from '../common/topology/index.ts';
import { AluaPortGroups, type AluaState } from './scsi/alua.ts';
import type { ReservationStore } from './scsi/reservation-store.ts';
import type { ScsiTarget, TargetRegistry } from './scsi/types.ts';
import { createScsiTarget } from './scsi/target.ts';
import type { OpenVolume } from './volumes.ts';

export function targetPortName(iqn: string, site: Site): string {
  return `${iqn},t,0x${site.index.toString(16).padStart(4, '0')}`;
}

/**
 * ALUA state of a site's port group for a group: its primary is active/optimized. The secondary
 * has no mirror yet, so serving I/O from its own copy would let a multipath host write two
 * diverging copies: it reports standby. The mirroring issue forwards its I/O to the primary and
 * turns it into active/non-optimized (DESIGN.md, data path).
 */
export function aluaStateOf(siteName: string, primarySite: string): AluaState {
  return siteName === primarySite ? 'active-optimized' : 'standby';
}

export function buildTargets(ctx: {
  topology: Topology;
  site: Site;
  volumes: OpenVolume[];
  /** The site that is the group's primary now (from the agent's metadata). */
  primarySiteOf: (group: string) => string;
  reservationStore?: ReservationStore;
}): {
  targets: Map<string, ScsiTarget>;
  registry: TargetRegistry;
  /** Per target IQN: its port groups; setState() changes one and queues the unit attentions. */
  alua: Map<string, AluaPortGroups>;
} {
  const { topology: t, site } = ctx;
  const targets = new Map<string, ScsiTarget>();
  const alua = new Map<string, AluaPortGroups>();
  for (const g of t.groups) {
    const primary = ctx.primarySiteOf(g.name);
    const groups = new AluaPortGroups(
      t.sites.map((s) => ({ id: s.index, state: aluaStateOf(s.name, primary), relativeTargetPortIds: [s.index] })),
    );
    alua.set(g.iqn, groups);
    const luns = ctx.volumes
      .filter((v) => v.group.name === g.name)
      .map((v) => ({ lun: v.volume.lun, device: v.device, identity: v.identity }));
    targets.set(g.iqn, createScsiTarget({
      iqn: g.iqn,
      luns,
      port: { relativeTargetPortId: site.index, targetPortGroupId: site.index, targetPortName: targetPortName(g.iqn, site) },
      alua: groups,
      reservationStore: ctx.reservationStore,
    }));
  }
  // SendTargets lists the local portal first, then the peer site's (RFC 7143 §13.3 TargetAddress).
  const sitesLocalFirst = [site, ...t.sites.filter((s) => s !== site)];
  const discovery = t.groups.map((g) => ({
    iqn: g.iqn,
    portals: sitesLocalFirst.map((s) => ({ address: s.portal.address, port: s.portal.port, portalGroupTag: s.index })),
  }));
  return {
    targets,
    alua,
    registry: { lookup: (iqn) => targets.get(iqn), discovery: () => discovery },
  };
}
