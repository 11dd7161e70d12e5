// `metroctl up -f FILE`: runs every daemon of a topology on this machine, each its own process,
// prints where each listens and the iSCSI URLs, restarts a daemon that dies (unless --no-restart),
// and stops them all on Ctrl-C or SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Command } from 'commander';
import type { Topology } from '../common/topology/index.ts';
import { loadTopologyOrExit, DaemonError, type ReadyMessage } from '../common/daemon.ts';
import { ensureAutoPki } from '../common/tls/pki.ts';
import { insecureWarning } from '../common/tls/grpc-security.ts';
import { installRoot } from '../common/install-root.ts';

const binDir = path.join(installRoot, 'bin');
/** How long a daemon may take to start serving; METRO_READY_TIMEOUT_MS overrides (slow or loaded machines). */
const readyTimeoutMs = Number(process.env.METRO_READY_TIMEOUT_MS) > 0 ? Number(process.env.METRO_READY_TIMEOUT_MS) : 30_000;
const stopTimeoutMs = 10_000;
const restartDelayMs = 1_000;
/** A daemon that dies this many times within restartWindowMs is left down. */
const restartsMax = 5;
const restartWindowMs = 60_000;

interface DaemonSpec {
  name: string;
  bin: string;
  args: string[];
}

interface Running {
  spec: DaemonSpec;
  child: ChildProcess;
  restarts: number[];
}

export function registerUpCommand(program: Command): void {
  program
    .command('up')
    .description('run every daemon of a topology on this machine (witness and both agents)')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .option('--no-restart', 'leave a daemon that dies down instead of restarting it')
    .addHelpText('after', '\nExamples:\n  metroctl up -f topology-examples/local-demo.yaml\n  metroctl up -f cluster.yaml --no-restart     # a daemon that dies stays down (fault drills)\n')
    .action(async (opts: { file: string; restart: boolean }) => {
      const topology = await loadTopologyOrExit(opts.file);
      // Before any daemon starts: they would race to make the automatic PKI.
      const pki = await ensureAutoPki(topology);
      for (const m of pki.made) process.stdout.write(`made ${m}\n`);
      if (topology.security?.insecure) process.stderr.write(`metroctl up: warning: ${insecureWarning}\n`);
      await runUp(topology, opts.restart);
    });
}

function daemonSpecs(t: Topology): DaemonSpec[] {
  return [
    { name: 'witness', bin: 'metro-witness.js', args: ['-f', t.file] },
    ...t.sites.map((s) => ({ name: `agent ${s.name}`, bin: 'metro-agent.cjs', args: ['-f', t.file, '--site', s.name] })),
  ];
}

function start(spec: DaemonSpec): { child: ChildProcess; ready: Promise<ReadyMessage> } {
  const child = spawn(process.execPath, [path.join(binDir, spec.bin), ...spec.args], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = new Promise<ReadyMessage>((resolve, reject) => {
    const timer = setTimeout(() => reject(new DaemonError(`${spec.name} did not become ready within ${readyTimeoutMs} ms`)), readyTimeoutMs);
    child.on('message', (m: ReadyMessage) => {
      if (m?.type === 'ready') { clearTimeout(timer); resolve(m); }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new DaemonError(`${spec.name} exited before it was ready (${signal ?? `exit code ${code}`})`));
    });
  });
  ready.catch(() => undefined);
  return { child, ready };
}

function describe(spec: DaemonSpec, pid: number | undefined, m: ReadyMessage): string {
  const where = m.listen.map((l) => `${l.what} ${l.address}:${l.port}`).join('  ');
  return `${spec.name.padEnd(16)} pid ${String(pid).padEnd(8)} ${where}`;
}

function printUrls(t: Topology): void {
  process.stdout.write('\niSCSI targets (each reachable at both sites\' portals):\n');
  for (const g of t.groups) {
    process.stdout.write(`  ${g.iqn}  (preferred site ${g.preferredSite})\n`);
    for (const s of t.sites) {
      for (const v of g.volumes) {
        process.stdout.write(`    iscsi://${s.portal.address}:${s.portal.port}/${g.iqn}/${v.lun}   ${s.name} ${v.name}\n`);
      }
    }
  }
  const p = t.sites[0].portal;
  process.stdout.write(`\nConnect a Linux host: iscsiadm -m discovery -t sendtargets -p ${p.address}:${p.port} && iscsiadm -m node --login\n`);
  process.stdout.write('Ctrl-C stops every daemon.\n');
}

async function runUp(topology: Topology, restart: boolean): Promise<void> {
  const running = new Map<string, Running>();
  let stopping = false;

  const stopAll = async (): Promise<void> => {
    stopping = true;
    await Promise.all([...running.values()].map(({ child }) => stopChild(child)));
  };

  const watch = (r: Running): void => {
    r.child.once('exit', (code, signal) => {
      if (stopping) return;
      const why = signal ? `signal ${signal}` : `exit code ${code}`;
      const now = Date.now();
      r.restarts = r.restarts.filter((t) => now - t < restartWindowMs);
      if (!restart || r.restarts.length >= restartsMax) {
        process.stderr.write(`metroctl up: ${r.spec.name} exited (${why}); left down\n`);
        return;
      }
      process.stderr.write(`metroctl up: ${r.spec.name} exited (${why}); restarting in ${restartDelayMs} ms\n`);
      setTimeout(() => {
        if (stopping) return;
        const { child, ready } = start(r.spec);
        const next: Running = { spec: r.spec, child, restarts: [...r.restarts, now] };
        running.set(r.spec.name, next);
        watch(next);
        ready.then(
          (m) => process.stdout.write(`restarted ${describe(r.spec, child.pid, m)}\n`),
          (err: Error) => process.stderr.write(`metroctl up: ${err.message}\n`),
        );
      }, restartDelayMs);
    });
  };

  process.on('SIGINT', () => void stopAll().then(() => process.exit(0)));
  process.on('SIGTERM', () => void stopAll().then(() => process.exit(0)));

  process.stdout.write(`metrocluster ${topology.name}: starting ${topology.sites.length + 1} daemons\n`);
  const started = daemonSpecs(topology).map((spec) => ({ spec, ...start(spec) }));
  for (const s of started) {
    const r: Running = { spec: s.spec, child: s.child, restarts: [] };
    running.set(s.spec.name, r);
  }
  try {
    const messages = await Promise.all(started.map((s) => s.ready));
    started.forEach((s, i) => process.stdout.write(describe(s.spec, s.child.pid, messages[i]) + '\n'));
  } catch (err) {
    await stopAll();
    throw err;
  }
  for (const r of running.values()) watch(r);
  printUrls(topology);
  process.stdout.write('ready\n');
  await new Promise<never>(() => undefined);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), stopTimeoutMs);
    child.once('exit', () => { clearTimeout(timer); resolve(); });
    child.kill('SIGTERM');
  });
}
