// What changes between the topology a cluster runs and a new one (`metroctl topology plan/apply`):
// volumes added, resized or deleted, groups added or removed, settings changed, each with a sentence
// and whether it destroys data; and the changes that cannot be made online at all. Pure: both
// topologies come in validated, nothing is read or written here.
import { formatSize } from './size.ts';
import type { Group, Topology } from './types.ts';

export type TopologyChange =
  | { kind: 'volume-added'; group: string; volume: string; lun: number; sizeBytes: number }
  | { kind: 'volume-grown'; group: string; volume: string; lun: number; fromBytes: number; toBytes: number }
  | { kind: 'volume-shrunk'; group: string; volume: string; lun: number; fromBytes: number; toBytes: number }
  | { kind: 'volume-deleted'; group: string; volume: string; lun: number; sizeBytes: number }
  | { kind: 'group-added'; group: string; preferredSite: string; volumes: number }
  | { kind: 'group-removed'; group: string; volumes: number }
  | { kind: 'setting-changed'; path: string; from: string; to: string };

export interface PlannedChange {
  change: TopologyChange;
  /** Data hosts could read before is gone afterwards: refused unless forced. */
  destructive: boolean;
  sentence: string;
}

export interface TopologyPlan {
  changes: PlannedChange[];
  /** Changes no apply can make while the cluster runs, forced or not (one sentence each). */
  refusals: string[];
}

/** The replication settings, compared for the cluster's defaults and for each group's. */
const replicationKeys = ['ack', 'syncMaxRttMs', 'maxLagMs', 'resyncMbps'] as const;

export function diffTopology(from: Topology, to: Topology): TopologyPlan {
  const changes: PlannedChange[] = [];
  const refusals: string[] = [];
  if (from.name !== to.name) {
    refusals.push(`the cluster's name changes from "${from.name}" to "${to.name}": that is another cluster, not a change of this one`);
  }
  diffSites(from, to, changes, refusals);
  diffGroups(from, to, changes, refusals);
  diffSettings(from, to, changes);
  return { changes, refusals };
}

function diffSites(from: Topology, to: Topology, changes: PlannedChange[], refusals: string[]): void {
  for (const [i, a] of from.sites.entries()) {
    const b = to.sites[i];
    if (a.name !== b.name) {
      refusals.push(`sites[${i}] changes from "${a.name}" to "${b.name}": sites are renamed or replaced only with the cluster stopped`);
      continue;
    }
    const where = `site ${a.name}`;
    if (a.dataDir !== b.dataDir) {
      refusals.push(`${where}: moving its data directory from ${a.dataDir} to ${b.dataDir} (every group's volume files) is not done online: stop the site's agent, move the directory, then start it`);
    }
    for (const ep of ['agent', 'portal'] as const) {
      if (a[ep].address !== b[ep].address || a[ep].port !== b[ep].port) {
        refusals.push(`${where}: its ${ep} endpoint changes from ${a[ep].address}:${a[ep].port} to ${b[ep].address}:${b[ep].port}, which needs a restart of its agent`);
      }
    }
    for (const r of ['peer', 'witness'] as const) {
      if (a.routes[r].address !== b.routes[r].address || a.routes[r].port !== b.routes[r].port) {
        refusals.push(`${where}: its route to the ${r} changes from ${a.routes[r].address}:${a.routes[r].port} to ${b.routes[r].address}:${b.routes[r].port}, which needs a restart of its agent`);
      }
    }
    if (a.fireZone !== b.fireZone) changes.push(setting(`sites[${a.name}].fireZone`, a.fireZone, b.fireZone));
  }
  const w0 = from.witness;
  const w1 = to.witness;
  if (w0.address !== w1.address || w0.port !== w1.port || w0.dataDir !== w1.dataDir) {
    refusals.push(`the witness moves (${w0.address}:${w0.port} ${w0.dataDir} -> ${w1.address}:${w1.port} ${w1.dataDir}): replace it with the witness-replacement runbook`);
  }
  if (w0.fireZone !== w1.fireZone) changes.push(setting('witness.fireZone', w0.fireZone, w1.fireZone));
  if (JSON.stringify(from.security ?? null) !== JSON.stringify(to.security ?? null)) {
    refusals.push('the security block (TLS) changes, which needs a restart of every daemon');
  }
}

function diffGroups(from: Topology, to: Topology, changes: PlannedChange[], refusals: string[]): void {
  const before = new Map(from.groups.map((g) => [g.name, g]));
  const after = new Map(to.groups.map((g) => [g.name, g]));
  for (const g of from.groups) {
    if (after.has(g.name)) continue;
    changes.push({
      change: { kind: 'group-removed', group: g.name, volumes: g.volumes.length },
      destructive: true,
      sentence: `removes group ${g.name}: its target ${g.iqn} and the data of ${volumesPhrase(g)} are no longer served`,
    });
  }
  for (const g of to.groups) {
    const old = before.get(g.name);
    if (!old) {
      changes.push({
        change: { kind: 'group-added', group: g.name, preferredSite: g.preferredSite, volumes: g.volumes.length },
        destructive: false,
        sentence: `adds group ${g.name} (target ${g.iqn}, primary ${g.preferredSite}) with ${volumesPhrase(g)}`,
      });
      continue;
    }
    diffVolumes(old, g, changes, refusals);
    if (old.preferredSite !== g.preferredSite) {
      changes.push({
        ...setting(`groups[${g.name}].preferredSite`, old.preferredSite, g.preferredSite),
        sentence: `group ${g.name}: preferred site ${old.preferredSite} -> ${g.preferredSite} (the group moves at its next failback or switchover, not now)`,
      });
    }
    for (const k of replicationKeys) {
      if (old.replication[k] !== g.replication[k]) changes.push(setting(`groups[${g.name}].replication.${k}`, String(old.replication[k]), String(g.replication[k])));
    }
  }
}

function diffVolumes(old: Group, g: Group, changes: PlannedChange[], refusals: string[]): void {
  const after = new Map(g.volumes.map((v) => [v.name, v]));
  const before = new Map(old.volumes.map((v) => [v.name, v]));
  for (const v of old.volumes) {
    const n = after.get(v.name);
    if (!n) {
      changes.push({
        change: { kind: 'volume-deleted', group: g.name, volume: v.name, lun: v.lun, sizeBytes: v.sizeBytes },
        destructive: true,
        sentence: `deletes volume ${g.name}/${v.name} (LUN ${v.lun}, ${formatSize(v.sizeBytes)}) and its data`,
      });
      continue;
    }
    if (n.lun !== v.lun) {
      // Hosts address a volume by its LUN: a renumbered LUN would hand them another volume's data.
      refusals.push(`volume ${g.name}/${v.name} would move from LUN ${v.lun} to LUN ${n.lun}; a volume keeps its LUN: add volumes at the end of a group's list and delete only its last ones`);
      continue;
    }
    if (n.sizeBytes > v.sizeBytes) {
      changes.push({
        change: { kind: 'volume-grown', group: g.name, volume: v.name, lun: v.lun, fromBytes: v.sizeBytes, toBytes: n.sizeBytes },
        destructive: false,
        sentence: `grows volume ${g.name}/${v.name} (LUN ${v.lun}) from ${formatSize(v.sizeBytes)} to ${formatSize(n.sizeBytes)}`,
      });
    } else if (n.sizeBytes < v.sizeBytes) {
      changes.push({
        change: { kind: 'volume-shrunk', group: g.name, volume: v.name, lun: v.lun, fromBytes: v.sizeBytes, toBytes: n.sizeBytes },
        destructive: true,
        sentence: `shrinks volume ${g.name}/${v.name} (LUN ${v.lun}) from ${formatSize(v.sizeBytes)} to ${formatSize(n.sizeBytes)}, discarding its last ${formatSize(v.sizeBytes - n.sizeBytes)}`,
      });
    }
  }
  for (const v of g.volumes) {
    if (before.has(v.name)) continue;
    const taken = old.volumes.find((o) => o.lun === v.lun && after.get(o.name)?.lun !== v.lun);
    if (taken && after.has(taken.name)) continue; // reported as the other volume's LUN move
    changes.push({
      change: { kind: 'volume-added', group: g.name, volume: v.name, lun: v.lun, sizeBytes: v.sizeBytes },
      destructive: false,
      sentence: `adds volume ${g.name}/${v.name} as LUN ${v.lun} (${formatSize(v.sizeBytes)})`,
    });
  }
}

function diffSettings(from: Topology, to: Topology, changes: PlannedChange[]): void {
  for (const k of replicationKeys) {
    if (from.replication[k] !== to.replication[k]) changes.push(setting(`replication.${k}`, String(from.replication[k]), String(to.replication[k])));
  }
  for (const k of ['leaseMs', 'maxDataLossMs'] as const) {
    if (from.failover[k] !== to.failover[k]) changes.push(setting(`failover.${k}`, String(from.failover[k]), String(to.failover[k])));
  }
  const i0 = from.access.initiators.join(', ') || '(any)';
  const i1 = to.access.initiators.join(', ') || '(any)';
  if (i0 !== i1) changes.push(setting('access.initiators', i0, i1));
  const chap = (t: Topology): string => {
    const c = t.access.chap;
    if (!c) return '(none)';
    return `user ${c.user}, secret ${c.secretFile}${c.mutual ? `, mutual user ${c.mutual.user}, secret ${c.mutual.secretFile}` : ''}`;
  };
  if (chap(from) !== chap(to)) changes.push(setting('access.chap', chap(from), chap(to)));
  if (JSON.stringify(from.access.limits) !== JSON.stringify(to.access.limits)) {
    changes.push(setting('access.limits', JSON.stringify(from.access.limits), JSON.stringify(to.access.limits)));
  }
  const drills0 = new Map(from.drills.map((d) => [d.name, d]));
  const drills1 = new Map(to.drills.map((d) => [d.name, d]));
  const fmt = (d: Topology['drills'][number]): string => `group ${d.group}, "${d.schedule}", failback ${d.failback}`;
  for (const [name, d] of drills0) {
    const n = drills1.get(name);
    if (!n) changes.push(setting(`drills[${name}]`, fmt(d), '(removed)'));
    else if (fmt(n) !== fmt(d)) changes.push(setting(`drills[${name}]`, fmt(d), fmt(n)));
  }
  for (const [name, d] of drills1) if (!drills0.has(name)) changes.push(setting(`drills[${name}]`, '(none)', fmt(d)));
}

function setting(path: string, from: string, to: string): PlannedChange {
  return { change: { kind: 'setting-changed', path, from, to }, destructive: false, sentence: `${path}: ${from} -> ${to}` };
}

function volumesPhrase(g: Group): string {
  const total = g.volumes.reduce((n, v) => n + v.sizeBytes, 0);
  return `${g.volumes.length} volume${g.volumes.length === 1 ? '' : 's'} (${formatSize(total)})`;
}
