// Our target under test: `metro-agent` of site alpha of a generated two-site topology on loopback
// addresses (the volume's group prefers alpha, so alpha's port group is active/optimized), started
// directly so its pid, CPU and memory are its own and node flags can be passed to it. Alone with
// mirroring off (startAgent), or with site beta's agent as its mirror in sync mode (startMirroredPair).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { installRoot } from '../common/install-root.ts';

const agentBin = path.join(installRoot, 'bin', 'metro-agent.cjs');
const witnessBin = path.join(installRoot, 'bin', 'metro-witness.js');

export interface AgentTarget {
  readonly pid: number;
  readonly url: string;
  readonly volumeFile: string;
  readonly logFile: string;
  /** The negotiated parameters of the newest login, from the agent's JSON log. */
  lastLogin(): Record<string, unknown> | undefined;
  stop(): Promise<void>;
}

/** Site alpha's agent (primary, the one the client drives) mirroring to site beta's in sync mode. */
export interface MirroredPair {
  readonly primary: AgentTarget;
  readonly secondary: AgentTarget;
  /** Mirror events in the primary's log since the pair started that make its figures not a
   *  measurement of sync mirroring (detach, outdated, mode change); [] when there were none. */
  mirrorTrouble(): string[];
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

interface SpawnOptions extends AgentOptions {
  readonly site: 'alpha' | 'beta' | 'witness';
  readonly topologyFile: string;
}

const readyTimeoutMs = 60_000;
const attachTimeoutMs = 30_000;
const stopTimeoutMs = 15_000;
const cluster = 'bench';
const group = 'bench';

export class AgentError extends Error {
  override name = 'AgentError';
}

/** The bench's topology: sites alpha (primary) and beta, one group of one volume, on the given hosts. */
export function benchTopology(hosts: AgentOptions['hosts'], volumeBytes: number, ack?: 'sync'): string {
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
${ack !== undefined ? `    replication: { ack: ${ack} }\n` : ''}`;
}

function logLines(logFile: string, message: string): Array<Record<string, unknown>> {
  let text: string;
  try {
    text = fs.readFileSync(logFile, 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').filter((l) => l.includes(`"${message}"`)).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** One agent alone, mirroring off (METRO_MIRROR=0): the peer site is never started. */
export async function startAgent(opts: AgentOptions): Promise<AgentTarget> {
  fs.mkdirSync(opts.dir, { recursive: true });
  const topologyFile = path.join(opts.dir, 'topology.yaml');
  fs.writeFileSync(topologyFile, benchTopology(opts.hosts, opts.volumeBytes));
  // The witness grants the group's primary its lease: without it the site does not serve.
  const witness = await spawnAgent({ ...opts, nodeArgs: [], site: 'witness', topologyFile });
  try {
    const agent = await spawnAgent({ ...opts, env: { ...opts.env, METRO_MIRROR: '0' }, site: 'alpha', topologyFile });
    return { ...agent, stop: async () => { await agent.stop(); await witness.stop(); } };
  } catch (err) {
    await witness.stop();
    throw err;
  }
}

/** Both sites' agents, the group in sync mode; resolves once the secondary has attached and is up-to-date. */
export async function startMirroredPair(opts: AgentOptions): Promise<MirroredPair> {
  fs.mkdirSync(opts.dir, { recursive: true });
  const topologyFile = path.join(opts.dir, 'topology.yaml');
  fs.writeFileSync(topologyFile, benchTopology(opts.hosts, opts.volumeBytes, 'sync'));
  const env = { ...opts.env, METRO_MIRROR: '1' };
  const started = await Promise.allSettled([
    spawnAgent({ ...opts, env, site: 'alpha', topologyFile }),
    spawnAgent({ ...opts, env, site: 'beta', topologyFile }),
    spawnAgent({ ...opts, nodeArgs: [], site: 'witness', topologyFile }),
  ]);
  const stopAll = () => Promise.allSettled(started.map((s) => (s.status === 'fulfilled' ? s.value.stop() : undefined))).then(() => undefined);
  const failed = started.find((s) => s.status === 'rejected');
  if (failed !== undefined) {
    await stopAll();
    throw failed.reason;
  }
  const [primary, secondary] = started.map((s) => (s as PromiseFulfilledResult<AgentTarget>).value);
  // Sync mirroring is measured only once the secondary holds the group: until its first (full,
  // checksum-based) resync completes it is outdated and writes do not wait for it.
  // The resync reads both copies whole (checksums): allow it 50 MB/s on top of the attach.
  const waitMs = attachTimeoutMs + opts.volumeBytes / 50e3;
  const deadline = performance.now() + waitMs;
  while (logLines(primary.logFile, 'secondary up-to-date').length === 0) {
    if (performance.now() > deadline) {
      await stopAll();
      throw new AgentError(`the secondary did not attach and become up-to-date within ${Math.round(waitMs)} ms (logs in ${opts.dir})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    primary,
    secondary,
    mirrorTrouble: () =>
      ['secondary detached', 'secondary outdated', 'mirror mode changed', 'secondary not attached: serving alone, the dirty map records what it lacks']
        .flatMap((m) => logLines(primary.logFile, m).map((l) => `${String(l.timestamp)} ${m}${l.why !== undefined ? ` (${String(l.why)})` : ''}`)),
    stop: stopAll,
  };
}

async function spawnAgent(opts: SpawnOptions): Promise<AgentTarget> {
  const logFile = path.join(opts.dir, `${opts.site === 'witness' ? 'witness' : `agent-${opts.site}`}.log`);
  const outFile = path.join(opts.dir, `${opts.site === 'witness' ? 'witness' : `agent-${opts.site}`}.out`);
  const outFd = fs.openSync(outFile, 'a');
  const args = opts.site === 'witness'
    ? [witnessBin, '-f', opts.topologyFile, '--log-file', logFile]
    : [agentBin, '-f', opts.topologyFile, '--site', opts.site, '--log-file', logFile];
  const child: ChildProcess = spawn(process.execPath, [...opts.nodeArgs, ...args], {
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
      const out = fs.readFileSync(outFile, 'utf8');
      reject(new AgentError(`${opts.site === 'witness' ? 'metro-witness' : `metro-agent (${opts.site})`} exited at start:\n${out.trim()}`));
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
    url: `iscsi://${opts.hosts[opts.site === 'alpha' ? 0 : 1]}:3260/iqn.2026-11.io.metrocluster:${cluster}.${group}/0`,
    volumeFile: path.join(opts.dir, 'data', opts.site, 'volumes', group, 'disk.vol'),
    logFile,
    lastLogin: () => {
      const lines = logLines(logFile, 'iSCSI login');
      if (lines.length === 0) return undefined;
      const { level: _l, message: _m, component: _c, timestamp: _t, part: _p, remote: _r, ...rest } = lines[lines.length - 1];
      return rest;
    },
    stop,
  };
}
