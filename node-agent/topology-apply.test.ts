// A topology apply that deletes a group's last volume, at a site where no mirror session runs (the
// secondary): the group's data path lets the volume go too (its LUN device, its dirty map's open
// file), so a session started there later (the site becomes primary) mirrors only the volumes left.
import test from 'ava';
import fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '../common/log.ts';
import { parseTopology, type Topology } from '../common/topology/index.ts';
import { loadGrpcSecurity, useGrpcSecurity } from '../common/tls/grpc-security.ts';
import type { ApplyPhase } from '../common/topology-apply-wire.ts';
import { openMetaStore } from './meta-store.ts';
import { openSiteRoles } from './role/site-roles.ts';
import type { GroupTarget } from './targets.ts';
import { TopologyRuntime, servedTopology } from './topology-apply.ts';
import { dirtyMapPath, openVolumes } from './volumes.ts';

const log = createLogger({ component: 'topology-apply-test', console: false });

const topologyText = (volumes: string) => `apiVersion: metrocluster/v1
kind: MetroCluster
metadata: { name: unit }
security: { insecure: true }
sites:
  - name: alpha
    fireZone: building-a
    agent:  { address: 127.0.0.1, port: 7401 }
    portal: { address: 127.0.0.1, port: 3260 }
    dataDir: ./data/alpha
  - name: beta
    fireZone: building-b
    agent:  { address: 127.0.0.2, port: 7402 }
    portal: { address: 127.0.0.2, port: 3260 }
    dataDir: ./data/beta
witness: { fireZone: building-c, address: 127.0.0.3, port: 7400, dataDir: ./data/witness }
groups:
  - name: db
    preferredSite: alpha
    volumes: [ ${volumes} ]
`;

function parsed(text: string, file: string): Topology {
  const r = parseTopology(text, file);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.topology;
}

/** The files this process holds open whose name ends with `suffix` (Linux: /proc/self/fd). */
async function openFilesEndingWith(suffix: string): Promise<string[]> {
  const fds = await fs.readdir('/proc/self/fd');
  const links = await Promise.all(fds.map((fd) => fs.readlink(`/proc/self/fd/${fd}`).catch(() => '')));
  return links.filter((l) => l.replace(/ \(deleted\)$/, '').endsWith(suffix));
}

test('deleting the last volume at the secondary: its LUN device and dirty map go, and a session started later mirrors one volume', async (t) => {
  if (process.platform !== 'linux') return t.pass('needs /proc/self/fd');
  const dir = await fs.mkdtemp(path.join(tmpdir(), 'metro-topology-apply-'));
  const file = path.join(dir, 'topology.yaml');
  const v1 = topologyText('{ name: data, size: 4MiB }, { name: log, size: 4MiB }');
  await fs.writeFile(file, v1);
  const topology = parsed(v1, file);
  const site = topology.sites.find((s) => s.name === 'beta')!;
  useGrpcSecurity(loadGrpcSecurity(topology, { kind: 'agent', cluster: topology.name, site: site.name }));
  await fs.mkdir(site.dataDir, { recursive: true });
  const meta = await openMetaStore(path.join(site.dataDir, 'agent-meta.json'), { cluster: topology.name, site: site.name });
  await meta.update((m) => { m.groups.db = { epoch: 1, role: 'secondary' }; });
  await servedTopology({ meta, fromFile: topology, log });
  const volumes = await openVolumes({ topology, site, meta, log });
  const roles = await openSiteRoles({ topology, site, meta, volumes, log });
  t.teardown(async () => {
    roles.close();
    await Promise.all(volumes.map((v) => v.device.close()));
    await fs.rm(dir, { recursive: true, force: true });
  });
  const target = { removeLun: async () => undefined, luns: () => [0] } as unknown as GroupTarget;
  const runtime = new TopologyRuntime({
    site, meta, log, opened: volumes, served: roles.volumes,
    targets: { targets: new Map([[topology.groups[0].iqn, target]]), addGroup: () => target, removeGroup: () => undefined },
    mirrors: roles.mirrors, access: { initiators: [] },
  }, topology);
  const logMap = dirtyMapPath(site, 'db', 'log');
  t.is((await openFilesEndingWith(logMap)).length, 1, 'the log volume\'s dirty map is open');
  t.is(roles.paths.get('db')!.devices.length, 2);

  const v2 = topologyText('{ name: data, size: 4MiB }');
  for (const phase of ['prepare', 'commit', 'finish'] as ApplyPhase[]) {
    const r = await runtime.apply({ cluster: topology.name, version: 2, text: v2, file, force: true, phase });
    t.false(r.refused, `${phase}: ${JSON.stringify(r)}`);
  }
  await t.throwsAsync(fs.stat(logMap), { code: 'ENOENT' });
  t.deepEqual(await openFilesEndingWith(logMap), [], 'the deleted volume\'s dirty map is closed, not left open unlinked');
  t.deepEqual(await openFilesEndingWith(dirtyMapPath(site, 'db', 'data')), [dirtyMapPath(site, 'db', 'data')], 'the data volume\'s stays open');
  const p = roles.paths.get('db')!;
  t.is(p.devices.length, 1, 'the group serves one LUN device');

  // The site becomes the group's primary: its mirror session holds the one volume the peer serves.
  p.configure({ epoch: 2, primary: 'beta', isPrimary: true, gate: 'mirrored', access: 'active-optimized', peerAlive: false });
  const session = roles.sessions.get('db');
  t.truthy(session, 'a session runs');
  t.is(session!.verifySide.volumes.length, 1);
});
