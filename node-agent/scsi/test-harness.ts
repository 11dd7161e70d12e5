// Test support for the SCSI layer: targets over real temp-file volumes, CDB builders and an
// execute() wrapper that decodes sense. Used by the *.test.ts files here; not by the agent.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlockDevice } from '../storage/block-device.ts';
import { openFileBlockDevice } from '../storage/file-block-device.ts';
import { volumeIdentity } from './identity.ts';
import { parseFixedSense } from './sense.ts';
import { createScsiTarget, type LunInventory, type ScsiTargetOptions } from './target.ts';
import type { Nexus, ScsiResponse, ScsiTarget, TaskAttribute } from './types.ts';

export const iqn = 'iqn.2026-11.io.metrocluster:demo.db';

export function nexus(name: string, portalGroupTag = 1): Nexus {
  return { id: `${name},i,0x000000000001,${portalGroupTag}`, initiatorName: name, isidHex: '000000000001', portalGroupTag };
}

/** A device wrapper that records what reached it, and can be told to fail. */
export class RecordingDevice implements BlockDevice {
  flushes = 0;
  fuaWrites = 0;
  plainWrites = 0;
  reads = 0;
  deallocations = 0;
  failWith: string | undefined;

  constructor(readonly inner: BlockDevice) {}

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  get blockSizeBytes(): number {
    return this.inner.blockSizeBytes;
  }
  private fail(): void {
    if (this.failWith) throw Object.assign(new Error(`injected ${this.failWith}`), { code: this.failWith });
  }
  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.fail();
    this.reads++;
    return this.inner.read(offsetBytes, lengthBytes);
  }
  async write(offsetBytes: number, data: Buffer, opts?: { fua?: boolean }): Promise<void> {
    this.fail();
    if (opts?.fua) this.fuaWrites++;
    else this.plainWrites++;
    return this.inner.write(offsetBytes, data, opts);
  }
  vectoredWrites = 0;
  async writev(offsetBytes: number, parts: readonly Buffer[], opts?: { fua?: boolean }): Promise<void> {
    this.fail();
    if (opts?.fua) this.fuaWrites++;
    else this.plainWrites++;
    this.vectoredWrites++;
    if (this.inner.writev) return this.inner.writev(offsetBytes, parts, opts);
    return this.inner.write(offsetBytes, Buffer.concat(parts), opts);
  }
  async flush(): Promise<void> {
    this.fail();
    this.flushes++;
    return this.inner.flush();
  }
  async deallocate(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.fail();
    this.deallocations++;
    if (!this.inner.deallocate) throw new Error('the inner device cannot deallocate');
    return this.inner.deallocate(offsetBytes, lengthBytes);
  }
  mappedBytesFrom(offsetBytes: number, limitBytes: number): number {
    return this.inner.mappedBytesFrom?.(offsetBytes, limitBytes) ?? 0;
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

export interface Fixture {
  target: ScsiTarget & LunInventory;
  devices: RecordingDevice[];
  dir: string;
  /** Runs a command as `who` (default nexus "host1") on `lun` (default 0). */
  exec(cdb: number[] | Buffer, opts?: ExecOptions): Promise<Result>;
}

export interface ExecOptions {
  lun?: number;
  who?: Nexus;
  dataOut?: Buffer;
  /** Data-Out as several pieces (as the transport passes multi-PDU transfers); dataOut is their join. */
  dataOutParts?: Buffer[];
  attribute?: TaskAttribute;
  signal?: AbortSignal;
}

export interface Result extends ScsiResponse {
  sk?: number;
  asc?: number;
  ascq?: number;
  info?: number;
  field?: { inCdb: boolean; byte: number; bit?: number };
}

export function cdb(...bytes: number[]): Buffer {
  const b = Buffer.alloc(Math.max(16, bytes.length));
  Buffer.from(bytes).copy(b);
  return b;
}

interface LunSpec {
  sizeBytes: number;
  blockSizeBytes?: number;
  volume?: string;
}

export async function makeFixture(
  t: { teardown(fn: () => Promise<void>): void },
  opts: {
    luns?: LunSpec[];
    port?: ScsiTargetOptions['port'];
    cluster?: string;
    dir?: string;
    clearPowerOn?: boolean;
    /** ALUA provider, reservation store and other target options. */
    target?: Pick<ScsiTargetOptions, 'alua' | 'reservationStore' | 'registrationsMax' | 'stateMirror'>;
  } = {},
): Promise<Fixture> {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'metro-scsi-')));
  const specs = opts.luns ?? [{ sizeBytes: 4 * 1024 * 1024 }];
  const devices: RecordingDevice[] = [];
  for (const [i, s] of specs.entries()) {
    const file = await openFileBlockDevice({
      path: join(dir, `${opts.port?.targetPortGroupId ?? 1}-${s.volume ?? `vol${i}`}`),
      sizeBytes: s.sizeBytes,
      blockSizeBytes: s.blockSizeBytes,
    });
    devices.push(new RecordingDevice(file));
  }
  const target = createScsiTarget({
    iqn,
    luns: devices.map((device, i) => ({
      lun: i,
      device,
      identity: volumeIdentity({ cluster: opts.cluster ?? 'demo', group: 'db', volume: specs[i].volume ?? `vol${i}` }),
    })),
    port: opts.port ?? { relativeTargetPortId: 1, targetPortGroupId: 1, targetPortName: `${iqn},t,0x0001` },
    ...opts.target,
  });
  t.teardown(async () => {
    await Promise.all(devices.map((d) => d.close()));
    if (!opts.dir) await rm(dir, { recursive: true, force: true });
  });
  const host1 = nexus('iqn.2026-11.org.example:host1');
  const exec = async (bytes: number[] | Buffer, o: ExecOptions = {}): Promise<Result> => {
    const c = Buffer.isBuffer(bytes) ? bytes : cdb(...bytes);
    const dataOut = o.dataOutParts ? Buffer.concat(o.dataOutParts) : o.dataOut;
    const r = await target.execute({
      nexus: o.who ?? host1,
      lun: o.lun ?? 0,
      cdb: c,
      taskTag: 1,
      attribute: o.attribute ?? 'simple',
      expectedDataLength: dataOut?.length ?? 0,
      dataOut,
      dataOutParts: o.dataOutParts,
      signal: o.signal,
    });
    return decorate(r);
  };
  target.nexusOpened(host1);
  if (opts.clearPowerOn !== false) {
    for (const lun of target.luns()) await exec([0x00], { lun }); // consume the power-on unit attention
  }
  return { target, devices, dir, exec };
}

export function decorate(r: ScsiResponse): Result {
  if (!r.sense) return { ...r };
  const s = parseFixedSense(r.sense);
  return { ...r, sk: s.key, asc: s.asc, ascq: s.ascq, info: s.information, field: s.fieldPointer };
}

/** Distinct, position-dependent bytes so misplaced data is visible. */
export function pattern(lengthBytes: number, seed: number): Buffer {
  const b = Buffer.alloc(lengthBytes);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < lengthBytes; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

export function be(value: number | bigint, bytes: number): number[] {
  const out: number[] = [];
  let v = BigInt(value);
  for (let i = 0; i < bytes; i++) {
    out.unshift(Number(v & 0xffn));
    v >>= 8n;
  }
  return out;
}
