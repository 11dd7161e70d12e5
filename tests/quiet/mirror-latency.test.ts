// Latency awareness of the adaptive policy (issue: "a slow link turns an adaptive group async within
// 2 s, a healed one back to sync after the hold-down, a flapping one does not flap the mode"), with
// the mirror link through a real TCP proxy (tests/harness/tcp-proxy.ts, in a process of its own)
// that beta's routes.peer names. syncMaxRttMs is 5 ms against a 20 ms delayed round trip (the
// issue's figures), and this runs in the quiet phase (ava.quiet.config.js): alone on the machine.
// A gRPC round trip between two agents is about 2 ms at the 90th percentile here, and a busy
// machine (a CI runner's neighbours) can stretch it past the limit for a moment, so the test first
// waits for the healthy sync state it measures from. Progress is polled over gRPC, the primary's
// alone, twice a second (a metroctl process per poll, or busier polling, would load the machine it
// measures); `metroctl status -o json` is read where an admin would look.
import test from 'ava';
import { agentStatusReader, startCluster, type StatusGroup, type TestCluster } from '../harness/cluster.ts';
import { startTcpProxyProcess, type TcpProxy } from '../harness/tcp-proxy.ts';
import { qemuIoFailed, requireTools, run } from '../harness/tools.ts';
import { groupStatus, logEvents } from '../harness/mirror-status.ts';

let cluster: TestCluster | undefined;
let proxy: TcpProxy | undefined;
test.after.always(async () => {
  await cluster?.stop();
  await proxy?.close();
});

const proxyPort = 17401;

/** When the primary's log says the group's mode changed to `to`, at or after sinceMs (epoch ms). */
async function modeChangedAt(c: TestCluster, to: 'sync' | 'async', sinceMs: number): Promise<number | undefined> {
  const events = await logEvents(c, 'alpha', 'mirror mode changed');
  const e = events.find((x) => x.to === to && Date.parse(x.timestamp) >= sinceMs);
  return e ? Date.parse(e.timestamp) : undefined;
}

test.serial('latency: 10 ms each way turns an adaptive group async within 2 s with its lag shown; healed, sync after the hold-down; a flapping delay does not flap it', async (t) => {
  if (!requireTools(t, ['qemu-io'])) return;
  t.timeout(300_000);
  cluster = await startCluster({
    groups: `
  - name: db
    preferredSite: alpha
    volumes: [ { name: data, size: 8MiB } ]`,
    extra: 'replication: { ack: adaptive, syncMaxRttMs: 5 }',
    routes: (host) => ({ beta: { peer: { address: host(3), port: proxyPort } } }),
    beforeUp: async ({ host }) => {
      proxy = await startTcpProxyProcess({ listen: { address: host(3), port: proxyPort }, target: { address: host(1), port: 7401 } });
    },
  });
  const c = cluster;
  const link = proxy!;
  const agents = await agentStatusReader(c.file, ['alpha']);
  t.teardown(() => agents.close());
  /** The primary's (alpha's) view of db's mirror. */
  const mirror = async (): Promise<NonNullable<StatusGroup['mirror']>> => {
    const alpha = (await agents.read()).find((v) => v.site === 'alpha');
    const m = alpha?.groups?.find((g) => g.name === 'db')?.mirror;
    if (!m) throw new Error('alpha reported no mirror status for db');
    return m;
  };
  const until = async (ok: (m: NonNullable<StatusGroup['mirror']>) => boolean, deadlineMs: number) => {
    const end = performance.now() + deadlineMs;
    for (;;) {
      const m = await mirror();
      if (ok(m)) return { ok: true, m };
      if (performance.now() > end) return { ok: false, m };
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  const url = `iscsi://${c.portal(1)}/${c.iqn('db')}/0`;

  // startCluster returned with db up-to-date: the adaptive group is in sync on the healthy link (or
  // back in sync within a hold-down, should a loaded machine have stretched the first round trips).
  const start = await until((m) => m.mode === 'sync' && m.secondary === 'up-to-date', 90_000);
  const ready = start.m;
  t.true(start.ok, `not in sync on the healthy link: ${JSON.stringify(ready)}`);
  t.true(ready.rtt_ms < 5, `healthy round trip ${ready.rtt_ms} ms`);

  // Degrade the link: 10 ms each way, a 20 ms round trip against syncMaxRttMs 5.
  const slowFromMs = Date.now();
  link.delayMs = 10;
  const slow = await until((m) => m.mode === 'async', 15_000);
  t.true(slow.ok, `still ${slow.m.mode} with the link delayed: ${JSON.stringify(slow.m)}`);
  const asyncAt = await modeChangedAt(c, 'async', slowFromMs);
  t.truthy(asyncAt, 'no mode change logged');
  t.true(asyncAt! - slowFromMs <= 2000, `switched to async ${asyncAt! - slowFromMs} ms after the delay was added`);
  t.is(slow.m.mode_switches, ready.mode_switches + 1);

  // Writes while async: the lag shows (and the secondary is outdated: it may miss acknowledged writes).
  const seen: Array<NonNullable<StatusGroup['mirror']>> = [];
  let writing = true;
  const writes = run('qemu-io', ['-f', 'raw', ...Array.from({ length: 400 }, (_, i) => ['-c', `write -P ${0x60 + (i % 64)} ${(i % 120) * 65536} 64k`]).flat(), url], { timeoutMs: 120_000 })
    .finally(() => { writing = false; });
  // Sampled for at least one RTT window after the switch, so the window holds slow samples only.
  while (writing || Date.now() < asyncAt! + 2500) {
    seen.push(await mirror());
    await new Promise((r) => setTimeout(r, 50));
  }
  const w = await writes;
  t.true(w.code === 0 && !qemuIoFailed(w.stdout + w.stderr), w.stdout.slice(-2000) + w.stderr);
  t.true(seen.length > 0);
  t.true(seen.every((m) => m.mode === 'async'), 'left async while the link was slow');
  t.true(seen.some((m) => Number(m.lag_bytes) > 0 || m.lag_ms > 0), `no lag reported during writes: ${JSON.stringify(seen.map((m) => [m.lag_bytes, m.lag_ms]))}`);
  // The figure is the 90th percentile over a 2 s window, raised to the age of an unanswered
  // heartbeat: right after the switch the window still holds mostly healthy samples, so the early
  // figures sit between the limit and the added round trip; they reach it as slow samples fill it.
  const rtts = seen.map((m) => m.rtt_ms);
  t.true(rtts.every((ms) => ms > 5), `RTT at or under syncMaxRttMs while async: ${rtts.join(', ')}`);
  t.true(Math.max(...rtts) >= 20, `RTT never showed the added 20 ms round trip: ${rtts.join(', ')}`);
  const shown = await groupStatus(c, 'db');
  t.is(shown.policy, 'adaptive');
  t.is(shown.ackMode, 'async');
  t.is(shown.secondaryState, 'outdated');
  t.regex(shown.outdated?.reason ?? '', /async/);
  t.true((shown.rttMs ?? 0) >= 10, `metroctl status shows the slow round trip: ${shown.rttMs} ms`);

  // Heal: back to sync once the link stayed healthy for the hold-down, and up-to-date again.
  const holdDownMs = Number(slow.m.hold_down_ms);
  t.true(holdDownMs >= 1000, `hold-down ${holdDownMs} ms`);
  const healedAtMs = Date.now();
  link.delayMs = 0;
  const healed = await until((m) => m.mode === 'sync' && m.secondary === 'up-to-date', 120_000);
  t.true(healed.ok, `not back in sync: ${JSON.stringify(healed.m)}`);
  const syncAt = await modeChangedAt(c, 'sync', healedAtMs);
  t.truthy(syncAt);
  t.true(syncAt! - healedAtMs >= holdDownMs - 100, `back to sync ${syncAt! - healedAtMs} ms after healing, before the ${holdDownMs} ms hold-down`);
  t.log(`async ${asyncAt! - slowFromMs} ms after the delay; sync again ${syncAt! - healedAtMs} ms after healing (hold-down ${holdDownMs} ms); round trip p90 ${ready.rtt_ms.toFixed(2)} ms at the start, ${healed.m.rtt_ms.toFixed(2)} ms healed, ${Math.min(...rtts).toFixed(1)}-${Math.max(...rtts).toFixed(1)} ms while async`);

  // Flapping: 10 ms for a second, none for a second, for 8 s. One switch to async, no way back.
  const before = healed.m.mode_switches;
  link.flap({ highMs: 10, lowMs: 0, periodMs: 1000 });
  await new Promise((r) => setTimeout(r, 8000));
  const flapping = await groupStatus(c, 'db');
  link.stopFlap(0);
  t.true((flapping.modeSwitches ?? 0) - before <= 1, `${(flapping.modeSwitches ?? 0) - before} mode switches while the link flapped`);
  t.is(flapping.ackMode, 'async');
});
