// The mirror link through a real TCP proxy (tests/harness/tcp-proxy.ts) named by the secondary's
// `routes.peer`: the secondary dials the primary through it. (What the link's latency does to the
// adaptive policy is measured in tests/quiet/mirror-latency.test.ts, on an otherwise idle machine.)
import test from 'ava';
import fs from 'node:fs/promises';
import { startCluster, type TestCluster } from './harness/cluster.ts';
import { qemuIo, volumePath } from './harness/mirror-status.ts';
import { startTcpProxy, type TcpProxy } from './harness/tcp-proxy.ts';
import { requireTools } from './harness/tools.ts';

const clusters: TestCluster[] = [];
const proxies: TcpProxy[] = [];
test.after.always(async () => {
  await Promise.all(clusters.map((c) => c.stop()));
  await Promise.all(proxies.map((p) => p.close()));
});

const groups = `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 8MiB } ]`;

const proxyPort = 17401;

/** A cluster whose secondary (beta) dials the primary's agent through a proxy on host(3). */
async function proxiedCluster(extra = ''): Promise<{ c: TestCluster; proxy: TcpProxy }> {
  let proxy: TcpProxy | undefined;
  const c = await startCluster({
    groups,
    extra,
    routes: (host) => ({ beta: { peer: { address: host(3), port: proxyPort } } }),
    beforeUp: async ({ host }) => {
      proxy = await startTcpProxy({ listen: { address: host(3), port: proxyPort }, target: { address: host(1), port: 7401 } });
      proxies.push(proxy);
    },
  });
  clusters.push(c);
  return { c, proxy: proxy! };
}

test.serial('the secondary dials the primary through its routes.peer', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  const { c, proxy } = await proxiedCluster('replication: { ack: sync }');
  await qemuIo(`iscsi://${c.portal(1)}/${c.iqn('db')}/0`, ['write -P 0x5a 0 1M', 'flush']);
  const beta = await fs.readFile(volumePath(c, 'beta', 'db', 'data'));
  t.true(beta.subarray(0, 1 << 20).every((b) => b === 0x5a), `beta lacks a sync write\n${await c.logTail('beta')}`);
  // The write's megabyte travelled primary -> secondary through the proxy.
  t.true(proxy.accepted >= 1);
  t.true(proxy.bytes.down >= 1 << 20, `${proxy.bytes.down} bytes through the proxy`);
});
