// The portal over real sockets on 127.0.0.1 (port 0), with the real SCSI target over memory
// devices: login, I/O, reinstatement, limits, pings, many sessions at once.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { RawClient, dataOutPdu, defaultIsid, loginPdu, logoutPdu, nopOutPdu, scsiCommandPdu, textOf, textPdu } from './test-support.ts';
import { MemoryDevice, initiatorName, login, makeTarget, portalWith, targetA } from './portal-test-support.ts';
import { ScsiStatus, type ScsiResponse, type ScsiTarget } from '../scsi/types.ts';

const cdb10 = (op: number, lba: number, blocks: number) => [op, 0, (lba >> 24) & 0xff, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, (blocks >> 8) & 0xff, blocks & 0xff, 0];
const read10 = (lba: number, blocks: number) => cdb10(0x28, lba, blocks);
const write10 = (lba: number, blocks: number) => cdb10(0x2a, lba, blocks);

/** Reads data-in until the status; returns data and SCSI status. */
async function collect(client: RawClient): Promise<{ data: Buffer; status: number | undefined }> {
  const parts: Buffer[] = [];
  for (;;) {
    const p = await client.next();
    if (p === undefined) return { data: Buffer.concat(parts), status: undefined };
    if (p.opcode === 0x25) {
      parts.push(p.data);
      if (p.flags & 0x01) return { data: Buffer.concat(parts), status: p.bhs[3] };
    } else if (p.opcode === 0x21) {
      return { data: Buffer.concat(parts), status: p.bhs[3] };
    }
  }
}

/** TEST UNIT READY until GOOD: a new nexus first sees the power-on unit attention (SAM-5 5.14). */
async function settle(client: RawClient, itt: number, cmdSN: number): Promise<number> {
  for (let i = 0; i < 4; i++) {
    client.send(scsiCommandPdu({ itt: itt + i, cmdSN: cmdSN++, cdb: [0], edtl: 0 }));
    if ((await collect(client)).status === 0) return cmdSN;
  }
  throw new Error('unit attention never cleared');
}

test('login, a write with immediate data and R2T, a read back, and logout over a real socket', async (t) => {
  const dev = new MemoryDevice(8 << 20);
  const { portal, log, port } = await portalWith({ targets: [makeTarget(targetA, [dev])] });
  t.teardown(() => portal.close());
  const { client, resp } = await login(port, targetA);
  t.is(resp?.opcode, 0x23);
  t.is(resp?.bhs.readUInt16BE(36), 0);
  t.not(resp?.bhs.readUInt16BE(14), 0, 'a TSIH');
  t.is(textOf(resp!).MaxRecvDataSegmentLength, '262144');
  t.is(portal.sessionCount(), 1);

  const data = randomBytes(300 * 1024);
  const sn = await settle(client, 1000, 1);
  client.send(scsiCommandPdu({ itt: 1, cmdSN: sn, cdb: write10(8, 600), write: true, edtl: data.length, data: data.subarray(0, 65536) }));
  const r2t = await client.next();
  t.is(r2t?.opcode, 0x31);
  const offset = r2t!.bhs.readUInt32BE(40);
  const length = r2t!.bhs.readUInt32BE(44);
  t.is(offset + length, data.length);
  for (let at = offset, sn = 0; at < offset + length; at += 65536, sn++) {
    const end = Math.min(at + 65536, offset + length);
    client.send(dataOutPdu({ itt: 1, ttt: r2t!.ttt, offset: at, data: data.subarray(at, end), final: end === offset + length, dataSN: sn }));
  }
  const w = await collect(client);
  t.is(w.status, 0);
  const stored = dev.bytes.subarray(8 * 512, 8 * 512 + data.length);
  const firstDiff = stored.findIndex((b, i) => b !== data[i]);
  t.is(firstDiff, -1, `first differing byte at ${firstDiff}`);

  client.send(scsiCommandPdu({ itt: 2, cmdSN: sn + 1, cdb: read10(8, 600), read: true, edtl: data.length }));
  const r = await collect(client);
  t.is(r.status, 0);
  t.true(r.data.equals(data), 'read back what was written');

  client.send(logoutPdu({ itt: 3, cmdSN: sn + 2 }));
  const out = await client.next();
  t.is(out?.opcode, 0x26);
  await client.closedPromise;
  t.is(portal.sessionCount(), 0);
  t.deepEqual(log.errors(), []);
});

test('a discovery session lists the targets with SendTargets=All', async (t) => {
  const { portal, port } = await portalWith({ targets: [makeTarget(targetA, [new MemoryDevice(1 << 20)])] });
  t.teardown(() => portal.close());
  const client = await RawClient.connect(port);
  client.send(loginPdu({ csg: 1, nsg: 3, transit: true, keys: { InitiatorName: initiatorName, SessionType: 'Discovery' } }));
  t.is((await client.next())?.bhs.readUInt16BE(36), 0);
  client.send(textPdu({ itt: 2, cmdSN: 1, keys: { SendTargets: 'All' } }));
  t.deepEqual(textOf((await client.next())!), { TargetName: targetA, TargetAddress: '127.0.0.1:3260,1' });
  client.close();
});

test('a second login from the same initiator port with TSIH 0 reinstates the session: the old connection goes', async (t) => {
  const { portal, port } = await portalWith({ targets: [makeTarget(targetA, [new MemoryDevice(1 << 20)])] });
  t.teardown(() => portal.close());
  const first = await login(port, targetA);
  const tsih1 = first.resp!.bhs.readUInt16BE(14);
  const second = await login(port, targetA);
  t.is(second.resp?.bhs.readUInt16BE(36), 0);
  await first.client.closedPromise;
  t.true(first.client.closed);
  t.is(portal.sessionCount(), 1);
  t.not(second.resp!.bhs.readUInt16BE(14), tsih1);
  const other = await login(port, targetA, { isid: Buffer.from([0x80, 0, 0, 0, 0, 9]) });
  t.is(other.resp?.bhs.readUInt16BE(36), 0);
  t.is(portal.sessionCount(), 2, 'another ISID is another session');
  second.client.close();
  other.client.close();
});

test('login refusals reach the initiator as status class and detail, then the connection closes', async (t) => {
  const chap = { user: 'host1', secret: 'initiator-secret-1' };
  const { portal, port, log } = await portalWith({ targets: [makeTarget(targetA, [new MemoryDevice(1 << 20)])], chap, initiators: [initiatorName] });
  t.teardown(() => portal.close());
  const cases: Array<[string, Record<string, string>, number]> = [
    ['no credentials', { InitiatorName: initiatorName, TargetName: targetA, AuthMethod: 'None' }, 0x0201],
    ['an initiator outside the allow-list', { InitiatorName: 'iqn.2026-11.org.example:stranger', TargetName: targetA, AuthMethod: 'CHAP' }, 0x0202],
    ['an unknown target', { InitiatorName: initiatorName, TargetName: 'iqn.2026-11.io.metrocluster:none', AuthMethod: 'CHAP' }, 0x0203],
  ];
  for (const [name, keys, status] of cases) {
    const client = await RawClient.connect(port);
    client.send(loginPdu({ csg: 0, nsg: 1, transit: true, keys }));
    const resp = await client.next();
    t.is(resp?.bhs.readUInt16BE(36), status, name);
    await client.closedPromise;
  }
  t.false(JSON.stringify(log.lines).includes(chap.secret), 'the secret is never logged');
});

test('a login that does not finish in time is dropped', async (t) => {
  const { portal, port } = await portalWith({ targets: [makeTarget(targetA, [new MemoryDevice(1 << 20)])], limits: { loginTimeoutMs: 300 } });
  t.teardown(() => portal.close());
  const client = await RawClient.connect(port);
  const start = Date.now();
  await client.closedPromise;
  t.true(Date.now() - start < 3000);
});

test('an idle session is pinged with NOP-In, and dropped when it stops answering', async (t) => {
  const { portal, port } = await portalWith({
    targets: [makeTarget(targetA, [new MemoryDevice(1 << 20)])],
    limits: { nopInIntervalMs: 200, nopInTimeoutMs: 1500 },
  });
  t.teardown(() => portal.close());
  const { client } = await login(port, targetA);
  const ping = await client.next(3000);
  t.is(ping?.opcode, 0x20);
  t.is(ping?.itt, 0xffffffff);
  client.send(nopOutPdu({ itt: 0xffffffff, ttt: ping!.ttt, cmdSN: 1, immediate: true }));
  const ping2 = await client.next(3000);
  t.is(ping2?.opcode, 0x20, 'answered: still logged in and pinged again');
  await client.closedPromise;
  t.is(portal.sessionCount(), 0);
});

test('many sessions at once each write and read back their own blocks', async (t) => {
  const dev = new MemoryDevice(16 << 20);
  const { portal, port, log } = await portalWith({ targets: [makeTarget(targetA, [dev])] });
  t.teardown(() => portal.close());
  const sessions = 24;
  await Promise.all(
    Array.from({ length: sessions }, async (_, i) => {
      const isid = Buffer.from(defaultIsid);
      isid[5] = i;
      const { client, resp } = await login(port, targetA, { isid });
      t.is(resp?.bhs.readUInt16BE(36), 0, `session ${i}`);
      const mine = Buffer.alloc(8192, i + 1);
      let sn = await settle(client, 1000, 1);
      for (let k = 0; k < 5; k++) {
        client.send(scsiCommandPdu({ itt: 10 + k, cmdSN: sn++, cdb: write10(i * 64 + k * 16, 16), write: true, edtl: 8192, data: mine }));
        t.is((await collect(client)).status, 0);
        client.send(scsiCommandPdu({ itt: 100 + k, cmdSN: sn++, cdb: read10(i * 64 + k * 16, 16), read: true, edtl: 8192 }));
        t.true((await collect(client)).data.equals(mine), `session ${i} reads its own data`);
      }
      client.close();
    }),
  );
  t.deepEqual(log.errors(), []);
});

/** A target whose commands wait until the test lets them finish. */
function heldTarget(iqn: string) {
  const held: Array<() => void> = [];
  const target: ScsiTarget = {
    iqn,
    luns: () => [0],
    execute: () =>
      new Promise<ScsiResponse>((resolve) => {
        held.push(() => resolve({ status: ScsiStatus.Good }));
      }),
    taskManagement: async () => 'function-complete',
    nexusOpened: () => undefined,
    nexusClosed: () => undefined,
  };
  return { target, held };
}

test('a reinstating login waits until the replaced session has no command left in the SCSI layer', async (t) => {
  const { target, held } = heldTarget(targetA);
  const { portal, port } = await portalWith({ targets: [target] });
  t.teardown(() => portal.close());
  const first = await login(port, targetA);
  first.client.send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: write10(0, 1), write: true, edtl: 512, data: Buffer.alloc(512, 1) }));
  while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
  const second = await RawClient.connect(port);
  second.send(loginPdu({ csg: 1, nsg: 3, transit: true, keys: { InitiatorName: initiatorName, TargetName: targetA } }));
  await first.client.closedPromise;
  t.is(await second.next(300), undefined, 'no login response while the old write is in flight');
  held[0]();
  const resp = await second.next();
  t.is(resp?.bhs.readUInt16BE(36), 0);
  t.is(portal.sessionCount(), 1);
  second.close();
});

test('after a lost connection, a new login of the same initiator port waits for the old commands too', async (t) => {
  const { target, held } = heldTarget(targetA);
  const { portal, port } = await portalWith({ targets: [target] });
  t.teardown(() => portal.close());
  const first = await login(port, targetA);
  first.client.send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: write10(0, 1), write: true, edtl: 512, data: Buffer.alloc(512, 1) }));
  while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
  first.client.close();
  await first.client.closedPromise;
  await new Promise((r) => setTimeout(r, 50));
  const second = await RawClient.connect(port);
  second.send(loginPdu({ csg: 1, nsg: 3, transit: true, keys: { InitiatorName: initiatorName, TargetName: targetA } }));
  t.is(await second.next(300), undefined, 'held while the old write is in flight');
  const other = await login(port, targetA, { isid: Buffer.from([0x80, 0, 0, 0, 0, 0x42]) });
  t.is(other.resp?.bhs.readUInt16BE(36), 0, 'another initiator port does not wait');
  held[0]();
  t.is((await second.next())?.bhs.readUInt16BE(36), 0);
  second.close();
  other.client.close();
});

test('a reinstating login is refused as service unavailable if the old commands never finish', async (t) => {
  const { target, held } = heldTarget(targetA);
  const { portal, port } = await portalWith({ targets: [target], limits: { reinstatementDrainMs: 200 } });
  t.teardown(() => portal.close());
  const first = await login(port, targetA);
  first.client.send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: read10(0, 1), read: true, edtl: 512 }));
  while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
  const second = await login(port, targetA);
  t.is(second.resp?.bhs.readUInt16BE(36), 0x0301);
  await second.client.closedPromise;
  const third = await login(port, targetA);
  t.is(third.resp?.bhs.readUInt16BE(36), 0x0301, 'still refused while the command hangs');
  held[0]();
  const fourth = await login(port, targetA);
  t.is(fourth.resp?.bhs.readUInt16BE(36), 0, 'admitted once it finished');
  fourth.client.close();
});

test('closing the portal with a grace period asks every initiator to log out (Async Message)', async (t) => {
  const { portal, port } = await portalWith({ targets: [makeTarget(targetA, [new MemoryDevice(1 << 20)])] });
  const { client } = await login(port, targetA);
  const closing = portal.close({ graceMs: 2000 });
  const msg = await client.next();
  t.is(msg?.opcode, 0x32);
  t.is(msg?.bhs[36], 1, 'event: request logout');
  t.is(msg?.bhs.readUInt16BE(42), 2, 'within 2 seconds');
  client.send(logoutPdu({ itt: 5, cmdSN: 1 }));
  t.is((await client.next())?.opcode, 0x26);
  await closing;
  t.true(client.closed);
});

// ---- limits against a hostile initiator (RFC 7143 §11.13.5 status classes) ----

const isid = (n: number) => Buffer.from([0x80, 0, 0, 0, (n >> 8) & 0xff, n & 0xff]);

test('sessions of one initiator past the limit are refused at login with "out of resources"; other initiators are not', async (t) => {
  const { portal, port, log } = await portalWith({ targets: [makeTarget(targetA, [new MemoryDevice(1 << 20)])], limits: { sessionsPerInitiatorMax: 3 } });
  t.teardown(() => portal.close());
  const held = [];
  for (let i = 0; i < 3; i++) {
    const { client, resp } = await login(port, targetA, { isid: isid(i), name: 'iqn.2026-11.org.example:greedy' });
    t.is(resp?.bhs.readUInt16BE(36), 0, `session ${i}`);
    held.push(client);
  }
  const { client: refused, resp } = await login(port, targetA, { isid: isid(9), name: 'iqn.2026-11.org.example:greedy' });
  t.is(resp?.opcode, 0x23);
  t.is(resp?.bhs.readUInt16BE(36), 0x0302, 'status class 3 (target error), detail 2 (out of resources)');
  await refused.closedPromise;
  const { resp: other } = await login(port, targetA, { isid: isid(1) });
  t.is(other?.bhs.readUInt16BE(36), 0, 'another initiator logs in');
  t.is(portal.sessionCount(), 4);
  t.true(log.lines.some((l) => l.msg === 'iSCSI login refused' && /3 sessions already/.test(JSON.stringify(l.meta))));
  for (const c of held) c.close();
});

test('connections past the limit are answered "out of resources" at their login and closed', async (t) => {
  const { portal, port } = await portalWith({ targets: [makeTarget(targetA, [new MemoryDevice(1 << 20)])], limits: { connectionsMax: 4 } });
  t.teardown(() => portal.close());
  const idle = await Promise.all(Array.from({ length: 4 }, () => RawClient.connect(port)));
  await new Promise((r) => setTimeout(r, 50));
  const { client, resp } = await login(port, targetA);
  t.is(resp?.bhs.readUInt16BE(36), 0x0302);
  t.deepEqual(resp?.bhs.subarray(8, 14), defaultIsid, 'the refusal echoes the ISID');
  await client.closedPromise;
  idle[0].close();
  await new Promise((r) => setTimeout(r, 50));
  const { resp: after } = await login(port, targetA, { isid: isid(7) });
  t.is(after?.bhs.readUInt16BE(36), 0, 'a freed connection slot is usable again');
  for (const c of idle) c.close();
});

test('a login PDU over 8 KiB is refused from its header: the data is never awaited', async (t) => {
  const { portal, port } = await portalWith({ targets: [makeTarget(targetA, [new MemoryDevice(1 << 20)])] });
  t.teardown(() => portal.close());
  const client = await RawClient.connect(port);
  const big = loginPdu({ csg: 1, nsg: 3, transit: true, itt: 0x1234, keys: { InitiatorName: initiatorName, TargetName: targetA, Junk: 'x'.repeat(200_000) } });
  // Only the header goes out: the answer cannot depend on the 200 KB that never come.
  client.socket.write(big.bhs);
  const resp = await client.next();
  t.is(resp?.opcode, 0x23);
  t.is(resp?.itt, 0x1234);
  t.is(resp?.bhs.readUInt16BE(36), 0x0200, 'initiator error');
  await client.closedPromise;
});

test('logins that never finish cannot crowd out a prompt one: the oldest unfinished login is closed', async (t) => {
  const { portal, port, log } = await portalWith({ targets: [makeTarget(targetA, [new MemoryDevice(1 << 20)])], limits: { loginsInProgressMax: 8, loginTimeoutMs: 60_000 } });
  t.teardown(() => portal.close());
  const stuck = [];
  for (let i = 0; i < 20; i++) {
    const c = await RawClient.connect(port);
    c.socket.write(Buffer.alloc(20)); // a third of a header, then nothing
    stuck.push(c);
  }
  await new Promise((r) => setTimeout(r, 100));
  t.is(stuck.filter((c) => !c.closed).length, 8, 'at most loginsInProgressMax unfinished logins stay open');
  t.true(stuck.slice(0, 12).every((c) => c.closed), 'the oldest went first');
  const { resp } = await login(port, targetA);
  t.is(resp?.bhs.readUInt16BE(36), 0, 'a prompt login gets in');
  t.true(log.lines.some((l) => l.msg === 'iSCSI login closed to make room for a newer one'));
  for (const c of stuck) c.close();
});

test('a host flooding the portal with logins displaces its own, not another host\'s login in progress', async (t) => {
  const { portal, port } = await portalWith({ targets: [makeTarget(targetA, [new MemoryDevice(1 << 20)])], limits: { loginsInProgressMax: 4, loginTimeoutMs: 60_000 } });
  t.teardown(() => portal.close());
  const net = await import('node:net');
  // A login in progress from 127.0.0.1, older than every flooding connection from 127.0.0.2.
  const patient = await RawClient.connect(port);
  patient.socket.write(Buffer.alloc(10));
  const flood: import('node:net').Socket[] = [];
  for (let i = 0; i < 12; i++) {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' });
    s.on('error', () => undefined);
    await new Promise((r) => s.once('connect', r));
    flood.push(s);
  }
  await new Promise((r) => setTimeout(r, 100));
  t.false(patient.closed, 'the other host\'s login stays');
  t.is(flood.filter((s) => !s.destroyed && s.readable).length, 3, 'the flooding host keeps only the rest of the slots');
  patient.close();
  for (const s of flood) s.destroy();
});
