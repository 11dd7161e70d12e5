// `metroctl topology plan/apply` against a running cluster with real clients: a volume added and one
// grown while qemu-img bench writes to it (no I/O error), hosts see the new capacity
// (iscsi-readcapacity16) and the new LUN (iscsi-ls -s), bytes past the old end reach the peer's file;
// a shrink is refused without --force and changes nothing; plan lists the kinds of change; a stale
// version is refused; a restarted agent serves the applied version, not its start file; --force
// shrinks and deletes at both sites.
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { metroctlBin, startCluster, waitSettled, type TestCluster } from './harness/cluster.ts';
import { requireTools, run } from './harness/tools.ts';
import { verify, volumePath, waitStatus } from './harness/mirror-status.ts';

let cluster: TestCluster | undefined;
test.after.always(async () => { await cluster?.stop(); });

const groups = (data: string, extra = '', more = '') => `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: ${data} }, { name: log, size: 4MiB }${extra} ]${more}`;

function metroctl(args: string[]) {
  return run(process.execPath, [metroctlBin, ...args], { timeoutMs: 90_000 });
}

/** A copy of the cluster's topology file with the groups list replaced (and more YAML appended). */
async function variant(c: TestCluster, name: string, groupsYaml: string, appended = ''): Promise<string> {
  let text = await fs.readFile(c.file, 'utf8');
  // An appended replication block replaces the one the test cluster starts with.
  if (/^replication:/m.test(appended)) text = text.replace(/^replication:.*\n/m, '');
  const out = text.replace(/^groups:[\s\S]*?(?=^\S|(?![\s\S]))/m, `groups:${groupsYaml}\n`) + appended;
  const file = path.join(c.dir, name);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, out);
  return file;
}

async function capacity(url: string): Promise<number> {
  const r = await run('iscsi-readcapacity16', [url], { timeoutMs: 30_000 });
  const m = /Total size:(\d+)/.exec(r.stdout);
  if (r.code !== 0 || !m) throw new Error(`iscsi-readcapacity16 ${url}: exit ${r.code}\n${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

async function waitBytes(file: string, offset: number, length: number, byte: number, deadlineMs = 20_000): Promise<boolean> {
  const until = performance.now() + deadlineMs;
  for (;;) {
    const h = await fs.open(file, 'r');
    const buf = Buffer.alloc(length);
    try { await h.read(buf, 0, length, offset); } finally { await h.close(); }
    if (buf.every((b) => b === byte)) return true;
    if (performance.now() > until) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
}

test.serial('plan shows each kind of change; a shrink is refused without --force and changes nothing', async (t) => {
  if (!requireTools(t, ['iscsi-readcapacity16', 'iscsi-ls', 'qemu-io', 'qemu-img'])) return;
  cluster = await startCluster({ groups: groups('16MiB') });
  const c = cluster;
  const data0 = `iscsi://${c.portal(1)}/${c.iqn('db')}/0`;

  const noChange = await metroctl(['topology', 'plan', '-f', c.file]);
  t.is(noChange.code, 0, noChange.stderr);
  t.regex(noChange.stdout, /running version 1 .*agent alpha 1, agent beta 1, witness 1/);
  t.regex(noChange.stdout, /no changes/);

  const planned = await variant(c, 'plan.yaml', `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 32MiB } ]
  - name: web
    preferredSite: beta
    volumes: [ { name: root, size: 8MiB } ]
    replication: { ack: sync }`, 'replication: { maxLagMs: 500 }\n');
  const p = await metroctl(['topology', 'plan', '-f', planned]);
  t.is(p.code, 0, p.stderr);
  t.regex(p.stdout, /\+ grows volume db\/data \(LUN 0\) from 16 MiB to 32 MiB/);
  t.regex(p.stdout, /! DESTRUCTIVE deletes volume db\/log \(LUN 1, 4 MiB\)/);
  t.regex(p.stdout, /\+ adds group web .*primary beta.* 1 volume/);
  t.regex(p.stdout, /~ replication\.maxLagMs: 2000 -> 500/);
  t.regex(p.stdout, /1 destructive \(apply needs --force\)/);
  t.notRegex(p.stdout, /not applicable online/);
  const pj = await metroctl(['topology', 'plan', '-f', planned, '-o', 'json']);
  const kinds = (JSON.parse(pj.stdout).changes as Array<{ kind: string }>).map((x) => x.kind).sort();
  t.deepEqual([...new Set(kinds)], ['group-added', 'setting-changed', 'volume-deleted', 'volume-grown']);

  const badFile = await variant(c, 'bad.yaml', groups('sixteen'));
  t.is((await metroctl(['topology', 'plan', '-f', badFile])).code, 2);

  const shrink = await variant(c, 'shrink.yaml', groups('8MiB'));
  const sizeBefore = (await fs.stat(volumePath(c, 'alpha', 'db', 'data'))).size;
  const refused = await metroctl(['topology', 'apply', '-f', shrink]);
  t.is(refused.code, 1, refused.stdout + refused.stderr);
  t.regex(refused.stderr, /refused without --force: shrinks volume db\/data \(LUN 0\) from 16 MiB to 8 MiB/);
  t.is(await capacity(data0), 16 * 1024 * 1024);
  t.is((await fs.stat(volumePath(c, 'alpha', 'db', 'data'))).size, sizeBefore);
  t.is((await fs.stat(volumePath(c, 'beta', 'db', 'data'))).size, sizeBefore);
  const after = await metroctl(['topology', 'plan', '-f', c.file]);
  t.regex(after.stdout, /running version 1 /);
});

test.serial('apply adds a volume and grows another while qemu-img bench writes to it; the peer follows; stale versions are refused', async (t) => {
  if (!requireTools(t, ['iscsi-readcapacity16', 'iscsi-ls', 'qemu-io', 'qemu-img'])) return;
  const c = cluster;
  if (!c) return t.fail('no cluster (first test failed early)');
  const data0 = `iscsi://${c.portal(1)}/${c.iqn('db')}/0`;
  const grown = await variant(c, 'grown.yaml', groups('32MiB', ', { name: wal, size: 8MiB }'));

  // A writer that outlives the apply: 4 KiB writes at queue depth 4 over the old 16 MiB.
  const bench = spawn('qemu-img', ['bench', '-w', '-f', 'raw', '-c', '100000000', '-d', '4', '-s', '4096', '-S', '8192', data0], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { bench.kill('SIGKILL'); });
  let benchOut = '';
  bench.stdout.on('data', (d: Buffer) => { benchOut += d.toString(); });
  bench.stderr.on('data', (d: Buffer) => { benchOut += d.toString(); });
  await new Promise((r) => setTimeout(r, 1500));
  t.is(bench.exitCode, null, `bench ended before the apply: ${benchOut}`);

  const applied = await metroctl(['topology', 'apply', '-f', grown]);
  t.is(applied.code, 0, applied.stdout + applied.stderr);
  t.regex(applied.stdout, /applied version 2/);
  t.log(`metroctl topology apply (3 phases at 3 daemons, CLI start included): ${Math.round(applied.ms)} ms`);
  await new Promise((r) => setTimeout(r, 1000));
  t.is(bench.exitCode, null, `the writer stopped during the apply: ${benchOut}`);
  const ended = new Promise((r) => bench.once('exit', r));
  bench.kill('SIGTERM');
  await ended;
  t.notRegex(benchOut, /Failed|error|I\/O/i, benchOut);
  // The writer's own session was told, and carried on (qemu retries a command a unit attention ended).
  t.regex(benchOut, /UNIT_ATTENTION\(6\) ASCQ:CAPACITY_DATA_HAS_CHANGED\(0x2a09\)/, benchOut);
  t.regex(benchOut, /UNIT_ATTENTION\(6\) ASCQ:\(null\)\(0x3f0e\)/, benchOut);

  t.is(await capacity(data0), 32 * 1024 * 1024);
  t.is(await capacity(`iscsi://${c.portal(1)}/${c.iqn('db')}/2`), 8 * 1024 * 1024);
  // iscsi-ls -s logs in at every TargetAddress discovery lists, last listed first, and stops at the
  // first failure. Discovery at beta's portal lists beta's address first, so alpha's (the primary)
  // is visited first and lists the LUNs. (beta's port group is unavailable while its copy of the
  // grown volume is still resyncing, and refuses iscsi-ls's TEST UNIT READY: the only error allowed.) iscsi-ls
  // prints the last LBA's offset in MiB, rounded down: 31M for a 32 MiB LUN.
  const ls = await run('iscsi-ls', ['-s', `iscsi://${c.portal(2)}`], { timeoutMs: 30_000 });
  const atAlpha = ls.stdout.split(/(?=^Target:)/m).find((sec) => sec.includes(`Portal:${c.portal(1)},1`)) ?? '';
  t.regex(atAlpha, /Lun:0\s+Type:DIRECT_ACCESS \(Size:31M\)/, ls.stdout + ls.stderr);
  t.regex(atAlpha, /Lun:1\s+Type:DIRECT_ACCESS \(Size:3M\)/, ls.stdout);
  t.regex(atAlpha, /Lun:2\s+Type:DIRECT_ACCESS \(Size:7M\)/, ls.stdout);
  if (ls.code !== 0) t.regex(ls.stdout + ls.stderr, /TESTUNITREADY failed with SENSE KEY:NOT READY\(2\) ASCQ:\(null\)\(0x040c\)/);

  // Bytes past the old end, and on the new LUN, reach the secondary's files.
  const w = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 30M 64k', data0], { timeoutMs: 60_000 });
  t.is(w.code, 0, w.stdout + w.stderr);
  const w2 = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x6b 7M 64k', `iscsi://${c.portal(1)}/${c.iqn('db')}/2`], { timeoutMs: 60_000 });
  t.is(w2.code, 0, w2.stdout + w2.stderr);
  t.is((await fs.stat(volumePath(c, 'beta', 'db', 'data'))).size, 32 * 1024 * 1024);
  t.true(await waitBytes(volumePath(c, 'beta', 'db', 'data'), 30 * 1024 * 1024, 65536, 0x5a), `grown tail not mirrored\n${await c.logTail('beta')}`);
  t.true(await waitBytes(volumePath(c, 'beta', 'db', 'wal'), 7 * 1024 * 1024, 65536, 0x6b), `new volume not mirrored\n${await c.logTail('beta')}`);

  // A version not newer than the cluster's is refused everywhere and changes nothing.
  const again = await variant(c, 'again.yaml', groups('48MiB', ', { name: wal, size: 8MiB }'));
  const stale = await metroctl(['topology', 'apply', '-f', again, '--topology-version', '2']);
  t.is(stale.code, 1, stale.stdout + stale.stderr);
  t.regex(stale.stderr, /version 2 is not newer than version 2/);
  t.is(await capacity(data0), 32 * 1024 * 1024);

  // A restarted agent serves the applied version (its start file still says 16 MiB and two volumes).
  const from = c.up.output().length;
  process.kill(c.up.pidOf('agent alpha'), 'SIGKILL');
  await c.up.waitFor(/restarted agent alpha/, 60_000, from);
  await c.up.waitFor(/^ready$|agent alpha\s+pid/m, 60_000, from);
  // Down past its lease, alpha may have lost db to beta; hosts come back once it is protected again.
  await waitSettled(c.file);
  let cap = 0;
  for (let i = 0; i < 50 && cap === 0; i++) {
    cap = await capacity(data0).catch(() => 0);
    if (cap === 0) await new Promise((r) => setTimeout(r, 300));
  }
  t.is(cap, 32 * 1024 * 1024);
  t.is(await capacity(`iscsi://${c.portal(1)}/${c.iqn('db')}/2`), 8 * 1024 * 1024);
});

test.serial('apply --force shrinks a volume and deletes the last one at both sites; its files are kept aside', async (t) => {
  if (!requireTools(t, ['iscsi-readcapacity16', 'qemu-io'])) return;
  const c = cluster;
  if (!c) return t.fail('no cluster (first test failed early)');
  const cut = await variant(c, 'cut.yaml', groups('24MiB'), 'replication: { ack: sync }\n');
  // A resync of the tail runs while the shrink is applied: the secondary misses 4 MiB written past
  // the new end while it restarts, and the resync that follows crawls at 2 Mbit/s. (The restart of
  // alpha above may have moved db to beta: the secondary is whichever site it is now.)
  const settled = await waitStatus(c, 'db', (g) => g.upToDate === true, 60_000);
  t.true(settled.ok, `db not up-to-date before the shrink: ${JSON.stringify(settled.status)}`);
  const { primary, secondary } = settled.status;
  t.is((await metroctl(['resync-rate', '--group', 'db', '--mbps', '2', '-f', c.file])).code, 0);
  const from = c.up.output().length;
  process.kill(c.up.pidOf(`agent ${secondary!}`), 'SIGKILL');
  // Hosts use the primary's portal: the secondary's is unavailable while its copy resyncs.
  const atPrimary = `iscsi://${c.portal(primary === 'alpha' ? 1 : 2)}/${c.iqn('db')}/0`;
  const tail = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x4d 26M 4M', atPrimary], { timeoutMs: 60_000 });
  t.is(tail.code, 0, tail.stdout + tail.stderr);
  await c.up.waitFor(new RegExp(`restarted agent ${secondary}`), 60_000, from);
  const resyncing = await waitStatus(c, 'db', (g) => g.attached && g.resync !== null && !g.resync.done && g.resync.bytesSent > 0, 60_000);
  t.true(resyncing.ok, `no resync running before the shrink: ${JSON.stringify(resyncing.status)}`);
  const refused = await metroctl(['topology', 'apply', '-f', cut]);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /refused without --force: deletes volume db\/wal \(LUN 2, 8 MiB\)/);
  const applied = await metroctl(['topology', 'apply', '-f', cut, '--force']);
  t.is(applied.code, 0, applied.stdout + applied.stderr);
  t.regex(applied.stdout, /applied version 3/);
  // The resync that restarted on the new size runs at full speed again (it delivers the regions it
  // still holds dirty, and the writes to them, to the secondary).
  t.is((await metroctl(['resync-rate', '--group', 'db', '--mbps', '800', '-f', c.file])).code, 0);
  t.is(await capacity(atPrimary), 24 * 1024 * 1024);
  const gone = await run('iscsi-readcapacity16', [atPrimary.replace(/\/0$/, '/2')], { timeoutMs: 30_000 });
  t.not(gone.code, 0, 'LUN 2 is no longer served');
  t.regex(gone.stdout + gone.stderr, /LOGICAL_UNIT_NOT_SUPPORTED|0x2500|not supported/i, gone.stdout + gone.stderr);
  for (const site of ['alpha', 'beta']) {
    t.is((await fs.stat(volumePath(c, site, 'db', 'data'))).size, 24 * 1024 * 1024, `${site}: data cut`);
    await t.throwsAsync(fs.stat(volumePath(c, site, 'db', 'wal')), undefined, `${site}: wal no longer in place`);
    t.is((await fs.stat(`${volumePath(c, site, 'db', 'wal')}.deleted-v3`)).size, 8 * 1024 * 1024, `${site}: wal kept aside`);
  }
  // The mirror still carries the shrunk volume.
  const w = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x7c 23M 64k', atPrimary], { timeoutMs: 60_000 });
  t.is(w.code, 0, w.stdout + w.stderr);
  t.true(await waitBytes(volumePath(c, secondary!, 'db', 'data'), 23 * 1024 * 1024, 65536, 0x7c), `shrunk volume not mirrored\n${await c.logTail(secondary!)}`);
  const plan = await metroctl(['topology', 'plan', '-f', cut]);
  t.regex(plan.stdout, /running version 3 .*\n.*no changes/);
  // The interrupted resync finished on the new size: the copies agree.
  t.true((await waitStatus(c, 'db', (g) => g.upToDate === true, 60_000)).ok, 'db up-to-date again after the shrink');
  const checked = await verify(c, 'db', ['-o', 'json']);
  t.is(checked.code, 0, checked.stdout + checked.stderr);
  t.is(JSON.parse(checked.stdout).mismatchCount, 0);
});

test.serial('apply adds a group with its target and mirror at runtime; --force removes it', async (t) => {
  if (!requireTools(t, ['iscsi-readcapacity16', 'qemu-io'])) return;
  const c = cluster;
  if (!c) return t.fail('no cluster (first test failed early)');
  const web = `
  - name: web
    preferredSite: beta
    volumes: [ { name: root, size: 8MiB } ]`;
  const added = await variant(c, 'web.yaml', groups('24MiB', '', web), 'replication: { ack: sync }\n');
  const applied = await metroctl(['topology', 'apply', '-f', added]);
  t.is(applied.code, 0, applied.stdout + applied.stderr);
  t.regex(applied.stdout, /adds group web/);
  t.regex(applied.stdout, /witness: group web registered/);
  // The new group serves once its primary holds quorum and its new copy at alpha is resynced, as
  // status shows; hosts that log in before get NOT READY (unavailable) and retry.
  await waitSettled(added);
  const root = `iscsi://${c.portal(2)}/${c.iqn('web')}/0`;
  t.is(await capacity(root), 8 * 1024 * 1024);
  const w = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x3d 1M 64k', root], { timeoutMs: 60_000 });
  t.is(w.code, 0, w.stdout + w.stderr);
  const rootAt = (site: string) => volumePath(c, site, 'web', 'root');
  t.true(await waitBytes(rootAt('alpha'), 1024 * 1024, 65536, 0x3d), `the new group does not mirror\n${await c.logTail('alpha')}`);

  const removed = await metroctl(['topology', 'apply', '-f', await variant(c, 'noweb.yaml', groups('24MiB'), 'replication: { ack: sync }\n'), '--force']);
  t.is(removed.code, 0, removed.stdout + removed.stderr);
  const gone = await run('iscsi-readcapacity16', [root], { timeoutMs: 30_000 });
  t.not(gone.code, 0, 'the removed group is no longer served');
  for (const site of ['alpha', 'beta']) t.true((await fs.stat(`${rootAt(site)}.removed-v5`)).isFile(), `${site}: the group's volume kept aside`);
});
