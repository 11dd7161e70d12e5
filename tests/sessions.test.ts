// Session handling at a running agent, with the test initiator: many sessions at once, session
// reinstatement by ISID (RFC 7143 §6.3.5), SendTargets over a discovery session.
import test from 'ava';
import { startCluster, type TestCluster } from './harness/cluster.ts';
import { TestSession } from './harness/initiator.ts';

let cluster: TestCluster | undefined;
test.before(async () => { cluster = await startCluster(); });
test.after.always(async () => { await cluster?.stop(); });

function hostPort(c: TestCluster, site: 1 | 2): { host: string; port: number } {
  const [host, port] = c.portal(site).split(':');
  return { host, port: Number(port) };
}

/** The first command of a new nexus reports the power-on unit attention; clear it. */
async function clearUnitAttention(s: TestSession): Promise<void> {
  const r = await s.command(0, Buffer.from([0, 0, 0, 0, 0, 0]));
  if (r.status !== 0 && r.sense[2] !== 0x06) throw new Error(`TEST UNIT READY: status ${r.status}`);
}

test.serial('64 sessions at once each write and read back their own blocks', async (t) => {
  const c = cluster!;
  const sessions = await Promise.all(Array.from({ length: 64 }, (_, i) => TestSession.open({
    ...hostPort(c, 1), initiatorName: `iqn.2026-11.org.example:many-${i}`, targetName: c.iqn('db'),
  })));
  await Promise.all(sessions.map(clearUnitAttention));
  await Promise.all(sessions.map(async (s, i) => {
    const w = await s.write10(0, 1000 + i * 16, Buffer.alloc(8192, i + 1));
    t.is(w.status, 0);
  }));
  const reads = await Promise.all(sessions.map((s, i) => s.read10(0, 1000 + i * 16, 16)));
  reads.forEach((r, i) => {
    t.is(r.status, 0);
    t.true(r.data.equals(Buffer.alloc(8192, i + 1)), `session ${i} reads its own data`);
  });
  await Promise.all(sessions.map((s) => s.logout()));
});

test.serial('a new login with the same initiator name and ISID replaces the old session', async (t) => {
  const c = cluster!;
  const isid = Buffer.from([0x80, 0xaa, 0xbb, 0xcc, 0x00, 0x01]);
  const initiatorName = 'iqn.2026-11.org.example:reinstate';
  const first = await TestSession.open({ ...hostPort(c, 1), initiatorName, targetName: c.iqn('db'), isid });
  await clearUnitAttention(first);
  const second = await TestSession.open({ ...hostPort(c, 1), initiatorName, targetName: c.iqn('db'), isid });
  await clearUnitAttention(second);
  // The old connection is closed by the target.
  const until = Date.now() + 5000;
  while (!first.closed && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  t.true(first.closed, 'the reinstated session\'s connection was closed');
  const r = await second.read10(0, 0, 1);
  t.is(r.status, 0);
  // A different ISID is a different session and leaves the others alone.
  const third = await TestSession.open({ ...hostPort(c, 1), initiatorName, targetName: c.iqn('db'), isid: Buffer.from([0x80, 0xaa, 0xbb, 0xcc, 0x00, 0x02]) });
  await clearUnitAttention(third);
  t.false(second.closed);
  t.is((await second.read10(0, 0, 1)).status, 0);
  await second.logout();
  await third.logout();
});

test.serial('SendTargets lists every group\'s target at both sites\' portals, local first', async (t) => {
  const c = cluster!;
  for (const site of [1, 2] as const) {
    const s = await TestSession.open({ ...hostPort(c, site), initiatorName: 'iqn.2026-11.org.example:discover' });
    const targets = await s.sendTargets();
    const other = site === 1 ? 2 : 1;
    t.deepEqual(Object.keys(targets).sort(), [c.iqn('db'), c.iqn('vm')]);
    for (const addrs of Object.values(targets)) {
      t.deepEqual(addrs, [`${c.portal(site)},${site}`, `${c.portal(other)},${other}`]);
    }
    await s.logout();
  }
});

test.serial('NOP-Out is answered and a nonexistent target is refused at login', async (t) => {
  const c = cluster!;
  const s = await TestSession.open({ ...hostPort(c, 2), initiatorName: 'iqn.2026-11.org.example:nop', targetName: c.iqn('vm') });
  await s.nop();
  await s.logout();
  await t.throwsAsync(
    TestSession.open({ ...hostPort(c, 2), initiatorName: 'iqn.2026-11.org.example:nop', targetName: `${c.iqn('vm')}-missing` }),
    { message: /login refused: status class 2 detail 3/ },
  );
});
