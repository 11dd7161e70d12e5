// A minimal iSCSI initiator for tests that need what real initiators won't do on purpose: raw and
// malformed PDUs, many sessions, logins left unfinished. Written from RFC 7143 §11 independently of
// the target's codec, so the two do not share a misreading. Not for the data-path tests: those use
// libiscsi and qemu.
import net from 'node:net';

export const Op = {
  nopOut: 0x00, scsiCommand: 0x01, taskMgmt: 0x02, login: 0x03, text: 0x04, dataOut: 0x05, logout: 0x06,
  nopIn: 0x20, scsiResponse: 0x21, taskMgmtResponse: 0x22, loginResponse: 0x23, textResponse: 0x24,
  dataIn: 0x25, logoutResponse: 0x26, r2t: 0x31, asyncMessage: 0x32, reject: 0x3f,
} as const;

/** `arrival`: the order in which the test initiator received the PDU (set by TestSession). */
export interface Pdu { bhs: Buffer; data: Buffer; arrival?: number }

const pad4 = (n: number): number => (n + 3) & ~3;

export function textData(keys: Record<string, string>): Buffer {
  return Buffer.from(Object.entries(keys).map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
}

export function parseText(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of data.toString('utf8').split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

/** Serializes one PDU: a 48-byte BHS whose DataSegmentLength is set from data, then padded data. */
export function pdu(bhs: Buffer, data: Buffer = Buffer.alloc(0)): Buffer {
  bhs.writeUIntBE(data.length, 5, 3);
  const out = Buffer.alloc(48 + pad4(data.length));
  bhs.copy(out, 0, 0, 48);
  data.copy(out, 48);
  return out;
}

export function loginRequest(o: {
  isid: Buffer; itt: number; cmdSN: number; expStatSN: number; csg: number; nsg: number; transit: boolean; keys: Record<string, string>; tsih?: number;
}): Buffer {
  const b = Buffer.alloc(48);
  b[0] = 0x40 | Op.login;
  b[1] = (o.transit ? 0x80 : 0) | (o.csg << 2) | o.nsg;
  o.isid.copy(b, 8);
  b.writeUInt16BE(o.tsih ?? 0, 14);
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt32BE(o.cmdSN >>> 0, 24);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  return pdu(b, textData(o.keys));
}

export function scsiCommand(o: {
  lun: number; itt: number; cmdSN: number; expStatSN: number; cdb: Buffer; read?: boolean; write?: boolean; edtl: number; immediate?: Buffer;
}): Buffer {
  const b = Buffer.alloc(48);
  b[0] = Op.scsiCommand;
  b[1] = 0x80 | (o.read ? 0x40 : 0) | (o.write ? 0x20 : 0) | 1; // F, R, W, SIMPLE
  b.writeUInt16BE(o.lun & 0x3fff, 8);
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt32BE(o.edtl >>> 0, 20);
  b.writeUInt32BE(o.cmdSN >>> 0, 24);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  o.cdb.copy(b, 32, 0, Math.min(16, o.cdb.length));
  return pdu(b, o.immediate);
}

export function dataOut(o: { lun: number; itt: number; ttt: number; expStatSN: number; dataSN: number; offset: number; final: boolean; data: Buffer }): Buffer {
  const b = Buffer.alloc(48);
  b[0] = Op.dataOut;
  b[1] = o.final ? 0x80 : 0;
  b.writeUInt16BE(o.lun & 0x3fff, 8);
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt32BE(o.ttt >>> 0, 20);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  b.writeUInt32BE(o.dataSN >>> 0, 36);
  b.writeUInt32BE(o.offset >>> 0, 40);
  return pdu(b, o.data);
}

export function nopOut(o: { itt: number; cmdSN: number; expStatSN: number; immediate?: boolean; ttt?: number; data?: Buffer }): Buffer {
  const b = Buffer.alloc(48);
  b[0] = (o.immediate ? 0x40 : 0) | Op.nopOut;
  b[1] = 0x80;
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt32BE((o.ttt ?? 0xffffffff) >>> 0, 20);
  b.writeUInt32BE(o.cmdSN >>> 0, 24);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  return pdu(b, o.data);
}

export function textRequest(o: { itt: number; cmdSN: number; expStatSN: number; keys: Record<string, string>; ttt?: number }): Buffer {
  const b = Buffer.alloc(48);
  b[0] = 0x40 | Op.text;
  b[1] = 0x80;
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt32BE((o.ttt ?? 0xffffffff) >>> 0, 20);
  b.writeUInt32BE(o.cmdSN >>> 0, 24);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  return pdu(b, textData(o.keys));
}

export function taskMgmt(o: { fn: number; lun: number; itt: number; rtt: number; cmdSN: number; expStatSN: number; refCmdSN?: number }): Buffer {
  const b = Buffer.alloc(48);
  b[0] = 0x40 | Op.taskMgmt;
  b[1] = 0x80 | o.fn;
  b.writeUInt16BE(o.lun & 0x3fff, 8);
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt32BE(o.rtt >>> 0, 20);
  b.writeUInt32BE(o.cmdSN >>> 0, 24);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  b.writeUInt32BE((o.refCmdSN ?? 0) >>> 0, 32);
  return pdu(b);
}

export function logoutRequest(o: { itt: number; cmdSN: number; expStatSN: number }): Buffer {
  const b = Buffer.alloc(48);
  b[0] = 0x40 | Op.logout;
  b[1] = 0x80; // reason 0: close the session
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt32BE(o.cmdSN >>> 0, 24);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  return pdu(b);
}

/** Splits a byte stream from the target into PDUs (no digests, as negotiated by this initiator). */
export class PduReader {
  private buf = Buffer.alloc(0);
  push(chunk: Buffer): Pdu[] {
    this.buf = Buffer.concat([this.buf, chunk]);
    const out: Pdu[] = [];
    for (;;) {
      if (this.buf.length < 48) break;
      const ahs = this.buf[4] * 4;
      const dlen = this.buf.readUIntBE(5, 3);
      const total = 48 + ahs + pad4(dlen);
      if (this.buf.length < total) break;
      out.push({ bhs: this.buf.subarray(0, 48), data: this.buf.subarray(48 + ahs, 48 + ahs + dlen) });
      this.buf = this.buf.subarray(total);
    }
    return out;
  }
}

/** `arrival`: receive order of the final response PDU, comparable with `lastTmfArrival`. */
export interface ScsiResult { status: number; data: Buffer; sense: Buffer; residual: number; arrival: number }

/** A well-behaved full-feature session: login without CHAP, SCSI commands with R2T handling. */
export class TestSession {
  private socket!: net.Socket;
  private reader = new PduReader();
  private waiters = new Map<number, (p: Pdu) => void>();
  private pending: Pdu[] = [];
  private itt = 1;
  cmdSN = 1;
  expStatSN = 0;
  private dataIn = new Map<number, Buffer[]>();
  closed = false;

  static async open(o: { host: string; port: number; initiatorName: string; targetName?: string; isid?: Buffer; keys?: Record<string, string>; localAddress?: string }): Promise<TestSession> {
    const s = new TestSession();
    await s.connect(o.host, o.port, o.localAddress);
    await s.login(o);
    return s;
  }

  private connect(host: string, port: number, localAddress?: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket = net.connect({ host, port, localAddress }, () => resolve());
      this.socket.setNoDelay(true);
      this.socket.once('error', reject);
      this.socket.on('data', (d: Buffer) => { for (const p of this.reader.push(d)) this.dispatch(p); });
      this.socket.on('close', () => {
        this.closed = true;
        for (const w of this.waiters.values()) w({ bhs: Buffer.alloc(48, 0xff), data: Buffer.alloc(0) });
        this.waiters.clear();
      });
    });
  }

  /** Receive order of PDUs: promise continuations run in an order of their own, so tests that ask
   *  "answered before that?" compare this, not the time a continuation ran. */
  private arrivals = 0;
  /** Receive order of the last Task Management Function Response. */
  lastTmfArrival = 0;

  private dispatch(p: Pdu): void {
    p.arrival = ++this.arrivals;
    const op = p.bhs[0] & 0x3f;
    const itt = p.bhs.readUInt32BE(16);
    if (op === Op.nopIn && itt === 0xffffffff) {
      // The target pings us: answer with the target transfer tag (RFC 7143 §11.18).
      const ttt = p.bhs.readUInt32BE(20);
      if (ttt !== 0xffffffff) this.socket.write(nopOut({ itt: 0xffffffff, ttt, cmdSN: this.cmdSN, expStatSN: this.expStatSN, immediate: true }));
      return;
    }
    if (op === Op.scsiResponse || op === Op.nopIn || op === Op.textResponse || op === Op.logoutResponse || op === Op.taskMgmtResponse || op === Op.loginResponse || (op === Op.dataIn && (p.bhs[1] & 0x01))) {
      this.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
    }
    if (op === Op.dataIn) {
      const parts = this.dataIn.get(itt) ?? [];
      parts.push(Buffer.from(p.data));
      this.dataIn.set(itt, parts);
      if (!(p.bhs[1] & 0x01)) return;
    }
    const w = this.waiters.get(itt);
    if (w) { this.waiters.delete(itt); w({ bhs: Buffer.from(p.bhs), data: Buffer.from(p.data), arrival: p.arrival }); } else this.pending.push(p);
  }

  private expect(itt: number, timeoutMs = 10_000): Promise<Pdu> {
    return new Promise((resolve, reject) => {
      if (this.closed) { reject(new Error('connection closed by the target')); return; }
      const timer = setTimeout(() => { this.waiters.delete(itt); reject(new Error(`no answer for ITT ${itt} within ${timeoutMs} ms`)); }, timeoutMs);
      this.waiters.set(itt, (p) => { clearTimeout(timer); resolve(p); });
    });
  }

  private async login(o: { initiatorName: string; targetName?: string; isid?: Buffer; keys?: Record<string, string> }): Promise<void> {
    const isid = o.isid ?? Buffer.from([0x80, 0x12, 0x34, 0x56, Math.floor(Math.random() * 256), Math.floor(Math.random() * 256)]);
    const itt = this.itt++;
    const keys: Record<string, string> = {
      InitiatorName: o.initiatorName,
      SessionType: o.targetName ? 'Normal' : 'Discovery',
      ...(o.targetName ? { TargetName: o.targetName } : {}),
      AuthMethod: 'None',
      HeaderDigest: 'None', DataDigest: 'None',
      ...(o.targetName ? { InitialR2T: 'Yes', ImmediateData: 'No', MaxBurstLength: '262144', FirstBurstLength: '65536' } : {}),
      MaxRecvDataSegmentLength: '65536', ErrorRecoveryLevel: '0',
      ...o.keys,
    };
    // Security stage straight to full feature phase in one PDU (CSG 0 -> NSG 3): allowed without CHAP.
    const p = this.expect(itt);
    this.socket.write(loginRequest({ isid, itt, cmdSN: this.cmdSN, expStatSN: 0, csg: 0, nsg: 3, transit: true, keys }));
    let resp = await p;
    for (let round = 0; round < 8 && (resp.bhs[36] === 0) && !((resp.bhs[1] & 0x80) && (resp.bhs[1] & 0x03) === 3); round++) {
      // The target wants another round (it did not set T with NSG 3): continue with no new keys.
      const next = this.expect(itt);
      const csg = (resp.bhs[1] >> 2) & 0x03;
      this.socket.write(loginRequest({ isid, itt, cmdSN: this.cmdSN, expStatSN: this.expStatSN, csg, nsg: 3, transit: true, keys: {}, tsih: resp.bhs.readUInt16BE(14) }));
      resp = await next;
    }
    if (resp.bhs[36] !== 0) throw new Error(`login refused: status class ${resp.bhs[36]} detail ${resp.bhs[37]}`);
  }

  async command(lun: number, cdb: Buffer, o: { readLength?: number; dataOut?: Buffer } = {}): Promise<ScsiResult> {
    const itt = this.itt++;
    const write = o.dataOut !== undefined;
    const edtl = write ? o.dataOut!.length : (o.readLength ?? 0);
    const done = this.expect(itt);
    this.socket.write(scsiCommand({ lun, itt, cmdSN: this.cmdSN++, expStatSN: this.expStatSN, cdb, read: !!o.readLength, write, edtl }));
    if (write) {
      // InitialR2T=Yes, ImmediateData=No: every byte goes out in answer to an R2T.
      for (;;) {
        const r = await Promise.race([this.expect(itt), done]);
        const op = r.bhs[0] & 0x3f;
        if (op !== Op.r2t) return this.result(itt, r);
        const ttt = r.bhs.readUInt32BE(20);
        const offset = r.bhs.readUInt32BE(40);
        const len = r.bhs.readUInt32BE(44);
        for (let at = 0, sn = 0; at < len; at += 65536, sn++) {
          const n = Math.min(65536, len - at);
          this.socket.write(dataOut({ lun, itt, ttt, expStatSN: this.expStatSN, dataSN: sn, offset: offset + at, final: at + n >= len, data: o.dataOut!.subarray(offset + at, offset + at + n) }));
        }
      }
    }
    return this.result(itt, await done);
  }

  private result(itt: number, p: Pdu): ScsiResult {
    if (this.closed && p.bhs[0] === 0xff) throw new Error('connection closed by the target');
    const op = p.bhs[0] & 0x3f;
    const data = Buffer.concat(this.dataIn.get(itt) ?? []);
    this.dataIn.delete(itt);
    if (op === Op.dataIn) return { status: p.bhs[3], data, sense: Buffer.alloc(0), residual: p.bhs.readUInt32BE(44), arrival: p.arrival ?? 0 };
    if (op !== Op.scsiResponse) throw new Error(`unexpected PDU opcode 0x${op.toString(16)} for ITT ${itt}`);
    const senseLen = p.data.length >= 2 ? p.data.readUInt16BE(0) : 0;
    return { status: p.bhs[3], data, sense: p.data.subarray(2, 2 + senseLen), residual: p.bhs.readUInt32BE(44), arrival: p.arrival ?? 0 };
  }

  async read10(lun: number, lba: number, blocks: number): Promise<ScsiResult> {
    const cdb = Buffer.alloc(10);
    cdb[0] = 0x28; cdb.writeUInt32BE(lba, 2); cdb.writeUInt16BE(blocks, 7);
    return this.command(lun, cdb, { readLength: blocks * 512 });
  }

  async write10(lun: number, lba: number, data: Buffer): Promise<ScsiResult> {
    const cdb = Buffer.alloc(10);
    cdb[0] = 0x2a; cdb.writeUInt32BE(lba, 2); cdb.writeUInt16BE(data.length / 512, 7);
    return this.command(lun, cdb, { dataOut: data });
  }

  async nop(): Promise<void> {
    const itt = this.itt++;
    const p = this.expect(itt);
    this.socket.write(nopOut({ itt, cmdSN: this.cmdSN, expStatSN: this.expStatSN, immediate: true }));
    const r = await p;
    if ((r.bhs[0] & 0x3f) !== Op.nopIn) throw new Error('no NOP-In answer');
  }

  async sendTargets(): Promise<Record<string, string[]>> {
    const itt = this.itt++;
    const p = this.expect(itt);
    this.socket.write(textRequest({ itt, cmdSN: this.cmdSN, expStatSN: this.expStatSN, keys: { SendTargets: 'All' } }));
    const r = await p;
    const out: Record<string, string[]> = {};
    let current = '';
    for (const kv of r.data.toString('utf8').split('\0')) {
      const [k, v] = [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)];
      if (k === 'TargetName') { current = v; out[current] = []; } else if (k === 'TargetAddress') out[current]?.push(v);
    }
    return out;
  }

  /** The ITT and CmdSN the next command will carry, to name it later in ABORT TASK. */
  nextTask(): { itt: number; cmdSN: number } {
    return { itt: this.itt, cmdSN: this.cmdSN };
  }

  /** An immediate Task Management Function Request (RFC 7143 §11.5); resolves with its Response code. */
  async taskManagement(fn: number, lun: number, ref: { itt: number; cmdSN: number } = { itt: 0xffffffff, cmdSN: 0 }): Promise<number> {
    const itt = this.itt++;
    const p = this.expect(itt, 30_000);
    this.socket.write(taskMgmt({ fn, lun, itt, rtt: ref.itt, cmdSN: this.cmdSN, expStatSN: this.expStatSN, refCmdSN: ref.cmdSN }));
    const r = await p;
    if ((r.bhs[0] & 0x3f) !== Op.taskMgmtResponse) throw new Error('no Task Management Function Response');
    this.lastTmfArrival = r.arrival ?? 0;
    return r.bhs[2];
  }

  async logout(): Promise<void> {
    const itt = this.itt++;
    const p = this.expect(itt);
    this.socket.write(logoutRequest({ itt, cmdSN: this.cmdSN, expStatSN: this.expStatSN }));
    await p;
    this.socket.destroy();
  }

  destroy(): void { this.socket.destroy(); }
}
