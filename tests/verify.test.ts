// `metroctl verify` against real agents: both copies compared while qemu-io writes, zero mismatches
// once the mirror is in sync; a region corrupted behind the secondary's back is reported exactly,
// and --repair resyncs it from the primary.
import test from 'ava';
import fs from 'node:fs/promises';
import { makeTopology, metroctlBin, startCluster, type TestCluster } from './harness/cluster.ts';
import { firstDifference, groupStatus, qemuIo, verify, volumePath, waitStatus } from './harness/mirror-status.ts';
import { requireTools, run } from './harness/tools.ts';
import { removeClusterDir } from './harness/secrets.ts';

const clusters: TestCluster[] = [];
test.after.always(async () => { await Promise.all(clusters.map((c) => c.stop())); });

const groups = `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 16MiB }, { name: log, size: 4MiB } ]`;

test.serial('verify: zero mismatches while I/O runs and after; a corrupted region of the secondary is reported exactly and repaired', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const c = await startCluster({ groups, extra: 'replication: { ack: sync }' });
  clusters.push(c);
  const data = `iscsi://${c.portal(1)}/${c.iqn('db')}/0`;
  await qemuIo(data, ['write -P 0x31 0 1M', 'write -P 0x32 5M 512k', 'write -P 0x33 15M 1M']);
  const synced = await waitStatus(c, 'db', (g) => g.upToDate === true, 180_000);
  t.true(synced.ok, `never up-to-date: ${JSON.stringify(synced.status)}\n${await c.logTail('alpha')}`);
  t.is(synced.status.resyncRateLimitBytesPerSec, 100_000_000, 'replication.resyncMbps 800 by default');

  // The admin changes the bandwidth bound at runtime; verify and resync use it from now on.
  const rate = await run(process.execPath, [metroctlBin, 'resync-rate', '--group', 'db', '--mbps', '400', '-f', c.file], { timeoutMs: 90_000 });
  t.is(rate.code, 0, rate.stderr);
  t.is(rate.stdout.trim(), 'group db: resync rate 400 Mbps at alpha (was 800.0 Mbps)');
  t.is((await groupStatus(c, 'db')).resyncRateLimitBytesPerSec, 50_000_000);

  // Online: writes keep coming while the verify compares.
  const writes = qemuIo(data, Array.from({ length: 200 }, (_, i) => `write -P ${0x40 + (i % 32)} ${(i * 77 % 256) * 65536} 8k`));
  const during = await verify(c, 'db');
  await writes;
  t.is(during.code, 0, `verify during I/O: ${during.stdout}\n${during.stderr}`);
  t.regex(during.stdout, /both copies match/);

  const after = await verify(c, 'db', ['-o', 'json']);
  t.is(after.code, 0, after.stdout + after.stderr);
  const clean = JSON.parse(after.stdout);
  t.is(clean.mismatchCount, 0);
  t.is(clean.bytesChecked, 20 * 2 ** 20);

  // A raw write into the secondary's file, behind the agent's back: region 37 of volume data.
  const region = 37;
  const beta = volumePath(c, 'beta', 'db', 'data');
  const fh = await fs.open(beta, 'r+');
  await fh.write(Buffer.alloc(4096, 0xee), 0, 4096, region * 65536 + 8192);
  await fh.close();
  const found = await verify(c, 'db', ['-o', 'json']);
  t.is(found.code, 1, found.stdout + found.stderr);
  const report = JSON.parse(found.stdout);
  t.is(report.mismatchCount, 1);
  t.deepEqual(report.mismatches, [{ volume: 'data', lun: 0, region, offsetBytes: region * 65536, lengthBytes: 65536 }]);
  t.false(report.repaired);

  const text = await verify(c, 'db');
  t.is(text.code, 1);
  t.regex(text.stdout, /mismatch: volume data \(LUN 0\) region 37: bytes 2424832\.\.2490367/);
  t.regex(text.stdout, /1 mismatching region; run again with --repair/);

  const repaired = await verify(c, 'db', ['--repair']);
  t.is(repaired.code, 0, repaired.stdout + repaired.stderr);
  t.regex(repaired.stdout, /1 mismatching region repaired/);
  t.is(await firstDifference(volumePath(c, 'alpha', 'db', 'data'), beta), -1, 'the repair left the copies different');
  t.is(await firstDifference(volumePath(c, 'alpha', 'db', 'log'), volumePath(c, 'beta', 'db', 'log')), -1);
  const again = await verify(c, 'db');
  t.is(again.code, 0, again.stdout + again.stderr);
});

test.serial('verify: usage errors exit 2; a group without a reachable primary exits 1', async (t) => {
  // No daemon runs for this topology: the command finds no primary.
  const topo = await makeTopology({ groups, extra: 'security: { insecure: true }' });
  t.teardown(() => removeClusterDir(topo.dir));
  const c = { file: topo.file } as TestCluster;
  const unknown = await verify(c, 'nosuch');
  t.is(unknown.code, 2, unknown.stderr);
  t.regex(unknown.stderr, /no group "nosuch"/);
  const badRate = await verify(c, 'db', ['--rate-mbps', 'fast']);
  t.is(badRate.code, 2, badRate.stderr);
  const missing = await run(process.execPath, [metroctlBin, 'verify', '-f', topo.file], { timeoutMs: 60_000 });
  t.is(missing.code, 2, missing.stderr);
  const badMbps = await run(process.execPath, [metroctlBin, 'resync-rate', '--group', 'db', '--mbps', '0', '-f', topo.file], { timeoutMs: 60_000 });
  t.is(badMbps.code, 2, badMbps.stderr);
  const down = await verify(c, 'db');
  t.is(down.code, 1, down.stderr);
  t.regex(down.stderr, /cannot verify group db: no reachable primary \(alpha: unreachable; beta: unreachable\)/);
});
