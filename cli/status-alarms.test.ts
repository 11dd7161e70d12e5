// The alarms of `metroctl status`, table-driven: a healthy cluster's answers with one fact broken
// per row, through the report builder, and the alarms (codes, where, sentence) and verdict that
// come out; then when a drill is overdue by its cron schedule.
import test from 'ava';
import { buildStatusReport } from './status-report.ts';
import { drillOverdue, drillStartGraceMs } from './status-alarms.ts';
import type { Gathered } from './status-types.ts';
import { drill, healthy, nowMs, topology, unreachable, wireGroup } from './status-test-support.ts';

interface Row {
  name: string;
  change: (g: Gathered) => void;
  /** [severity, code, site, group] in the order reported. */
  alarms: Array<[string, string, string | null, string | null]>;
  protected: boolean;
  /** The first alarm's sentence. */
  message?: RegExp;
  /** Extra topology lines. */
  topology?: string;
}

const witnessBlind = (g: Gathered, site: 'alpha' | 'beta'): void => {
  for (const name of ['db', 'vm']) wireGroup(g, site, name).arbitration!.witness_reachable = false;
};

const rows: Row[] = [
  { name: 'healthy: no alarm', change: () => {}, alarms: [], protected: true },
  {
    name: 'witness dead: one alarm, the sites do not reach it either',
    change: (g) => { g.witness = unreachable; g.drills = unreachable; witnessBlind(g, 'alpha'); witnessBlind(g, 'beta'); },
    alarms: [['critical', 'WITNESS_UNREACHABLE', null, null]], protected: false,
    message: /^the witness at 127\.0\.3\.1:7400 \(building-c\) is unreachable from metroctl \(unreachable\): automatic failover is unavailable/,
  },
  {
    name: 'witness unreachable from metroctl only: the sites still reach it',
    change: (g) => { g.witness = unreachable; g.drills = unreachable; },
    alarms: [['critical', 'WITNESS_UNREACHABLE', null, null]], protected: false,
    message: /sites alpha and beta still reach it: check metroctl's network/,
  },
  {
    name: 'one site does not reach the witness',
    change: (g) => witnessBlind(g, 'beta'),
    alarms: [['critical', 'WITNESS_UNREACHABLE_FROM_SITE', 'beta', null]], protected: false,
    message: /^site beta does not reach the witness \(groups db, vm\): no automatic failover for them$/,
  },
  {
    name: 'agent beta down: its group has no reachable primary, db lost its secondary',
    change: (g) => { g.sites[1].health = unreachable; g.sites[1].status = unreachable; const m = wireGroup(g, 'alpha', 'db').mirror!; m.attached = false; m.secondary = 'outdated'; },
    alarms: [['critical', 'AGENT_UNREACHABLE', 'beta', null], ['critical', 'SECONDARY_DETACHED', 'beta', 'db'], ['critical', 'GROUP_NOT_SERVING', null, 'vm']],
    protected: false, message: /^the agent of site beta at 127\.0\.2\.1:7402 \(building-b\) is unreachable \(unreachable\)$/,
  },
  {
    name: 'agent answers Health but not Status',
    change: (g) => { g.sites[0].status = { ok: false, reason: 'deadline exceeded', code: 4 }; },
    alarms: [['critical', 'AGENT_UNREACHABLE', 'alpha', null], ['critical', 'GROUP_NOT_SERVING', null, 'db']],
    protected: false, message: /answers health checks but not its status \(deadline exceeded\)/,
  },
  {
    name: 'primary fenced (write gate closed)',
    change: (g) => { wireGroup(g, 'alpha', 'db').arbitration!.gate = 'closed'; },
    alarms: [['critical', 'GROUP_NOT_SERVING', 'alpha', 'db']], protected: false, message: /^the primary alpha of group db is fenced/,
  },
  {
    name: 'resync running: progress in the sentence',
    change: (g) => {
      const m = wireGroup(g, 'alpha', 'db').mirror!;
      m.secondary = 'outdated';
      m.resync = { ...m.resync!, kind: 'bitmap', done: false, bytes_total: '1000', bytes_done: '450', eta_ms: '12400' };
    },
    alarms: [['critical', 'RESYNC_RUNNING', 'beta', 'db']], protected: false,
    message: /^group db is not protected until its bitmap resync to beta completes \(45%, about 13 s left\)$/,
  },
  {
    name: 'async with the lag above its bound: outdated, then the lag',
    change: (g) => {
      Object.assign(wireGroup(g, 'alpha', 'db').mirror!, { mode: 'async', secondary: 'outdated', outdated_reason: 'async: RTT above syncMaxRttMs', outdated_since: '2026-12-02T11:59:00Z', lag_ms: 3500, lag_bytes: '1048576' });
    },
    alarms: [['critical', 'SECONDARY_OUTDATED', 'beta', 'db'], ['warning', 'LAG_ABOVE_BOUND', null, 'db']], protected: false,
    message: /^the secondary beta of group db is outdated \(async: RTT above syncMaxRttMs, since 2026-12-02T11:59:00Z\): it may miss acknowledged writes/,
  },
  {
    name: 'outdated but within failover.maxDataLossMs: a warning, still protected',
    change: (g) => {
      Object.assign(wireGroup(g, 'alpha', 'db').mirror!, { mode: 'async', secondary: 'outdated', outdated_reason: 'mirror in async mode', lag_ms: 300, lag_bytes: '65536' });
    },
    topology: 'failover: { leaseMs: 2000, maxDataLossMs: 1000 }',
    alarms: [['warning', 'SECONDARY_OUTDATED', 'beta', 'db']], protected: true,
    message: /an automatic failover to it may lose up to 1000 ms of writes \(failover\.maxDataLossMs\)$/,
  },
  {
    name: 'outdated with the lag past failover.maxDataLossMs: critical',
    change: (g) => {
      Object.assign(wireGroup(g, 'alpha', 'db').mirror!, { mode: 'async', secondary: 'outdated', outdated_reason: 'mirror in async mode', lag_ms: 1500, lag_bytes: '65536' });
    },
    topology: 'failover: { leaseMs: 2000, maxDataLossMs: 1000 }',
    alarms: [['critical', 'SECONDARY_OUTDATED', 'beta', 'db']], protected: false, message: /cannot take over automatically$/,
  },
  {
    name: 'writes throttled: a warning, still protected',
    change: (g) => { wireGroup(g, 'beta', 'vm').mirror!.throttled = true; },
    alarms: [['warning', 'WRITES_THROTTLED', null, 'vm']], protected: true,
  },
  {
    name: 'mirroring off at the primary',
    change: (g) => { wireGroup(g, 'beta', 'vm').mirror = null; },
    alarms: [['critical', 'MIRROR_OFF', 'alpha', 'vm']], protected: false,
  },
  {
    name: 'an up-to-date secondary that cannot forward: hosts at its portal have no path',
    change: (g) => {
      const p = wireGroup(g, 'beta', 'db').path!;
      p.link = 'connecting';
      p.port_groups[1].state = 'transitioning';
    },
    alarms: [['warning', 'PATH_UNAVAILABLE', 'beta', 'db']], protected: true,
    message: /^hosts logged in at beta's portal cannot use group db: it reports its port group transitioning \(forward link to alpha: connecting\)$/,
  },
  {
    name: 'divergent writes saved aside',
    change: (g) => {
      const s = g.sites[0].status;
      if (s.ok) s.value.divergent = [{ group: 'db', volume: 'data', epoch: '4', file: '/srv/a/divergent/db-data-4.bin', regions: 3, bytes: '3145728', saved_at: '2026-12-01T10:00:00Z' }];
    },
    alarms: [['warning', 'DIVERGENT_WRITES_SAVED', 'alpha', 'db']], protected: true, message: /inspect \/srv\/a\/divergent\/db-data-4\.bin$/,
  },
  {
    name: 'last drill aborted',
    change: (g) => {
      if (g.drills.ok) g.drills.value.drills = [drill({ last_outcome: 'aborted', last_attempt_outcome: 'aborted', last_attempt_reason: 'precheck: site beta (unreachable) is down' })];
    },
    alarms: [['warning', 'DRILL_FAILED', null, 'db']], protected: true, message: /aborted: precheck: site beta \(unreachable\) is down$/,
  },
  {
    name: 'drill overdue: last Sunday\'s run was skipped, the one before is the last attempt',
    change: (g) => {
      if (g.drills.ok) g.drills.value.drills = [drill({ last_outcome: 'skipped', last_started_at: '2026-11-29T03:00:00.100Z', last_attempt_started_at: '2026-11-22T03:00:00.100Z' })];
    },
    alarms: [['warning', 'DRILL_OVERDUE', null, 'db']], protected: true,
    message: /^drill weekly-db of group db was due at 2026-11-29T03:00:00\.000Z \(schedule "0 3 \* \* 0"\) and has not run since \(its last run, 2026-11-29T03:00:00\.100Z, was skipped\)$/,
  },
  {
    name: 'critical before warning, whatever the order found',
    change: (g) => { if (g.drills.ok) g.drills.value.drills = [drill({ last_attempt_outcome: 'failed' })]; witnessBlind(g, 'alpha'); },
    alarms: [['critical', 'WITNESS_UNREACHABLE_FROM_SITE', 'alpha', null], ['warning', 'DRILL_FAILED', null, 'db']], protected: false,
  },
];

for (const row of rows) {
  test(`alarms: ${row.name}`, (t) => {
    const g = healthy();
    row.change(g);
    const r = buildStatusReport(topology(row.topology), g, nowMs);
    t.deepEqual(r.alarms.map((a) => [a.severity, a.code, a.site, a.group]), row.alarms, JSON.stringify(r.alarms, null, 2));
    t.is(r.protected, row.protected);
    t.true(r.alarms.every((a) => a.message.length > 0 && !a.message.includes('\n')), 'one sentence each');
    if (row.message) t.regex(r.alarms[0].message, row.message);
  });
}

test('verdict: protected in one line naming the groups; not protected counts the alarms', (t) => {
  t.is(buildStatusReport(topology(), healthy(), nowMs).summary,
    'protected: 2 groups mirrored and up-to-date (db alpha->beta, vm beta->alpha), witness reachable, automatic failover available');
  const g = healthy();
  g.witness = unreachable;
  g.drills = unreachable;
  wireGroup(g, 'beta', 'vm').mirror!.throttled = true;
  t.is(buildStatusReport(topology(), g, nowMs).summary, 'NOT PROTECTED: 1 critical alarm; 1 warning');
});

const iso = (s: string): number => Date.parse(s);
const weekly = { schedule: '0 3 * * 0', timezone: 'UTC', running: false };
const overdueRows: Array<{ name: string; o: Parameters<typeof drillOverdue>[0]; due: string | null }> = [
  { name: 'ran at the scheduled time', o: { ...weekly, nowMs: iso('2026-11-29T03:30:00Z'), lastAttemptStartedMs: iso('2026-11-29T03:00:00.050Z'), witnessStartedMs: 0 }, due: null },
  { name: 'within the start grace', o: { ...weekly, nowMs: iso('2026-11-29T03:00:00Z') + drillStartGraceMs - 1, lastAttemptStartedMs: iso('2026-11-22T03:00:00Z'), witnessStartedMs: 0 }, due: null },
  { name: 'past the grace, not started', o: { ...weekly, nowMs: iso('2026-11-29T03:00:00Z') + drillStartGraceMs + 1, lastAttemptStartedMs: iso('2026-11-22T03:00:00Z'), witnessStartedMs: 0 }, due: '2026-11-29T03:00:00.000Z' },
  { name: 'days later, the latest owed time', o: { ...weekly, nowMs: iso('2026-12-09T12:00:00Z'), lastAttemptStartedMs: iso('2026-11-22T03:00:00Z'), witnessStartedMs: 0 }, due: '2026-12-06T03:00:00.000Z' },
  { name: 'running now', o: { ...weekly, running: true, nowMs: iso('2026-12-09T12:00:00Z'), lastAttemptStartedMs: iso('2026-11-22T03:00:00Z'), witnessStartedMs: 0 }, due: null },
  { name: 'a manual run after the scheduled time counts', o: { ...weekly, nowMs: iso('2026-12-02T12:00:00Z'), lastAttemptStartedMs: iso('2026-11-30T09:00:00Z'), witnessStartedMs: 0 }, due: null },
  { name: 'never run, the witness was up when it was due', o: { ...weekly, nowMs: iso('2026-12-02T12:00:00Z'), lastAttemptStartedMs: null, witnessStartedMs: iso('2026-11-28T00:00:00Z') }, due: '2026-11-29T03:00:00.000Z' },
  { name: 'never run, the witness started after it was due', o: { ...weekly, nowMs: iso('2026-12-02T12:00:00Z'), lastAttemptStartedMs: null, witnessStartedMs: iso('2026-11-29T03:04:00Z') }, due: null },
  { name: 'never run, witness start unknown', o: { ...weekly, nowMs: iso('2026-12-02T12:00:00Z'), lastAttemptStartedMs: null, witnessStartedMs: null }, due: null },
  // 03:00 in Tokyo is 18:00 UTC the day before: the witness's zone decides which time was owed.
  { name: 'daily in the witness\'s zone (Asia/Tokyo)', o: { schedule: '0 3 * * *', timezone: 'Asia/Tokyo', running: false, nowMs: iso('2026-11-29T18:05:00Z'), lastAttemptStartedMs: iso('2026-11-29T10:00:00Z'), witnessStartedMs: 0 }, due: '2026-11-29T18:00:00.000Z' },
  { name: 'the same times in UTC: not owed', o: { schedule: '0 3 * * *', timezone: 'UTC', running: false, nowMs: iso('2026-11-29T18:05:00Z'), lastAttemptStartedMs: iso('2026-11-29T10:00:00Z'), witnessStartedMs: 0 }, due: null },
];

for (const row of overdueRows) {
  test(`drill overdue: ${row.name}`, (t) => {
    const due = drillOverdue(row.o);
    t.is(due === null ? null : new Date(due).toISOString(), row.due);
  });
}
