// Login access control against real initiators (libiscsi): CHAP one-way and mutual from the
// topology's access.chap, and the initiator allow-list from access.initiators.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startCluster, makeTopology, repoRoot, type TestCluster } from './harness/cluster.ts';
import { requireTools, run } from './harness/tools.ts';
import { removeClusterDir } from './harness/secrets.ts';

const host1 = 'iqn.2026-11.org.example:host1';
const intruder = 'iqn.2026-11.org.example:intruder';
const hostSecret = 'host1-secret-0123';
const targetSecret = 'target-secret-4567';

const access = `
access:
  initiators: [ "${host1}" ]
  chap: { user: host1, secretFile: ./secrets/host1, mutual: { user: metro, secretFile: ./secrets/target } }`;

let cluster: TestCluster | undefined;
test.after.always(async () => { await cluster?.stop(); });

function url(c: TestCluster, creds: string, args = ''): string {
  return `iscsi://${creds}${c.portal(1)}/${c.iqn('db')}/0${args}`;
}

async function inq(initiator: string, u: string): Promise<{ ok: boolean; out: string }> {
  const r = await run('iscsi-inq', ['-i', initiator, u], { timeoutMs: 30_000 });
  return { ok: r.code === 0 && /Vendor|vendor/.test(r.stdout), out: r.stdout + r.stderr };
}

test.serial('CHAP and the initiator allow-list are enforced at login; mutual CHAP authenticates the target', async (t) => {
  if (!requireTools(t, ['iscsi-inq'])) return;
  cluster = await startCluster({
    access,
    files: { 'secrets/host1': `${hostSecret}\n`, 'secrets/target': `${targetSecret}\n` },
  });
  const c = cluster;
  const mutualArgs = `?target_user=metro&target_password=${targetSecret}`;

  const noCreds = await inq(host1, url(c, ''));
  t.false(noCreds.ok, `no credentials must be refused:\n${noCreds.out}`);

  const wrong = await inq(host1, url(c, `host1%wrong-secret-000@`, mutualArgs));
  t.false(wrong.ok, `a wrong secret must be refused:\n${wrong.out}`);

  const wrongUser = await inq(host1, url(c, `host2%${hostSecret}@`, mutualArgs));
  t.false(wrongUser.ok, `a wrong CHAP user must be refused:\n${wrongUser.out}`);

  const outsider = await inq(intruder, url(c, `host1%${hostSecret}@`, mutualArgs));
  t.false(outsider.ok, `an initiator outside the allow-list must be refused:\n${outsider.out}`);

  const right = await inq(host1, url(c, `host1%${hostSecret}@`, mutualArgs));
  t.true(right.ok, `the right initiator and secret log in:\n${right.out}`);

  // Mutual CHAP: the initiator checks the target's answer; a target secret it does not share fails.
  const impostor = await inq(host1, url(c, `host1%${hostSecret}@`, `?target_user=metro&target_password=not-the-target-secret`));
  t.false(impostor.ok, `the initiator must reject a target that cannot prove the target secret:\n${impostor.out}`);

  // Discovery is guarded by the same rules.
  const disc = await run('iscsi-ls', ['-i', intruder, `iscsi://host1%${hostSecret}@${c.portal(1)}`], { timeoutMs: 30_000 });
  t.notRegex(disc.stdout, /Target:/, 'an outsider must not list targets');
  const discOk = await run('iscsi-ls', ['-i', host1, `iscsi://host1%${hostSecret}@${c.portal(1)}${mutualArgs}`], { timeoutMs: 30_000 });
  t.regex(discOk.stdout, /Target:iqn\.2026-11\.io\.metrocluster:test\.db/, discOk.stderr);
});

test('a CHAP secret file readable by others is refused at start with the reason', async (t) => {
  const { dir, file } = await makeTopology({ access, files: { 'secrets/host1': `${hostSecret}\n`, 'secrets/target': `${targetSecret}\n` } });
  try {
    await fs.chmod(path.join(dir, 'secrets/host1'), 0o644);
    const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'metro-agent.cjs'), '-f', file, '--site', 'alpha'], { encoding: 'utf8', timeout: 30_000 });
    t.is(r.status, 1, r.stderr);
    t.regex(r.stderr, /secrets\/host1 is accessible by group or others \(mode 644\); run chmod 600/);
    t.false(r.stderr.includes(hostSecret), 'the secret itself is never printed');
  } finally {
    await removeClusterDir(dir);
  }
});
