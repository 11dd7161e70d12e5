// Mirroring against real processes: qemu-io writes through the primary's portal reach the
// secondary's volume file byte for byte; in sync mode a write that completed survives a SIGKILL of
// the primary's agent at the secondary.
import test from 'ava';
import fs from 'node:fs/promises';
import { startCluster, type TestCluster } from './harness/cluster.ts';
import { firstDifference, qemuIo, volumePath } from './harness/mirror-status.ts';
import { requireTools } from './harness/tools.ts';

const clusters: TestCluster[] = [];
test.after.always(async () => { await Promise.all(clusters.map((c) => c.stop())); });

const groups = `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 16MiB }, { name: log, size: 4MiB } ]`;

/** Polls until both files are identical (the mirror drained) or the deadline passes; returns the last comparison. */
async function waitIdentical(a: string, b: string, deadlineMs = 15_000): Promise<{ same: boolean; firstDiff: number }> {
  const until = performance.now() + deadlineMs;
  for (;;) {
    const firstDiff = await firstDifference(a, b);
    if (firstDiff < 0 || performance.now() > until) return { same: firstDiff < 0, firstDiff };
    await new Promise((r) => setTimeout(r, 200));
  }
}

test.serial('writes through the primary portal appear byte-identical in the secondary volume files', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const c = await startCluster({ groups });
  clusters.push(c);
  const data = `iscsi://${c.portal(1)}/${c.iqn('db')}/0`;
  const log = `iscsi://${c.portal(1)}/${c.iqn('db')}/1`;
  await qemuIo(data, [
    'write -P 0x11 0 4k', 'write -P 0x22 8k 64k', 'write -P 0x33 1M 1M', 'write -P 0x44 15M 512k',
    'write -P 0x55 3M 4k', 'write -P 0x66 3M 512', // an overwrite: order matters
    'write -z 1M 128k', 'flush',
  ]);
  await qemuIo(log, ['write -P 0x77 0 64k', 'write -P 0x88 4032k 64k']);
  for (const v of ['data', 'log']) {
    const cmp = await waitIdentical(volumePath(c, 'alpha', 'db', v), volumePath(c, 'beta', 'db', v));
    t.true(cmp.same, `volume ${v}: files differ from byte ${cmp.firstDiff}\n${await c.logTail('alpha')}\n${await c.logTail('beta')}`);
  }
  // The files hold the data the host wrote, not two equal empty files.
  const beta = await fs.readFile(volumePath(c, 'beta', 'db', 'data'));
  t.is(beta[3 * 1024 * 1024], 0x66);
  t.is(beta[3 * 1024 * 1024 + 512], 0x55);
  t.is(beta[1024 * 1024 + 200 * 1024], 0x33);
  t.is(beta[1024 * 1024 + 100], 0);
  t.is(beta[15 * 1024 * 1024 + 1000], 0x44);
});

test.serial('sync mode: a write that completed is in the secondary file after SIGKILL of the primary agent', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const c = await startCluster({ groups, extra: 'replication: { ack: sync }' });
  clusters.push(c);
  const url = `iscsi://${c.portal(1)}/${c.iqn('db')}/0`;
  const offsets = [0, 5 * 65536 + 4096, 9 * 1024 * 1024 + 512, 16 * 1024 * 1024 - 4096];
  // Earlier writes, then one last write and an immediate SIGKILL once qemu-io reports it complete.
  await qemuIo(url, offsets.slice(0, 3).map((o, i) => `write -P ${0xa0 + i} ${o} 4k`));
  const last = offsets[3];
  await qemuIo(url, [`write -P 0xaf ${last} 4k`]);
  process.kill(c.up.pidOf('agent alpha'), 'SIGKILL');
  const beta = await fs.readFile(volumePath(c, 'beta', 'db', 'data'));
  for (const [i, o] of offsets.slice(0, 3).entries()) {
    t.true(beta.subarray(o, o + 4096).every((b) => b === 0xa0 + i), `write ${i} at ${o} missing at the secondary`);
  }
  t.true(beta.subarray(last, last + 4096).every((b) => b === 0xaf), 'the last completed write is missing at the secondary');
});
