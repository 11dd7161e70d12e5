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

  // iscsi-inq: VPD pages; the NAA designator is the same at both sites, the target port differs.
  // (iscsi-inq reads its page code with atoi: decimal only.)
  const pages: Record<number, [string, string]> = {
    0x80: ['UNIT_SERIAL_NUMBER', 'Unit Serial Number:['],
    0x83: ['DEVICE_IDENTIFICATION', 'Page Code:(0x83) DEVICE_IDENTIFICATION'],
    0xb0: ['BLOCK_LIMITS', 'maximum transfer length:'],
    0xb1: ['BLOCK_DEVICE_CHARACTERISTICS', 'Medium Rotation Rate:1RPM'], // 1 = non-rotating medium
    0xb2: ['LOGICAL_BLOCK_PROVISIONING', 'provisioning type:'],
  };
  const serials: string[] = [];
  const identification: Record<number, string> = {};
  for (const site of [1, 2] as const) {
    const url = `iscsi://${c.portal(site)}/${c.iqn('db')}/0`;
    const supported = await run('iscsi-inq', ['-e', '1', url], { timeoutMs: 30_000 });
    t.is(supported.code, 0, supported.stderr);
    for (const [code, [name, marker]] of Object.entries(pages)) {
      const hex = `0x${Number(code).toString(16)}`;
      t.true(supported.stdout.includes(`Page:${hex} ${name}`), `page ${hex} listed as supported:\n${supported.stdout}`);
      const r = await run('iscsi-inq', ['-e', '1', '-c', code, url], { timeoutMs: 30_000 });
      t.is(r.code, 0, `VPD ${hex}: ${r.stderr}`);
      t.true(r.stdout.includes(marker), `VPD ${hex} answered:\n${r.stdout}`);
      if (Number(code) === 0x80) serials.push(/Unit Serial Number:\[(.*)\]/.exec(r.stdout)?.[1] ?? '');
    }
    identification[site] = (await run('iscsi-inq', ['-e', '1', '-c', String(0x83), url], { timeoutMs: 30_000 })).stdout;
  }
  const designator = (out: string, type: string): string | undefined =>
    new RegExp(`Designator Type:\\(\\d\\) ${type}\\nDesignator:\\[([\\s\\S]*?)\\]\\n`).exec(out)?.[1];
  for (const site of [1, 2] as const) {
    for (const type of ['NAA', 'TARGET_PORT_GROUP', 'RELATIVE_TARGET_PORT']) {
      t.truthy(designator(identification[site], type) !== undefined, `site ${site} VPD 0x83 has a ${type} designator:\n${identification[site]}`);
    }
    t.true(identification[site].includes(`Designator:[${c.iqn('db')},t,0x000${site}]`), 'the target port name carries the site\'s port number');
  }
  t.is(designator(identification[1], 'NAA'), designator(identification[2], 'NAA'), 'the same NAA designator at both sites');
  t.is(serials.length, 2);
  t.is(serials[0], serials[1], 'the same unit serial number at both sites');
  t.true(serials[0].length > 0);

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

  // CRC32C header digests (RFC 7143 §13.1) negotiated by qemu's initiator: data moves, digests check.
  const [host] = c.portal(1).split(':');
  const digestOpts = `driver=iscsi,transport=tcp,portal=${c.portal(1)},target=${c.iqn('db')},lun=1,header-digest=crc32c,initiator-name=iqn.2026-11.org.example:digest`;
  const dig = await run('qemu-io', ['-c', 'write -P 0x6d 12M 2M', '-c', 'read -P 0x6d 12M 2M', '--image-opts', digestOpts], { timeoutMs: 60_000 });
  t.is(dig.code, 0, dig.stdout + dig.stderr);
  t.notRegex(dig.stdout + dig.stderr, /Pattern verification failed|fail/i);
  t.true((await c.logTail('alpha', 400)).split('\n').some((l) => l.includes('"headerDigest":true') && l.includes('org.example:digest')), `the agent logged a login with header digests from ${host}`);

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
