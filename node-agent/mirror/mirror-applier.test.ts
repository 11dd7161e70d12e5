// MirrorApplier against in-memory devices: entries apply in order and are acknowledged; an old epoch
// is refused (with a MirrorRefusal to the primary); a CRC32C mismatch and a sequence gap end the
// stream without touching the volume; flush and FUA entries make the ack durable.
import test from 'ava';
import { crc32c } from '@node-rs/crc32';
import type { BlockDevice } from '../storage/block-device.ts';
import type { Logger } from '../../common/log.ts';
import { MirrorApplier } from './mirror-applier.ts';

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
