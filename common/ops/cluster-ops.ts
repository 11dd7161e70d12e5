// The cluster as runbooks and drills see it, and the operations they drive. Reads go straight to
// the daemons over gRPC (Health, Status, Reach); operations run the `metroctl` commands of the
// DESIGN.md contract (switchover, failover, failback, verify) as child processes, so a runbook or a
// drill does exactly what an admin typing the command would, with its exit code and sentence.
// An operation this build lacks is reported as missing, never imitated.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { installRoot } from '../install-root.ts';
import type { Topology } from '../topology/index.ts';
import { dial, call, type CallResult } from '../grpc-client.ts';

export const metroctlBin = path.join(installRoot, 'bin', 'metroctl.js');

export interface GroupAtSite {
  role: string;
  epoch: number;
  /** At the primary: whether its secondary holds every acknowledged write; null when not reported. */
  secondaryUpToDate: boolean | null;
  /** Every field the agent reported, for details this module does not interpret. */
  raw: Record<string, unknown>;
}

export interface SiteView {
  name: string;
  up: boolean;
  reason: string;
  groups: Record<string, GroupAtSite>;
}

export interface ClusterView {
  witness: { up: boolean; reason: string };
  sites: SiteView[];
}

interface AgentStatusWire { groups?: Array<Record<string, unknown> & { name: string; role: string; epoch: string }> }

/** Deadline of the status reads: generous, since a loaded daemon that answers late is not down. */
export const readDeadlineMs = 5000;

export async function readCluster(t: Topology, deadlineMs = readDeadlineMs): Promise<ClusterView> {
  const witness = dial('witness.proto', 'MetroWitness', t.witness.address, t.witness.port);
  const agents = t.sites.map((s) => dial('agent.proto', 'MetroAgent', s.agent.address, s.agent.port));
  try {
    const [wh, ...rest] = await Promise.all([
      call<object>(witness, 'Health', {}, deadlineMs),
      ...agents.map((a) => call<AgentStatusWire>(a, 'Status', {}, deadlineMs)),
    ]);
    return {
      witness: { up: wh.ok, reason: wh.ok ? '' : wh.reason },
      sites: t.sites.map((s, i) => siteView(s.name, rest[i] as CallResult<AgentStatusWire>)),
    };
  } finally {
    witness.close();
    agents.forEach((a) => a.close());
  }
}

function siteView(name: string, r: CallResult<AgentStatusWire>): SiteView {
  if (!r.ok) return { name, up: false, reason: r.reason, groups: {} };
  const groups: Record<string, GroupAtSite> = {};
  for (const g of r.value.groups ?? []) {
    // The role machine's view (arbitration) when the agent reports it; the static role otherwise.
    const a = g.arbitration as { primary?: string; epoch?: string; secondary?: string } | undefined;
    const m = g.mirror as { secondary?: string } | undefined;
    const role = a?.primary ? (a.primary === name ? 'primary' : 'secondary') : g.role;
    const epoch = Number(a?.epoch ?? g.epoch);
    const secondary = a?.secondary || m?.secondary;
    groups[g.name] = { role, epoch, secondaryUpToDate: role === 'primary' && secondary ? secondary === 'up-to-date' : null, raw: g };
  }
  return { name, up: true, reason: '', groups };
}

/** Reads until `cond` holds or waitMs has passed (at least one read); the last value read with it. */
export async function pollUntil<T>(read: () => Promise<T>, cond: (v: T) => boolean, o: { waitMs: number; intervalMs: number; tick?: (v: T) => void }): Promise<{ met: boolean; value: T }> {
  const until = performance.now() + o.waitMs;
  for (;;) {
    const value = await read();
    o.tick?.(value);
    if (cond(value)) return { met: true, value };
    if (performance.now() >= until) return { met: false, value };
    await new Promise((r) => setTimeout(r, o.intervalMs));
  }
}

/** The site serving a group as primary, as the reachable agents report it; null when none does. */
export function primaryOf(v: ClusterView, group: string): { site: string; epoch: number } | null {
  let best: { site: string; epoch: number } | null = null;
  for (const s of v.sites) {
    const g = s.groups[group];
    if (s.up && g?.role === 'primary' && (!best || g.epoch > best.epoch)) best = { site: s.name, epoch: g.epoch };
  }
  return best;
}

export interface ReachResult { from: string; site: string; reachable: boolean; rttMs: number; reason: string; answered: boolean }

/** Asks a daemon ("witness" or a site name) whether it reaches `site`'s agent. */
export async function reachFrom(t: Topology, from: string, site: string, deadlineMs = 3000): Promise<ReachResult> {
  const ep = from === 'witness' ? t.witness : t.sites.find((s) => s.name === from)?.agent;
  if (!ep) return { from, site, reachable: false, rttMs: 0, reason: `no daemon named ${from}`, answered: false };
  const c = dial('reach.proto', 'MetroReach', ep.address, ep.port);
  try {
    const r = await call<{ reachable: boolean; rtt_ms: number; reason: string }>(c, 'Reach', { site, deadline_ms: deadlineMs }, deadlineMs + 5000);
    if (!r.ok) return { from, site, reachable: false, rttMs: 0, reason: `${from} did not answer: ${r.reason}`, answered: false };
    return { from, site, reachable: r.value.reachable, rttMs: r.value.rtt_ms, reason: r.value.reason, answered: true };
  } finally {
    c.close();
  }
}

export interface OpResult { ok: boolean; code: number | null; detail: string; stdout: string; missing: boolean }

const available = new Map<string, boolean>();

/** Whether this build's metroctl has a command (e.g. "switchover"), asked once per process. */
export async function metroctlHas(command: string): Promise<boolean> {
  const known = available.get(command);
  if (known !== undefined) return known;
  const r = await runMetroctl([command, '--help'], { timeoutMs: 30_000 });
  // Commander answers an unknown command with exit 2 and "unknown command".
  const has = r.code === 0 && !/unknown command/i.test(r.detail);
  available.set(command, has);
  return has;
}

/**
 * Runs `metroctl ARGS` and returns its outcome: ok on exit 0; the detail is its last stderr line
 * (the one-sentence reason of DESIGN.md's exit codes) or its last stdout line.
 */
export function runMetroctl(args: string[], o: { timeoutMs: number; onLine?: (line: string) => void; env?: NodeJS.ProcessEnv }): Promise<OpResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [metroctlBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: o.env ?? process.env });
    let stdout = '';
    let stderr = '';
    let partial = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) o.onLine?.(l);
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = (s: string): string => s.trim().split('\n').filter(Boolean).pop() ?? '';
      const detail = signal ? `metroctl ${args[0]} did not finish within ${o.timeoutMs} ms` : last(stderr) || last(stdout);
      resolve({ ok: code === 0, code, detail: detail.replace(/^metroctl: /, ''), stdout, missing: false });
    });
  });
}

/** Runs an operation command, or reports that this build lacks it. */
export async function operate(command: string, args: string[], o: { timeoutMs: number; onLine?: (line: string) => void }): Promise<OpResult> {
  if (!(await metroctlHas(command))) {
    return { ok: false, code: null, detail: `\`metroctl ${command}\` is not available in this build`, stdout: '', missing: true };
  }
  return runMetroctl([command, ...args], o);
}
