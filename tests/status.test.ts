// `metroctl status` against real daemons, as an admin reads it: `-o json` field by field for a
// healthy cluster (and the ALUA states it reports checked against what a host at each portal gets
// from REPORT TARGET PORT GROUPS), a dead witness, and a degraded metro link (delayed, then cut,
// through the harness TCP proxy); `--watch` on a pipe; `--help` with examples.
import test, { type ExecutionContext } from 'ava';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { makeTopology, metroctlBin, repoRoot, startUp, stopUp, type ClusterSpec, type UpProcess } from './harness/cluster.ts';
import { startTcpProxy, type TcpProxy } from './harness/tcp-proxy.ts';
import { TestSession } from './harness/initiator.ts';
import { qemuIoFailed, requireTools, run, type RunResult } from './harness/tools.ts';
import type { StatusReport } from '../cli/status-command.ts';
import { VERSION } from '../common/version.ts';
import { removeClusterDir } from './harness/secrets.ts';

interface Cluster {
  dir: string;
  file: string;
  name: string;
  host: (n: 1 | 2 | 3) => string;
  up: UpProcess;
  url(site: 1 | 2, group: string, lun?: number): string;
}

const running = new Set<Cluster>();
const proxies: TcpProxy[] = [];
async function stop(c: Cluster): Promise<void> {
  running.delete(c);
  await stopUp(c.up);
  await removeClusterDir(c.dir);
}
test.after.always(async () => {
  await Promise.all([...running].map(stop));
  await Promise.all(proxies.map((p) => p.close()));
});

const groups = `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 8MiB }, { name: log, size: 4MiB } ]
  - name: vm
    preferredSite: beta
    volumes: [ { name: images, size: 8MiB } ]`;
const drills = `drills:\n  - { name: weekly-db, group: db, schedule: "0 3 * * 0", failback: true }`;

/** A cluster whose daemons stay down when they die (the test decides what runs). */
async function start(spec: ClusterSpec, beforeUp?: (host: (n: 1 | 2 | 3) => string) => Promise<void>): Promise<Cluster> {
  const { dir, file, host, name } = await makeTopology({ groups, ...spec });
  await beforeUp?.(host);
  const up = startUp(file, ['--no-restart']);
  const c: Cluster = { dir, file, name, host, up, url: (site, group, lun = 0) => `iscsi://${host(site)}:3260/iqn.2026-11.io.metrocluster:${name}.${group}/${lun}` };
  running.add(c);
  await up.waitFor(/^ready$/m, 150_000);
  return c;
}

/** Beta reaches alpha's agent (mirror, forwarding, peer link of the groups alpha is primary of) through a proxy on host(3). */
async function proxied(extra: string): Promise<{ c: Cluster; proxy: TcpProxy }> {
  let proxy: TcpProxy | undefined;
  const c = await start({
    groups: `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 8MiB } ]`,
    extra,
    routes: (host) => ({ beta: { peer: { address: host(3), port: 17401 } } }),
  }, async (host) => {
    proxy = await startTcpProxy({ listen: { address: host(3), port: 17401 }, target: { address: host(1), port: 7401 } });
    proxies.push(proxy);
  });
  return { c, proxy: proxy! };
}

async function status(c: Cluster, args: string[] = ['-o', 'json']): Promise<RunResult & { report: StatusReport }> {
  // Generous: on a loaded machine starting metroctl alone can take many seconds.
  const r = await run(process.execPath, [metroctlBin, 'status', '-f', c.file, ...args], { timeoutMs: 90_000 });
  let report: StatusReport;
  try {
    report = JSON.parse(r.stdout) as StatusReport;
  } catch {
    throw new Error(`metroctl status -o json printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  return { ...r, report };
}

/** Polls status until ok(report) or the deadline; the last answer either way. */
async function waitReport(c: Cluster, ok: (r: StatusReport) => boolean, deadlineMs: number): Promise<{ ok: boolean; r: RunResult & { report: StatusReport } }> {
  const until = performance.now() + deadlineMs;
  for (;;) {
    const r = await status(c);
    if (ok(r.report)) return { ok: true, r };
    if (performance.now() > until) return { ok: false, r };
    await new Promise((res) => setTimeout(res, 300));
  }
}

const show = (r: StatusReport): string => JSON.stringify({ summary: r.summary, alarms: r.alarms, groups: r.groups }, null, 2);
const alarmKeys = (r: StatusReport): Array<[string, string, string | null, string | null]> => r.alarms.map((a) => [a.severity, a.code, a.site, a.group]);

async function qemuIo(url: string, commands: string[]): Promise<{ ok: boolean; out: string }> {
  const r = await run('qemu-io', ['-f', 'raw', ...commands.flatMap((x) => ['-c', x]), url], { timeoutMs: 120_000 });
  const out = r.stdout + r.stderr;
  return { ok: r.code === 0 && !qemuIoFailed(out), out };
}

/** Every site's port group as the primary's and the secondary's portal should report it. */
function expectedAlua(primary: string, secondary: string): Record<string, Record<string, string>> {
  // In topology order, as the report lists them (the wait compares JSON text).
  const states = Object.fromEntries(['alpha', 'beta'].map((s) => [s, s === primary ? 'active-optimized' : s === secondary ? 'active-non-optimized' : '?']));
  return { alpha: states, beta: states };
}

const protectedAndSettled = (r: StatusReport): boolean =>
  r.protected && r.groups.every((g) => g.upToDate === true && g.serving && g.secondary !== null
    && JSON.stringify(g.alua) === JSON.stringify(expectedAlua(g.primary!, g.secondary))
    && g.paths[g.secondary]?.link === 'attached');

const aluaName: Record<number, string> = { 0x0: 'active-optimized', 0x1: 'active-non-optimized', 0x2: 'standby', 0x3: 'unavailable', 0xf: 'transitioning' };

/** What a host logged in at `site`'s portal reads with REPORT TARGET PORT GROUPS: port group id -> state. */
async function hostSeesAlua(c: Cluster, site: 1 | 2, group: string): Promise<Record<number, string>> {
  const s = await TestSession.open({ host: c.host(site), port: 3260, initiatorName: `iqn.2026-11.org.example:status-${site}`, targetName: `iqn.2026-11.io.metrocluster:${c.name}.${group}` });
  try {
    const rtpg = Buffer.alloc(16);
    Buffer.from([0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]).copy(rtpg);
    let r = await s.command(0, rtpg, { readLength: 256 });
    // Unit attentions first (power on; ALUA state changes while the cluster settled).
    for (let i = 0; i < 6 && r.status === 2 && (r.sense[2] & 0x0f) === 6; i++) r = await s.command(0, rtpg, { readLength: 256 });
    if (r.status !== 0) throw new Error(`REPORT TARGET PORT GROUPS at site ${site}: status ${r.status}`);
    const states: Record<number, string> = {};
    // SPC-4 6.36: a 4-byte header, then per port group 8 bytes + 4 per target port (one each here).
    for (let off = 4; off + 8 <= 4 + r.data.readUInt32BE(0); off += 8 + 4 * r.data[off + 7]) {
      states[r.data.readUInt16BE(off + 2)] = aluaName[r.data[off] & 0x0f] ?? `code ${r.data[off] & 0x0f}`;
    }
    return states;
  } finally {
    s.destroy();
  }
}

let healthy: Cluster | undefined;

test.serial('healthy cluster: status -o json field by field, protected with no alarm; the ALUA states are what hosts read at each portal', async (t) => {
  const c = healthy = await start({ extra: `replication: { ack: sync }\n${drills}` });
  const ready = await waitReport(c, protectedAndSettled, 120_000);
  t.true(ready.ok, `never protected and settled:\n${show(ready.r.report)}`);
  const { report: r, code } = ready.r;
  t.is(code, 0);

  t.is(r.cluster, c.name);
  t.true(Math.abs(Date.parse(r.generatedAt) - Date.now()) < 120_000, r.generatedAt);
  t.true(r.protected);
  t.deepEqual(r.alarms, []);
  t.is(r.summary, 'protected: 2 groups mirrored and up-to-date (db alpha->beta, vm beta->alpha), witness reachable, automatic failover available');
  t.like(r.witness, { up: true, pid: c.up.pidOf('witness'), address: `${c.host(3)}:7400`, fireZone: 'building-c', version: VERSION });
  t.true(r.witness.uptimeMs! > 0);
  t.deepEqual(r.sites.map((s) => [s.name, s.up, s.pid, s.fireZone, s.address, s.portal?.address, typeof s.uptimeMs, s.statusReason]), [
    ['alpha', true, c.up.pidOf('agent alpha'), 'building-a', `${c.host(1)}:7401`, `${c.host(1)}:3260`, 'number', undefined],
    ['beta', true, c.up.pidOf('agent beta'), 'building-b', `${c.host(2)}:7402`, `${c.host(2)}:3260`, 'number', undefined],
  ]);
  t.deepEqual(r.automaticFailover, { available: true });
  t.true(r.drillsKnown);
  t.true(typeof r.link.rttMs === 'number' && r.link.rttMs >= 0, `link RTT ${r.link.rttMs}`);

  for (const [name, primary, secondary] of [['db', 'alpha', 'beta'], ['vm', 'beta', 'alpha']] as const) {
    const g = r.groups.find((x) => x.name === name)!;
    t.like(g, {
      name, primary, secondary, preferredSite: primary, epoch: 1, policy: 'sync', ackMode: 'sync', attached: true, upToDate: true,
      secondaryState: 'up-to-date', outdated: null, throttled: false, lagBytes: 0, serving: true, gate: 'mirrored', maxLagMs: 2000, maxDataLossMs: 0,
    }, name);
    t.true(typeof g.rttMs === 'number' && g.rttMs >= 0 && typeof g.lagMs === 'number', `${name}: RTT ${g.rttMs}, lag ${g.lagMs}`);
    t.like(g.resync, { done: true }, `${name}: the initial resync is over`);
    t.deepEqual(g.alua, expectedAlua(primary, secondary), `${name}: ALUA as each portal reports it`);
    t.deepEqual(g.paths, {
      [primary]: { primary, fenced: false, link: 'none', forwardingSites: [secondary] },
      [secondary]: { primary, fenced: false, link: 'attached', forwardingSites: [] },
    }, `${name}: paths`);
    // The fields that existed before, unchanged: each site's own view of its groups.
    for (const s of r.sites) {
      const own = s.groups.find((x) => x.name === name)!;
      t.like(own, { role: s.name === primary ? 'primary' : 'secondary', epoch: '1', arbitration: { primary, witness_reachable: true } }, `${name} at ${s.name}`);
    }
  }
  const [dbDrill, ...more] = r.groups.find((x) => x.name === 'db')!.drills;
  t.deepEqual(more, []);
  t.like(dbDrill, { name: 'weekly-db', schedule: '0 3 * * 0', failback: true, historyKnown: true, running: false, overdue: false, overdueSince: null, last: null, lastAttempt: null });
  t.true(Date.parse(dbDrill.nextRun!) > Date.now(), `next run ${dbDrill.nextRun}`);
  t.deepEqual(r.groups.find((x) => x.name === 'vm')!.drills, []);

  // A host at each portal reads the same states the status shows for that portal (port group n = n-th site).
  for (const [site, n] of [['alpha', 1], ['beta', 2]] as const) {
    const seen = await hostSeesAlua(c, n, 'db');
    t.deepEqual(seen, { 1: r.groups[0].alua[site].alpha, 2: r.groups[0].alua[site].beta }, `a host at ${site}'s portal`);
  }

  // The text screen, piped: the verdict in its first line, no alarm section, no colour.
  const text = await run(process.execPath, [metroctlBin, 'status', '-f', c.file], { timeoutMs: 90_000 });
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout.split('\n')[0], /^protected: 2 groups mirrored and up-to-date .*\[cluster /);
  t.false(text.stdout.includes('ALARMS'));
  t.false(text.stdout.includes('\x1b'), 'no escape codes on a pipe');
  t.regex(text.stdout, /│ db\s+│ alpha\s+│ beta\s+│ 1\s+│ sync \(sync\)\s+│ [\d.]+ ms\s+│ 0 B \/ \d+ ms\s+│ yes\s+│/);
  t.regex(text.stdout, /weekly-db: never run/);
});

test.serial('a drill that ran: its result, age and RTO in status, not overdue, no alarm', async (t) => {
  const c = healthy;
  if (!c) return t.fail('needs the healthy cluster of the test before');
  const d = await run(process.execPath, [metroctlBin, 'drill', 'run', 'weekly-db', '-f', c.file, '-o', 'json'], { timeoutMs: 600_000 });
  const report = JSON.parse(d.stdout || '{}') as { id: string; outcome: string; startedAt: string; endedAt: string; rtoMs: number | null; reason: string | null };
  t.is(report.outcome, 'passed', `${d.stdout}\n${d.stderr}`);
  // The drill failed back: wait until db is home and settled again.
  const after = await waitReport(c, (r) => protectedAndSettled(r) && r.groups[0].drills[0].last?.id === report.id, 120_000);
  t.true(after.ok, `not protected with the drill recorded:\n${show(after.r.report)}`);
  const r = after.r.report;
  const drill = r.groups[0].drills[0];
  t.like(drill, { name: 'weekly-db', historyKnown: true, running: false, overdue: false, overdueSince: null });
  t.like(drill.last, { id: report.id, outcome: 'passed', startedAt: report.startedAt, endedAt: report.endedAt, reason: null, rtoMs: report.rtoMs === null ? null : Math.round(report.rtoMs) });
  t.true(drill.last!.ageMs >= 0 && drill.last!.ageMs < Date.now() - Date.parse(report.endedAt) + 5000, `age ${drill.last!.ageMs} ms`);
  t.deepEqual(drill.lastAttempt, { outcome: 'passed', startedAt: report.startedAt, reason: null });
  t.deepEqual(r.alarms, []);
  t.like(r.groups[0], { primary: 'alpha', epoch: 3 }, 'switched over and back: two new epochs');
  const text = await run(process.execPath, [metroctlBin, 'status', '-f', c.file], { timeoutMs: 90_000 });
  t.regex(text.stdout, /weekly-db: passed \d+ s ago(, RTO \d+ ms)?/);
});

test.serial('--watch on a pipe: a new report each interval under a separator, plain text; JSON one report per line; SIGINT exits 0', async (t) => {
  const c = healthy;
  if (!c) return t.fail('needs the healthy cluster of the test before');
  for (const json of [false, true]) {
    const child = spawn(process.execPath, [metroctlBin, 'status', '-f', c.file, '--watch', '1', ...(json ? ['-o', 'json'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (code, signal) => resolve([code, signal])));
    const reports = (): number => json ? out.split('\n').filter((l) => l.startsWith('{')).length : (out.match(/^=== metroctl status: every 1 s/gm) ?? []).length;
    const until = performance.now() + 90_000;
    while (reports() < 2 && performance.now() < until && child.exitCode === null) await new Promise((res) => setTimeout(res, 200));
    const startedAt = performance.now();
    child.kill('SIGINT');
    const [code, signal] = await exited;
    t.true(performance.now() - startedAt < 10_000, 'stops promptly');
    t.deepEqual([code, signal], [0, null], `exit after SIGINT\n${out.slice(-2000)}`);
    t.true(reports() >= 2, `${reports()} reports:\n${out.slice(-3000)}`);
    t.false(out.includes('\x1b'), 'no escape codes on a pipe');
    if (json) {
      const lines = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as StatusReport);
      t.true(lines.every((r) => r.cluster === c.name && r.protected && Array.isArray(r.alarms)), out.slice(0, 2000));
      t.true(Date.parse(lines[1].generatedAt) > Date.parse(lines[0].generatedAt), 'a fresh report each time');
    } else {
      const frames = out.split(/^=== metroctl status: every 1 s, Ctrl-C stops \(refresh \d+, [^)]+\) ===$/m).slice(1);
      t.true(frames.length >= 2);
      t.true(frames.every((f) => /^\nprotected: 2 groups/.test(f) || f.trim() === ''), out.slice(0, 3000));
      t.deepEqual([...out.matchAll(/\(refresh (\d+),/g)].map((m) => Number(m[1])).slice(0, 2), [1, 2]);
    }
  }
});

test.serial('--watch on a terminal: redraws in place (cursor home, lines cleared), in colour unless NO_COLOR is set; SIGINT exits 0 and restores the cursor', async (t) => {
  const c = healthy;
  if (!c) return t.fail('needs the healthy cluster of the tests before');
  if (!requireTools(t, ['script', 'timeout'])) return;
  for (const noColor of [false, true]) {
    // script(1) gives metroctl a pseudo-terminal; timeout sends the Ctrl-C (SIGINT) and passes its exit
    // status on. 15 s: at least two refreshes even when starting metroctl takes seconds on a loaded machine.
    const cmd = `timeout --preserve-status -s INT 15 ${process.execPath} ${metroctlBin} status -f ${c.file} --watch 1`;
    const env = { ...process.env, TERM: 'xterm', ...(noColor ? { NO_COLOR: '1' } : {}) };
    if (!noColor) delete env.NO_COLOR;
    const r = await run('script', ['-qefc', cmd, '/dev/null'], { timeoutMs: 90_000, env });
    const what = noColor ? 'NO_COLOR' : 'colour';
    t.is(r.code, 0, `${what}: exit after SIGINT\n${r.stdout.slice(-2000)}${r.stderr}`);
    t.true(r.stdout.includes('\x1b[?25l\x1b[2J'), `${what}: hides the cursor and clears the screen once`);
    const frames = r.stdout.split('\x1b[H').length - 1;
    t.true(frames >= 2, `${what}: ${frames} redraws from the cursor home`);
    t.false(/\r?\n=== metroctl status/.test(r.stdout), `${what}: no separator lines on a terminal`);
    t.regex(r.stdout, /\x1b\[K\r?\n/, `${what}: each line cleared to its end`);
    t.true(r.stdout.includes('\x1b[?25h'), `${what}: the cursor is shown again`);
    const colours = r.stdout.match(/\x1b\[3[123]m/g) ?? [];
    if (noColor) t.deepEqual(colours, [], 'NO_COLOR: no colour');
    else t.true(r.stdout.includes('\x1b[32mprotected: 2 groups'), 'colour: the verdict in green');
  }
  await stop(c);
});

test.serial('dead witness: witness down, automatic failover unavailable, one critical alarm first on the screen; I/O goes on at both portals', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const c = await start({ extra: `replication: { ack: sync }\nfailover: { leaseMs: 2000, maxDataLossMs: 0 }\n${drills}` });
  const ready = await waitReport(c, protectedAndSettled, 120_000);
  t.true(ready.ok, `never protected:\n${show(ready.r.report)}`);
  process.kill(c.up.pidOf('witness'), 'SIGKILL');
  await c.up.waitFor(/witness exited .*left down/, 30_000);

  const dead = await waitReport(c, (r) => !r.witness.up && r.sites.every((s) => s.groups.every((g) => g.arbitration?.witness_reachable === false)), 60_000);
  t.true(dead.ok, `the sites never noticed:\n${show(dead.r.report)}`);
  const { report: r, code } = dead.r;
  t.is(code, 1, 'a daemon is down');
  t.deepEqual(r.witness, { address: `${c.host(3)}:7400`, fireZone: 'building-c', up: false, reason: 'unreachable' });
  t.deepEqual(r.automaticFailover, { available: false, reason: 'the witness is unreachable from metroctl' });
  t.false(r.protected);
  t.is(r.summary, 'NOT PROTECTED: 1 critical alarm');
  t.deepEqual(alarmKeys(r), [['critical', 'WITNESS_UNREACHABLE', null, null]]);
  t.regex(r.alarms[0].message, /^the witness at \S+:7400 \(building-c\) is unreachable from metroctl \(unreachable\): automatic failover is unavailable; I\/O goes on while the sites reach each other$/);
  t.false(r.drillsKnown);
  t.like(r.groups[0].drills[0], { name: 'weekly-db', historyKnown: false, last: null, overdue: null });
  // Nothing else changed: same primaries and epochs, still mirrored and up-to-date.
  t.deepEqual(r.groups.map((g) => [g.name, g.primary, g.epoch, g.serving, g.upToDate, g.attached]), [['db', 'alpha', 1, true, true, true], ['vm', 'beta', 1, true, true, true]]);
  t.true(r.sites.every((s) => s.up));

  for (const site of [1, 2] as const) {
    const io = await qemuIo(c.url(site, 'db'), [`write -P 0x4${site} ${site}M 64k`, `read -P 0x4${site} ${site}M 64k`]);
    t.true(io.ok, `I/O through site ${site}'s portal without the witness:\n${io.out}`);
  }

  const text = await run(process.execPath, [metroctlBin, 'status', '-f', c.file], { timeoutMs: 90_000 });
  t.is(text.code, 1);
  const lines = text.stdout.split('\n');
  t.regex(lines[0], /^NOT PROTECTED: 1 critical alarm/);
  t.is(lines[1], 'ALARMS (1)');
  t.regex(lines[2], /^ {2}CRITICAL WITNESS_UNREACHABLE +the witness at /);
  t.regex(lines[3], /^!!! AUTOMATIC FAILOVER UNAVAILABLE: the witness is unreachable from metroctl\./);
  t.regex(text.stdout, /│ witness\s+│ building-c\s+│ \S+:7400\s+│ DOWN \(unreachable\)/);
  await stop(c);
});

/** The report seen while `pending` runs, polling until ok(report); the writes' outcome. */
async function whileWriting(t: ExecutionContext, c: Cluster, ok: (r: StatusReport) => boolean, deadlineMs: number): Promise<{ seen?: StatusReport; last: StatusReport; writesOk: boolean }> {
  let writing = true;
  let writesOk = true;
  const writer = (async () => {
    for (let i = 0; writing; i++) {
      const io = await qemuIo(c.url(1, 'db'), Array.from({ length: 48 }, (_, k) => `write -P ${0x10 + ((i + k) % 64)} ${(k % 96) * 65536} 64k`));
      if (!io.ok) { writesOk = false; t.log(io.out.slice(0, 2000)); }
    }
  })();
  try {
    const w = await waitReport(c, ok, deadlineMs);
    return { seen: w.ok ? w.r.report : undefined, last: w.r.report, writesOk };
  } finally {
    writing = false;
    await writer;
  }
}

test.serial('degraded link: 800 ms each way turns the adaptive group async, outdated, lagging past its bound, with those alarms; healed, protected again', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const { c, proxy } = await proxied('replication: { ack: adaptive, syncMaxRttMs: 1000, maxLagMs: 1000 }');
  const ready = await waitReport(c, (r) => protectedAndSettled(r) && r.groups[0].ackMode === 'sync', 180_000);
  t.true(ready.ok, `never protected in sync:\n${show(ready.r.report)}`);

  proxy.delayMs = 800;
  // Async, the lag past its bound, and the secondary outdated: 'outdating' until the witness holds it
  // outdated (a notice round trip and a metadata write, slower on a busy machine).
  const slow = await whileWriting(t, c, (r) => r.groups[0].ackMode === 'async' && r.groups[0].secondaryState === 'outdated' && r.alarms.some((a) => a.code === 'LAG_ABOVE_BOUND'), 120_000);
  t.truthy(slow.seen, `never async with the lag past its bound:\n${show(slow.last)}`);
  t.true(slow.writesOk, 'host writes go on over the slow link');
  if (!slow.seen) return;
  const r = slow.seen;
  const g = r.groups[0];
  t.like(g, { name: 'db', primary: 'alpha', secondary: 'beta', policy: 'adaptive', ackMode: 'async', attached: true, upToDate: false, secondaryState: 'outdated', serving: true, maxLagMs: 1000 });
  t.true((g.modeSwitches ?? 0) >= 1, `${g.modeSwitches} mode switches`);
  t.regex(g.outdated?.reason ?? '', /async/);
  t.true((g.rttMs ?? 0) > 1000, `RTT ${g.rttMs} ms over a link delayed 800 ms each way`);
  t.true((g.lagMs ?? 0) > 1000 && (g.lagBytes ?? 0) > 0, `lag ${g.lagMs} ms, ${g.lagBytes} bytes`);
  t.false(r.protected);
  t.regex(r.summary, /^NOT PROTECTED: 1 critical alarm; [12] warnings?$/);
  t.deepEqual(alarmKeys(r).filter(([, code]) => code !== 'WRITES_THROTTLED'), [['critical', 'SECONDARY_OUTDATED', 'beta', 'db'], ['warning', 'LAG_ABOVE_BOUND', null, 'db']]);
  t.is(r.alarms.some((a) => a.code === 'WRITES_THROTTLED'), g.throttled, 'throttled writes come with their alarm');
  t.regex(r.alarms.find((a) => a.code === 'LAG_ABOVE_BOUND')!.message, /^the mirror of group db lags \d+ ms \(\d+ bytes\) behind, above its maxLagMs 1000$/);
  // The primary's portal tells hosts the outdated secondary's port group is unavailable: once the
  // witness holds it outdated (a notice and a metadata write, slower on a busy machine), so polled.
  const outdatedAt = performance.now();
  const unavailable = await waitReport(c, (x) => x.groups[0].alua.alpha?.beta === 'unavailable', 15_000);
  t.deepEqual(unavailable.r.report.groups[0].alua.alpha, { alpha: 'active-optimized', beta: 'unavailable' });
  t.log(`the primary's portal reported beta unavailable ${Math.round(performance.now() - outdatedAt)} ms after status first showed it outdated (or less)`);

  proxy.delayMs = 0;
  const healed = await waitReport(c, (x) => x.protected && x.groups[0].ackMode === 'sync' && x.groups[0].upToDate === true, 120_000);
  t.true(healed.ok, `not protected again after healing:\n${show(healed.r.report)}`);
  t.deepEqual(healed.r.report.alarms, []);
  await stop(c);
});

test.serial('link cut: the secondary detaches and is outdated, the alarm says so while the primary serves; a drill then aborts (a warning); restored, it resyncs and the cluster is protected again', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const { c, proxy } = await proxied(`replication: { ack: sync }\n${drills}`);
  const ready = await waitReport(c, protectedAndSettled, 120_000);
  t.true(ready.ok, `never protected:\n${show(ready.r.report)}`);

  proxy.cut();
  const write = await qemuIo(c.url(1, 'db'), ['write -P 0x6c 0 1M', 'flush']);
  t.true(write.ok, `the primary goes on alone after the cut:\n${write.out}`);
  const cut = await waitReport(c, (r) => !r.groups[0].attached && r.groups[0].upToDate === false && r.alarms.some((a) => a.code === 'SECONDARY_DETACHED'), 60_000);
  t.true(cut.ok, `no detached alarm after the cut:\n${show(cut.r.report)}`);
  const r = cut.r.report;
  const g = r.groups[0];
  t.is(cut.r.code, 0, 'every daemon still answers metroctl');
  t.like(g, { primary: 'alpha', secondary: 'beta', attached: false, upToDate: false, secondaryState: 'outdated', serving: true });
  t.truthy(g.outdated?.reason, 'the reason it is outdated');
  t.false(r.protected);
  t.deepEqual(alarmKeys(r), [['critical', 'SECONDARY_DETACHED', 'beta', 'db']]);
  t.is(r.alarms[0].message, 'group db is not mirrored: the secondary beta is not attached to the primary alpha');
  t.deepEqual(g.alua.alpha, { alpha: 'active-optimized', beta: 'unavailable' }, 'the primary\'s portal: the outdated secondary unavailable');
  t.not(g.paths.beta.link, 'attached', 'beta cannot forward to alpha');
  t.true(['transitioning', 'unavailable'].includes(g.alua.beta.beta), `beta's portal reports its own port group ${g.alua.beta.beta}`);
  t.true((await qemuIo(c.url(1, 'db'), ['read -P 0x6c 0 1M'])).ok, 'reads at the primary');

  // A drill now is refused by its precheck (the secondary is not up-to-date): a drill alarm.
  const d = await run(process.execPath, [metroctlBin, 'drill', 'run', 'weekly-db', '-f', c.file], { timeoutMs: 300_000 });
  t.is(d.code, 1, d.stdout + d.stderr);
  const failed = await status(c);
  t.deepEqual(alarmKeys(failed.report), [['critical', 'SECONDARY_DETACHED', 'beta', 'db'], ['warning', 'DRILL_FAILED', null, 'db']]);
  t.regex(failed.report.alarms[1].message, /^the last run of drill weekly-db \(group db, started \S+\) aborted: precheck: /);
  t.like(failed.report.groups[0].drills[0], { last: { outcome: 'aborted' }, lastAttempt: { outcome: 'aborted' } });

  proxy.restore();
  const back = await waitReport(c, (r) => r.groups[0].upToDate === true && r.groups[0].attached && r.groups[0].paths.beta?.link === 'attached'
    && JSON.stringify(r.groups[0].alua) === JSON.stringify(expectedAlua('alpha', 'beta')), 120_000);
  t.true(back.ok, `not mirrored again after the link came back:\n${show(back.r.report)}`);
  t.like(back.r.report.groups[0], { attached: true, upToDate: true, resync: { done: true } });
  // Protected again; the aborted drill stays a warning until a drill passes.
  t.true(back.r.report.protected);
  t.deepEqual(alarmKeys(back.r.report), [['warning', 'DRILL_FAILED', null, 'db']]);
  t.regex(back.r.report.summary, /^protected: 1 group mirrored and up-to-date \(db alpha->beta\), witness reachable, automatic failover available; 1 warning$/);
  await stop(c);
});

test('status --help: what it shows, -o json, --watch, with examples', async (t) => {
  const r = await run(process.execPath, [metroctlBin, 'status', '--help'], { timeoutMs: 60_000 });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /-o, --output <format>\s+text or json/);
  t.regex(r.stdout, /-w, --watch \[seconds\]\s+refresh every N seconds \(default 2\) until Ctrl-C/);
  t.regex(r.stdout, /Examples:\n {2}metroctl status -f cluster\.yaml /);
  t.regex(r.stdout, /metroctl status -f cluster\.yaml --watch\b/);
  t.regex(r.stdout, /metroctl status -f cluster\.yaml -o json\b.*docs\/status-json\.md/);
  const bad = await run(process.execPath, [metroctlBin, 'status', '-f', path.join(repoRoot, 'topology-examples', 'local-demo.yaml'), '-o', 'yaml'], { timeoutMs: 60_000 });
  t.is(bad.code, 2, 'bad usage');
  t.regex(bad.stderr, /-o yaml: expected text or json/);
});
