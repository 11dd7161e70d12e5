// The witness's drill history (lowdb, `<witness dataDir>/drills.json`, written atomically): every
// drill's report, running or finished, newest last. A report still "running" when the witness
// starts belongs to a drill the witness was stopped in: it is closed as interrupted.
import { Low } from 'lowdb';
import { JSONFile } from 'lowdb/node';
import { assert } from '../../common/assert.ts';
import type { DrillReport } from '../../common/drills/report.ts';

interface DrillFile { formatVersion: 1; reports: DrillReport[] }

/** Reports kept; the oldest go first. */
export const reportsMax = 1000;

export interface DrillStore {
  reports(): readonly DrillReport[];
  save(r: DrillReport): Promise<void>;
}

export async function openDrillStore(file: string, now: () => string): Promise<DrillStore> {
  // The JSONFile adapter explicitly: lowdb's preset keeps data in memory only when NODE_ENV=test.
  const db = new Low<DrillFile>(new JSONFile<DrillFile>(file), { formatVersion: 1, reports: [] });
  await db.read();
  db.data.reports ??= [];
  assert(db.data.formatVersion === 1, `unknown drill history format ${String(db.data.formatVersion)} in ${file}`);
  let changed = false;
  for (const r of db.data.reports) {
    if (r.outcome !== 'running') continue;
    r.outcome = 'interrupted';
    r.endedAt = now();
    r.reason = `the witness stopped during the drill (last phase: ${r.phases[r.phases.length - 1]?.name ?? 'precheck'}); group ${r.group} may not be at ${r.from ?? 'its site'}: check \`metroctl status\``;
    changed = true;
  }
  if (changed) await db.write();
  return {
    reports: () => db.data.reports,
    save: async (r) => {
      const i = db.data.reports.findIndex((x) => x.id === r.id);
      if (i >= 0) db.data.reports[i] = r;
      else db.data.reports.push(r);
      if (db.data.reports.length > reportsMax) db.data.reports.splice(0, db.data.reports.length - reportsMax);
      await db.write();
    },
  };
}
