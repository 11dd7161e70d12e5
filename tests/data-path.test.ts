// The data path end to end with real clients: `metroctl up` runs the daemons, libiscsi's iscsi-ls
// and iscsi-inq discover and identify the LUNs, qemu-io writes and verifies patterns across every
// LUN, and every completed write survives a SIGKILL of the agent.
import test from 'ava';
import { startCluster, type TestCluster } from './harness/cluster.ts';
import { requireTools, run } from './harness/tools.ts';
import { prng, seedFromEnv } from './harness/prng.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Extent { offset: number; length: number; pattern: number }

/** Non-overlapping extents from 1 sector to several MiB, most not 4 KiB aligned, with gaps between. */
function planExtents(rand: () => number, sizeBytes: number, firstPattern: number): Extent[] {
  const lengths = [512, 1536, 4 * KiB + 512, 64 * KiB - 512, 128 * KiB, MiB + 512, 3 * MiB + 1024, 5 * MiB];
  const extents: Extent[] = [];
  let offset = 512 * Math.floor(rand() * 8);
  let pattern = firstPattern;
  for (;;) {
    const length = lengths[Math.floor(rand() * lengths.length)];
    if (offset + length > sizeBytes) break;
    extents.push({ offset, length, pattern: pattern++ & 0xff || 0x5a });
    offset += length + 512 * (1 + Math.floor(rand() * 64));
  }
  // The last sector of the volume too: off-by-one at the end is a classic.
  const last = sizeBytes - 512;
  if (!extents.some((e) => e.offset + e.length > last)) extents.push({ offset: last, length: 512, pattern: 0xee });
  return extents;
}

async function qemuIo(url: string, commands: string[]): Promise<string> {
  const args = ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), url];
  const r = await run('qemu-io', args, { timeoutMs: 180_000 });
  const out = r.stdout + r.stderr;
  if (r.code !== 0 || /fail|error/i.test(out)) throw new Error(`qemu-io ${url} exit ${r.code}:\n${out.slice(0, 4000)}`);
  return out;
}

const luns = [
  { group: 'db', lun: 0, sizeBytes: 64 * MiB, site: 1 as const },
  { group: 'db', lun: 1, sizeBytes: 16 * MiB, site: 1 as const },
  { group: 'vm', lun: 0, sizeBytes: 32 * MiB, site: 2 as const },
];

let cluster: TestCluster | undefined;
test.after.always(async () => { await cluster?.stop(); });

test.serial('discovery, identification, patterns across every LUN, and durability across SIGKILL', async (t) => {
  if (!requireTools(t, ['iscsi-ls', 'iscsi-inq', 'qemu-io'])) return;
  const seed = seedFromEnv();
  t.log(`seed ${seed} (METRO_TEST_SEED=${seed} replays it)`);
  const rand = prng(seed);
  cluster = await startCluster();
  const c = cluster;

  // iscsi-ls: each site's portal lists every group's target at both sites' portals.
  for (const site of [1, 2] as const) {
    const r = await run('iscsi-ls', ['-s', `iscsi://${c.portal(site)}`], { timeoutMs: 30_000 });
    t.is(r.code, 0, r.stderr);
    for (const g of ['db', 'vm']) {
      t.regex(r.stdout, new RegExp(`Target:${c.iqn(g).replace(/\./g, '\\.')} Portal:${c.portal(1).replace(/\./g, '\\.')},1`));
      t.regex(r.stdout, new RegExp(`Target:${c.iqn(g).replace(/\./g, '\\.')} Portal:${c.portal(2).replace(/\./g, '\\.')},2`));
    }
    t.regex(r.stdout, /Lun:0\s+Type:DIRECT_ACCESS/);
    t.regex(r.stdout, /Lun:1\s+Type:DIRECT_ACCESS/);
  }

  // iscsi-inq: VPD pages; the NAA designator is the same at both sites, the port group differs.
  const designators: Record<number, string> = {};
  for (const site of [1, 2] as const) {
    const url = `iscsi://${c.portal(site)}/${c.iqn('db')}/0`;
    const supported = await run('iscsi-inq', ['-e', '1', '-c', '0', url], { timeoutMs: 30_000 });
    t.is(supported.code, 0, supported.stderr);
    for (const page of ['0x80', '0x83', '0xb0', '0xb1', '0xb2']) {
      t.regex(supported.stdout, new RegExp(page, 'i'), `page ${page} listed as supported`);
      const r = await run('iscsi-inq', ['-e', '1', '-c', page, url], { timeoutMs: 30_000 });
      t.is(r.code, 0, `VPD ${page}: ${r.stderr}`);
    }
    const id = await run('iscsi-inq', ['-e', '1', '-c', '0x83', url], { timeoutMs: 30_000 });
    designators[site] = id.stdout;
    t.regex(id.stdout, /NAA/i);
    t.regex(id.stdout, /TARGET_PORT_GROUP|target port group/i);
    t.regex(id.stdout, /RELATIVE_TARGET_PORT|relative target port/i);
  }
  const naa = (s: string): string[] => [...s.matchAll(/designator_type:NAA[\s\S]*?designator:\s*(\S+)/gi)].map((m) => m[1]);
  t.true(naa(designators[1]).length > 0, designators[1]);
  t.deepEqual(naa(designators[1]), naa(designators[2]), 'same NAA at both sites');
  t.notDeepEqual(designators[1], designators[2], 'port designators differ between sites');

  // qemu-io: distinct patterns at many offsets and lengths, across every LUN, read back and verified.
  const plans = luns.map((l, i) => ({ ...l, url: `iscsi://${c.portal(l.site)}/${c.iqn(l.group)}/${l.lun}`, extents: planExtents(rand, l.sizeBytes, 0x10 + 0x40 * i) }));
  for (const p of plans) {
    await qemuIo(p.url, p.extents.map((e) => `write -P 0x${e.pattern.toString(16)} ${e.offset} ${e.length}`));
  }
  const verify = async (): Promise<void> => {
    for (const p of plans) {
      const out = await qemuIo(p.url, [
        ...p.extents.map((e) => `read -P 0x${e.pattern.toString(16)} ${e.offset} ${e.length}`),
        // the sectors just before each extent were never written and must still read as zeros
        ...p.extents.filter((e) => e.offset >= 512).slice(0, 8).map((e) => `read -P 0 ${e.offset - 512} 512`),
      ]);
      t.notRegex(out, /Pattern verification failed/, `${p.url}`);
      t.is((out.match(/^read \d+\/\d+ bytes/gm) ?? []).length, p.extents.length + Math.min(8, p.extents.filter((e) => e.offset >= 512).length), p.url);
    }
  };
  await verify();

  // SIGKILL the agent of each site: metroctl up restarts it; every completed write reads back intact.
  for (const site of ['alpha', 'beta']) {
    const pid = c.up.pidOf(`agent ${site}`);
    const mark = c.up.output().length;
    process.kill(pid, 'SIGKILL');
    await c.up.waitFor(new RegExp(`^restarted agent ${site}\\s+pid (\\d+)`, 'm'), 60_000, mark);
    t.not(c.up.pidOf(`agent ${site}`), pid);
  }
  await verify();
});
