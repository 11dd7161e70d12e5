// Persistent reservations and ALUA against a real agent, as two hosts with different initiator
// names observe them: a WRITE EXCLUSIVE reservation, PREEMPT and its unit attention, the APTPL
// reservation after a SIGKILL and restart by `metroctl up`, and both sites' port groups.
import test from 'ava';
import { startCluster, waitSettled, type TestCluster } from './harness/cluster.ts';
import { cdb } from './harness/fuzz.ts';
import type { TestSession } from './harness/initiator.ts';
import { groupStatus } from './harness/mirror-status.ts';
import { open, prout, sense, TUR, waitForwarding } from './harness/scsi-host.ts';

let cluster: TestCluster | undefined;
test.after.always(async () => { await cluster?.stop(); });

const GOOD = 0;
const CHECK = 2;
const CONFLICT = 0x18;

/** Consumes pending unit attentions (power on, ...) with TEST UNIT READY. */
async function settle(s: TestSession): Promise<void> {
  for (let i = 0; i < 8; i++) if ((await s.command(0, TUR)).status === GOOD) return;
  throw new Error('TEST UNIT READY never became GOOD');
}

test.serial('two hosts: WRITE EXCLUSIVE, RESERVATION CONFLICT, PREEMPT with its UA, and the APTPL reservation survives SIGKILL', async (t) => {
  // Sync mirroring: the secondary stays up-to-date (its port group never changes state mid-test).
  cluster = await startCluster({ extra: 'replication: { ack: sync }' });
  await waitForwarding(cluster, 'db');
  const c = cluster;
  let a = await open(c, 1, 'pr-a');
  let b = await open(c, 1, 'pr-b');
  await settle(a);
  await settle(b);
  const run = (s: TestSession, p: { cdb: Buffer; data: Buffer }) => s.command(0, p.cdb, { dataOut: p.data });
  t.is((await run(b, prout(0, { sak: 0xb0b0n }))).status, GOOD, 'b registers');
  t.is((await run(a, prout(0, { sak: 0xa0a0n, aptpl: true }))).status, GOOD, 'a registers with APTPL');
  t.is((await run(a, prout(1, { key: 0xa0a0n, type: 1 }))).status, GOOD, 'a reserves WRITE EXCLUSIVE');

  const block = Buffer.alloc(512, 0x5b);
  t.is((await b.write10(0, 100, block)).status, CONFLICT, 'b\'s WRITE conflicts');
  t.is((await b.read10(0, 100, 1)).status, GOOD, 'b\'s READ works');
  t.is((await a.write10(0, 100, block)).status, GOOD, 'a writes');

  t.is((await run(b, prout(4, { key: 0xb0b0n, sak: 0xa0a0n, type: 1 }))).status, GOOD, 'b preempts a');
  const ua = await a.read10(0, 100, 1);
  t.deepEqual([ua.status, ...sense(ua)], [CHECK, 6, 0x2a, 0x05], 'a sees REGISTRATIONS PREEMPTED');
  t.is((await a.write10(0, 100, block)).status, CONFLICT, 'a no longer may write');
  t.is((await b.write10(0, 100, Buffer.alloc(512, 0x6c))).status, GOOD, 'b now holds it');
  a.destroy();
  b.destroy();

  // SIGKILL: metroctl up restarts the agent, which loads the reservation saved with APTPL.
  const pid = c.up.pidOf('agent alpha');
  const mark = c.up.output().length;
  process.kill(pid, 'SIGKILL');
  await c.up.waitFor(/^restarted agent alpha\s+pid (\d+)/m, 60_000, mark);
  // Down past its lease, alpha may have lost db to beta (the reservation travelled in the mirror
  // stream); either way the hosts come back once the cluster is protected again.
  await waitSettled(c.file);
  for (let i = 0; ; i++) {
    try { a = await open(c, 1, 'pr-a'); break; } catch (err) { if (i > 50) throw err; await new Promise((r) => setTimeout(r, 200)); }
  }
  b = await open(c, 1, 'pr-b');
  await settle(a);
  await settle(b);
  // The secondary reattaches some time after the restart (or, after a failover to beta, alpha comes
  // back as its secondary): the port groups' state changes reach the hosts as unit attentions
  // (ASYMMETRIC ACCESS STATE CHANGED) and, while a group is in transition, as NOT READY with
  // ASYMMETRIC ACCESS STATE TRANSITION. A host retries the command on both, as here; any other
  // answer is the command's own.
  const retryingAlua = async (f: () => Promise<{ status: number; sense: Buffer; data: Buffer }>) => {
    let r = await f();
    for (let i = 0; i < 30 && r.status === CHECK; i++) {
      const [key, asc, ascq] = sense(r);
      const attention = key === 6;
      const transition = key === 2 && asc === 0x04 && ascq === 0x0a;
      if (!attention && !transition) break;
      if (transition) await new Promise((res) => setTimeout(res, 200));
      r = await f();
    }
    return r;
  };
  t.is((await retryingAlua(() => a.write10(0, 100, block))).status, CONFLICT, 'after the restart a still may not write');
  t.is((await retryingAlua(() => b.write10(0, 100, block))).status, GOOD, 'after the restart b still holds the reservation');
  const rr = await retryingAlua(() => a.command(0, cdb([0x5e, 0x01, 0, 0, 0, 0, 0, 0, 64, 0]), { readLength: 64 }));
  t.deepEqual([rr.status, rr.data.subarray(8, 16).toString('hex'), rr.data[21]], [GOOD, '000000000000b0b0', 1], `READ RESERVATION: b's key, WRITE EXCLUSIVE${rr.status === CHECK ? ` (sense ${sense(rr).join('/')})` : ''}`);
  t.is((await retryingAlua(() => run(b, prout(3, { key: 0xb0b0n })))).status, GOOD, 'CLEAR');
  a.destroy();
  b.destroy();
});

test.serial('a failover carries the reservation: after alpha is frozen past its lease, beta enforces b\'s WRITE EXCLUSIVE for the hosts at alpha\'s portal', async (t) => {
  await cluster?.stop();
  cluster = await startCluster({ extra: 'replication: { ack: sync }\nfailover: { leaseMs: 2000, maxDataLossMs: 0 }' });
  await waitForwarding(cluster, 'db');
  const c = cluster;
  let a = await open(c, 1, 'fo-a');
  let b = await open(c, 1, 'fo-b');
  await settle(a);
  await settle(b);
  const run = (s: TestSession, p: { cdb: Buffer; data: Buffer }) => s.command(0, p.cdb, { dataOut: p.data });
  t.is((await run(a, prout(0, { sak: 0xa1n }))).status, GOOD, 'a registers');
  t.is((await run(b, prout(0, { sak: 0xb1n }))).status, GOOD, 'b registers');
  t.is((await run(b, prout(1, { key: 0xb1n, type: 1 }))).status, GOOD, 'b reserves WRITE EXCLUSIVE');
  t.is((await a.write10(0, 200, Buffer.alloc(512, 1))).status, CONFLICT, 'a conflicts before the failover');
  a.destroy();
  b.destroy();

  const pid = c.up.pidOf('agent alpha');
  process.kill(pid, 'SIGSTOP');
  await new Promise((r) => setTimeout(r, 6000));
  process.kill(pid, 'SIGCONT');
  await waitSettled(c.file);
  t.is((await groupStatus(c, 'db')).primary, 'beta', 'db failed over to beta');
  a = await open(c, 1, 'fo-a');
  b = await open(c, 1, 'fo-b');
  await settle(a);
  await settle(b);
  t.is((await a.write10(0, 200, Buffer.alloc(512, 2))).status, CONFLICT, 'a still conflicts at the new primary');
  t.is((await b.write10(0, 200, Buffer.alloc(512, 3))).status, GOOD, 'b still holds the reservation at the new primary');
  const rr = await a.command(0, cdb([0x5e, 0x01, 0, 0, 0, 0, 0, 0, 64, 0]), { readLength: 64 });
  t.deepEqual([rr.status, rr.data.subarray(8, 16).toString('hex'), rr.data[21]], [GOOD, '00000000000000b1', 1], 'READ RESERVATION at the new primary: b\'s key, WRITE EXCLUSIVE');
  a.destroy();
  b.destroy();
});

test.serial('ALUA: both portals report the same two port groups, primary active/optimized, the forwarding secondary active/non-optimized; both serve READ', async (t) => {
  // A fresh cluster in sync mode: its secondary is up-to-date (an outdated one would be unavailable).
  await cluster?.stop();
  cluster = await startCluster({ extra: 'replication: { ack: sync }' });
  const c = cluster;
  const reports: Buffer[] = [];
  await waitForwarding(c, 'db');
  for (const site of [1, 2] as const) {
    const s = await open(c, site, `alua-${site}`);
    const inq = await s.command(0, cdb([0x12, 0, 0, 0, 96, 0]), { readLength: 96 });
    t.deepEqual([inq.status, inq.data[5] & 0x30], [GOOD, 0x10], `site ${site}: INQUIRY answers, TPGS 01b`);
    // Until the secondary's link to the primary is up, its own port group is transitioning.
    for (const until = performance.now() + 30_000; (await s.command(0, TUR)).status !== GOOD && performance.now() < until;) await new Promise((res) => setTimeout(res, 200));
    let r = await s.command(0, cdb([0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), { readLength: 256 });
    // Unit attentions first (power on; the state change when the secondary's link came up).
    for (let i = 0; i < 4 && r.status === CHECK && sense(r)[0] === 6; i++) r = await s.command(0, cdb([0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), { readLength: 256 });
    t.is(r.status, GOOD, `site ${site}: REPORT TARGET PORT GROUPS`);
    reports.push(r.data);
    let read = await s.read10(0, 0, 1);
    for (let i = 0; i < 4 && read.status === CHECK && sense(read)[0] === 6; i++) read = await s.read10(0, 0, 1);
    t.is(read.status, GOOD, site === 1 ? 'the primary serves READ' : 'the secondary serves READ (forwarded to the primary)');
    s.destroy();
  }
  t.true(reports[0].equals(reports[1]), 'the same report at both portals');
  const d = reports[0];
  t.is(d.readUInt32BE(0), 24, 'two descriptors of one port each');
  t.deepEqual([d[4] & 0x0f, d.readUInt16BE(6), d.readUInt16BE(14)], [0x0, 1, 1], 'group 1 (alpha, db\'s primary): active/optimized, port 1');
  t.deepEqual([d[16] & 0x0f, d.readUInt16BE(18), d.readUInt16BE(26)], [0x1, 2, 2], 'group 2 (beta): active/non-optimized, port 2');
});
