// The witness's durable records (RecordStore edge): one lowdb JSON file in the witness dataDir,
// written atomically (temp file + rename), so a crash leaves the old or the new state. Epochs never
// go back: asserted on load and on every save.
import { Low } from 'lowdb';
import { JSONFile } from 'lowdb/node';
import { assert } from '../common/assert.ts';
import type { DurableRecord } from './arbiter.ts';
import { groupKeyString } from './arbiter-messages.ts';

/** The topology the witness serves (site-witness/topology-apply.ts); versions only grow. */
export interface WitnessTopology {
  version: number;
  text: string;
  file: string;
  appliedAt: string;
  pendingPhase?: 'prepare' | 'commit';
}

interface WitnessFile {
  formatVersion: 1;
  clusters: Record<string, { firstSeenAt: string; startCount: number }>;
  records: Record<string, DurableRecord>;
  topology?: WitnessTopology;
}

export interface RecordStore {
  records(): DurableRecord[];
  save(record: DurableRecord): Promise<void>;
  noteStart(cluster: string): Promise<void>;
  topology(): WitnessTopology | undefined;
  saveTopology(t: WitnessTopology): Promise<void>;
}

export async function openRecordStore(file: string): Promise<RecordStore> {
  // The JSONFile adapter explicitly: lowdb's preset keeps data in memory only when NODE_ENV=test.
  const db = new Low<WitnessFile>(new JSONFile<WitnessFile>(file), { formatVersion: 1, clusters: {}, records: {} });
  await db.read();
  db.data.records ??= {};
  db.data.clusters ??= {};
  assert(db.data.formatVersion === 1, `unknown witness file format ${String(db.data.formatVersion)} in ${file}`);
  for (const [key, r] of Object.entries(db.data.records)) {
    assert(key === groupKeyString(r.key), `witness record ${key} is filed under the wrong key`);
    assert(Number.isSafeInteger(r.epoch) && r.epoch >= 1, `witness record ${key}: epoch ${r.epoch} is not a positive integer`);
  }
  return {
    records: () => Object.values(db.data.records),
    save: async (record) => {
      const key = groupKeyString(record.key);
      const before = db.data.records[key];
      assert(!before || record.epoch >= before.epoch, `witness record ${key}: epoch would go back from ${before?.epoch} to ${record.epoch}`);
      db.data.records[key] = record;
      await db.write();
    },
    topology: () => db.data.topology,
    saveTopology: async (t) => {
      const before = db.data.topology?.version;
      assert(Number.isSafeInteger(t.version) && t.version >= 1 && (before === undefined || t.version >= before), `topology version would go from ${before} to ${t.version}`);
      db.data.topology = t;
      await db.write();
    },
    noteStart: async (cluster) => {
      const c = (db.data.clusters[cluster] ??= { firstSeenAt: new Date().toISOString(), startCount: 0 });
      c.startCount += 1;
      await db.write();
    },
  };
}
