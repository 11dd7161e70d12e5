// MirrorApplier against in-memory devices: entries apply in order and are acknowledged; an old epoch
// is refused (with a MirrorRefusal to the primary); a CRC32C mismatch and a sequence gap end the
// stream without touching the volume; flush and FUA entries make the ack durable.
import test from 'ava';
import { crc32c } from '@node-rs/crc32';
import type { BlockDevice } from '../storage/block-device.ts';
import type { Logger } from '../../common/log.ts';
import { MirrorApplier, fitBitmap, unsyncedBytesMax } from './mirror-applier.ts';

class MemoryDevice implements BlockDevice {
  readonly blockSizeBytes = 512;
  readonly bytes: Buffer;
  flushes = 0;
  constructor(readonly sizeBytes: number) { this.bytes = Buffer.alloc(sizeBytes); }
  async read(o: number, n: number) { return Buffer.from(this.bytes.subarray(o, o + n)); }
  async write(o: number, d: Buffer) { d.copy(this.bytes, o); }
  async flush() { this.flushes++; }
  async deallocate(o: number, n: number) { this.bytes.fill(0, o, o + n); }
  async close() {}
}

const silent: Logger = { error() {}, warn() {}, info() {}, debug() {}, child() { return silent; } } as unknown as Logger;

function setup(epoch = 3) {
  const dev = new MemoryDevice(1 << 20);
  const sent: Array<Record<string, any>> = [];
  const adopted: number[] = [];
  const a = new MirrorApplier({
    cluster: 'c', group: 'db', site: 'beta', epoch, devices: [dev], regionSizeBytes: 65536,
    adoptEpoch: async (e) => { adopted.push(e); }, send: (m) => sent.push(m), log: silent,
  });
  return { dev, sent, adopted, a };
}

const welcome = (epoch: number, resume = 1) => ({ kind: 'welcome', welcome: { epoch: String(epoch), site: 'alpha', resume_seq: String(resume), resync_needed: false, full_resync: false } });
const write = (seq: number, offset: number, data: Buffer, crc = crc32c(data), fua = false) =>
  ({ seq: String(seq), kind: 'write', write: { volume: 0, offset_bytes: String(offset), data, crc32c: crc, fua } });
const batch = (epoch: number, entries: object[]) => ({ kind: 'batch', batch: { epoch: String(epoch), entries } });

test('entries apply in order and the ack carries the applied sequence', async (t) => {
  const { dev, sent, a } = setup();
  t.is(await a.receive(welcome(3)), undefined);
  const x = Buffer.alloc(4096, 0x11);
  const y = Buffer.alloc(512, 0x22);
  t.is(await a.receive(batch(3, [write(1, 8192, x), write(2, 8192, y)])), undefined);
  t.is(dev.bytes[8192], 0x22);
  t.is(dev.bytes[8192 + 512], 0x11);
  t.deepEqual(sent.at(-1), { ack: { epoch: '3', applied_seq: '2', durable_seq: '0' } });
});

test('a FUA write or a flush makes the ack durable', async (t) => {
  const { dev, sent, a } = setup();
  await a.receive(welcome(3));
  await a.receive(batch(3, [write(1, 0, Buffer.alloc(512, 1), undefined, true)]));
  t.is(dev.flushes, 1);
  t.deepEqual(sent.at(-1), { ack: { epoch: '3', applied_seq: '1', durable_seq: '1' } });
  await a.receive(batch(3, [write(2, 0, Buffer.alloc(512, 2)), { seq: '3', kind: 'flush', flush: { all_volumes: false, volume: 0 } }]));
  t.deepEqual(sent.at(-1), { ack: { epoch: '3', applied_seq: '3', durable_seq: '3' } });
});

/** A device whose fdatasync waits until the test lets it end (or fail). */
class SlowFlushDevice extends MemoryDevice {
  private pending: Array<{ resolve(): void; reject(e: Error): void }> = [];
  override flush(): Promise<void> {
    this.flushes++;
    return new Promise((resolve, reject) => this.pending.push({ resolve, reject }));
  }
  endFlushes(err?: Error): void {
    for (const p of this.pending.splice(0)) err ? p.reject(err) : p.resolve();
  }
}

function slowSetup() {
  const dev = new SlowFlushDevice(2 << 20);
  const sent: Array<Record<string, any>> = [];
  const a = new MirrorApplier({
    cluster: 'c', group: 'db', site: 'beta', epoch: 3, devices: [dev], regionSizeBytes: 65536,
    adoptEpoch: async () => undefined, send: (m) => sent.push(m), log: silent,
  });
  return { dev, sent, a };
}

/** Entries seq first.. of 1 MiB each, enough to pass unsyncedBytesMax. */
function bulk(first: number): object[] {
  const data = Buffer.alloc(1 << 20, 0x5a);
  const crc = crc32c(data);
  return Array.from({ length: unsyncedBytesMax / data.length + 1 }, (_, i) => write(first + i, (i % 2) << 20, data, crc));
}

test('past unsyncedBytesMax the fdatasync runs beside the apply chain: applied acks go on, the durable ack follows it', async (t) => {
  const { dev, sent, a } = slowSetup();
  await a.receive(welcome(3));
  const entries = bulk(1);
  const last = entries.length;
  // Resolves while the fdatasync it started is still running: the host writes behind it are not held.
  t.is(await a.receive(batch(3, entries)), undefined);
  t.is(dev.flushes, 1);
  t.deepEqual(sent.at(-1), { ack: { epoch: '3', applied_seq: String(last), durable_seq: '0' } });
  t.is(await a.receive(batch(3, [write(last + 1, 0, Buffer.alloc(512, 7))])), undefined);
  t.deepEqual(sent.at(-1), { ack: { epoch: '3', applied_seq: String(last + 1), durable_seq: '0' } });
  t.is(dev.bytes[0], 7);
  dev.endFlushes();
  await new Promise((r) => setImmediate(r));
  // Durable up to what was applied when the sync began, not the write that came during it.
  t.deepEqual(sent.at(-1), { ack: { epoch: '3', applied_seq: String(last + 1), durable_seq: String(last) } });
});

test('the periodic sync runs beside the apply chain: writes received while it runs are applied and acknowledged', async (t) => {
  const { dev, sent, a } = slowSetup();
  await a.receive(welcome(3));
  await a.receive(batch(3, [write(1, 0, Buffer.alloc(512, 1))]));
  t.is(a.idleSync(), undefined);
  t.is(dev.flushes, 1);
  // The fdatasync is still running: the next batch is not held behind it.
  t.is(await a.receive(batch(3, [write(2, 512, Buffer.alloc(512, 2))])), undefined);
  t.is(dev.bytes[512], 2);
  t.deepEqual(sent.at(-1), { ack: { epoch: '3', applied_seq: '2', durable_seq: '0' } });
  // One sync at a time; when it ends, durable covers what was applied when it began.
  t.is(a.idleSync(), undefined);
  t.is(dev.flushes, 1);
  dev.endFlushes();
  await new Promise((r) => setImmediate(r));
  t.deepEqual(sent.at(-1), { ack: { epoch: '3', applied_seq: '2', durable_seq: '1' } });
  // Nothing unsynced after the next one: no fdatasync, no ack.
  t.is(a.idleSync(), undefined);
  dev.endFlushes();
  await new Promise((r) => setImmediate(r));
  t.deepEqual(sent.at(-1), { ack: { epoch: '3', applied_seq: '2', durable_seq: '2' } });
  const before = { flushes: dev.flushes, acks: sent.length };
  t.is(a.idleSync(), undefined);
  t.deepEqual({ flushes: dev.flushes, acks: sent.length }, before);
});

test('a failed fdatasync beside the chain ends the stream at the next message, or at the idle check', async (t) => {
  for (const via of ['message', 'idle'] as const) {
    const { dev, sent, a } = slowSetup();
    await a.receive(welcome(3));
    const entries = bulk(1);
    t.is(await a.receive(batch(3, entries)), undefined);
    dev.endFlushes(new Error('EIO: i/o error, fdatasync'));
    await new Promise((r) => setImmediate(r));
    const acks = sent.length;
    if (via === 'message') {
      await t.throwsAsync(a.receive(batch(3, [write(entries.length + 1, 0, Buffer.alloc(512, 7))])), { message: /EIO/ });
      t.is(dev.bytes[0], 0x5a, 'nothing after the failure is applied');
    } else {
      t.regex(a.idleSync()?.message ?? '', /EIO/);
    }
    t.is(sent.length, acks, 'no durable ack for what the failed sync should have covered');
    t.is(a.durableSeq, 0);
  }
});

test('a welcome from an older epoch is refused with OLD_EPOCH; a newer one is adopted first', async (t) => {
  const old = setup(5);
  t.like(await old.a.receive(welcome(4)), { kind: 'old-epoch', epochSeen: 4, epochCurrent: 5 });
  t.like(old.sent.at(-1), { refusal: { epoch_seen: '4', epoch_current: '5', reason: 'OLD_EPOCH' } });
  const newer = setup(5);
  t.is(await newer.a.receive(welcome(6)), undefined);
  t.deepEqual(newer.adopted, [6]);
  t.is(newer.a.epoch, 6);
});

test('a batch from an older epoch is refused and not applied', async (t) => {
  const { dev, sent, a } = setup(3);
  await a.receive(welcome(3));
  t.like(await a.receive(batch(2, [write(1, 0, Buffer.alloc(512, 9))])), { kind: 'old-epoch', epochSeen: 2, epochCurrent: 3 });
  t.is(dev.bytes[0], 0);
  t.like(sent.at(-1), { refusal: { reason: 'OLD_EPOCH', epoch_seen: '2' } });
});

test('a CRC32C mismatch ends the stream before the data reaches the volume', async (t) => {
  const { dev, sent, a } = setup();
  await a.receive(welcome(3));
  const data = Buffer.alloc(4096, 0x5a);
  t.like(await a.receive(batch(3, [write(1, 0, data, crc32c(data) ^ 1)])), { kind: 'crc-mismatch', seq: 1, volume: 0 });
  t.is(dev.bytes[0], 0);
  t.is(a.appliedSeq, 0);
  t.false(sent.some((m) => 'ack' in m));
});

test('a sequence gap ends the stream; entries before the welcome are refused', async (t) => {
  const { a } = setup();
  t.like(await a.receive(batch(3, [write(1, 0, Buffer.alloc(512))])), { kind: 'bad-entry' });
  await a.receive(welcome(3, 10));
  t.like(await a.receive(batch(3, [write(11, 0, Buffer.alloc(512))])), { kind: 'out-of-order', expectedSeq: 10, seq: 11 });
});

test('hostile entries are refused before anything of their batch is applied', async (t) => {
  const { dev, sent, a } = setup();
  await a.receive(welcome(3));
  const good = write(1, 0, Buffer.alloc(512, 7));
  const data = Buffer.alloc(512, 9);
  const altered = (fields: object) => { const e = write(2, 0, data); return { ...e, write: { ...e.write, ...fields } }; };
  const hostile: Array<[string, object]> = [
    ['past the end', write(2, 1 << 20, data)],
    ['straddling the end', write(2, (1 << 20) - 512, Buffer.alloc(1024, 9))],
    ['2^64-1 offset', altered({ offset_bytes: '18446744073709551615' })],
    ['negative-looking offset', altered({ offset_bytes: '9223372036854775808' })],
    ['unaligned offset', write(2, 100, data)],
    ['unaligned length', write(2, 0, Buffer.alloc(100, 9))],
    ['empty data', write(2, 0, Buffer.alloc(0))],
    ['unknown volume', altered({ volume: 5 })],
    ['bad CRC', write(2, 0, data, 1234)],
    ['deallocate past the end', { seq: '2', kind: 'deallocate', deallocate: { volume: 0, offset_bytes: '0', length_bytes: '18446744073709551615' } }],
    ['flush of an unknown volume', { seq: '2', kind: 'flush', flush: { all_volumes: false, volume: 9 } }],
    ['sequence 2^64-1', { ...write(2, 0, data), seq: '18446744073709551615' }],
  ];
  for (const [what, entry] of hostile) {
    const fault = await a.receive(batch(3, [good, entry]));
    t.truthy(fault, what);
    t.is(dev.bytes[0], 0, `${what}: the good entry of the batch was not applied either`);
    t.is(a.appliedSeq, 0, what);
  }
  t.false(sent.some((m) => m.ack), 'nothing acknowledged');
});

test('a welcome with an impossible epoch or resume sequence is refused and adopts nothing', async (t) => {
  for (const w of [
    { epoch: '18446744073709551615', resume_seq: '1' },
    { epoch: '0', resume_seq: '1' },
    { epoch: '4', resume_seq: '0' },
    { epoch: '4', resume_seq: '9223372036854775808' },
  ]) {
    const { sent, adopted, a } = setup();
    const fault = await a.receive({ kind: 'welcome', welcome: { site: 'alpha', resync_needed: false, full_resync: false, ...w } });
    t.is(fault?.kind, 'bad-entry', JSON.stringify(w));
    t.deepEqual(adopted, [], 'no epoch adopted');
    t.is(a.epoch, 3);
    t.is(sent.at(-1)?.refusal?.reason, 'INVALID_MESSAGE');
  }
});

test("own dirty bitmaps are fitted to the primary's volume size: cut past its end, zero past this copy's", (t) => {
  t.deepEqual([...fitBitmap(Uint8Array.from([0xff, 0xff, 0xff]), 12)], [0xff, 0x0f]);
  t.deepEqual([...fitBitmap(Uint8Array.from([0x81]), 20)], [0x81, 0, 0]);
  t.deepEqual([...fitBitmap(Uint8Array.from([0xff, 0x03]), 10)], [0xff, 0x03]);
});

test("the resync request carries the bitmap in the primary's geometry when the welcome lists its sizes", async (t) => {
  const dev = new MemoryDevice(1 << 20); // 16 regions here
  const sent: Array<Record<string, any>> = [];
  const a = new MirrorApplier({
    cluster: 'c', group: 'db', site: 'beta', epoch: 3, devices: [dev], regionSizeBytes: 65536,
    adoptEpoch: async () => {}, send: (m) => sent.push(m), log: silent,
    ownDirty: async () => Uint8Array.from([0x01, 0x80]), // regions 0 and 15
  });
  await a.receive({ kind: 'welcome', welcome: { epoch: '3', site: 'alpha', resume_seq: '1', resync_needed: true, full_resync: false, volume_size_bytes: [String(8 * 65536)] } });
  const rr = sent.find((m) => m.resync_request)?.resync_request;
  t.deepEqual([...rr.dirty_bitmap], [0x01], 'region 15 is past the primary\'s 8 regions');
});

test('a welcome listing an impossible volume size is refused', async (t) => {
  const { a, sent } = setup();
  await a.receive({ kind: 'welcome', welcome: { epoch: '3', site: 'alpha', resume_seq: '1', resync_needed: false, full_resync: false, volume_size_bytes: ['12'] } });
  t.truthy(sent.find((m) => m.refusal), JSON.stringify(sent));
});

function withHostState() {
  const dev = new MemoryDevice(1 << 20);
  const sent: Array<Record<string, any>> = [];
  const adopted: Array<{ kind: string; volume: number; payload: string }> = [];
  const a = new MirrorApplier({
    cluster: 'c', group: 'db', site: 'beta', epoch: 3, devices: [dev], regionSizeBytes: 65536,
    adoptEpoch: async () => {}, send: (m) => sent.push(m), log: silent,
    hostState: {
      check: (kind, _volume, payload) => (kind !== 'persistent-reservations' ? `unknown state kind "${kind}"` : payload.toString().startsWith('{') ? undefined : 'not JSON'),
      adopt: async (kind, volume, payload) => { adopted.push({ kind, volume, payload: payload.toString() }); },
    },
  });
  return { dev, sent, adopted, a };
}
const state = (seq: number, kind: string, payload: Buffer, crc = crc32c(payload)) => ({ seq: String(seq), kind: 'state', state: { kind, volume: 0, payload, crc32c: crc } });

test('a state record is adopted in stream order, before its ack', async (t) => {
  const { sent, adopted, a } = withHostState();
  await a.receive(welcome(3));
  t.is(await a.receive(batch(3, [write(1, 0, Buffer.alloc(512, 7)), state(2, 'persistent-reservations', Buffer.from('{"generation":1}'))])), undefined);
  t.deepEqual(adopted, [{ kind: 'persistent-reservations', volume: 0, payload: '{"generation":1}' }]);
  t.deepEqual(sent.at(-1), { ack: { epoch: '3', applied_seq: '2', durable_seq: '0' } });
});

test('a state record its owner refuses, or with a wrong CRC, ends the stream before anything of its batch is applied', async (t) => {
  for (const [what, entry] of [
    ['unknown kind', state(2, 'no-such-kind', Buffer.from('{}'))],
    ['malformed payload', state(2, 'persistent-reservations', Buffer.from('garbage'))],
    ['wrong CRC', state(2, 'persistent-reservations', Buffer.from('{}'), 1234)],
  ] as const) {
    const { dev, sent, adopted, a } = withHostState();
    await a.receive(welcome(3));
    const fault = await a.receive(batch(3, [write(1, 0, Buffer.alloc(512, 7)), entry]));
    t.truthy(fault, what);
    t.is(dev.bytes[0], 0, `${what}: the write of the batch was not applied`);
    t.deepEqual(adopted, [], what);
    t.truthy(sent.find((m) => m.refusal), `${what}: the primary is told why`);
  }
});

test('a secondary without a host-state owner refuses state records', async (t) => {
  const { a, sent } = setup();
  await a.receive(welcome(3));
  t.truthy(await a.receive(batch(3, [state(1, 'persistent-reservations', Buffer.from('{}'))])));
  t.regex(JSON.stringify(sent.at(-1)), /keeps no host state/);
});
