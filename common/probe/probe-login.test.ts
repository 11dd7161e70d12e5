// What the probe logs in with (probeLogin): nothing without access.chap; access.chap's secrets read
// under the agents' rules; and each reason it cannot, which names the file, never a secret.
import test from 'ava';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { probeLogin, probeInitiator } from './io-probe.ts';
import type { Topology } from '../topology/index.ts';

const hostSecret = 'host1-secret-0123';
const targetSecret = 'target-secret-4567';

async function folder(files: Record<string, { text: string; mode?: number }>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'probe-login-'));
  for (const [name, f] of Object.entries(files)) await fs.writeFile(path.join(dir, name), f.text, { mode: f.mode ?? 0o600 });
  return dir;
}

function topology(dir: string, access: Partial<Topology['access']>): Topology {
  return { name: 'demo', access: { initiators: [], limits: {} as Topology['access']['limits'], ...access } } as unknown as Topology;
}

const chapIn = (dir: string) => ({ user: 'host1', secretFile: path.join(dir, 'host1'), mutual: { user: 'metro', secretFile: path.join(dir, 'target') } });

test('without access.chap the probe logs in without CHAP', async (t) => {
  t.deepEqual(await probeLogin(topology('/nowhere', {})), { ok: true });
});

test('with access.chap the probe gets both secrets, without the trailing newline', async (t) => {
  const dir = await folder({ host1: { text: `${hostSecret}\n` }, target: { text: `${targetSecret}\n` } });
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  t.deepEqual(await probeLogin(topology(dir, { chap: chapIn(dir) })), { ok: true, chap: { user: 'host1', secret: hostSecret, mutual: { user: 'metro', secret: targetSecret } } });
});

const refusals: Array<[string, Record<string, { text: string; mode?: number }>, Partial<Topology['access']> | null, RegExp]> = [
  ['a missing secret file', { target: { text: targetSecret } }, null, /^the probe initiator cannot read its CHAP secrets: access\.chap\.secretFile: cannot read \S+\/host1: ENOENT$/],
  ['a secret file open to others', { host1: { text: hostSecret, mode: 0o644 }, target: { text: targetSecret } }, null, /access\.chap\.secretFile: \S+\/host1 is accessible by group or others \(mode 644\); run chmod 600/],
  ['a target secret file open to the group', { host1: { text: hostSecret }, target: { text: targetSecret, mode: 0o640 } }, null, /access\.chap\.mutual\.secretFile: \S+\/target is accessible by group or others \(mode 640\)/],
  ['a secret shorter than 12 bytes', { host1: { text: 'short\n' }, target: { text: targetSecret } }, null, /secret in \S+\/host1 must be 12 to 255 bytes long, it is 5$/],
  ['the same secret both ways', { host1: { text: hostSecret }, target: { text: hostSecret } }, null, /the mutual \(target\) secret must differ from the initiator secret/],
  ['an allow-list without the probe', { host1: { text: hostSecret }, target: { text: targetSecret } }, { initiators: ['iqn.2026-11.org.example:host1'] }, new RegExp(`^access\\.initiators does not allow the probe initiator ${probeInitiator('demo').replace(/\./g, '\\.')}: add it$`)],
];
for (const [name, files, access, reason] of refusals) {
  test(`the probe cannot log in with ${name}, and says why without the secret`, async (t) => {
    const dir = await folder(files);
    t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
    const r = await probeLogin(topology(dir, { chap: chapIn(dir), ...access }));
    t.false(r.ok);
    if (!r.ok) {
      t.regex(r.reason, reason);
      t.false(r.reason.includes(hostSecret) || r.reason.includes(targetSecret), 'no secret in the reason');
    }
  });
}

test('an allow-list that names the probe lets it log in', async (t) => {
  const dir = await folder({ host1: { text: hostSecret }, target: { text: targetSecret } });
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  const r = await probeLogin(topology(dir, { chap: chapIn(dir), initiators: ['iqn.2026-11.org.example:host1', probeInitiator('demo')] }));
  t.true(r.ok);
});
