// The topology diff behind plan and apply: each kind of change with its sentence and whether it is
// destructive, and the changes no online apply makes (table-driven over small YAML edits).
import test from 'ava';
import { parseTopology, type Topology } from './index.ts';
import { diffTopology } from './topology-diff.ts';
import { demoTopologyHead } from './test-support.ts';

const base = `${demoTopologyHead}groups:
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 1GiB }, { name: log, size: 256MiB } ]
`;

function topo(text: string): Topology {
  const r = parseTopology(text, '/tmp/demo/topology.yaml');
  if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('; '));
  return r.topology;
}

const cases: Array<{ name: string; edit: (s: string) => string; kinds: string[]; destructive: number; refusals?: RegExp; sentence?: RegExp }> = [
  { name: 'no change', edit: (s) => s, kinds: [], destructive: 0 },
  { name: 'volume grown', edit: (s) => s.replace('size: 1GiB', 'size: 2GiB'), kinds: ['volume-grown'], destructive: 0, sentence: /grows volume db\/data \(LUN 0\) from 1 GiB to 2 GiB/ },
  { name: 'volume shrunk', edit: (s) => s.replace('size: 256MiB', 'size: 128MiB'), kinds: ['volume-shrunk'], destructive: 1, sentence: /discarding its last 128 MiB/ },
  { name: 'volume added at the end', edit: (s) => s.replace('size: 256MiB }', 'size: 256MiB }, { name: wal, size: 64MiB }'), kinds: ['volume-added'], destructive: 0, sentence: /adds volume db\/wal as LUN 2/ },
  { name: 'last volume deleted', edit: (s) => s.replace(', { name: log, size: 256MiB }', ''), kinds: ['volume-deleted'], destructive: 1 },
  { name: 'first volume deleted renumbers the rest', edit: (s) => s.replace('{ name: data, size: 1GiB }, ', ''), kinds: ['volume-deleted'], destructive: 1, refusals: /db\/log would move from LUN 1 to LUN 0/ },
  { name: 'volume inserted before others', edit: (s) => s.replace('[ { name: data', '[ { name: new, size: 1GiB }, { name: data'), kinds: [], destructive: 0, refusals: /db\/data would move from LUN 0 to LUN 1/ },
  { name: 'group added', edit: (s) => `${s}  - { name: vm, preferredSite: beta, volumes: [ { name: images, size: 2GiB } ] }\n`, kinds: ['group-added'], destructive: 0, sentence: /adds group vm/ },
  { name: 'settings', edit: (s) => `${s}replication: { ack: sync }\nfailover: { leaseMs: 3000 }\naccess: { initiators: [ "iqn.2026-11.org.example:h1" ] }\n`, kinds: ['setting-changed'], destructive: 0, sentence: /failover\.leaseMs: 2000 -> 3000/ },
  { name: 'data directory moved', edit: (s) => s.replace('./data/alpha', './elsewhere/alpha'), kinds: [], destructive: 0, refusals: /site alpha: moving its data directory/ },
  { name: 'another cluster', edit: (s) => s.replace('name: demo', 'name: other'), kinds: [], destructive: 0, refusals: /another cluster/ },
];

for (const c of cases) {
  test(c.name, (t) => {
    const p = diffTopology(topo(base), topo(c.edit(base)));
    t.deepEqual([...new Set(p.changes.map((x) => x.change.kind))], c.kinds);
    t.is(p.changes.filter((x) => x.destructive).length, c.destructive);
    if (c.refusals) t.regex(p.refusals.join('\n'), c.refusals);
    else t.deepEqual(p.refusals, []);
    if (c.sentence) t.regex(p.changes.map((x) => x.sentence).join('\n'), c.sentence);
  });
}

test('a group removed is destructive and names its target', (t) => {
  const two = `${base}  - { name: vm, preferredSite: beta, volumes: [ { name: images, size: 2GiB } ] }\n`;
  const p = diffTopology(topo(two), topo(base));
  t.deepEqual(p.changes.map((x) => [x.change.kind, x.destructive]), [['group-removed', true]]);
  t.regex(p.changes[0].sentence, /removes group vm: its target iqn\.2026-11\.io\.metrocluster:demo\.vm/);
});
