import test from 'ava';
import { FullFeatureConnection, type ConnectionLimits } from './connection.ts';
import type { LoginResult } from './login.ts';
import { rfcDefaults, type SessionParams, type TargetPreferences } from './negotiation.ts';
import type { Pdu } from './pdu.ts';
import {
  RecordingIo,
  dataOutPdu,
  logoutPdu,
  nopOutPdu,
  scsiCommandPdu,
  textOf,
  textPdu,
  tmfPdu,
  type TargetPdu,
} from './test-support.ts';
import { ScsiStatus, type Nexus } from '../scsi/types.ts';

const prefs: TargetPreferences = {
  digests: ['CRC32C', 'None'],
  maxRecvDataSegmentBytes: 262144,
  maxBurstBytes: 8388608,
  firstBurstBytes: 262144,
  initialR2T: false,
  immediateData: true,
  maxOutstandingR2T: 16,
  defaultTime2WaitS: 2,
  defaultTime2RetainS: 0,
};
const limitsDefault: ConnectionLimits = {
  commandWindowMax: 8,
  immediateCommandsMax: 2,
  commandDataBytesMax: 1 << 20,
  pendingDataBytesMax: 1 << 20,
  nopInIntervalMs: 1000,
  nopInTimeoutMs: 3000,
};
const nexus: Nexus = { id: 'i,0x1', initiatorName: 'iqn.x:host', isidHex: '000000000001', portalGroupTag: 1 };
const targets = [
  { iqn: 'iqn.2026-11.io.metrocluster:demo.db', portals: [{ address: '127.0.1.1', port: 3260, portalGroupTag: 1 }, { address: 'fd00::2', port: 3260, portalGroupTag: 2 }] },
  { iqn: 'iqn.2026-11.io.metrocluster:demo.vm', portals: [{ address: '127.0.1.1', port: 3260, portalGroupTag: 1 }] },
];

const enum Op {
  NopIn = 0x20,
  ScsiResponse = 0x21,
  TmfResponse = 0x22,
  TextResponse = 0x24,
  DataIn = 0x25,
  LogoutResponse = 0x26,
  R2T = 0x31,
  Reject = 0x3f,
}

function open(opts: { params?: Partial<SessionParams>; limits?: Partial<ConnectionLimits>; discovery?: boolean } = {}) {
  const io = new RecordingIo();
  const login: LoginResult = {
    initiatorName: nexus.initiatorName,
    targetName: opts.discovery ? undefined : targets[0].iqn,
    sessionType: opts.discovery ? 'Discovery' : 'Normal',
    isidHex: nexus.isidHex,
    tsih: 1,
    cid: 0,
    params: { ...rfcDefaults(prefs), ...opts.params },
    cmdSN: 1,
    statSN: 100,
  };
  const conn = new FullFeatureConnection(
    { login, nexus, prefs, limits: { ...limitsDefault, ...opts.limits }, discovery: () => targets, nowMs: 0 },
    io,
  );
  const send = (pdu: Pdu, nowMs = 0) => conn.receive({ kind: 'pdu', pdu }, nowMs);
  return { io, conn, send };
}

const read10 = (blocks: number) => [0x28, 0, 0, 0, 0, 0, 0, 0, blocks, 0];
const write10 = (blocks: number) => [0x2a, 0, 0, 0, 0, 0, 0, 0, blocks, 0];
const pattern = (n: number, seed = 1) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));
const ops = (pdus: TargetPdu[]) => pdus.map((p) => p.opcode);

test('a read is split to the initiator MaxRecvDataSegmentLength, numbered, with status in the last Data-In', (t) => {
  const { io, conn, send } = open({ params: { initiatorMaxRecvDataSegmentBytes: 8192 } });
  send(scsiCommandPdu({ itt: 7, cmdSN: 1, cdb: read10(40), read: true, edtl: 20000 }));
  t.is(io.executed.length, 1);
  t.like(io.executed[0].req, { lun: 0, taskTag: 7, expectedDataLength: 20000, attribute: 'simple' });
  const data = pattern(20000);
  conn.complete(io.executed[0].serial, { status: ScsiStatus.Good, dataIn: data, commandTransferBytes: 20000 });
  const out = io.take();
  t.deepEqual(ops(out), [Op.DataIn, Op.DataIn, Op.DataIn]);
  t.deepEqual(out.map((p) => p.bhs.readUInt32BE(40)), [0, 8192, 16384], 'buffer offsets');
  t.deepEqual(out.map((p) => p.bhs.readUInt32BE(36)), [0, 1, 2], 'DataSN');
  t.deepEqual(out.map((p) => p.flags & 0x81), [0, 0, 0x81], 'F and S on the last only');
  t.true(Buffer.concat(out.map((p) => p.data)).equals(data));
  const last = out[2];
  t.is(last.bhs[3], ScsiStatus.Good);
  t.is(last.statSN, 100);
  t.is(last.expCmdSN, 2);
  t.is(last.maxCmdSN, 9, 'the answered command opened its slot again');
});

test('a short read reports an underflow residual; data past EDTL is cut and reported as overflow', (t) => {
  const { io, conn, send } = open();
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: [0x12, 0, 0, 0, 255, 0], read: true, edtl: 255 }));
  conn.complete(io.executed[0].serial, { status: ScsiStatus.Good, dataIn: Buffer.alloc(36, 1), commandTransferBytes: 255 });
  const [under] = io.take();
  t.is(under.flags & 0x06, 0x02);
  t.is(under.bhs.readUInt32BE(44), 219);
  send(scsiCommandPdu({ itt: 2, cmdSN: 2, cdb: read10(2), read: true, edtl: 512 }));
  conn.complete(io.executed[1].serial, { status: ScsiStatus.Good, dataIn: Buffer.alloc(1024, 2), commandTransferBytes: 1024 });
  const [over] = io.take();
  t.is(over.data.length, 512);
  t.is(over.flags & 0x06, 0x04);
  t.is(over.bhs.readUInt32BE(44), 512);
});

test('CHECK CONDITION goes in a SCSI Response with the sense data, never collapsed into Data-In', (t) => {
  const { io, conn, send } = open();
  send(scsiCommandPdu({ itt: 3, cmdSN: 1, cdb: read10(1), read: true, edtl: 512 }));
  const sense = Buffer.from('700005000000000a00000000210000000000', 'hex');
  conn.complete(io.executed[0].serial, { status: ScsiStatus.CheckCondition, sense });
  const out = io.take();
  t.deepEqual(ops(out), [Op.ScsiResponse]);
  t.is(out[0].bhs[3], ScsiStatus.CheckCondition);
  t.is(out[0].data.readUInt16BE(0), sense.length);
  t.deepEqual(out[0].data.subarray(2), sense);
  t.is(out[0].bhs.readUInt32BE(44), 512, 'nothing was transferred: underflow of the whole EDTL');
});

test('a write: immediate data, an unsolicited burst, then R2Ts within MaxBurstLength and MaxOutstandingR2T', (t) => {
  const { io, conn, send } = open({
    params: { initialR2T: false, immediateData: true, firstBurstBytes: 8192, maxBurstBytes: 16384, maxOutstandingR2T: 2 },
  });
  const data = pattern(50000);
  send(scsiCommandPdu({ itt: 9, cmdSN: 1, cdb: write10(98), write: true, final: false, edtl: 50000, data: data.subarray(0, 4096) }));
  t.deepEqual(io.take(), [], 'waiting for the unsolicited burst');
  send(dataOutPdu({ itt: 9, ttt: 0xffffffff, offset: 4096, data: data.subarray(4096, 8192), final: true }));
  let r2ts = io.take();
  t.deepEqual(ops(r2ts), [Op.R2T, Op.R2T]);
  t.deepEqual(r2ts.map((p) => [p.bhs.readUInt32BE(40), p.bhs.readUInt32BE(44), p.bhs.readUInt32BE(36)]), [[8192, 16384, 0], [24576, 16384, 1]]);
  t.is(r2ts[0].statSN, 100, 'R2T carries the next StatSN without using it');
  // Data for the first R2T in two PDUs: the third R2T follows the first's completion.
  const [a, b] = r2ts;
  send(dataOutPdu({ itt: 9, ttt: a.ttt, offset: 8192, data: data.subarray(8192, 16384), final: false, dataSN: 0 }));
  send(dataOutPdu({ itt: 9, ttt: a.ttt, offset: 16384, data: data.subarray(16384, 24576), final: true, dataSN: 1 }));
  r2ts = io.take();
  t.deepEqual(r2ts.map((p) => [p.bhs.readUInt32BE(40), p.bhs.readUInt32BE(44)]), [[40960, 9040]]);
  send(dataOutPdu({ itt: 9, ttt: b.ttt, offset: 24576, data: data.subarray(24576, 40960), final: true }));
  t.is(io.executed.length, 0, 'not before every byte is in');
  send(dataOutPdu({ itt: 9, ttt: r2ts[0].ttt, offset: 40960, data: data.subarray(40960), final: true }));
  t.is(io.executed.length, 1);
  t.true(io.executed[0].req.dataOut?.equals(data));
  const parts = io.executed[0].req.dataOutParts;
  t.true(parts !== undefined && parts.length > 1 && Buffer.concat(parts).equals(data), 'the pieces, in offset order, for WRITE');
  conn.complete(io.executed[0].serial, { status: ScsiStatus.Good, commandTransferBytes: 50000 });
  const [resp] = io.take();
  t.is(resp.opcode, Op.ScsiResponse);
  t.is(resp.flags & 0x06, 0, 'no residual');
});

test('InitialR2T=Yes: a write without immediate data is solicited from offset 0', (t) => {
  const { io, send } = open({ params: { initialR2T: true, immediateData: false, maxBurstBytes: 262144 } });
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: write10(8), write: true, edtl: 4096 }));
  const [r2t] = io.take();
  t.is(r2t.opcode, Op.R2T);
  t.deepEqual([r2t.bhs.readUInt32BE(40), r2t.bhs.readUInt32BE(44)], [0, 4096]);
});

test('commands reach the SCSI layer in CmdSN order even when they arrive out of order', (t) => {
  const { io, send } = open();
  send(scsiCommandPdu({ itt: 2, cmdSN: 2, cdb: read10(1), read: true, edtl: 512 }));
  send(scsiCommandPdu({ itt: 3, cmdSN: 3, cdb: read10(1), read: true, edtl: 512 }));
  t.is(io.executed.length, 0);
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: read10(1), read: true, edtl: 512 }));
  t.deepEqual(io.executed.map((e) => e.req.taskTag), [1, 2, 3]);
});

test('a read behind a write waits for the write data: delivery stays in CmdSN order', (t) => {
  const { io, send } = open({ params: { initialR2T: true, immediateData: false } });
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: write10(1), write: true, edtl: 512 }));
  send(scsiCommandPdu({ itt: 2, cmdSN: 2, cdb: read10(1), read: true, edtl: 512 }));
  t.is(io.executed.length, 0);
  const [r2t] = io.take();
  send(dataOutPdu({ itt: 1, ttt: r2t.ttt, offset: 0, data: Buffer.alloc(512) }));
  t.deepEqual(io.executed.map((e) => e.req.taskTag), [1, 2]);
});

test('an immediate command runs at once and takes no CmdSN', (t) => {
  const { io, conn, send } = open();
  send(scsiCommandPdu({ itt: 5, cmdSN: 1, cdb: [0], edtl: 0, immediate: true }));
  t.is(io.executed.length, 1);
  t.is(conn.expCmdSN, 1);
});

test('commands outside the window are ignored, and the window bounds what the initiator may queue', (t) => {
  const { io, conn, send } = open({ limits: { commandWindowMax: 2 } });
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: read10(1), read: true, edtl: 512 }));
  send(scsiCommandPdu({ itt: 2, cmdSN: 2, cdb: read10(1), read: true, edtl: 512 }));
  send(scsiCommandPdu({ itt: 3, cmdSN: 3, cdb: read10(1), read: true, edtl: 512 }));
  send(scsiCommandPdu({ itt: 4, cmdSN: 0, cdb: read10(1), read: true, edtl: 512 }));
  t.deepEqual(io.executed.map((e) => e.req.taskTag), [1, 2]);
  t.deepEqual(io.take(), [], 'no answer to ignored commands');
  conn.complete(io.executed[0].serial, { status: ScsiStatus.Good, dataIn: Buffer.alloc(512) });
  const [d] = io.take();
  t.is(d.maxCmdSN, 3, 'MaxCmdSN moves once a slot frees');
});

test('ABORT TASK: the aborted command never completes, and the TMF answers after the SCSI layer', (t) => {
  const { io, conn, send } = open();
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: read10(1), read: true, edtl: 512 }));
  const serial = io.executed[0].serial;
  send(tmfPdu({ itt: 50, cmdSN: 2, fn: 1, refItt: 1, refCmdSN: 1 }));
  t.true(io.executed[0].req.signal?.aborted);
  t.deepEqual(io.tmfs.map((x) => x.req.fn), ['abort-task']);
  t.deepEqual(io.take(), []);
  conn.complete(serial, { status: ScsiStatus.Good, dataIn: Buffer.alloc(512) });
  t.deepEqual(io.take(), [], 'no Data-In for an aborted task');
  conn.completeTaskManagement(io.tmfs[0].serial, 'function-complete');
  const [resp] = io.take();
  t.is(resp.opcode, Op.TmfResponse);
  t.is(resp.bhs[2], 0);
  t.is(resp.itt, 50);
});

test('ABORT TASK of a command not yet arrived answers complete and discards it when it comes', (t) => {
  const { io, send } = open();
  send(tmfPdu({ itt: 50, cmdSN: 1, fn: 1, refItt: 9, refCmdSN: 1 }));
  const [resp] = io.take();
  t.is(resp.bhs[2], 0, 'function complete');
  send(scsiCommandPdu({ itt: 9, cmdSN: 1, cdb: read10(1), read: true, edtl: 512 }));
  t.is(io.executed.length, 0);
  send(tmfPdu({ itt: 51, cmdSN: 2, fn: 1, refItt: 77, refCmdSN: 0 }));
  t.is(io.take()[0].bhs[2], 1, 'an old task that does not exist');
});

test('LOGICAL UNIT RESET aborts the tasks of that LUN only', (t) => {
  const { io, send } = open({ params: { initialR2T: true, immediateData: false } });
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, lun: 1, cdb: write10(1), write: true, edtl: 512 }));
  send(scsiCommandPdu({ itt: 2, cmdSN: 2, lun: 0, cdb: read10(1), read: true, edtl: 512 }));
  io.take();
  send(tmfPdu({ itt: 60, cmdSN: 3, fn: 5, lun: 1 }));
  t.deepEqual(io.tmfs.map((x) => [x.req.fn, x.req.lun]), [['logical-unit-reset', 1]]);
  t.deepEqual(io.executed.map((e) => e.req.taskTag), [2], 'the LUN 0 read was stuck behind the write and now runs');
  send(dataOutPdu({ itt: 1, ttt: 1, offset: 0, data: Buffer.alloc(512) }));
  t.deepEqual(ops(io.take()), [Op.Reject], 'data for the aborted write is refused');
});

test('TASK REASSIGN at ERL 0 is refused without reaching the SCSI layer', (t) => {
  const { io, send } = open();
  send(tmfPdu({ itt: 1, cmdSN: 1, fn: 8, refItt: 3 }));
  t.is(io.take()[0].bhs[2], 4);
  t.is(io.tmfs.length, 0);
});

test('NOP-Out with a task tag is echoed in a NOP-In that uses a StatSN', (t) => {
  const { io, send } = open();
  send(nopOutPdu({ itt: 4, cmdSN: 1, immediate: true, data: Buffer.from('ping!') }));
  const [nop] = io.take();
  t.is(nop.opcode, Op.NopIn);
  t.is(nop.itt, 4);
  t.is(nop.ttt, 0xffffffff);
  t.deepEqual(nop.data, Buffer.from('ping!'));
  t.is(nop.statSN, 100);
  send(nopOutPdu({ itt: 5, cmdSN: 1 }));
  t.is(io.take()[0].statSN, 101);
});

test('an idle initiator is pinged; an answer keeps it, silence past the timeout drops it', (t) => {
  const { io, conn, send } = open();
  conn.tick(500);
  t.deepEqual(io.take(), []);
  conn.tick(1000);
  const [ping] = io.take();
  t.like(ping, { opcode: Op.NopIn, itt: 0xffffffff, statSN: 100 });
  send(nopOutPdu({ itt: 0xffffffff, ttt: ping.ttt, cmdSN: 1, immediate: true }), 1200);
  t.deepEqual(io.take(), [], 'a ping answer gets no answer');
  conn.tick(3000);
  t.is(io.closedWith, undefined);
  const [ping2] = io.take();
  t.is(ping2.opcode, Op.NopIn);
  conn.tick(6100);
  t.is(io.closedWith, 'initiator did not answer NOP-In');
});

test('SendTargets=All lists every target and portal; a long answer continues with the C bit and a TTT', (t) => {
  const { io, send } = open({ discovery: true });
  send(textPdu({ itt: 1, cmdSN: 1, keys: { SendTargets: 'All' } }));
  const [whole] = io.take();
  t.is(whole.flags, 0x80);
  t.is(whole.ttt, 0xffffffff);
  t.is(
    whole.data.toString(),
    'TargetName=iqn.2026-11.io.metrocluster:demo.db\0TargetAddress=127.0.1.1:3260,1\0TargetAddress=[fd00::2]:3260,2\0' +
      'TargetName=iqn.2026-11.io.metrocluster:demo.vm\0TargetAddress=127.0.1.1:3260,1\0',
  );
  const small = open({ discovery: true, params: { initiatorMaxRecvDataSegmentBytes: 64 } });
  small.send(textPdu({ itt: 2, cmdSN: 1, keys: { SendTargets: 'All' } }));
  const parts: Buffer[] = [];
  let [resp] = small.io.take();
  let sn = 2;
  while (resp.flags & 0x40) {
    t.is(resp.flags & 0x80, 0);
    t.not(resp.ttt, 0xffffffff);
    t.true(resp.data.length <= 64);
    parts.push(resp.data);
    small.send(textPdu({ itt: 2, ttt: resp.ttt, cmdSN: sn++ }));
    [resp] = small.io.take();
  }
  parts.push(resp.data);
  t.is(resp.flags, 0x80);
  t.is(resp.ttt, 0xffffffff);
  t.deepEqual(Buffer.concat(parts), whole.data);
});

test('SendTargets in a normal session names only the session target', (t) => {
  const { io, send } = open();
  send(textPdu({ itt: 1, cmdSN: 1, keys: { SendTargets: '' } }));
  t.deepEqual(Object.keys(textOf(io.take()[0])), ['TargetName', 'TargetAddress']);
});

test('a Text request continued with the C bit is answered empty until its last PDU', (t) => {
  const { io, send } = open({ discovery: true });
  send(textPdu({ itt: 3, cmdSN: 1, cont: true, data: Buffer.from('SendTar') }));
  const [ack] = io.take();
  t.is(ack.data.length, 0);
  t.is(ack.flags & 0xc0, 0);
  send(textPdu({ itt: 3, ttt: ack.ttt, cmdSN: 2, data: Buffer.from('gets=iqn.2026-11.io.metrocluster:demo.vm\0') }));
  t.is(textOf(io.take()[0]).TargetName, 'iqn.2026-11.io.metrocluster:demo.vm');
});

test('a discovery session refuses SCSI commands with a Reject', (t) => {
  const { io, send } = open({ discovery: true });
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: read10(1), read: true, edtl: 512 }));
  const [rej] = io.take();
  t.is(rej.opcode, Op.Reject);
  t.is(rej.bhs[2], 0x04);
  t.is(io.executed.length, 0);
});

test('logout answers and closes; remove-for-recovery is refused at ERL 0', (t) => {
  const a = open();
  a.send(logoutPdu({ itt: 9, cmdSN: 1, reason: 2 }));
  t.like(a.io.take()[0], { opcode: Op.LogoutResponse });
  t.is(a.io.closedWith, undefined);
  const b = open();
  b.send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: read10(1), read: true, edtl: 512 }));
  b.send(logoutPdu({ itt: 9, cmdSN: 2, reason: 0 }));
  const [resp] = b.io.take();
  t.is(resp.bhs[2], 0);
  t.is(resp.itt, 9);
  t.is(b.io.closedWith, 'logout');
  t.true(b.io.executed[0].req.signal?.aborted, 'outstanding work is aborted');
});

const rejects: Array<[string, () => Pdu, number]> = [
  ['an opcode nobody defined', () => ({ ...nopOutPdu({ itt: 1, cmdSN: 1 }), bhs: Buffer.from(Buffer.alloc(48).fill(0).fill(0x1e, 0, 1)) }), 0x05],
  ['a SNACK at ERL 0', () => ({ ...nopOutPdu({ itt: 1, cmdSN: 1 }), bhs: Buffer.from(Buffer.alloc(48).fill(0x10, 0, 1)) }), 0x04],
  ['a read with immediate data', () => scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: read10(1), read: true, edtl: 512, data: Buffer.alloc(4) }), 0x04],
  ['immediate data beyond EDTL', () => scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: write10(1), write: true, edtl: 4, data: Buffer.alloc(8) }), 0x04],
  ['Data-Out for a task that does not exist', () => dataOutPdu({ itt: 99, ttt: 5, offset: 0, data: Buffer.alloc(4) }), 0x09],
];
for (const [name, pdu, reason] of rejects) {
  test(`Reject (reason 0x${reason.toString(16)}) for ${name}, with the offending header`, (t) => {
    const { io, send } = open();
    const p = pdu();
    send(p);
    const [rej] = io.take();
    t.is(rej.opcode, Op.Reject);
    t.is(rej.bhs[2], reason);
    t.deepEqual(rej.data, p.bhs);
    t.is(io.executed.length, 0);
  });
}

test('a rejected command still uses its CmdSN, so the next one runs', (t) => {
  const { io, send } = open();
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: read10(1), read: true, edtl: 512, data: Buffer.alloc(4) }));
  send(scsiCommandPdu({ itt: 2, cmdSN: 2, cdb: read10(1), read: true, edtl: 512 }));
  t.deepEqual(io.executed.map((e) => e.req.taskTag), [2]);
});

test('a task tag already in use is rejected as task in progress', (t) => {
  const { io, send } = open();
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: read10(1), read: true, edtl: 512 }));
  send(scsiCommandPdu({ itt: 1, cmdSN: 2, cdb: read10(1), read: true, edtl: 512 }));
  t.is(io.take()[0].bhs[2], 0x07);
});

const badData: Array<[string, (ttt: number) => Pdu, number]> = [
  ['a wrong DataSN', (ttt) => dataOutPdu({ itt: 1, ttt, offset: 0, data: Buffer.alloc(512), dataSN: 1 }), 0x00],
  ['a wrong buffer offset', (ttt) => dataOutPdu({ itt: 1, ttt, offset: 512, data: Buffer.alloc(512) }), 0x05],
  ['more data than the R2T asked', (ttt) => dataOutPdu({ itt: 1, ttt, offset: 0, data: Buffer.alloc(2048) }), 0x02],
];
for (const [name, pdu, ascq] of badData) {
  test(`Data-Out with ${name} ends the command with ABORTED COMMAND (4Bh/${ascq.toString(16)}h)`, (t) => {
    const { io, send } = open({ params: { initialR2T: true, immediateData: false } });
    send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: write10(2), write: true, edtl: 1024 }));
    const [r2t] = io.take();
    send(pdu(r2t.ttt));
    const out = io.take();
    t.deepEqual(ops(out), [Op.Reject, Op.ScsiResponse]);
    const sense = out[1].data.subarray(2);
    t.is(out[1].bhs[3], ScsiStatus.CheckCondition);
    t.deepEqual([sense[2] & 0x0f, sense[12], sense[13]], [0x0b, 0x4b, ascq]);
    t.is(io.executed.length, 0, 'nothing reached the device');
  });
}

test('a Data-Out with a data digest error ends its command with PROTOCOL SERVICE CRC ERROR', (t) => {
  const { io, conn, send } = open({ params: { initialR2T: true, immediateData: false, dataDigest: true } });
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: write10(1), write: true, edtl: 512 }));
  const [r2t] = io.take({ header: false, data: true });
  conn.receive({ kind: 'data-digest-error', pdu: dataOutPdu({ itt: 1, ttt: r2t.ttt, offset: 0, data: Buffer.alloc(512) }) }, 0);
  const out = io.take({ header: false, data: true });
  t.deepEqual(ops(out), [Op.Reject, Op.ScsiResponse]);
  t.is(out[0].bhs[2], 0x02);
  t.deepEqual([out[1].data[2 + 12], out[1].data[2 + 13]], [0x47, 0x05]);
});

test('a write larger than the transport buffers is refused with CHECK CONDITION before any data is asked for', (t) => {
  const { io, send } = open({ params: { initialR2T: true, immediateData: false }, limits: { commandDataBytesMax: 4096 } });
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: write10(16), write: true, edtl: 8192 }));
  const out = io.take();
  t.deepEqual(ops(out), [Op.ScsiResponse]);
  t.is(out[0].bhs[3], ScsiStatus.CheckCondition);
  t.is(io.executed.length, 0);
});

test('R2Ts wait while the buffering budget is spent; the oldest write always proceeds', (t) => {
  const { io, send } = open({ params: { initialR2T: true, immediateData: false }, limits: { pendingDataBytesMax: 4096 } });
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: write10(8), write: true, edtl: 4096 }));
  send(scsiCommandPdu({ itt: 2, cmdSN: 2, cdb: write10(8), write: true, edtl: 4096 }));
  const first = io.take();
  t.deepEqual(first.map((p) => p.itt), [1], 'only the first write is solicited');
  send(dataOutPdu({ itt: 1, ttt: first[0].ttt, offset: 0, data: Buffer.alloc(4096) }));
  t.is(io.executed.length, 1);
  t.deepEqual(io.take(), [], 'its buffer still counts until it completes');
});

test('with header and data digests negotiated every PDU carries both', (t) => {
  const { io, conn, send } = open({ params: { headerDigest: true, dataDigest: true } });
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: read10(1), read: true, edtl: 5 }));
  conn.complete(io.executed[0].serial, { status: ScsiStatus.Good, dataIn: Buffer.from('hello') });
  const bytes = Buffer.concat(io.sent);
  t.is(bytes.length, 48 + 4 + 8 + 4);
  t.deepEqual(io.take({ header: true, data: true }).map((p) => p.data.toString()), ['hello']);
});

test('after the connection is shut down nothing completes and nothing is sent', (t) => {
  const { io, conn, send } = open();
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: read10(1), read: true, edtl: 512 }));
  conn.shutdown('connection lost');
  t.true(io.executed[0].req.signal?.aborted);
  conn.complete(io.executed[0].serial, { status: ScsiStatus.Good, dataIn: Buffer.alloc(512) });
  t.deepEqual(io.take(), []);
});

function openShared(dataBudget: { usedBytes: number; bytesMax: number }) {
  const io = new RecordingIo();
  const login: LoginResult = {
    initiatorName: nexus.initiatorName, targetName: targets[0].iqn, sessionType: 'Normal', isidHex: nexus.isidHex, tsih: 1, cid: 0,
    params: { ...rfcDefaults(prefs), initialR2T: false, immediateData: true, firstBurstBytes: 65536 }, cmdSN: 1, statSN: 100,
  };
  const conn = new FullFeatureConnection({ login, nexus, prefs, limits: limitsDefault, dataBudget, discovery: () => targets, nowMs: 0 }, io);
  return { io, conn, send: (pdu: Pdu) => conn.receive({ kind: 'pdu', pdu }, 0) };
}

test('past the portal-wide data budget a command carrying data is answered TASK SET FULL and keeps none of it; freed space is usable again', (t) => {
  const dataBudget = { usedBytes: 0, bytesMax: 96 * 1024 };
  const a = openShared(dataBudget);
  const b = openShared(dataBudget);
  a.send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: write10(128), write: true, edtl: 65536, data: pattern(65536) }));
  t.is(a.io.executed.length, 1);
  t.is(dataBudget.usedBytes, 65536, 'a write in the SCSI layer holds its data');
  b.send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: write10(128), write: true, edtl: 65536, data: pattern(65536) }));
  t.is(b.io.executed.length, 0);
  const full = b.io.take().find((p) => p.opcode === Op.ScsiResponse && p.itt === 1);
  t.is(full?.bhs[3], ScsiStatus.TaskSetFull, 'the other connection\'s write over the budget');
  t.is(dataBudget.usedBytes, 65536);
  a.conn.complete(a.io.executed[0].serial, { status: ScsiStatus.Good });
  t.is(dataBudget.usedBytes, 0, 'a completed write gives its bytes back');
  b.send(scsiCommandPdu({ itt: 2, cmdSN: 2, cdb: write10(128), write: true, edtl: 65536, data: pattern(65536) }));
  t.is(b.io.executed.length, 1, 'room again');
  b.conn.shutdown('test over');
  t.is(dataBudget.usedBytes, 0, 'a closed connection gives back what it held');
});

test('commands held ahead of a CmdSN gap count toward the data budget; past it the connection ends', (t) => {
  const dataBudget = { usedBytes: 0, bytesMax: 96 * 1024 };
  const { io, send } = openShared(dataBudget);
  send(scsiCommandPdu({ itt: 2, cmdSN: 2, cdb: write10(128), write: true, edtl: 65536, data: pattern(65536) }));
  t.is(dataBudget.usedBytes, 65536);
  t.is(io.closedWith, undefined);
  send(scsiCommandPdu({ itt: 3, cmdSN: 3, cdb: write10(128), write: true, edtl: 65536, data: pattern(65536) }));
  t.regex(io.closedWith ?? '', /CmdSN gap exceed the data budget/);
  t.is(dataBudget.usedBytes, 0);
});

test('held commands give their budget back when the gap fills', (t) => {
  const dataBudget = { usedBytes: 0, bytesMax: 1 << 20 };
  const { io, conn, send } = openShared(dataBudget);
  send(scsiCommandPdu({ itt: 2, cmdSN: 2, cdb: write10(128), write: true, edtl: 65536, data: pattern(65536) }));
  send(scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: read10(1), read: true, edtl: 512 }));
  t.deepEqual(io.executed.map((e) => e.req.taskTag), [1, 2]);
  t.is(dataBudget.usedBytes, 65536, 'counted once, in the SCSI layer');
  for (const e of io.executed) conn.complete(e.serial, { status: ScsiStatus.Good });
  t.is(dataBudget.usedBytes, 0);
});

test('a pooled read buffer is released only once the socket has taken its Data-In; an aborted command releases it at once', (t) => {
  const { io, conn, send } = open();
  send(scsiCommandPdu({ itt: 7, cmdSN: 1, cdb: read10(8), read: true, edtl: 4096 }));
  let released = 0;
  conn.complete(io.executed[0].serial, { status: ScsiStatus.Good, dataIn: pattern(4096), commandTransferBytes: 4096, release: () => { released++; } });
  t.is(released, 0, 'not before the socket wrote the PDUs');
  t.is(io.written.length, 1);
  io.written[0]();
  t.is(released, 1);

  // Aborted: its result is never sent, its buffer goes back at once.
  send(scsiCommandPdu({ itt: 8, cmdSN: 2, cdb: read10(8), read: true, edtl: 4096 }));
  const serial = io.executed[1].serial;
  send(tmfPdu({ itt: 9, cmdSN: 3, fn: 1, refItt: 8 }));
  io.take();
  let late = 0;
  conn.complete(serial, { status: ScsiStatus.Good, dataIn: pattern(4096), commandTransferBytes: 4096, release: () => { late++; } });
  t.is(late, 1);
  t.false(io.take().some((p) => p.itt === 8 && p.opcode === Op.DataIn), 'the aborted read is never answered');
});
