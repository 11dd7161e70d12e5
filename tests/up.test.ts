// `metroctl up` as an admin uses it: every daemon starts as its own process and says where it
// listens, `metroctl status` sees them all, and SIGTERM or Ctrl-C (SIGINT) stops every one.
import test from 'ava';
import { makeTopology, startUp, metroctlBin, type UpProcess } from './harness/cluster.ts';
import { run } from './harness/tools.ts';
import { removeClusterDir } from './harness/secrets.ts';

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

async function waitGone(pids: number[], timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (pids.every((p) => !alive(p))) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`metroctl up starts every daemon, status sees them, ${signal} stops them all`, async (t) => {
    const { dir, file, host } = await makeTopology();
    const re = (n: 1 | 2 | 3): string => host(n).replace(/\./g, '\\.');
    let up: UpProcess | undefined;
    try {
      up = startUp(file);
      await up.waitFor(/^ready$/m, 150_000); // a loaded 2-core machine starts daemons slowly
      const out = up.output();
      t.regex(out, new RegExp(`^witness\\s+pid \\d+\\s+grpc ${re(3)}:7400`, 'm'));
      t.regex(out, new RegExp(`^agent alpha\\s+pid \\d+\\s+iscsi ${re(1)}:3260\\s+grpc ${re(1)}:7401`, 'm'));
      t.regex(out, new RegExp(`^agent beta\\s+pid \\d+\\s+iscsi ${re(2)}:3260\\s+grpc ${re(2)}:7402`, 'm'));
      t.regex(out, new RegExp(`iscsi://${re(2)}:3260/iqn\\.2026-11\\.io\\.metrocluster:test\\.db/1`));
      const pids = ['witness', 'agent alpha', 'agent beta'].map((n) => up!.pidOf(n));

      const status = await run(process.execPath, [metroctlBin, 'status', '-f', file, '-o', 'json'], { timeoutMs: 90_000 });
      t.is(status.code, 0, status.stderr);
      const report = JSON.parse(status.stdout) as { witness: { up: boolean; pid: number }; sites: Array<{ name: string; up: boolean; pid: number; groups: Array<{ name: string; role: string }> }> };
      t.true(report.witness.up);
      t.is(report.witness.pid, pids[0]);
      t.deepEqual(report.sites.map((s) => [s.name, s.up, s.pid]), [['alpha', true, pids[1]], ['beta', true, pids[2]]]);
      const alpha = report.sites[0].groups;
      t.deepEqual(alpha.map((g) => [g.name, g.role]), [['db', 'primary'], ['vm', 'secondary']]);

      const exited = new Promise<number | null>((resolve) => up!.child.once('exit', (code) => resolve(code)));
      up.child.kill(signal);
      t.is(await exited, 0);
      t.true(await waitGone(pids, 15_000), 'every daemon has exited');

      const after = await run(process.execPath, [metroctlBin, 'status', '-f', file, '-o', 'json'], { timeoutMs: 90_000 });
      t.is(after.code, 1, 'status fails when the daemons are down');
      t.false((JSON.parse(after.stdout) as { witness: { up: boolean } }).witness.up);
    } finally {
      if (up && up.child.exitCode === null) up.child.kill('SIGKILL');
      await removeClusterDir(dir);
    }
  });
}
