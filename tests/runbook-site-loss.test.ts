// The site-loss runbook for real: the agent of alpha is SIGKILLed, and `metroctl runbook run
// site-loss --site alpha` confirms the loss from beta and the witness, shows the loss bound, brings
// every group up at beta (failing over what the cluster has not failed over itself), proves I/O
// through beta's portal, and tells the admin what hosts must do.
import test from 'ava';
import { startCluster, metroctlBin } from './harness/cluster.ts';
import { run } from './harness/tools.ts';

const metroctl = (args: string[], timeoutMs = 240_000) => run(process.execPath, [metroctlBin, ...args], { timeoutMs });

let last = '';

interface StatusGroup { name: string; arbitration?: { primary: string; epoch: string; gate: string; secondary: string } }

async function primaries(file: string): Promise<Record<string, { primary: string; epoch: number; gate: string; secondary: string } | undefined>> {
  const r = await metroctl(['status', '-f', file, '-o', 'json'], 120_000);
  last = `exit ${r.code}${r.timedOut ? ' (timed out)' : ''}: ${r.stdout.slice(0, 3000)} ${r.stderr}`;
  const json = JSON.parse(r.stdout || '{"sites":[]}') as { sites: Array<{ name: string; groups?: StatusGroup[] }> };
  const out: Record<string, { primary: string; epoch: number; gate: string; secondary: string } | undefined> = {};
  for (const s of json.sites) {
    for (const g of s.groups ?? []) {
      const a = g.arbitration;
      if (!a || a.primary !== s.name) continue;
      const prev = out[g.name];
      if (!prev || Number(a.epoch) > prev.epoch) out[g.name] = { primary: a.primary, epoch: Number(a.epoch), gate: a.gate, secondary: a.secondary };
    }
  }
  return out;
}

test('site-loss after a killed site brings every group up at the survivor', async (t) => {
  const c = await startCluster({ extra: 'replication: { ack: sync }\nfailover: { leaseMs: 2000, maxDataLossMs: 0 }', restart: false, settle: false });
  try {
    const until = Date.now() + 180_000;
    let p = await primaries(c.file);
    // Serving, and db's copy at beta up-to-date (the initial resync done): a loss then costs nothing.
    while (!(p.db?.primary === 'alpha' && p.db.gate !== 'closed' && p.db.secondary === 'up-to-date' && p.vm?.primary === 'beta' && p.vm.gate !== 'closed') && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
      p = await primaries(c.file);
    }
    t.like(p, { db: { primary: 'alpha' }, vm: { primary: 'beta' } }, `serving before the loss; last status ${last}`);

    process.kill(c.up.pidOf('agent alpha'), 'SIGKILL');
    await c.up.waitFor(/agent alpha exited .*left down/, 30_000);

    const r = await metroctl(['runbook', 'run', 'site-loss', '--site', 'alpha', '-f', c.file, '--yes']);
    t.is(r.code, 0, r.stdout + r.stderr);
    t.regex(r.stdout, /\[1\/7\] confirm site alpha is lost\n\s+check: go - site alpha is unreachable from beta \(.*\), from the witness \(.*\) and from metroctl/);
    // The cluster may have failed db over by itself (an up-to-date secondary) before the runbook reads the witness.
    t.regex(r.stdout, /db: (?:worst-case data loss 0 \(the secondary holds every acknowledged write\)|served by beta \(epoch \d+\): nothing to fail over)/);
    t.regex(r.stdout, /vm: served by beta \(epoch 1\): nothing to fail over/);
    t.regex(r.stdout, /\[3\/7\] fail group db over to beta\n(?:.*\n)*?\s+verify: ok - beta is primary of db in epoch \d+/);
    t.regex(r.stdout, /\[5\/7\] verify group db serves I\/O at beta\n(?:.*\n)*?\s+action: ok - READ and COMPARE AND WRITE \(FUA\) of LBA \d+ through beta's portal/);
    t.regex(r.stdout, /\[6\/7\] verify group vm serves I\/O at beta\n(?:.*\n)*?\s+action: ok - READ and COMPARE AND WRITE/);
    t.regex(r.stdout, new RegExp(`iscsiadm -m discovery -t st -p ${c.host(2).replace(/\./g, '\\.')}:3260`));
    t.regex(r.stdout, /run site-loss-\S+ of site-loss succeeded/);

    const after = await primaries(c.file);
    t.like(after, { db: { primary: 'beta' }, vm: { primary: 'beta' } });
    t.true((after.db?.epoch ?? 0) >= 2, 'db moved in a newer epoch');
    t.not(after.db?.gate, 'closed', 'beta acknowledges writes for db');
  } finally {
    await c.stop();
  }
});
