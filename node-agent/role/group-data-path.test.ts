// The role-gated device a group's LUN writes through, with mirroring off: Data-Out in pieces reaches
// the volume file's pwritev(2) as the pieces (no joined copy), and a closed write gate refuses it.
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openFileBlockDevice, type FileBlockDevice } from '../storage/file-block-device.ts';
import { AccessUnavailable } from '../storage/block-device.ts';
import { GroupDataPath } from './group-data-path.ts';
import type { RoleView } from './role-runtime.ts';

/** The data path of one group at its primary, epoch 1, with a write gate the test opens and closes. */
async function primaryPath(t: { teardown(fn: () => Promise<void>): void }) {
  const dir = await mkdtemp(join(tmpdir(), 'metro-gdp-'));
  const device = await openFileBlockDevice({ path: join(dir, 'vol'), sizeBytes: 4 * 1024 * 1024 });
  t.teardown(async () => {
    await device.close();
    await rm(dir, { recursive: true, force: true });
  });
  const calls: Array<{ kind: 'write' | 'writev'; parts: number }> = [];
  const recording = Object.assign(Object.create(device) as FileBlockDevice, {
    write: (off: number, data: Buffer, opts?: { fua?: boolean }) => { calls.push({ kind: 'write', parts: 1 }); return device.write(off, data, opts); },
    writev: (off: number, parts: readonly Buffer[], opts?: { fua?: boolean }) => { calls.push({ kind: 'writev', parts: parts.length }); return device.writev(off, parts, opts); },
  });
  let gate: RoleView['gate'] = 'local';
  const view: RoleView = { epoch: 1, primary: 'alpha', isPrimary: true, gate: 'local', access: 'active-optimized', peerAlive: false };
  const runtime = { gate: () => gate, epoch: () => 1, view: () => ({ ...view, gate }) };
  const quiet = { warn: () => undefined, info: () => undefined, error: () => undefined, child: () => quiet };
  const path = new GroupDataPath({
    group: { name: 'db' }, volumes: [{ index: 0, open: { device: recording } }], runtime, mirroring: false, sessions: new Map(), log: quiet,
  } as unknown as ConstructorParameters<typeof GroupDataPath>[0]);
  path.configure(view);
  return { path, device, calls, setGate: (g: RoleView['gate']) => { gate = g; } };
}

test('Data-Out in pieces goes to the volume file as the pieces, not joined; the data reads back in order', async (t) => {
  const { path, device, calls } = await primaryPath(t);
  const parts = [Buffer.alloc(8192, 1), Buffer.alloc(4096, 2), Buffer.alloc(4096, 3)];
  await path.devices[0].writev(65536, parts);
  t.deepEqual(calls, [{ kind: 'writev', parts: 3 }]);
  t.deepEqual(await device.read(65536, 16384), Buffer.concat(parts));
});

test('a closed write gate refuses Data-Out in pieces as it refuses a plain write, and nothing is written', async (t) => {
  const { path, device, calls, setGate } = await primaryPath(t);
  setGate('closed');
  await t.throwsAsync(path.devices[0].writev(0, [Buffer.alloc(4096, 9), Buffer.alloc(4096, 9)]), { instanceOf: AccessUnavailable });
  await t.throwsAsync(path.devices[0].write(0, Buffer.alloc(4096, 9)), { instanceOf: AccessUnavailable });
  t.deepEqual(calls, []);
  t.deepEqual(await device.read(0, 8192), Buffer.alloc(8192));
});
