// The test proxy against a real echo server: bytes pass both ways, the delay applies in each
// direction and changes at runtime, a cut drops connections and blackholes new ones, restore heals.
import test from 'ava';
import net from 'node:net';
import { uniqueHosts } from './cluster.ts';
import { startTcpProxy, startTcpProxyProcess, type TcpProxy } from './tcp-proxy.ts';

async function echoServer(address: string): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, address, () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => { for (const s of sockets) s.destroy(); return new Promise((resolve) => server.close(() => resolve())); },
  };
}

/** Connects through the proxy; roundTrip sends a line and resolves with the echo and its time. */
async function client(p: TcpProxy) {
  const s = net.connect({ host: p.address, port: p.port, noDelay: true });
  s.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject); });
  let buffered = '';
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  return {
    socket: s,
    closed,
    roundTrip(line: string, timeoutMs = 2000): Promise<{ echo: string; ms: number }> {
      const started = performance.now();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { s.off('data', onData); reject(new Error('no echo')); }, timeoutMs);
        const onData = (d: Buffer): void => {
          buffered += d.toString();
          const nl = buffered.indexOf('\n');
          if (nl < 0) return;
          const echo = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          clearTimeout(timer);
          s.off('data', onData);
          resolve({ echo, ms: performance.now() - started });
        };
        s.on('data', onData);
        s.write(`${line}\n`);
      });
    },
  };
}

for (const [where, start] of [['in the test process', startTcpProxy], ['in a child process', startTcpProxyProcess]] as const) test(`${where}: delay in each direction, changed at runtime; cut and restore; flap`, async (t) => {
  const host = (await uniqueHosts())(1);
  const echo = await echoServer(host);
  const proxy = await start({ listen: { address: host }, target: { address: host, port: echo.port } });
  t.teardown(async () => { await proxy.close(); await echo.close(); });

  const c = await client(proxy);
  const fast = await c.roundTrip('hello');
  t.is(fast.echo, 'hello');
  // Bounds far apart: a loaded machine adds tens of milliseconds to any round trip.
  t.true(fast.ms < 200, `undelayed round trip took ${fast.ms.toFixed(1)} ms`);

  proxy.delayMs = 200;
  await proxy.sync();
  const slow = await c.roundTrip('slow');
  t.is(slow.echo, 'slow');
  // 200 ms each way: at least 400 ms for the round trip.
  t.true(slow.ms >= 398, `delayed round trip took ${slow.ms.toFixed(1)} ms`);
  await proxy.sync();
  t.deepEqual(proxy.bytes, { up: 11, down: 11 });
  t.is(proxy.accepted, 1);

  proxy.delayMs = 0;
  await proxy.sync();
  t.true((await c.roundTrip('again')).ms < 200);

  proxy.cut();
  await proxy.sync();
  await c.closed;
  t.true(c.socket.destroyed);
  // A connection made during the cut is accepted but never answered.
  const during = await client(proxy);
  await t.throwsAsync(during.roundTrip('lost', 200), { message: 'no echo' });

  proxy.restore();
  await proxy.sync();
  await during.closed;
  const after = await client(proxy);
  t.is((await after.roundTrip('back')).echo, 'back');

  proxy.flap({ highMs: 30, lowMs: 0, periodMs: 100 });
  const seen = new Set<number>();
  for (let i = 0; i < 12; i++) {
    seen.add(proxy.delayMs);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.deepEqual([...seen].sort((a, b) => a - b), [0, 30]);
  proxy.stopFlap();
  t.is(proxy.delayMs, 0);
  after.socket.destroy();
});
