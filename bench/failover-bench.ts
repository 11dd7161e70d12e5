// The failover figures of `npm run bench` (issue: "time from SIGKILL to first completed write at the
// other site, and the I/O pause of a switchover, medians over repeated runs"), on a two-site cluster
// run by the real `metroctl up` (leaseMs 2000, ack sync), one group of one volume.
//   failover: a qemu-io write load runs at the group's primary; its agent is SIGKILLed and stays
//     down (a fresh cluster per round, metroctl up --no-restart); the time until a one-write qemu-io
//     run completes through the survivor's portal.
//   switchover: the drill's probe initiator (a host with a path to each portal, one I/O at a time per
//     path) runs while `metroctl switchover` moves the group; the pause is the longest interval in
//     which no path completed an I/O, as a multipath host sees it.
// Between rounds the cluster is back to protected (both portals report the ALUA states of an
// up-to-date secondary). Figures are absolute times on this machine, with its load average.
import { spawn } from 'node:child_process';
import os from 'node:os';
import { IoProbe, probeInitiator } from '../common/probe/io-probe.ts';
import { agentStatusReader, makeTopology, metroctlBin, startUp, stopUp, waitSettled, type UpProcess } from '../tests/harness/cluster.ts';
import { failoverLeaseMs } from '../tests/harness/io-load.ts';
import { qemuIoFailed, run } from '../tests/harness/tools.ts';
import { removeClusterDir } from '../tests/harness/secrets.ts';

/** The lease of the failover process tests' cluster, used here too; main.ts prints it with the figures. */
export { failoverLeaseMs };
/** The goals, printed beside the medians. */
export const failoverGoalMs = 3000;
export const switchoverPauseGoalMs = 500;

export interface FailoverFigures {
  readonly failoverMs: number[];
  readonly switchoverPauseMs: number[];
  /** metroctl switchover, from its start to its exit (CLI start included). */
  readonly switchoverCommandMs: number[];
}

interface Cluster {
  dir: string;
  file: string;
  up: UpProcess;
  portal(site: string): { host: string; port: number };
  url(site: string): string;
  iqn: string;
  name: string;
}

const groups = `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 64MiB } ]`;

/** restart false: a killed agent stays down (metroctl up --no-restart), so its site is really lost. */
async function startCluster(restart: boolean): Promise<Cluster> {
  const t = await makeTopology({ name: 'benchfo', groups, extra: `replication: { ack: sync }\nfailover: { leaseMs: ${failoverLeaseMs}, maxDataLossMs: 0 }` });
  const up = startUp(t.file, restart ? [] : ['--no-restart']);
  await up.waitFor(/^ready$/m, 150_000);
  await waitSettled(t.file);
  const iqn = `iqn.2026-11.io.metrocluster:${t.name}.db`;
  const portal = (site: string) => ({ host: t.host(site === 'alpha' ? 1 : 2), port: 3260 });
  return { dir: t.dir, file: t.file, up, portal, url: (site) => `iscsi://${portal(site).host}:3260/${iqn}/0`, iqn, name: t.name };
}

async function primaryOf(c: Cluster): Promise<{ primary: string; secondary: string }> {
  const reader = await agentStatusReader(c.file);
  try {
    const views = await reader.read();
    const primary = views.find((v) => v.groups?.find((g) => g.name === 'db')?.role === 'primary')?.site;
    if (!primary) throw new Error('no site reports itself primary of db');
    return { primary, secondary: primary === 'alpha' ? 'beta' : 'alpha' };
  } finally {
    reader.close();
  }
}

/** One failover round: kill the primary under a write load, time the first write at the survivor. */
async function failoverRound(c: Cluster, signal: AbortSignal): Promise<number> {
  const { primary, secondary } = await primaryOf(c);
  const commands = Array.from({ length: 2000 }, (_, i) => ['-c', `write -P 0x${(0x10 + (i % 0xe0)).toString(16)} ${(i % 1000) * 65536} 4k`]).flat();
  const load = spawn('qemu-io', ['-f', 'raw', ...commands, c.url(primary)], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 1500));
    process.kill(c.up.pidOf(`agent ${primary}`), 'SIGKILL');
    const killedAt = performance.now();
    for (;;) {
      if (signal.aborted) throw new Error('interrupted');
      const w = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xee 63M 4k', c.url(secondary)], { timeoutMs: 15_000 });
      if (w.code === 0 && !qemuIoFailed(w.stdout + w.stderr)) return performance.now() - killedAt;
      if (performance.now() - killedAt > 60_000) throw new Error(`no write completed at ${secondary} within 60 s of the SIGKILL of ${primary}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    load.kill('SIGKILL');
  }
}

/** One switchover round: the probe's longest pause while metroctl moves the group to the other site. */
async function switchoverRound(c: Cluster): Promise<{ pauseMs: number; commandMs: number }> {
  const { secondary } = await primaryOf(c);
  const probe = new IoProbe({
    paths: ['alpha', 'beta'].map((site) => ({ site, ...c.portal(site) })),
    target: c.iqn, initiator: probeInitiator(c.name), lun: 0, commandTimeoutMs: 10_000, now: () => performance.now(),
  });
  probe.start();
  try {
    if (!(await probe.warm(50, 60_000))) throw new Error(`the probe served no I/O: ${JSON.stringify(probe.stats())}`);
    const t0 = performance.now();
    const sw = await run(process.execPath, [metroctlBin, 'switchover', '-f', c.file, '--group', 'db', '--to', secondary], { timeoutMs: 60_000 });
    const t1 = performance.now();
    if (sw.code !== 0) throw new Error(`metroctl switchover failed: ${sw.stdout}${sw.stderr}`);
    if (!(await probe.warm(20, 60_000))) throw new Error(`no I/O after the switchover: ${JSON.stringify(probe.stats())}`);
    return { pauseMs: probe.maxPauseMs(t0, t1), commandMs: t1 - t0 };
  } finally {
    await probe.stop();
  }
}

/**
 * `repeat` switchovers back and forth on one cluster, then `repeat` failovers, each on a fresh
 * cluster whose killed agent stays down (restarted at once, an agent back within its lease keeps
 * its groups: that measures a restart, not a failover). Progress lines on `out`.
 */
export async function runFailoverBench(repeat: number, signal: AbortSignal, out: NodeJS.WritableStream): Promise<FailoverFigures> {
  const figures: FailoverFigures = { failoverMs: [], switchoverPauseMs: [], switchoverCommandMs: [] };
  await withCluster(true, async (c) => {
    for (let r = 0; r < repeat; r++) {
      if (signal.aborted) throw new Error('interrupted');
      const s = await switchoverRound(c);
      figures.switchoverPauseMs.push(s.pauseMs);
      figures.switchoverCommandMs.push(s.commandMs);
      out.write(`  [${r + 1}/${repeat}] switchover               pause ${s.pauseMs.toFixed(0)} ms (metroctl ${s.commandMs.toFixed(0)} ms)\n`);
      await waitSettled(c.file);
    }
  });
  for (let r = 0; r < repeat; r++) {
    if (signal.aborted) throw new Error('interrupted');
    const f = await withCluster(false, (c) => failoverRound(c, signal));
    figures.failoverMs.push(f);
    out.write(`  [${r + 1}/${repeat}] failover (SIGKILL)       first write at the survivor ${f.toFixed(0)} ms after the kill\n`);
  }
  return figures;
}

async function withCluster<T>(restart: boolean, work: (c: Cluster) => Promise<T>): Promise<T> {
  const c = await startCluster(restart);
  try {
    return await work(c);
  } finally {
    await stopUp(c.up);
    await removeClusterDir(c.dir); // METRO_TEST_KEEP=1 keeps its logs
  }
}

export function failoverLoad(): string {
  return os.loadavg().map((x) => x.toFixed(2)).join(' ');
}
