// The agent's metadata (MetaStore edge): which volume files it created, each volume's identity,
// per group the epoch and role, and persistent reservations that must survive a restart. Kept in a lowdb JSON file, written atomically (temp file and
// rename), so a crash at any instant leaves either the old or the new state.
import { Low } from 'lowdb';
import { JSONFile } from 'lowdb/node';
import { assert } from '../common/assert.ts';
import type { PersistedRole } from './role/role-machine.ts';

export interface VolumeRecord {
  group: string;
  volume: string;
  file: string;
  sizeBytes: number;
  naaHex: string;
  createdAt: string;
  /** A forced shrink recorded by a topology apply: the file may be cut to this size (and only this). */
  shrinkApprovedBytes?: number;
}

/** The topology this site serves (topology-apply.ts): a restart uses it rather than its -f file. */
export interface AppliedTopology {
  /** Only grows: 1 for the topology first started from its file, then each apply's. */
  version: number;
  text: string;
  file: string;
  appliedAt: string;
  /** The last phase of this version's apply done here; undefined once it finished. */
  pendingPhase?: 'prepare' | 'commit';
}

export interface GroupRecord {
  epoch: number;
  role: 'primary' | 'secondary';
  /** At the primary: the secondary may miss acknowledged writes (recorded before any such write completed). */
  peerOutdated?: { reason: string; since: string };
  /**
   * This site's copy of the group: whether it ever held the group's data in sync (absent: new volume
   * files, a full resync decides) and whether no resync is half done. Set at the primary on start,
   * at a secondary by its resyncs.
   */
  copy?: { hasData: boolean; consistent: boolean; since: string };
  /**
   * The role machine's persisted state; epoch and role above follow it. Metadata from before forced
   * failovers without the witness lacks their flag.
   */
  roleState?: Omit<PersistedRole, 'forcedWithoutWitness'> & { forcedWithoutWitness?: boolean };
}

/** A group new to this site: epoch 1, its preferred site primary (the witness's first record too). */
export function newGroupRecord(preferredSite: string, site: string): GroupRecord {
  return { epoch: 1, role: preferredSite === site ? 'primary' : 'secondary' };
}

/** Writes this site kept aside when it was replaced as primary (role/group-data-path.ts). */
export interface DivergentRecord {
  group: string;
  volume: string;
  epoch: number;
  file: string;
  regions: number;
  bytes: number;
  savedAt: string;
}

export interface AgentMeta {
  formatVersion: 1;
  cluster: string;
  site: string;
  volumes: Record<string, VolumeRecord>;
  groups: Record<string, GroupRecord>;
  topology?: AppliedTopology;
  /** Persistent reservation state per LUN (`<iqn>/<lun>`), as the SCSI target saved it (APTPL). */
  reservations?: Record<string, unknown>;
  divergent?: DivergentRecord[];
}

export interface MetaStore {
  read(): AgentMeta;
  update(fn: (meta: AgentMeta) => void): Promise<void>;
}

export function volumeKey(group: string, volume: string): string {
  return `${group}/${volume}`;
}

export async function openMetaStore(file: string, identity: { cluster: string; site: string }): Promise<MetaStore> {
  // The JSONFile adapter explicitly: lowdb's JSONFilePreset silently keeps everything in memory
  // when NODE_ENV is "test" (as under ava), and an agent that forgets its metadata on restart
  // would forget its APTPL reservations too.
  const db = new Low<AgentMeta>(new JSONFile<AgentMeta>(file), { formatVersion: 1, ...identity, volumes: {}, groups: {} });
  await db.read();
  const meta = db.data;
  assert(meta.formatVersion === 1, `unknown metadata format ${String(meta.formatVersion)} in ${file}`);
  checkEpochs(meta, undefined);
  checkTopologyVersion(meta, undefined);
  return {
    read: () => db.data,
    update: async (fn) => {
      const before = structuredClone(db.data);
      fn(db.data);
      checkEpochs(db.data, before);
      checkTopologyVersion(db.data, before);
      await db.write();
    },
  };
}

/** Epochs only grow (STYLE.md): on load and on every save. */
function checkEpochs(meta: AgentMeta, before: AgentMeta | undefined): void {
  for (const [name, g] of Object.entries(meta.groups)) {
    assert(Number.isSafeInteger(g.epoch) && g.epoch >= 0, `group ${name}: epoch ${g.epoch} is not a non-negative integer`);
    assert(!g.roleState || g.roleState.epoch === g.epoch, `group ${name}: role epoch ${g.roleState?.epoch} differs from ${g.epoch}`);
    const old = before?.groups[name];
    assert(!old || g.epoch >= old.epoch, `group ${name}: epoch went back from ${old?.epoch} to ${g.epoch}`);
  }
}

/** Topology versions only grow, like epochs. */
function checkTopologyVersion(meta: AgentMeta, before: AgentMeta | undefined): void {
  const v = meta.topology?.version;
  assert(v === undefined || (Number.isSafeInteger(v) && v >= 1), `topology version ${v} is not a positive integer`);
  const old = before?.topology?.version;
  assert(old === undefined || (v !== undefined && v >= old), `topology version went back from ${old} to ${v}`);
}
