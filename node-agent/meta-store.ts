// The agent's metadata (MetaStore edge): which volume files it created, each volume's identity,
// per group the epoch and role, and persistent reservations that must survive a restart. Kept in a lowdb JSON file, written atomically (temp file and
// rename), so a crash at any instant leaves either the old or the new state.
import { Low } from 'lowdb';
import { JSONFile } from 'lowdb/node';
import { assert } from '../common/assert.ts';

export interface VolumeRecord {
  group: string;
  volume: string;
  file: string;
  sizeBytes: number;
  naaHex: string;
  createdAt: string;
}

export interface GroupRecord {
  epoch: number;
  role: 'primary' | 'secondary';
  /** At the primary: the secondary may miss acknowledged writes (recorded before any such write completed). */
  peerOutdated?: { reason: string; since: string };
}

export interface AgentMeta {
  formatVersion: 1;
  cluster: string;
  site: string;
  volumes: Record<string, VolumeRecord>;
  groups: Record<string, GroupRecord>;
  /** Persistent reservation state per LUN (`<iqn>/<lun>`), as the SCSI target saved it (APTPL). */
  reservations?: Record<string, unknown>;
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
  return {
    read: () => db.data,
    update: async (fn) => {
      const before = structuredClone(db.data);
      fn(db.data);
      checkEpochs(db.data, before);
      await db.write();
    },
  };
}

/** Epochs only grow (STYLE.md): on load and on every save. */
function checkEpochs(meta: AgentMeta, before: AgentMeta | undefined): void {
  for (const [name, g] of Object.entries(meta.groups)) {
    assert(Number.isSafeInteger(g.epoch) && g.epoch >= 0, `group ${name}: epoch ${g.epoch} is not a non-negative integer`);
    const old = before?.groups[name];
    assert(!old || g.epoch >= old.epoch, `group ${name}: epoch went back from ${old?.epoch} to ${g.epoch}`);
  }
}
