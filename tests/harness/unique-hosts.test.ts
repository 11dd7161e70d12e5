// Each test process owns its loopback hosts: its second octet is claimed by a listening socket, so
// two test files that run at once never start daemons on the same address and port.
import test from 'ava';
import net from 'node:net';
import { uniqueHosts } from './cluster.ts';

function listen(host: string, port: number): Promise<net.Server | NodeJS.ErrnoException> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err));
    server.listen({ host, port, exclusive: true }, () => resolve(server));
  });
}

test('an octet another process holds is skipped, and the one claimed stays held', async (t) => {
  const first = 10 + (process.pid % 240);
  // What another test process holding this process's first choice looks like.
  const other = await listen(`127.${first}.255.254`, 7399);
  t.teardown(() => { if (other instanceof net.Server) other.close(); });
  const host = await uniqueHosts();
  const octet = Number(host(1).split('.')[1]);
  t.not(octet, first);
  t.true(octet >= 10 && octet < 250, host(1));
  t.deepEqual([host(1), host(2), host(3)].map((h) => h.split('.')[1]), [String(octet), String(octet), String(octet)]);
  // A second claim of the same octet (another process's) fails to bind.
  const again = await listen(`127.${octet}.255.254`, 7399);
  t.false(again instanceof net.Server, 'the claim is held while this process lives');
  if (again instanceof net.Server) again.close();
  // The next topology of this process uses other third octets on the same claim.
  const next = await uniqueHosts();
  t.is(next(1).split('.')[1], String(octet));
  t.not(next(1), host(1));
});
