// The probe's session logging in over TCP to the agent's own portal code, in process (a portal on
// 127.0.0.1 port 0 over memory devices): CHAP one-way and mutual, the refusals an admin would meet
// (wrong secret, no CHAP at a CHAP target, a target that cannot prove the target secret, an
// initiator outside the allow-list), and a READ + COMPARE AND WRITE on an authenticated session.
import test from 'ava';
import { ProbeSession, ProbeLoginRefused, cdbs } from './probe-session.ts';
import { IoProbe } from './io-probe.ts';
import type { ProbeChapCredentials } from './probe-chap.ts';
import { portalWith, makeTarget, MemoryDevice, targetA, initiatorName } from '../../node-agent/iscsi/portal-test-support.ts';
import type { ChapCredentials } from '../../node-agent/iscsi/chap.ts';

const target: ChapCredentials = { user: 'host1', secret: 'initiator-secret-1', mutual: { user: 'metro', secret: 'target-secret-22' } };
const oneWay: ProbeChapCredentials = { user: 'host1', secret: 'initiator-secret-1' };
const mutual: ProbeChapCredentials = { ...oneWay, mutual: { user: 'metro', secret: 'target-secret-22' } };

async function withPortal<T>(o: { chap?: ChapCredentials; initiators?: string[] }, f: (port: number, device: MemoryDevice) => Promise<T>): Promise<{ result: T; logText: string }> {
  const device = new MemoryDevice(1 << 20);
  const { portal, port, log } = await portalWith({ targets: [makeTarget(targetA, [device])], ...o });
  try {
    const result = await f(port, device);
    return { result, logText: JSON.stringify(log.lines) };
  } finally {
    await portal.close();
  }
}

/** A new I_T nexus first meets a unit attention (power on, reset: SAM-5 5.14): the command again. */
async function command(s: ProbeSession, cdb: Buffer, o: { readBytes?: number; dataOut?: Buffer }) {
  for (let i = 0; ; i++) {
    const r = await s.command(cdb, o);
    if (r.status !== 2 || r.sense?.key !== 0x6 || i >= 3) return r;
  }
}

const open = (port: number, chap?: ProbeChapCredentials, initiator = initiatorName) =>
  ProbeSession.open({ host: '127.0.0.1', port, initiator, target: targetA, timeoutMs: 5000, chap });

test('with one-way CHAP the probe logs in, reads the last block and writes it back unchanged', async (t) => {
  const { logText } = await withPortal({ chap: { user: target.user, secret: target.secret }, initiators: [initiatorName] }, async (port, device) => {
    device.bytes.fill(0x3c, device.sizeBytes - 512);
    const s = await open(port, oneWay);
    try {
      const cap = await command(s, cdbs.readCapacity10(), { readBytes: 8 });
      t.is(cap.status, 0);
      const lba = cap.data.readUInt32BE(0);
      const r = await command(s, cdbs.read10(lba, 1), { readBytes: 512 });
      t.is(r.status, 0);
      t.true(r.data.equals(Buffer.alloc(512, 0x3c)));
      const writesBefore = device.writes;
      const w = await command(s, cdbs.compareAndWrite(lba), { dataOut: Buffer.concat([r.data, r.data]) });
      t.is(w.status, 0);
      t.true(device.writes > writesBefore, 'the COMPARE AND WRITE reached the device');
      t.true(device.bytes.subarray(device.sizeBytes - 512).equals(Buffer.alloc(512, 0x3c)), 'and left the data as it was');
    } finally {
      await s.logout();
    }
  });
  t.false(logText.includes(target.secret), 'the portal logged no secret');
});

test('with mutual CHAP the probe logs in once the target proves the target secret', async (t) => {
  await withPortal({ chap: target }, async (port) => {
    const s = await open(port, mutual);
    const r = await command(s, cdbs.readCapacity10(), { readBytes: 8 });
    t.is(r.status, 0);
    await s.logout();
  });
});

test('an IoProbe with CHAP serves I/O and records its acknowledged writes', async (t) => {
  await withPortal({ chap: target }, async (port, device) => {
    device.bytes.fill(0x77, device.sizeBytes - 512);
    let now = 0;
    const probe = new IoProbe({ paths: [{ site: 'alpha', host: '127.0.0.1', port }], target: targetA, initiator: initiatorName, lun: 0, commandTimeoutMs: 5000, now: () => ++now, chap: mutual });
    t.is(await probe.checkLogins(), null);
    probe.start();
    try {
      t.true(await probe.warm(10, 10_000));
    } finally {
      await probe.stop();
    }
    const ack = probe.lastAckBefore(Number.MAX_SAFE_INTEGER);
    t.truthy(ack);
    t.is(ack?.site, 'alpha');
    t.true(ack?.data.equals(Buffer.alloc(512, 0x77)));
    t.is(probe.lastAckBefore(0), null, 'no write was acknowledged before the probe started');
  });
});

const refused: Array<[string, { chap?: ChapCredentials; initiators?: string[] }, ProbeChapCredentials | undefined, RegExp]> = [
  ['a wrong secret', { chap: target }, { ...oneWay, secret: 'wrong-secret-000' }, /login status 0x0201\): authentication failed: the target did not accept the CHAP user and secret/],
  ['no CHAP at a target that requires it', { chap: target }, undefined, /login status 0x0201\): authentication failed: the target requires CHAP and the probe logged in without it/],
  ['an initiator outside the allow-list', { chap: target, initiators: ['iqn.2026-11.org.example:host1'] }, oneWay, /login status 0x0202\): authorization failure/],
];
for (const [name, portal, creds, reason] of refused) {
  test(`the target refuses the probe's login with ${name}, and the probe says so`, async (t) => {
    const { logText } = await withPortal(portal, async (port) => {
      const err = await t.throwsAsync(open(port, creds), { instanceOf: ProbeLoginRefused });
      t.regex(err?.message ?? '', reason);
      t.true((err as ProbeLoginRefused).initiatorError);
    });
    t.false(logText.includes(target.secret), 'the portal logged no secret');
  });
}

test('the probe refuses a target that cannot prove the target secret (mutual CHAP)', async (t) => {
  await withPortal({ chap: { ...target, mutual: { user: 'metro', secret: 'impostor-secret-9' } } }, async (port) => {
    const err = await t.throwsAsync(open(port, mutual));
    t.regex(err?.message ?? '', /CHAP with .*: the target "metro" did not prove access\.chap\.mutual's secret/);
    t.false((err?.message ?? '').includes('impostor-secret-9'));
  });
});

test('checkLogins names the portal that refused the probe', async (t) => {
  await withPortal({ chap: target }, async (port) => {
    const probe = new IoProbe({ paths: [{ site: 'beta', host: '127.0.0.1', port }], target: targetA, initiator: initiatorName, lun: 0, commandTimeoutMs: 5000, now: () => performance.now(), chap: { ...oneWay, secret: 'wrong-secret-000' } });
    t.regex(await probe.checkLogins() ?? '', new RegExp(`^the probe initiator cannot log in at beta's portal 127\\.0\\.0\\.1:${port}: login to ${targetA} refused \\(login status 0x0201\\)`));
  });
});
