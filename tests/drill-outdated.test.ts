// A drill whose precheck finds the secondary outdated (the mirror link cut, a write acknowledged by
// the primary alone) changes nothing and says why.
import test from 'ava';
import { makeTopology, startUp, stopUp, metroctlBin } from './harness/cluster.ts';
import { startTcpProxy } from './harness/tcp-proxy.ts';
import { requireTools, run } from './harness/tools.ts';
import { removeClusterDir } from './harness/secrets.ts';

const metroctl = (args: string[], timeoutMs = 300_000) => run(process.execPath, [metroctlBin, ...args], { timeoutMs });
const drills = 'drills:\n  - { name: weekly-db, group: db, schedule: "0 3 * * 0", failback: true }';
const settings = 'replication: { ack: sync }\nfailover: { leaseMs: 2000, maxDataLossMs: 0 }';

interface Report {
  id: string; outcome: string; reason: string | null; from: string; to: string; rtoMs: number | null; failbackRtoMs: number | null;
  rpoMs: number | null; verify: { mismatches: number | null } | null; phases: Array<{ name: string; ok: boolean; detail: string }>;
  probe: { paths: Array<{ site: string; served: number }>; writeRead: string | null } | null; finalPrimary: string | null;
}

async function primaryOf(file: string, group: string): Promise<{ site: string; epoch: number; gate: string } | null> {
  const r = await metroctl(['status', '-f', file, '-o', 'json'], 30_000);
  const json = JSON.parse(r.stdout || '{"sites":[]}') as { sites: Array<{ name: string; groups?: Array<{ name: string; arbitration?: { primary: string; epoch: string; gate: string } }> }> };
  let best: { site: string; epoch: number; gate: string } | null = null;
  for (const s of json.sites) {
    const a = s.groups?.find((g) => g.name === group)?.arbitration;
    if (a && a.primary === s.name && (!best || Number(a.epoch) > best.epoch)) best = { site: s.name, epoch: Number(a.epoch), gate: a.gate };
  }
  return best;
}

async function serving(file: string, group: string, site: string): Promise<void> {
  const until = Date.now() + 90_000;
  for (;;) {
    const p = await primaryOf(file, group);
    if (p?.site === site && p.gate !== 'closed') return;
    if (Date.now() > until) throw new Error(`${group} not served by ${site}: ${JSON.stringify(p)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('a drill whose precheck finds the secondary outdated changes nothing and says why', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const proxyPort = 17401;
  // beta dials alpha's agent (the mirror) through a proxy on host(3) that the test cuts.
  const c = await makeTopology({
    groups: `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 16MiB } ]`,
    extra: `${settings}\n${drills}`,
    routes: (host) => ({ beta: { peer: { address: host(3), port: proxyPort } } }),
  });
  const proxy = await startTcpProxy({ listen: { address: c.host(3), port: proxyPort }, target: { address: c.host(1), port: 7401 } });
  const up = startUp(c.file, ['--no-restart']);
  try {
    await up.waitFor(/^ready$/m, 150_000);
    await serving(c.file, 'db', 'alpha');
    proxy.cut();
    // A write while the link is cut: alpha records beta outdated (at the witness first) and goes on.
    const url = `iscsi://${c.host(1)}:3260/iqn.2026-11.io.metrocluster:${c.name}.db/0`;
    const wr = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 7 0 4k', url], { timeoutMs: 120_000 });
    t.is(wr.code, 0, wr.stdout + wr.stderr);
    const before = await primaryOf(c.file, 'db');

    const r = await metroctl(['drill', 'run', 'weekly-db', '-f', c.file, '-o', 'json']);
    t.is(r.code, 1, r.stdout + r.stderr);
    const rep = JSON.parse(r.stdout) as Report;
    t.is(rep.outcome, 'aborted');
    t.regex(rep.reason ?? '', /precheck: .*(the secondary beta of db is outdated|reports its secondary beta of db outdated)/);
    t.deepEqual(rep.phases.map((p) => p.name), ['precheck']);
    t.deepEqual(await primaryOf(c.file, 'db'), before, 'db stays at alpha in the same epoch');
  } finally {
    await stopUp(up);
    await proxy.close();
    await removeClusterDir(c.dir);
  }
});
