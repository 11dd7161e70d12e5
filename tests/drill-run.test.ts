// A drill end to end on a local cluster, with a client (qemu-io) writing throughout: the witness
// switches the group over, verifies both copies (zero mismatches) and a write+read through the new
// primary, fails back, and reports the I/O pause its probe measured and the RPO it measured (alpha's
// mirror at the handover, the probe block read back at beta); every write the client saw
// acknowledged reads back afterwards. A second drill asked for meanwhile is skipped.
import test from 'ava';
import { startCluster } from './harness/cluster.ts';
import { drillFailoverSettings, metroctl, serving, weeklyDbDrill } from './harness/drills.ts';
import { qemuIoFailed, requireTools, run } from './harness/tools.ts';
import type { DrillReport } from '../common/drills/report.ts';

/**
 * A host writing 4 KiB blocks in batches of qemu-io commands through one portal, moving to the
 * other portal when a batch fails (what multipath does). Records every acknowledged write.
 */
function writer(urls: string[]) {
  const acked = new Map<number, number>();
  let stop = false;
  let failures = 0;
  let n = 0;
  const loop = (async () => {
    let path = 0;
    while (!stop) {
      const cmds: string[] = [];
      const batch: Array<{ offset: number; pattern: number }> = [];
      for (let i = 0; i < 16; i++, n++) {
        const offset = (n % 2048) * 4096;
        const pattern = 1 + (n % 250);
        batch.push({ offset, pattern });
        cmds.push(`write -P ${pattern} ${offset} 4k`);
      }
      const r = await run('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), urls[path]], { timeoutMs: 60_000 });
      for (const m of r.stdout.matchAll(/^wrote 4096\/4096 bytes at offset (\d+)/gm)) {
        const off = Number(m[1]);
        const b = batch.find((x) => x.offset === off)!;
        acked.set(off, b.pattern);
      }
      if (r.code !== 0 || qemuIoFailed(r.stdout + r.stderr)) { failures++; path = 1 - path; }
    }
  })();
  return { acked, stopped: async () => { stop = true; await loop; return { failures, writes: n }; } };
}

test('a drill switches over, verifies, fails back and reports a measured RTO with zero mismatches while a client writes', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const c = await startCluster({ groups: `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 16MiB } ]`, extra: `${drillFailoverSettings}\n${weeklyDbDrill}`, restart: false, settle: false });
  try {
    await serving(c.file, 'db', 'alpha');
    const url = (n: 1 | 2) => `iscsi://${c.portal(n)}/${c.iqn('db')}/0`;
    const w = writer([url(1), url(2)]);
    await new Promise((r) => setTimeout(r, 1500));

    const drill = metroctl(['drill', 'run', 'weekly-db', '-f', c.file, '-o', 'json']);
    // One drill at a time: a second one asked for while it runs is skipped, and says why.
    await new Promise((r) => setTimeout(r, 3000));
    const second = await metroctl(['drill', 'run', 'weekly-db', '-f', c.file, '-o', 'json']);
    const r = await drill;
    const writes = await w.stopped();
    t.is(second.code, 1);
    t.like(JSON.parse(second.stdout), { outcome: 'skipped' });
    t.regex((JSON.parse(second.stdout) as DrillReport).reason ?? '', /drill weekly-db \(weekly-db-\S+\) is running: one drill at a time per cluster/);

    t.is(r.code, 0, r.stdout + r.stderr);
    const rep = JSON.parse(r.stdout) as DrillReport;
    t.is(rep.outcome, 'passed', rep.reason ?? '');
    t.deepEqual(rep.phases.map((p) => [p.name, p.ok]), [['precheck', true], ['switchover', true], ['verify', true], ['failback', true]]);
    t.like(rep, { from: 'alpha', to: 'beta', rpoMs: 0, finalPrimary: 'alpha', verify: { mismatches: 0 } });
    t.true(rep.rtoMs !== null && rep.rtoMs > 0 && rep.rtoMs < 30_000, `RTO ${rep.rtoMs} ms`);
    t.true(rep.failbackRtoMs !== null && rep.failbackRtoMs > 0 && rep.failbackRtoMs < 30_000, `failback pause ${rep.failbackRtoMs} ms`);
    t.regex(rep.probe?.writeRead ?? '', /through beta's portal/);
    // RPO measured, not inferred: alpha's mirror in sync mode with beta up-to-date at its last
    // status as primary, and the probe's last write acknowledged at alpha read back at beta.
    t.like(rep.rpoEvidence, { handover: { mode: 'sync', secondary: 'up-to-date' }, readBack: 'identical', atRisk: false });
    t.regex(rep.rpoBasis, /^measured at alpha's mirror at the handover \(its last status as primary, .*\): sync mode, beta up-to-date, \d+ bytes not yet acknowledged by beta.*; the probe's last write acknowledged at alpha \(through (alpha|beta)'s portal, \d+ ms before that status\) reads back identically at beta$/);
    t.log(`drill: RTO ${rep.rtoMs} ms, failback pause ${rep.failbackRtoMs} ms, RPO ${rep.rpoMs} ms (${JSON.stringify(rep.rpoEvidence)}); client: ${writes.writes} writes, ${writes.failures} failed batches`);

    // Every write the client saw acknowledged reads back from the group, now at alpha again.
    const reads = [...w.acked].map(([off, p]) => `read -P ${p} ${off} 4k`);
    const back = await run('qemu-io', ['-f', 'raw', ...reads.flatMap((x) => ['-c', x]), url(1)], { timeoutMs: 120_000 });
    t.is(back.code, 0, back.stderr);
    t.notRegex(back.stdout, /Pattern verification failed/);
    t.is([...back.stdout.matchAll(/^read 4096\/4096 bytes/gm)].length, w.acked.size, `${w.acked.size} acknowledged blocks read back`);

    const md = await metroctl(['drill', 'report', rep.id, '-f', c.file]);
    t.regex(md.stdout, /^# Drill weekly-db: PASSED$/m);
    t.regex(md.stdout, /\| RTO \(I\/O pause seen by the probe\) \| \d+ ms \|/);
    t.regex(md.stdout, /\| RPO \| 0 ms: measured at alpha's mirror at the handover .* reads back identically at beta \|/);
    const js = await metroctl(['drill', 'report', rep.id, '-f', c.file, '-o', 'json']);
    t.like(JSON.parse(js.stdout), { id: rep.id, rtoMs: rep.rtoMs, rpoMs: 0, rpoEvidence: { readBack: 'identical', atRisk: false } });
    const list = await metroctl(['drill', 'list', '-f', c.file, '-o', 'json']);
    t.like((JSON.parse(list.stdout) as { drills: object[] }).drills[0], { name: 'weekly-db', lastOutcome: 'skipped' });
  } finally {
    await c.stop();
  }
});
