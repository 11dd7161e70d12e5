// The leak check every test cluster passes through on removal: it finds a CHAP secret or a private
// key's material in any daemon log or in printed output, and finds nothing in clean logs.
import test from 'ava';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { leakedSecrets, removeClusterDir } from './secrets.ts';

async function clusterDir(logLine: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'metro-secrets-'));
  await fs.mkdir(path.join(dir, 'secrets'));
  await fs.writeFile(path.join(dir, 'secrets', 'host1'), 'chap-secret-4711-abc\n', { mode: 0o600 });
  await fs.mkdir(path.join(dir, 'data', 'pki'), { recursive: true });
  await fs.writeFile(path.join(dir, 'data', 'pki', 'agent-alpha.key'), '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\nQ2xvbmVkIGtleSBtYXRlcmlhbA==\n-----END PRIVATE KEY-----\n', { mode: 0o600 });
  await fs.mkdir(path.join(dir, 'data', 'alpha', 'logs'), { recursive: true });
  await fs.writeFile(path.join(dir, 'data', 'alpha', 'logs', 'agent.log'), `{"message":"iSCSI login"}\n${logLine}\n`);
  return dir;
}

test('clean logs: nothing found, and the folder is removed', async (t) => {
  const dir = await clusterDir('{"message":"CHAP refused","initiator":"host1"}');
  t.deepEqual(await leakedSecrets(dir), []);
  await removeClusterDir(dir);
  await t.throwsAsync(fs.stat(dir));
});

test('a CHAP secret or a private key line in a log or in printed output is found, and the folder kept', async (t) => {
  for (const [line, printed, what] of [
    ['{"message":"oops","secret":"chap-secret-4711-abc"}', {}, 'secrets/host1'],
    ['{"message":"key","pem":"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg"}', {}, 'agent-alpha.key'],
    ['{"message":"clean"}', { 'metroctl up output': 'loaded chap-secret-4711-abc' }, 'secrets/host1'],
  ] as const) {
    const dir = await clusterDir(line);
    const found = await leakedSecrets(dir, printed);
    t.true(found.some((f) => f.includes(what)), JSON.stringify(found));
    await t.throwsAsync(removeClusterDir(dir, printed), { message: /secrets leaked into logs/ });
    t.true((await fs.stat(dir)).isDirectory(), 'kept for a post-mortem');
    await fs.rm(dir, { recursive: true, force: true });
  }
});
