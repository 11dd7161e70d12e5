// ForwardLink and ForwardService over a real gRPC stream in one process, against a real SCSI target
// on a temp volume file: answers come back whole (data, sense, residual lengths), the remote nexus
// is seen through the secondary's port, the bounds hold (outstanding commands, then a bounded queue,
// then TASK SET FULL), an abort reaches the primary, and a lost link answers NOT READY at once.
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { dial } from '../../common/grpc-client.ts';
import { startGrpcServer } from '../../common/grpc-server.ts';
import { createLogger } from '../../common/log.ts';
import { serviceOf } from '../../common/proto.ts';
import type { GrpcSecurity } from '../../common/tls/grpc-security.ts';
import type { Topology } from '../../common/topology/index.ts';
import type { BlockDevice } from '../storage/block-device.ts';
import { openFileBlockDevice } from '../storage/file-block-device.ts';
import { volumeIdentity } from '../scsi/identity.ts';
import { parseFixedSense } from '../scsi/sense.ts';
import { createScsiTarget } from '../scsi/target.ts';
import type { Nexus, ScsiRequest, ScsiResponse, ScsiTarget } from '../scsi/types.ts';
import { ForwardLink, type LinkState } from './forward-link.ts';
import { ForwardService, type forwardServiceDefaults } from './forward-service.ts';

const iqn = 'iqn.2026-11.io.metrocluster:unit.db';
const log = createLogger({ component: 'forward-test', console: false });
/** Plaintext in one process: the TLS handshake and its roles are tests/tls.test.ts's subject. */
const security: GrpcSecurity = { mode: 'insecure', topology: { name: 'unit', sites: [] } as unknown as Topology, self: { kind: 'agent', cluster: 'unit', site: 'alpha' }, warnings: [] };
const port = (n: number) => ({ relativeTargetPortId: n, targetPortGroupId: n, targetPortName: `${iqn},t,0x000${n}` });
/** A host logged in at the secondary (site 2). */
const remote: Nexus = { id: 'host-b,2', initiatorName: 'iqn.2026-11.org.example:host-b', isidHex: '00023d000001', portalGroupTag: 2 };
/** A host logged in at the primary (site 1). */
const local: Nexus = { id: 'host-a,1', initiatorName: 'iqn.2026-11.org.example:host-a', isidHex: '00023d000002', portalGroupTag: 1 };

/** Writes wait at the gate while it is closed. */
class GatedDevice implements BlockDevice {
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;
  writesStarted = 0;
  constructor(private readonly inner: BlockDevice) {}
  get sizeBytes(): number { return this.inner.sizeBytes; }
  get blockSizeBytes(): number { return this.inner.blockSizeBytes; }
  hold(): void { this.gate = new Promise((r) => { this.open = r; }); }
  release(): void { this.open?.(); this.gate = undefined; }
  read(o: number, l: number): Promise<Buffer> { return this.inner.read(o, l); }
  async write(o: number, d: Buffer, opts?: { fua?: boolean }): Promise<void> {
    this.writesStarted++;
    if (this.gate) await this.gate;
    return this.inner.write(o, d, opts);
  }
  flush(): Promise<void> { return this.inner.flush(); }
  close(): Promise<void> { return this.inner.close(); }
}

interface Rig {
  target: ScsiTarget;
  device: GatedDevice;
  link: ForwardLink;
  states: LinkState[];
  server: grpc.Server;
  seen: ScsiRequest[];
  openStream(): grpc.ClientDuplexStream<Record<string, unknown>, Record<string, any>>;
  exec(cdb: number[], o?: { dataOut?: Buffer; readLength?: number; who?: Nexus; signal?: AbortSignal; attribute?: ScsiRequest['attribute'] }): Promise<ScsiResponse>;
}

async function rig(t: ExecutionContext, o: { service?: Partial<typeof forwardServiceDefaults>; queuedCommandsMax?: number } = {}): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'metro-forward-'));
  const file = await openFileBlockDevice({ path: join(dir, 'vol'), sizeBytes: 16 * 1024 * 1024 });
  const device = new GatedDevice(file);
  const target = createScsiTarget({
    iqn, port: port(1), remotePorts: [port(2)],
    luns: [{ lun: 0, device, identity: volumeIdentity({ cluster: 'unit', group: 'db', volume: 'data' }) }],
  });
  // What the primary's target was asked to run, as the service handed it over.
  const seen: ScsiRequest[] = [];
  const observed: ScsiTarget = {
    iqn, luns: () => target.luns(),
    execute: (req) => { seen.push(req); return target.execute(req); },
    taskManagement: (req) => target.taskManagement(req),
    nexusOpened: (n) => target.nexusOpened(n),
    nexusClosed: (n) => target.nexusClosed(n),
  };
  const service = new ForwardService({
    cluster: 'unit', site: 'alpha',
    lookup: () => ({ kind: 'primary', target: observed, epoch: 1 }),
    portOf: (site) => ({ alpha: 1, beta: 2 } as Record<string, number>)[site],
    onAttached: () => undefined,
    log, limits: o.service,
  });
  const { server, port: grpcPort } = await startGrpcServer({
    address: '127.0.0.1', port: 0, log, security,
    services: [{ definition: serviceOf('forward.proto', 'MetroForward').service, implementation: service.implementation(), access: { Forward: 'peer-agent' } }],
  });
  const client = dial('forward.proto', 'MetroForward', '127.0.0.1', grpcPort, { security, expect: { kind: 'agent', cluster: 'unit', site: 'alpha' } });
  const states: LinkState[] = [];
  let attached!: () => void;
  const up = new Promise<void>((r) => { attached = r; });
  const link = new ForwardLink({
    cluster: 'unit', group: 'db', site: 'beta', incarnation: 'test', epoch: () => 1,
    open: () => (client as unknown as { Forward(): grpc.ClientDuplexStream<Record<string, unknown>, Record<string, any>> }).Forward(),
    log, limits: { queuedCommandsMax: o.queuedCommandsMax ?? 1024 },
    onState: (s) => { states.push(s); if (s.kind === 'attached') attached(); },
  }, [remote]);
  t.teardown(async () => {
    device.release();
    link.close();
    client.close();
    service.close();
    server.forceShutdown();
    await device.close();
    await rm(dir, { recursive: true, force: true });
  });
  await up;
  target.nexusOpened(local);
  let tag = 1;
  const exec: Rig['exec'] = (cdb, e = {}) => {
    const c = Buffer.alloc(16);
    Buffer.from(cdb).copy(c);
    const req: ScsiRequest = {
      nexus: e.who ?? remote, lun: 0, cdb: c, taskTag: tag++, attribute: e.attribute ?? 'simple',
      expectedDataLength: e.dataOut?.length ?? e.readLength ?? 0, dataOut: e.dataOut, signal: e.signal,
    };
    return (e.who === local ? target : link).execute(req);
  };
  // Consume each nexus's power-on unit attention.
  await exec([0x00]);
  await exec([0x00], { who: local });
  const openStream = () => (client as unknown as { Forward(): grpc.ClientDuplexStream<Record<string, unknown>, Record<string, any>> }).Forward();
  return { target, device, link, states, server, seen, exec, openStream };
}

const write10 = (lba: number, blocks: number) => [0x2a, 0, 0, 0, 0, lba, 0, 0, blocks, 0];
const read10 = (lba: number, blocks: number) => [0x28, 0, 0, 0, 0, lba, 0, 0, blocks, 0];
const senseOf = (r: ScsiResponse) => { const s = parseFixedSense(r.sense!); return [r.status, s.key, s.asc, s.ascq]; };

test('data, sense and transfer lengths come back whole; the primary sees the remote nexus through port 2', async (t) => {
  const r = await rig(t);
  const data = Buffer.alloc(4096, 0x5c);
  t.is((await r.exec(write10(8, 8), { dataOut: data })).status, 0);
  const back = await r.exec(read10(8, 8), { readLength: 4096 });
  t.true(back.dataIn?.equals(data), 'READ through the link returns what WRITE stored');
  const direct = await r.exec(read10(8, 8), { readLength: 4096, who: local });
  t.true(direct.dataIn?.equals(data), 'and so does the primary\'s own target');
  const beyond = await r.exec([0x28, 0, 0xff, 0xff, 0xff, 0xf0, 0, 0, 1, 0], { readLength: 512 });
  t.deepEqual(senseOf(beyond), [2, 5, 0x21, 0x00], 'LBA OUT OF RANGE, sense intact');
  const inq = await r.exec([0x12, 0, 0, 0, 0xff, 0], { readLength: 255 });
  t.is(inq.dataIn?.length, 96, 'INQUIRY data, its own length (the transport computes the residual)');
  // PERSISTENT RESERVE OUT REGISTER through the link, READ FULL STATUS through a local nexus.
  const reg = Buffer.alloc(24);
  reg.writeBigUInt64BE(0xbeefn, 8);
  t.is((await r.exec([0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0], { dataOut: reg })).status, 0);
  const full = await r.exec([0x5e, 3, 0, 0, 0, 0, 0, 0x10, 0, 0], { readLength: 4096, who: local });
  t.is(full.status, 0);
  t.is(full.dataIn!.readUInt16BE(8 + 18), 2, 'the registration is through relative target port 2');
});

test('bounds: the welcome\'s outstanding limit, then a bounded queue, then TASK SET FULL; all complete once writes move', async (t) => {
  const r = await rig(t, { service: { commandsMax: 2 }, queuedCommandsMax: 3 });
  r.device.hold();
  const block = Buffer.alloc(512, 1);
  const sent = Array.from({ length: 6 }, (_, i) => r.exec(write10(i, 1), { dataOut: block }));
  const sixth = await sent[5];
  t.is(sixth.status, 0x28, 'the sixth: TASK SET FULL');
  for (const until = performance.now() + 10_000; r.device.writesStarted < 2 && performance.now() < until;) await new Promise((res) => setTimeout(res, 20));
  await new Promise((res) => setTimeout(res, 300));
  t.is(r.device.writesStarted, 2, 'only two commands reached the primary');
  r.device.release();
  t.deepEqual((await Promise.all(sent.slice(0, 5))).map((x) => x.status), [0, 0, 0, 0, 0]);
});

test('an abort reaches the primary: a command still queued there never runs', async (t) => {
  const r = await rig(t);
  r.device.hold();
  const block = Buffer.alloc(512, 2);
  const first = r.exec(write10(0, 1), { dataOut: block, attribute: 'ordered' });
  const abort = new AbortController();
  const second = r.exec(write10(1, 1), { dataOut: block, signal: abort.signal });
  for (const until = performance.now() + 10_000; r.device.writesStarted < 1 && performance.now() < until;) await new Promise((res) => setTimeout(res, 20));
  abort.abort();
  // Released once the abort has reached the primary's target (the second request's signal).
  for (const until = performance.now() + 10_000; !r.seen.at(-1)?.signal?.aborted && performance.now() < until;) await new Promise((res) => setTimeout(res, 20));
  r.device.release();
  t.is((await first).status, 0);
  t.is((await second).status, 0x40, 'TASK ABORTED');
  t.is(r.device.writesStarted, 1, 'the aborted write never reached the device');
});

test('a lost link answers what it held with NOT READY (ALUA transition) at once, and new commands too', async (t) => {
  const r = await rig(t);
  r.device.hold();
  const held = r.exec(write10(0, 1), { dataOut: Buffer.alloc(512) });
  for (const until = performance.now() + 10_000; r.device.writesStarted < 1 && performance.now() < until;) await new Promise((res) => setTimeout(res, 20));
  r.server.forceShutdown();
  const started = performance.now();
  t.deepEqual(senseOf(await held), [2, 2, 0x04, 0x0a]);
  t.true(performance.now() - started < 2000);
  t.deepEqual(senseOf(await r.exec([0x00])), [2, 2, 0x04, 0x0a]);
  t.is(r.states.at(-1)?.kind, 'connecting');
});

test('a stream replaced by a reconnection of the same secondary keeps its nexuses past the hold time (their reservation stays)', async (t) => {
  const r = await rig(t, { service: { nexusHoldMs: 300 } });
  t.is((await r.exec([0x16, 0, 0, 0, 0, 0])).status, 0, 'RESERVE(6) through the link');
  const block = Buffer.alloc(512, 3);
  t.is((await r.exec(write10(0, 1), { dataOut: block, who: local })).status, 0x18, 'the local host conflicts');
  // The same secondary process reconnects while its first stream still looks alive to the primary.
  const again = r.openStream();
  const welcomed = new Promise((res) => again.once('data', res));
  again.write({ hello: { cluster: 'unit', group: 'db', site: 'beta', epoch: '1', incarnation: 'test', open_nexuses: [{ handle: 1, initiator_name: remote.initiatorName, isid_hex: remote.isidHex }] } });
  t.like(await welcomed, { kind: 'welcome' });
  await new Promise((res) => setTimeout(res, 900));
  t.is((await r.exec(write10(0, 1), { dataOut: block, who: local })).status, 0x18, 'the reservation outlived the hold time');
  again.cancel();
});

test('the largest transfer (8 MiB, the Block Limits maximum) travels in pieces both ways and comes back whole', async (t) => {
  const r = await rig(t);
  const data = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32BE(i, i);
  const blocks = data.length / 512;
  const w = await r.exec([0x2a, 0, 0, 0, 0, 8, 0, blocks >> 8, blocks & 0xff, 0], { dataOut: data });
  t.is(w.status, 0);
  const back = await r.exec([0x28, 0, 0, 0, 0, 8, 0, blocks >> 8, blocks & 0xff, 0], { readLength: data.length });
  t.is(back.status, 0);
  t.true(back.dataIn?.equals(data), 'READ returns the 8 MiB WRITE stored');
});

test('a multi-PDU WRITE travels as its Data-Out parts, not joined: the primary\'s target gets them as parts and stores them in order', async (t) => {
  const r = await rig(t);
  const sizes = [64 * 1024, 1536 * 1024, 64 * 1024];
  const parts = sizes.map((n, i) => Buffer.alloc(n, 0x30 + i));
  const blocks = (64 + 1536 + 64) * 2;
  const cdb = Buffer.alloc(16);
  Buffer.from([0x2a, 0, 0, 0, 0, 16, 0, blocks >> 8, blocks & 0xff, 0]).copy(cdb);
  const w = await r.link.execute({
    nexus: remote, lun: 0, cdb, taskTag: 9001, attribute: 'simple',
    expectedDataLength: blocks * 512, dataOutParts: parts, get dataOut(): Buffer { throw new Error('the link joined the parts'); },
  });
  t.is(w.status, 0);
  t.deepEqual(r.seen.at(-1)?.dataOutParts?.map((p) => p.length), [64 * 1024, 1024 * 1024, 512 * 1024, 64 * 1024], 'parts, the large one cut at the piece size');
  const back = await r.exec([0x28, 0, 0, 0, 0, 16, 0, blocks >> 8, blocks & 0xff, 0], { readLength: blocks * 512 });
  t.true(back.dataIn?.equals(Buffer.concat(parts)), 'READ returns the parts in order');
});
