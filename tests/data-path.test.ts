// The data path end to end with real clients: `metroctl up` runs the daemons, libiscsi's iscsi-ls
// and iscsi-inq discover and identify the LUNs, qemu-io writes and verifies patterns across every
// LUN, and every completed write survives a SIGKILL of the agent.
import test from 'ava';
import { startCluster, waitSettled, type TestCluster } from './harness/cluster.ts';
import { qemuIo } from './harness/mirror-status.ts';
import { requireTools, run } from './harness/tools.ts';
import { prng, seedFromEnv } from '../common/prng.ts';
import { TestSession } from './harness/initiator.ts';

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

/** Designation descriptors of VPD page 0x83 (SPC-4 7.8.6.1). */
function designators(page: Buffer): Array<{ type: number; value: Buffer }> {
  const out: Array<{ type: number; value: Buffer }> = [];
  for (let at = 4; at + 4 <= page.length; at += 4 + page[at + 3]) out.push({ type: page[at + 1] & 0x0f, value: page.subarray(at + 4, at + 4 + page[at + 3]) });
  return out;
}

/** qemu-io's deadline: a run writes or verifies every extent of a LUN of up to 64 MiB. */
const qemuIoMs = 180_000;

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

  // iscsi-ls: each site's portal lists every group's target at both sites' portals. (Without -s:
  // listing LUNs makes libiscsi send TEST UNIT READY, which a standby port group refuses; the
  // LUNs are listed below with REPORT LUNS and INQUIRY, which standby serves.)
  for (const site of [1, 2] as const) {
    const r = await run('iscsi-ls', [`iscsi://${c.portal(site)}`], { timeoutMs: 30_000 });
    t.is(r.code, 0, r.stderr);
    for (const g of ['db', 'vm']) {
      t.regex(r.stdout, new RegExp(`Target:${c.iqn(g).replace(/\./g, '\\.')} Portal:${c.portal(1).replace(/\./g, '\\.')},1`));
      t.regex(r.stdout, new RegExp(`Target:${c.iqn(g).replace(/\./g, '\\.')} Portal:${c.portal(2).replace(/\./g, '\\.')},2`));
    }
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
  // At site 1 (db's primary) through libiscsi's iscsi-inq. Site 2 is db's secondary, an ALUA
  // standby port group: libiscsi's connect sends TEST UNIT READY, which standby refuses (SPC-4
  // 5.15.2.4.4), so there the pages are read with the raw test initiator, whose INQUIRY works.
  const url = `iscsi://${c.portal(1)}/${c.iqn('db')}/0`;
  const supported = await run('iscsi-inq', ['-e', '1', url], { timeoutMs: 30_000 });
  t.is(supported.code, 0, supported.stderr);
  for (const [code, [name, marker]] of Object.entries(pages)) {
    const hex = `0x${Number(code).toString(16)}`;
    t.true(supported.stdout.includes(`Page:${hex} ${name}`), `page ${hex} listed as supported:\n${supported.stdout}`);
    const r = await run('iscsi-inq', ['-e', '1', '-c', code, url], { timeoutMs: 30_000 });
    t.is(r.code, 0, `VPD ${hex}: ${r.stderr}`);
    t.true(r.stdout.includes(marker), `VPD ${hex} answered:\n${r.stdout}`);
  }
  const identity: Array<{ naa: string; serial: string }> = [];
  for (const site of [1, 2] as const) {
    const [host, port] = c.portal(site).split(':');
    const s = await TestSession.open({ host, port: Number(port), initiatorName: 'iqn.2026-11.org.example:ident', targetName: c.iqn('db') });
    const vpd = async (page: number) => (await s.command(0, Buffer.from([0x12, 1, page, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), { readLength: 256 })).data;
    const serial = (await vpd(0x80)).subarray(4).toString('latin1');
    const lunList = (await s.command(0, Buffer.from([0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]), { readLength: 256 })).data;
    t.deepEqual([lunList.readUInt32BE(0), lunList[9], lunList[17]], [16, 0, 1], `site ${site}: REPORT LUNS lists LUN 0 and 1`);
    for (const lun of [0, 1]) {
      const inq = await s.command(lun, Buffer.from([0x12, 0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), { readLength: 36 });
      t.is(inq.data[0], 0x00, `site ${site} LUN ${lun}: a direct access block device`);
    }
    const ids = designators(await vpd(0x83));
    await s.logout();
    const naa = ids.find((d) => d.type === 3)?.value.toString('hex') ?? '';
    t.is(ids.find((d) => d.type === 5)?.value.readUInt16BE(2), site, `site ${site}: target port group designator`);
    t.is(ids.find((d) => d.type === 4)?.value.readUInt16BE(2), site, `site ${site}: relative target port designator`);
    t.true(ids.some((d) => d.type === 8 && d.value.toString('utf8').replace(/\0+$/, '') === `${c.iqn('db')},t,0x000${site}`), 'the target port name carries the site\'s port number');
    identity.push({ naa, serial });
  }
  t.is(identity[0].naa, identity[1].naa, 'the same NAA designator at both sites');
  t.is(identity[0].serial, identity[1].serial, 'the same unit serial number at both sites');
  t.true(identity[0].naa.length > 0 && identity[0].serial.length > 0);

  // qemu-io: distinct patterns at many offsets and lengths, across every LUN, read back and verified.
  const plans = luns.map((l, i) => ({ ...l, url: `iscsi://${c.portal(l.site)}/${c.iqn(l.group)}/${l.lun}`, extents: planExtents(rand, l.sizeBytes, 0x10 + 0x40 * i) }));
  for (const p of plans) {
    await qemuIo(p.url, p.extents.map((e) => `write -P 0x${e.pattern.toString(16)} ${e.offset} ${e.length}`), qemuIoMs);
  }
  const verify = async (): Promise<void> => {
    for (const p of plans) {
      const out = await qemuIo(p.url, [
        ...p.extents.map((e) => `read -P 0x${e.pattern.toString(16)} ${e.offset} ${e.length}`),
        // the sectors just before each extent were never written and must still read as zeros
        ...p.extents.filter((e) => e.offset >= 512).slice(0, 8).map((e) => `read -P 0 ${e.offset - 512} 512`),
      ], qemuIoMs);
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
  // A primary down longer than its lease has failed over; the restarted site resyncs as secondary
  // (its portal is unavailable until then). Once every group is protected again, all reads back.
  await waitSettled(c.file);
  await verify();

  // Last, after the durability check (it overwrites planned extents): CRC32C header digests
  // (RFC 7143 §13.1) negotiated by qemu's initiator: data moves and the digests check.
  const [host] = c.portal(1).split(':');
  const digestOpts = `driver=iscsi,transport=tcp,portal=${c.portal(1)},target=${c.iqn('db')},lun=1,header-digest=crc32c,initiator-name=iqn.2026-11.org.example:digest`;
  const dig = await run('qemu-io', ['-c', 'write -P 0x6d 12M 2M', '-c', 'read -P 0x6d 12M 2M', '--image-opts', digestOpts], { timeoutMs: 60_000 });
  t.is(dig.code, 0, dig.stdout + dig.stderr);
  t.notRegex(dig.stdout + dig.stderr, /Pattern verification failed|fail/i);
  t.true((await c.logTail('alpha', 400)).split('\n').some((l) => l.includes('"headerDigest":true') && l.includes('org.example:digest')), `the agent logged a login with header digests from ${host}`);
});
