// qemu-img bench drives the target at queue depth 32 with 4 KiB writes then reads: the run must
// complete without an I/O error, and the data written by the bench must read back.
import test from 'ava';
import { startCluster, type TestCluster } from './harness/cluster.ts';
import { requireTools, run } from './harness/tools.ts';

let cluster: TestCluster | undefined;
test.after.always(async () => { await cluster?.stop(); });

test.serial('qemu-img bench: 4 KiB writes and reads at queue depth 32 complete without error', async (t) => {
  if (!requireTools(t, ['qemu-img', 'qemu-io'])) return;
  cluster = await startCluster({
    groups: `
  - name: bench
    preferredSite: alpha
    volumes: [ { name: disk, size: 256MiB } ]`,
  });
  const url = `iscsi://${cluster.portal(1)}/${cluster.iqn('bench')}/0`;
  const count = 20_000;
  // -S 4k: sequential 4 KiB steps, so the bench covers count * 4 KiB distinct bytes (byte 0xa5 from --pattern).
  const w = await run('qemu-img', ['bench', '-f', 'raw', '-w', '--pattern=165', '-c', String(count), '-d', '32', '-s', '4096', '-S', '4096', url], { timeoutMs: 300_000 });
  t.is(w.code, 0, w.stdout + w.stderr);
  t.regex(w.stdout, new RegExp(`Sending ${count} write requests, 4096 bytes each, 32 in parallel`));
  t.regex(w.stdout, /Run completed in [\d.]+ seconds/);
  const r = await run('qemu-img', ['bench', '-f', 'raw', '-c', String(count), '-d', '32', '-s', '4096', '-S', '4096', url], { timeoutMs: 300_000 });
  t.is(r.code, 0, r.stdout + r.stderr);
  t.regex(r.stdout, /Run completed in [\d.]+ seconds/);
  t.log(`writes: ${w.stdout.match(/Run completed in ([\d.]+)/)?.[1]} s, reads: ${r.stdout.match(/Run completed in ([\d.]+)/)?.[1]} s for ${count} x 4 KiB at QD32`);
  // What the bench wrote is there: first, middle and last 4 KiB of the written range hold its pattern.
  const end = count * 4096;
  const v = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xa5 0 4096', '-c', `read -P 0xa5 ${end / 2} 4096`, '-c', `read -P 0xa5 ${end - 4096} 4096`, '-c', `read -P 0 ${end} 4096`, url], { timeoutMs: 60_000 });
  t.is(v.code, 0, v.stdout + v.stderr);
  t.notRegex(v.stdout + v.stderr, /Pattern verification failed/);
});
