// The runbook journal (lowdb): every run with its steps, who ran and resumed it, and each phase's
// outcome. It lives in metroctl's state folder NEXT TO THE TOPOLOGY FILE (`<dir>/.metroctl/`), not
// at the witness: runbooks are run when a site or the witness is gone, so the journal must not
// depend on any daemon. Written atomically (lowdb writes a temp file and renames it) after every
// phase; one metroctl at a time holds the folder's lock while it runs a runbook.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Low } from 'lowdb';
import { JSONFile } from 'lowdb/node';
import { assert } from '../../common/assert.ts';
import { canResume, type Run } from './engine.ts';

interface JournalFile {
  formatVersion: 1;
  runs: Run[];
}

/** Finished runs beyond this many are dropped, oldest first; unfinished runs are always kept. */
export const runsMax = 500;

export function stateDirFor(topologyDir: string, override?: string): string {
  return override ?? process.env.METROCTL_STATE_DIR ?? path.join(topologyDir, '.metroctl');
}

export interface JournalStore {
  runs(): readonly Run[];
  save(run: Run): Promise<void>;
  file: string;
}

export async function openJournal(stateDir: string, cluster: string): Promise<JournalStore> {
  await fs.mkdir(stateDir, { recursive: true });
  const file = path.join(stateDir, `${cluster}.runbooks.json`);
  // The JSONFile adapter explicitly: lowdb's preset keeps data in memory only when NODE_ENV=test.
  const db = new Low<JournalFile>(new JSONFile<JournalFile>(file), { formatVersion: 1, runs: [] });
  await db.read();
  db.data.runs ??= [];
  assert(db.data.formatVersion === 1, `unknown runbook journal format ${String(db.data.formatVersion)} in ${file}`);
  return {
    file,
    runs: () => db.data.runs,
    save: async (run) => {
      const i = db.data.runs.findIndex((r) => r.id === run.id);
      if (i >= 0) db.data.runs[i] = run;
      else db.data.runs.push(run);
      const finished = db.data.runs.filter((r) => !canResume(r));
      for (const old of finished.slice(0, Math.max(0, db.data.runs.length - runsMax))) {
        db.data.runs.splice(db.data.runs.indexOf(old), 1);
      }
      await db.write();
    },
  };
}

/** The newest run of a runbook that did not succeed (failed, or interrupted while running). */
export function unfinishedRun(runs: readonly Run[], runbook: string, params: Record<string, string>): Run | undefined {
  const same = (r: Run): boolean => r.runbook === runbook && Object.entries(params).every(([k, v]) => r.params[k] === v);
  const last = [...runs].reverse().find(same);
  return last && canResume(last) ? last : undefined;
}

export class JournalLocked extends Error {
  override name = 'JournalLocked';
}

/**
 * Takes the state folder's lock for the duration of a run: one metroctl runs runbooks at a time.
 * A lock left by a process that is gone (SIGKILL, power loss) is taken over.
 */
export async function lockJournal(stateDir: string): Promise<() => Promise<void>> {
  await fs.mkdir(stateDir, { recursive: true });
  const file = path.join(stateDir, 'runbook.lock');
  const me = `${os.hostname()} ${process.pid}`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fs.writeFile(file, me, { flag: 'wx' });
      return async () => { await fs.rm(file, { force: true }); };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = (await fs.readFile(file, 'utf8').catch(() => '')).trim();
      const [host, pid] = holder.split(' ');
      if (host === os.hostname() && pidAlive(Number(pid))) {
        throw new JournalLocked(`another metroctl (pid ${pid}) is running a runbook with this state folder (${stateDir})`);
      }
      if (host !== os.hostname() && holder !== '') {
        throw new JournalLocked(`metroctl on ${host} (pid ${pid}) holds ${file}; remove it if that run is gone`);
      }
      await fs.rm(file, { force: true });
    }
  }
  throw new JournalLocked(`could not take ${file}`);
}

function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try { process.kill(pid, 0); return true; } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM'; }
}
