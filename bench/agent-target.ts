// Our target under test: one `metro-agent` (site alpha of a generated two-site topology on loopback
// addresses; the volume's group prefers alpha, so alpha's port group is active/optimized), started
// directly so its pid, CPU and memory are its own and node flags can be passed to it.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const agentBin = path.join(repoRoot, 'bin', 'metro-agent.cjs');

export interface AgentTarget {
  readonly pid: number;
  readonly url: string;
  readonly volumeFile: string;
  /** The negotiated parameters of the newest login, from the agent's JSON log. */
  lastLogin(): Record<string, unknown> | undefined;
  stop(): Promise<void>;
}

export interface AgentOptions {
  /** Loopback hosts: the agent's own site, the peer site and the witness (never started). */
  readonly hosts: readonly [string, string, string];
  readonly dir: string;
  readonly volumeBytes: number;
  /** Extra environment, e.g. UV_THREADPOOL_SIZE. */
  readonly env: Record<string, string>;
  /** Flags for node itself (--cpu-prof is not allowed in NODE_OPTIONS). */
  readonly nodeArgs: readonly string[];
}

const readyTimeoutMs = 60_000;
const stopTimeoutMs = 15_000;
const cluster = 'bench';
const group = 'bench';

export class AgentError extends Error {
  override name = 'AgentError';
}

function topology(hosts: AgentOptions['hosts'], volumeBytes: number): string {
  return `apiVersion: metrocluster/v1
kind: MetroCluster
metadata: { name: ${cluster} }
sites:
  - name: alpha
    fireZone: building-a
    agent:  { address: ${hosts[0]}, port: 7401 }
    portal: { address: ${hosts[0]}, port: 3260 }
    dataDir: ./data/alpha
  - name: beta
    fireZone: building-b
    agent:  { address: ${hosts[1]}, port: 7402 }
    portal: { address: ${hosts[1]}, port: 3260 }
    dataDir: ./data/beta
witness: { fireZone: building-c, address: ${hosts[2]}, port: 7400, dataDir: ./data/witness }
groups:
  - name: ${group}
    preferredSite: alpha
    volumes: [ { name: disk, size: ${volumeBytes / 1024 ** 2}MiB } ]
`;
}

export async function startAgent(opts: AgentOptions): Promise<AgentTarget> {
  fs.mkdirSync(opts.dir, { recursive: true });
  const file = path.join(opts.dir, 'topology.yaml');
  fs.writeFileSync(file, topology(opts.hosts, opts.volumeBytes));
  const logFile = path.join(opts.dir, 'agent.log');
  const outFd = fs.openSync(path.join(opts.dir, 'agent.out'), 'a');
  const child: ChildProcess = spawn(process.execPath, [...opts.nodeArgs, agentBin, '-f', file, '--site', 'alpha', '--log-file', logFile], {
    cwd: opts.dir,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', outFd, outFd, 'ipc'],
  });
  fs.closeSync(outFd);
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => { exited = true; resolve(); }));
  const stop = async (): Promise<void> => {
    if (exited) return;
    child.kill('SIGTERM'); // the agent closes its portal and volumes, and writes a --cpu-prof profile
    const timer = setTimeout(() => child.kill('SIGKILL'), stopTimeoutMs);
    await exit;
    clearTimeout(timer);
  };
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new AgentError(`metro-agent not ready within ${readyTimeoutMs} ms`)), readyTimeoutMs);
    child.on('message', (m: { type?: string }) => {
      if (m?.type === 'ready') {
        clearTimeout(timer);
        resolve();
      }
    });
    void exit.then(() => {
      clearTimeout(timer);
      const out = fs.readFileSync(path.join(opts.dir, 'agent.out'), 'utf8');
      reject(new AgentError(`metro-agent exited at start:\n${out.trim()}`));
    });
  });
  try {
    await ready;
  } catch (err) {
    await stop();
    throw err;
  }
  // The IPC channel stays open: should this process die, the agent sees it close and stops.
  return {
    pid: child.pid!,
    url: `iscsi://${opts.hosts[0]}:3260/iqn.2026-11.io.metrocluster:${cluster}.${group}/0`,
    volumeFile: path.join(opts.dir, 'data', 'alpha', 'volumes', group, 'disk.vol'),
    lastLogin: () => {
      const lines = fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"iSCSI login"'));
      if (lines.length === 0) return undefined;
      const { level: _l, message: _m, component: _c, timestamp: _t, part: _p, remote: _r, ...rest } = JSON.parse(lines[lines.length - 1]) as Record<string, unknown>;
      return rest;
    },
    stop,
  };
}
