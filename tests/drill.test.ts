// Drills and the probe initiator against real daemons: the probe serves I/O through the portals
// over TCP, measures the pause a stopped primary causes and leaves the probed block as it was; a
// drill whose precheck fails changes nothing, says why, and is kept in the witness's history that
// `drill list` and `drill report` show.
import test from 'ava';
import { Cron } from 'croner';
import { startCluster, makeTopology, startUp, stopUp, metroctlBin } from './harness/cluster.ts';
import { run } from './harness/tools.ts';
import { IoProbe, probeInitiator } from '../common/probe/io-probe.ts';
import { ProbeSession, cdbs } from '../common/probe/probe-session.ts';
import { removeClusterDir } from './harness/secrets.ts';

const metroctl = (args: string[], timeoutMs = 180_000) => run(process.execPath, [metroctlBin, ...args], { timeoutMs });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readBlock(host: string, iqn: string, initiator: string, lba: number): Promise<Buffer> {
  const s = await ProbeSession.open({ host, port: 3260, initiator, target: iqn, timeoutMs: 10_000 });
  try {
    for (let i = 0; i < 5; i++) {
      const r = await s.command(cdbs.read10(lba, 1), { readBytes: 512 });
      if (r.status === 0) return r.data;
    }
    throw new Error('READ kept failing');
  } finally {
    await s.logout();
  }
}

test('the probe initiator serves I/O over TCP, measures the pause of a stopped primary, and leaves the block unchanged', async (t) => {
  const c = await startCluster();
  const initiator = probeInitiator(c.name);
  const probe = new IoProbe({
    paths: [{ site: 'alpha', host: c.host(1), port: 3260 }, { site: 'beta', host: c.host(2), port: 3260 }],
    target: c.iqn('db'), initiator, lun: 0, commandTimeoutMs: 10_000, now: () => performance.now(),
  });
  try {
    // The last block of LUN 0 (64 MiB): what the probe reads and writes back.
    const lba = 64 * 2048 - 1;
    const before = await readBlock(c.host(1), c.iqn('db'), initiator, lba);
    probe.start();
    t.true(await probe.warm(50, 60_000), JSON.stringify(probe.stats()));
    const through = await probe.writeReadThrough('alpha');
    t.true(through.ok, through.detail);
    t.regex(through.detail, new RegExp(`READ and COMPARE AND WRITE \\(FUA\\) of LBA ${lba} through alpha`));

    const pid = c.up.pidOf('agent alpha');
    const t0 = performance.now();
    process.kill(pid, 'SIGSTOP');
    await sleep(1200);
    process.kill(pid, 'SIGCONT');
    const t1 = performance.now();
    const servedAtThaw = probe.stats().find((x) => x.site === 'alpha')!.served;
    t.true(await probe.warm(20, 60_000), `I/O flows again: ${JSON.stringify(probe.stats())}`);
    const pauseMs = probe.maxPauseMs(t0, t1);
    t.true(pauseMs >= 1100, `pause ${pauseMs} ms covers the 1200 ms stop`);
    t.true(pauseMs < 30_000, `pause ${pauseMs} ms ends once the primary runs again`);
    await probe.stop();
    // The thawed primary serves through its own portal again (beta's path forwards to it throughout).
    const alpha = probe.stats().find((s) => s.site === 'alpha')!;
    t.true(alpha.served > servedAtThaw, `I/Os served through alpha after the thaw: ${alpha.served - servedAtThaw} (${JSON.stringify(probe.stats())})`);
    t.deepEqual(await readBlock(c.host(1), c.iqn('db'), initiator, lba), before, 'the probed block holds what it held before');
  } finally {
    await probe.stop();
    await c.stop();
  }
});

test('a drill whose precheck fails changes nothing, says why, and is in the history; schedules run unattended', async (t) => {
  // metroctl up would restart the agent this test stops.
  const c = await makeTopology({ extra: 'drills:\n  - { name: weekly-db, group: db, schedule: "0 3 * * 0", failback: true }\n  - { name: minutely-vm, group: vm, schedule: "* * * * *", failback: false }' });
  const up = startUp(c.file, ['--no-restart']);
  try {
    await up.waitFor(/^ready$/m, 120_000);
    const beta = up.pidOf('agent beta');
    process.kill(beta, 'SIGKILL');
    await up.waitFor(/agent beta exited .*left down/, 30_000);
    // Beta's group vm fails over to alpha by itself once beta's lease has run out; the drill comes after.
    let statusBefore = await metroctl(['status', '-f', c.file, '-o', 'json']);
    for (const until = Date.now() + 60_000; Date.now() < until; statusBefore = await metroctl(['status', '-f', c.file, '-o', 'json'])) {
      const vm = (JSON.parse(statusBefore.stdout) as { sites: Array<{ groups: Array<{ name: string; role: string }> }> }).sites[0].groups.find((g) => g.name === 'vm');
      if (vm?.role === 'primary') break;
      await new Promise((r) => setTimeout(r, 500));
    }

    // The witness runs the every-minute drill by itself; its precheck refuses (beta is down).
    let scheduled: { outcome: string; trigger: string; reason: string } | undefined;
    const until = Date.now() + 150_000;
    // (A report is listed from the drill's start, as running, until it ends.)
    while ((!scheduled || scheduled.outcome === 'running') && Date.now() < until) {
      await sleep(2000);
      const rep = await metroctl(['drill', 'report', '-f', c.file, '--drill', 'minutely-vm', '-o', 'json']);
      scheduled = rep.code === 0 ? (JSON.parse(rep.stdout) as Array<{ outcome: string; trigger: string; reason: string }>)[0] : undefined;
    }
    t.like(scheduled, { outcome: 'aborted', trigger: 'schedule' });
    t.regex(scheduled?.reason ?? '', /precheck: site beta \(unreachable\) is down/);

    const r = await metroctl(['drill', 'run', 'weekly-db', '-f', c.file]);
    t.is(r.code, 1, r.stdout + r.stderr);
    t.regex(r.stdout, /^# Drill weekly-db: ABORTED$/m);
    t.regex(r.stdout, /\*\*Why:\*\* precheck: site beta \(unreachable\) is down/);
    t.regex(r.stdout, /\| precheck \| \S+ \| \S+ \| FAILED \|/);
    t.notRegex(r.stdout, /^\| switchover \| \d{4}-/m, 'no switchover was attempted');
    t.regex(r.stdout, /^\| switchover \| not started \|$/m);
    const statusAfter = await metroctl(['status', '-f', c.file, '-o', 'json']);
    const alphaGroups = (s: string) => (JSON.parse(s) as { sites: Array<{ name: string; groups: Array<{ name: string; role: string; epoch: string }> }> }).sites[0].groups.map((g) => [g.name, g.role, g.epoch]);
    t.deepEqual(alphaGroups(statusAfter.stdout), alphaGroups(statusBefore.stdout), 'alpha keeps every group in the same epoch');

    const rep = await metroctl(['drill', 'report', '-f', c.file, '--drill', 'weekly-db', '-o', 'json']);
    t.is(rep.code, 0, rep.stderr);
    const reports = JSON.parse(rep.stdout) as Array<{ id: string; drill: string; outcome: string; trigger: string; requestedBy: string; phases: Array<{ name: string; ok: boolean }>; rtoMs: number | null; finalPrimary: string | null }>;
    t.is(reports.length, 1);
    t.like(reports[0], { drill: 'weekly-db', outcome: 'aborted', trigger: 'manual', rtoMs: null, finalPrimary: 'alpha' });
    t.deepEqual(reports[0].phases.map((p) => [p.name, p.ok]), [['precheck', false]]);
    t.regex(reports[0].requestedBy, /@/);
    const one = await metroctl(['drill', 'report', reports[0].id, '-f', c.file]);
    t.regex(one.stdout, new RegExp(`\\| report \\| ${reports[0].id} \\|`));

    const list = await metroctl(['drill', 'list', '-f', c.file, '-o', 'json']);
    t.is(list.code, 0, list.stderr);
    const l = JSON.parse(list.stdout) as { running: string | null; drills: Array<{ name: string; schedule: string; nextRun: string; lastOutcome: string; lastRunId: string; failback: boolean }> };
    t.is(l.running, null);
    t.like(l.drills[0], { name: 'weekly-db', schedule: '0 3 * * 0', failback: true, lastOutcome: 'aborted', lastRunId: reports[0].id });
    t.like(l.drills[1], { name: 'minutely-vm', schedule: '* * * * *', lastOutcome: 'aborted' });
    t.is(l.drills[0].nextRun, new Cron('0 3 * * 0', { paused: true }).nextRun()!.toISOString(), 'the next run of the schedule');

    const missing = await metroctl(['drill', 'run', 'nightly', '-f', c.file]);
    t.is(missing.code, 2);
    t.regex(missing.stderr, /no drill "nightly" in .* \(its drills: weekly-db, minutely-vm\)/);
  } finally {
    await stopUp(up);
    await removeClusterDir(c.dir);
  }
});
