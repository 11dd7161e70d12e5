// Hostile bytes at a running portal: thousands of mutated and truncated PDUs taken from valid login,
// discovery and I/O exchanges, on many connections at once. The portal must not crash, hang or log a
// transport fault; a well-behaved session on another target keeps working throughout and its data
// stays exactly as it wrote it. Seeded: ISCSI_FUZZ_SEED=<n> replays a run.
import test from 'ava';
import { RawClient, dataOutPdu, loginPdu, logoutPdu, nopOutPdu, scsiCommandPdu, textPdu, tmfPdu, wire } from './test-support.ts';
import { MemoryDevice, initiatorName, login, makeTarget, portalWith } from './portal-test-support.ts';
import type { Pdu } from './pdu.ts';
import { prng } from '../../common/prng.ts';

const iterations = Number(process.env.ISCSI_FUZZ_ITERATIONS ?? 2500);
const workers = 12;
const seed = Number(process.env.ISCSI_FUZZ_SEED ?? Date.now() % 1_000_000_007);

const fuzzTarget = 'iqn.2026-11.io.metrocluster:fuzz.victim';
const keepTarget = 'iqn.2026-11.io.metrocluster:calm.bystander';

const cdb = (bytes: number[]) => bytes;
const normalLogin = (isid: Buffer) =>
  loginPdu({ csg: 1, nsg: 3, transit: true, isid, keys: { InitiatorName: initiatorName, TargetName: fuzzTarget, ImmediateData: 'Yes', InitialR2T: 'No', MaxRecvDataSegmentLength: '65536' } });

/** Login-phase exchanges, mutated whole. */
function loginExchanges(isid: Buffer): Pdu[][] {
  return [
    [normalLogin(isid)],
    [
      loginPdu({ csg: 0, nsg: 1, transit: true, isid, keys: { InitiatorName: initiatorName, TargetName: fuzzTarget, AuthMethod: 'None,CHAP' } }),
      loginPdu({ csg: 1, nsg: 3, transit: true, isid, keys: { HeaderDigest: 'CRC32C,None', DataDigest: 'None', MaxBurstLength: '262144', FirstBurstLength: '65536', MaxOutstandingR2T: '4' } }),
    ],
    [loginPdu({ csg: 1, nsg: 3, transit: true, isid, keys: { InitiatorName: initiatorName, SessionType: 'Discovery' } }), textPdu({ itt: 2, cmdSN: 1, keys: { SendTargets: 'All' } })],
    [
      loginPdu({ csg: 1, nsg: 0, cont: true, isid, data: Buffer.from(`InitiatorName=${initiatorName}\0TargetNa`) }),
      loginPdu({ csg: 1, nsg: 3, transit: true, isid, data: Buffer.from(`me=${fuzzTarget}\0`) }),
    ],
  ];
}

/** Full feature phase exchanges, sent mutated after an intact login. */
function ioExchanges(): Pdu[][] {
  const block = Buffer.alloc(4096, 0x5a);
  return [
    [scsiCommandPdu({ itt: 1, cmdSN: 1, cdb: cdb([0x12, 0, 0, 0, 96, 0]), read: true, edtl: 96 }), scsiCommandPdu({ itt: 2, cmdSN: 2, cdb: cdb([0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0]), read: true, edtl: 4096 })],
    [scsiCommandPdu({ itt: 3, cmdSN: 1, cdb: cdb([0x2a, 0, 0, 0, 0, 16, 0, 0, 8, 0]), write: true, edtl: 4096, data: block })],
    [
      scsiCommandPdu({ itt: 4, cmdSN: 1, cdb: cdb([0x2a, 0, 0, 0, 0, 32, 0, 0, 16, 0]), write: true, final: false, edtl: 8192, data: block.subarray(0, 1024) }),
      dataOutPdu({ itt: 4, ttt: 0xffffffff, offset: 1024, data: block.subarray(0, 3072), final: true }),
      dataOutPdu({ itt: 4, ttt: 1, offset: 4096, data: block, final: true }),
    ],
    [nopOutPdu({ itt: 5, cmdSN: 1, data: Buffer.from('are you there') }), nopOutPdu({ itt: 0xffffffff, ttt: 1, cmdSN: 2, immediate: true })],
    [textPdu({ itt: 6, cmdSN: 1, keys: { SendTargets: '', MaxRecvDataSegmentLength: '4096' } })],
    [scsiCommandPdu({ itt: 7, cmdSN: 1, cdb: cdb([0x28, 0, 0, 0, 0, 0, 0, 0, 64, 0]), read: true, edtl: 32768 }), tmfPdu({ itt: 8, cmdSN: 2, fn: 1, refItt: 7, refCmdSN: 1 }), tmfPdu({ itt: 9, cmdSN: 2, fn: 5 })],
    [logoutPdu({ itt: 10, cmdSN: 1 })],
  ];
}

function mutate(bytes: Buffer, rnd: () => number): Buffer {
  let b = Buffer.from(bytes);
  const pick = (n: number) => Math.floor(rnd() * n);
  const count = 1 + pick(3);
  for (let i = 0; i < count && b.length > 0; i++) {
    // Header fields are where parsers break: aim there most of the time.
    const at = rnd() < 0.7 ? (pick(Math.ceil(b.length / 48)) * 48 + pick(48)) % b.length : pick(b.length);
    switch (pick(8)) {
      case 0:
        b[at] ^= 1 << pick(8);
        break;
      case 1:
        b[at] = pick(256);
        break;
      case 2:
        b = b.subarray(0, at);
        break;
      case 3: {
        const pduAt = at - (at % 48);
        if (pduAt + 8 <= b.length) b.writeUIntBE(pick(1 << 24), pduAt + 5, 3); // DataSegmentLength
        break;
      }
      case 4: {
        const pduAt = at - (at % 48);
        if (pduAt + 5 <= b.length) b[pduAt + 4] = pick(256); // TotalAHSLength
        break;
      }
      case 5:
        b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + pick(64) }, () => pick(256))), b.subarray(at)]);
        break;
      case 6:
        b = Buffer.concat([b, b.subarray(0, Math.min(b.length, 48 + pick(200)))]);
        break;
      case 7:
        b[at - (at % 48)] = pick(64) | (rnd() < 0.5 ? 0x40 : 0); // opcode
        break;
    }
  }
  return b;
}

/** Sends bytes in random chunk sizes. */
async function spray(client: RawClient, bytes: Buffer, rnd: () => number): Promise<void> {
  let at = 0;
  while (at < bytes.length && !client.closed) {
    const n = 1 + Math.floor(rnd() * (rnd() < 0.3 ? 8 : 4096));
    client.socket.write(bytes.subarray(at, at + n));
    at += n;
    if (rnd() < 0.1) await new Promise((r) => setImmediate(r));
  }
}

/** What the fuzzed connections saw, by target opcode: shows the fuzz reaches past the login. */
const seen = new Map<string, number>();

async function fuzzOne(port: number, rnd: () => number, id: number): Promise<'closed' | 'hung'> {
  const isid = Buffer.from([0x80, 0x01, 0, 0, (id >> 8) & 0xff, id & 0xff]);
  const client = await RawClient.connect(port);
  if (rnd() < 0.4) {
    const exchanges = loginExchanges(isid);
    const ex = exchanges[Math.floor(rnd() * exchanges.length)];
    await spray(client, mutate(Buffer.concat(ex.map((p) => wire(p.bhs, p.data))), rnd), rnd);
  } else {
    client.send(normalLogin(isid));
    const resp = await client.next(2000);
    if (resp?.opcode === 0x23 && resp.bhs.readUInt16BE(36) === 0) {
      const exchanges = ioExchanges();
      const ex = exchanges[Math.floor(rnd() * exchanges.length)];
      await spray(client, mutate(Buffer.concat(ex.map((p) => wire(p.bhs, p.data))), rnd), rnd);
    }
  }
  await new Promise((r) => setTimeout(r, Math.floor(rnd() * 20)));
  for (let p = await client.next(0); p !== undefined; p = await client.next(0)) {
    const name = `0x${p.opcode.toString(16)}`;
    seen.set(name, (seen.get(name) ?? 0) + 1);
  }
  client.socket.end(); // our FIN: whatever state the target is in, the connection must end
  const closed = await Promise.race([client.closedPromise.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
  client.close();
  return closed ? 'closed' : 'hung';
}

test(`seeded PDU fuzz (seed ${seed}): no crash, no hang, no transport fault; another session keeps working`, async (t) => {
  t.timeout(180_000);
  t.log(`ISCSI_FUZZ_SEED=${seed} ISCSI_FUZZ_ITERATIONS=${iterations}`);
  const victim = new MemoryDevice(4 << 20);
  const calm = new MemoryDevice(4 << 20);
  const { portal, port, log } = await portalWith({
    targets: [makeTarget(fuzzTarget, [victim]), makeTarget(keepTarget, [calm])],
    limits: { loginTimeoutMs: 2000, nopInIntervalMs: 1000, nopInTimeoutMs: 2000 },
  });
  t.teardown(() => portal.close());

  // The bystander: writes and verifies its own blocks for as long as the fuzz runs.
  const { client: good, resp } = await login(port, keepTarget, { isid: Buffer.from([0x80, 0x02, 0, 0, 0, 1]), name: 'iqn.2026-11.org.example:bystander' });
  t.is(resp?.bhs.readUInt16BE(36), 0);
  const model = new Map<number, Buffer>();
  let running = true;
  let goodOps = 0;
  const goodFailures: string[] = [];
  const bystander = (async () => {
    const rnd = prng(seed ^ 0x5eed);
    let sn = 1;
    let itt = 1;
    while (running) {
      const lba = 8 * Math.floor(rnd() * 256);
      const data = Buffer.from(Array.from({ length: 4096 }, () => Math.floor(rnd() * 256)));
      const cdbW = [0x2a, 0, 0, 0, (lba >> 8) & 0xff, lba & 0xff, 0, 0, 8, 0];
      good.send(scsiCommandPdu({ itt: itt++, cmdSN: sn++, cdb: cdbW, write: true, edtl: 4096, data }));
      let status = await statusOf(good);
      if (status === 2) {
        // the power-on unit attention of a new nexus: once
        good.send(scsiCommandPdu({ itt: itt++, cmdSN: sn++, cdb: cdbW, write: true, edtl: 4096, data }));
        status = await statusOf(good);
      }
      if (status !== 0) {
        goodFailures.push(`write status ${status}`);
        break;
      }
      model.set(lba, data);
      good.send(scsiCommandPdu({ itt: itt++, cmdSN: sn++, cdb: [0x28, 0, 0, 0, (lba >> 8) & 0xff, lba & 0xff, 0, 0, 8, 0], read: true, edtl: 4096 }));
      const back = await dataOf(good);
      if (back === undefined || !back.equals(data)) {
        goodFailures.push(`read back of LBA ${lba} differs`);
        break;
      }
      goodOps++;
    }
  })();

  let next = 0;
  const hung: number[] = [];
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = next++; i < iterations; i = next++) {
        const rnd = prng(seed + i * 7919);
        if ((await fuzzOne(port, rnd, i)) === 'hung') hung.push(i);
      }
      void w;
    }),
  );
  running = false;
  await bystander;
  t.log('target PDUs seen by fuzzed connections:', JSON.stringify(Object.fromEntries([...seen].sort())));

  t.deepEqual(hung, [], 'every fuzzed connection ended once the initiator closed its side');
  t.deepEqual(goodFailures, []);
  t.true(goodOps > 10, `the bystander completed ${goodOps} write+read pairs during the fuzz`);
  t.deepEqual(log.errors(), [], 'no transport fault');
  for (const [lba, data] of model) t.true(calm.bytes.subarray(lba * 512, lba * 512 + 4096).equals(data), `bystander block ${lba}`);
  const untouched = [...Array(calm.bytes.length / 4096).keys()].filter((k) => !model.has(k * 8));
  t.true(untouched.every((k) => calm.bytes.subarray(k * 4096, k * 4096 + 4096).every((x) => x === 0)), 'no other block of the bystander changed');

  // And the portal still takes a new login and answers.
  const after = await login(port, fuzzTarget, { isid: Buffer.from([0x80, 0x03, 0, 0, 0, 1]) });
  t.is(after.resp?.bhs.readUInt16BE(36), 0);
  after.client.send(nopOutPdu({ itt: 77, cmdSN: 1, immediate: true }));
  t.is((await after.client.next())?.itt, 77);
  after.client.close();
  good.close();
});

async function statusOf(c: RawClient): Promise<number | undefined> {
  for (;;) {
    const p = await c.next(10_000);
    if (p === undefined) return undefined;
    if (p.opcode === 0x21) return p.bhs[3];
    if (p.opcode === 0x20 && p.itt === 0xffffffff) c.send(nopOutPdu({ itt: 0xffffffff, ttt: p.ttt, cmdSN: 0, immediate: true }));
  }
}

async function dataOf(c: RawClient): Promise<Buffer | undefined> {
  const parts: Buffer[] = [];
  for (;;) {
    const p = await c.next(10_000);
    if (p === undefined) return undefined;
    if (p.opcode === 0x20 && p.itt === 0xffffffff) c.send(nopOutPdu({ itt: 0xffffffff, ttt: p.ttt, cmdSN: 0, immediate: true }));
    if (p.opcode === 0x25) {
      parts.push(p.data);
      if (p.flags & 1) return p.bhs[3] === 0 ? Buffer.concat(parts) : undefined;
    }
    if (p.opcode === 0x21) return undefined;
  }
}
