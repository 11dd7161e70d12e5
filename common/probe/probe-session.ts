// The drill probe's iSCSI initiator: one session over real TCP to one portal, enough of RFC 7143 for
// a probe: login (§6.3, §13) without authentication straight to full feature phase, or with CHAP
// (one-way or mutual, probe-chap.ts) in the security stage and then the operational stage; SCSI
// commands with R2T handling (§11.8), answers to the target's NOP-In pings (§11.19), a deadline per
// command. Every failure (refused login, closed connection, deadline) rejects with a ProbeError and
// closes the session; the caller reconnects.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { initiatorChapStep, type InitiatorChapState, type ProbeChapCredentials } from './probe-chap.ts';

export class ProbeError extends Error {
  override name = 'ProbeError';
}

/** The target ended the login with a status other than success (RFC 7143 §11.13.5). */
export class ProbeLoginRefused extends ProbeError {
  override name = 'ProbeLoginRefused';
  constructor(message: string, readonly statusClass: number, readonly statusDetail: number) {
    super(message);
  }
  /** Class 2: the initiator's fault (credentials, allow-list, target name); retrying cannot help. */
  get initiatorError(): boolean {
    return this.statusClass === 2;
  }
}

/** What a refused login's status means to an admin (RFC 7143 §11.13.5). */
function refusalSentence(target: string, statusClass: number, detail: number, withChap: boolean): string {
  const code = `login status 0x${((statusClass << 8) | detail).toString(16).padStart(4, '0')}`;
  const known: Record<number, string> = {
    0x0201: withChap ? 'authentication failed: the target did not accept the CHAP user and secret'
      : 'authentication failed: the target requires CHAP and the probe logged in without it',
    0x0202: 'authorization failure: the target does not allow this initiator name',
    0x0203: 'the target does not exist at this portal',
  };
  const what = known[(statusClass << 8) | detail] ?? (statusClass === 3 ? 'the target could not serve the login now' : 'the target refused the login');
  return `login to ${target} refused (${code}): ${what}`;
}

export interface ScsiOutcome {
  /** SCSI status (0 GOOD, 2 CHECK CONDITION, ...). */
  status: number;
  data: Buffer;
  /** Sense key and ASC/ASCQ when CHECK CONDITION carried sense data. */
  sense: { key: number; asc: number; ascq: number } | null;
}

const op = { nopOut: 0x00, scsi: 0x01, login: 0x03, dataOut: 0x05, logout: 0x06, nopIn: 0x20, scsiResp: 0x21, loginResp: 0x23, dataIn: 0x25, logoutResp: 0x26, r2t: 0x31, reject: 0x3f } as const;
const burstBytes = 65_536;
const pad4 = (n: number): number => (n + 3) & ~3;

function frame(bhs: Buffer, data: Buffer = Buffer.alloc(0)): Buffer {
  bhs.writeUIntBE(data.length, 5, 3);
  const out = Buffer.alloc(48 + pad4(data.length));
  bhs.copy(out);
  data.copy(out, 48);
  return out;
}

const keysText = (k: Record<string, string>): Buffer => Buffer.from(Object.entries(k).map(([a, b]) => `${a}=${b}\0`).join(''), 'utf8');

function parseKeys(d: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of d.toString('utf8').split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

interface Waiter { resolve(p: { bhs: Buffer; data: Buffer }): void; reject(e: Error): void }

export class ProbeSession {
  private sock!: net.Socket;
  private buf: Buffer = Buffer.alloc(0);
  private itt = 1;
  private cmdSN = 1;
  private expStatSN = 0;
  private waiters = new Map<number, Waiter>();
  private dataIn = new Map<number, Buffer[]>();
  private r2ts = new Map<number, (p: Buffer) => void>();
  closed = false;

  private constructor(private readonly commandTimeoutMs: number) {}

  static async open(o: { host: string; port: number; initiator: string; target: string; timeoutMs: number; chap?: ProbeChapCredentials }): Promise<ProbeSession> {
    const s = new ProbeSession(o.timeoutMs);
    await s.connect(o.host, o.port, o.timeoutMs);
    try {
      await s.login(o.initiator, o.target, o.chap);
    } catch (err) {
      s.close();
      throw err;
    }
    return s;
  }

  private connect(host: string, port: number, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.sock.destroy(); reject(new ProbeError(`no TCP connection to ${host}:${port} within ${timeoutMs} ms`)); }, timeoutMs);
      this.sock = net.connect({ host, port }, () => { clearTimeout(timer); resolve(); });
      this.sock.setNoDelay(true);
      this.sock.on('error', (err) => { clearTimeout(timer); this.fail(new ProbeError(`${host}:${port}: ${err.message}`)); reject(new ProbeError(`${host}:${port}: ${err.message}`)); });
      this.sock.on('close', () => this.fail(new ProbeError(`${host}:${port} closed the connection`)));
      this.sock.on('data', (d: Buffer) => this.receive(d));
    });
  }

  private fail(err: Error): void {
    this.closed = true;
    for (const w of this.waiters.values()) w.reject(err);
    this.waiters.clear();
  }

  close(): void {
    this.closed = true;
    this.sock?.destroy();
  }

  private receive(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    while (this.buf.length >= 48) {
      const ahs = this.buf[4] * 4;
      const dlen = this.buf.readUIntBE(5, 3);
      const total = 48 + ahs + pad4(dlen);
      if (this.buf.length < total) return;
      const bhs = Buffer.from(this.buf.subarray(0, 48));
      const data = Buffer.from(this.buf.subarray(48 + ahs, 48 + ahs + dlen));
      this.buf = this.buf.subarray(total);
      this.dispatch(bhs, data);
    }
  }

  private dispatch(bhs: Buffer, data: Buffer): void {
    const code = bhs[0] & 0x3f;
    const itt = bhs.readUInt32BE(16);
    if (code === op.nopIn && itt === 0xffffffff) {
      const ttt = bhs.readUInt32BE(20);
      if (ttt !== 0xffffffff) this.send(this.nopOut(0xffffffff, ttt));
      return;
    }
    const statSNCarried = code === op.scsiResp || code === op.nopIn || code === op.loginResp || code === op.logoutResp || (code === op.dataIn && (bhs[1] & 0x01));
    if (statSNCarried) this.expStatSN = (bhs.readUInt32BE(24) + 1) >>> 0;
    if (code === op.dataIn) {
      const parts = this.dataIn.get(itt) ?? [];
      parts.push(data);
      this.dataIn.set(itt, parts);
      if (!(bhs[1] & 0x01)) return;
    }
    if (code === op.r2t) { this.r2ts.get(itt)?.(bhs); return; }
    const w = this.waiters.get(itt);
    if (w) { this.waiters.delete(itt); w.resolve({ bhs, data }); }
  }

  private send(b: Buffer): void {
    if (!this.closed) this.sock.write(b);
  }

  private expect(itt: number): Promise<{ bhs: Buffer; data: Buffer }> {
    return new Promise((resolve, reject) => {
      if (this.closed) { reject(new ProbeError('session closed')); return; }
      const timer = setTimeout(() => {
        this.waiters.delete(itt);
        const e = new ProbeError(`no answer within ${this.commandTimeoutMs} ms`);
        reject(e);
        this.close();
      }, this.commandTimeoutMs);
      this.waiters.set(itt, {
        resolve: (p) => { clearTimeout(timer); resolve(p); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
    });
  }

  private nopOut(itt: number, ttt: number): Buffer {
    const b = Buffer.alloc(48);
    b[0] = 0x40 | op.nopOut;
    b[1] = 0x80;
    b.writeUInt32BE(itt >>> 0, 16);
    b.writeUInt32BE(ttt >>> 0, 20);
    b.writeUInt32BE(this.cmdSN >>> 0, 24);
    b.writeUInt32BE(this.expStatSN >>> 0, 28);
    return frame(b);
  }

  private loginRequest(isid: Buffer, itt: number, tsih: number, csg: number, next: { transit: boolean; nsg: number }, keys: Record<string, string>): Promise<{ bhs: Buffer; data: Buffer }> {
    const b = Buffer.alloc(48);
    b[0] = 0x40 | op.login;
    b[1] = (next.transit ? 0x80 : 0) | (csg << 2) | (next.transit ? next.nsg : 0);
    isid.copy(b, 8);
    b.writeUInt16BE(tsih, 14);
    b.writeUInt32BE(itt, 16);
    b.writeUInt32BE(this.cmdSN, 24);
    b.writeUInt32BE(this.expStatSN, 28);
    const answer = this.expect(itt);
    this.send(frame(b, keysText(keys)));
    return answer;
  }

  /**
   * Without CHAP: one request from the security stage straight to full feature phase. With CHAP:
   * the security stage (AuthMethod, CHAP_A, CHAP_N/CHAP_R and, mutual, our challenge) asks for the
   * operational stage once our response is sent; the operational keys follow there (§13: they are
   * not security keys), then full feature phase.
   */
  private async login(initiator: string, target: string, creds: ProbeChapCredentials | undefined): Promise<void> {
    // A random ISID (RFC 7143 §10.12.5, type 10b): two probe sessions must never reinstate each other.
    const isid = Buffer.concat([Buffer.from([0x80]), randomBytes(5)]);
    const itt = this.itt++;
    const names = { InitiatorName: initiator, TargetName: target, SessionType: 'Normal' };
    const operational = {
      HeaderDigest: 'None', DataDigest: 'None', InitialR2T: 'Yes', ImmediateData: 'No',
      MaxRecvDataSegmentLength: String(burstBytes), MaxBurstLength: '262144', FirstBurstLength: String(burstBytes),
      ErrorRecoveryLevel: '0', MaxConnections: '1',
    };
    let chap: InitiatorChapState | null = null;
    let csg = 0;
    let tsih = 0;
    let keys: Record<string, string>;
    let next: { transit: boolean; nsg: number };
    if (creds) {
      const first = initiatorChapStep({ step: 'start' }, {}, creds, randomBytes);
      if (!first.ok) throw new ProbeError(first.reason);
      chap = first.state;
      keys = { ...names, ...first.send };
      next = { transit: false, nsg: 0 };
    } else {
      keys = { ...names, AuthMethod: 'None', ...operational };
      next = { transit: true, nsg: 3 };
    }
    let operationalSent = !creds;
    for (let round = 0; round < 8; round++) {
      const r = await this.loginRequest(isid, itt, tsih, csg, next, keys);
      if ((r.bhs[0] & 0x3f) !== op.loginResp) throw new ProbeError('the target answered the login with another PDU');
      if (r.bhs[36] !== 0) throw new ProbeLoginRefused(refusalSentence(target, r.bhs[36], r.bhs[37], creds !== undefined), r.bhs[36], r.bhs[37]);
      const got = parseKeys(r.data);
      tsih = r.bhs.readUInt16BE(14);
      const transit = (r.bhs[1] & 0x80) !== 0;
      const nsg = r.bhs[1] & 0x03;
      keys = {};
      if (chap && csg === 0) {
        const step = initiatorChapStep(chap, got, creds!, randomBytes);
        if (!step.ok) throw new ProbeError(`CHAP with ${target}: ${step.reason}`);
        chap = step.state;
        keys = step.send;
      } else if (!creds && got.AuthMethod && got.AuthMethod !== 'None') {
        throw new ProbeError(`the target asks for ${got.AuthMethod}: the topology has no access.chap for the probe to log in with`);
      }
      if (transit && chap && chap.step !== 'done') throw new ProbeError(`the target ${target} left the security stage before CHAP completed`);
      if (transit && nsg === 3) return;
      if (transit) csg = nsg;
      if (csg === 1) {
        keys = operationalSent ? {} : operational;
        operationalSent = true;
        next = { transit: true, nsg: 3 };
      } else {
        // Our CHAP response is on its way: ask for the operational stage with it (the target
        // answers T=0 until CHAP is done).
        const answered = chap !== null && (chap.step === 'await-proof' || chap.step === 'done');
        next = answered ? { transit: true, nsg: 1 } : { transit: false, nsg: 0 };
      }
    }
    throw new ProbeError('login did not reach full feature phase in 8 rounds');
  }

  /** One SCSI command; `dataOut` for writes (sent in answer to R2Ts), `readBytes` for reads. */
  async command(cdb: Buffer, o: { readBytes?: number; dataOut?: Buffer } = {}): Promise<ScsiOutcome> {
    const itt = this.itt++;
    const b = Buffer.alloc(48);
    b[0] = op.scsi;
    b[1] = 0x80 | (o.readBytes ? 0x40 : 0) | (o.dataOut ? 0x20 : 0) | 1;
    b.writeUInt32BE(itt, 16);
    b.writeUInt32BE(o.dataOut?.length ?? o.readBytes ?? 0, 20);
    b.writeUInt32BE(this.cmdSN, 24);
    this.cmdSN = (this.cmdSN + 1) >>> 0;
    b.writeUInt32BE(this.expStatSN, 28);
    cdb.copy(b, 32, 0, Math.min(16, cdb.length));
    if (o.dataOut) {
      const out = o.dataOut;
      this.r2ts.set(itt, (r2t) => {
        const ttt = r2t.readUInt32BE(20);
        const offset = r2t.readUInt32BE(40);
        const len = r2t.readUInt32BE(44);
        for (let at = 0, sn = 0; at < len; at += burstBytes, sn++) {
          const n = Math.min(burstBytes, len - at);
          const d = Buffer.alloc(48);
          d[0] = op.dataOut;
          d[1] = at + n >= len ? 0x80 : 0;
          d.writeUInt32BE(itt, 16);
          d.writeUInt32BE(ttt, 20);
          d.writeUInt32BE(this.expStatSN, 28);
          d.writeUInt32BE(sn, 36);
          d.writeUInt32BE(offset + at, 40);
          this.send(frame(d, out.subarray(offset + at, offset + at + n)));
        }
      });
    }
    try {
      const answer = this.expect(itt);
      this.send(frame(b));
      const r = await answer;
      const data = Buffer.concat(this.dataIn.get(itt) ?? []);
      const code = r.bhs[0] & 0x3f;
      if (code === op.dataIn) return { status: r.bhs[3], data, sense: null };
      if (code !== op.scsiResp) throw new ProbeError(`unexpected PDU 0x${code.toString(16)} for a SCSI command`);
      if (r.bhs[2] !== 0) throw new ProbeError(`iSCSI response ${r.bhs[2]}: the target failed the command`);
      const senseLen = r.data.length >= 2 ? r.data.readUInt16BE(0) : 0;
      const s = r.data.subarray(2, 2 + senseLen);
      const sense = s.length >= 14 ? { key: s[2] & 0x0f, asc: s[12], ascq: s[13] } : null;
      return { status: r.bhs[3], data, sense };
    } finally {
      this.r2ts.delete(itt);
      this.dataIn.delete(itt);
    }
  }

  async logout(): Promise<void> {
    const itt = this.itt++;
    const b = Buffer.alloc(48);
    b[0] = 0x40 | op.logout;
    b[1] = 0x80;
    b.writeUInt32BE(itt, 16);
    b.writeUInt32BE(this.cmdSN, 24);
    b.writeUInt32BE(this.expStatSN, 28);
    const answer = this.expect(itt).catch(() => undefined);
    this.send(frame(b));
    await answer;
    this.close();
  }
}

export const cdbs = {
  readCapacity10: (): Buffer => Buffer.from([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  read10(lba: number, blocks: number): Buffer {
    const c = Buffer.alloc(10);
    c[0] = 0x28; c.writeUInt32BE(lba, 2); c.writeUInt16BE(blocks, 7);
    return c;
  },
  /** COMPARE AND WRITE (SBC-4 5.3) of one block with FUA: Data-Out = verify data then write data. */
  compareAndWrite(lba: number): Buffer {
    const c = Buffer.alloc(16);
    c[0] = 0x89; c[1] = 0x08; c.writeBigUInt64BE(BigInt(lba), 2); c[13] = 1;
    return c;
  },
};
