// A metro cluster for process tests: writes a topology on loopback addresses unique to the test
// (127.x.y.z), runs it with the real `metroctl up`, and tears it down. Nothing here mocks a daemon.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadTopology } from '../../common/topology/index.ts';
import { call, dial } from '../../common/grpc-client.ts';
import { removeClusterDir } from './secrets.ts';
import { loadGrpcSecurity, type ClientFiles, type GrpcSecurity } from '../../common/tls/grpc-security.ts';
import type { Identity } from '../../common/tls/identity.ts';
import { installRoot } from '../../common/install-root.ts';
import { metroctlBin } from '../../common/ops/cluster-ops.ts';

/**
 * The gRPC security a test client uses to speak as `who` to the daemons of a topology: an agent
 * or the witness (their certificates from the automatic PKI), or 'operator' (the local admin, as
 * metroctl). The PKI exists once a daemon of the topology has started.
 */
export async function securityFor(file: string, who: { agent: string } | 'witness' | 'operator', given?: ClientFiles): Promise<GrpcSecurity> {
  const r = await loadTopology(file);
  if (!r.ok) throw new Error(`topology ${file} is invalid`);
  const t = r.topology;
  const self: Identity | 'operator' = who === 'operator' ? 'operator' : who === 'witness' ? { kind: 'witness', cluster: t.name } : { kind: 'agent', cluster: t.name, site: who.agent };
  return loadGrpcSecurity(t, self, given);
}

export { installRoot as repoRoot, metroctlBin };

let counter = 0;
let octet: Promise<number> | undefined;
/** Where a test process holds its claim on its second octet (a port no daemon of a test uses). */
const claimPort = 7399;

/**
 * The second octet of this test process's loopback hosts, no other running test process has: the
 * process listens on 127.<octet>.255.254 for as long as it lives, so a second claim of the same
 * octet fails to bind (EADDRINUSE) and tries the next one, and the kernel frees the claim when the
 * process ends however it ends. Tried from the pid on, so processes mostly claim their first try.
 */
function claimOctet(): Promise<number> {
  octet ??= (async () => {
    for (let i = 0; i < 240; i++) {
      const a = 10 + ((process.pid + i) % 240);
      const server = net.createServer();
      const bound = await new Promise<boolean>((resolve, reject) => {
        server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(false) : reject(err)));
        server.listen({ host: `127.${a}.255.254`, port: claimPort, exclusive: true }, () => resolve(true));
      });
      if (bound) {
        server.unref();
        return a;
      }
    }
    throw new Error('no loopback octet left for test hosts: 240 test processes hold one each');
  })();
  return octet;
}

/** Loopback hosts no other test uses at the same time: the second octet claimed by this process
 *  (one test file per process), the third from a counter within the process. host(n) is 127.a.b+n.1. */
export async function uniqueHosts(): Promise<(n: 1 | 2 | 3) => string> {
  const a = await claimOctet();
  counter += 1;
  const b = (counter * 4) % 252;
  return (n) => `127.${a}.${b + n}.1`;
}

export interface ClusterSpec {
  name?: string;
  groups?: string; // YAML for the groups list; defaults to two groups over both sites
  access?: string; // YAML for the access block
  /**
   * YAML after the groups (top-level blocks). Without a `replication:` block of its own, the
   * topology gets `replication: { ack: sync }`: the adaptive default switches to async whenever the
   * loaded test machine's event loops stretch the mirror round trip past 5 ms, and every switch
   * changes the secondary's ALUA state under the test's hosts. The tests of the adaptive policy
   * say so themselves.
   */
  extra?: string;
  /**
   * startCluster: wait until the cluster has settled (default true): every group's primary serves
   * with its secondary up-to-date, or, for the groups named in `outdated`, with the secondary recorded
   * outdated at the witness. Hosts then log in after the initial resync's ALUA change, not during it.
   */
  settle?: boolean | { outdated: string[] };
  /**
   * startCluster: false runs `metroctl up --no-restart`, so a daemon that dies stays down (the test
   * decides what runs). Default true: metroctl up restarts it.
   */
  restart?: boolean;
  /** Files written beside the topology before it is loaded (path relative to its folder), mode 0600. */
  files?: Record<string, string>;
  /**
   * Per site `routes` (where its agent dials the peer's agent and the witness), given the test's
   * hosts: e.g. a TcpProxy on host(3) between beta and alpha's agent.
   */
  routes?: (host: (n: 1 | 2 | 3) => string) => Partial<Record<'alpha' | 'beta', SiteRoutes>>;
  /** Runs after the topology is written and before `metroctl up` (start a proxy the routes name). */
  beforeUp?: (topology: { dir: string; file: string; host: (n: 1 | 2 | 3) => string }) => Promise<void>;
}

export interface SiteRoutes { peer?: { address: string; port: number }; witness?: { address: string; port: number } }

function routesYaml(r: SiteRoutes | undefined): string {
  if (!r) return '';
  const e = (x: { address: string; port: number } | undefined) => (x ? `{ address: ${x.address}, port: ${x.port} }` : undefined);
  const fields = [r.peer && `peer: ${e(r.peer)}`, r.witness && `witness: ${e(r.witness)}`].filter(Boolean);
  return `\n    routes: { ${fields.join(', ')} }`;
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
  const host = await uniqueHosts();
  const name = spec.name ?? 'test';
  const routes = spec.routes?.(host) ?? {};
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
    dataDir: ./data/alpha${routesYaml(routes.alpha)}
  - name: beta
    fireZone: building-b
    agent:  { address: ${host(2)}, port: 7402 }
    portal: { address: ${host(2)}, port: 3260 }
    dataDir: ./data/beta${routesYaml(routes.beta)}
witness: { fireZone: building-c, address: ${host(3)}, port: 7400, dataDir: ./data/witness }
groups:${groups}
${spec.access ?? ''}
${spec.extra ?? ''}
${/^replication:/m.test(spec.extra ?? '') ? '' : 'replication: { ack: sync }'}
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
  // Daemons start slowly on a loaded 2-core machine: generous readiness, as for every deadline here.
  const env = { ...process.env, METRO_READY_TIMEOUT_MS: process.env.METRO_READY_TIMEOUT_MS ?? '120000' };
  const child = spawn(process.execPath, [metroctlBin, 'up', '-f', file, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
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
  await spec.beforeUp?.({ dir, file, host });
  const up = startUp(file, spec.restart === false ? ['--no-restart'] : []);
  try {
    await up.waitFor(/^ready$/m, 150_000);
    if (spec.settle !== false) await waitSettled(file, spec.settle === undefined || spec.settle === true ? [] : spec.settle.outdated);
  } catch (err) {
    // The caller never gets the cluster to stop: stop it here (its files stay for a post-mortem).
    await stopUp(up);
    throw err;
  }
  return {
    dir, file, host, name, up,
    portal: (site) => `${host(site)}:3260`,
    iqn: (group) => `iqn.2026-11.io.metrocluster:${name}.${group}`,
    logTail: (daemon, lines = 40) => logTail(dir, daemon, lines),
    stop: async () => {
      await stopUp(up);
      // No secret in any log or in what metroctl up printed; METRO_TEST_KEEP=1 keeps the files.
      await removeClusterDir(dir, { 'metroctl up output': up.output() });
    },
  };
}

/** A daemon's JSON log under its data directory. */
function logFileIn(dataDir: string, daemon: 'agent' | 'witness'): string {
  return path.join(dataDir, 'logs', `${daemon}.log`);
}

/** Per daemon, the last lines of its log that name one of the groups: what a settle timeout reports. */
async function groupLogs(t: { sites: ReadonlyArray<{ name: string; dataDir: string }>; witness: { dataDir: string } }, groups: string[], lines = 15): Promise<string> {
  const logs = [
    ...t.sites.map((s) => ({ daemon: `agent ${s.name}`, file: logFileIn(s.dataDir, 'agent') })),
    { daemon: 'witness', file: logFileIn(t.witness.dataDir, 'witness') },
  ];
  const parts: string[] = [];
  for (const { daemon, file } of logs) {
    const text = await fs.readFile(file, 'utf8').catch(() => '');
    const named = text.split('\n').filter((l) => groups.some((g) => l.includes(`"group":"${g}"`)));
    parts.push(`--- ${daemon}: last ${Math.min(lines, named.length)} lines naming ${groups.join(', ')}`, ...named.slice(-lines).map((l) => l.slice(0, 400)));
  }
  // The witness's durable record of each group (epoch, primary, secondary up-to-date, request seqs).
  const state = await fs.readFile(path.join(t.witness.dataDir, 'witness.json'), 'utf8').then((x) => JSON.parse(x) as { records?: Record<string, unknown> }, () => undefined);
  for (const [key, record] of Object.entries(state?.records ?? {})) {
    if (groups.some((g) => key.endsWith(`/${g}`))) parts.push(`--- witness record ${key}: ${JSON.stringify(record)}`);
  }
  return parts.join('\n');
}

/** The last lines of a daemon's JSON log ("alpha", "beta" or "witness") in a cluster's folder. */
export async function logTail(dir: string, daemon: string, lines: number): Promise<string> {
  const file = logFileIn(path.join(dir, 'data', daemon), daemon === 'witness' ? 'witness' : 'agent');
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** A group of an agent's Status answer (protos/agent.proto GroupStatus), the fields tests read. */
export interface StatusGroup {
  name: string;
  role: string;
  mirror?: { attached: boolean; secondary: string; mode: string; mode_switches: number; rtt_ms: number; lag_bytes: string; lag_ms: number; hold_down_ms: string; outdated_reason: string };
  arbitration?: { gate: string; lease_state?: string; witness_reachable?: boolean; blocked?: string; switchover?: boolean; failover_requested?: boolean };
  path?: { port_groups: Array<{ site: string; state: string }> };
}

/**
 * Polls both agents' Status (as the local admin) until every group's primary serves and its
 * secondary is up-to-date and attached, and both portals report those ALUA states, or, for the `outdated` groups, the
 * primary serves with the secondary recorded outdated at the witness (gate 'local').
 */
export async function waitSettled(file: string, outdated: string[] = [], deadlineMs = 180_000): Promise<void> {
  const r = await loadTopology(file);
  if (!r.ok) throw new Error(`topology ${file} is invalid`);
  const t = r.topology;
  const agents = await agentStatusReader(file);
  const until = performance.now() + deadlineMs;
  let last = '';
  try {
    for (;;) {
      const views = await agents.read();
      // Why each group has not settled yet (undefined: settled).
      const unsettled = (name: string): string | undefined => {
        const at = views.map((v) => ({ site: v.site, g: v.groups?.find((x) => x.name === name) }));
        const primary = at.find((x) => x.g?.role === 'primary');
        const secondary = at.find((x) => x.g?.role === 'secondary');
        if (!primary?.g || !secondary?.g) return 'no primary and secondary yet';
        const a = primary.g.arbitration;
        if (outdated.includes(name)) return a?.gate === 'local' ? undefined : `secondary not yet recorded outdated (gate ${a?.gate})`;
        const ok = a?.gate === 'mirrored' && primary.g.mirror?.attached && primary.g.mirror.secondary === 'up-to-date' && secondary.g.mirror?.attached;
        const why = a && a.gate !== 'mirrored' ? ` (leases ${a.lease_state}, witness reachable ${a.witness_reachable}, blocked '${a.blocked}', switchover ${a.switchover}, failover requested ${a.failover_requested})` : '';
        if (!ok) return `primary ${primary.site} gate ${a?.gate}${why}, secondary ${primary.g.mirror?.secondary}, attached at ${secondary.site} ${secondary.g.mirror?.attached}`;
        // What hosts are told at both portals: the primary's port group active/optimized, the
        // secondary's active/non-optimized (the unit attention of that change is behind them).
        const want = (site: string) => (site === primary.site ? 'active-optimized' : 'active-non-optimized');
        const wrong = at.flatMap((x) => (x.g?.path?.port_groups ?? []).filter((pg) => pg.state !== want(pg.site)).map((pg) => `${x.site} reports ${pg.site} ${pg.state}`));
        return wrong.length === 0 ? undefined : wrong.join(', ');
      };
      const pending = t.groups.map((g) => ({ group: g.name, why: unsettled(g.name) })).filter((x) => x.why !== undefined);
      if (pending.length === 0) break;
      last = pending.map((x) => `${x.group}: ${x.why}`).join('; ');
      if (performance.now() > until) {
        throw new Error(`cluster ${t.name} did not settle within ${deadlineMs} ms: ${last}\n${await groupLogs(t, pending.map((x) => x.group))}`);
      }
      await new Promise((res) => setTimeout(res, 200));
    }
  } finally {
    agents.close();
  }
}

/**
 * Reads the agents' Status over gRPC as the local admin (every site's, or only those named): cheap
 * enough to poll every few hundred ms (a metroctl process per poll would load the machine whose
 * timing a test measures).
 */
export async function agentStatusReader(file: string, sites?: readonly string[]): Promise<{ read(): Promise<Array<{ site: string; groups: StatusGroup[] | undefined }>>; close(): void }> {
  const r = await loadTopology(file);
  if (!r.ok) throw new Error(`topology ${file} is invalid`);
  const security = await securityFor(file, 'operator');
  const agents = r.topology.sites.filter((s) => !sites || sites.includes(s.name)).map((s) => ({ site: s.name, client: dial('agent.proto', 'MetroAgent', s.agent.address, s.agent.port, { security }) }));
  return {
    read: () => Promise.all(agents.map(async (a) => {
      const res = await call<{ groups: StatusGroup[] }>(a.client, 'Status', {}, 10_000);
      return { site: a.site, groups: res.ok ? res.value.groups : undefined };
    })),
    close: () => { for (const a of agents) a.client.close(); },
  };
}
