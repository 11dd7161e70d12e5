// Persistent reservations and ALUA against a real agent, as two hosts with different initiator
// names observe them: a WRITE EXCLUSIVE reservation, PREEMPT and its unit attention, the APTPL
// reservation after a SIGKILL and restart by `metroctl up`, and both sites' port groups.
import test from 'ava';
import { startCluster, type TestCluster } from './harness/cluster.ts';
import { TestSession } from './harness/initiator.ts';

let cluster: TestCluster | undefined;
test.after.always(async () => { await cluster?.stop(); });

const GOOD = 0;
const CHECK = 2;
const CONFLICT = 0x18;
const cdb = (bytes: number[]): Buffer => { const b = Buffer.alloc(16); Buffer.from(bytes).copy(b); return b; };
const TUR = cdb([0x00]);

function prout(action: number, o: { key?: bigint; sak?: bigint; type?: number; aptpl?: boolean }): { cdb: Buffer; data: Buffer } {
  const data = Buffer.alloc(24);
  data.writeBigUInt64BE(o.key ?? 0n, 0);
  data.writeBigUInt64BE(o.sak ?? 0n, 8);
  data[20] = o.aptpl ? 1 : 0;
  return { cdb: cdb([0x5f, action, o.type ?? 0, 0, 0, 0, 0, 0, 24, 0]), data };
}

async function open(c: TestCluster, site: 1 | 2, who: string, group = 'db'): Promise<TestSession> {
  const [host, port] = c.portal(site).split(':');
  // A fixed ISID, as a host's iSCSI interface keeps: the same initiator port after a reconnect.
  const isid = Buffer.from([0x80, 0x12, 0x34, 0x56, 0x00, who.length]);
  return TestSession.open({ host, port: Number(port), initiatorName: `iqn.2026-11.org.example:${who}`, targetName: c.iqn(group), isid });
}

/** Consumes pending unit attentions (power on, ...) with TEST UNIT READY. */
async function settle(s: TestSession): Promise<void> {
  for (let i = 0; i < 8; i++) if ((await s.command(0, TUR)).status === GOOD) return;
  throw new Error('TEST UNIT READY never became GOOD');
}

const sense = (r: { sense: Buffer }): [number, number, number] => [r.sense[2] & 0x0f, r.sense[12], r.sense[13]];

test.serial('two hosts: WRITE EXCLUSIVE, RESERVATION CONFLICT, PREEMPT with its UA, and the APTPL reservation survives SIGKILL', async (t) => {
  cluster = await startCluster();
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
  for (let i = 0; ; i++) {
    try { a = await open(c, 1, 'pr-a'); break; } catch (err) { if (i > 50) throw err; await new Promise((r) => setTimeout(r, 200)); }
  }
  b = await open(c, 1, 'pr-b');
  await settle(a);
  await settle(b);
  t.is((await a.write10(0, 100, block)).status, CONFLICT, 'after the restart a still may not write');
  t.is((await b.write10(0, 100, block)).status, GOOD, 'after the restart b still holds the reservation');
  const rr = await a.command(0, cdb([0x5e, 0x01, 0, 0, 0, 0, 0, 0, 64, 0]), { readLength: 64 });
  t.deepEqual([rr.status, rr.data.subarray(8, 16).toString('hex'), rr.data[21]], [GOOD, '000000000000b0b0', 1], 'READ RESERVATION: b\'s key, WRITE EXCLUSIVE');
  t.is((await run(b, prout(3, { key: 0xb0b0n }))).status, GOOD, 'CLEAR');
  a.destroy();
  b.destroy();
});

test.serial('ALUA: both portals report the same two port groups, primary active/optimized; the secondary refuses READ but answers INQUIRY', async (t) => {
  cluster ??= await startCluster();
  const c = cluster;
  const reports: Buffer[] = [];
  for (const site of [1, 2] as const) {
    const s = await open(c, site, `alua-${site}`);
    const inq = await s.command(0, cdb([0x12, 0, 0, 0, 96, 0]), { readLength: 96 });
    t.deepEqual([inq.status, inq.data[5] & 0x30], [GOOD, 0x10], `site ${site}: INQUIRY answers, TPGS 01b`);
    let r = await s.command(0, cdb([0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), { readLength: 256 });
    if (r.status === CHECK && sense(r)[0] === 6) r = await s.command(0, cdb([0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), { readLength: 256 });
    t.is(r.status, GOOD, `site ${site}: REPORT TARGET PORT GROUPS`);
    reports.push(r.data);
    const read = await s.read10(0, 0, 1);
    if (site === 1) t.is(read.status === CHECK && sense(read)[0] === 6 ? (await s.read10(0, 0, 1)).status : read.status, GOOD, 'the primary serves READ');
    else t.deepEqual([read.status, ...sense(read)], [CHECK, 2, 0x04, 0x0b], 'the secondary: NOT READY, TARGET PORT IN STANDBY STATE');
    s.destroy();
  }
  t.true(reports[0].equals(reports[1]), 'the same report at both portals');
  const d = reports[0];
  t.is(d.readUInt32BE(0), 24, 'two descriptors of one port each');
  t.deepEqual([d[4] & 0x0f, d.readUInt16BE(6), d.readUInt16BE(14)], [0x0, 1, 1], 'group 1 (alpha, db\'s primary): active/optimized, port 1');
  t.deepEqual([d[16] & 0x0f, d.readUInt16BE(18), d.readUInt16BE(26)], [0x2, 2, 2], 'group 2 (beta): standby, port 2');
});
