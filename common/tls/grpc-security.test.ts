// What a daemon or metroctl refuses at start about its own certificate, each with the sentence the
// admin reads: a pair of another holder, a key of another certificate, an expired certificate, a
// certificate of another CA, a key readable by others. Certificates made by the real openssl tool
// in a temporary folder; the topology names them in security.tls.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseTopology, type Topology } from '../topology/index.ts';
import { DaemonError } from '../daemon.ts';
import { loadGrpcSecurity } from './grpc-security.ts';
import { createCa, issueCertificate } from './openssl.ts';
import { ensurePkiAt } from './pki.ts';
import type { Identity } from './identity.ts';
import { demoTopologyHead } from '../topology/test-support.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'metro-sec-'));
test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }));

function topology(tls: string): Topology {
  const text = `${demoTopologyHead}groups: [ { name: db, preferredSite: alpha, volumes: [ { name: data, size: 1MiB } ] } ]
${tls}
`;
  const r = parseTopology(text, path.join(dir, 'topology.yaml'));
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.topology;
}

const pki = path.join(dir, 'pki');
const daemons = `security:
  tls:
    ca: pki/ca.crt
    daemons:
      alpha: { cert: pki/agent-alpha.crt, key: pki/agent-alpha.key }
      beta: { cert: pki/agent-alpha.crt, key: pki/agent-beta.key }
      witness: { cert: pki/witness.crt, key: pki/witness.key }
    metroctl: { cert: pki/agent-beta.crt, key: pki/agent-beta.key }`;
const alpha: Identity = { kind: 'agent', cluster: 'demo', site: 'alpha' };
const beta: Identity = { kind: 'agent', cluster: 'demo', site: 'beta' };

test.before(async () => {
  fs.mkdirSync(pki, { mode: 0o700 });
  await ensurePkiAt(topology(''), pki);
});

function refusal(t: import('ava').ExecutionContext, work: () => unknown): string {
  const err = t.throws(work, { instanceOf: DaemonError });
  return err?.message ?? '';
}

test.serial('a good pair loads; it names its holder and carries no warning', (t) => {
  const sec = loadGrpcSecurity(topology(daemons), alpha);
  t.is(sec.mode, 'tls');
  t.deepEqual(sec.self, alpha);
  t.deepEqual(sec.warnings, []);
});

test.serial("a daemon configured with another holder's certificate refuses to start", (t) => {
  const m = refusal(t, () => loadGrpcSecurity(topology(daemons), beta));
  t.regex(m, /agent-alpha\.crt is for agent alpha of cluster demo, expected agent beta of cluster demo/);
});

test.serial('metroctl refuses a daemon certificate: it needs an admin or a viewer', (t) => {
  const m = refusal(t, () => loadGrpcSecurity(topology(daemons), 'operator'));
  t.regex(m, /agent-beta\.crt is for agent beta of cluster demo, expected an admin or viewer of cluster demo/);
});

test.serial('a key that does not belong to the certificate is refused', (t) => {
  const mixed = daemons.replace('alpha: { cert: pki/agent-alpha.crt, key: pki/agent-alpha.key }', 'alpha: { cert: pki/agent-alpha.crt, key: pki/witness.key }');
  t.regex(refusal(t, () => loadGrpcSecurity(topology(mixed), alpha)), /private key .*witness\.key does not belong to certificate .*agent-alpha\.crt/);
});

test.serial('an expired own certificate, and one that ends soon, at start', async (t) => {
  const day = 86_400_000;
  const issue = (name: string, from: number, until: number) => issueCertificate({
    caCert: path.join(pki, 'ca.crt'), caKey: path.join(pki, 'ca.key'), identity: alpha, hosts: ['127.0.1.1'],
    notBefore: new Date(Date.now() + from), notAfter: new Date(Date.now() + until),
    certFile: path.join(pki, `${name}.crt`), keyFile: path.join(pki, `${name}.key`),
  });
  await issue('old', -10 * day, -day);
  await issue('soon', -day, 3 * day);
  const at = (name: string) => topology(daemons.replace('alpha: { cert: pki/agent-alpha.crt, key: pki/agent-alpha.key }', `alpha: { cert: pki/${name}.crt, key: pki/${name}.key }`));
  t.regex(refusal(t, () => loadGrpcSecurity(at('old'), alpha)), /old\.crt expired on .*; issue a new one with metroctl certs rotate/);
  const soon = loadGrpcSecurity(at('soon'), alpha);
  t.is(soon.warnings.length, 1);
  t.regex(soon.warnings[0], /soon\.crt expires in [23] day\(s\)/);
});

test.serial('a certificate of another CA is refused', async (t) => {
  const other = path.join(dir, 'other');
  fs.mkdirSync(other, { mode: 0o700 });
  await createCa({ cluster: 'demo', certFile: path.join(other, 'ca.crt'), keyFile: path.join(other, 'ca.key'), days: 10 });
  t.regex(refusal(t, () => loadGrpcSecurity(topology(daemons.replace('ca: pki/ca.crt', 'ca: other/ca.crt')), alpha)), /agent-alpha\.crt is not issued by the cluster CA .*other\/ca\.crt/);
});

test.serial('a key readable by group is refused, naming the file and the fix, never the key', (t) => {
  const key = path.join(pki, 'agent-alpha.key');
  fs.chmodSync(key, 0o640);
  try {
    const m = refusal(t, () => loadGrpcSecurity(topology(daemons), alpha));
    t.regex(m, /private key: .*agent-alpha\.key is accessible by group or others \(mode 640\); run chmod 600/);
    t.false(m.includes(fs.readFileSync(key, 'utf8').split('\n')[1]));
  } finally {
    fs.chmodSync(key, 0o600);
  }
});

test.serial('insecure: plaintext with the warning, no files read', (t) => {
  const sec = loadGrpcSecurity(topology('security: { insecure: true }'), alpha);
  t.is(sec.mode, 'insecure');
  t.regex(sec.warnings[0], /^INSECURE: /);
});
