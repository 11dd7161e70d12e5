// Drills on a cluster whose portals require mutual CHAP and restrict initiators: the witness's probe
// logs in with access.chap's secrets and the drill passes with a measured RTO and RPO; when the
// witness's copy of a secret no longer matches the agents' (rotated in the file, the agents not
// restarted), or the file is open to others or holds too short a secret, the precheck refuses with
// the reason and nothing changes (metroctl itself refuses a topology whose secret file is missing). No secret reaches a report, a log or metroctl's output.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startCluster, type TestCluster } from './harness/cluster.ts';
import { metroctl, weeklyDbDrill } from './harness/drills.ts';
import type { DrillReport } from '../common/drills/report.ts';
import { probeInitiator } from '../common/probe/io-probe.ts';

const hostSecret = 'host1-secret-0123';
const targetSecret = 'target-secret-4567';
const wrongSecret = 'rotated-secret-8901';

let cluster: TestCluster | undefined;
test.before(async () => {
  cluster = await startCluster({
    groups: `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 16MiB } ]`,
    access: `
access:
  initiators: [ "iqn.2026-11.org.example:host1", "${probeInitiator('test')}" ]
  chap: { user: host1, secretFile: ./secrets/host1, mutual: { user: metro, secretFile: ./secrets/target } }`,
    extra: `replication: { ack: sync }\n${weeklyDbDrill}`,
    // host1-kept: the original secret stays under secrets/, so the leak check looks for it too.
    files: { 'secrets/host1': `${hostSecret}\n`, 'secrets/target': `${targetSecret}\n`, 'secrets/host1-kept': `${hostSecret}\n` },
  });
});
test.after.always(async () => { await cluster?.stop(); });

async function primaryOf(file: string): Promise<{ site: string; epoch: string } | null> {
  const r = await metroctl(['status', '-f', file, '-o', 'json'], 30_000);
  const json = JSON.parse(r.stdout || '{"sites":[]}') as { sites: Array<{ name: string; groups?: Array<{ name: string; arbitration?: { primary: string; epoch: string } }> }> };
  const at = json.sites.flatMap((s) => s.groups?.filter((g) => g.name === 'db' && g.arbitration?.primary === s.name).map((g) => ({ site: s.name, epoch: g.arbitration!.epoch })) ?? []);
  return at[0] ?? null;
}

function noSecrets(t: ExecutionContext, text: string): void {
  for (const s of [hostSecret, targetSecret, wrongSecret]) t.false(text.includes(s), 'no secret in what metroctl printed');
}

test.serial('with mutual CHAP the probe logs in and the drill passes with a measured RTO and RPO', async (t) => {
  const c = cluster!;
  const r = await metroctl(['drill', 'run', 'weekly-db', '-f', c.file, '-o', 'json']);
  noSecrets(t, r.stdout + r.stderr);
  t.is(r.code, 0, r.stdout + r.stderr + (await c.logTail('witness')));
  const rep = JSON.parse(r.stdout) as DrillReport;
  t.is(rep.outcome, 'passed', rep.reason ?? '');
  t.deepEqual(rep.phases.map((p) => [p.name, p.ok]), [['precheck', true], ['switchover', true], ['verify', true], ['failback', true]]);
  t.true(rep.rtoMs !== null && rep.rtoMs > 0 && rep.rtoMs < 30_000, `RTO ${rep.rtoMs} ms`);
  t.is(rep.rpoMs, 0, rep.rpoBasis);
  t.like(rep.rpoEvidence, { readBack: 'identical', atRisk: false });
  t.is(rep.finalPrimary, 'alpha');
  for (const p of rep.probe?.paths ?? []) t.true(p.served > 0, `the probe served I/O through ${p.site}'s portal`);
  t.log(`CHAP drill: RTO ${rep.rtoMs} ms, RPO ${rep.rpoMs} ms: ${rep.rpoBasis}`);
});

/** Runs the drill expecting its precheck to refuse with `reason`, and checks that nothing changed. */
async function refused(t: ExecutionContext, reason: RegExp): Promise<void> {
  const c = cluster!;
  const before = await primaryOf(c.file);
  const r = await metroctl(['drill', 'run', 'weekly-db', '-f', c.file, '-o', 'json']);
  noSecrets(t, r.stdout + r.stderr);
  t.is(r.code, 1, r.stdout + r.stderr);
  const rep = JSON.parse(r.stdout) as DrillReport;
  t.is(rep.outcome, 'aborted');
  t.regex(rep.reason ?? '', reason);
  t.deepEqual(rep.phases.map((p) => p.name), ['precheck']);
  t.like(rep, { from: null, to: null, rtoMs: null, rpoMs: null, finalPrimary: before?.site ?? null }, 'the report says no switchover started');
  t.deepEqual(await primaryOf(c.file), before, 'db stays at its primary in the same epoch');
}

test.serial('a secret that no longer matches the agents\' makes the precheck refuse: the target rejects the probe', async (t) => {
  const file = path.join(cluster!.dir, 'secrets/host1');
  await fs.writeFile(file, `${wrongSecret}\n`, { mode: 0o600 });
  try {
    await refused(t, /^precheck: the probe initiator cannot log in at alpha's portal [\d.]+:3260: login to iqn\.2026-11\.io\.metrocluster:test\.db refused \(login status 0x0201\): authentication failed: the target did not accept the CHAP user and secret; at beta's portal .* \(login status 0x0201\)/);
  } finally {
    await fs.writeFile(file, `${hostSecret}\n`, { mode: 0o600 });
  }
});

test.serial('a target secret the portals do not prove makes the precheck refuse: the probe rejects the target', async (t) => {
  const file = path.join(cluster!.dir, 'secrets/target');
  await fs.writeFile(file, `${wrongSecret}\n`, { mode: 0o600 });
  try {
    await refused(t, /^precheck: the probe initiator cannot log in at alpha's portal [\d.]+:3260: CHAP with iqn\.2026-11\.io\.metrocluster:test\.db: the target "metro" did not prove access\.chap\.mutual's secret/);
  } finally {
    await fs.writeFile(file, `${targetSecret}\n`, { mode: 0o600 });
  }
});

test.serial('a secret file open to others, or too short a secret, makes the precheck refuse with the file and the rule', async (t) => {
  const file = path.join(cluster!.dir, 'secrets/host1');
  await fs.chmod(file, 0o644);
  try {
    await refused(t, /^precheck: the probe initiator cannot read its CHAP secrets: access\.chap\.secretFile: \S+secrets\/host1 is accessible by group or others \(mode 644\); run chmod 600/);
  } finally {
    await fs.chmod(file, 0o600);
  }
  await fs.writeFile(file, 'short\n', { mode: 0o600 });
  try {
    await refused(t, /^precheck: the probe initiator cannot read its CHAP secrets: access\.chap\.secretFile: secret in \S+secrets\/host1 must be 12 to 255 bytes long, it is 5/);
  } finally {
    await fs.writeFile(file, `${hostSecret}\n`, { mode: 0o600 });
  }
});
