// One SCSI target per group, one LUN per volume, and the registry the iSCSI portal looks targets up
// in. Every site presents the same IQN and LUN numbers; the site's index is its target port group
// and relative target port (DESIGN.md, identity across sites).
import type { Site, Topology } from '../common/topology/index.ts';
import type { ScsiTarget, TargetRegistry } from './scsi/types.ts';
import { createScsiTarget } from './scsi/target.ts';
import type { OpenVolume } from './volumes.ts';

export function targetPortName(iqn: string, site: Site): string {
  return `${iqn},t,0x${site.index.toString(16).padStart(4, '0')}`;
}

export function buildTargets(ctx: { topology: Topology; site: Site; volumes: OpenVolume[] }): {
  targets: Map<string, ScsiTarget>;
  registry: TargetRegistry;
} {
  const { topology: t, site } = ctx;
  const targets = new Map<string, ScsiTarget>();
  for (const g of t.groups) {
    const luns = ctx.volumes
      .filter((v) => v.group.name === g.name)
      .map((v) => ({ lun: v.volume.lun, device: v.device, identity: v.identity }));
    targets.set(g.iqn, createScsiTarget({
      iqn: g.iqn,
      luns,
      port: { relativeTargetPortId: site.index, targetPortGroupId: site.index, targetPortName: targetPortName(g.iqn, site) },
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
    registry: { lookup: (iqn) => targets.get(iqn), discovery: () => discovery },
  };
}
