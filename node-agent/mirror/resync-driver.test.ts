// ResyncDriver against a simulated stream: a bitmap resync sends exactly the primary's regions
// awaiting resync plus the secondary's own dirty ones and cleans the dirty map; a full resync sends
// only the regions whose checksums differ; stopping mid-run leaves the regions dirty.
import test from 'ava';
import type { Logger } from '../../common/log.ts';
import type { BlockDevice } from '../storage/block-device.ts';
import { DirtyMap, dirtyMapDefaults } from './dirty-map.ts';
import { RegionBitmap } from './region-bitmap.ts';
import { regionChecksums } from './region-checksums.ts';
import { RegionGate } from './region-gate.ts';
import { ResyncDriver, type ResyncHost, type ResyncVolume } from './resync-driver.ts';

class MemoryDevice implements BlockDevice {
  readonly blockSizeBytes = 512;
  readonly bytes: Buffer;
  constructor(readonly sizeBytes: number, fill = 0) { this.bytes = Buffer.alloc(sizeBytes, fill); }
  async read(o: number, n: number) { return Buffer.from(this.bytes.subarray(o, o + n)); }
  async write(o: number, d: Buffer) { d.copy(this.bytes, o); }
  async flush() {}
  async close() {}
}

const silent: Logger = { error() {}, warn() {}, info() {}, debug() {}, child() { return silent; } } as unknown as Logger;
const regionBytes = 64 * 1024;
const sizeBytes = 16 * regionBytes;

/** A primary volume, a secondary copy, and a stream that applies and acknowledges durable at once. */
function rig(opts: { stuck?: number[]; stopAfterSends?: number } = {}) {
  const primary = new MemoryDevice(sizeBytes, 0xaa);
  const secondary = new MemoryDevice(sizeBytes, 0xaa);
  const dirty = new DirtyMap({ ...dirtyMapDefaults, volumeSizeBytes: sizeBytes, regionSizeBytes: regionBytes, extentRegions: 4, alExtentsMax: 8 });
  // Writes the peer never got (it was down): their regions await resync.
  for (const r of opts.stuck ?? []) {
    const b = dirty.beginWrite(r * regionBytes, 4096);
    if (b.kind === 'wait') { dirty.transactionPersisted(dirty.takeTransaction(0)!.id); }
    dirty.localDone(b.ticket);
    dirty.notMirrored(b.ticket);
    primary.bytes.fill(0x10 + r, r * regionBytes, r * regionBytes + 4096);
  }
  const volume: ResyncVolume = { index: 0, sizeBytes, regionSizeBytes: regionBytes, dirty, device: primary };
  const sent: number[] = [];
  let seq = 0;
  let driver: ResyncDriver | undefined;
  const host: ResyncHost = {
    group: 'db', volumes: [volume], gate: new RegionGate(), log: silent, now: () => performance.now(),
    async push(entry, _bytes, onQueued) {
      const s = ++seq;
      onQueued(s);
      const e = entry as { resync?: { region: string; offset_bytes: string; data: Buffer } };
      if (e.resync) {
        sent.push(Number(e.resync.region));
        if (opts.stopAfterSends !== undefined && sent.length >= opts.stopAfterSends) { driver!.stop(); return; }
        await secondary.write(Number(e.resync.offset_bytes), e.resync.data);
      }
      setImmediate(() => { dirty.peerDurable(s); driver!.onDurable(s); });
    },
    peerChecksums: (_p, _v, first, count) => regionChecksums(secondary, regionBytes, first, count),
  };
  return { primary, secondary, dirty, sent, host, start: (d: ResyncDriver) => { driver = d; return d; } };
}

test('bitmap resync: the primary\'s regions awaiting resync and the secondary\'s own dirty ones, nothing else', async (t) => {
  const r = rig({ stuck: [2, 7] });
  t.is(r.dirty.stats().resyncRegions, 2);
  const peerDirty = new RegionBitmap(16);
  peerDirty.set(11);
  r.secondary.bytes.fill(0x77, 11 * regionBytes, 11 * regionBytes + 100); // the secondary's divergent write
  const d = r.start(new ResyncDriver(r.host, { kind: 'bitmap', rateBytesPerSec: 1e9, volumesExpected: 1 }));
  d.add(0, 'bitmap', peerDirty);
  await d.finished();
  t.true(d.done);
  t.deepEqual(r.sent, [2, 7, 11]);
  t.true(r.primary.bytes.equals(r.secondary.bytes));
  t.is(r.dirty.stats().resyncRegions, 0, 'resynced regions are clean once durable');
  const p = d.progress();
  t.is(p.bytesSent, 3 * regionBytes);
  t.is(p.bytesTotal, 3 * regionBytes);
  t.is(d.remainingBytes(), 0);
});

test('full resync: checksums decide, matching regions are not sent', async (t) => {
  const r = rig();
  r.secondary.bytes.fill(0, 3 * regionBytes, 4 * regionBytes);
  r.secondary.bytes[9 * regionBytes + 5] ^= 1;
  const d = r.start(new ResyncDriver(r.host, { kind: 'full', rateBytesPerSec: 1e9, volumesExpected: 1 }));
  d.add(0, 'full');
  await d.finished();
  t.deepEqual(r.sent, [3, 9]);
  t.true(r.primary.bytes.equals(r.secondary.bytes));
  const p = d.progress();
  t.is(p.bytesMatched, 14 * regionBytes);
  t.is(p.bytesSent, 2 * regionBytes);
  t.is(p.bytesDone, sizeBytes);
});

test('a region awaiting resync is sent in a full resync even when its checksums match', async (t) => {
  const r = rig({ stuck: [5] });
  r.secondary.bytes.set(r.primary.bytes.subarray(5 * regionBytes, 6 * regionBytes), 5 * regionBytes);
  const d = r.start(new ResyncDriver(r.host, { kind: 'full', rateBytesPerSec: 1e9, volumesExpected: 1 }));
  d.add(0, 'full');
  await d.finished();
  t.deepEqual(r.sent, [5]);
  t.is(r.dirty.stats().resyncRegions, 0);
});

test('stopped mid-run (stream gone): not done, unsent regions stay dirty', async (t) => {
  const r = rig({ stuck: [1, 4, 8], stopAfterSends: 2 });
  const d = r.start(new ResyncDriver(r.host, { kind: 'bitmap', rateBytesPerSec: 1e9, volumesExpected: 1 }));
  d.add(0, 'bitmap');
  await d.finished();
  t.false(d.done);
  t.true(d.remainingBytes() > 0);
  r.dirty.peerLost();
  t.is(r.dirty.stats().resyncRegions, 3, 'nothing durable: every region still awaits resync');
});
