// A target's LUN inventory changed online (topology apply): a grown LUN reports its new capacity
// after CAPACITY DATA HAS CHANGED, a shrink is ordered after the commands before it, an added or
// removed LUN is announced with REPORTED LUNS DATA HAS CHANGED on the LUNs a nexus had.
import test from 'ava';
import { join } from 'node:path';
import { openFileBlockDevice, type FileBlockDevice } from '../storage/file-block-device.ts';
import { volumeIdentity } from './identity.ts';
import type { LunInventory } from './target.ts';
import { be, makeFixture, nexus, pattern, type Fixture } from './test-harness.ts';
import type { ScsiTarget } from './types.ts';

const MiB = 1024 * 1024;
const readCapacity16 = [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, ...be(32, 4), 0, 0];
const reportLuns = [0xa0, 0, 0, 0, 0, 0, ...be(1024, 4), 0, 0];
const write10 = (lba: number, blocks: number) => [0x2a, 0, ...be(lba, 4), 0, ...be(blocks, 2), 0];

function inventory(f: Fixture): ScsiTarget & LunInventory {
  return f.target as ScsiTarget & LunInventory;
}

async function lastLba(f: Fixture, lun = 0): Promise<bigint> {
  const r = await f.exec(readCapacity16, { lun });
  if (!r.dataIn) throw new Error(`READ CAPACITY(16) answered ${r.status} ${r.sk}/${r.asc}/${r.ascq}`);
  return r.dataIn.readBigUInt64BE(0);
}

test('grown: the file grows first, then the LUN; every nexus sees CAPACITY DATA HAS CHANGED, then the new size', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: 4 * MiB }] });
  const other = nexus('iqn.2026-11.org.example:host2');
  await f.exec([0x00], { who: other }); // its power-on attention
  t.is(await lastLba(f), BigInt(4 * MiB / 512 - 1));
  await (f.devices[0].inner as FileBlockDevice).resize(8 * MiB);
  t.is(await lastLba(f), BigInt(4 * MiB / 512 - 1), 'a grown file alone changes nothing hosts see');
  const beyond = await f.exec(write10(6 * MiB / 512, 8), { dataOut: pattern(4096, 1) });
  t.is(beyond.sk, 0x05, 'past the old end is still out of range');
  await inventory(f).resizeLun(0, 8 * MiB);
  for (const who of [undefined, other]) {
    const ua = await f.exec(readCapacity16, { who });
    t.deepEqual([ua.sk, ua.asc, ua.ascq], [0x06, 0x2a, 0x09]);
  }
  t.is(await lastLba(f), BigInt(8 * MiB / 512 - 1));
  t.is((await f.exec(write10(6 * MiB / 512, 8), { dataOut: pattern(4096, 1) })).status, 0);
});

test('shrunk: runs after the commands before it; past the new end is out of range', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: 8 * MiB }] });
  const before = f.exec(write10(7 * MiB / 512, 8), { dataOut: pattern(4096, 2) });
  const shrink = inventory(f).resizeLun(0, 4 * MiB);
  t.is((await before).status, 0, 'a write issued before the shrink completes');
  await shrink;
  const ua = await f.exec(write10(7 * MiB / 512, 8), { dataOut: pattern(4096, 3) });
  t.deepEqual([ua.sk, ua.asc, ua.ascq], [0x06, 0x2a, 0x09]);
  const out = await f.exec(write10(7 * MiB / 512, 8), { dataOut: pattern(4096, 3) });
  t.deepEqual([out.sk, out.asc], [0x05, 0x21]);
  t.is(await lastLba(f), BigInt(4 * MiB / 512 - 1));
});

test('added and removed LUNs: REPORTED LUNS DATA HAS CHANGED, REPORT LUNS follows, a removed LUN is not supported', async (t) => {
  const f = await makeFixture(t, { luns: [{ sizeBytes: 4 * MiB }] });
  const device = await openFileBlockDevice({ path: join(f.dir, 'added'), sizeBytes: 2 * MiB });
  t.teardown(() => device.close());
  inventory(f).addLun({ lun: 1, device, identity: volumeIdentity({ cluster: 'demo', group: 'db', volume: 'added' }) });
  const ua = await f.exec([0x00]);
  t.deepEqual([ua.sk, ua.asc, ua.ascq], [0x06, 0x3f, 0x0e]);
  const luns = await f.exec(reportLuns);
  t.is(luns.dataIn!.readUInt32BE(0), 16, 'two LUNs listed');
  t.is(await lastLba(f, 1), BigInt(2 * MiB / 512 - 1));
  await inventory(f).removeLun(1);
  const gone = await f.exec(readCapacity16, { lun: 1 });
  t.deepEqual([gone.sk, gone.asc], [0x05, 0x25]);
  const ua2 = await f.exec([0x00]);
  t.deepEqual([ua2.sk, ua2.asc, ua2.ascq], [0x06, 0x3f, 0x0e]);
  t.is((await f.exec(reportLuns)).dataIn!.readUInt32BE(0), 8);
});
