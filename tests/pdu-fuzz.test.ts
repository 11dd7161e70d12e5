// Hostile bytes at a running agent: a seeded fuzzer sends thousands of mutated and truncated PDUs
// taken from valid discovery, login and I/O exchanges. The agent must not crash or hang, a
// well-behaved session on the same portal keeps working throughout, and no volume byte changes.
import test from 'ava';
import { startCluster, type TestCluster } from './harness/cluster.ts';
import { requireTools, run } from './harness/tools.ts';
import { prng, seedFromEnv } from '../common/prng.ts';
import { TestSession } from './harness/initiator.ts';
import { exchanges, mutate, sendExchange, readBlocks, cdb } from './harness/fuzz.ts';

const exchangesMax = 3000;
const fuzzDurationMsMax = 90_000;
const parallel = 24;

let cluster: TestCluster | undefined;
test.after.always(async () => { await cluster?.stop(); });

test.serial('seeded PDU fuzzing: no crash, no hang, other sessions keep working, data unchanged', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const seed = seedFromEnv();
  t.log(`seed ${seed} (METRO_TEST_SEED=${seed} replays it)`);
  const rand = prng(seed);
  // A third group with its primary at alpha for the well-behaved session: the secondary's port
  // group is ALUA standby and refuses media access, so it must not be vm at alpha.
  cluster = await startCluster({ groups: `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 64MiB }, { name: log, size: 16MiB } ]
  - name: vm
    preferredSite: beta
    volumes: [ { name: images, size: 32MiB } ]
  - name: bystander
    preferredSite: alpha
    volumes: [ { name: disk, size: 16MiB } ]` });
  const c = cluster;
  const [host, portStr] = c.portal(1).split(':');
  const port = Number(portStr);
  const target = c.iqn('db');
  const lunUrls = [0, 1].map((l) => `iscsi://${c.portal(1)}/${target}/${l}`);
  const pidBefore = c.up.pidOf('agent alpha');

  // Known contents on both LUNs of the fuzzed target.
  for (const [i, url] of lunUrls.entries()) {
    const w = await run('qemu-io', ['-f', 'raw', '-c', `write -P 0x${(0x3c + i).toString(16)} 0 4M`, url], { timeoutMs: 60_000 });
    t.is(w.code, 0, w.stdout + w.stderr);
  }

  // A well-behaved session on the same portal that stays logged in throughout and must keep
  // answering. It uses the other group's target: task management that the fuzzer sends to its
  // target (LUN RESET, CLEAR TASK SET, ...) may rightly abort every initiator's tasks there.
  const goodUrl = `iscsi://${c.portal(1)}/${c.iqn('bystander')}/0`;
  const gw = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x3e 0 1M', goodUrl], { timeoutMs: 60_000 });
  t.is(gw.code, 0, gw.stdout + gw.stderr);
  const good = await TestSession.open({ host, port, initiatorName: 'iqn.2026-11.org.example:good', targetName: c.iqn('bystander') });
  await good.command(0, cdb([0x00, 0, 0, 0, 0, 0])).catch(() => undefined); // clears the power-on unit attention

  const base = exchanges(target);
  const started = Date.now();
  let sent = 0;
  let goodChecks = 0;
  while (sent < exchangesMax && Date.now() - started < fuzzDurationMsMax) {
    const batch: Promise<void>[] = [];
    for (let i = 0; i < parallel; i++) {
      const ex = base[Math.floor(rand() * base.length)];
      batch.push(sendExchange(host, port, mutate(rand, ex), rand));
    }
    await Promise.all(batch);
    sent += parallel;
    if (sent % (parallel * 10) === 0) {
      const r = await readBlocks(good, 0, 0, 8).catch(async (err: Error) => {
        t.log(`agent log:\n${await c.logTail('alpha', 60)}`);
        throw err;
      });
      t.is(r.status, 0, 'the well-behaved session keeps working during the fuzzing');
      t.true(r.data.equals(Buffer.alloc(4096, 0x3e)));
      goodChecks++;
    }
  }
  t.log(`${sent} mutated exchanges in ${Date.now() - started} ms; the good session answered ${goodChecks} checks`);
  t.true(sent >= 1000, `at least a thousand exchanges were sent (${sent})`);

  const r = await readBlocks(good, 0, 8, 16);
  t.is(r.status, 0);
  t.true(r.data.equals(Buffer.alloc(8192, 0x3e)));
  await good.logout();

  // The agent neither crashed nor was restarted, and the data is exactly what it was.
  t.notRegex(c.up.output(), /agent alpha exited/);
  t.is(c.up.pidOf('agent alpha'), pidBefore);
  for (const [i, url] of lunUrls.entries()) {
    const v = await run('qemu-io', ['-f', 'raw', '-c', `read -P 0x${(0x3c + i).toString(16)} 0 4M`, '-c', 'read -P 0 4M 1M', url], { timeoutMs: 60_000 });
    t.is(v.code, 0, v.stdout + v.stderr);
    t.notRegex(v.stdout + v.stderr, /Pattern verification failed/);
  }
});
