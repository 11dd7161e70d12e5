// One hostile host against a running agent's iSCSI portal: many sessions from one initiator name past
// its limit, login PDUs declaring huge data segments, logins that never finish, and slowloris
// connections trickling a login byte by byte, all at once. Throughout, a well-behaved initiator
// (libiscsi's iscsi-inq, and a session doing writes and reads) keeps logging in and doing I/O
// promptly; every hostile connection is refused or closed with the right login status; the agent's
// memory stays bounded.
import test from 'ava';
import fs from 'node:fs/promises';
import net from 'node:net';
import { startCluster, type TestCluster } from './harness/cluster.ts';
import { requireTools, run } from './harness/tools.ts';
import { TestSession, loginRequest } from './harness/initiator.ts';

const limits = { sessionsPerInitiatorMax: 4, loginsInProgressMax: 16, loginTimeoutMs: 3000, connectionsMax: 64 };
const hostileMs = 15_000;
/** More than connectionsMax: unbounded unfinished logins would lock everyone else out. */
const stuckConnections = 80;
const slowConnections = 8;
const greedySessions = 10;
/** A prompt login and I/O take milliseconds; this bound allows for a loaded CI machine. */
const promptMs = 10_000;
// Bounded state is a few MiB; a connection pinning a 256 KiB segment would take ~170 MiB over a run.
const rssGrowthBytesMax = 80 * 1024 * 1024;

let cluster: TestCluster | undefined;
test.after.always(async () => { await cluster?.stop(); });

test.serial('a hostile host cannot exhaust the portal: a well-behaved initiator keeps logging in and doing I/O', async (t) => {
  t.timeout(180_000);
  if (!requireTools(t, ['iscsi-inq'])) return;
  cluster = await startCluster({
    groups: `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 16MiB } ]`,
    access: `access: { limits: { sessionsPerInitiatorMax: ${limits.sessionsPerInitiatorMax}, loginsInProgressMax: ${limits.loginsInProgressMax}, loginTimeoutMs: ${limits.loginTimeoutMs}, connectionsMax: ${limits.connectionsMax} } }`,
  });
  const c = cluster;
  const host = c.host(1);
  const port = 3260;
  const target = c.iqn('db');
  // The hostile host: other loopback addresses of this machine, one per kind of abuse (a flood from
  // one address displaces that address's own logins in progress, by design).
  const hostile = (n: number) => host.replace(/\.1$/, `.${n}`);
  const pid = c.up.pidOf('agent alpha');

  const good = await TestSession.open({ host, port, initiatorName: 'iqn.2026-11.org.example:good', targetName: target });
  await good.command(0, Buffer.from([0, 0, 0, 0, 0, 0])).catch(() => undefined); // the power-on unit attention
  const rssBefore = await rssBytes(pid);

  const until = Date.now() + hostileMs;
  const stop = () => Date.now() >= until;
  const [greedy, oversized, stuck, slow, wellBehaved] = await Promise.all([
    greedyInitiator(host, port, target, hostile(76)),
    oversizedLogins(host, port, hostile(78), stop),
    neverFinished(host, port, hostile(77), stop),
    slowloris(host, port, target, hostile(79)),
    wellBehavedInitiator(c, good, stop),
  ]);

  t.log(`well-behaved: ${wellBehaved.inq.length} iscsi-inq logins (slowest ${Math.max(...wellBehaved.inq)} ms), ${wellBehaved.io.length} write+read pairs (slowest ${Math.max(...wellBehaved.io)} ms)`);
  t.log(`hostile: ${greedy.ok} sessions held, ${greedy.refused.length} refused; ${oversized.refused} oversized logins refused; ${stuck.opened} never-finished connections opened, ${stuck.openAtEnd} open at the end; slowloris lifetimes ${slow.lifetimesMs.join(', ')} ms`);

  t.true(wellBehaved.failures.length === 0, `the well-behaved initiator failed: ${wellBehaved.failures.slice(0, 5).join('; ')}`);
  t.true(wellBehaved.inq.length >= 5, 'it kept logging in throughout');
  t.true(Math.max(...wellBehaved.inq) < promptMs, `a login took ${Math.max(...wellBehaved.inq)} ms`);
  t.true(Math.max(...wellBehaved.io) < promptMs, `an I/O took ${Math.max(...wellBehaved.io)} ms`);

  t.is(greedy.ok, limits.sessionsPerInitiatorMax, 'one initiator holds at most its sessions');
  t.deepEqual(new Set(greedy.refused), new Set(['class 3 detail 2']), 'the rest are refused: out of resources (RFC 7143 §11.13.5)');
  t.true(oversized.refused > 0 && oversized.other.length === 0, `oversized logins answered ${oversized.other.slice(0, 5).join(', ')} (${oversized.other.length} in all)`);
  t.true(stuck.openAtEnd <= limits.loginsInProgressMax, `${stuck.openAtEnd} unfinished logins still open`);
  // Trickled to the end, a login would take a minute; the timeout (checked each second) ends it far
  // sooner, even on a loaded machine.
  t.true(slow.lifetimesMs.every((ms) => ms < 2 * limits.loginTimeoutMs + 3000), `slowloris connections lived ${slow.lifetimesMs.join(', ')} ms`);

  const rssAfter = await rssBytes(pid);
  t.log(`agent RSS ${(rssBefore / 2 ** 20).toFixed(1)} MiB before, ${(rssAfter / 2 ** 20).toFixed(1)} MiB after`);
  t.true(rssAfter - rssBefore < rssGrowthBytesMax, `RSS grew by ${rssAfter - rssBefore} bytes`);
  t.is(c.up.pidOf('agent alpha'), pid, 'the agent did not restart');
  const log = await fs.readFile(`${c.dir}/data/alpha/logs/agent.log`, 'utf8');
  t.regex(log, /iSCSI login refused/);
  t.true(log.split('\n').filter((l) => l.includes('iSCSI login')).length < 2000, 'refusals are rate-limited in the log');
  for (const s of greedy.sessions) s.destroy();
  good.destroy();
});

// ---------------------------------------------------------------- the well-behaved initiator

/** As a host does: a UNIT ATTENTION (sense key 6: e.g. the peer's ALUA state changed once the
 *  initial resync finished) reports an event, and the command is sent again; anything else counts. */
async function commandAsHost(session: TestSession, cdb: Buffer, opts: Parameters<TestSession['command']>[2]) {
  for (let attempt = 0; ; attempt++) {
    const r = await session.command(0, cdb, opts);
    const senseKey = r.sense.length > 2 ? r.sense[2] & 0x0f : -1;
    if (r.status === 2 && senseKey === 6 && attempt < 3) continue;
    return r;
  }
}

async function wellBehavedInitiator(c: TestCluster, session: TestSession, stop: () => boolean) {
  const inq: number[] = [];
  const io: number[] = [];
  const failures: string[] = [];
  const url = `iscsi://${c.portal(1)}/${c.iqn('db')}/0`;
  const ioLoop = (async () => {
    for (let lba = 0; !stop(); lba = (lba + 8) % 4096) {
      const data = Buffer.alloc(4096, lba & 0xff);
      const start = Date.now();
      try {
        const w = await commandAsHost(session, cdb10(0x2a, lba, 8), { dataOut: data });
        const r = await commandAsHost(session, cdb10(0x28, lba, 8), { readLength: 4096 });
        if (w.status !== 0 || r.status !== 0 || !r.data.equals(data)) failures.push(`I/O at ${lba}: status ${w.status}/${r.status} sense ${w.sense.toString('hex')}/${r.sense.toString('hex')}`);
      } catch (err) {
        failures.push(`I/O at ${lba}: ${(err as Error).message}`);
        return;
      }
      io.push(Date.now() - start);
      await sleep(100);
    }
  })();
  while (!stop()) {
    const start = Date.now();
    const r = await run('iscsi-inq', ['-i', 'iqn.2026-11.org.example:good-inq', url], { timeoutMs: 30_000 });
    inq.push(Date.now() - start);
    if (r.code !== 0) failures.push(`iscsi-inq exit ${r.code}: ${(r.stdout + r.stderr).slice(0, 200)}`);
    await sleep(300);
  }
  await ioLoop;
  return { inq, io, failures };
}

function cdb10(op: number, lba: number, blocks: number): Buffer {
  const b = Buffer.alloc(10);
  b[0] = op;
  b.writeUInt32BE(lba, 2);
  b.writeUInt16BE(blocks, 7);
  return b;
}

// ---------------------------------------------------------------- the hostile host

/** One initiator name opening more sessions than it may hold; they stay logged in. */
async function greedyInitiator(host: string, port: number, target: string, from: string) {
  const sessions: TestSession[] = [];
  const refused: string[] = [];
  for (let i = 0; i < greedySessions; i++) {
    try {
      sessions.push(await TestSession.open({ host, port, initiatorName: 'iqn.2026-11.org.example:greedy', targetName: target, isid: Buffer.from([0x80, 0, 0, 0, 0, i]), localAddress: from }));
    } catch (err) {
      const m = /status class (\d+) detail (\d+)/.exec((err as Error).message);
      refused.push(m ? `class ${m[1]} detail ${m[2]}` : (err as Error).message);
    }
  }
  return { ok: sessions.length, refused, sessions };
}

/** Login PDUs whose header declares a 16 MiB data segment, followed by a stream of bytes. */
async function oversizedLogins(host: string, port: number, from: string, stop: () => boolean) {
  let refused = 0;
  const other: string[] = [];
  while (!stop()) {
    const s = await connect(host, port, from);
    const bhs = loginRequest({ isid: Buffer.from([0x80, 1, 2, 3, 4, 5]), itt: 7, cmdSN: 1, expStatSN: 0, csg: 0, nsg: 3, transit: true, keys: {} }).subarray(0, 48);
    bhs.writeUIntBE(0xffffff, 5, 3);
    const answer = firstBytes(s, 48);
    s.write(bhs);
    const junk = Buffer.alloc(64 * 1024, 0x41);
    for (let i = 0; i < 16 && !s.destroyed; i++) s.write(junk);
    const resp = await answer;
    if (resp && resp[0] === 0x23 && resp[36] === 2 && resp[37] === 0) refused++;
    else other.push(resp ? `opcode 0x${resp[0].toString(16)} status ${resp[36]}/${resp[37]}` : 'no answer');
    s.destroy();
    await sleep(50);
  }
  return { refused, other };
}

/** Connections that send a third of a login header and nothing more; reopened when closed. */
async function neverFinished(host: string, port: number, from: string, stop: () => boolean) {
  const open = new Set<net.Socket>();
  let opened = 0;
  const keep = async (): Promise<void> => {
    while (!stop()) {
      const s = await connect(host, port, from);
      opened++;
      open.add(s);
      s.write(Buffer.alloc(16, 0x43));
      await new Promise<void>((resolve) => s.once('close', () => resolve()));
      open.delete(s);
      await sleep(200);
    }
  };
  const loops = Array.from({ length: stuckConnections }, () => keep().catch(() => undefined));
  await new Promise<void>((resolve) => { const timer = setInterval(() => { if (stop()) { clearInterval(timer); resolve(); } }, 100); });
  await sleep(500); // closes in flight arrive
  const openAtEnd = [...open].filter((s) => !s.destroyed).length;
  for (const s of open) s.destroy();
  await Promise.all(loops);
  return { opened, openAtEnd };
}

/** Valid login PDUs sent one byte every 300 ms: closed by the login timeout or for a newer login. */
async function slowloris(host: string, port: number, target: string, from: string) {
  const lifetimesMs = await Promise.all(Array.from({ length: slowConnections }, async (_, i) => {
    const s = await connect(host, port, from);
    const start = Date.now();
    const bytes = loginRequest({ isid: Buffer.from([0x80, 9, 9, 9, 9, i]), itt: 1, cmdSN: 1, expStatSN: 0, csg: 0, nsg: 3, transit: true, keys: { InitiatorName: 'iqn.2026-11.org.example:slow', TargetName: target, SessionType: 'Normal', AuthMethod: 'None' } });
    for (let at = 0; at < bytes.length && !s.destroyed; at++) {
      s.write(bytes.subarray(at, at + 1));
      await sleep(300);
    }
    if (!s.destroyed) await new Promise<void>((resolve) => s.once('close', () => resolve()));
    return Date.now() - start;
  }));
  return { lifetimesMs };
}

function connect(host: string, port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, localAddress });
    s.once('connect', () => { s.off('error', reject); s.on('error', () => undefined); resolve(s); });
    s.once('error', reject);
    s.on('close', () => s.destroy());
  });
}

/** The first n bytes the target sends, or undefined if it closes first (or in 5 s). */
function firstBytes(s: net.Socket, n: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(() => resolve(undefined), 5000);
    s.on('data', (d: Buffer) => {
      parts.push(d);
      got += d.length;
      if (got >= n) { clearTimeout(timer); resolve(Buffer.concat(parts).subarray(0, n)); }
    });
    s.once('close', () => { clearTimeout(timer); resolve(got >= n ? Buffer.concat(parts).subarray(0, n) : undefined); });
  });
}

async function rssBytes(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
