// Test support for portal tests: memory devices, the real SCSI target over them, a portal on
// 127.0.0.1 port 0 with a recording logger, and a one-request login. Not used by the agent.
import { startPortal, type Portal, type PortalLimits, type PortalLogger } from './portal.ts';
import { createScsiTarget } from '../scsi/target.ts';
import { volumeIdentity } from '../scsi/identity.ts';
import type { BlockDevice } from '../storage/block-device.ts';
import type { ScsiTarget } from '../scsi/types.ts';
import type { ChapCredentials } from './chap.ts';
import { RawClient, loginPdu } from './test-support.ts';

export class MemoryDevice implements BlockDevice {
  readonly blockSizeBytes = 512;
  readonly bytes: Buffer;
  writes = 0;
  constructor(readonly sizeBytes: number) {
    this.bytes = Buffer.alloc(sizeBytes);
  }
  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return Buffer.from(this.bytes.subarray(offsetBytes, offsetBytes + lengthBytes));
  }
  async write(offsetBytes: number, data: Buffer): Promise<void> {
    this.writes++;
    data.copy(this.bytes, offsetBytes);
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

export const targetA = 'iqn.2026-11.io.metrocluster:test.alpha';
export const initiatorName = 'iqn.2026-11.org.example:portal-test';

export function makeTarget(iqn: string, devices: BlockDevice[]): ScsiTarget {
  return createScsiTarget({
    iqn,
    luns: devices.map((device, lun) => ({ lun, device, identity: volumeIdentity({ cluster: 'test', group: iqn, volume: String(lun) }) })),
    port: { relativeTargetPortId: 1, targetPortGroupId: 1, targetPortName: `${iqn},t,0x0001` },
  });
}

/** Collects log lines; a transport fault (error level) fails the test that owns the portal. */
export class TestLogger implements PortalLogger {
  readonly lines: Array<{ level: string; msg: string; meta?: object }> = [];
  info(msg: string, meta?: object) {
    this.lines.push({ level: 'info', msg, meta });
  }
  warn(msg: string, meta?: object) {
    this.lines.push({ level: 'warn', msg, meta });
  }
  error(msg: string, meta?: object) {
    this.lines.push({ level: 'error', msg, meta });
  }
  debug(msg: string, meta?: object) {
    this.lines.push({ level: 'debug', msg, meta });
  }
  errors() {
    return this.lines.filter((l) => l.level === 'error');
  }
}

export async function portalWith(opts: {
  targets: ScsiTarget[];
  chap?: ChapCredentials;
  initiators?: string[];
  limits?: Partial<PortalLimits>;
}): Promise<{ portal: Portal; log: TestLogger; port: number }> {
  const log = new TestLogger();
  const byName = new Map(opts.targets.map((t) => [t.iqn, t]));
  const portal = await startPortal({
    address: '127.0.0.1',
    port: 0,
    portalGroupTag: 1,
    registry: {
      lookup: (iqn) => byName.get(iqn),
      discovery: () => opts.targets.map((t) => ({ iqn: t.iqn, portals: [{ address: '127.0.0.1', port: 3260, portalGroupTag: 1 }] })),
    },
    auth: { initiators: opts.initiators ?? [], chap: opts.chap },
    logger: log,
    limits: opts.limits,
  });
  return { portal, log, port: portal.address.port };
}

/** Logs in a normal session in one request; returns the client and the first CmdSN. */
export async function login(port: number, target: string, opts: { isid?: Buffer; name?: string; keys?: Record<string, string> } = {}) {
  const client = await RawClient.connect(port);
  client.send(
    loginPdu({
      csg: 1,
      nsg: 3,
      transit: true,
      isid: opts.isid,
      cmdSN: 1,
      keys: { InitiatorName: opts.name ?? initiatorName, TargetName: target, ImmediateData: 'Yes', InitialR2T: 'No', MaxRecvDataSegmentLength: '65536', ...opts.keys },
    }),
  );
  const resp = await client.next();
  return { client, resp };
}
