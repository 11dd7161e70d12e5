// The agent's witness client against the witness's own arbitration handlers and WitnessService
// (arbiter core, record store in a temporary folder), served over gRPC in this process: the requests
// of one turn travel in one ArbitrateBatch call and each caller gets the reply to its own request;
// a malformed request is refused alone; a witness of an earlier release, which has no
// ArbitrateBatch, gets each request in an Arbitrate call of its own and answers the same.
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { call, dial } from '../../common/grpc-client.ts';
import { startGrpcServer, shutdownGrpcServer } from '../../common/grpc-server.ts';
import { createLogger } from '../../common/log.ts';
import { LogLimiter } from '../../common/log-limiter.ts';
import { serviceOf } from '../../common/proto.ts';
import { useGrpcSecurity, type GrpcSecurity } from '../../common/tls/grpc-security.ts';
import type { Topology } from '../../common/topology/index.ts';
import { arbitrationHandlers } from '../../site-witness/arbitration-handlers.ts';
import { batchRequestsMax, requestToWire } from '../../site-witness/arbiter-wire.ts';
import type { WitnessRequest } from '../../site-witness/arbiter-messages.ts';
import { openRecordStore } from '../../site-witness/record-store.ts';
import { WitnessService } from '../../site-witness/witness-service.ts';
import { grpcWitnessClient } from './witness-client.ts';

const log = createLogger({ component: 'witness-client-test', console: false });
const security: GrpcSecurity = { mode: 'insecure', topology: { name: 'unit', sites: [] } as unknown as Topology, self: { kind: 'agent', cluster: 'unit', site: 'alpha' }, warnings: [] };
useGrpcSecurity(security);
const groups = Array.from({ length: 8 }, (_, i) => `g${i}`);
const leaseMs = 2000;

/** A witness service on 127.0.0.1 counting its calls; `batches: false` is a witness without ArbitrateBatch. */
async function startWitness(batches: boolean) {
  const dir = await mkdtemp(join(tmpdir(), 'witness-client-'));
  const service = new WitnessService(await openRecordStore(join(dir, 'witness.json')), () => performance.now(), log);
  for (const group of groups) await service.register({ key: { cluster: 'unit', group }, sites: ['alpha', 'beta'], preferredSite: 'alpha', leaseMs, maxDataLossMs: 0 });
  const h = arbitrationHandlers(service, log, new LogLimiter(log));
  const calls = { Arbitrate: 0, ArbitrateBatch: 0 };
  const implementation: grpc.UntypedServiceImplementation = {
    Arbitrate: (c: any, cb: any) => { calls.Arbitrate++; h.Arbitrate(c, cb); },
    ...(batches ? { ArbitrateBatch: (c: any, cb: any) => { calls.ArbitrateBatch++; h.ArbitrateBatch(c, cb); } } : {}),
  };
  const { server, port } = await startGrpcServer({
    address: '127.0.0.1', port: 0, log, security,
    services: [{ definition: serviceOf('witness.proto', 'MetroWitness').service, access: { Arbitrate: 'agent', ArbitrateBatch: 'agent' }, implementation }],
  });
  const client = grpcWitnessClient('127.0.0.1', port, { kind: 'witness', cluster: 'unit' }, 5000);
  return {
    port, calls, client,
    async stop() {
      client.close();
      await shutdownGrpcServer(server);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

let seq = 0;
const lease = (group: string, site = 'alpha', epoch = 1): WitnessRequest => ({
  key: { cluster: 'unit', group }, site, epoch, seq: ++seq, sentAtMs: Math.floor(performance.now()), incarnation: 1, ask: { kind: 'lease' },
});

for (const batches of [true, false]) {
  test(`every request of one turn answered with its own reply (${batches ? 'one ArbitrateBatch call' : 'a witness without ArbitrateBatch: one Arbitrate call each'})`, async (t) => {
    const w = await startWitness(batches);
    try {
      // The primary's lease of every group and the secondary's poll of it, asked in the same turn.
      const asked = groups.flatMap((g) => [lease(g), lease(g, 'beta')]);
      const replies = await Promise.all(asked.map((r) => w.client.arbitrate(r)));
      replies.forEach((r, i) => {
        const q = asked[i];
        if (!r.ok) return t.fail(`${q.key.group} ${q.site}: ${r.reason}`);
        t.is(r.reply.key.group, q.key.group);
        t.is(r.reply.seq, q.seq, 'the reply to this request, not another');
        if (q.site === 'alpha') t.deepEqual(r.reply.outcome, { granted: true, leaseMs });
        else t.like(r.reply.outcome, { granted: false, reason: 'NOT_PRIMARY' });
        t.is(r.reply.record?.primary, 'alpha');
      });
      t.deepEqual(w.calls, batches ? { Arbitrate: 0, ArbitrateBatch: 1 } : { Arbitrate: asked.length, ArbitrateBatch: 0 });

      // Requests of separate turns go separately; the earlier release is not asked for batches again.
      const a = await w.client.arbitrate(lease('g0'));
      const b = await w.client.arbitrate(lease('g1'));
      t.true(a.ok && b.ok);
      t.deepEqual(w.calls, batches ? { Arbitrate: 0, ArbitrateBatch: 3 } : { Arbitrate: asked.length + 2, ArbitrateBatch: 0 });
    } finally {
      await w.stop();
    }
  });
}

test('a malformed request in a batch is refused with its reason; the others are arbitrated', async (t) => {
  const w = await startWitness(true);
  try {
    const [good, huge, nameless, other] = await Promise.all([
      w.client.arbitrate(lease('g2')),
      w.client.arbitrate({ ...lease('g3'), epoch: 2 ** 60 }),
      w.client.arbitrate(lease('g4', '')),
      w.client.arbitrate(lease('g5')),
    ]);
    t.deepEqual(w.calls, { Arbitrate: 0, ArbitrateBatch: 1 });
    t.true(good.ok && good.reply.outcome.granted);
    t.true(other.ok && other.reply.outcome.granted);
    t.false(huge.ok);
    t.regex(huge.ok ? '' : huge.reason, /refused: .*below 2\^53/);
    t.false(nameless.ok);
    t.regex(nameless.ok ? '' : nameless.reason, /refused: cluster, group and site must be names/);
  } finally {
    await w.stop();
  }
});

test('a batch larger than the limit is refused as a whole, with the limit in the reason', async (t) => {
  const w = await startWitness(true);
  const raw = dial('witness.proto', 'MetroWitness', '127.0.0.1', w.port, { expect: { kind: 'witness', cluster: 'unit' } });
  try {
    const requests = Array.from({ length: batchRequestsMax + 1 }, () => requestToWire(lease('g6')));
    const r = await call(raw, 'ArbitrateBatch', { requests });
    t.false(r.ok);
    t.is(r.ok ? undefined : r.code, grpc.status.INVALID_ARGUMENT);
    t.regex(r.ok ? '' : r.reason, new RegExp(`at most ${batchRequestsMax} requests, not ${batchRequestsMax + 1}`));
    // The witness goes on answering.
    const after = await w.client.arbitrate(lease('g6'));
    t.true(after.ok && after.reply.outcome.granted);
  } finally {
    raw.close();
    await w.stop();
  }
});
