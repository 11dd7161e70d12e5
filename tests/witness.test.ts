// metro-witness as a real process: it registers the topology's groups, grants the primary's lease,
// refuses a promotion while that lease may run (also right after its own restart), promotes an
// up-to-date secondary once the lease has ended, and keeps epochs across SIGKILL. Malformed
// requests are refused with a reason.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { makeTopology, repoRoot, securityFor } from './harness/cluster.ts';
import { dial } from '../common/grpc-client.ts';
import { requestToWire, replyFromWire } from '../site-witness/arbiter-wire.ts';
import type { WitnessAsk, WitnessReply } from '../site-witness/arbiter-messages.ts';
import { removeClusterDir } from './harness/secrets.ts';

function startWitness(file: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'metro-witness.js'), '-f', file], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.on('message', (m: { type?: string }) => { if (m?.type === 'ready') resolve(child); });
    child.once('exit', (code) => reject(new Error(`witness exited with ${code}`)));
  });
}

function kill(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => { child.once('exit', () => resolve()); child.kill('SIGKILL'); });
}

test('the witness arbitrates leases and promotions and keeps its records across SIGKILL', async (t) => {
  // The lease outlasts a restart plus a reconnect with a TLS handshake on a loaded machine.
  const leaseMs = 5000;
  const { dir, file, host, name } = await makeTopology({ extra: `failover: { leaseMs: ${leaseMs}, maxDataLossMs: 0 }` });
  let witness = await startWitness(file);
  // Each site's agent speaks for itself, with its own certificate.
  const clients = {
    alpha: dial('witness.proto', 'MetroWitness', host(3), 7400, { security: await securityFor(file, { agent: 'alpha' }) }),
    beta: dial('witness.proto', 'MetroWitness', host(3), 7400, { security: await securityFor(file, { agent: 'beta' }) }),
  };
  const client = clients.alpha;
  const seq = { alpha: 0, beta: 0 };
  const ask = (site: 'alpha' | 'beta', epoch: number, a: WitnessAsk): Promise<WitnessReply> => new Promise((resolve, reject) => {
    seq[site] += 1;
    const req = requestToWire({ key: { cluster: name, group: 'db' }, site, epoch, seq: seq[site], sentAtMs: Math.floor(performance.now()), incarnation: 1, ask: a });
    (clients[site] as any).Arbitrate(req, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, w: object) => err ? reject(err) : resolve(replyFromWire(w)));
  });
  try {
    // The topology's groups are registered at start: db has epoch 1 with its preferred site alpha.
    const lease = await ask('alpha', 1, { kind: 'lease' });
    t.deepEqual(lease.outcome, { granted: true, leaseMs });
    t.is(lease.record?.epoch, 1);
    t.is(lease.record?.primary, 'alpha');

    const early = await ask('beta', 1, { kind: 'promotion', forced: false });
    t.like(early.outcome, { granted: false, reason: 'LEASE_HELD' });

    // SIGKILL: on restart the witness assumes any lease it granted may still run.
    await kill(witness);
    witness = await startWitness(file);
    const afterRestart = await ask('beta', 1, { kind: 'promotion', forced: false });
    t.like(afterRestart.outcome, { granted: false, reason: 'LEASE_HELD' });
    t.is(afterRestart.record?.epoch, 1);

    // Once the lease has surely ended, the up-to-date secondary is promoted: epoch 2.
    await new Promise((r) => setTimeout(r, leaseMs + 200));
    const promoted = await ask('beta', 1, { kind: 'promotion', forced: false });
    t.like(promoted.outcome, { granted: true });
    t.is(promoted.record?.epoch, 2);
    t.is(promoted.record?.primary, 'beta');

    // The old primary's epoch is stale now, also after another restart.
    await kill(witness);
    witness = await startWitness(file);
    const stale = await ask('alpha', 1, { kind: 'lease' });
    t.false(stale.outcome.granted);
    t.is(stale.record?.epoch, 2);
    t.is(stale.record?.primary, 'beta');

    // Malformed: no group key, an epoch beyond 2^53.
    const bad = await new Promise<grpc.ServiceError>((resolve) => (client as any).Arbitrate({ site: 'alpha', epoch: '18446744073709551615', lease: {} }, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError) => resolve(err)));
    t.is(bad?.code, grpc.status.INVALID_ARGUMENT);
    t.regex(bad.details, /names of 1 to 223 characters|below 2\^53/);
    const record = JSON.parse(await fs.readFile(path.join(dir, 'data', 'witness', 'witness.json'), 'utf8'));
    t.is(record.records[`${name}/db`].epoch, 2, 'the record on disk holds epoch 2');
  } finally {
    clients.alpha.close();
    clients.beta.close();
    await kill(witness);
    await removeClusterDir(dir);
  }
});
