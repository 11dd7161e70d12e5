// Test support for the transport: an initiator-side PDU builder, a reader for target PDUs and a
// recording ConnectionIo. Used by the *.test.ts files here; not by the agent.
import { crc32c } from '@node-rs/crc32';
import { InitiatorOpcode } from './constants.ts';
import { encodeInitiatorHeader, paddingOf, type Pdu, type Digests, noDigests } from './pdu.ts';
import { PduParser } from './pdu-parser.ts';
import { decodeText, encodeText, type TextPair } from './text-keys.ts';
import type { ConnectionIo } from './connection.ts';
import type { ScsiRequest, TaskManagementFunction, Nexus } from '../scsi/types.ts';

/** Serializes one initiator PDU the way an initiator would put it on the wire. */
export function wire(bhs: Buffer, data: Buffer = Buffer.alloc(0), digests: Digests = noDigests, ahs: Buffer = Buffer.alloc(0)): Buffer {
  const parts: Buffer[] = [bhs, ahs];
  if (digests.header) {
    const d = Buffer.alloc(4);
    d.writeUInt32LE(crc32c(Buffer.concat([bhs, ahs])) >>> 0);
    parts.push(d);
  }
  if (data.length > 0) {
    const padded = Buffer.concat([data, Buffer.alloc(paddingOf(data.length))]);
    parts.push(padded);
    if (digests.data) {
      const d = Buffer.alloc(4);
      d.writeUInt32LE(crc32c(padded) >>> 0);
      parts.push(d);
    }
  }
  return Buffer.concat(parts);
}

export function pduOf(bhs: Buffer, data: Buffer = Buffer.alloc(0), ahs: Buffer = Buffer.alloc(0)): Pdu {
  return { bhs, ahs, data };
}

export interface LoginFields {
  transit?: boolean;
  cont?: boolean;
  csg: number;
  nsg: number;
  isid?: Buffer;
  tsih?: number;
  itt?: number;
  cid?: number;
  cmdSN?: number;
  expStatSN?: number;
  versionMin?: number;
  keys?: Record<string, string> | TextPair[];
  data?: Buffer;
}
export const defaultIsid = Buffer.from([0x80, 0x12, 0x34, 0x56, 0x78, 0x9a]);

export function loginPdu(f: LoginFields): Pdu {
  const data = f.data ?? encodeText(Array.isArray(f.keys) ? f.keys : Object.entries(f.keys ?? {}));
  const flags = (f.transit ? 0x80 : 0) | (f.cont ? 0x40 : 0) | (f.csg << 2) | f.nsg;
  const bhs = encodeInitiatorHeader({
    opcode: InitiatorOpcode.LoginRequest,
    immediate: true,
    flags,
    initiatorTaskTag: f.itt ?? 1,
    dataLength: data.length,
    specific: (b) => {
      b[3] = f.versionMin ?? 0;
      (f.isid ?? defaultIsid).copy(b, 8);
      b.writeUInt16BE(f.tsih ?? 0, 14);
      b.writeUInt16BE(f.cid ?? 0, 20);
      b.writeUInt32BE(f.cmdSN ?? 1, 24);
      b.writeUInt32BE(f.expStatSN ?? 0, 28);
    },
  });
  return pduOf(bhs, data);
}

export function scsiCommandPdu(f: {
  itt: number;
  cmdSN: number;
  cdb: number[] | Buffer;
  lun?: number;
  read?: boolean;
  write?: boolean;
  final?: boolean;
  immediate?: boolean;
  edtl: number;
  data?: Buffer;
  expStatSN?: number;
}): Pdu {
  const data = f.data ?? Buffer.alloc(0);
  const flags = (f.final === false ? 0 : 0x80) | (f.read ? 0x40 : 0) | (f.write ? 0x20 : 0) | 1;
  const bhs = encodeInitiatorHeader({
    opcode: InitiatorOpcode.ScsiCommand,
    immediate: f.immediate,
    flags,
    lun: f.lun ?? 0,
    initiatorTaskTag: f.itt,
    dataLength: data.length,
    specific: (b) => {
      b.writeUInt32BE(f.edtl, 20);
      b.writeUInt32BE(f.cmdSN >>> 0, 24);
      b.writeUInt32BE(f.expStatSN ?? 0, 28);
      Buffer.from(f.cdb).copy(b, 32, 0, 16);
    },
  });
  return pduOf(bhs, data);
}

export function dataOutPdu(f: { itt: number; ttt: number; offset: number; data: Buffer; final?: boolean; dataSN?: number; lun?: number }): Pdu {
  const bhs = encodeInitiatorHeader({
    opcode: InitiatorOpcode.DataOut,
    flags: f.final === false ? 0 : 0x80,
    lun: f.lun ?? 0,
    initiatorTaskTag: f.itt,
    dataLength: f.data.length,
    specific: (b) => {
      b.writeUInt32BE(f.ttt >>> 0, 20);
      b.writeUInt32BE(f.dataSN ?? 0, 36);
      b.writeUInt32BE(f.offset, 40);
    },
  });
  return pduOf(bhs, f.data);
}

export function nopOutPdu(f: { itt: number; ttt?: number; cmdSN: number; immediate?: boolean; data?: Buffer }): Pdu {
  const data = f.data ?? Buffer.alloc(0);
  const bhs = encodeInitiatorHeader({
    opcode: InitiatorOpcode.NopOut,
    immediate: f.immediate,
    flags: 0x80,
    lun: 0,
    initiatorTaskTag: f.itt,
    dataLength: data.length,
    specific: (b) => {
      b.writeUInt32BE((f.ttt ?? 0xffffffff) >>> 0, 20);
      b.writeUInt32BE(f.cmdSN >>> 0, 24);
    },
  });
  return pduOf(bhs, data);
}

export function textPdu(f: { itt: number; ttt?: number; cmdSN: number; keys?: Record<string, string>; data?: Buffer; cont?: boolean; final?: boolean; immediate?: boolean }): Pdu {
  const data = f.data ?? encodeText(Object.entries(f.keys ?? {}));
  const bhs = encodeInitiatorHeader({
    opcode: InitiatorOpcode.TextRequest,
    immediate: f.immediate,
    flags: (f.final === false || f.cont ? 0 : 0x80) | (f.cont ? 0x40 : 0),
    initiatorTaskTag: f.itt,
    dataLength: data.length,
    specific: (b) => {
      b.writeUInt32BE((f.ttt ?? 0xffffffff) >>> 0, 20);
      b.writeUInt32BE(f.cmdSN >>> 0, 24);
    },
  });
  return pduOf(bhs, data);
}

export function logoutPdu(f: { itt: number; cmdSN: number; reason?: number; cid?: number; immediate?: boolean }): Pdu {
  const bhs = encodeInitiatorHeader({
    opcode: InitiatorOpcode.LogoutRequest,
    immediate: f.immediate,
    flags: 0x80 | (f.reason ?? 0),
    initiatorTaskTag: f.itt,
    dataLength: 0,
    specific: (b) => {
      b.writeUInt16BE(f.cid ?? 0, 20);
      b.writeUInt32BE(f.cmdSN >>> 0, 24);
    },
  });
  return pduOf(bhs);
}

export function tmfPdu(f: { itt: number; cmdSN: number; fn: number; lun?: number; refItt?: number; refCmdSN?: number; immediate?: boolean }): Pdu {
  const bhs = encodeInitiatorHeader({
    opcode: InitiatorOpcode.TaskManagementRequest,
    immediate: f.immediate ?? true,
    flags: 0x80 | f.fn,
    lun: f.lun ?? 0,
    initiatorTaskTag: f.itt,
    dataLength: 0,
    specific: (b) => {
      b.writeUInt32BE((f.refItt ?? 0xffffffff) >>> 0, 20);
      b.writeUInt32BE(f.cmdSN >>> 0, 24);
      b.writeUInt32BE((f.refCmdSN ?? 0) >>> 0, 32);
    },
  });
  return pduOf(bhs);
}

/** A target PDU as tests look at it. */
export interface TargetPdu {
  readonly opcode: number;
  readonly flags: number;
  readonly bhs: Buffer;
  readonly data: Buffer;
  readonly itt: number;
  readonly ttt: number;
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
}

export function readTargetPdus(bytes: Buffer, digests: Digests = noDigests): TargetPdu[] {
  const parser = new PduParser({ headerDigest: digests.header, dataDigest: digests.data, dataSegmentBytesMax: 1 << 24 });
  parser.push(bytes);
  const out: TargetPdu[] = [];
  for (let r = parser.next(); r !== undefined; r = parser.next()) {
    if (r.kind !== 'pdu') throw new Error(`bad target PDU: ${r.kind}`);
    const b = r.pdu.bhs;
    out.push({
      opcode: b[0] & 0x3f,
      flags: b[1],
      bhs: b,
      data: Buffer.from(r.pdu.data),
      itt: b.readUInt32BE(16),
      ttt: b.readUInt32BE(20),
      statSN: b.readUInt32BE(24),
      expCmdSN: b.readUInt32BE(28),
      maxCmdSN: b.readUInt32BE(32),
    });
  }
  if (parser.bufferedBytes !== 0) throw new Error('trailing bytes after target PDUs');
  return out;
}

export function textOf(p: { data: Buffer }): Record<string, string> {
  const decoded = decodeText(p.data);
  if (!decoded.ok) throw new Error(decoded.reason);
  return Object.fromEntries(decoded.pairs);
}

/** A ConnectionIo that records everything the core asks for. */
export class RecordingIo implements ConnectionIo {
  sent: Buffer[] = [];
  executed: Array<{ serial: number; req: ScsiRequest }> = [];
  tmfs: Array<{ serial: number; req: { fn: TaskManagementFunction; nexus: Nexus; lun: number } }> = [];
  closedWith: string | undefined;

  /** The `written` callbacks of send(), in order; a test runs them as the socket would. */
  written: Array<() => void> = [];

  send(parts: Buffer[], written?: () => void): void {
    this.sent.push(Buffer.concat(parts));
    if (written) this.written.push(written);
  }
  execute(serial: number, req: ScsiRequest): void {
    this.executed.push({ serial, req });
  }
  taskManagement(serial: number, req: { fn: TaskManagementFunction; nexus: Nexus; lun: number }): void {
    this.tmfs.push({ serial, req });
  }
  close(reason: string): void {
    this.closedWith = reason;
  }
  /** Target PDUs sent since the last call. */
  take(digests: Digests = noDigests): TargetPdu[] {
    const all = Buffer.concat(this.sent);
    this.sent = [];
    return readTargetPdus(all, digests);
  }
}

/** A raw TCP initiator for portal tests: sends bytes, reads target PDUs one at a time. */
export class RawClient {
  private readonly parser = new PduParser({ headerDigest: false, dataDigest: false, dataSegmentBytesMax: 1 << 24 });
  private readonly queue: TargetPdu[] = [];
  private waiter: (() => void) | undefined;
  closed = false;
  readonly closedPromise: Promise<void>;

  private constructor(readonly socket: import('node:net').Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.parser.push(chunk);
      for (let r = this.parser.next(); r !== undefined; r = this.parser.next()) {
        if (r.kind !== 'pdu') continue;
        const b = r.pdu.bhs;
        this.queue.push({
          opcode: b[0] & 0x3f,
          flags: b[1],
          bhs: b,
          data: Buffer.from(r.pdu.data),
          itt: b.readUInt32BE(16),
          ttt: b.readUInt32BE(20),
          statSN: b.readUInt32BE(24),
          expCmdSN: b.readUInt32BE(28),
          maxCmdSN: b.readUInt32BE(32),
        });
      }
      this.waiter?.();
    });
    socket.on('error', () => undefined);
    this.closedPromise = new Promise((resolve) =>
      socket.once('close', () => {
        this.closed = true;
        this.waiter?.();
        resolve();
      }),
    );
  }

  static async connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    const net = await import('node:net');
    const socket = net.connect({ port, host });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    return new RawClient(socket);
  }

  send(...pdus: Pdu[]): void {
    for (const p of pdus) this.socket.write(wire(p.bhs, p.data, noDigests, p.ahs));
  }

  /** The next target PDU, or undefined once the connection closed or the time ran out. */
  async next(timeoutMs = 2000): Promise<TargetPdu | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0 && !this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    return this.queue.shift();
  }

  close(): void {
    this.socket.destroy();
  }
}
