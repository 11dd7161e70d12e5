// Mutual TLS and roles on the daemons' gRPC ports, against a cluster that `metroctl up` runs with
// its automatic PKI (no security block: secure by default). Clients here are built by hand from
// certificate files, as an intruder or a misconfigured peer would: a plaintext client, a client
// of another CA, an expired certificate, a daemon presenting the wrong certificate, and callers
// whose role does not allow the method. Plus: a world-readable key refused at start, the insecure
// mode warned about at start, and no secret or key material in any log line or status output.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import crypto from 'node:crypto';
import os from 'node:os';
import tls from 'node:tls';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startCluster, makeTopology, metroctlBin, repoRoot, securityFor, type TestCluster } from './harness/cluster.ts';
import { requireTools, run } from './harness/tools.ts';
import { channelOptions, serviceOf } from '../common/proto.ts';
import { channelFor } from '../common/grpc-client.ts';
import { createCa, issueCertificate } from '../common/tls/openssl.ts';
import type { Identity } from '../common/tls/identity.ts';
import { removeClusterDir } from './harness/secrets.ts';

const host1 = 'iqn.2026-11.org.example:host1';
const chapSecret = 'chap-secret-never-logged-5150';
const access = `
access:
  initiators: [ "${host1}" ]
  chap: { user: host1, secretFile: ./secrets/host1 }`;

let cluster: TestCluster;
let pki: string;
let scratch: string;

test.before(async () => {
  cluster = await startCluster({ access, files: { 'secrets/host1': `${chapSecret}\n` } });
  pki = path.join(cluster.dir, 'data', 'pki');
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'metro-tls-'));
});
test.after.always(async () => {
  await cluster?.stop();
  if (scratch) await fs.rm(scratch, { recursive: true, force: true });
});

type Files = { cert?: string; key?: string };
const agentEndpoint = (site: 1 | 2): string => `${cluster.host(site)}:${7400 + site}`;
const witnessEndpoint = (): string => `${cluster.host(3)}:7400`;

/** A client built from files, checking only the chain (not the name) unless told what to expect. */
function clientFrom(proto: string, service: string, target: string, files: Files | 'plaintext', ca = path.join(pki, 'ca.crt')): grpc.Client {
  const Ctor = serviceOf(proto, service);
  const creds = files === 'plaintext'
    ? grpc.credentials.createInsecure()
    : grpc.credentials.createSsl(
      fsSync.readFileSync(ca),
      files.key ? fsSync.readFileSync(files.key) : null,
      files.cert ? fsSync.readFileSync(files.cert) : null,
      { checkServerIdentity: () => undefined },
    );
  return new Ctor(target, creds, { ...channelOptions, 'grpc.ssl_target_name_override': 'metrocluster.test' });
}

function unary(client: grpc.Client, method: string, request: object = {}): Promise<{ err: grpc.ServiceError | null; value?: Record<string, any> }> {
  return new Promise((resolve) => {
    (client as any)[method](request, { deadline: Date.now() + 15_000 }, (err: grpc.ServiceError | null, value: Record<string, any>) => {
      client.close();
      resolve({ err, value });
    });
  });
}

/** A server-streaming call; resolves with its final status. */
function streamStatus(client: grpc.Client, method: string, request: object): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => {
    const s = (client as any)[method](request, { deadline: Date.now() + 15_000 }) as grpc.ClientReadableStream<object>;
    s.on('data', () => undefined);
    s.on('error', (e: grpc.ServiceError) => { client.close(); resolve({ code: e.code, details: e.details }); });
    s.on('status', (st: grpc.StatusObject) => { if (st.code === grpc.status.OK) { client.close(); resolve({ code: st.code, details: st.details }); } });
  });
}

/** Opens MetroMirror.Attach with a hello and resolves with how the stream ended. */
function attach(client: grpc.Client, group: string): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => {
    const s = (client as any).Attach() as grpc.ClientDuplexStream<object, object>;
    s.on('data', () => undefined);
    s.on('error', (e: grpc.ServiceError) => { client.close(); resolve({ code: e.code, details: e.details }); });
    s.on('status', (st: grpc.StatusObject) => { if (st.code === grpc.status.OK) { client.close(); resolve({ code: st.code, details: st.details }); } });
    s.write({ hello: { cluster: cluster.name, group, site: 'beta', epoch: '1', applied_seq: '0', durable_seq: '0' } });
  });
}

const pair = (base: string): Files => ({ cert: path.join(pki, `${base}.crt`), key: path.join(pki, `${base}.key`) });

test.serial('the cluster runs with mutual TLS by default: metroctl status uses the generated admin certificate; keys are private', async (t) => {
  // status gives each daemon 2 s to answer; on a loaded machine the first calls may miss that.
  let status = await run(process.execPath, [metroctlBin, 'status', '-f', cluster.file, '-o', 'json'], { timeoutMs: 60_000 });
  for (let i = 0; i < 5 && status.code !== 0; i++) status = await run(process.execPath, [metroctlBin, 'status', '-f', cluster.file, '-o', 'json'], { timeoutMs: 60_000 });
  t.is(status.code, 0, status.stdout + status.stderr);
  const report = JSON.parse(status.stdout) as { witness: { up: boolean }; sites: Array<{ up: boolean }> };
  t.true(report.witness.up && report.sites.every((s) => s.up), status.stdout);
  t.is((await fs.stat(pki)).mode & 0o777, 0o700);
  for (const f of await fs.readdir(pki)) {
    if (f.endsWith('.key')) t.is((await fs.stat(path.join(pki, f))).mode & 0o777, 0o600, f);
  }
  t.deepEqual((await fs.readdir(pki)).filter((f) => f.endsWith('.crt')).sort(),
    ['admin-local.crt', 'agent-alpha.crt', 'agent-beta.crt', 'ca.crt', 'witness.crt']);
});

test.serial('a plaintext client is refused by the agents and the witness', async (t) => {
  for (const [proto, service, target] of [['agent.proto', 'MetroAgent', agentEndpoint(1)], ['witness.proto', 'MetroWitness', witnessEndpoint()]] as const) {
    const r = await unary(clientFrom(proto, service, target, 'plaintext'), 'Health');
    t.is(r.err?.code, grpc.status.UNAVAILABLE, `${target}: ${r.err?.details}`);
    t.is(r.value, undefined);
  }
  // The same server answers a client with a certificate of the cluster.
  const ok = await unary(clientFrom('agent.proto', 'MetroAgent', agentEndpoint(1), pair('admin-local')), 'Health');
  t.is(ok.err, null);
  t.is(ok.value?.site, 'alpha');
});

test.serial('a TLS client without a certificate, or with one of another CA, is refused in the handshake', async (t) => {
  const none = await unary(clientFrom('agent.proto', 'MetroAgent', agentEndpoint(1), {}), 'Health');
  t.is(none.err?.code, grpc.status.UNAVAILABLE, none.err?.details);

  // Another CA issues a perfectly named admin certificate for this cluster.
  const other = path.join(scratch, 'other-ca');
  await fs.mkdir(other, { mode: 0o700 });
  await createCa({ cluster: cluster.name, certFile: path.join(other, 'ca.crt'), keyFile: path.join(other, 'ca.key'), days: 30 });
  const files = { cert: path.join(other, 'admin.crt'), key: path.join(other, 'admin.key') };
  await issueCertificate({
    caCert: path.join(other, 'ca.crt'), caKey: path.join(other, 'ca.key'), identity: { kind: 'admin', cluster: cluster.name, name: 'mallory' },
    hosts: [], notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000), certFile: files.cert, keyFile: files.key,
  });
  for (const target of [agentEndpoint(1), agentEndpoint(2)]) {
    const r = await unary(clientFrom('agent.proto', 'MetroAgent', target, files), 'Status');
    t.is(r.err?.code, grpc.status.UNAVAILABLE, `${target}: ${r.err?.details}`);
  }
  const w = await unary(clientFrom('witness.proto', 'MetroWitness', witnessEndpoint(), files), 'Health');
  t.is(w.err?.code, grpc.status.UNAVAILABLE);
  // metroctl refuses such a pair before dialling: it is not of the cluster CA.
  const status = await run(process.execPath, [metroctlBin, '--cert', files.cert, '--key', files.key, 'status', '-f', cluster.file], { timeoutMs: 60_000 });
  t.is(status.code, 1);
  t.regex(status.stderr, /admin\.crt is not issued by the cluster CA/);
});

test.serial('an expired certificate of the cluster CA is refused in the handshake', async (t) => {
  const files = { cert: path.join(scratch, 'expired.crt'), key: path.join(scratch, 'expired.key') };
  const day = 86_400_000;
  await issueCertificate({
    caCert: path.join(pki, 'ca.crt'), caKey: path.join(pki, 'ca.key'), identity: { kind: 'admin', cluster: cluster.name, name: 'former' },
    hosts: [], notBefore: new Date(Date.now() - 3 * day), notAfter: new Date(Date.now() - day), certFile: files.cert, keyFile: files.key,
  });
  const r = await unary(clientFrom('agent.proto', 'MetroAgent', agentEndpoint(1), files), 'Status');
  t.is(r.err?.code, grpc.status.UNAVAILABLE, r.err?.details);
  const status = await run(process.execPath, [metroctlBin, '--cert', files.cert, '--key', files.key, 'status', '-f', cluster.file], { timeoutMs: 60_000 });
  t.is(status.code, 1);
  t.regex(status.stderr, /expired\.crt expired on/);
});

test.serial('a client refuses a server whose certificate names another daemon', async (t) => {
  const security = await securityFor(cluster.file, 'operator');
  const expect: Identity = { kind: 'agent', cluster: cluster.name, site: 'beta' };
  // Agent alpha's address, but the client wants agent beta: alpha's certificate does not do.
  const c = channelFor(cluster.host(1), 7401, { security, expect });
  const client = new (serviceOf('agent.proto', 'MetroAgent'))(c.target, c.credentials, c.options);
  const r = await unary(client, 'Health');
  t.is(r.err?.code, grpc.status.UNAVAILABLE);
  t.regex(r.err?.details ?? '', /presented a certificate for agent alpha of cluster test, expected agent beta/);
  // The witness's certificate is refused where an agent was dialled, too.
  const w = channelFor(cluster.host(3), 7400, { security, expect: { kind: 'agent', cluster: cluster.name, site: 'alpha' } });
  const wr = await unary(new (serviceOf('agent.proto', 'MetroAgent'))(w.target, w.credentials, w.options), 'Health');
  t.regex(wr.err?.details ?? '', /presented a certificate for witness of cluster test, expected agent alpha/);
});

test.serial('roles: a viewer reads status but may not run a drill, arbitrate or register; the peer agent may not run an operator command; an agent may not stream a mirror from itself; refusals are logged', async (t) => {
  const issue = await run(process.execPath, [metroctlBin, 'certs', 'issue', '-f', cluster.file, '--viewer', 'auditor'], { timeoutMs: 60_000 });
  t.is(issue.code, 0, issue.stderr);
  const viewer = pair('viewer-auditor');

  const st = await unary(clientFrom('agent.proto', 'MetroAgent', agentEndpoint(1), viewer), 'Status');
  t.is(st.err, null);
  t.is(st.value?.site, 'alpha');
  const cli = await run(process.execPath, [metroctlBin, '--cert', viewer.cert!, '--key', viewer.key!, 'status', '-f', cluster.file, '-o', 'json'], { timeoutMs: 60_000 });
  t.is(cli.code, 0, cli.stderr);

  const reg = await unary(clientFrom('witness.proto', 'MetroWitness', witnessEndpoint(), viewer), 'RegisterGroup',
    { key: { cluster: cluster.name, group: 'db' }, sites: ['alpha', 'beta'], preferred_site: 'beta', lease_ms: 1000, max_data_loss_ms: 0 });
  t.is(reg.err?.code, grpc.status.PERMISSION_DENIED);
  t.regex(reg.err?.details ?? '', /viewer auditor may not call this; it needs an agent certificate .* or an admin certificate/);

  const arb = await unary(clientFrom('witness.proto', 'MetroWitness', witnessEndpoint(), pair('admin-local')), 'Arbitrate',
    { key: { cluster: cluster.name, group: 'db' }, site: 'alpha', epoch: '1', seq: '1', sent_at_ms: '1', incarnation: '1', lease: {} });
  t.is(arb.err?.code, grpc.status.PERMISSION_DENIED, 'arbitration is for agents only, not admins');
  const arbBatch = await unary(clientFrom('witness.proto', 'MetroWitness', witnessEndpoint(), pair('admin-local')), 'ArbitrateBatch', { requests: [] });
  t.is(arbBatch.err?.code, grpc.status.PERMISSION_DENIED, 'batched arbitration is for agents only, not admins');

  // Operator commands need an admin: a drill run with the peer agent's or a viewer's certificate is
  // refused before the drill is even looked up; the viewer may list the drills.
  for (const who of ['agent-beta', 'viewer-auditor']) {
    const run = await streamStatus(clientFrom('drills.proto', 'MetroDrills', witnessEndpoint(), pair(who)), 'RunDrill', { name: 'no-such-drill', requested_by: 'tls test' });
    t.is(run.code, grpc.status.PERMISSION_DENIED, who);
    t.regex(run.details, /may not call this; it needs an admin certificate/, who);
  }
  const admin = await streamStatus(clientFrom('drills.proto', 'MetroDrills', witnessEndpoint(), pair('admin-local')), 'RunDrill', { name: 'no-such-drill', requested_by: 'tls test' });
  t.is(admin.code, grpc.status.NOT_FOUND, 'an admin gets past the role check to the drill lookup');
  const list = await unary(clientFrom('drills.proto', 'MetroDrills', witnessEndpoint(), viewer), 'ListDrills');
  t.is(list.err, null);

  // Switchover and failover at agent alpha: the peer agent's certificate and a viewer's are refused
  // (a refusal that failed would move or force a group: the assertions below would show it).
  for (const [who, method, request] of [
    ['agent-beta', 'Switchover', { group: 'db' }], ['viewer-auditor', 'Failover', { group: 'vm', force: true }],
    ['agent-beta', 'Failover', { group: 'vm', force: true }], ['viewer-auditor', 'Switchover', { group: 'db' }],
  ] as const) {
    const r = await unary(clientFrom('agent.proto', 'MetroAgent', agentEndpoint(1), pair(who)), method, request);
    t.is(r.err?.code, grpc.status.PERMISSION_DENIED, `${who} ${method}`);
    t.regex(r.err?.details ?? '', /may not call this; it needs an admin certificate/);
  }
  const roles = await unary(clientFrom('agent.proto', 'MetroAgent', agentEndpoint(1), viewer), 'Status');
  t.is(roles.err, null);
  t.is(roles.value?.groups.find((g: { name: string }) => g.name === 'db')?.role, 'primary', 'db stays at alpha');

  // Applying a topology at agent alpha is an operator command: beta's agent certificate and a
  // viewer's are refused; both may read the applied topology.
  for (const who of ['agent-beta', 'viewer-auditor']) {
    const apply = await unary(clientFrom('agent.proto', 'MetroAgent', agentEndpoint(1), pair(who)), 'ApplyTopology', { cluster: cluster.name, version: '99', text: '', file: '', force: true });
    t.is(apply.err?.code, grpc.status.PERMISSION_DENIED, who);
    t.regex(apply.err?.details ?? '', /(agent beta|viewer auditor) may not call this; it needs an admin certificate/);
    const get = await unary(clientFrom('agent.proto', 'MetroAgent', agentEndpoint(1), pair(who)), 'GetTopology', {});
    t.is(get.err, null, who);
  }

  // Agent alpha speaks for alpha only.
  const forBeta = await unary(clientFrom('witness.proto', 'MetroWitness', witnessEndpoint(), pair('agent-alpha')), 'Arbitrate',
    { key: { cluster: cluster.name, group: 'db' }, site: 'beta', epoch: '1', seq: '1', sent_at_ms: '1', incarnation: '1', lease: {} });
  t.is(forBeta.err?.code, grpc.status.PERMISSION_DENIED);
  t.regex(forBeta.err?.details ?? '', /agent alpha may not arbitrate for site beta/);
  const batch = (site: string) => ({ key: { cluster: cluster.name, group: 'db' }, site, epoch: '1', seq: '1', sent_at_ms: '1', incarnation: '1', lease: {} });
  const batchForBeta = await unary(clientFrom('witness.proto', 'MetroWitness', witnessEndpoint(), pair('agent-alpha')), 'ArbitrateBatch',
    { requests: [batch('alpha'), batch('beta')] });
  t.is(batchForBeta.err?.code, grpc.status.PERMISSION_DENIED, 'one request for another site refuses the whole batch');
  t.regex(batchForBeta.err?.details ?? '', /agent alpha may not arbitrate for site beta/);

  // Mirror streams into alpha come from beta's agent only: neither an admin nor alpha itself.
  for (const who of ['admin-local', 'agent-alpha', 'viewer-auditor']) {
    const s = await attach(clientFrom('mirror.proto', 'MetroMirror', agentEndpoint(1), pair(who)), 'db');
    t.is(s.code, grpc.status.PERMISSION_DENIED, who);
    t.regex(s.details, /needs the peer site's agent certificate/, who);
  }

  const alphaLog = await fs.readFile(path.join(cluster.dir, 'data', 'alpha', 'logs', 'agent.log'), 'utf8');
  const refused = alphaLog.split('\n').filter((l) => l.includes('"call refused"')).map((l) => JSON.parse(l));
  t.true(refused.some((r) => r.method === '/metrocluster.v1.MetroMirror/Attach' && r.caller === `metrocluster://${cluster.name}/admin/local`), JSON.stringify(refused));
  t.true(refused.some((r) => r.caller === `metrocluster://${cluster.name}/agent/alpha` && /may not call this/.test(r.reason)));
  const witnessLog = await fs.readFile(path.join(cluster.dir, 'data', 'witness', 'logs', 'witness.log'), 'utf8');
  t.regex(witnessLog, /"call refused".*viewer\/auditor|viewer\/auditor.*"call refused"/);
});

test.serial('secrets never reach a log line or status output: CHAP secret and private keys', async (t) => {
  if (!requireTools(t, ['iscsi-inq'])) return;
  // Logins with the right and a wrong secret, so the CHAP path logs what it logs.
  const base = `${cluster.portal(1)}/${cluster.iqn('db')}/0`;
  const right = await run('iscsi-inq', ['-i', host1, `iscsi://host1%${chapSecret}@${base}`], { timeoutMs: 30_000 });
  t.is(right.code, 0, right.stderr);
  const wrong = await run('iscsi-inq', ['-i', host1, `iscsi://host1%not-the-secret-0000@${base}`], { timeoutMs: 30_000 });
  t.not(wrong.code, 0);
  const status = await run(process.execPath, [metroctlBin, 'status', '-f', cluster.file, '-o', 'json'], { timeoutMs: 60_000 });

  // Every private key's body, and each of its base64 lines on its own.
  const keyMaterial: string[] = [];
  for (const dir of [pki, scratch]) {
    for (const f of (await fs.readdir(dir, { recursive: true })).filter((n) => String(n).endsWith('.key'))) {
      const body = (await fs.readFile(path.join(dir, String(f)), 'utf8')).split('\n').filter((l) => l && !l.startsWith('-----'));
      keyMaterial.push(body.join(''), ...body.filter((l) => l.length >= 16));
    }
  }
  t.true(keyMaterial.length >= 10);
  const logs: Array<[string, string]> = [['metroctl up output', cluster.up.output()], ['status', status.stdout + status.stderr]];
  for (const daemon of ['alpha', 'beta', 'witness']) {
    const dir = path.join(cluster.dir, 'data', daemon, 'logs');
    for (const f of await fs.readdir(dir)) logs.push([`${daemon}/${f}`, await fs.readFile(path.join(dir, f), 'utf8')]);
  }
  t.true(logs.reduce((n, [, text]) => n + text.split('\n').length, 0) > 20, 'the logs have lines to look at');
  for (const [name, text] of logs) {
    t.false(text.includes(chapSecret), `${name} holds the CHAP secret`);
    for (const k of keyMaterial) t.false(text.includes(k), `${name} holds private key material`);
  }
});

test('a private key readable by group or others is refused at start with the reason', async (t) => {
  const { dir, file } = await makeTopology();
  try {
    const init = await run(process.execPath, [metroctlBin, 'certs', 'init', '-f', file], { timeoutMs: 60_000 });
    t.is(init.code, 0, init.stderr);
    const key = path.join(dir, 'data', 'pki', 'agent-alpha.key');
    await fs.chmod(key, 0o644);
    const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'metro-agent.cjs'), '-f', file, '--site', 'alpha'], { encoding: 'utf8', timeout: 60_000 });
    t.is(r.status, 1, r.stderr);
    t.regex(r.stderr, /private key: .*agent-alpha\.key is accessible by group or others \(mode 644\); run chmod 600/);
    const body = (await fs.readFile(key, 'utf8')).split('\n')[1];
    t.false(r.stderr.includes(body), 'the key itself is never printed');
    // metroctl checks its own key the same way.
    await fs.chmod(path.join(dir, 'data', 'pki', 'admin-local.key'), 0o640);
    const st = await run(process.execPath, [metroctlBin, 'status', '-f', file], { timeoutMs: 60_000 });
    t.is(st.code, 1);
    t.regex(st.stderr, /admin-local\.key is accessible by group or others \(mode 640\)/);
  } finally {
    await removeClusterDir(dir);
  }
});

test('security.insecure: plaintext, with a warning at every start', async (t) => {
  const { dir, file, host } = await makeTopology({ extra: 'security: { insecure: true }' });
  const startWitness = (): Promise<{ kill(): Promise<void> }> => new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'metro-witness.js'), '-f', file], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
    child.on('message', () => resolve({ kill: () => new Promise((r) => { child.once('exit', () => r()); child.kill('SIGTERM'); }) }));
    child.once('exit', (code) => reject(new Error(`witness exited with ${code}`)));
  });
  try {
    for (let i = 0; i < 2; i++) {
      const w = await startWitness();
      const r = await unary(clientFrom('witness.proto', 'MetroWitness', `${host(3)}:7400`, 'plaintext'), 'Health');
      await w.kill();
      t.is(r.err, null);
      t.is(r.value?.role, 'witness');
    }
    const log = await fs.readFile(path.join(dir, 'data', 'witness', 'logs', 'witness.log'), 'utf8');
    t.is(log.split('\n').filter((l) => l.includes('INSECURE: security.insecure is true')).length, 2, 'warned at both starts');
    t.false(fsSync.existsSync(path.join(dir, 'data', 'pki')), 'no PKI is made for an insecure topology');
  } finally {
    await removeClusterDir(dir);
  }
});

/** The serial of the certificate a daemon presents to a new connection. */
function servedSerial(hostPort: string, pkiDir: string): Promise<string> {
  const [host, port] = hostPort.split(':');
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host, port: Number(port), servername: 'metrocluster.test', ALPNProtocols: ['h2'],
      ca: fsSync.readFileSync(path.join(pkiDir, 'ca.crt')),
      cert: fsSync.readFileSync(path.join(pkiDir, 'admin-local.crt')), key: fsSync.readFileSync(path.join(pkiDir, 'admin-local.key')),
      checkServerIdentity: () => undefined,
    }, () => { resolve(s.getPeerCertificate().serialNumber); s.destroy(); });
    s.on('error', reject);
  });
}

test('certs rotate, then SIGHUP: the witness presents the new certificate without a restart', async (t) => {
  const { dir, file, host } = await makeTopology();
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'metro-witness.js'), '-f', file], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.on('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`witness exited with ${code}`)));
    });
    const pkiDir = path.join(dir, 'data', 'pki');
    const before = await servedSerial(`${host(3)}:7400`, pkiDir);
    const rotate = await run(process.execPath, [metroctlBin, 'certs', 'rotate', '-f', file, '--witness'], { timeoutMs: 60_000 });
    t.is(rotate.code, 0, rotate.stderr);
    const fresh = new crypto.X509Certificate(await fs.readFile(path.join(pkiDir, 'witness.crt'))).serialNumber;
    t.not(fresh, before);
    t.is(await servedSerial(`${host(3)}:7400`, pkiDir), before, 'the old pair until told');
    const log = path.join(dir, 'data', 'witness', 'logs', 'witness.log');
    child.kill('SIGHUP');
    for (let i = 0; i < 100 && !(await fs.readFile(log, 'utf8')).includes('certificates reloaded'); i++) await new Promise((r) => setTimeout(r, 100));
    t.is(await servedSerial(`${host(3)}:7400`, pkiDir), fresh);
    t.is(child.exitCode, null, 'still running');
    // A client of the cluster still gets answers over the new pair.
    const r = await unary(clientFrom('witness.proto', 'MetroWitness', `${host(3)}:7400`, { cert: path.join(pkiDir, 'agent-alpha.crt'), key: path.join(pkiDir, 'agent-alpha.key') }, path.join(pkiDir, 'ca.crt')), 'Health');
    t.is(r.err, null);
  } finally {
    child.kill('SIGKILL');
    await removeClusterDir(dir);
  }
});
