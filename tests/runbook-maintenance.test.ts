// planned-maintenance then failback on a real cluster: every group leaves alpha by switchover and
// alpha is declared safe to power off; failback then waits for the copies to be up-to-date,
// verifies them (zero mismatches) and returns each group to its preferred site.
import test from 'ava';
import { startCluster, metroctlBin } from './harness/cluster.ts';
import { run } from './harness/tools.ts';

const metroctl = (args: string[], timeoutMs = 300_000) => run(process.execPath, [metroctlBin, ...args], { timeoutMs });

async function primaries(file: string): Promise<Record<string, string>> {
  const r = await metroctl(['status', '-f', file, '-o', 'json'], 30_000);
  const json = JSON.parse(r.stdout || '{"sites":[]}') as { sites: Array<{ name: string; groups?: Array<{ name: string; arbitration?: { primary: string; epoch: string; gate: string; secondary: string } }> }> };
  const best: Record<string, { site: string; epoch: number }> = {};
  for (const s of json.sites) {
    for (const g of s.groups ?? []) {
      const a = g.arbitration;
      if (a && a.primary === s.name && a.gate !== 'closed' && (!best[g.name] || Number(a.epoch) > best[g.name].epoch)) best[g.name] = { site: s.name, epoch: Number(a.epoch) };
    }
  }
  return Object.fromEntries(Object.entries(best).map(([g, v]) => [g, v.site]));
}

test('planned-maintenance moves every group off a site; failback resyncs, verifies and brings them home', async (t) => {
  const c = await startCluster({ extra: 'replication: { ack: sync }\nfailover: { leaseMs: 2000, maxDataLossMs: 0 }', restart: false, settle: false });
  try {
    const until = Date.now() + 90_000;
    while (JSON.stringify(await primaries(c.file)) !== JSON.stringify({ db: 'alpha', vm: 'beta' }) && Date.now() < until) await new Promise((r) => setTimeout(r, 300));

    const pm = await metroctl(['runbook', 'run', 'planned-maintenance', '--site', 'alpha', '-f', c.file, '--yes', '--wait-max', '120000']);
    t.is(pm.code, 0, pm.stdout + pm.stderr);
    t.regex(pm.stdout, /\[2\/4\] switch group db over to beta\n\s+check: go - db is primary at alpha in epoch \d+\n\s+action: ok - .*\n\s+verify: ok - beta is primary of db in epoch \d+/);
    t.regex(pm.stdout, /\[3\/4\] switch group vm over to beta\n\s+check: done - beta is already primary of vm/);
    t.regex(pm.stdout, /\[4\/4\] confirm alpha is safe to power off\n\s+check: done - every group is served by beta; alpha can be powered off/);
    t.deepEqual(await primaries(c.file), { db: 'beta', vm: 'beta' });

    const fb = await metroctl(['runbook', 'run', 'failback', '-f', c.file, '--yes', '--wait-max', '120000']);
    t.is(fb.code, 0, fb.stdout + fb.stderr);
    t.regex(fb.stdout, /\[2\/6\] verify group db's copies\n\s+check: go - copies to compare\n\s+action: ok - 0 mismatched regions in \d+ bytes/);
    t.regex(fb.stdout, /\[3\/6\] return group db to alpha\n(?:.*\n)*?\s+verify: ok - alpha is primary of db in epoch \d+/);
    t.regex(fb.stdout, /\[4\/6\] resync group vm to beta\n\s+check: done - vm already runs at its preferred site beta/);
    t.deepEqual(await primaries(c.file), { db: 'alpha', vm: 'beta' });

    const h = await metroctl(['runbook', 'history', '-f', c.file]);
    t.regex(h.stdout, /planned-maintenance --site alpha\s+succeeded/);
    t.regex(h.stdout, /failback\s+succeeded/);
  } finally {
    await c.stop();
  }
});
