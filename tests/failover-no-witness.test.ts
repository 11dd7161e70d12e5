// Issue 5's last demonstration against real processes: the witness and the primary both gone, the
// secondary does not promote itself; `metroctl failover --force --yes` promotes it without the
// witness and reports the data-loss bound; the witness back adopts the forced epoch; the old primary
// back steps down and resyncs. `metroctl up --no-restart` runs the daemons (the test decides what
// runs); qemu-io writes and reads through the portals. Prints the figures it measured.
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { logTail, makeTopology, startUp, stopUp, metroctlBin, repoRoot, type UpProcess } from './harness/cluster.ts';
import { requireTools, run } from './harness/tools.ts';
import { failoverLeaseMs, failoverTopology, firstWrite, pattern, qemuIo, waitFor, writeLoad } from './harness/io-load.ts';
import { removeClusterDir } from './harness/secrets.ts';

const leaseMs = failoverLeaseMs;

interface Cluster {
  dir: string;
  file: string;
  up: UpProcess;
  /** Daemons this test started itself, after metroctl up's were killed. */
  own: ChildProcess[];
  url(site: 1 | 2, group: string): string;
  logTail(daemon: string): Promise<string>;
}

const running = new Set<Cluster>();
async function stop(c: Cluster): Promise<void> {
  running.delete(c);
  for (const p of c.own) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await stopUp(c.up);
  await removeClusterDir(c.dir);
}
test.after.always(async () => { await Promise.all([...running].map(stop)); });

async function start(): Promise<Cluster> {
  const { dir, file, host, name } = await makeTopology(failoverTopology);
  const up = startUp(file, ['--no-restart']);
  const c: Cluster = {
    dir, file, up, own: [],
    url: (site, group) => `iscsi://${host(site)}:3260/iqn.2026-11.io.metrocluster:${name}.${group}/0`,
    logTail: (d) => logTail(dir, d, 30),
  };
  running.add(c);
  await up.waitFor(/^ready$/m, 150_000);
  await waitFor(async () => {
    const s = await status(c);
    return ['db', 'vm'].every((g) => s.rows.some((x) => x.group === g && x.role === 'primary' && x.gate !== 'closed'));
  }, 90_000, 'both primaries serving');
  return c;
}

/** A daemon of the topology started by the test (as an admin would bring a host back). */
async function startDaemon(c: Cluster, bin: string, args: string[]): Promise<void> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin', bin), '-f', c.file, ...args], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  c.own.push(child);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${bin} ${args.join(' ')} not ready within 120 s`)), 120_000);
    child.on('message', (m: { type?: string }) => { if (m?.type === 'ready') { clearTimeout(timer); resolve(); } });
    child.once('exit', (code, signal) => { clearTimeout(timer); reject(new Error(`${bin} exited (${signal ?? code})`)); });
  });
}

interface Row { site: string; group: string; role: string; epoch: number; primary: string; gate: string; forcedWithoutWitness: boolean; witnessReachable: boolean }

async function status(c: Cluster): Promise<{ rows: Row[]; json: any }> {
  const r = await run(process.execPath, [metroctlBin, 'status', '-f', c.file, '-o', 'json'], { timeoutMs: 30_000 });
  const json = JSON.parse(r.stdout || '{"sites":[]}');
  const rows: Row[] = [];
  for (const s of json.sites) {
    for (const g of s.groups ?? []) {
      const a = g.arbitration ?? {};
      rows.push({
        site: s.name, group: g.name, role: g.role, epoch: Number(g.epoch), primary: a.primary, gate: a.gate,
        forcedWithoutWitness: !!a.forced_without_witness, witnessReachable: !!a.witness_reachable,
      });
    }
  }
  return { rows, json };
}

const row = (rows: Row[], site: string, group: string): Row | undefined => rows.find((r) => r.site === site && r.group === group);

/** The witness's durable record of a group, as it wrote it (atomically) to its dataDir. */
async function witnessRecord(c: Cluster, group: string): Promise<{ epoch: number; primary: string; secondaryUpToDate: boolean; forcedWithoutWitness?: boolean; operatorHold?: boolean } | undefined> {
  const text = await fs.readFile(path.join(c.dir, 'data', 'witness', 'witness.json'), 'utf8').catch(() => '{}');
  const records = (JSON.parse(text).records ?? {}) as Record<string, { key: { group: string }; epoch: number; primary: string; secondaryUpToDate: boolean }>;
  return Object.values(records).find((r) => r.key.group === group);
}

async function explain(t: ExecutionContext, c: Cluster): Promise<void> {
  t.log(`beta:\n${await c.logTail('beta')}\nalpha:\n${await c.logTail('alpha')}\nwitness:\n${await c.logTail('witness')}`);
}

test.serial('witness and primary both gone: the secondary does not promote itself; failover --force --yes promotes it with the data-loss bound, the witness back adopts the epoch, the old primary back resyncs as secondary', async (t) => {
  if (!requireTools(t, ['qemu-io', 'stdbuf'])) return;
  const c = await start();
  try {
    await scenario(t, c);
  } catch (e) {
    await explain(t, c);
    throw e;
  } finally {
    await stop(c);
  }
});

async function scenario(t: ExecutionContext, c: Cluster): Promise<void> {
  const stride = 64 * 1024;
  // Writes at alpha, until the witness records beta up-to-date and beta has heard it (it polls
  // every leaseMs / 4): the loss bound a forced failover shows is then none.
  const settled = writeLoad(c.url(1, 'db'), 40, stride, 0);
  await settled.exited;
  await waitFor(async () => (await witnessRecord(c, 'db'))?.secondaryUpToDate === true, 30_000, 'the witness recording beta up-to-date');
  await new Promise((r) => setTimeout(r, leaseMs));
  process.kill(c.up.pidOf('witness'), 'SIGKILL');
  // Without the witness alpha cannot record beta outdated: every write it acknowledges now is on beta.
  const load = writeLoad(c.url(1, 'db'), 160, stride, 40);
  await waitFor(async () => load.done.size >= 10, 60_000, '10 writes completed at alpha without the witness');
  process.kill(c.up.pidOf('agent alpha'), 'SIGKILL');
  const killedAt = performance.now();
  const completed = [...settled.done.keys(), ...[...load.done].filter(([, at]) => at < killedAt).map(([i]) => i)];
  await load.stop();
  t.is(settled.done.size, 40, 'the first writes at alpha did not all complete');

  // No self-promotion: for several lease periods every write through beta's portal fails.
  let refusedWrites = 0;
  while (performance.now() - killedAt < 4 * leaseMs) {
    const w = await qemuIo(c.url(2, 'db'), ['write -P 0xdd 14M 4k'], 20_000);
    t.false(w.ok, `beta acknowledged a write ${Math.round(performance.now() - killedAt)} ms after witness and primary died, before any force:\n${w.out}`);
    if (w.ok) return;
    refusedWrites++;
  }
  const before = await status(c);
  t.like(row(before.rows, 'beta', 'db'), { role: 'secondary', epoch: 1, primary: 'alpha', gate: 'closed', forcedWithoutWitness: false });

  // A script without --yes is refused: nobody can answer the question. Nothing changes.
  const unconfirmed = await run(process.execPath, [metroctlBin, 'failover', '-f', c.file, '--group', 'db', '--force'], { timeoutMs: 60_000 });
  t.is(unconfirmed.code, 1, unconfirmed.stdout + unconfirmed.stderr);
  t.regex(unconfirmed.stdout, /Worst-case data loss:\n {2}db \(alpha -> beta\): /);
  t.regex(unconfirmed.stderr, /stdin is not a terminal.*pass --yes.*nothing changed/);
  t.like(row((await status(c)).rows, 'beta', 'db'), { role: 'secondary', epoch: 1 });

  const t0 = performance.now();
  const forced = await run(process.execPath, [metroctlBin, 'failover', '-f', c.file, '--group', 'db', '--force', '--yes'], { timeoutMs: 60_000 });
  const commandMs = performance.now() - t0;
  const firstWriteMs = await firstWrite(c.url(2, 'db'), 'write -P 0xee 15M 4k', t0, 30_000);
  t.log(`metroctl failover --force --yes:\n${forced.stdout.trimEnd()}`);
  t.log(`${refusedWrites} writes at beta refused over ${4 * leaseMs} ms without a force; metroctl failover --force took ${Math.round(commandMs)} ms; first write through beta ${Math.round(firstWriteMs)} ms after the command started (leaseMs ${leaseMs}); ${completed.length} writes completed before the kill`);
  t.is(forced.code, 0, forced.stdout + forced.stderr);
  const out = forced.stdout;
  // The bound first, then the outcome, which repeats it and says the witness was not consulted.
  t.regex(out, /FORCED FAILOVER: you declare the primary site lost\. Worst-case data loss:\n {2}db \(alpha -> beta\): none known: the witness recorded beta up-to-date/);
  t.regex(out, /the witness is unreachable from beta/);
  t.regex(out, /failover of db: beta is now the primary of db in epoch 4, forced without the witness \(unreachable, not consulted\)/);
  t.regex(out, /\n {2}data-loss bound: none known: the witness recorded beta up-to-date/);
  t.regex(out, /the witness was not consulted \(unreachable\); it adopts epoch 4 when it is back/);
  t.true(out.indexOf('Worst-case data loss') < out.indexOf('failover of db:'), 'the bound is shown before the outcome');
  t.true(firstWriteMs < leaseMs + 10_000, `the first write came ${Math.round(firstWriteMs)} ms after the command`);

  // Sync mode: every write qemu-io saw complete before the kill reads back at the new primary.
  const reads = await qemuIo(c.url(2, 'db'), completed.map((i) => `read -P ${pattern(i)} ${i * stride} 4k`));
  t.true(reads.ok, `completed writes missing at beta:\n${reads.out.split('\n').filter((l) => /fail/i.test(l)).slice(0, 10).join('\n')}`);
  t.like(row((await status(c)).rows, 'beta', 'db'), { role: 'primary', epoch: 4, primary: 'beta', gate: 'local', forcedWithoutWitness: true });

  // The witness back (same dataDir): it adopts epoch 4 rather than fight it, and beta serves on leases again.
  await startDaemon(c, 'metro-witness.js', []);
  await waitFor(async () => {
    const b = row((await status(c)).rows, 'beta', 'db');
    return !!b && b.witnessReachable && !b.forcedWithoutWitness;
  }, 30_000, 'beta told that the witness adopted epoch 4');
  t.like(await witnessRecord(c, 'db'), { epoch: 4, primary: 'beta', forcedWithoutWitness: true, operatorHold: false });
  t.like(row((await status(c)).rows, 'beta', 'db'), { role: 'primary', epoch: 4, primary: 'beta' });
  t.true((await qemuIo(c.url(2, 'db'), ['write -P 0xef 13M 4k'])).ok, 'beta stopped serving once the witness was back');

  // The old primary back: it steps down to secondary in epoch 4 and resyncs from beta.
  await startDaemon(c, 'metro-agent.cjs', ['--site', 'alpha']);
  await waitFor(async () => row((await status(c)).rows, 'alpha', 'db')?.role === 'secondary' && row((await status(c)).rows, 'alpha', 'db')?.epoch === 4, 60_000, 'alpha secondary in epoch 4');
  const st = await status(c);
  t.like(row(st.rows, 'alpha', 'db'), { role: 'secondary', epoch: 4, primary: 'beta' });
  const saved = (st.json.sites.find((s: { name: string }) => s.name === 'alpha')?.divergent ?? []) as Array<{ group: string; file: string; regions: number }>;
  t.log(`alpha kept ${saved.length} divergent file(s) aside: ${saved.map((d) => `${d.file} (${d.regions} regions)`).join(', ') || 'none (every write it took had reached beta)'}`);
  await waitFor(async () => {
    const [a, b] = await Promise.all(['alpha', 'beta'].map((s) => fs.readFile(path.join(c.dir, 'data', s, 'volumes', 'db', 'data.vol'))));
    return a.equals(b);
  }, 60_000, 'alpha resynced: identical copies at both sites');
  t.true((await qemuIo(c.url(1, 'db'), ['read -P 0xef 13M 4k', 'read -P 0xee 15M 4k'])).ok, 'reads through alpha (forwarded to beta) miss writes beta took');
}
