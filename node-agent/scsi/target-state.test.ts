// Unit attentions per nexus and LUN, task management, task attributes and device failures, as a
// host sees them through execute() against a real temp-file volume.
import test from 'ava';
import { be, makeFixture, nexus, pattern } from './test-harness.ts';

const MiB = 1024 * 1024;
const GOOD = 0;
const CHECK = 2;
const TUR = [0x00];
const INQUIRY = [0x12, 0, 0, 0, 96, 0];
const REPORT_LUNS = [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
const REQUEST_SENSE = [0x03, 0, 0, 0, 18, 0];
const read10 = (lba: number, blocks: number) => [0x28, 0, ...be(lba, 4), 0, ...be(blocks, 2), 0];
const write10 = (lba: number, blocks: number) => [0x2a, 0, ...be(lba, 4), 0, ...be(blocks, 2), 0];

const twoLuns = { luns: [{ sizeBytes: MiB }, { sizeBytes: MiB }], clearPowerOn: false };

test('a new nexus gets POWER ON, RESET OR BUS DEVICE RESET on its first command to each LUN, once', async (t) => {
  const f = await makeFixture(t, twoLuns);
  const ua = await f.exec(TUR);
  t.deepEqual([ua.status, ua.sk, ua.asc, ua.ascq], [CHECK, 0x6, 0x29, 0x00]);
  t.is((await f.exec(TUR)).status, GOOD);
  const ua1 = await f.exec(read10(0, 1), { lun: 1 });
  t.deepEqual([ua1.sk, ua1.asc], [0x6, 0x29], 'LUN 1 has its own condition');
  t.is((await f.exec(read10(0, 1), { lun: 1 })).status, GOOD);
});

test('INQUIRY and REPORT LUNS neither report nor clear a unit attention; REQUEST SENSE reports and clears it', async (t) => {
  const f = await makeFixture(t, twoLuns);
  t.is((await f.exec(INQUIRY)).status, GOOD);
  t.is((await f.exec(REPORT_LUNS)).status, GOOD);
  const rs = await f.exec(REQUEST_SENSE);
  t.is(rs.status, GOOD);
  t.deepEqual([rs.dataIn![2] & 0x0f, rs.dataIn![12], rs.dataIn![13]], [0x6, 0x29, 0x00]);
  const again = await f.exec(REQUEST_SENSE);
  t.deepEqual([again.dataIn![2] & 0x0f, again.dataIn![12]], [0x0, 0x00], 'cleared');
  t.is((await f.exec(TUR)).status, GOOD);
});

test('a unit attention is reported before an unknown opcode or a bad CDB field, and blocks the write', async (t) => {
  const f = await makeFixture(t, twoLuns);
  const a = await f.exec([0x04]);
  t.deepEqual([a.sk, a.asc], [0x6, 0x29]);
  t.is((await f.exec([0x04])).asc, 0x20);
  const w = await f.exec(write10(0, 1), { lun: 1, dataOut: Buffer.alloc(512, 1) });
  t.deepEqual([w.sk, w.asc], [0x6, 0x29]);
  t.true((await f.exec(read10(0, 1), { lun: 1 })).dataIn?.equals(Buffer.alloc(512)), 'the write was not executed');
});

test('each nexus has its own conditions; a nexus that logs in again starts afresh', async (t) => {
  const f = await makeFixture(t);
  const host2 = nexus('iqn.2026-11.org.example:host2');
  f.target.nexusOpened(host2);
  t.deepEqual([(await f.exec(TUR, { who: host2 })).asc], [0x29]);
  t.is((await f.exec(TUR, { who: host2 })).status, GOOD);
  t.is((await f.exec(TUR)).status, GOOD, 'host1 already consumed its own');
  f.target.nexusClosed(host2);
  f.target.nexusOpened(host2);
  t.is((await f.exec(TUR, { who: host2 })).asc, 0x29);
});

test('a nexus the transport never announced is treated as new', async (t) => {
  const f = await makeFixture(t);
  const stranger = nexus('iqn.2026-11.org.example:stranger');
  t.is((await f.exec(TUR, { who: stranger })).asc, 0x29);
  t.is((await f.exec(TUR, { who: stranger })).status, GOOD);
});

test('LUN RESET: BUS DEVICE RESET FUNCTION OCCURRED for every nexus on that LUN only, reported once', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: MiB }, { sizeBytes: MiB }] });
  const host1 = nexus('iqn.2026-11.org.example:host1');
  const host2 = nexus('iqn.2026-11.org.example:host2');
  f.target.nexusOpened(host2);
  await f.exec(TUR, { who: host2 });
  await f.exec(TUR, { who: host2, lun: 1 });
  for (let i = 0; i < 3; i++) {
    t.is(await f.target.taskManagement({ fn: 'logical-unit-reset', nexus: host1, lun: 0 }), 'function-complete');
  }
  for (const who of [host1, host2]) {
    const r = await f.exec(TUR, { who });
    t.deepEqual([r.sk, r.asc, r.ascq], [0x6, 0x29, 0x03]);
    t.is((await f.exec(TUR, { who })).status, GOOD, 'three resets, one condition');
    t.is((await f.exec(TUR, { who, lun: 1 })).status, GOOD, 'LUN 1 untouched');
  }
});

test('target warm and cold reset: every nexus sees a reset on every LUN', async (t) => {
  for (const fn of ['target-warm-reset', 'target-cold-reset'] as const) {
    const f = await makeFixture(t, { luns: [{ sizeBytes: MiB }, { sizeBytes: MiB }] });
    const host1 = nexus('iqn.2026-11.org.example:host1');
    t.is(await f.target.taskManagement({ fn, nexus: host1, lun: 0 }), 'function-complete');
    for (const lun of [0, 1]) {
      t.deepEqual([(await f.exec(TUR, { lun })).sk, (await f.exec(TUR, { lun })).status], [0x6, GOOD], `${fn} LUN ${lun}`);
    }
  }
});

test('the unit attention queue is bounded and oldest first', async (t) => {
  const f = await makeFixture(t);
  const host1 = nexus('iqn.2026-11.org.example:host1');
  await f.target.taskManagement({ fn: 'logical-unit-reset', nexus: host1, lun: 0 });
  await f.target.taskManagement({ fn: 'target-warm-reset', nexus: host1, lun: 0 });
  t.is((await f.exec(TUR)).ascq, 0x03, 'LUN reset first');
  t.is((await f.exec(TUR)).ascq, 0x00, 'then the target reset');
  t.is((await f.exec(TUR)).status, GOOD);
});

test('task management at a LUN that does not exist; CLEAR ACA and reassignment are not supported', async (t) => {
  const f = await makeFixture(t);
  const host1 = nexus('iqn.2026-11.org.example:host1');
  for (const fn of ['abort-task', 'abort-task-set', 'clear-task-set', 'logical-unit-reset'] as const) {
    t.is(await f.target.taskManagement({ fn, nexus: host1, lun: 5 }), 'lun-does-not-exist', fn);
    t.is(await f.target.taskManagement({ fn, nexus: host1, lun: 0 }), 'function-complete', fn);
  }
  t.is(await f.target.taskManagement({ fn: 'clear-aca', nexus: host1, lun: 0 }), 'function-not-supported');
  t.is(await f.target.taskManagement({ fn: 'task-reassign', nexus: host1, lun: 0 }), 'reassignment-not-supported');
});

test('ABORT TASK SET completes only after the commands already at the device have finished', async (t) => {
  const f = await makeFixture(t);
  const dev = f.devices[0];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const innerWrite = dev.write.bind(dev);
  dev.write = async (offset, data, opts) => {
    await gate;
    return innerWrite(offset, data, opts);
  };
  const write = f.exec(write10(0, 8), { dataOut: pattern(4096, 1) });
  let tmfDone = false;
  const tmf = f.target
    .taskManagement({ fn: 'abort-task-set', nexus: nexus('iqn.2026-11.org.example:host1'), lun: 0 })
    .then((r) => ((tmfDone = true), r));
  await new Promise((r) => setTimeout(r, 20));
  t.false(tmfDone, 'still waiting for the write in flight');
  release();
  t.is(await tmf, 'function-complete');
  t.is((await write).status, GOOD);
});

test('a command aborted while waiting behind an ORDERED one never reaches the device', async (t) => {
  const f = await makeFixture(t);
  const dev = f.devices[0];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const innerWrite = dev.write.bind(dev);
  dev.write = async (offset, data, opts) => {
    await gate;
    return innerWrite(offset, data, opts);
  };
  const ordered = f.exec(write10(0, 1), { dataOut: Buffer.alloc(512, 1), attribute: 'ordered' });
  const abort = new AbortController();
  const behind = f.exec(write10(1, 1), { dataOut: Buffer.alloc(512, 2), signal: abort.signal });
  abort.abort();
  release();
  t.is((await ordered).status, GOOD);
  t.is((await behind).status, 0x40); // TASK ABORTED
  t.true((await f.exec(read10(1, 1))).dataIn?.equals(Buffer.alloc(512)));
});

test('an ORDERED read sees every earlier write; a later SIMPLE read sees the ORDERED write', async (t) => {
  const f = await makeFixture(t);
  const dev = f.devices[0];
  // Make writes slow enough that a parallel read would overtake them.
  const innerWrite = dev.write.bind(dev);
  dev.write = async (offset, data, opts) => {
    await new Promise((r) => setTimeout(r, 30));
    return innerWrite(offset, data, opts);
  };
  const a = pattern(512, 1);
  const b = pattern(512, 2);
  const w1 = f.exec(write10(0, 1), { dataOut: a });
  const r1 = f.exec(read10(0, 1), { attribute: 'ordered' });
  const w2 = f.exec(write10(0, 1), { dataOut: b, attribute: 'ordered' });
  const r2 = f.exec(read10(0, 1));
  const [, got1, , got2] = await Promise.all([w1, r1, w2, r2]);
  t.true(got1.dataIn?.equals(a));
  t.true(got2.dataIn?.equals(b));
});

test('device errors become sense data: EIO on read and write, ENOSPC on a thin volume, EIO on flush', async (t) => {
  const f = await makeFixture(t);
  const dev = f.devices[0];
  dev.failWith = 'EIO';
  const r = await f.exec(read10(0, 1));
  t.deepEqual([r.status, r.sk, r.asc], [CHECK, 0x3, 0x11]);
  const w = await f.exec(write10(0, 1), { dataOut: Buffer.alloc(512) });
  t.deepEqual([w.sk, w.asc], [0x3, 0x0c]);
  const s = await f.exec([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  t.deepEqual([s.sk, s.asc], [0x3, 0x0c]);
  dev.failWith = 'ENOSPC';
  const full = await f.exec(write10(0, 1), { dataOut: Buffer.alloc(512) });
  t.deepEqual([full.sk, full.asc, full.ascq], [0x7, 0x27, 0x07]);
  dev.failWith = undefined;
  t.is((await f.exec(read10(0, 1))).status, GOOD, 'the LUN keeps working');
});

test('a bug in the device layer is not disguised as sense data', async (t) => {
  const f = await makeFixture(t);
  f.devices[0].read = async () => {
    throw new TypeError('bug');
  };
  await t.throwsAsync(f.exec(read10(0, 1)), { instanceOf: TypeError });
  f.devices[0].read = async () => {
    throw Object.assign(new TypeError('misuse'), { code: 'ERR_INVALID_ARG_TYPE' });
  };
  await t.throwsAsync(f.exec(read10(0, 1)), { message: 'misuse' });
});
