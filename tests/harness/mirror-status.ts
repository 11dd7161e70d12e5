// Helpers for mirror process tests: `metroctl status -o json` and `metroctl verify` as a user runs
// them, polling until a group's mirror reaches a state, volume file paths, and qemu-io runs that
// throw on any failure.
import fs from 'node:fs/promises';
import path from 'node:path';
import { metroctlBin, type TestCluster } from './cluster.ts';
import { qemuIoFailed, run, type RunResult } from './tools.ts';
import type { GroupMirrorReport } from '../../cli/status-command.ts';

/** `metroctl status -o json`'s per-group mirror fields, as the CLI declares them. */
type GroupMirror = GroupMirrorReport;

export async function groupStatus(c: TestCluster, group: string): Promise<GroupMirror> {
  // Generous: on a loaded machine starting metroctl alone can take many seconds.
  const r = await run(process.execPath, [metroctlBin, 'status', '-f', c.file, '-o', 'json'], { timeoutMs: 90_000 });
  let parsed: { groups?: GroupMirror[] };
  try {
    parsed = JSON.parse(r.stdout);
  } catch {
    throw new Error(`metroctl status -o json printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  const g = parsed.groups?.find((x) => x.name === group);
  if (!g) throw new Error(`no group ${group} in metroctl status:\n${r.stdout}`);
  return g;
}

/** Polls the group's status until ok(status) or the deadline; returns the last status and whether it matched. */
export async function waitStatus(c: TestCluster, group: string, ok: (g: GroupMirror) => boolean, deadlineMs: number): Promise<{ ok: boolean; status: GroupMirror; ms: number }> {
  const started = performance.now();
  for (;;) {
    const status = await groupStatus(c, group);
    const ms = performance.now() - started;
    if (ok(status)) return { ok: true, status, ms };
    if (ms > deadlineMs) return { ok: false, status, ms };
    await new Promise((r) => setTimeout(r, 200));
  }
}

export function verify(c: TestCluster, group: string, extra: string[] = []): Promise<RunResult> {
  return run(process.execPath, [metroctlBin, 'verify', '--group', group, '-f', c.file, ...extra], { timeoutMs: 120_000 });
}

export function volumePath(c: TestCluster, site: string, group: string, volume: string): string {
  return path.join(c.dir, 'data', site, 'volumes', group, `${volume}.vol`);
}

/** First differing byte of two files, or -1 when they are identical. */
export async function firstDifference(a: string, b: string): Promise<number> {
  const [x, y] = await Promise.all([fs.readFile(a), fs.readFile(b)]);
  if (x.length !== y.length) return Math.min(x.length, y.length);
  if (x.equals(y)) return -1;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

/** One qemu-io run that must succeed (see qemuIoFailed); returns what it printed. */
export async function qemuIo(url: string, commands: string[], timeoutMs = 120_000): Promise<string> {
  const r = await run('qemu-io', ['-f', 'raw', ...commands.flatMap((x) => ['-c', x]), url], { timeoutMs });
  const out = r.stdout + r.stderr;
  if (r.code !== 0 || qemuIoFailed(out)) throw new Error(`qemu-io ${url} exit ${r.code}:\n${out.slice(0, 4000)}`);
  return out;
}

/** The agent's JSON log lines with this message, parsed (data/<site>/logs/agent.log). */
export async function logEvents(c: TestCluster, site: string, message: string): Promise<Array<Record<string, any> & { timestamp: string }>> {
  const text = await fs.readFile(path.join(c.dir, 'data', site, 'logs', 'agent.log'), 'utf8').catch(() => '');
  return text.split('\n').flatMap((l) => {
    if (!l.includes(message)) return [];
    try {
      const j = JSON.parse(l);
      return j.message === message ? [j] : [];
    } catch {
      return [];
    }
  });
}
