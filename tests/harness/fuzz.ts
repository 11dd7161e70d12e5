// Seeded mutations of valid iSCSI exchanges, for fuzzing a running portal (tests/pdu-fuzz.test.ts).
import net from 'node:net';
import {
  loginRequest, scsiCommand, nopOut, textRequest, taskMgmt, logoutRequest, dataOut, TestSession, type ScsiResult,
} from './initiator.ts';

const initiatorName = 'iqn.2026-11.org.example:fuzzer';

/** Opcodes that change medium or reservation state: a mutated CDB never becomes one of these, so
 *  "the data is unchanged" is a fair assertion. */
const mutatingOpcodes = new Set([
  0x04, 0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0xae, 0x8e, 0x41, 0x93, 0x42, 0x89, 0x3b, 0x3f, 0x07, 0x0b, 0x2b, 0x90, 0x9b, 0x83, 0x5f, 0x16, 0x56, 0x57, 0x17, 0x1e, 0x1b, 0x48, 0x9f, 0x7f, 0x8c, 0x9d, 0x94, 0x95, 0xa4, 0xef, 0x9a,
]);

export function cdb(bytes: number[]): Buffer { const b = Buffer.alloc(16); Buffer.from(bytes).copy(b); return b; }

/** Valid exchanges a real initiator would send, as lists of PDUs (each a Buffer). */
export function exchanges(target: string): Buffer[][] {
  const isid = Buffer.from([0x80, 0, 0, 0, 0x12, 0x34]);
  const discoveryLogin = loginRequest({ isid, itt: 1, cmdSN: 1, expStatSN: 0, csg: 1, nsg: 3, transit: true, keys: { InitiatorName: initiatorName, SessionType: 'Discovery', HeaderDigest: 'None', DataDigest: 'None', MaxRecvDataSegmentLength: '8192' } });
  const secLogin = loginRequest({ isid, itt: 1, cmdSN: 1, expStatSN: 0, csg: 0, nsg: 1, transit: true, keys: { InitiatorName: initiatorName, TargetName: target, SessionType: 'Normal', AuthMethod: 'None' } });
  const opLogin = loginRequest({ isid, itt: 1, cmdSN: 1, expStatSN: 1, csg: 1, nsg: 3, transit: true, keys: { HeaderDigest: 'None', DataDigest: 'None', ImmediateData: 'Yes', InitialR2T: 'No', MaxBurstLength: '262144', FirstBurstLength: '65536', MaxRecvDataSegmentLength: '65536', MaxOutstandingR2T: '1', ErrorRecoveryLevel: '0', DefaultTime2Wait: '2', DefaultTime2Retain: '0', MaxConnections: '1', DataPDUInOrder: 'Yes', DataSequenceInOrder: 'Yes', IFMarker: 'No', OFMarker: 'No' } });
  const fullLogin = loginRequest({ isid, itt: 1, cmdSN: 1, expStatSN: 0, csg: 1, nsg: 3, transit: true, keys: { InitiatorName: initiatorName, TargetName: target, SessionType: 'Normal', ImmediateData: 'Yes', InitialR2T: 'Yes', MaxRecvDataSegmentLength: '65536' } });
  const io = (sn: number): Buffer[] => [
    scsiCommand({ lun: 0, itt: 10, cmdSN: sn, expStatSN: 2, cdb: cdb([0x12, 0, 0, 0, 96, 0]), read: true, edtl: 96 }),
    scsiCommand({ lun: 0, itt: 11, cmdSN: sn + 1, expStatSN: 2, cdb: cdb([0x12, 1, 0x83, 0, 255, 0]), read: true, edtl: 255 }),
    scsiCommand({ lun: 0, itt: 12, cmdSN: sn + 2, expStatSN: 2, cdb: cdb([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]), read: true, edtl: 8 }),
    scsiCommand({ lun: 1, itt: 13, cmdSN: sn + 3, expStatSN: 2, cdb: cdb([0x28, 0, 0, 0, 0, 8, 0, 0, 64, 0]), read: true, edtl: 32768 }),
    scsiCommand({ lun: 0, itt: 14, cmdSN: sn + 4, expStatSN: 2, cdb: cdb([0x88, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 16, 0, 0]), read: true, edtl: 8192 }),
    scsiCommand({ lun: 0, itt: 15, cmdSN: sn + 5, expStatSN: 2, cdb: cdb([0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), read: true, edtl: 256 }),
    scsiCommand({ lun: 0, itt: 16, cmdSN: sn + 6, expStatSN: 2, cdb: cdb([0x1a, 0, 0x3f, 0, 255, 0]), read: true, edtl: 255 }),
    scsiCommand({ lun: 0, itt: 17, cmdSN: sn + 7, expStatSN: 2, cdb: cdb([0x00, 0, 0, 0, 0, 0]), edtl: 0 }),
    // A SYNCHRONIZE CACHE with data attached where none belongs, and a Data-Out nobody asked for.
    scsiCommand({ lun: 0, itt: 18, cmdSN: sn + 8, expStatSN: 2, cdb: cdb([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]), edtl: 0 }),
    dataOut({ lun: 0, itt: 18, ttt: 0xffffffff, expStatSN: 2, dataSN: 0, offset: 0, final: true, data: Buffer.alloc(512, 0x77) }),
    nopOut({ itt: 19, cmdSN: sn + 9, expStatSN: 2, immediate: true, data: Buffer.from('ping') }),
    taskMgmt({ fn: 1, lun: 0, itt: 20, rtt: 13, cmdSN: sn + 9, expStatSN: 2 }),
    taskMgmt({ fn: 5, lun: 1, itt: 21, rtt: 0xffffffff, cmdSN: sn + 9, expStatSN: 2 }),
    logoutRequest({ itt: 22, cmdSN: sn + 9, expStatSN: 2 }),
  ];
  return [
    [discoveryLogin, textRequest({ itt: 2, cmdSN: 1, expStatSN: 1, keys: { SendTargets: 'All' } }), logoutRequest({ itt: 3, cmdSN: 1, expStatSN: 2 })],
    [secLogin, opLogin, ...io(1)],
    [fullLogin, ...io(1)],
  ];
}

export function mutate(rand: () => number, pdus: Buffer[]): Buffer[] {
  const out = pdus.map((p) => Buffer.from(p));
  const pick = (n: number): number => Math.floor(rand() * n);
  const times = 1 + pick(3);
  for (let i = 0; i < times; i++) {
    const k = pick(out.length);
    const p = out[k];
    // Field mutations need a whole BHS; an earlier truncation may have left less.
    const kind = p.length >= 48 ? pick(9) : pick(2);
    switch (kind) {
      case 0: case 1: { // flip bits
        for (let j = 1 + pick(8); j > 0 && p.length > 0; j--) p[pick(p.length)] ^= 1 << pick(8);
        break;
      }
      case 2: { // boundary values in a BHS field
        const at = pick(48);
        p[at] = [0x00, 0xff, 0x7f, 0x80, 0x01][pick(5)];
        break;
      }
      case 3: { // lie about the data segment length or the AHS length
        if (rand() < 0.5) p.writeUIntBE([0, 1, 47, 0xffffff, 0x10000, p.length][pick(6)] & 0xffffff, 5, 3);
        else p[4] = [1, 2, 17, 255][pick(4)];
        break;
      }
      case 4: { // truncate
        out[k] = p.subarray(0, pick(p.length));
        break;
      }
      case 5: { // random garbage instead of a PDU
        const g = Buffer.alloc(1 + pick(200));
        for (let j = 0; j < g.length; j++) g[j] = pick(256);
        out.splice(k, 0, g);
        break;
      }
      case 6: { // duplicate a PDU (replayed CmdSN, ITT)
        out.splice(k, 0, Buffer.from(p));
        break;
      }
      case 7: { // change the opcode
        p[0] = (p[0] & 0xc0) | [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x1c, 0x3f][pick(10)];
        break;
      }
      default: { // drop a PDU the exchange relies on
        out.splice(k, 1);
        if (out.length === 0) out.push(Buffer.alloc(48));
      }
    }
  }
  for (const p of out) {
    if (p.length >= 48 && (p[0] & 0x3f) === 0x01 && mutatingOpcodes.has(p[32])) p[32] = 0x28;
  }
  return out;
}

/** Reads as an initiator does: a unit attention (a fuzzed LUN RESET may legitimately raise one for
 *  every nexus) is reported once, then the command is retried. */
export async function readBlocks(s: TestSession, lun: number, lba: number, blocks: number): Promise<ScsiResult> {
  for (let attempt = 0; ; attempt++) {
    const r = await s.read10(lun, lba, blocks);
    const unitAttention = r.status === 2 && (r.sense[2] & 0x0f) === 0x06;
    if (!unitAttention || attempt >= 3) return r;
  }
}

export function sendExchange(host: string, port: number, pdus: Buffer[], rand: () => number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const finish = (): void => { clearTimeout(timer); s.destroy(); resolve(); };
    // The target may answer, reject, or drop the connection; all are fine. Waiting forever is not
    // (the target must not make a client hang either): 400 ms then we hang up ourselves.
    const timer = setTimeout(finish, 400);
    s.on('data', () => undefined);
    s.on('error', finish);
    s.on('close', finish);
    s.on('connect', () => {
      // Sometimes all at once, sometimes PDU by PDU, sometimes in odd chunks.
      const all = Buffer.concat(pdus);
      const mode = Math.floor(rand() * 3);
      if (mode === 0) s.write(all);
      else if (mode === 1) for (const p of pdus) s.write(p);
      else for (let at = 0; at < all.length;) { const n = 1 + Math.floor(rand() * 61); s.write(all.subarray(at, at + n)); at += n; }
    });
  });
}

