// Resync against real agents: the secondary's agent is SIGKILLed while qemu-io writes through the
// primary and `metroctl up` restarts it; the primary keeps serving, only the regions written in
// between travel (at most twice the dirty data, counted by the agent and shown in status), the
// copies end byte-identical and the secondary is up-to-date again.
import test from 'ava';
import { startCluster, type TestCluster } from './harness/cluster.ts';
import { firstDifference, groupStatus, qemuIo, volumePath, waitStatus } from './harness/mirror-status.ts';
import { requireTools } from './harness/tools.ts';

const clusters: TestCluster[] = [];
test.after.always(async () => { await Promise.all(clusters.map((c) => c.stop())); });

const volumeBytes = 32 * 2 ** 20;
const regionBytes = 64 * 1024;
const groups = `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 32MiB } ]`;

interface Batch { startMs: number; endMs: number; offsets: number[] }

test.serial('secondary killed during writes and restarted: the primary keeps serving, the resync sends only the dirty regions', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const c = await startCluster({ groups, extra: 'replication: { ack: sync, resyncMbps: 400 }' });
  clusters.push(c);
  const url = `iscsi://${c.portal(1)}/${c.iqn('db')}/0`;
  const first = await waitStatus(c, 'db', (g) => g.upToDate === true, 180_000);
  t.true(first.ok, `never up-to-date after start: ${JSON.stringify(first.status)}`);
  const sentBefore = first.status.resyncBytesSentTotal ?? 0;

  // Batches of 16 writes of 4 KiB at scattered offsets, one qemu-io after the other, until stopped.
  const batches: Batch[] = [];
  let stop = false;
  let n = 0;
  const writer = (async () => {
    while (!stop) {
      const offsets = Array.from({ length: 16 }, () => ((n++ * 7919) % (volumeBytes / 4096)) * 4096);
      const startMs = performance.now();
      await qemuIo(url, offsets.map((o, i) => `write -P ${0x10 + ((n + i) % 200)} ${o} 4k`), 30_000);
      batches.push({ startMs, endMs: performance.now(), offsets });
    }
  })();

  await new Promise((r) => setTimeout(r, 1500));
  const killedAtMs = performance.now();
  const from = c.up.output().length;
  process.kill(c.up.pidOf('agent beta'), 'SIGKILL');
  await c.up.waitFor(/^restarted agent beta/m, 60_000, from);
  const restartedAtMs = performance.now();
  // A little longer, so writes also race the resync, then stop writing.
  await new Promise((r) => setTimeout(r, 1000));
  stop = true;
  await writer;

  // The primary never stopped serving: writes completed while the secondary was down.
  const whileDown = batches.filter((b) => b.startMs >= killedAtMs && b.endMs <= restartedAtMs);
  t.true(whileDown.length >= 1, `no write batch completed while beta was down (${batches.length} batches)`);
  const slowest = Math.max(...batches.map((b) => b.endMs - b.startMs));
  t.true(slowest < 20_000, `a batch of writes took ${Math.round(slowest)} ms`);

  const done = await waitStatus(c, 'db', (g) => g.upToDate === true && g.resync?.done === true, 180_000);
  t.true(done.ok, `not up-to-date after the restart: ${JSON.stringify(done.status)}\n${await c.logTail('alpha')}`);
  t.is(done.status.secondaryState, 'up-to-date');
  t.is(done.status.resync?.kind, 'bitmap', 'a restarted secondary with its data gets a bitmap resync, not a full one');

  // Dirty data: every region written from the batch in flight at the kill onwards.
  const dirty = new Set<number>();
  for (const b of batches) if (b.endMs >= killedAtMs) for (const o of b.offsets) dirty.add(Math.floor(o / regionBytes));
  const dirtyBytes = dirty.size * regionBytes;
  const sent = (done.status.resyncBytesSentTotal ?? 0) - sentBefore;
  t.log(`${batches.length} write batches, ${whileDown.length} while beta was down; dirty ${dirty.size} regions (${dirtyBytes} bytes); resync sent ${sent} bytes; up-to-date ${Math.round(done.ms)} ms after the writes stopped`);
  t.true(sent > 0, 'the resync sent nothing, yet writes happened while beta was down');
  t.true(sent <= 2 * dirtyBytes, `resync sent ${sent} bytes for ${dirtyBytes} bytes of dirty regions`);
  t.true(sent < volumeBytes / 2, `resync sent ${sent} bytes: most of the ${volumeBytes}-byte volume`);

  const diff = await firstDifference(volumePath(c, 'alpha', 'db', 'data'), volumePath(c, 'beta', 'db', 'data'));
  t.is(diff, -1, `the copies differ from byte ${diff}\n${await c.logTail('beta')}`);
  const later = await groupStatus(c, 'db');
  t.true(later.upToDate === true && later.attached, JSON.stringify(later));
});
