// A drill whose precheck finds the secondary outdated (the mirror link cut, a write acknowledged by
// the primary alone) changes nothing and says why.
import test from 'ava';
import { startCluster } from './harness/cluster.ts';
import { drillFailoverSettings, metroctl, primaryOf, serving, weeklyDbDrill } from './harness/drills.ts';
import { startTcpProxy, type TcpProxy } from './harness/tcp-proxy.ts';
import { requireTools, run } from './harness/tools.ts';
import type { DrillReport } from '../common/drills/report.ts';

let proxy: TcpProxy | undefined;
test.after.always(async () => { await proxy?.close(); });

test('a drill whose precheck finds the secondary outdated changes nothing and says why', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const proxyPort = 17401;
  // beta dials alpha's agent (the mirror) through a proxy on host(3) that the test cuts.
  const c = await startCluster({
    groups: `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 16MiB } ]`,
    extra: `${drillFailoverSettings}\n${weeklyDbDrill}`,
    routes: (host) => ({ beta: { peer: { address: host(3), port: proxyPort } } }),
    beforeUp: async ({ host }) => { proxy = await startTcpProxy({ listen: { address: host(3), port: proxyPort }, target: { address: host(1), port: 7401 } }); },
    restart: false,
    settle: false,
  });
  try {
    await serving(c.file, 'db', 'alpha');
    proxy!.cut();
    // A write while the link is cut: alpha records beta outdated (at the witness first) and goes on.
    const url = `iscsi://${c.portal(1)}/${c.iqn('db')}/0`;
    const wr = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 7 0 4k', url], { timeoutMs: 120_000 });
    t.is(wr.code, 0, wr.stdout + wr.stderr);
    const before = await primaryOf(c.file, 'db');

    const r = await metroctl(['drill', 'run', 'weekly-db', '-f', c.file, '-o', 'json']);
    t.is(r.code, 1, r.stdout + r.stderr);
    const rep = JSON.parse(r.stdout) as DrillReport;
    t.is(rep.outcome, 'aborted');
    t.regex(rep.reason ?? '', /precheck: .*(the secondary beta of db is outdated|reports its secondary beta of db outdated)/);
    t.deepEqual(rep.phases.map((p) => p.name), ['precheck']);
    t.deepEqual(await primaryOf(c.file, 'db'), before, 'db stays at alpha in the same epoch');
  } finally {
    await c.stop();
  }
});
