// Hostile messages at every gRPC service of a running cluster, from clients the services accept
// (mutual TLS with the cluster's own certificates: the peer agent for the mirror, the agents for
// the witness, the local admin for agent control):
// seeded random and boundary-valued requests (offsets past the end, 2^64-1 and negative-looking
// 64-bit values, huge lengths, unknown volumes, groups and sites, stale and future epochs, a wrong
// first message on a stream, garbage bytes). MetroMirror is fuzzed from both ends: as a secondary
// attaching to the real primary, and as a primary that the real secondary dials (its routes.peer
// names this test's server). Every message must be refused with a reason; no daemon may crash or
// restart; no volume byte and no witness record may change. METRO_TEST_SEED=<seed> replays a run.
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { securityFor, startCluster, type TestCluster } from './harness/cluster.ts';
import { channelOptions, serviceOf } from '../common/proto.ts';
import { dial } from '../common/grpc-client.ts';
import { serverCredentials, type GrpcSecurity } from '../common/tls/grpc-security.ts';
import { prng, seedFromEnv } from '../common/prng.ts';

type Msg = Record<string, any>;

const u64Max = '18446744073709551615';
const int64Negative = '9223372036854775808'; // -2^63 as int64
const hostilePrimaryPort = 17402;
const volumes = { db: [8 << 20, 4 << 20], vm: [4 << 20] };
const regionSizeBytes = 65536; // dirtyMapDefaults.regionSizeBytes

let cluster: TestCluster | undefined;
let hostile: HostilePrimary | undefined;
test.after.always(async () => {
  await cluster?.stop();
  hostile?.server.forceShutdown();
});

const Mirror = serviceOf('mirror.proto', 'MetroMirror');

test.serial('seeded gRPC fuzzing: every hostile message refused with a reason, daemons up, data and records unchanged', async (t) => {
  t.timeout(240_000);
  const seed = seedFromEnv();
  t.log(`seed ${seed} (METRO_TEST_SEED=${seed} replays it)`);
  const rand = prng(seed);
  hostile = new HostilePrimary();
  cluster = await startCluster({
    groups: `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 8MiB }, { name: log, size: 4MiB } ]
  - name: vm
    preferredSite: beta
    volumes: [ { name: images, size: 4MiB } ]`,
    routes: (host) => ({ beta: { peer: { address: host(3), port: hostilePrimaryPort } } }),
    // db's secondary dials this test's server, never alpha: alpha records it outdated at the witness
    // before anything is measured; vm mirrors normally and is up-to-date.
    settle: { outdated: ['db'] },
  });
  const c = cluster;
  const as = {
    alpha: await securityFor(c.file, { agent: 'alpha' }),
    beta: await securityFor(c.file, { agent: 'beta' }),
    operator: await securityFor(c.file, 'operator'),
  };
  // The stand-in primary presents alpha's agent certificate: the one beta expects at routes.peer.
  await hostile.listen(c.host(3), hostilePrimaryPort, as.alpha);
  const alphaAgent = dial('agent.proto', 'MetroAgent', c.host(1), 7401, { security: as.operator });
  const betaAgent = dial('agent.proto', 'MetroAgent', c.host(2), 7402, { security: as.operator });
  const witnessAs = {
    alpha: dial('witness.proto', 'MetroWitness', c.host(3), 7400, { security: as.alpha }),
    beta: dial('witness.proto', 'MetroWitness', c.host(3), 7400, { security: as.beta }),
  };
  const witness = witnessAs.beta;
  // beta's agent certificate: the only caller alpha's mirror service accepts.
  const alphaMirror = dial('mirror.proto', 'MetroMirror', c.host(1), 7401, { security: as.beta });
  const pids = ['agent alpha', 'agent beta', 'witness'].map((n) => c.up.pidOf(n));
  // beta's mirror of db has attached to this test's server before anything is measured.
  await hostile.firstHello;
  await settle(alphaAgent, betaAgent);
  const before = await fingerprints(c);

  const stats = { mirrorAsSecondary: 0, mirrorAsPrimary: 0, witness: 0, control: 0, operator: 0, garbage: 0 };
  const silent = silentStream(alphaMirror);

  // 1. MetroMirror as a hostile secondary attaching to alpha, the primary of db.
  for (let i = 0; i < 60; i++) {
    const kase = secondaryCase(rand, c.name);
    const r = await attachAs(alphaMirror, kase.messages);
    stats.mirrorAsSecondary++;
    t.truthy(r.refusal, `${kase.what}: no refusal (status ${r.code} ${r.details})`);
    t.regex(r.refusal?.reason ?? '', kase.reason, `${kase.what}: refusal ${JSON.stringify(r.refusal)}`);
    t.true((r.refusal?.message ?? '').length > 0, `${kase.what}: the refusal says why`);
    if (kase.code !== undefined) t.is(r.code, kase.code, `${kase.what}: status ${r.code} ${r.details}`);
  }

  // 2. MetroMirror as a hostile primary: beta's applier dials this test's server for db.
  for (let i = 0; i < 30; i++) {
    const kase = primaryCase(rand);
    const r = await hostile.serve(kase.messages);
    stats.mirrorAsPrimary++;
    t.truthy(r.refusal, `${kase.what}: the secondary did not refuse`);
    t.regex(r.refusal?.reason ?? '', /^(INVALID_MESSAGE|OLD_EPOCH)$/, `${kase.what}: ${JSON.stringify(r.refusal)}`);
    t.true((r.refusal?.message ?? '').length > 0, `${kase.what}: the refusal says why`);
    t.true(r.ended, `${kase.what}: the secondary ended the stream`);
  }

  // 3. The witness.
  for (let i = 0; i < 60; i++) {
    const kase = witnessCase(rand, c.name);
    // Each agent may arbitrate for its own site only: a request for another is refused before
    // validation (PERMISSION_DENIED), which is a refusal with a reason too.
    const r = await unary(kase.request.site === 'alpha' ? witnessAs.alpha : witnessAs.beta, kase.method, kase.request);
    stats.witness++;
    if (r.err) {
      const allowed = kase.method === 'Arbitrate' && !['alpha', 'beta'].includes(kase.request.site) ? [grpc.status.INVALID_ARGUMENT, grpc.status.PERMISSION_DENIED] : [grpc.status.INVALID_ARGUMENT];
      t.true(allowed.includes(r.err.code), `${kase.what}: ${r.err.code} ${r.err.details}`);
      t.true(r.err.details.length > 0, `${kase.what}: the status says why`);
    } else {
      t.is(kase.method, 'Arbitrate', `${kase.what}: RegisterGroup accepted ${JSON.stringify(r.reply)}`);
      t.false(r.reply!.granted, `${kase.what}: granted`);
      t.not(r.reply!.refusal, 'REFUSAL_NONE', `${kase.what}: refused without a reason`);
    }
  }

  // 4. Agent control: no fields to abuse, but unknown fields, garbage and unknown methods.
  for (const client of [alphaAgent, betaAgent]) {
    for (const method of ['Health', 'Status']) {
      const r = await unary(client, method, {});
      t.falsy(r.err, `${method}: ${r.err?.details}`);
      stats.control++;
    }
    const r = await rawUnary(client, '/metrocluster.v1.MetroAgent/NoSuchMethod', Buffer.from([0x0a, 0x02, 0x64, 0x62]));
    t.is(r.code, grpc.status.UNIMPLEMENTED);
    stats.control++;
  }

  // 5. Operator services: topology apply, reachability, drills (as the local admin).
  const opsClients = {
    alphaAgent, witnessOps: dial('witness.proto', 'MetroWitness', c.host(3), 7400, { security: as.operator }),
    reachAlpha: dial('reach.proto', 'MetroReach', c.host(1), 7401, { security: as.operator }),
    reachWitness: dial('reach.proto', 'MetroReach', c.host(3), 7400, { security: as.operator }),
    drills: dial('drills.proto', 'MetroDrills', c.host(3), 7400, { security: as.operator }),
  };
  const versionsBefore = await Promise.all([alphaAgent, opsClients.witnessOps].map(async (x) => (await unary(x, 'GetTopology', {})).reply?.version));
  for (let i = 0; i < 40; i++) {
    const kase = operatorCase(rand, c.name, c.file);
    const r = kase.method === 'RunDrill'
      ? await serverStreamStatus(opsClients.drills, kase.request)
      : await unary((opsClients as Record<string, grpc.Client>)[kase.client], kase.method, kase.request).then((x) => ({ code: x.err?.code ?? grpc.status.OK, details: x.err?.details ?? '' }));
    stats.operator++;
    t.true(kase.codes.includes(r.code), `${kase.what}: ${r.code} ${r.details}`);
    t.true(r.details.length > 0, `${kase.what}: the status says why`);
  }
  const versionsAfter = await Promise.all([alphaAgent, opsClients.witnessOps].map(async (x) => (await unary(x, 'GetTopology', {})).reply?.version));
  t.deepEqual(versionsAfter, versionsBefore, 'no topology version was applied');
  for (const x of Object.values(opsClients)) if (x !== alphaAgent) x.close();

  // 6. Garbage: random bytes as messages of every method, and bytes that are not HTTP/2 at all.
  const methods = [
    [alphaAgent, '/metrocluster.v1.MetroAgent/Health'], [alphaAgent, '/metrocluster.v1.MetroAgent/Status'],
    [witness, '/metrocluster.v1.MetroWitness/RegisterGroup'], [witness, '/metrocluster.v1.MetroWitness/Arbitrate'],
    [witness, '/metrocluster.v1.MetroWitness/ArbitrateBatch'],
  ] as const;
  for (let i = 0; i < 40; i++) {
    const [client, method] = methods[i % methods.length];
    await rawUnary(client, method, randomBytes(rand, 1 + Math.floor(rand() * 300)));
    stats.garbage++;
  }
  for (let i = 0; i < 20; i++) {
    const r = await rawAttach(alphaMirror, randomBytes(rand, 1 + Math.floor(rand() * 300)));
    t.true(r.code !== grpc.status.OK || r.refusal !== undefined, `garbage on Attach: status ${r.code} without a refusal`);
    stats.garbage++;
  }
  for (const [n, port] of [[1, 7401], [2, 7402], [3, 7400]] as const) {
    for (let i = 0; i < 5; i++) {
      const preface = i % 2 === 0 ? Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n') : Buffer.alloc(0);
      await rawTcp(c.host(n), port, Buffer.concat([preface, randomBytes(rand, 16 + Math.floor(rand() * 4000))]));
      stats.garbage++;
    }
  }

  // A stream that never says hello is refused once the hello time is up.
  const quiet = await silent;
  t.is(quiet.code, grpc.status.DEADLINE_EXCEEDED, `silent stream: ${quiet.code} ${quiet.details}`);
  t.regex(quiet.refusal?.message ?? '', /no hello within/);

  t.log(`messages: ${JSON.stringify(stats)}`);
  for (const [client, what] of [[alphaAgent, 'alpha'], [betaAgent, 'beta'], [witness, 'witness']] as const) {
    const h = await unary(client, 'Health', {});
    t.falsy(h.err, `${what} health: ${h.err?.details}`);
  }
  t.deepEqual(['agent alpha', 'agent beta', 'witness'].map((n) => c.up.pidOf(n)), pids, 'no daemon restarted');
  t.notRegex(c.up.output(), /restarted|exited/, 'metroctl up saw no daemon exit');
  const status = await unary(betaAgent, 'Status', {});
  t.is(status.reply?.groups.find((g: Msg) => g.name === 'db')?.epoch, '1', 'beta adopted no epoch from the hostile primary');
  t.deepEqual(await fingerprints(c), before, 'no volume byte and no witness record changed');
  for (const client of [alphaAgent, betaAgent, witnessAs.alpha, witnessAs.beta, alphaMirror]) client.close();
});

// ---------------------------------------------------------------- cases

interface SecondaryCase { what: string; messages: Msg[]; reason: RegExp; code?: grpc.status }

const pick = <T>(rand: () => number, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
const hugeU64 = (rand: () => number): string => pick(rand, [u64Max, int64Negative, '9007199254740993', String(2n ** 53n + BigInt(Math.floor(rand() * 1e9)))]);

function validHello(cluster: string): Msg {
  return {
    cluster, group: 'db', site: 'beta', epoch: '1', applied_seq: '0', durable_seq: '0', up_to_date: true, has_data: true,
    volumes: volumes.db.map((size, i) => ({ volume: i, size_bytes: String(size), region_size_bytes: regionSizeBytes })),
  };
}

function secondaryCase(rand: () => number, cluster: string): SecondaryCase {
  const hello = validHello(cluster);
  const invalid = { reason: /^INVALID_MESSAGE$/, code: grpc.status.INVALID_ARGUMENT };
  const cases: Array<() => SecondaryCase> = [
    () => ({ what: 'first message not a hello', reason: /^WRONG_GROUP$/, code: grpc.status.INVALID_ARGUMENT,
      messages: [pick(rand, [{ ack: { epoch: '1', applied_seq: '1', durable_seq: '1' } }, { heartbeat: { epoch: '1', sent_at_us: '5' } }, { refusal: { reason: 'OLD_EPOCH' } }, {}])] }),
    () => ({ what: 'hello epoch beyond 2^53', ...invalid, messages: [{ hello: { ...hello, epoch: hugeU64(rand) } }] }),
    () => ({ what: 'hello applied_seq beyond 2^53', ...invalid, messages: [{ hello: { ...hello, applied_seq: hugeU64(rand) } }] }),
    () => ({ what: 'hello durable past applied', ...invalid, messages: [{ hello: { ...hello, applied_seq: '3', durable_seq: String(4 + Math.floor(rand() * 1e6)) } }] }),
    () => ({ what: 'hello with too many volumes', ...invalid, messages: [{ hello: { ...hello, volumes: Array.from({ length: 257 + Math.floor(rand() * 500) }, (_, i) => ({ volume: i, size_bytes: '512', region_size_bytes: 512 })) } }] }),
    () => ({ what: 'hello volume out of order', ...invalid, messages: [{ hello: { ...hello, volumes: [{ ...hello.volumes[0], volume: 1 + Math.floor(rand() * 1000) }, hello.volumes[1]] } }] }),
    () => ({ what: 'hello volume size beyond 2^53', ...invalid, messages: [{ hello: { ...hello, volumes: [{ ...hello.volumes[0], size_bytes: hugeU64(rand) }, hello.volumes[1]] } }] }),
    () => ({ what: 'hello region size 0', ...invalid, messages: [{ hello: { ...hello, volumes: [{ ...hello.volumes[0], region_size_bytes: Math.floor(rand() * 512) }, hello.volumes[1]] } }] }),
    () => ({ what: 'hello without a cluster', ...invalid, messages: [{ hello: { ...hello, cluster: '' } }] }),
    () => ({ what: 'hello with a huge group name', ...invalid, messages: [{ hello: { ...hello, group: 'g'.repeat(224 + Math.floor(rand() * 100_000)) } }] }),
    () => ({ what: 'hello of another cluster', reason: /^WRONG_CLUSTER$/, code: grpc.status.FAILED_PRECONDITION, messages: [{ hello: { ...hello, cluster: `${cluster}-other` } }] }),
    () => ({ what: 'hello for an unknown group', reason: /^NOT_PRIMARY$/, code: grpc.status.FAILED_PRECONDITION, messages: [{ hello: { ...hello, group: `nosuch${Math.floor(rand() * 1000)}` } }] }),
    () => ({ what: 'hello for a group alpha is not primary of', reason: /^NOT_PRIMARY$/, code: grpc.status.FAILED_PRECONDITION, messages: [{ hello: { ...hello, group: 'vm' } }] }),
    () => ({ what: 'hello from a future epoch', reason: /^NOT_PRIMARY$/, messages: [{ hello: { ...hello, epoch: String(2 + Math.floor(rand() * 1e9)) } }] }),
    () => ({ what: 'hello with another geometry', reason: /^GEOMETRY_MISMATCH$/, messages: [{ hello: { ...hello, volumes: [{ ...hello.volumes[0], size_bytes: String(512 * (1 + Math.floor(rand() * 1e6))) }, hello.volumes[1]] } }] }),
    () => ({ what: 'ack with durable past applied', ...invalid, messages: [{ hello }, { ack: { epoch: '1', applied_seq: '0', durable_seq: String(1 + Math.floor(rand() * 1e6)) } }] }),
    () => ({ what: 'ack of sequences never sent', reason: /^INVALID_MESSAGE$/, messages: [{ hello }, { ack: { epoch: '1', applied_seq: String(1000 + Math.floor(rand() * 1e6)), durable_seq: '0' } }] }),
    () => ({ what: 'ack beyond 2^53', ...invalid, messages: [{ hello }, { ack: { epoch: hugeU64(rand), applied_seq: hugeU64(rand), durable_seq: '0' } }] }),
    () => ({ what: 'heartbeat echoing a time never sent', ...invalid, messages: [{ hello }, { heartbeat: { epoch: '1', sent_at_us: '1', echo_sent_at_us: String(1e15 + Math.floor(rand() * 1e12)), echo_held_us: '0' } }] }),
    () => ({ what: 'heartbeat field beyond 2^53', ...invalid, messages: [{ hello }, { heartbeat: { epoch: '1', sent_at_us: '1', lag_bytes: hugeU64(rand) } }] }),
    () => ({ what: 'resync request for an unknown volume', ...invalid, messages: [{ hello }, { resync_request: { epoch: '1', volume: 2 + Math.floor(rand() * 1e6), region_size_bytes: regionSizeBytes } }] }),
    () => ({ what: 'resync request with a bitmap larger than the volume', ...invalid, messages: [{ hello }, { resync_request: { epoch: '1', volume: 0, region_size_bytes: regionSizeBytes, dirty_bitmap: Buffer.alloc(17 + Math.floor(rand() * 100_000), 0xff) } }] }),
    () => ({ what: 'checksums past the last region', ...invalid, messages: [{ hello }, { checksums: { epoch: '1', request_id: '1', volume: 1, region_size_bytes: regionSizeBytes, first_region: '60', crc32c: Array.from({ length: 10 }, () => 1) } }] }),
    () => ({ what: 'a second hello', ...invalid, messages: [{ hello }, { hello }] }),
    () => ({ what: 'a refusal with a huge message', ...invalid, messages: [{ hello }, { refusal: { epoch_seen: '1', epoch_current: '1', reason: 'OLD_EPOCH', message: 'x'.repeat(2000 + Math.floor(rand() * 100_000)) } }] }),
  ];
  return pick(rand, cases)();
}

interface PrimaryCase { what: string; messages: Msg[] }

function primaryCase(rand: () => number): PrimaryCase {
  const welcome = { welcome: { epoch: '1', site: 'alpha', resume_seq: '1', resync_needed: false, full_resync: false } };
  const sectors = (n: number) => Buffer.alloc(512 * n, 0xa5);
  const data = sectors(1 + Math.floor(rand() * 8));
  const write = (fields: Msg, d: Buffer = data): Msg => ({ seq: '1', write: { volume: 0, offset_bytes: '0', data: d, crc32c: crc32c(d), fua: false, ...fields } });
  const batch = (entries: Msg[], epoch = '1'): Msg => ({ batch: { epoch, entries } });
  const offset = (): string => String(512 * Math.floor(rand() * 1e6));
  const cases: Array<() => PrimaryCase> = [
    () => ({ what: 'write past the end', messages: [welcome, batch([write({ offset_bytes: String(volumes.db[0] + 512 * Math.floor(rand() * 100)) })])] }),
    () => ({ what: 'write straddling the end', messages: [welcome, batch([write({ offset_bytes: String(volumes.db[1] - 512), volume: 1 }, sectors(2))])] }),
    () => ({ what: 'write at a 64-bit offset', messages: [welcome, batch([write({ offset_bytes: hugeU64(rand) })])] }),
    () => ({ what: 'write at an unaligned offset', messages: [welcome, batch([write({ offset_bytes: String(1 + Math.floor(rand() * 511)) })])] }),
    () => ({ what: 'write of an unaligned length', messages: [welcome, batch([write({}, Buffer.alloc(1 + Math.floor(rand() * 4000), 0xa5).subarray(0, 511))])] }),
    () => ({ what: 'write to an unknown volume', messages: [welcome, batch([write({ volume: pick(rand, [2, 3, 255, 0xffffffff]) })])] }),
    () => ({ what: 'write with a wrong CRC', messages: [welcome, batch([write({ crc32c: (crc32c(data) + 1 + Math.floor(rand() * 1000)) >>> 0 })])] }),
    () => ({ what: 'empty write', messages: [welcome, batch([write({}, Buffer.alloc(0))])] }),
    () => ({ what: 'deallocate of 2^64-1 bytes', messages: [welcome, batch([{ seq: '1', deallocate: { volume: 0, offset_bytes: offset(), length_bytes: u64Max } }])] }),
    () => ({ what: 'deallocate past the end', messages: [welcome, batch([{ seq: '1', deallocate: { volume: 1, offset_bytes: String(volumes.db[1]), length_bytes: '512' } }])] }),
    () => ({ what: 'flush of an unknown volume', messages: [welcome, batch([{ seq: '1', flush: { all_volumes: false, volume: 2 + Math.floor(rand() * 1000) } }])] }),
    () => ({ what: 'a good write behind a bad entry in one batch', messages: [welcome, batch([write({}), { ...write({ offset_bytes: u64Max }), seq: '2' }])] }),
    () => ({ what: 'sequence out of order', messages: [welcome, batch([{ ...write({}), seq: String(2 + Math.floor(rand() * 1e6)) }])] }),
    () => ({ what: 'sequence beyond 2^53', messages: [welcome, batch([{ ...write({}), seq: hugeU64(rand) }])] }),
    () => ({ what: 'batch of epoch 0', messages: [welcome, batch([write({})], '0')] }),
    () => ({ what: 'batch of an epoch beyond 2^53', messages: [welcome, batch([write({})], hugeU64(rand))] }),
    () => ({ what: 'batch of a future epoch without a welcome', messages: [welcome, batch([write({})], String(2 + Math.floor(rand() * 1e6)))] }),
    () => ({ what: 'batch before any welcome', messages: [batch([write({})])] }),
    () => ({ what: 'welcome of an epoch beyond 2^53', messages: [{ welcome: { ...welcome.welcome, epoch: hugeU64(rand) } }, batch([write({})], u64Max)] }),
    () => ({ what: 'welcome of epoch 0', messages: [{ welcome: { ...welcome.welcome, epoch: '0' } }] }),
    () => ({ what: 'welcome resuming at 0', messages: [{ welcome: { ...welcome.welcome, resume_seq: '0' } }] }),
    () => ({ what: 'welcome resuming beyond 2^53', messages: [{ welcome: { ...welcome.welcome, resume_seq: hugeU64(rand) } }] }),
    () => ({ what: 'heartbeat beyond 2^53', messages: [welcome, { heartbeat: { epoch: '1', sent_at_us: hugeU64(rand) } }] }),
  ];
  return pick(rand, cases)();
}

interface WitnessCase { what: string; method: 'RegisterGroup' | 'Arbitrate'; request: Msg }

function witnessCase(rand: () => number, cluster: string): WitnessCase {
  const key = { cluster, group: 'db' };
  const reg = { key, sites: ['alpha', 'beta'], preferred_site: 'alpha', lease_ms: '2000', max_data_loss_ms: '0' };
  const arb = { key, site: 'beta', epoch: '1', seq: String(1 + Math.floor(rand() * 1000)), sent_at_ms: '1000', incarnation: '1', lease: {} };
  const R = (what: string, request: Msg): WitnessCase => ({ what, method: 'RegisterGroup', request });
  const A = (what: string, request: Msg): WitnessCase => ({ what, method: 'Arbitrate', request });
  const cases: Array<() => WitnessCase> = [
    () => R('register an unknown group', { ...reg, key: { cluster, group: `nosuch${Math.floor(rand() * 1e6)}` } }),
    () => R('register for another cluster', { ...reg, key: { cluster: `${cluster}-x`, group: 'db' } }),
    () => R('register one site', { ...reg, sites: ['alpha'] }),
    () => R('register the same site twice', { ...reg, sites: ['alpha', 'alpha'] }),
    () => R('register an unknown site', { ...reg, sites: ['alpha', `mars${Math.floor(rand() * 100)}`] }),
    () => R('register three sites', { ...reg, sites: ['alpha', 'beta', 'gamma'] }),
    () => R('register a lease of 0', { ...reg, lease_ms: '0' }),
    () => R('register a lease beyond 2^53', { ...reg, lease_ms: hugeU64(rand) }),
    () => R('register a lease of hours', { ...reg, lease_ms: String(3_600_001 + Math.floor(rand() * 1e9)) }),
    () => R('register a data loss bound beyond 2^53', { ...reg, max_data_loss_ms: hugeU64(rand) }),
    () => R('register with a huge group name', { ...reg, key: { cluster, group: 'g'.repeat(224 + Math.floor(rand() * 10_000)) } }),
    () => R('register a preferred site outside the group', { ...reg, preferred_site: 'gamma' }),
    () => A('arbitrate an epoch beyond 2^53', { ...arb, epoch: hugeU64(rand) }),
    () => A('arbitrate a seq beyond 2^53', { ...arb, seq: hugeU64(rand) }),
    () => A('arbitrate a send time beyond 2^53', { ...arb, sent_at_ms: hugeU64(rand) }),
    () => A('arbitrate an incarnation beyond 2^53', { ...arb, incarnation: hugeU64(rand) }),
    () => A('arbitrate without a site', { ...arb, site: '' }),
    () => A('arbitrate with a huge site name', { ...arb, site: 's'.repeat(224 + Math.floor(rand() * 10_000)) }),
    () => A('arbitrate an unknown group', { ...arb, key: { cluster, group: `nosuch${Math.floor(rand() * 1e6)}` } }),
    () => A('arbitrate for another cluster', { ...arb, key: { cluster: `${cluster}-x`, group: 'db' } }),
    () => A('arbitrate as an unknown site', { ...arb, site: `mars${Math.floor(rand() * 100)}` }),
    () => A('arbitrate a future epoch', { ...arb, site: 'alpha', epoch: String(2 + Math.floor(rand() * 1e6)) }),
    () => A('arbitrate a promotion from a future epoch', { ...arb, epoch: String(2 + Math.floor(rand() * 1e6)), lease: undefined, promotion: { forced: rand() < 0.5 } }),
    () => A('arbitrate a handover to nobody', { ...arb, site: 'alpha', lease: undefined, handover: { to: '' } }),
    () => A('arbitrate a lag beyond 2^53', { ...arb, site: 'alpha', lease: undefined, secondary_status: { up_to_date: false, lag_bounded: true, lag_ms: hugeU64(rand) } }),
    () => A('a secondary asks for the lease', { ...arb }),
  ];
  return pick(rand, cases)();
}

interface OperatorCase { what: string; client: string; method: string; request: Msg; codes: grpc.status[] }

function operatorCase(rand: () => number, cluster: string, file: string): OperatorCase {
  const apply = { cluster, version: '2', text: 'apiVersion: metrocluster/v1', file, force: false, phase: 'PREPARE' };
  const invalid = [grpc.status.INVALID_ARGUMENT];
  const client = rand() < 0.5 ? 'alphaAgent' : 'witnessOps';
  const A = (what: string, request: Msg, codes = invalid): OperatorCase => ({ what: `apply: ${what}`, client, method: 'ApplyTopology', request, codes });
  const cases: Array<() => OperatorCase> = [
    () => A('version beyond 2^53', { ...apply, version: hugeU64(rand) }),
    () => A('version 0', { ...apply, version: '0' }),
    () => A('no cluster', { ...apply, cluster: '' }),
    () => A('a huge cluster name', { ...apply, cluster: 'c'.repeat(224 + Math.floor(rand() * 10_000)) }),
    () => A('a relative file', { ...apply, file: 'topology.yaml' }),
    () => A('a file with a NUL', { ...apply, file: '/tmp/x\0y' }),
    () => A('no phase', { ...apply, phase: 'APPLY_PHASE_UNSPECIFIED' }),
    () => A('text over the limit', { ...apply, text: 'x'.repeat(2_000_000 + Math.floor(rand() * 1000)) }),
    () => A('text that is not a topology', { ...apply, text: randomBytes(rand, 200).toString('latin1') }, [grpc.status.INVALID_ARGUMENT, grpc.status.FAILED_PRECONDITION]),
    () => A('an old version', { ...apply, version: '1' }, [grpc.status.INVALID_ARGUMENT, grpc.status.FAILED_PRECONDITION]),
    () => ({ what: 'reach an unknown site', client: rand() < 0.5 ? 'reachAlpha' : 'reachWitness', method: 'Reach', request: { site: pick(rand, ['', 'mars', 'x'.repeat(5000), '../alpha']), deadline_ms: Math.floor(rand() * 0xffffffff) }, codes: invalid }),
    () => ({ what: 'reports of an unknown drill report', client: 'drills', method: 'GetReports', request: { id: `nosuch-${Math.floor(rand() * 1e9)}`, limit: 0xffffffff }, codes: [grpc.status.NOT_FOUND] }),
    () => ({ what: 'run an unknown drill', client: 'drills', method: 'RunDrill', request: { name: pick(rand, ['', 'nosuch', 'd'.repeat(10_000)]), requested_by: 'x'.repeat(Math.floor(rand() * 100_000)) }, codes: [grpc.status.NOT_FOUND, grpc.status.INVALID_ARGUMENT] }),
  ];
  return pick(rand, cases)();
}

/** The final status of a server-streaming call. */
function serverStreamStatus(client: grpc.Client, request: Msg): Promise<{ code: grpc.status; details: string }> {
  return new Promise((resolve) => {
    const call = (client as any).RunDrill(request, { deadline: Date.now() + 10_000 }) as grpc.ClientReadableStream<Msg>;
    call.on('data', () => undefined);
    call.on('error', () => undefined);
    call.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, details: s.details }));
  });
}

// ---------------------------------------------------------------- clients

interface StreamResult { refusal?: Msg; code: grpc.status; details: string }

/** Opens Attach, sends the messages, and collects the first refusal and the final status. */
function attachAs(client: grpc.Client, messages: Msg[], timeoutMs = 15_000): Promise<StreamResult> {
  const call = (client as any).Attach() as grpc.ClientDuplexStream<Msg, Msg>;
  return collect(call, () => { for (const m of messages) call.write(m); }, timeoutMs);
}

function rawAttach(client: grpc.Client, bytes: Buffer): Promise<StreamResult> {
  const call = client.makeBidiStreamRequest('/metrocluster.v1.MetroMirror/Attach', (b: Buffer) => b, (b: Buffer) => Mirror.service.Attach.responseDeserialize(b) as Msg);
  return collect(call as unknown as grpc.ClientDuplexStream<Msg, Msg>, () => call.write(bytes), 15_000);
}

/** A stream that sends nothing: the server must refuse it when the hello time is up. */
function silentStream(client: grpc.Client): Promise<StreamResult> {
  const call = (client as any).Attach() as grpc.ClientDuplexStream<Msg, Msg>;
  return collect(call, () => undefined, 30_000);
}

function collect(call: grpc.ClientDuplexStream<Msg, Msg>, send: () => void, timeoutMs: number): Promise<StreamResult> {
  return new Promise((resolve) => {
    let refusal: Msg | undefined;
    const timer = setTimeout(() => { call.cancel(); }, timeoutMs);
    call.on('data', (m: Msg) => {
      if (m.kind === 'refusal' && refusal === undefined) {
        refusal = m.refusal;
        call.end();
      }
    });
    call.on('status', (s: grpc.StatusObject) => { clearTimeout(timer); resolve({ refusal, code: s.code, details: s.details }); });
    call.on('error', () => undefined);
    send();
  });
}

function unary(client: grpc.Client, method: string, request: Msg): Promise<{ err?: grpc.ServiceError; reply?: Msg }> {
  return new Promise((resolve) => {
    (client as any)[method](request, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, reply: Msg) => resolve(err ? { err } : { reply }));
  });
}

function rawUnary(client: grpc.Client, method: string, bytes: Buffer): Promise<{ code: grpc.status }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(method, (b: Buffer) => b, (b: Buffer) => b, bytes, { deadline: Date.now() + 10_000 },
      (err: grpc.ServiceError | null) => resolve({ code: err ? err.code : grpc.status.OK }));
  });
}

/** Writes bytes on a raw TCP connection and waits until the server closes it (or 3 s pass). */
function rawTcp(host: string, port: number, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (): void => { clearTimeout(timer); s.destroy(); resolve(); };
    const timer = setTimeout(done, 3000);
    s.on('connect', () => s.write(bytes));
    s.on('data', () => undefined);
    s.on('error', done);
    s.on('close', done);
  });
}

function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

// ---------------------------------------------------------------- the hostile primary

/** A MetroMirror server standing in for db's primary: each stream beta opens gets the next case. */
class HostilePrimary {
  readonly server = new grpc.Server(channelOptions);
  readonly firstHello: Promise<void>;
  private helloSeen!: () => void;
  private waiting: Array<(call: grpc.ServerDuplexStream<Msg, Msg>) => void> = [];
  private idle: Array<grpc.ServerDuplexStream<Msg, Msg>> = [];

  constructor() {
    this.firstHello = new Promise((resolve) => { this.helloSeen = resolve; });
    this.server.addService(Mirror.service, {
      Attach: (call: grpc.ServerDuplexStream<Msg, Msg>) => {
        call.on('error', () => undefined);
        call.once('data', () => {
          this.helloSeen();
          const next = this.waiting.shift();
          if (next) next(call);
          else this.idle.push(call);
        });
      },
    });
  }

  listen(address: string, port: number, security: GrpcSecurity): Promise<void> {
    return new Promise((resolve, reject) => this.server.bindAsync(`${address}:${port}`, serverCredentials(security), (err) => (err ? reject(err) : resolve())));
  }

  /** Waits for beta's next stream, sends the messages, and reports its refusal and whether it ended. */
  async serve(messages: Msg[]): Promise<{ refusal?: Msg; ended: boolean }> {
    const call = await new Promise<grpc.ServerDuplexStream<Msg, Msg>>((resolve) => {
      const ready = this.idle.shift();
      if (ready && !ready.cancelled) resolve(ready);
      else this.waiting.push(resolve);
    });
    return new Promise((resolve) => {
      let refusal: Msg | undefined;
      const finish = (ended: boolean): void => { clearTimeout(timer); resolve({ refusal, ended }); };
      const timer = setTimeout(() => finish(false), 15_000);
      call.on('data', (m: Msg) => { if (m.kind === 'refusal') refusal ??= m.refusal; });
      call.on('end', () => { call.end(); finish(true); });
      call.on('cancelled', () => finish(true));
      for (const m of messages) call.write(m);
    });
  }
}

// ---------------------------------------------------------------- state

/** SHA-256 of every volume file of both sites, and the witness's records. A record's per-site
 *  request sequence may grow (a refused request still fences that site's older ones: arbiter.ts);
 *  epochs, primaries, flags and settings may not change. */
async function fingerprints(c: TestCluster): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const witness = JSON.parse(await fs.readFile(path.join(c.dir, 'data', 'witness', 'witness.json'), 'utf8')) as { records: Record<string, Msg> };
  for (const [key, { seqs: _seqs, ...record }] of Object.entries(witness.records)) out[`witness ${key}`] = record;
  const files: string[] = [];
  for (const site of ['alpha', 'beta']) {
    const root = path.join(c.dir, 'data', site, 'volumes');
    for (const g of await fs.readdir(root)) for (const f of await fs.readdir(path.join(root, g))) if (f.endsWith('.vol')) files.push(path.join(root, g, f));
  }
  for (const f of files) out[path.relative(c.dir, f)] = createHash('sha256').update(await fs.readFile(f)).digest('hex');
  return out;
}

/** Both agents answer Status: their start-up writes are done before the fingerprints are taken. */
async function settle(...agents: grpc.Client[]): Promise<void> {
  for (const a of agents) {
    for (let i = 0; i < 50; i++) {
      if (!(await unary(a, 'Status', {})).err) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export type { ExecutionContext };
