// The text screen of `metroctl status`: a healthy cluster says so in its first line; alarms come
// before everything else; the groups show primary, epoch, ack mode, lag, up-to-date and last drill;
// each portal's ALUA states; colours only when asked for (a terminal), never otherwise.
import test from 'ava';
import { buildStatusReport } from './status-report.ts';
import { renderStatusText } from './status-render.ts';
import { drill, healthy, nowMs, topology, unreachable, wireGroup } from './status-test-support.ts';

const esc = '\x1b[';

test('healthy, no colour: the verdict first, no alarm section, the groups and each portal\'s ALUA states, no escape codes', (t) => {
  const text = renderStatusText(buildStatusReport(topology(), healthy(), nowMs), { color: false });
  const lines = text.split('\n');
  t.regex(lines[0], /^protected: 2 groups mirrored and up-to-date \(db alpha->beta, vm beta->alpha\), witness reachable, automatic failover available {2}\[cluster demo, 2026-12-02T12:00:00\.000Z\]$/);
  t.false(text.includes(esc), 'no ANSI escape when colour is off');
  t.false(text.includes('ALARMS'));
  t.notRegex(text, /AUTOMATIC FAILOVER UNAVAILABLE/);
  t.regex(text, /│ witness\s+│ building-c\s+│ 127\.0\.3\.1:7400\s+│ up\s+│ 100\s+│ 72h\s+│/);
  t.regex(text, /│ agent beta\s+│ building-b\s+│ 127\.0\.2\.1:7402\s+│ up\s+│ 102\s+│/);
  t.regex(text, /metro link RTT: 0\.41 ms/);
  // group | primary | secondary | epoch | ack (policy) | RTT | lag | up-to-date | resync | last drill
  t.regex(text, /│ db\s+│ alpha\s+│ beta\s+│ 3\s+│ sync \(sync\)\s+│ 0\.41 ms\s+│ 0 B \/ 0 ms\s+│ yes\s+│ full done: 0 B sent, 64\.0 MiB matched\s+│ weekly-db: passed 3 d ago, RTO 840 ms\s+│/);
  // As hosts see them at each portal: the primary's port group active/optimized, the secondary's active/non-optimized.
  t.regex(text, /│ db\s+│ alpha\s+│ primary\s+│ alpha active\/optimized\s+│ executes \(beta forwarding\)\s+│ peer\+witness\s+│ reachable\s+│ 0:data\s+│/);
  t.regex(text, /│ db\s+│ beta\s+│ secondary\s+│ alpha active\/optimized\s+│ forwards to alpha: attached\s+│/);
  t.regex(text, /│\s+│\s+│\s+│ beta active\/non-optimized\s+│/);
});

test('alarms come first, critical before warning, then the banner, then the tables', (t) => {
  const g = healthy();
  g.witness = unreachable;
  g.drills = unreachable;
  wireGroup(g, 'beta', 'vm').mirror!.throttled = true;
  const text = renderStatusText(buildStatusReport(topology(), g, nowMs), { color: false });
  const lines = text.split('\n');
  t.regex(lines[0], /^NOT PROTECTED: 1 critical alarm; 1 warning/);
  t.is(lines[1], 'ALARMS (2)');
  t.regex(lines[2], /^ {2}CRITICAL WITNESS_UNREACHABLE +the witness at 127\.0\.3\.1:7400 \(building-c\) is unreachable from metroctl/);
  t.regex(lines[3], /^ {2}WARNING {2}WRITES_THROTTLED +host writes to group vm are throttled/);
  t.regex(lines[4], /^!!! AUTOMATIC FAILOVER UNAVAILABLE: the witness is unreachable from metroctl\. /);
  t.regex(text, /│ witness\s+│ building-c\s+│ 127\.0\.3\.1:7400\s+│ DOWN \(unreachable\)/);
  t.regex(text, /weekly-db: unknown \(witness\)/);
  t.regex(text, /sync \(sync\) THROTTLED/);
  t.true(text.indexOf('ALARMS') < text.indexOf('│ witness'), 'alarms before the daemons');
});

test('an outdated group shows why and since when, its lag against the bound; a running resync its progress', (t) => {
  const g = healthy();
  Object.assign(wireGroup(g, 'alpha', 'db').mirror!, { mode: 'async', policy: 'adaptive', secondary: 'outdated', outdated_reason: 'async mode', outdated_since: '2026-12-02T11:59:00Z', lag_ms: 3500, lag_bytes: '2048' });
  const vm = wireGroup(g, 'beta', 'vm').mirror!;
  vm.secondary = 'outdated';
  vm.resync = { ...vm.resync!, kind: 'bitmap', done: false, bytes_total: String(4 << 20), bytes_done: String(1 << 20), rate_bytes_per_sec: 1 << 20, eta_ms: '3000' };
  const text = renderStatusText(buildStatusReport(topology(), g, nowMs), { color: false });
  t.regex(text, /│ db\s+│ alpha\s+│ beta\s+│ 3\s+│ async \(adaptive\)\s+│ 0\.41 ms\s+│ 2\.0 KiB \/ 3500 ms \(max 2000\)\s+│ NO: outdated \(async mode, since 2026-12-02T11:59:00Z\)\s+│/);
  t.regex(text, /bitmap 25%: 1\.0 MiB\/4\.0 MiB at 1\.0 MiB\/s, ETA 3 s/);
  t.regex(text, /SECONDARY_OUTDATED/);
  t.regex(text, /RESYNC_RUNNING/);
});

test('colour on: the verdict green when protected, red alarms and states otherwise', (t) => {
  const ok = renderStatusText(buildStatusReport(topology(), healthy(), nowMs), { color: true });
  t.true(ok.startsWith(`${esc}32mprotected: `), JSON.stringify(ok.slice(0, 20)));
  t.true(ok.includes(`${esc}32mactive/optimized${esc}0m`));
  const g = healthy();
  g.sites[1].health = unreachable;
  g.sites[1].status = unreachable;
  const bad = renderStatusText(buildStatusReport(topology(), g, nowMs), { color: true });
  t.true(bad.startsWith(`${esc}31m`), 'the verdict in red');
  t.true(bad.includes(`${esc}31mCRITICAL${esc}0m AGENT_UNREACHABLE`));
  t.true(bad.includes(`${esc}31mDOWN (unreachable)${esc}0m`));
});

test('the last drill shows its measured RTO and RPO; an RPO that showed data at risk says so', (t) => {
  const rows: Array<[Parameters<typeof drill>[0], RegExp]> = [
    [{ last_rpo_ms: '0', last_rpo_at_risk: false }, /weekly-db: passed 3 d ago, RTO 840 ms, RPO 0 ms\s+│/],
    [{ last_outcome: 'failed', last_rpo_ms: '120', last_rpo_at_risk: true }, /weekly-db: FAILED 3 d ago, RTO 840 ms, RPO 120 ms DATA AT RISK\s+│/],
    // A witness from before RPO was measured reports neither field.
    [{}, /weekly-db: passed 3 d ago, RTO 840 ms\s+│/],
  ];
  for (const [wire, want] of rows) {
    const g = healthy();
    if (g.drills.ok) g.drills.value.drills = [drill(wire)];
    const report = buildStatusReport(topology(), g, nowMs);
    t.regex(renderStatusText(report, { color: false }), want);
    const d = report.groups.find((x) => x.name === 'db')?.drills[0];
    t.like(d?.last, { rpoMs: wire?.last_rpo_ms === undefined ? null : Number(wire.last_rpo_ms), rpoAtRisk: wire?.last_rpo_at_risk ?? false });
  }
});
