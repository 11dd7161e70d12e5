// Topology loader tests: every bad case checks the sentence the admin reads, its field path and its
// line:column; the examples validate; sizes; did-you-mean; relative paths; the CLI's exit codes.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatIssue, loadTopology, parseSize, parseTopology, type Topology, type TopologyIssue } from './index.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const file = '/etc/mc/topo.yaml';

const base = `apiVersion: metrocluster/v1
kind: MetroCluster
metadata: { name: demo }
sites:
  - name: alpha
    fireZone: building-a
    agent: { address: 127.0.1.1, port: 7401 }
    portal: { address: 127.0.1.1, port: 3260 }
    dataDir: ./data/alpha
  - name: beta
    fireZone: building-b
    agent: { address: 127.0.2.1, port: 7402 }
    portal: { address: 127.0.2.1, port: 3260 }
    dataDir: ./data/beta
witness: { fireZone: building-c, address: 127.0.3.1, port: 7400, dataDir: ./data/witness }
groups:
  - name: db
    preferredSite: alpha
    volumes:
      - { name: data, size: 1GiB }
      - { name: log, size: 256MiB }
  - name: vm
    preferredSite: beta
    volumes: [ { name: images, size: 2GiB } ]
drills:
  - { name: weekly-db, group: db, schedule: "0 3 * * 0" }
`;

/** Replaces exactly one occurrence (a test whose edit misses must fail, not pass vacuously). */
function edit(text: string, from: string, to: string): string {
  const at = text.indexOf(from);
  if (at < 0 || text.indexOf(from, at + 1) >= 0) throw new Error(`edit: "${from}" is not unique in the text`);
  return text.slice(0, at) + to + text.slice(at + from.length);
}

/** 1-based line and column of the nth occurrence of a snippet. */
function positionOf(text: string, snippet: string, nth = 0): { line: number; column: number } {
  let at = -1;
  for (let i = 0; i <= nth; i++) {
    at = text.indexOf(snippet, at + 1);
    if (at < 0) throw new Error(`positionOf: "${snippet}" #${nth} not found`);
  }
  const before = text.slice(0, at).split('\n');
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

function errorsOf(text: string): TopologyIssue[] {
  const r = parseTopology(text, file);
  if (r.ok) throw new Error('expected the topology to be refused');
  return r.errors;
}

function valid(text: string): { topology: Topology; warnings: TopologyIssue[] } {
  const r = parseTopology(text, file);
  if (!r.ok) throw new Error(`expected a valid topology, got:\n${r.errors.map(formatIssue).join('\n')}`);
  return r;
}

interface BadCase {
  title: string;
  text: string;
  path: string;
  message: string;
  /** snippet of the text where the issue must point, and which occurrence */
  at: string;
  nth?: number;
  /** exactly this many errors (default 1): one mistake, one message */
  count?: number;
}

const cases: BadCase[] = [
  {
    title: 'wrong apiVersion',
    text: edit(base, 'metrocluster/v1', 'metrocluster/v2'),
    path: 'apiVersion',
    message: 'found "metrocluster/v2", expected "metrocluster/v1"',
    at: 'metrocluster/v2',
  },
  {
    title: 'wrong kind',
    text: edit(base, 'kind: MetroCluster', 'kind: Metrocluster'),
    path: 'kind',
    message: 'found "Metrocluster", expected "MetroCluster"',
    at: 'Metrocluster',
  },
  {
    title: 'missing apiVersion',
    text: edit(base, 'apiVersion: metrocluster/v1\n', ''),
    path: 'apiVersion',
    message: 'found no "apiVersion" key in the top level, expected "metrocluster/v1" (required)',
    at: 'kind',
  },
  {
    title: 'port out of range',
    text: edit(base, 'address: 127.0.2.1, port: 3260', 'address: 127.0.2.1, port: 70000'),
    path: 'sites[1].portal.port',
    message: 'found 70000, expected an integer from 1 to 65535',
    at: '70000',
  },
  {
    title: 'port zero',
    text: edit(base, 'port: 7400', 'port: 0'),
    path: 'witness.port',
    message: 'found 0, expected an integer from 1 to 65535',
    at: '0, dataDir',
  },
  {
    title: 'quoted port',
    text: edit(base, 'port: 7401', 'port: "7401"'),
    path: 'sites[0].agent.port',
    message: 'found "7401", expected an integer from 1 to 65535; write the number without quotes',
    at: '"7401"',
  },
  {
    title: 'misspelt key: did-you-mean, and no second message about the missing key',
    text: edit(base, 'fireZone: building-b', 'firezone: building-b'),
    path: 'sites[1].firezone',
    message: 'found unknown key "firezone", expected one of the keys name, fireZone, agent, portal, dataDir, routes; did you mean "fireZone"?',
    at: 'firezone',
  },
  {
    title: 'misspelt top-level key',
    text: edit(base, 'drills:', 'drils:'),
    path: 'drils',
    message: 'found unknown key "drils", expected one of the keys apiVersion, kind, metadata, sites, witness, replication, failover, groups, access, drills, security; did you mean "drills"?',
    at: 'drils',
  },
  {
    title: 'missing required field',
    text: edit(base, '    dataDir: ./data/beta\n', ''),
    path: 'sites[1].dataDir',
    message: 'found no "dataDir" key in sites[1], expected a file or directory path (relative paths are relative to the topology file) (required)',
    at: 'name: beta',
  },
  {
    title: 'sites given as a mapping',
    text: base.replace(/sites:\n[\s\S]*?witness:/, 'sites: { alpha: 1 }\nwitness:'),
    path: 'sites',
    message: 'found a mapping, expected a list of exactly 2 sites',
    at: '{ alpha: 1 }',
  },
  {
    title: 'cluster name not usable in an IQN',
    text: edit(base, 'name: demo', 'name: Demo_Cluster'),
    path: 'metadata.name',
    message:
      "found \"Demo_Cluster\", expected a name usable in an iSCSI qualified name: lowercase letters a-z, digits 0-9, '-' and '.', starting and ending with a letter or digit, at most 63 characters; for example \"demo-cluster\"",
    at: 'Demo_Cluster',
  },
  {
    title: 'group name not usable in an IQN',
    text: edit(base, 'name: vm', 'name: vm pool'),
    path: 'groups[1].name',
    message: 'found "vm pool", expected a name usable in an iSCSI qualified name',
    at: 'vm pool',
  },
  {
    title: 'volume name ending with a dash',
    text: edit(base, 'name: log,', 'name: log-,'),
    path: 'groups[0].volumes[1].name',
    message: 'found "log-", expected a name usable in an iSCSI qualified name',
    at: 'log-',
  },
  {
    title: 'duplicate site name',
    text: edit(base, 'name: beta', 'name: alpha'),
    path: 'sites[1].name',
    message: 'found "alpha" again, expected a unique site name (sites[0].name is already "alpha")',
    at: 'alpha\n    fireZone: building-b',
    // the group preferring "beta" now names no site: reported too
    count: 2,
  },
  {
    title: 'duplicate group name',
    text: edit(base, 'name: vm', 'name: db'),
    path: 'groups[1].name',
    message: 'found "db" again, expected a unique group name (groups[0].name is already "db")',
    at: 'db\n    preferredSite: beta',
  },
  {
    title: 'duplicate volume name within a group',
    text: edit(base, 'name: log,', 'name: data,'),
    path: 'groups[0].volumes[1].name',
    message: 'found "data" again, expected a unique volume name within group "db" (groups[0].volumes[0].name is already "data")',
    at: 'data, size: 256MiB',
  },
  {
    title: 'duplicate drill name',
    text: base + '  - { name: weekly-db, group: vm, schedule: "0 4 * * 0" }\n',
    path: 'drills[1].name',
    message: 'found "weekly-db" again, expected a unique drill name (drills[0].name is already "weekly-db")',
    at: 'weekly-db',
    nth: 1,
  },
  {
    title: 'clashing agent endpoints',
    text: edit(base, 'agent: { address: 127.0.2.1, port: 7402 }', 'agent: { address: 127.0.1.1, port: 7401 }'),
    path: 'sites[1].agent',
    message:
      'found 127.0.1.1:7401, which sites[0].agent (site "alpha" agent) already uses, expected a distinct address:port for every agent, portal and the witness',
    at: '7401',
    nth: 1,
  },
  {
    title: 'witness on a portal endpoint',
    text: edit(base, 'address: 127.0.3.1, port: 7400', 'address: 127.0.2.1, port: 3260'),
    path: 'witness',
    message: 'found 127.0.2.1:3260, which sites[1].portal (site "beta" portal) already uses',
    at: '3260',
    nth: 2,
  },
  {
    title: 'clashing endpoints spelt differently (IPv6)',
    text: edit(
      edit(base, 'agent: { address: 127.0.1.1, port: 7401 }', 'agent: { address: "::1", port: 7401 }'),
      'portal: { address: 127.0.2.1, port: 3260 }',
      'portal: { address: "0:0:0:0:0:0:0:1", port: 7401 }',
    ),
    path: 'sites[1].portal',
    message: 'found [0:0:0:0:0:0:0:1]:7401, which sites[0].agent (site "alpha" agent) already uses',
    at: '7401',
    nth: 1,
  },
  {
    title: 'preferredSite that does not exist',
    text: edit(base, 'preferredSite: beta', 'preferredSite: betta'),
    path: 'groups[1].preferredSite',
    message: 'found "betta", expected the name of a site: alpha or beta; did you mean "beta"?',
    at: 'betta',
  },
  {
    title: 'one site',
    text: base.replace(/  - name: beta[\s\S]*?(?=witness:)/, ''),
    path: 'sites',
    message:
      'found 1 site, expected exactly 2 sites (a metro cluster mirrors between two sites; the witness, in a third fire zone, is not a site)',
    at: '- name: alpha',
    // the group preferring beta refers to a site that is gone
    count: 2,
  },
  {
    title: 'three sites',
    text: edit(
      base,
      'witness:',
      '  - { name: gamma, fireZone: building-d, agent: { address: 127.0.4.1, port: 7403 }, portal: { address: 127.0.4.1, port: 3260 }, dataDir: ./data/gamma }\nwitness:',
    ),
    path: 'sites',
    message: 'found 3 sites, expected exactly 2 sites',
    at: '{ name: gamma',
  },
  {
    title: 'address: not an IPv4 address',
    text: edit(base, 'address: 127.0.3.1', 'address: 127.0.3.256'),
    path: 'witness.address',
    message: 'found "127.0.3.256", expected an IPv4 address (10.0.0.1), an IPv6 address (fd00::1) or a hostname (san-a.example.net)',
    at: '127.0.3.256',
  },
  {
    title: 'address: IPv6 in brackets',
    text: edit(base, 'address: 127.0.3.1', 'address: "[fd00::3]"'),
    path: 'witness.address',
    message: 'write the IPv6 address without brackets: fd00::3',
    at: '"[fd00::3]"',
  },
  {
    title: 'address: port written into it',
    text: edit(base, 'address: 127.0.3.1', 'address: witness.example.net:7400'),
    path: 'witness.address',
    message: 'the port goes in its own "port" field',
    at: 'witness.example.net',
  },
  {
    title: 'address: unspecified',
    text: edit(base, 'portal: { address: 127.0.1.1', 'portal: { address: 0.0.0.0'),
    path: 'sites[0].portal.address',
    message: '0.0.0.0 is the unspecified (any) address',
    at: '0.0.0.0',
  },
  {
    title: 'ack mode misspelt',
    text: edit(base, 'groups:', 'replication: { ack: synchronous }\ngroups:'),
    path: 'replication.ack',
    message: 'found "synchronous", expected one of sync, async, adaptive; did you mean "sync"?',
    at: 'synchronous',
  },
  {
    title: 'ack mode unknown, nothing close',
    text: edit(base, 'groups:', 'replication: { ack: fast }\ngroups:'),
    path: 'replication.ack',
    message: 'found "fast", expected one of sync, async, adaptive',
    at: 'fast',
  },
  {
    title: 'syncMaxRttMs not positive',
    text: edit(base, 'groups:', 'replication: { syncMaxRttMs: 0 }\ngroups:'),
    path: 'replication.syncMaxRttMs',
    message: 'found 0, expected a number greater than 0',
    at: '0 }\ngroups',
  },
  {
    title: 'maxLagMs negative',
    text: edit(base, 'groups:', 'replication: { maxLagMs: -5 }\ngroups:'),
    path: 'replication.maxLagMs',
    message: 'found -5, expected an integer of at least 1',
    at: '-5',
  },
  {
    title: 'leaseMs fractional',
    text: edit(base, 'groups:', 'failover: { leaseMs: 1.5 }\ngroups:'),
    path: 'failover.leaseMs',
    message: 'found 1.5, expected an integer of at least 1',
    at: '1.5',
  },
  {
    title: 'maxDataLossMs negative',
    text: edit(base, 'groups:', 'failover: { maxDataLossMs: -1 }\ngroups:'),
    path: 'failover.maxDataLossMs',
    message: 'found -1, expected an integer of at least 0',
    at: '-1',
  },
  {
    title: 'per-group replication override with a bad ack',
    text: edit(base, '    preferredSite: beta\n', '    preferredSite: beta\n    replication: { ack: asynchronous }\n'),
    path: 'groups[1].replication.ack',
    message: 'found "asynchronous", expected one of sync, async, adaptive; did you mean "async"?',
    at: 'asynchronous',
  },
  {
    title: 'size in decimal units',
    text: edit(base, 'size: 2GiB', 'size: 2GB'),
    path: 'groups[1].volumes[0].size',
    message:
      'found "2GB", expected binary units: decimal units (KB, MB, GB, TB) are refused because 1GB = 1000000000 bytes but 1GiB = 1073741824 bytes; write 2GiB, or 2000000000 if you mean 2000000000 bytes',
    at: '2GB',
  },
  {
    title: 'size not a multiple of 512 bytes',
    text: edit(base, 'size: 256MiB', 'size: 1000'),
    path: 'groups[0].volumes[1].size',
    message: 'found 1000, expected a multiple of 512 bytes (the block size); the nearest are 512 or 1024 bytes',
    at: '1000',
  },
  {
    title: 'size zero',
    text: edit(base, 'size: 256MiB', 'size: 0MiB'),
    path: 'groups[0].volumes[1].size',
    message: 'found "0MiB", expected a size greater than 0',
    at: '0MiB',
  },
  {
    title: 'group without volumes',
    text: edit(base, 'volumes: [ { name: images, size: 2GiB } ]', 'volumes: []'),
    path: 'groups[1].volumes',
    message: 'found an empty list, expected a list of at least one volume { name, size }',
    at: '[]',
  },
  {
    title: 'drill naming a group that does not exist',
    text: edit(base, 'group: db,', 'group: dv,'),
    path: 'drills[0].group',
    message: 'found "dv", expected the name of a group: db, vm; did you mean "db"?',
    at: 'dv',
  },
  {
    title: 'drill schedule with 4 fields',
    text: edit(base, '"0 3 * * 0"', '"0 3 * *"'),
    path: 'drills[0].schedule',
    message:
      'found "0 3 * *", expected a 5-field cron schedule "minute hour day-of-month month day-of-week", e.g. "0 3 * * 0" for Sundays at 03:00; it has 4 fields',
    at: '"0 3 * *"',
  },
  {
    title: 'drill schedule with an invalid minute',
    text: edit(base, '"0 3 * * 0"', '"61 3 * * 0"'),
    path: 'drills[0].schedule',
    message: 'found "61 3 * * 0", expected a 5-field cron schedule',
    at: '"61',
  },
  {
    title: 'drill schedule that never fires',
    text: edit(base, '"0 3 * * 0"', '"0 3 30 2 *"'),
    path: 'drills[0].schedule',
    message: 'this schedule never fires',
    at: '"0 3 30 2 *"',
  },
  {
    title: 'two sites sharing a data directory',
    text: edit(base, 'dataDir: ./data/beta', 'dataDir: ./data/alpha/'),
    path: 'sites[1].dataDir',
    message: 'found /etc/mc/data/alpha, the same directory as sites[0].dataDir, expected a data directory of its own for every site and the witness',
    at: './data/alpha/',
  },
  {
    title: 'witness data directory inside a site’s',
    text: edit(base, 'dataDir: ./data/witness', 'dataDir: ./data/beta/witness'),
    path: 'witness.dataDir',
    message: 'found /etc/mc/data/beta/witness, inside sites[1].dataDir (/etc/mc/data/beta)',
    at: './data/beta/witness',
  },
  {
    title: 'initiator name that is not an IQN',
    text: edit(base, 'drills:', 'access: { initiators: [ "iqn.2026-11.org.example:Host1", host2 ] }\ndrills:'),
    path: 'access.initiators[0]',
    message: 'found "iqn.2026-11.org.example:Host1", expected an iSCSI initiator name: iqn.YYYY-MM.reversed.domain[:identifier]',
    at: '"iqn.2026',
    count: 2,
  },
  {
    title: 'mutual CHAP reusing the initiators’ secret',
    text: edit(base, 'drills:', 'access:\n  chap: { user: h1, secretFile: ./s/h1, mutual: { user: t1, secretFile: s/h1 } }\ndrills:'),
    path: 'access.chap.mutual.secretFile',
    message: 'expected a different secret for the target (RFC 7143 §12.1.3',
    at: 's/h1 }',
  },
  {
    title: 'TLS certificate for a daemon that does not exist',
    text: edit(
      base,
      'drills:',
      'security:\n  tls:\n    ca: ./pki/ca.crt\n    daemons:\n      alpha: { cert: a.crt, key: a.key }\n      beta: { cert: b.crt, key: b.key }\n      witnes: { cert: w.crt, key: w.key }\ndrills:',
    ),
    path: 'security.tls.daemons.witnes',
    message: 'found "witnes", expected a site name or "witness": alpha, beta, witness; did you mean "witness"?',
    at: 'witnes:',
    // and "witness" has no certificate
    count: 2,
  },
  {
    title: 'a number where text is expected',
    text: edit(base, 'fireZone: building-c', 'fireZone: 3'),
    path: 'witness.fireZone',
    message: 'found 3, expected the name of a fire zone (any text, e.g. building-a); put it in quotes to use it as text',
    at: '3, address',
  },
  {
    title: 'a peer route that is the site\'s own agent',
    text: edit(base, '    dataDir: ./data/alpha\n', '    dataDir: ./data/alpha\n    routes: { peer: { address: 127.0.1.1, port: 7401 } }\n'),
    path: 'sites[0].routes.peer',
    message: 'found 127.0.1.1:7401, which is sites[0].agent (site "alpha" agent), expected an address:port that leads to the other site\'s agent (its own endpoint, sites[1].agent, or a route or proxy to it)',
    at: '7401 } }',
  },
  {
    title: 'a witness route that is the peer\'s portal',
    text: edit(base, '    dataDir: ./data/beta\n', '    dataDir: ./data/beta\n    routes:\n      witness: { address: 127.0.2.1, port: 3260 }\n'),
    path: 'sites[1].routes.witness',
    message: 'found 127.0.2.1:3260, which is sites[1].portal (site "beta" portal), expected an address:port that leads to the witness',
    at: '3260 }\nwitness:',
  },
  {
    title: 'a route without a port',
    text: edit(base, '    dataDir: ./data/beta\n', '    dataDir: ./data/beta\n    routes: { peer: { address: 10.9.0.1 } }\n'),
    path: 'sites[1].routes.peer.port',
    message: 'found no "port" key in sites[1].routes.peer, expected an integer from 1 to 65535 (required)',
    at: '{ address: 10.9.0.1 }',
  },
  {
    title: 'a resync bandwidth of zero',
    text: edit(base, 'groups:', 'replication: { resyncMbps: 0 }\ngroups:'),
    path: 'replication.resyncMbps',
    message: 'found 0, expected a number greater than 0',
    at: '0 }\ngroups',
  },
  {
    title: 'insecure together with TLS files',
    text: edit(base, 'drills:', 'security:\n  insecure: true\n  tls: { ca: ./pki/ca.crt }\ndrills:'),
    path: 'security.insecure',
    message: 'found true together with security.tls, expected one of them: TLS files, or insecure: true for plaintext',
    at: 'true',
  },
];

for (const c of cases) {
  test(`refused: ${c.title}`, (t) => {
    const errors = errorsOf(c.text);
    const e = errors.find((x) => x.path === c.path);
    t.truthy(e, `no error at ${c.path}; got:\n${errors.map(formatIssue).join('\n')}`);
    if (!e) return;
    t.true(e.message.includes(c.message), `message:\n  ${e.message}\nshould contain:\n  ${c.message}`);
    t.deepEqual({ line: e.line, column: e.column }, positionOf(c.text, c.at, c.nth ?? 0));
    t.is(e.file, file);
    t.is(e.severity, 'error');
    t.is(errors.length, c.count ?? 1, errors.map(formatIssue).join('\n'));
  });
}

test('formatIssue prints file:line:column, severity, path and the sentence', (t) => {
  const text = edit(base, 'address: 127.0.2.1, port: 3260', 'address: 127.0.2.1, port: 70000');
  const [e] = errorsOf(text);
  t.is(formatIssue(e), '/etc/mc/topo.yaml:13:41: error: sites[1].portal.port: found 70000, expected an integer from 1 to 65535');
});

test('YAML syntax errors name file:line:column', (t) => {
  const text = edit(base, 'metadata: { name: demo }', 'metadata: { name: demo');
  const errors = errorsOf(text);
  t.true(errors.length >= 1);
  t.is(errors[0].path, '');
  t.regex(errors[0].message, /^YAML: /);
  // The parser notices the missing brace where the next block starts.
  t.deepEqual({ line: errors[0].line, column: errors[0].column }, { line: 4, column: 1 });
  t.true(errors[0].message.includes('end with a }'), errors[0].message);
  t.regex(formatIssue(errors[0]), /^\/etc\/mc\/topo\.yaml:\d+:\d+: error: YAML: /);
});

test('a key given twice is refused where the second one stands', (t) => {
  const text = edit(base, 'kind: MetroCluster\n', 'kind: MetroCluster\nkind: MetroCluster\n');
  const [e] = errorsOf(text);
  t.is(e.message, 'YAML: Map keys must be unique');
  t.deepEqual({ line: e.line, column: e.column }, { line: 3, column: 1 });
});

test('an empty file says what a topology is', (t) => {
  const [e] = errorsOf('');
  t.is(e.message, 'found nothing, expected a MetroCluster topology mapping');
});

test('every error is collected, in file order', (t) => {
  let text = edit(base, 'metrocluster/v1', 'metrocluster/v9');
  text = edit(text, 'port: 7402', 'port: 99999');
  text = edit(text, 'size: 2GiB', 'size: 2GB');
  text = edit(text, 'preferredSite: alpha', 'preferredSite: gamma');
  text = edit(text, '"0 3 * * 0"', '"0 3 * * 9"');
  const errors = errorsOf(text);
  t.deepEqual(
    errors.map((e) => e.path),
    ['apiVersion', 'sites[1].agent.port', 'groups[0].preferredSite', 'groups[1].volumes[0].size', 'drills[0].schedule'],
  );
});

test('the valid base yields the documented Topology with defaults', (t) => {
  const { topology: tp, warnings } = valid(base);
  t.deepEqual(warnings, []);
  t.is(tp.file, file);
  t.is(tp.dir, '/etc/mc');
  t.is(tp.name, 'demo');
  t.deepEqual(tp.replication, { ack: 'adaptive', syncMaxRttMs: 5, maxLagMs: 2000, resyncMbps: 800 });
  t.deepEqual(tp.failover, { leaseMs: 2000, maxDataLossMs: 0 });
  t.deepEqual(tp.access, { initiators: [], limits: { connectionsMax: 1024, loginsInProgressMax: 64, sessionsPerInitiatorMax: 64, loginTimeoutMs: 15_000 } });
  t.deepEqual(tp.sites.map((s) => [s.name, s.index, s.dataDir]), [
    ['alpha', 1, '/etc/mc/data/alpha'],
    ['beta', 2, '/etc/mc/data/beta'],
  ]);
  t.deepEqual(tp.sites[1].portal, { address: '127.0.2.1', port: 3260 });
  t.deepEqual(tp.witness, { fireZone: 'building-c', address: '127.0.3.1', port: 7400, dataDir: '/etc/mc/data/witness' });
  t.deepEqual(tp.groups[0].volumes, [
    { name: 'data', sizeBytes: 2 ** 30, lun: 0 },
    { name: 'log', sizeBytes: 256 * 2 ** 20, lun: 1 },
  ]);
  t.is(tp.groups[0].iqn, 'iqn.2026-11.io.metrocluster:demo.db');
  t.is(tp.groups[1].iqn, 'iqn.2026-11.io.metrocluster:demo.vm');
  t.deepEqual(tp.drills, [{ name: 'weekly-db', group: 'db', schedule: '0 3 * * 0', failback: true }]);
  t.is(tp.security, undefined);
});

test('routes default to the peer agent and the witness; set ones replace them per site', (t) => {
  const { topology: tp } = valid(base);
  t.deepEqual(tp.sites[0].routes, { peer: { address: '127.0.2.1', port: 7402 }, witness: { address: '127.0.3.1', port: 7400 } });
  t.deepEqual(tp.sites[1].routes, { peer: { address: '127.0.1.1', port: 7401 }, witness: { address: '127.0.3.1', port: 7400 } });
  const text = edit(base, '    dataDir: ./data/beta\n',
    '    dataDir: ./data/beta\n    routes:\n      peer: { address: 10.9.0.1, port: 17401 }\n      witness: { address: 127.0.3.1, port: 7400 }\n');
  const { topology: routed } = valid(text);
  t.deepEqual(routed.sites[1].routes, { peer: { address: '10.9.0.1', port: 17401 }, witness: { address: '127.0.3.1', port: 7400 } });
  t.deepEqual(routed.sites[0].routes.peer, { address: '127.0.2.1', port: 7402 });
});

test('resyncMbps: cluster default, per group override', (t) => {
  const text = edit(base, '    preferredSite: beta\n', '    preferredSite: beta\n    replication: { resyncMbps: 80 }\n');
  const { topology } = valid(text);
  t.is(topology.groups[0].replication.resyncMbps, 800);
  t.is(topology.groups[1].replication.resyncMbps, 80);
});

test('portal port defaults to 3260, the iSCSI port', (t) => {
  const { topology } = valid(edit(base, 'portal: { address: 127.0.1.1, port: 3260 }', 'portal: { address: 127.0.1.1 }'));
  t.is(topology.sites[0].portal.port, 3260);
});

test('a group replication override is merged over the cluster settings', (t) => {
  let text = edit(base, 'groups:', 'replication: { ack: sync, maxLagMs: 3000 }\ngroups:');
  text = edit(text, '    preferredSite: beta\n', '    preferredSite: beta\n    replication: { ack: async, syncMaxRttMs: 1.5 }\n');
  const { topology } = valid(text);
  t.deepEqual(topology.groups[0].replication, { ack: 'sync', syncMaxRttMs: 5, maxLagMs: 3000, resyncMbps: 800 });
  t.deepEqual(topology.groups[1].replication, { ack: 'async', syncMaxRttMs: 1.5, maxLagMs: 3000, resyncMbps: 800 });
  t.deepEqual(topology.replication, { ack: 'sync', syncMaxRttMs: 5, maxLagMs: 3000, resyncMbps: 800 });
});

test('relative paths resolve against the topology file folder, absolute ones stay', (t) => {
  let text = edit(base, 'dataDir: ./data/beta', 'dataDir: /srv/beta');
  text = edit(text, 'drills:', 'access:\n  chap: { user: h1, secretFile: ../secrets/h1, mutual: { user: t1, secretFile: t1 } }\ndrills:');
  const r = parseTopology(text, 'conf/cluster/topo.yaml');
  if (!r.ok) return t.fail(r.errors.map(formatIssue).join('\n'));
  const dir = path.resolve('conf/cluster');
  t.is(r.topology.file, path.join(dir, 'topo.yaml'));
  t.is(r.topology.dir, dir);
  t.is(r.topology.sites[0].dataDir, path.join(dir, 'data/alpha'));
  t.is(r.topology.sites[1].dataDir, '/srv/beta');
  t.is(r.topology.witness.dataDir, path.join(dir, 'data/witness'));
  t.deepEqual(r.topology.access.chap, {
    user: 'h1',
    secretFile: path.resolve('conf/secrets/h1'),
    mutual: { user: 't1', secretFile: path.join(dir, 't1') },
  });
});

test('warning, not error: both sites in one fire zone', (t) => {
  const { warnings } = valid(edit(base, 'fireZone: building-b', 'fireZone: building-a'));
  t.is(warnings.length, 1);
  t.is(warnings[0].severity, 'warning');
  t.is(warnings[0].path, 'sites[1].fireZone');
  t.is(warnings[0].message, 'found "building-a" for both sites, expected two different fire zones: one fire can take out both copies of every volume');
  t.regex(formatIssue(warnings[0]), /^\/etc\/mc\/topo\.yaml:11:15: warning: sites\[1\]\.fireZone: /);
});

test('warning, not error: witness in the fire zone of a site', (t) => {
  const text = edit(base, 'fireZone: building-c', 'fireZone: building-b');
  const { warnings } = valid(text);
  t.is(warnings.length, 1);
  t.is(warnings[0].path, 'witness.fireZone');
  t.true(warnings[0].message.startsWith('found "building-b", the fire zone of site "beta" (sites[1]), expected a third fire zone'));
  t.deepEqual({ line: warnings[0].line, column: warnings[0].column }, positionOf(text, 'building-b', 1));
});

const sizes: [string, number | string][] = [
  ['512', 512],
  ['4096', 4096],
  ['1KiB', 1024],
  ['512MiB', 512 * 2 ** 20],
  ['1GiB', 2 ** 30],
  ['1.5GiB', 1.5 * 2 ** 30],
  ['2TiB', 2 * 2 ** 40],
  ['1PiB', 2 ** 50],
  ['4 GiB', 4 * 2 ** 30],
  ['1GB', 'decimal units (KB, MB, GB, TB) are refused because 1GB = 1000000000 bytes but 1GiB = 1073741824 bytes'],
  ['100MB', 'write 100MiB, or 100000000 if you mean 100000000 bytes'],
  ['1G', 'did you mean 1GiB?'],
  ['1gib', 'did you mean 1GiB?'],
  ['1000', 'expected a multiple of 512 bytes (the block size); the nearest are 512 or 1024 bytes'],
  ['100', 'the nearest are 512 bytes'],
  ['0', 'expected a size greater than 0'],
  ['0.1KiB', 'not a whole number of bytes'],
  ['-1GiB', 'expected a size such as 512MiB, 1GiB or 2TiB'],
  ['big', 'expected a size such as 512MiB, 1GiB or 2TiB'],
  ['16PiB', 'expected a size below 8PiB'],
];
for (const [text, expected] of sizes) {
  test(`size ${JSON.stringify(text)}`, (t) => {
    const r = parseSize(text);
    if (typeof expected === 'number') t.deepEqual(r, { ok: true, bytes: expected });
    else if (r.ok) t.fail(`accepted as ${r.bytes}`);
    else t.true(r.reason.includes(expected), r.reason);
  });
}

function tempDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'mc-topology-'));
}

const withChap = edit(
  base,
  'drills:',
  'access:\n  chap:\n    user: host1\n    secretFile: ./secrets/host1\n    mutual: { user: target1, secretFile: ./secrets/target1 }\ndrills:',
);

test('missing CHAP secret files are refused, each with its path and position', async (t) => {
  const dir = tempDir();
  const f = path.join(dir, 'topo.yaml');
  writeFileSync(f, withChap);
  const r = await loadTopology(f);
  if (r.ok) return t.fail('accepted');
  t.deepEqual(r.errors.map((e) => e.path), ['access.chap.secretFile', 'access.chap.mutual.secretFile']);
  t.is(
    r.errors[0].message,
    `found ./secrets/host1 (${dir}/secrets/host1), which does not exist, expected a file holding the CHAP secret the initiators use`,
  );
  t.deepEqual({ line: r.errors[0].line, column: r.errors[0].column }, positionOf(withChap, './secrets/host1'));
  t.true(r.errors[1].message.includes('expected a file holding the CHAP secret the target uses (mutual CHAP)'));
  t.deepEqual({ line: r.errors[1].line, column: r.errors[1].column }, positionOf(withChap, './secrets/target1'));
});

test('a missing secret file is reported together with the other errors', async (t) => {
  const dir = tempDir();
  const f = path.join(dir, 'topo.yaml');
  writeFileSync(f, edit(withChap, 'port: 7402', 'port: 0'));
  const r = await loadTopology(f);
  if (r.ok) return t.fail('accepted');
  t.deepEqual(r.errors.map((e) => e.path), ['sites[1].agent.port', 'access.chap.secretFile', 'access.chap.mutual.secretFile']);
});

test('present secret files are accepted, by absolute path, and their contents are not read', async (t) => {
  const dir = tempDir();
  mkdirSync(path.join(dir, 'secrets'));
  writeFileSync(path.join(dir, 'secrets/host1'), 'host-secret-1234\n', { mode: 0o600 });
  writeFileSync(path.join(dir, 'secrets/target1'), 'target-secret-99\n', { mode: 0o600 });
  const f = path.join(dir, 'topo.yaml');
  writeFileSync(f, withChap);
  const r = await loadTopology(f);
  if (!r.ok) return t.fail(r.errors.map(formatIssue).join('\n'));
  t.deepEqual(r.topology.access.chap, {
    user: 'host1',
    secretFile: path.join(dir, 'secrets/host1'),
    mutual: { user: 'target1', secretFile: path.join(dir, 'secrets/target1') },
  });
  t.false(JSON.stringify(r.topology).includes('secret-'));
});

test('missing TLS files are refused; present ones are given by absolute path', async (t) => {
  const dir = tempDir();
  const text = edit(
    base,
    'drills:',
    'security:\n  tls:\n    ca: pki/ca.crt\n    daemons:\n      alpha: { cert: pki/a.crt, key: pki/a.key }\n      beta: { cert: pki/b.crt, key: pki/b.key }\n      witness: { cert: pki/w.crt, key: pki/w.key }\ndrills:',
  );
  const f = path.join(dir, 'topo.yaml');
  writeFileSync(f, text);
  mkdirSync(path.join(dir, 'pki'));
  for (const name of ['ca.crt', 'a.crt', 'a.key', 'b.crt', 'b.key', 'w.crt']) writeFileSync(path.join(dir, 'pki', name), '');
  const missing = await loadTopology(f);
  if (missing.ok) return t.fail('accepted');
  t.deepEqual(missing.errors.map((e) => e.path), ['security.tls.daemons.witness.key']);
  t.is(missing.errors[0].message, `found pki/w.key (${dir}/pki/w.key), which does not exist, expected a file holding the private key of witness`);
  t.deepEqual({ line: missing.errors[0].line, column: missing.errors[0].column }, positionOf(text, 'pki/w.key'));
  writeFileSync(path.join(dir, 'pki/w.key'), '');
  const r = await loadTopology(f);
  if (!r.ok) return t.fail(r.errors.map(formatIssue).join('\n'));
  t.deepEqual(r.topology.security, {
    insecure: false,
    tls: {
      ca: path.join(dir, 'pki/ca.crt'),
      daemons: {
        alpha: { cert: path.join(dir, 'pki/a.crt'), key: path.join(dir, 'pki/a.key') },
        beta: { cert: path.join(dir, 'pki/b.crt'), key: path.join(dir, 'pki/b.key') },
        witness: { cert: path.join(dir, 'pki/w.crt'), key: path.join(dir, 'pki/w.key') },
      },
    },
  });
});

test('a secret path that is a directory is refused', async (t) => {
  const dir = tempDir();
  mkdirSync(path.join(dir, 'secrets/host1'), { recursive: true });
  writeFileSync(path.join(dir, 'secrets/target1'), 'x');
  const f = path.join(dir, 'topo.yaml');
  writeFileSync(f, withChap);
  const r = await loadTopology(f);
  if (r.ok) return t.fail('accepted');
  t.is(r.errors.length, 1);
  t.true(r.errors[0].message.includes('which is not a regular file'));
});

test('volumes larger than the free space of the data directory filesystem: a warning', async (t) => {
  const dir = tempDir();
  const f = path.join(dir, 'topo.yaml');
  const text = edit(base, 'size: 2GiB', 'size: 4PiB');
  writeFileSync(f, text);
  const r = await loadTopology(f);
  if (!r.ok) return t.fail(r.errors.map(formatIssue).join('\n'));
  t.is(r.warnings.length, 1);
  const w = r.warnings[0];
  t.is(w.severity, 'warning');
  t.is(w.path, 'sites[0].dataDir');
  // Both data directories are on the temp filesystem: both copies count against it.
  t.regex(w.message, /^found .* free on the filesystem of .*, but sites "alpha" and "beta" share one filesystem and their volumes total 8 PiB/);
  t.true(w.message.includes('volumes are thin'));
  t.deepEqual({ line: w.line, column: w.column }, positionOf(text, './data/alpha'));
});

test('no space warning when the volumes fit', async (t) => {
  const dir = tempDir();
  const f = path.join(dir, 'topo.yaml');
  writeFileSync(f, edit(base, 'size: 2GiB', 'size: 1MiB').replace('size: 1GiB', 'size: 1MiB').replace('size: 256MiB', 'size: 1MiB'));
  const r = await loadTopology(f);
  t.true(r.ok);
  t.deepEqual(r.warnings, []);
});

test('an unreadable file is an error, not an exception', async (t) => {
  const r = await loadTopology('/nonexistent/topo.yaml');
  if (r.ok) return t.fail('accepted');
  t.is(formatIssue(r.errors[0]), '/nonexistent/topo.yaml:1:1: error: cannot read the topology file (no such file), expected a readable YAML file');
});

const examples = ['local-demo.yaml', 'active-passive.yaml', 'long-distance-async.yaml'];
for (const name of examples) {
  test(`example ${name} validates`, async (t) => {
    const r = await loadTopology(path.join(repo, 'topology-examples', name));
    if (!r.ok) return t.fail(r.errors.map(formatIssue).join('\n'));
    t.is(r.topology.sites.length, 2);
    t.true(r.topology.groups.length >= 2);
    t.true(r.warnings.every((w) => w.severity === 'warning'));
  });
}

test('example metro-three-zones.yaml validates once its CHAP secrets exist', async (t) => {
  const f = path.join(repo, 'topology-examples/metro-three-zones.yaml');
  const dir = tempDir();
  cpSync(f, path.join(dir, 'metro-three-zones.yaml'));
  // As committed (no secrets in the repository) it says exactly which files to create.
  const bare = await loadTopology(path.join(dir, 'metro-three-zones.yaml'));
  t.false(bare.ok);
  if (!bare.ok) t.deepEqual(bare.errors.map((e) => e.path), ['access.chap.secretFile', 'access.chap.mutual.secretFile']);
  mkdirSync(path.join(dir, 'secrets'));
  writeFileSync(path.join(dir, 'secrets/host1'), 'aaaaaaaaaaaaaaaa\n', { mode: 0o600 });
  writeFileSync(path.join(dir, 'secrets/target'), 'bbbbbbbbbbbbbbbb\n', { mode: 0o600 });
  const r = await loadTopology(path.join(dir, 'metro-three-zones.yaml'));
  if (!r.ok) return t.fail(r.errors.map(formatIssue).join('\n'));
  t.is(r.topology.witness.address, 'witness.mgmt.example.net');
  t.deepEqual(new Set(r.topology.sites.map((s) => s.fireZone)).size, 2);
  t.is(r.topology.groups.find((g) => g.name === 'oracle-prod')?.replication.ack, 'sync');
});

test('examples local-demo and active-passive can run side by side: no shared address:port', async (t) => {
  const endpoints = async (name: string) => {
    const r = await loadTopology(path.join(repo, 'topology-examples', name));
    if (!r.ok) throw new Error(name);
    const tp = r.topology;
    return [...tp.sites.flatMap((s) => [s.agent, s.portal]), tp.witness].map((e) => `${e.address}:${e.port}`);
  };
  const a = await endpoints('local-demo.yaml');
  const b = await endpoints('active-passive.yaml');
  t.deepEqual(a.filter((x) => b.includes(x)), []);
});

// The CLI, as an admin runs it: a commander program with registerTopologyCommands, in a child process.
function runValidate(topologyFile: string): { status: number | null; stdout: string; stderr: string } {
  const dir = tempDir();
  const entry = path.join(dir, 'metroctl-entry.mts');
  writeFileSync(
    entry,
    `import { Command } from ${JSON.stringify(import.meta.resolve('commander'))};\n` +
      `import { registerTopologyCommands } from ${JSON.stringify(path.join(repo, 'cli/topology-command.ts'))};\n` +
      `const program = new Command('metroctl').exitOverride();\n` +
      `registerTopologyCommands(program);\n` +
      `await program.parseAsync(process.argv);\n`,
  );
  const r = spawnSync(process.execPath, ['--import=tsx', entry, 'topology', 'validate', topologyFile], {
    cwd: repo,
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('CLI: a valid topology exits 0 with a one-line summary', (t) => {
  const r = runValidate('topology-examples/local-demo.yaml');
  t.is(r.status, 0, r.stderr);
  t.is(
    r.stdout,
    'topology-examples/local-demo.yaml: valid: cluster "demo", sites alpha and beta, 2 groups, 3 volumes, 3.25 GiB per site\n',
  );
});

test('CLI: an invalid topology exits 2 and prints every issue to stderr', (t) => {
  const dir = tempDir();
  const f = path.join(dir, 'bad.yaml');
  writeFileSync(f, edit(edit(base, 'port: 7402', 'port: 70000'), 'preferredSite: beta', 'preferredSite: betta'));
  const r = runValidate(f);
  t.is(r.status, 2);
  t.is(r.stdout, '');
  const lines = r.stderr.trim().split('\n');
  t.deepEqual(lines, [
    `${f}:12:40: error: sites[1].agent.port: found 70000, expected an integer from 1 to 65535`,
    `${f}:23:20: error: groups[1].preferredSite: found "betta", expected the name of a site: alpha or beta; did you mean "beta"?`,
    `${f}: invalid: 2 errors`,
  ]);
});

test('CLI: an unreadable file exits 2', (t) => {
  const r = runValidate('/nonexistent/topo.yaml');
  t.is(r.status, 2);
  t.regex(r.stderr, /^\/nonexistent\/topo\.yaml:1:1: error: cannot read the topology file/);
});
