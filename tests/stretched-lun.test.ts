// The stretched LUN against real processes (DESIGN.md "Data path", issue 4 item 5): the secondary's
// portal forwards every command to the group's primary, so a host sees one device through either
// site. qemu-io writes through one portal and reads back through the other; persistent reservations
// made through one site are seen and enforced through the other, with each registration's relative
// target port; a nexus lost at the secondary releases its SCSI-2 reservation at the primary; a
// stopped primary makes the secondary answer NOT READY (ALUA transition) instead of hanging, and
// forwarding resumes once the primary runs again.
import test from 'ava';
import { startCluster, type TestCluster } from './harness/cluster.ts';
import { cdb } from './harness/fuzz.ts';
import type { TestSession } from './harness/initiator.ts';
import { qemuIo } from './harness/mirror-status.ts';
import { open, prout, sense, TUR, waitForwarding } from './harness/scsi-host.ts';
import { requireTools } from './harness/tools.ts';

let cluster: TestCluster | undefined;
test.after.always(async () => {
  for (const pid of stopped) try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ }
  await cluster?.stop();
});
const stopped = new Set<number>();

const GOOD = 0;
const CHECK = 2;
const CONFLICT = 0x18;
const RTPG = cdb([0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
const prin = (action: number): Buffer => cdb([0x5e, action, 0, 0, 0, 0, 0, 0x10, 0, 0]);

async function getCluster(): Promise<TestCluster> {
  // Sync mirroring: the secondary stays up-to-date, so its port group is active/non-optimized.
  cluster ??= await startCluster({
    groups: `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 16MiB } ]`,
    extra: 'replication: { ack: sync }',
  });
  // The secondary's portal forwards once its link to the primary is up.
  await waitForwarding(cluster, 'db');
  return cluster;
}

/** Consumes pending unit attentions until TEST UNIT READY is GOOD (the path forwards). */
async function settle(s: TestSession, deadlineMs = 30_000): Promise<void> {
  const until = performance.now() + deadlineMs;
  let last = '';
  while (performance.now() < until) {
    const r = await s.command(0, TUR);
    if (r.status === GOOD) return;
    last = `${r.status} ${sense(r).map((x) => x.toString(16)).join('/')}`;
    if (sense(r)[0] === 2) await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error(`TEST UNIT READY never became GOOD (last: ${last})`);
}

/** The asymmetric access state of each port group in a REPORT TARGET PORT GROUPS answer, by group id. */
function portGroupStates(d: Buffer): Record<number, number> {
  const out: Record<number, number> = {};
  for (let at = 4; at + 8 <= 4 + d.readUInt32BE(0); at += 8 + 4 * d[at + 7]) out[d.readUInt16BE(at + 2)] = d[at] & 0x0f;
  return out;
}

test.serial('REPORT TARGET PORT GROUPS through either portal: the primary active/optimized, the forwarding secondary active/non-optimized', async (t) => {
  const c = await getCluster();
  for (const site of [1, 2] as const) {
    const s = await open(c, site, `alua-${site}`);
    await settle(s);
    const r = await s.command(0, RTPG, { readLength: 256 });
    t.is(r.status, GOOD);
    t.deepEqual(portGroupStates(r.data), { 1: 0x0, 2: 0x1 }, `through site ${site}: group 1 active/optimized, group 2 active/non-optimized`);
    const inq = await s.command(0, cdb([0x12, 1, 0x83, 0, 255, 0]), { readLength: 255 });
    // Relative target port designator (association 1, type 4): the port the host came in through.
    let rtpi = -1;
    for (let at = 4; at + 4 <= inq.data.length; at += 4 + inq.data[at + 3]) {
      if (((inq.data[at + 1] >> 4) & 3) === 1 && (inq.data[at + 1] & 0x0f) === 4) rtpi = inq.data.readUInt16BE(at + 6);
    }
    t.is(rtpi, site, `VPD 0x83 through site ${site} names relative target port ${site}`);
    s.destroy();
  }
});

test.serial('qemu-io: a write through one site\'s portal reads back through the other\'s', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const c = await getCluster();
  const url = (site: 1 | 2) => `iscsi://${c.portal(site)}/${c.iqn('db')}/0`;
  await qemuIo(url(2), ['write -P 0x5a 0 64k', 'write -P 0x3c 5M 1M', 'flush']);
  await qemuIo(url(1), ['read -P 0x5a 0 64k', 'read -P 0x3c 5M 1M', 'write -P 0xa5 2M 128k']);
  const out = await qemuIo(url(2), ['read -P 0xa5 2M 128k', 'read -P 0 3M 4k']);
  t.regex(out, /read 131072\/131072 bytes/);
});

test.serial('persistent reservations through both sites: seen and enforced across sites, READ FULL STATUS names each relative target port, preemption UAs reach the other site', async (t) => {
  const c = await getCluster();
  const a = await open(c, 1, 'pr-a');
  const b = await open(c, 2, 'pr-b');
  await settle(a);
  await settle(b);
  const out = (s: TestSession, p: { cdb: Buffer; data: Buffer }) => s.command(0, p.cdb, { dataOut: p.data });
  t.is((await out(a, prout(0, { sak: 0xa0a0n }))).status, GOOD, 'a registers through alpha');
  t.is((await out(a, prout(1, { key: 0xa0a0n, type: 1 }))).status, GOOD, 'a reserves WRITE EXCLUSIVE through alpha');

  const keys = await b.command(0, prin(0), { readLength: 0x1000 });
  t.deepEqual([keys.status, keys.data.readUInt32BE(4), keys.data.subarray(8, 16).toString('hex')], [GOOD, 8, '000000000000a0a0'], 'b sees a\'s key through beta');
  const block = Buffer.alloc(512, 0x7e);
  t.is((await b.write10(0, 10, block)).status, CONFLICT, 'b\'s WRITE through beta conflicts');
  t.is((await b.read10(0, 10, 1)).status, GOOD, 'b\'s READ through beta works');

  t.is((await out(b, prout(0, { sak: 0xb0b0n }))).status, GOOD, 'b registers through beta');
  const full = await a.command(0, prin(3), { readLength: 0x1000 });
  t.is(full.status, GOOD);
  const ports: Record<string, number> = {};
  for (let at = 8; at + 24 <= 8 + full.data.readUInt32BE(4); at += 24 + full.data.readUInt32BE(at + 20)) {
    ports[full.data.subarray(at, at + 8).toString('hex')] = full.data.readUInt16BE(at + 18);
  }
  t.deepEqual(ports, { '000000000000a0a0': 1, '000000000000b0b0': 2 }, 'READ FULL STATUS: a through port 1, b through port 2');

  t.is((await out(a, prout(4, { key: 0xa0a0n, sak: 0xb0b0n, type: 1 }))).status, GOOD, 'a preempts b through alpha');
  const ua = await b.read10(0, 10, 1);
  t.deepEqual([ua.status, ...sense(ua)], [CHECK, 6, 0x2a, 0x05], 'b sees REGISTRATIONS PREEMPTED on its next command through beta');
  t.is((await a.write10(0, 10, block)).status, GOOD, 'a writes through alpha');
  t.is((await out(a, prout(3, { key: 0xa0a0n }))).status, GOOD, 'a clears');
  t.is((await b.write10(0, 10, block)).status, GOOD, 'b writes through beta once the reservation is gone');
  a.destroy();
  b.destroy();
});

test.serial('a nexus lost at the secondary releases its SCSI-2 reservation at the primary', async (t) => {
  const c = await getCluster();
  const a = await open(c, 1, 'r2-a');
  const b = await open(c, 2, 'r2-b');
  await settle(a);
  await settle(b);
  t.is((await b.command(0, cdb([0x16, 0, 0, 0, 0, 0]))).status, GOOD, 'b RESERVE(6) through beta');
  const block = Buffer.alloc(512, 0x11);
  t.is((await a.write10(0, 20, block)).status, CONFLICT, 'a\'s WRITE through alpha conflicts with b\'s reservation');
  b.destroy(); // connection loss: I_T nexus loss at beta, forwarded to alpha
  let status = -1;
  for (let i = 0; i < 50 && status !== GOOD; i++) {
    status = (await a.write10(0, 20, block)).status;
    if (status !== GOOD) await new Promise((r) => setTimeout(r, 100));
  }
  t.is(status, GOOD, 'after b\'s nexus is gone, a writes');
  a.destroy();
});

test.serial('primary stopped: the secondary answers NOT READY (ALUA transition) within a bound, never hangs, and serves again (forwarding, or promoted)', async (t) => {
  const c = await getCluster();
  const b = await open(c, 2, 'link-b');
  await settle(b);
  const pid = c.up.pidOf('agent alpha');
  process.kill(pid, 'SIGSTOP');
  stopped.add(pid);
  const started = performance.now();
  const r = await b.read10(0, 0, 8);
  const ms = performance.now() - started;
  t.deepEqual([r.status, ...sense(r)], [CHECK, 2, 0x04, 0x0a], 'READ: NOT READY, ASYMMETRIC ACCESS STATE TRANSITION');
  t.true(ms < 20_000, `answered in ${Math.round(ms)} ms`);
  // Answered by the secondary itself now: its own port group transitioning while it cannot reach the
  // primary, unavailable once that lasted past the transition bound (alua-policy.ts) until the
  // witness promotes it, or active/optimized once promoted (the primary's lease ran out).
  let rtpg = await b.command(0, RTPG, { readLength: 256 });
  while (rtpg.status === CHECK && sense(rtpg)[0] === 6) rtpg = await b.command(0, RTPG, { readLength: 256 });
  t.is(rtpg.status, GOOD);
  t.true([0xf, 0x3, 0x0].includes(portGroupStates(rtpg.data)[2]), `group 2 (beta) transitioning, unavailable or, promoted, active/optimized: ${portGroupStates(rtpg.data)[2]}`);
  process.kill(pid, 'SIGCONT');
  stopped.delete(pid);
  await settle(b, 60_000);
  const back = await b.read10(0, 0, 8);
  t.is(back.status, GOOD, 'READ through beta works again (forwarded, or served by beta promoted)');
  b.destroy();
});
