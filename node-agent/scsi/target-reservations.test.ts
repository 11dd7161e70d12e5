// Persistent reservations, ALUA and task management through execute() against a real temp-file
// volume, as hosts on two nexuses observe them: conflicts on READ/WRITE, unit attentions on the
// right nexuses, APTPL through the store across a new target, TASK ABORTED for another nexus.
import test from 'ava';
import { AluaPortGroups, type AluaState } from './alua.ts';
import { MemoryReservationStore } from './reservation-store.ts';
import { be, makeFixture, nexus, pattern } from './test-harness.ts';

const GOOD = 0;
const CHECK = 2;
const CONFLICT = 0x18;
const TASK_ABORTED = 0x40;
const TUR = [0x00];
const read10 = (lba: number, blocks: number) => [0x28, 0, ...be(lba, 4), 0, ...be(blocks, 2), 0];
const write10 = (lba: number, blocks: number) => [0x2a, 0, ...be(lba, 4), 0, ...be(blocks, 2), 0];
const host1 = nexus('iqn.2026-11.org.example:host1');
const host2 = nexus('iqn.2026-11.org.example:host2');

function prout(action: number, o: { key?: bigint; sak?: bigint; type?: number; aptpl?: boolean } = {}) {
  const data = Buffer.alloc(24);
  data.writeBigUInt64BE(o.key ?? 0n, 0);
  data.writeBigUInt64BE(o.sak ?? 0n, 8);
  data[20] = o.aptpl ? 1 : 0;
  return { cdb: [0x5f, action, o.type ?? 0, 0, 0, 0, 0, 0, 24, 0], dataOut: data };
}
const prin = (action: number) => [0x5e, action, 0, 0, 0, 0, 0, 0x10, 0, 0];

async function twoHosts(t: Parameters<typeof makeFixture>[0], target?: NonNullable<Parameters<typeof makeFixture>[1]>['target']) {
  const f = await makeFixture(t, { target });
  f.target.nexusOpened(host2);
  await f.exec(TUR, { who: host2 });
  const pr = (who: typeof host1, action: number, o: Parameters<typeof prout>[1] = {}) => {
    const { cdb, dataOut } = prout(action, o);
    return f.exec(cdb, { who, dataOut });
  };
  return { f, pr };
}

test('WRITE EXCLUSIVE: the other host reads but its WRITE gets RESERVATION CONFLICT; PREEMPT moves it and the preempted host sees the UA', async (t) => {
  const { f, pr } = await twoHosts(t);
  t.is((await pr(host1, 0, { sak: 0xa1n })).status, GOOD);
  t.is((await pr(host2, 0, { sak: 0xb2n })).status, GOOD);
  t.is((await pr(host1, 1, { key: 0xa1n, type: 1 })).status, GOOD);
  const data = pattern(512, 3);
  t.is((await f.exec(write10(0, 1), { who: host2, dataOut: data })).status, CONFLICT);
  t.is((await f.exec(read10(0, 1), { who: host2 })).status, GOOD);
  t.is((await f.exec(write10(0, 1), { who: host1, dataOut: data })).status, GOOD);
  t.is((await f.exec(TUR, { who: host2 })).status, GOOD, 'TEST UNIT READY passes any reservation');

  t.is((await pr(host2, 4, { key: 0xb2n, sak: 0xa1n, type: 1 })).status, GOOD);
  const ua = await f.exec(read10(0, 1), { who: host1 });
  t.deepEqual([ua.status, ua.sk, ua.asc, ua.ascq], [CHECK, 6, 0x2a, 0x05], 'REGISTRATIONS PREEMPTED');
  t.is((await f.exec(write10(0, 1), { who: host1, dataOut: data })).status, CONFLICT, 'host1 lost it');
  t.is((await f.exec(write10(0, 1), { who: host2, dataOut: data })).status, GOOD);
  const rr = await f.exec(prin(1));
  t.deepEqual([rr.dataIn!.subarray(8, 16).toString('hex'), rr.dataIn![21]], ['00000000000000b2', 1]);
});

test('EXCLUSIVE ACCESS blocks the other host\'s READ too; INQUIRY, REPORT LUNS and PERSISTENT RESERVE IN still work', async (t) => {
  const { f, pr } = await twoHosts(t);
  await pr(host1, 0, { sak: 1n });
  await pr(host1, 1, { key: 1n, type: 3 });
  t.is((await f.exec(read10(0, 1), { who: host2 })).status, CONFLICT);
  t.is((await f.exec([0x12, 0, 0, 0, 36, 0], { who: host2 })).status, GOOD);
  t.is((await f.exec([0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], { who: host2 })).status, GOOD);
  t.is((await f.exec(prin(0), { who: host2 })).status, GOOD);
  t.is((await f.exec([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], { who: host2 })).status, GOOD, 'READ CAPACITY');
  t.is((await f.exec([0x16, 0, 0, 0, 0, 0], { who: host1 })).status, CONFLICT, 'SCSI-2 RESERVE while registered (CRH 0)');
});

test('APTPL: the reservation is saved before PERSISTENT RESERVE OUT completes and a new target loads it', async (t) => {
  const store = new MemoryReservationStore();
  const { f, pr } = await twoHosts(t, { reservationStore: store });
  await pr(host1, 0, { sak: 0xa1n, aptpl: true });
  await pr(host1, 1, { key: 0xa1n, type: 1 });
  t.is(store.saves, 2, 'REGISTER and RESERVE each saved');
  const again = await makeFixture(t, { dir: f.dir, target: { reservationStore: store } });
  again.target.nexusOpened(host2);
  await again.exec(TUR, { who: host2 });
  t.is((await again.exec(write10(0, 1), { who: host2, dataOut: Buffer.alloc(512) })).status, CONFLICT, 'the restarted target enforces it');
  t.is((await again.exec(write10(0, 1), { dataOut: Buffer.alloc(512) })).status, GOOD, 'host1 still holds it');

  const volatile = new MemoryReservationStore();
  const v = await twoHosts(t, { reservationStore: volatile });
  await v.pr(host1, 0, { sak: 0xa1n });
  await v.pr(host1, 1, { key: 0xa1n, type: 1 });
  t.is(volatile.saves, 0, 'without APTPL nothing is written');
});

test('PREEMPT AND ABORT: the preempted host\'s queued command ends with TASK ABORTED and never reaches the device', async (t) => {
  const { f, pr } = await twoHosts(t);
  await pr(host1, 0, { sak: 1n });
  await pr(host2, 0, { sak: 2n });
  const dev = f.devices[0];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const innerWrite = dev.write.bind(dev);
  dev.write = async (offset, data, opts) => {
    await gate;
    return innerWrite(offset, data, opts);
  };
  // host1 writes (held at the device), then host2's PREEMPT AND ABORT (ordered after it), then
  // host1's second write, queued behind the preemption.
  const first = f.exec(write10(0, 1), { dataOut: pattern(512, 1) });
  const { cdb, dataOut } = prout(5, { key: 2n, sak: 1n, type: 3 });
  const preempt = f.exec(cdb, { who: host2, dataOut });
  const second = f.exec(write10(1, 1), { dataOut: pattern(512, 2) });
  release();
  t.is((await first).status, GOOD, 'the write already at the device completes');
  t.is((await preempt).status, GOOD);
  t.is((await second).status, TASK_ABORTED);
  t.true((await f.exec(read10(1, 1), { who: host2 })).dataIn?.equals(Buffer.alloc(512)), 'the aborted write never happened');
});

test('CLEAR TASK SET from one host: the other host\'s running command completes first, then reports TASK ABORTED (TAS 1)', async (t) => {
  const { f } = await twoHosts(t);
  const dev = f.devices[0];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const innerWrite = dev.write.bind(dev);
  dev.write = async (offset, data, opts) => {
    await gate;
    return innerWrite(offset, data, opts);
  };
  const other = f.exec(write10(0, 8), { who: host2, dataOut: pattern(4096, 5) });
  let tmfDone = false;
  const tmf = f.target.taskManagement({ fn: 'clear-task-set', nexus: host1, lun: 0 }).then((r) => ((tmfDone = true), r));
  await new Promise((r) => setTimeout(r, 20));
  t.false(tmfDone, 'waits for the write at the device');
  release();
  t.is(await tmf, 'function-complete');
  t.is((await other).status, TASK_ABORTED);
  const mode = await f.exec([0x1a, 0x08, 0x0a, 0, 255, 0]);
  t.is(mode.dataIn![4 + 5] & 0x40, 0x40, 'the control mode page says TAS 1');
});

test('ABORT TASK SET waits only for the requesting host\'s commands', async (t) => {
  const { f } = await twoHosts(t);
  const dev = f.devices[0];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const innerWrite = dev.write.bind(dev);
  dev.write = async (offset, data, opts) => {
    await gate;
    return innerWrite(offset, data, opts);
  };
  const other = f.exec(write10(0, 1), { who: host2, dataOut: pattern(512, 5) });
  t.is(await f.target.taskManagement({ fn: 'abort-task-set', nexus: host1, lun: 0 }), 'function-complete');
  release();
  t.is((await other).status, GOOD, 'another nexus\'s task is not aborted by ABORT TASK SET');
});

function aluaGroups(local: AluaState, remote: AluaState = 'active-optimized'): AluaPortGroups {
  return new AluaPortGroups([
    { id: 1, state: local, relativeTargetPortIds: [1] },
    { id: 2, state: remote, relativeTargetPortIds: [2] },
  ]);
}

test('ALUA: INQUIRY says TPGS 01b; REPORT TARGET PORT GROUPS lists both groups in both formats', async (t) => {
  const f = await makeFixture(t, { target: { alua: aluaGroups('active-optimized', 'standby') } });
  t.is((await f.exec([0x12, 0, 0, 0, 96, 0])).dataIn![5] & 0x30, 0x10);
  const rtpg = (format: number, alloc = 256) => f.exec([0xa3, (format << 5) | 0x0a, 0, 0, 0, 0, ...be(alloc, 4), 0, 0]);
  const short = (await rtpg(0)).dataIn!;
  t.is(short.readUInt32BE(0), 24);
  t.deepEqual([short[4] & 0x0f, short.readUInt16BE(6), short[11], short.readUInt16BE(14)], [0x0, 1, 1, 1]);
  t.deepEqual([short[16] & 0x0f, short.readUInt16BE(18), short[23], short.readUInt16BE(26)], [0x2, 2, 1, 2]);
  const ext = (await rtpg(1)).dataIn!;
  t.deepEqual([ext.readUInt32BE(0), ext[4] & 0x70, ext.subarray(8).equals(short.subarray(4))], [28, 0x10, true]);
  t.is((await rtpg(1, 4)).dataIn!.length, 4, 'truncated to the allocation length');
  const bad = await rtpg(2);
  t.deepEqual([bad.sk, bad.asc], [5, 0x24]);
});

test('ALUA states of the local group: standby, unavailable and transitioning refuse media access with their codes; INQUIRY and REPORT TPG still work', async (t) => {
  const table: Array<[AluaState, number, Record<string, boolean>]> = [
    ['standby', 0x0b, { tur: false, read: false, write: false, modeSense: true, prin: true }],
    ['unavailable', 0x0c, { tur: false, read: false, write: false, modeSense: false, prin: false }],
    ['transitioning', 0x0a, { tur: false, read: false, write: false, modeSense: false, prin: false }],
    ['active-non-optimized', 0, { tur: true, read: true, write: true, modeSense: true, prin: true }],
  ];
  for (const [state, ascq, served] of table) {
    const f = await makeFixture(t, { target: { alua: aluaGroups(state) } });
    const cmds: Record<string, { cdb: number[]; dataOut?: Buffer }> = {
      tur: { cdb: TUR },
      read: { cdb: read10(0, 1) },
      write: { cdb: write10(0, 1), dataOut: Buffer.alloc(512) },
      modeSense: { cdb: [0x1a, 0x08, 0x3f, 0, 255, 0] },
      prin: { cdb: prin(0) },
    };
    for (const [name, c] of Object.entries(cmds)) {
      const r = await f.exec(c.cdb, { dataOut: c.dataOut });
      if (served[name]) t.is(r.status, GOOD, `${state}: ${name}`);
      else t.deepEqual([r.status, r.sk, r.asc, r.ascq], [CHECK, 2, 0x04, ascq], `${state}: ${name}`);
    }
    t.is((await f.exec([0x12, 0, 0, 0, 96, 0])).status, GOOD, `${state}: INQUIRY`);
    t.is((await f.exec([0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])).status, GOOD, `${state}: REPORT TARGET PORT GROUPS`);
    t.is((await f.exec([0x03, 0, 0, 0, 18, 0])).status, GOOD, `${state}: REQUEST SENSE`);
  }
});

test('ALUA state change: ASYMMETRIC ACCESS STATE CHANGED on every nexus, then the new state applies', async (t) => {
  const groups = aluaGroups('standby');
  const f = await makeFixture(t, { target: { alua: groups } });
  f.target.nexusOpened(host2);
  await f.exec(TUR, { who: host2 });
  t.is((await f.exec(read10(0, 1))).ascq, 0x0b);
  t.true(groups.setState(1, 'active-optimized'));
  t.false(groups.setState(1, 'active-optimized'), 'no change, no attention');
  for (const who of [host1, host2]) {
    const r = await f.exec(read10(0, 1), { who });
    t.deepEqual([r.sk, r.asc, r.ascq], [6, 0x2a, 0x06]);
    t.is((await f.exec(read10(0, 1), { who })).status, GOOD);
  }
});

test('every reservation change goes to the state mirror before its command completes; a target adopting the states enforces the same reservation', async (t) => {
  const mirrored: Array<{ lun: number; state: import('./persistent-reservations.ts').PrState }> = [];
  let release: (() => void) | undefined;
  const stateMirror = {
    reservations: (lun: number, state: import('./persistent-reservations.ts').PrState) => {
      mirrored.push({ lun, state });
      return new Promise<void>((r) => { release = r; });
    },
  };
  const { f, pr } = await twoHosts(t, { stateMirror });
  // The REGISTER completes only once the mirror says the peer holds it.
  let done = false;
  const registering = pr(host1, 0, { sak: 0xa1n }).then((r) => { done = true; return r; });
  await new Promise((r) => setTimeout(r, 50));
  t.false(done, 'REGISTER completed before the peer held its state');
  t.is(mirrored.length, 1);
  release!();
  t.is((await registering).status, GOOD);
  const auto = (p: Promise<{ status: number }>) => { setTimeout(() => release?.(), 5); return p; };
  t.is((await auto(pr(host2, 0, { sak: 0xb2n }))).status, GOOD);
  t.is((await auto(pr(host2, 1, { key: 0xb2n, type: 1 }))).status, GOOD, 'host2 reserves WRITE EXCLUSIVE');
  t.is(mirrored.length, 3);
  t.is(mirrored[2].state.reservation?.type, 1);

  // The peer site's target (another port) adopts the last state, as a secondary does.
  const peer = await makeFixture(t, { port: { relativeTargetPortId: 2, targetPortGroupId: 2, targetPortName: 'p2' } });
  await peer.target.adoptReservations(0, mirrored[2].state);
  peer.target.nexusOpened(host1);
  peer.target.nexusOpened(host2);
  await peer.exec(TUR, { who: host1 });
  await peer.exec(TUR, { who: host2 });
  t.is((await peer.exec(write10(0, 1), { who: host1, dataOut: pattern(512, 1) })).status, CONFLICT, 'host1 conflicts at the adopting target');
  t.is((await peer.exec(write10(0, 1), { who: host2, dataOut: pattern(512, 2) })).status, GOOD, 'host2 holds the reservation there');
  t.deepEqual(peer.target.reservationStates().map((x) => x.state.registrations.length), [2]);
  void f;
});
