// Host I/O for the failover process tests, through qemu-io (a real initiator): one run of commands
// judged ok or not, a write load whose every completion is timestamped as qemu-io prints it (so
// "completed before the kill" is known), the first write that succeeds after a fault, and polling;
// and the cluster those tests share: two groups, one preferring each site, sync, leaseMs 2000.
import { spawn } from 'node:child_process';
import { qemuIoFailed, run } from './tools.ts';

export const failoverLeaseMs = 2000;
export const failoverTopology = {
  groups: `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 16MiB } ]
  - name: vm
    preferredSite: beta
    volumes: [ { name: images, size: 8MiB } ]`,
  extra: `replication: { ack: sync }\nfailover: { leaseMs: ${failoverLeaseMs}, maxDataLossMs: 0 }`,
};

export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One qemu-io run; ok when every command reported success and no pattern failed (qemu's warning
 *  about a unit attention at its open-time MODE SENSE is not a failure: see qemuIoFailed). */
export async function qemuIo(url: string, commands: string[], timeoutMs = 60_000): Promise<{ ok: boolean; out: string }> {
  const r = await run('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), url], { timeoutMs });
  const out = r.stdout + r.stderr;
  return { ok: r.code === 0 && !qemuIoFailed(out) && !/abort/i.test(out), out };
}

/** The byte pattern of the i-th block of a write load. */
export const pattern = (i: number): number => 0x10 + (i % 0xe0);

/**
 * One qemu-io process writing 4 KiB blocks first..first+count-1 in turn, block i at i * strideBytes
 * with pattern(i); `done` maps each completed block to when qemu-io printed it (line-buffered).
 */
export function writeLoad(url: string, count: number, strideBytes: number, first = 0) {
  const done = new Map<number, number>();
  const commands = Array.from({ length: count }, (_, k) => `write -P ${pattern(first + k)} ${(first + k) * strideBytes} 4k`);
  const child = spawn('stdbuf', ['-oL', 'qemu-io', '-f', 'raw', ...commands.flatMap((c) => ['-c', c]), url], { stdio: ['ignore', 'pipe', 'pipe'] });
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const m = line.match(/^wrote 4096\/4096 bytes at offset (\d+)/);
      if (m) done.set(Number(m[1]) / strideBytes, performance.now());
    }
  });
  child.stderr.resume();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { done, exited, stop: async () => { child.kill('SIGKILL'); await exited; } };
}

/** Repeats a one-write qemu-io run until it succeeds; the time from `since` to that success. */
export async function firstWrite(url: string, cmd: string, since: number, timeoutMs: number): Promise<number> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    if ((await qemuIo(url, [cmd], 15_000)).ok) return performance.now() - since;
    if (performance.now() > until) throw new Error(`no write succeeded at ${url} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
