import test from 'ava';
import { CommandWindow } from './command-window.ts';
import { planDataIn, readResidual, residualOf } from './data-in.ts';

test('commands in CmdSN order are delivered at once and the window slides', (t) => {
  const w = new CommandWindow<string>(10, 4);
  t.is(w.maxCmdSN, 13);
  t.deepEqual(w.arrive(10, 'a'), { kind: 'deliver', items: ['a'] });
  t.is(w.expCmdSN, 11);
  t.is(w.maxCmdSN, 13, 'an outstanding command keeps its slot');
  w.finish();
  t.is(w.maxCmdSN, 14, 'an answered command opens a slot');
});

test('a command ahead of a gap waits, and the missing one releases both in order', (t) => {
  const w = new CommandWindow<string>(1, 8);
  t.deepEqual(w.arrive(3, 'c'), { kind: 'held' });
  t.deepEqual(w.arrive(2, 'b'), { kind: 'held' });
  t.deepEqual(w.arrive(1, 'a'), { kind: 'deliver', items: ['a', 'b', 'c'] });
  t.is(w.expCmdSN, 4);
  t.is(w.heldCount, 0);
});

const ignored: Array<[string, number]> = [
  ['below ExpCmdSN (a duplicate)', 4],
  ['above MaxCmdSN', 9],
  ['far away in serial arithmetic', 0x80000005],
];
for (const [name, sn] of ignored) {
  test(`a command ${name} is silently ignored`, (t) => {
    const w = new CommandWindow<string>(5, 4); // window [5, 8]
    t.deepEqual(w.arrive(sn, 'x'), { kind: 'ignored' });
    t.is(w.expCmdSN, 5);
  });
}

test('a second copy of a held command is ignored', (t) => {
  const w = new CommandWindow<string>(1, 4);
  w.arrive(2, 'b');
  t.deepEqual(w.arrive(2, 'b2'), { kind: 'ignored' });
});

test('a full window takes nothing until a command is answered; MaxCmdSN never falls', (t) => {
  const w = new CommandWindow<number>(0xfffffffe, 2); // wraps past 2^32
  t.is(w.arrive(0xfffffffe, 1).kind, 'deliver');
  t.is(w.arrive(0xffffffff, 2).kind, 'deliver');
  t.is(w.maxCmdSN, 0xffffffff);
  t.deepEqual(w.arrive(0, 3), { kind: 'ignored' }, 'no slot left');
  w.finish();
  t.is(w.maxCmdSN, 0);
  t.is(w.arrive(0, 3).kind, 'deliver');
});

test('RefCmdSN of a command not yet arrived is recognised inside the window only', (t) => {
  const w = new CommandWindow<string>(10, 4);
  w.arrive(12, 'held');
  t.true(w.notYetArrived(11));
  t.false(w.notYetArrived(12), 'already here');
  t.false(w.notYetArrived(9), 'already done');
  t.false(w.notYetArrived(20), 'beyond the window');
});

// ---- Data-In arithmetic ----

const plans: Array<[string, number, number, number, Array<[number, number, boolean]>]> = [
  ['one small PDU', 100, 8192, 262144, [[0, 100, true]]],
  ['split at MaxRecvDataSegmentLength', 20000, 8192, 262144, [[0, 8192, false], [8192, 8192, false], [16384, 3616, true]]],
  ['F at every MaxBurstLength', 3 * 4096, 4096, 8192, [[0, 4096, false], [4096, 4096, true], [8192, 4096, true]]],
  ['bursts not a multiple of the segment', 10000, 4096, 6000, [[0, 4096, false], [4096, 1904, true], [6000, 4000, true]]],
  ['nothing', 0, 8192, 8192, []],
];
for (const [name, total, seg, burst, expected] of plans) {
  test(`Data-In plan: ${name}`, (t) => {
    const plan = planDataIn(total, seg, burst);
    t.deepEqual(plan.map((p) => [p.offsetBytes, p.lengthBytes, p.final]), expected);
  });
}

test('Data-In plan: 1 MiB at 256 KiB segments is four PDUs, every one within bounds, covering every byte', (t) => {
  const plan = planDataIn(1 << 20, 262144, 262144);
  t.is(plan.length, 4);
  t.is(plan.reduce((n, p) => n + p.lengthBytes, 0), 1 << 20);
  t.true(plan.every((p) => p.final));
});

const residuals: Array<[string, number, number, number | undefined, { overflow: boolean; underflow: boolean; count: number }]> = [
  ['exact read', 4096, 4096, 4096, { overflow: false, underflow: false, count: 0 }],
  ['INQUIRY shorter than the allocation length', 255, 36, 255, { overflow: false, underflow: true, count: 219 }],
  ['READ of more blocks than expected', 512, 512, 1024, { overflow: true, underflow: false, count: 512 }],
  ['READ with EDTL larger than the CDB', 8192, 4096, 4096, { overflow: false, underflow: true, count: 4096 }],
  ['no transfer length reported', 100, 100, undefined, { overflow: false, underflow: false, count: 0 }],
];
for (const [name, expected, returned, command, r] of residuals) {
  test(`residual: ${name}`, (t) => {
    t.deepEqual(readResidual(expected, returned, command), r);
  });
}

test('an overflow beyond 32 bits saturates the Residual Count field instead of breaking the PDU', (t) => {
  t.deepEqual(residualOf(512, 2 ** 41), { overflow: true, underflow: false, count: 0xffffffff });
});

test('residual of a write: the CDB length against EDTL (RFC 7143 §11.4.5)', (t) => {
  t.deepEqual(residualOf(0, 512), { overflow: true, underflow: false, count: 512 });
  t.deepEqual(residualOf(10000, 512), { overflow: false, underflow: true, count: 9488 });
});
