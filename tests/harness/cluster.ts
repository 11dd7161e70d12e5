// A metro cluster for process tests: writes a topology on loopback addresses unique to the test
// (127.x.y.z), runs it with the real `metroctl up`, and tears it down. Nothing here mocks a daemon.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const metroctlBin = path.join(repoRoot, 'bin', 'metroctl.js');

let counter = 0;
/** Loopback hosts no other test uses at the same time: the second octet from the pid (one test
 *  file per process), the third from a counter within the process. host(n) is 127.a.b+n.1. */
export function uniqueHosts(): (n: 1 | 2 | 3) => string {
  counter += 1;
  const a = 10 + (process.pid % 240);
  const b = (counter * 4) % 252;
  return (n) => `127.${a}.${b + n}.1`;
}

export interface ClusterSpec {
  name?: string;
  groups?: string; // YAML for the groups list; defaults to two groups over both sites
  access?: string; // YAML for the access block
  extra?: string;
  /** Files written beside the topology before it is loaded (path relative to its folder), mode 0600. */
  files?: Record<string, string>;
}

export interface TestCluster {
  dir: string;
  file: string;
  host: (n: 1 | 2 | 3) => string;
  portal(site: 1 | 2): string; // "127.x.s.1:3260"
  iqn(group: string): string;
  name: string;
  up: UpProcess;
  /** The last lines of a daemon's JSON log ("alpha", "beta" or "witness"), for failure reports. */
  logTail(daemon: string, lines?: number): Promise<string>;
  stop(): Promise<void>;
}

export async function makeTopology(spec: ClusterSpec = {}): Promise<{ dir: string; file: string; host: (n: 1 | 2 | 3) => string; name: string }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'metro-test-'));
  const host = uniqueHosts();
  const name = spec.name ?? 'test';
  const groups = spec.groups ?? `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 64MiB }, { name: log, size: 16MiB } ]
  - name: vm
    preferredSite: beta
    volumes: [ { name: images, size: 32MiB } ]`;
  const yaml = `apiVersion: metrocluster/v1
kind: MetroCluster
metadata: { name: ${name} }
sites:
  - name: alpha
    fireZone: building-a
    agent:  { address: ${host(1)}, port: 7401 }
    portal: { address: ${host(1)}, port: 3260 }
    dataDir: ./data/alpha
  - name: beta
    fireZone: building-b
    agent:  { address: ${host(2)}, port: 7402 }
    portal: { address: ${host(2)}, port: 3260 }
    dataDir: ./data/beta
witness: { fireZone: building-c, address: ${host(3)}, port: 7400, dataDir: ./data/witness }
groups:${groups}
${spec.access ?? ''}
${spec.extra ?? ''}
`;
  for (const [rel, content] of Object.entries(spec.files ?? {})) {
    await fs.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await fs.writeFile(path.join(dir, rel), content, { mode: 0o600 });
  }
  const file = path.join(dir, 'topology.yaml');
  await fs.writeFile(file, yaml);
  return { dir, file, host, name };
}

export interface UpProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves when a line matching re has been printed since `from` (an output offset). */
  waitFor(re: RegExp, timeoutMs?: number, from?: number): Promise<RegExpMatchArray>;
  /** pid of a daemon as last printed by metroctl up ("agent alpha", "witness"). */
  pidOf(name: string): number;
}

export function startUp(file: string, args: string[] = []): UpProcess {
  const child = spawn(process.execPath, [metroctlBin, 'up', '-f', file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const waiters = new Set<() => void>();
  const onData = (d: Buffer): void => { out += d.toString('utf8'); for (const w of waiters) w(); };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  child.on('exit', () => { for (const w of waiters) w(); });
  return {
    child,
    output: () => out,
    waitFor(re, timeoutMs = 30_000, from = 0) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const m = out.slice(from).match(re);
          if (m) { done(); resolve(m); return; }
          if (child.exitCode !== null || child.signalCode !== null) { done(); reject(new Error(`metroctl up exited; output:\n${out}`)); }
        };
        const timer = setTimeout(() => { done(); reject(new Error(`timed out waiting for ${re}; output:\n${out}`)); }, timeoutMs);
        const done = (): void => { clearTimeout(timer); waiters.delete(check); };
        waiters.add(check);
        check();
      });
    },
    pidOf(name) {
      const all = [...out.matchAll(new RegExp(`^(?:restarted )?${name}\\s+pid (\\d+)`, 'gm'))];
      if (all.length === 0) throw new Error(`no pid printed for ${name}; output:\n${out}`);
      return Number(all[all.length - 1][1]);
    },
  };
}

export async function stopUp(up: UpProcess): Promise<void> {
  if (up.child.exitCode !== null || up.child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => up.child.once('exit', () => resolve()));
  up.child.kill('SIGTERM');
  const timer = setTimeout(() => up.child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

/** Writes a topology, runs `metroctl up` on it and waits until every daemon is ready. */
export async function startCluster(spec: ClusterSpec = {}): Promise<TestCluster> {
  const { dir, file, host, name } = await makeTopology(spec);
  const up = startUp(file);
  await up.waitFor(/^ready$/m, 60_000);
  return {
    dir, file, host, name, up,
    portal: (site) => `${host(site)}:3260`,
    iqn: (group) => `iqn.2026-11.io.metrocluster:${name}.${group}`,
    logTail: async (daemon, lines = 40) => {
      const file = daemon === 'witness' ? path.join(dir, 'data', 'witness', 'logs', 'witness.log') : path.join(dir, 'data', daemon, 'logs', 'agent.log');
      const text = await fs.readFile(file, 'utf8').catch(() => '');
      return text.trimEnd().split('\n').slice(-lines).join('\n');
    },
    stop: async () => {
      await stopUp(up);
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
