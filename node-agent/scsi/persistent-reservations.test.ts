// The persistent reservation state machine as hosts observe it: every PERSISTENT RESERVE OUT
// service action, each reservation type's access table, PRgeneration, unit attentions and the
// parameter data of PERSISTENT RESERVE IN. Pure: no target, no I/O.
import test from 'ava';
import {
  PrType,
  decodeTransportId,
  emptyPrState,
  encodeTransportId,
  prConflicts,
  prIn,
  prOut,
  type PrNexus,
  type PrOutResult,
  type PrState,
} from './persistent-reservations.ts';
import { parseFixedSense } from './sense.ts';

const A: PrNexus = { initiatorPort: 'iqn.2026-11.org.example:a,i,0x000000000001', relativeTargetPortId: 1 };
const B: PrNexus = { initiatorPort: 'iqn.2026-11.org.example:b,i,0x000000000001', relativeTargetPortId: 1 };
const C: PrNexus = { initiatorPort: 'iqn.2026-11.org.example:c,i,0x000000000001', relativeTargetPortId: 1 };
const A2: PrNexus = { ...A, relativeTargetPortId: 2 }; // the same initiator port through the other site

const SA = { register: 0, reserve: 1, release: 2, clear: 3, preempt: 4, preemptAbort: 5, registerIgnore: 6, move: 7 };

function cdb(action: number, type = 0, listBytes = 24): Buffer {
  const b = Buffer.alloc(10);
  b[0] = 0x5f;
  b[1] = action;
  b[2] = type;
  b.writeUInt32BE(listBytes, 5);
  return b;
}

function params(key: bigint, sak: bigint, flags: { aptpl?: boolean; allTgPt?: boolean; specIPt?: boolean } = {}): Buffer {
  const b = Buffer.alloc(24);
  b.writeBigUInt64BE(key, 0);
  b.writeBigUInt64BE(sak, 8);
  b[20] = (flags.specIPt ? 0x08 : 0) | (flags.allTgPt ? 0x04 : 0) | (flags.aptpl ? 0x01 : 0);
  return b;
}

function out(state: PrState, nexus: PrNexus, action: number, o: { key?: bigint; sak?: bigint; type?: number; aptpl?: boolean; allTgPt?: boolean; specIPt?: boolean; data?: Buffer } = {}): PrOutResult {
  const data = o.data ?? params(o.key ?? 0n, o.sak ?? 0n, o);
  return prOut(state, { nexus, cdb: cdb(action, o.type ?? 0, data.length), dataOut: data, relativeTargetPortIds: [1, 2], registrationsMax: 4 });
}

/** Applies a sequence of steps, each expected to succeed; returns the final state. */
function run(steps: Array<[PrNexus, number, Parameters<typeof out>[3]?]>, from: PrState = emptyPrState): PrState {
  let s = from;
  for (const [n, a, o] of steps) {
    const r = out(s, n, a, o);
    if (r.response.status !== 0) throw new Error(`step ${a} by ${n.initiatorPort} failed with status ${r.response.status}`);
    s = r.state;
  }
  return s;
}

function outcome(r: PrOutResult): string {
  if (r.response.status === 0x18) return 'CONFLICT';
  if (r.response.status === 0) return 'GOOD';
  const s = parseFixedSense(r.response.sense!);
  return `CHECK ${s.key.toString(16)}/${s.asc.toString(16)}/${s.ascq.toString(16)}`;
}

function keys(s: PrState): string[] {
  const d = prIn(s, 0) as Buffer;
  const n = d.readUInt32BE(4) / 8;
  return Array.from({ length: n }, (_, i) => d.subarray(8 + 8 * i, 16 + 8 * i).toString('hex'));
}

const k = (n: number) => n.toString(16).padStart(16, '0');
const both = (type: number) => run([[A, SA.register, { sak: 0xaan }], [B, SA.register, { sak: 0xbbn }], [A, SA.reserve, { key: 0xaan, type }]]);

test('REGISTER: unregistered with key 0 registers, with another key conflicts; zero SA key is a no-op; generation counts', (t) => {
  const table: Array<[string, PrState, PrNexus, number, Parameters<typeof out>[3], string, number]> = [
    ['register A', emptyPrState, A, SA.register, { sak: 0xaan }, 'GOOD', 1],
    ['register with a non-zero key while unregistered', emptyPrState, A, SA.register, { key: 1n, sak: 0xaan }, 'CONFLICT', 0],
    ['register with SA key 0 while unregistered', emptyPrState, A, SA.register, { sak: 0n }, 'GOOD', 0],
    ['register and ignore while unregistered, any key', emptyPrState, A, SA.registerIgnore, { key: 7n, sak: 0xaan }, 'GOOD', 1],
    ['SPEC_I_PT is refused (SIP_C 0)', emptyPrState, A, SA.register, { sak: 1n, specIPt: true }, 'CHECK 5/26/0', 0],
  ];
  for (const [name, state, nexus, action, o, expected, generation] of table) {
    const r = out(state, nexus, action, o);
    t.is(outcome(r), expected, name);
    t.is(r.state.generation, generation, `${name}: generation`);
  }
  const one = run([[A, SA.register, { sak: 0xaan }]]);
  t.is(outcome(out(one, A, SA.register, { key: 0xabn, sak: 0xccn })), 'CONFLICT', 'wrong key');
  const changed = out(one, A, SA.register, { key: 0xaan, sak: 0xccn });
  t.deepEqual([outcome(changed), keys(changed.state), changed.state.generation], ['GOOD', [k(0xcc)], 2]);
  const ignored = out(one, A, SA.registerIgnore, { key: 0x99n, sak: 0xddn });
  t.deepEqual(keys(ignored.state), [k(0xdd)]);
  const gone = out(one, A, SA.register, { key: 0xaan, sak: 0n });
  t.deepEqual([keys(gone.state), gone.state.generation], [[], 2]);
});

test('the same initiator port through another target port is another I_T nexus, unless registered with ALL_TG_PT', (t) => {
  const perPort = run([[A, SA.register, { sak: 1n }]]);
  t.is(outcome(out(perPort, A2, SA.register, { key: 1n, sak: 2n })), 'CONFLICT', 'A through port 2 is not registered');
  const all = run([[A, SA.register, { sak: 1n, allTgPt: true }]]);
  t.is(outcome(out(all, A2, SA.register, { key: 1n, sak: 2n })), 'GOOD', 'ALL_TG_PT covers port 2');
  const full = prIn(all, 3) as Buffer;
  t.is(full[8 + 12] & 0x02, 0x02, 'READ FULL STATUS reports ALL_TG_PT');
});

test('registrations per LUN are bounded: INSUFFICIENT REGISTRATION RESOURCES', (t) => {
  const ports = Array.from({ length: 5 }, (_, i): PrNexus => ({ initiatorPort: `iqn.x:${i},i,0x000000000001`, relativeTargetPortId: 1 }));
  const four = run(ports.slice(0, 4).map((p, i) => [p, SA.register, { sak: BigInt(i + 1) }]));
  t.is(outcome(out(four, ports[4], SA.register, { sak: 9n })), 'CHECK 5/55/4');
});

test('RESERVE: needs registration and its own key; a second RESERVE of the same type is a no-op; another type or holder conflicts; generation unchanged', (t) => {
  const regs = run([[A, SA.register, { sak: 0xaan }], [B, SA.register, { sak: 0xbbn }]]);
  t.is(outcome(out(emptyPrState, A, SA.reserve, { key: 0xaan, type: PrType.WriteExclusive })), 'CONFLICT', 'unregistered');
  t.is(outcome(out(regs, A, SA.reserve, { key: 0xbbn, type: PrType.WriteExclusive })), 'CONFLICT', 'another key');
  t.is(outcome(out(regs, A, SA.reserve, { key: 0xaan, type: 2 })), 'CHECK 5/24/0', 'type 2 does not exist');
  t.is(outcome(out(regs, A, SA.reserve, { key: 0xaan, type: 0x10 | 1 })), 'CHECK 5/24/0', 'scope other than LU_SCOPE');
  const r = out(regs, A, SA.reserve, { key: 0xaan, type: PrType.WriteExclusive });
  t.is(outcome(r), 'GOOD');
  t.is(r.state.generation, regs.generation, 'RESERVE does not bump PRgeneration');
  t.is(outcome(out(r.state, A, SA.reserve, { key: 0xaan, type: PrType.WriteExclusive })), 'GOOD');
  t.is(outcome(out(r.state, A, SA.reserve, { key: 0xaan, type: PrType.ExclusiveAccess })), 'CONFLICT');
  t.is(outcome(out(r.state, B, SA.reserve, { key: 0xbbn, type: PrType.WriteExclusive })), 'CONFLICT');
  const rr = prIn(r.state, 1) as Buffer;
  t.deepEqual([rr.readUInt32BE(4), rr.subarray(8, 16).toString('hex'), rr[8 + 13]], [16, k(0xaa), PrType.WriteExclusive]);
});

test('access table: every reservation type, holder / registered / unregistered, read and write', (t) => {
  // [type, registered non-holder read, write, unregistered read, write] - true = allowed
  const table: Array<[number, boolean, boolean, boolean, boolean]> = [
    [PrType.WriteExclusive, true, false, true, false],
    [PrType.ExclusiveAccess, false, false, false, false],
    [PrType.WriteExclusiveRegistrantsOnly, true, true, true, false],
    [PrType.ExclusiveAccessRegistrantsOnly, true, true, false, false],
    [PrType.WriteExclusiveAllRegistrants, true, true, true, false],
    [PrType.ExclusiveAccessAllRegistrants, true, true, false, false],
  ];
  for (const [type, regRead, regWrite, unregRead, unregWrite] of table) {
    const s = both(type);
    const name = `type ${type}`;
    t.false(prConflicts(s, A, 'read') || prConflicts(s, A, 'write'), `${name}: the holder may do anything`);
    t.is(!prConflicts(s, B, 'read'), regRead, `${name}: registered read`);
    t.is(!prConflicts(s, B, 'write'), regWrite, `${name}: registered write`);
    t.is(!prConflicts(s, C, 'read'), unregRead, `${name}: unregistered read`);
    t.is(!prConflicts(s, C, 'write'), unregWrite, `${name}: unregistered write`);
    t.false(prConflicts(s, C, 'unrestricted'), `${name}: INQUIRY-like commands always run`);
  }
});

test('RELEASE: non-holder is a no-op, wrong type is INVALID RELEASE, registrants-only types tell the other registrants', (t) => {
  const we = both(PrType.WriteExclusive);
  t.is(outcome(out(we, B, SA.release, { key: 0xbbn, type: PrType.WriteExclusive })), 'GOOD');
  t.truthy(out(we, B, SA.release, { key: 0xbbn, type: PrType.WriteExclusive }).state.reservation, 'B does not hold it');
  t.is(outcome(out(we, A, SA.release, { key: 0xaan, type: PrType.ExclusiveAccess })), 'CHECK 5/26/4');
  t.is(outcome(out(we, C, SA.release, { key: 0n, type: PrType.WriteExclusive })), 'CONFLICT', 'unregistered');
  const rel = out(we, A, SA.release, { key: 0xaan, type: PrType.WriteExclusive });
  t.deepEqual([rel.state.reservation, rel.attentions.length], [undefined, 0], 'WRITE EXCLUSIVE: no unit attention');
  const ro = out(both(PrType.WriteExclusiveRegistrantsOnly), A, SA.release, { key: 0xaan, type: PrType.WriteExclusiveRegistrantsOnly });
  t.deepEqual(ro.attentions.map((a) => [a.initiatorPort, a.code.asc, a.code.ascq]), [[B.initiatorPort, 0x2a, 0x04]]);
});

test('unregistering the holder: releases WE/EA (and RO types, telling the others); all-registrants reservations stay', (t) => {
  for (const [type, stays] of [[PrType.WriteExclusive, false], [PrType.ExclusiveAccessRegistrantsOnly, false], [PrType.WriteExclusiveAllRegistrants, true], [PrType.ExclusiveAccessAllRegistrants, true]] as const) {
    const r = out(both(type), A, SA.register, { key: 0xaan, sak: 0n });
    t.is(r.state.reservation !== undefined, stays, `type ${type}`);
    if (stays) t.false(prConflicts(r.state, B, 'write'), 'B still holds it');
  }
  const last = run([[B, SA.register, { key: 0xbbn, sak: 0n }], [A, SA.register, { key: 0xaan, sak: 0n }]], both(PrType.WriteExclusiveAllRegistrants));
  t.is(last.reservation, undefined, 'the last registrant leaving ends an all-registrants reservation');
});

test('CLEAR: every registration and the reservation go; the others see RESERVATIONS PREEMPTED', (t) => {
  const s = both(PrType.ExclusiveAccess);
  t.is(outcome(out(s, B, SA.clear, { key: 0x1n })), 'CONFLICT');
  const r = out(s, B, SA.clear, { key: 0xbbn });
  t.deepEqual([keys(r.state), r.state.reservation, r.state.generation], [[], undefined, s.generation + 1]);
  t.deepEqual(r.attentions.map((a) => [a.initiatorPort, a.code.ascq]), [[A.initiatorPort, 0x03]]);
});

test('PREEMPT: removing a registration without a reservation; taking over a reservation; all-registrants with key 0', (t) => {
  const regs = run([[A, SA.register, { sak: 0xaan }], [B, SA.register, { sak: 0xbbn }]]);
  const rm = out(regs, B, SA.preempt, { key: 0xbbn, sak: 0xaan, type: PrType.ExclusiveAccess });
  t.deepEqual([outcome(rm), keys(rm.state), rm.state.generation, rm.state.reservation], ['GOOD', [k(0xbb)], regs.generation + 1, undefined]);
  t.deepEqual(rm.attentions.map((a) => [a.initiatorPort, a.code.ascq]), [[A.initiatorPort, 0x05]], 'REGISTRATIONS PREEMPTED to A');
  t.is(outcome(out(regs, B, SA.preempt, { key: 0xbbn, sak: 0x77n, type: 1 })), 'CONFLICT', 'no registration has that key');
  t.is(outcome(out(regs, B, SA.preempt, { key: 0xbbn, sak: 0n, type: 1 })), 'CHECK 5/26/0', 'SA key 0 without an all-registrants reservation');

  const take = out(both(PrType.WriteExclusive), B, SA.preempt, { key: 0xbbn, sak: 0xaan, type: PrType.ExclusiveAccess });
  t.is(outcome(take), 'GOOD');
  t.deepEqual(take.state.reservation, { type: PrType.ExclusiveAccess, holder: B });
  t.true(prConflicts(take.state, A, 'read'), 'A, preempted, is now shut out');

  const ar = both(PrType.WriteExclusiveAllRegistrants);
  const withC = run([[C, SA.register, { sak: 0xccn }]], ar);
  const all = out(withC, B, SA.preempt, { key: 0xbbn, sak: 0n, type: PrType.WriteExclusive });
  t.deepEqual([keys(all.state), all.state.reservation?.type], [[k(0xbb)], PrType.WriteExclusive]);
  t.deepEqual(all.attentions.map((a) => a.initiatorPort).sort(), [A.initiatorPort, C.initiatorPort]);
});

test('PREEMPT AND ABORT names the preempted nexuses for aborting; PREEMPT does not', (t) => {
  const s = both(PrType.WriteExclusive);
  t.deepEqual(out(s, B, SA.preemptAbort, { key: 0xbbn, sak: 0xaan, type: 1 }).abort.map((r) => r.initiatorPort), [A.initiatorPort]);
  t.deepEqual(out(s, B, SA.preempt, { key: 0xbbn, sak: 0xaan, type: 1 }).abort, []);
});

test('REGISTER AND MOVE: the holder hands its reservation to a nexus named by TransportID', (t) => {
  const s = run([[A, SA.register, { sak: 0xaan }], [A, SA.reserve, { key: 0xaan, type: PrType.ExclusiveAccess }]]);
  const move = (o: { key?: bigint; sak?: bigint; unreg?: boolean; rtpi?: number; to?: string }) => {
    const tid = encodeTransportId(o.to ?? B.initiatorPort);
    const d = Buffer.alloc(24 + tid.length);
    d.writeBigUInt64BE(o.key ?? 0xaan, 0);
    d.writeBigUInt64BE(o.sak ?? 0xbbn, 8);
    d[17] = o.unreg ? 0x02 : 0;
    d.writeUInt16BE(o.rtpi ?? 1, 18);
    d.writeUInt32BE(tid.length, 20);
    tid.copy(d, 24);
    return d;
  };
  const r = out(s, A, SA.move, { data: move({ unreg: true }) });
  t.is(outcome(r), 'GOOD');
  t.deepEqual([keys(r.state), r.state.reservation?.holder, r.state.generation], [[k(0xbb)], B, s.generation + 1]);
  const kept = out(s, A, SA.move, { data: move({}) });
  t.deepEqual(keys(kept.state), [k(0xaa), k(0xbb)], 'without UNREG the source stays registered');
  t.is(outcome(out(s, A, SA.move, { data: move({ sak: 0n }) })), 'CHECK 5/26/0', 'SA key 0');
  t.is(outcome(out(s, A, SA.move, { data: move({ rtpi: 9 }) })), 'CHECK 5/26/0', 'no such target port');
  t.is(outcome(out(s, A, SA.move, { data: move({ to: A.initiatorPort }) })), 'CHECK 5/26/0', 'to itself');
  t.is(outcome(out(s, A, SA.move, { data: move({ key: 0x1n }) })), 'CONFLICT', 'wrong key');
  const regs = run([[A, SA.register, { sak: 0xaan }]]);
  t.is(outcome(out(regs, A, SA.move, { data: move({}) })), 'CONFLICT', 'nothing to move');
  t.is(outcome(out(both(PrType.WriteExclusiveAllRegistrants), A, SA.move, { data: move({}) })), 'CONFLICT', 'all-registrants cannot move');
});

test('parameter list length: 24 bytes or PARAMETER LIST LENGTH ERROR; unknown service action refused', (t) => {
  const r = prOut(emptyPrState, { nexus: A, cdb: cdb(SA.register, 0, 20), dataOut: Buffer.alloc(20), relativeTargetPortIds: [1], registrationsMax: 4 });
  t.is(outcome(r), 'CHECK 5/1a/0');
  const bad = prOut(emptyPrState, { nexus: A, cdb: cdb(0x09), dataOut: Buffer.alloc(24), relativeTargetPortIds: [1], registrationsMax: 4 });
  t.is(outcome(bad), 'CHECK 5/24/0');
});

test('APTPL is taken from the last REGISTER and reported by REPORT CAPABILITIES', (t) => {
  const on = run([[A, SA.register, { sak: 1n, aptpl: true }]]);
  t.true(on.aptpl);
  const caps = prIn(on, 2) as Buffer;
  t.deepEqual([caps.readUInt16BE(0), caps[2], caps[3] & 0x81, caps.readUInt16BE(4)], [8, 0x05, 0x81, 0xea01]);
  t.false(run([[A, SA.register, { key: 1n, sak: 2n }]], on).aptpl);
});

test('READ FULL STATUS: one descriptor per registration with the iSCSI TransportID (name,i,0x ISID)', (t) => {
  const s = both(PrType.WriteExclusive);
  const d = prIn(s, 3) as Buffer;
  t.is(d.readUInt32BE(0), s.generation);
  const first = d.subarray(8);
  t.deepEqual([first.subarray(0, 8).toString('hex'), first[12], first[13], first.readUInt16BE(18)], [k(0xaa), 0x01, PrType.WriteExclusive, 1]);
  const tidLength = first.readUInt32BE(20);
  const tid = decodeTransportId(first.subarray(24, 24 + tidLength));
  t.deepEqual(tid, { initiatorPort: A.initiatorPort, bytes: tidLength });
  t.is(first[24], 0x45, 'format 01b, protocol iSCSI');
  const second = first.subarray(24 + tidLength);
  t.deepEqual([second.subarray(0, 8).toString('hex'), second[12]], [k(0xbb), 0x00]);
  t.is(d.readUInt32BE(4), first.length);
});

test('the state is a plain JSON value', (t) => {
  const s = both(PrType.ExclusiveAccessRegistrantsOnly);
  t.deepEqual(JSON.parse(JSON.stringify(s)), s);
});
