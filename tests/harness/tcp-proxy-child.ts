// The child process of startTcpProxyProcess (tcp-proxy.ts): one proxy, its changes over IPC.
import { startTcpProxy, type ProxyChildMessage, type TcpProxyOptions } from './tcp-proxy.ts';

const send = (m: ProxyChildMessage): void => { process.send?.(m); };
// The test that started it is gone (killed, or done without close): so is the link.
process.on('disconnect', () => process.exit(0));

try {
  const proxy = await startTcpProxy(JSON.parse(process.argv[2]) as TcpProxyOptions);
  process.on('message', (m: { op: string; id: number; ms?: number }) => {
    void (async () => {
      if (m.op === 'delay') proxy.delayMs = m.ms ?? 0;
      else if (m.op === 'cut') proxy.cut();
      else if (m.op === 'restore') proxy.restore();
      else if (m.op === 'close') await proxy.close();
      send({ kind: 'ack', id: m.id, accepted: proxy.accepted, bytes: { ...proxy.bytes } });
      if (m.op === 'close') process.disconnect();
    })();
  });
  send({ kind: 'ready', address: proxy.address, port: proxy.port });
} catch (err) {
  send({ kind: 'failed', message: (err as Error).message });
  process.exitCode = 1;
}
