// The alarms of `metroctl status`: what stands between the cluster and "protected" (a site lost now
// would fail over automatically, with no acknowledged write lost), and what needs an admin soon.
// Pure: the status facts in, the alarms out, critical first; time comes in as a value (nowMs).
// Codes are a stable contract for scripts (docs/status-json.md); the sentences are for people.
import { Cron } from 'croner';
import type { AgentGroup, Alarm, AlarmCode, AlarmSeverity, GroupMirrorReport, SiteReport, StatusFacts } from './status-types.ts';

/** The witness starts a due drill at once; this much later, a drill that has not started is overdue. */
export const drillStartGraceMs = 2 * 60_000;

/** A drill start this close before the scheduled time still counts for it (timer granularity). */
const drillStartToleranceMs = 1000;

/**
 * When the drill is overdue: the latest scheduled time (evaluated in the witness's time zone) that
 * passed more than drillStartGraceMs ago with no run started since; null when none is owed or the
 * history is unknown. A drill never run is owed only the times the witness was up for.
 */
export function drillOverdue(o: {
  schedule: string; timezone?: string; running: boolean; nowMs: number;
  lastAttemptStartedMs: number | null; witnessStartedMs: number | null;
}): number | null {
  if (o.running) return null;
  const baseline = o.lastAttemptStartedMs ?? o.witnessStartedMs;
  if (baseline === null || Number.isNaN(baseline)) return null;
  const cron = new Cron(o.schedule, { paused: true, ...(o.timezone ? { timezone: o.timezone } : {}) });
  const due = cron.previousRuns(1, new Date(o.nowMs - drillStartGraceMs))[0];
  if (!due) return null;
  return baseline < due.getTime() - drillStartToleranceMs ? due.getTime() : null;
}

export function computeAlarms(f: StatusFacts): Alarm[] {
  const alarms = [
    ...witnessAlarms(f),
    ...f.sites.flatMap(agentAlarms),
    ...f.groups.flatMap((g) => groupAlarms(g, f.sites)),
    ...f.sites.flatMap(divergentAlarms),
    ...f.groups.flatMap(drillAlarms),
  ];
  const rank = (a: Alarm): number => (a.severity === 'critical' ? 0 : 1);
  return alarms.map((a, i) => ({ a, i })).sort((x, y) => rank(x.a) - rank(y.a) || x.i - y.i).map((x) => x.a);
}

/** The verdict: protected while no alarm is critical; one line that says so, or why not. */
export function protectionSummary(f: StatusFacts, alarms: readonly Alarm[]): { protected: boolean; summary: string } {
  const critical = alarms.filter((a) => a.severity === 'critical').length;
  const warnings = alarms.length - critical;
  const w = warnings > 0 ? `; ${plural(warnings, 'warning')}` : '';
  if (critical > 0) return { protected: false, summary: `NOT PROTECTED: ${plural(critical, 'critical alarm')}${w}` };
  const groups = f.groups.map((g) => `${g.name} ${g.primary}->${g.secondary}`).join(', ');
  return {
    protected: true,
    summary: `protected: ${plural(f.groups.length, 'group')} mirrored and up-to-date${groups ? ` (${groups})` : ''}, witness reachable, automatic failover available${w}`,
  };
}

/** The groups whose arbitration at this site reports the witness unreachable. */
export function blindGroups(groups: readonly AgentGroup[]): string[] {
  return groups.filter((g) => g.arbitration && !g.arbitration.witness_reachable).map((g) => g.name);
}

/** Percent of a resync done (100 for an empty one), rounded down. */
export function resyncPct(r: NonNullable<GroupMirrorReport['resync']>): number {
  return r.bytesTotal === 0 ? 100 : Math.floor((r.bytesDone * 100) / r.bytesTotal);
}

/** ' (reason, since T)' of an outdated secondary, or '' when no reason is known. */
export function outdatedWhy(g: GroupMirrorReport): string {
  return g.outdated?.reason ? ` (${g.outdated.reason}${g.outdated.since ? `, since ${g.outdated.since}` : ''})` : '';
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

const alarm = (severity: AlarmSeverity, code: AlarmCode, where: { site?: string; group?: string }, message: string): Alarm =>
  ({ severity, code, site: where.site ?? null, group: where.group ?? null, message });

function witnessAlarms(f: StatusFacts): Alarm[] {
  const blindBySite = f.sites.map((s) => ({
    site: s.name, blind: blindGroups(s.groups),
    seeing: s.groups.some((g) => g.arbitration?.witness_reachable),
  }));
  if (!f.witness.up) {
    const seeing = blindBySite.filter((s) => s.seeing).map((s) => s.site);
    const hint = seeing.length === 0 ? '' : ` (${seeing.length === 1 ? `site ${seeing[0]} still reaches` : `sites ${seeing.join(' and ')} still reach`} it: check metroctl's network)`;
    return [alarm('critical', 'WITNESS_UNREACHABLE', {},
      `the witness at ${f.witness.address} (${f.witness.fireZone}) is unreachable from metroctl (${f.witness.reason ?? 'no answer'})${hint}: automatic failover is unavailable; I/O goes on while the sites reach each other`)];
  }
  return blindBySite.filter((s) => s.blind.length > 0).map((s) => alarm('critical', 'WITNESS_UNREACHABLE_FROM_SITE', { site: s.site },
    `site ${s.site} does not reach the witness (group${s.blind.length === 1 ? '' : 's'} ${s.blind.join(', ')}): no automatic failover for ${s.blind.length === 1 ? 'it' : 'them'}`));
}

function agentAlarms(s: SiteReport): Alarm[] {
  if (!s.up) return [alarm('critical', 'AGENT_UNREACHABLE', { site: s.name }, `the agent of site ${s.name} at ${s.address} (${s.fireZone}) is unreachable (${s.reason ?? 'no answer'})`)];
  if (s.statusReason !== undefined) {
    return [alarm('critical', 'AGENT_UNREACHABLE', { site: s.name }, `the agent of site ${s.name} answers health checks but not its status (${s.statusReason}): its groups are not known`)];
  }
  return [];
}

function groupAlarms(g: GroupMirrorReport, sites: readonly SiteReport[]): Alarm[] {
  return [...servingAlarms(g, sites), ...protectionAlarms(g), ...mirrorAlarms(g), ...pathAlarms(g)];
}

function servingAlarms(g: GroupMirrorReport, sites: readonly SiteReport[]): Alarm[] {
  if (g.serving) return [];
  const where = { group: g.name, ...(g.primary ? { site: g.primary } : {}) };
  if (g.primary !== null) {
    return [alarm('critical', 'GROUP_NOT_SERVING', where, `the primary ${g.primary} of group ${g.name} is fenced (write gate ${g.gate ?? 'closed'}: no quorum): hosts' I/O to the group waits`)];
  }
  const unknown = sites.filter((s) => !s.up || s.statusReason !== undefined).map((s) => s.name);
  const why = unknown.length > 0 ? ` (site ${unknown.join(' and ')} is not answering)` : ' (a switchover or promotion may be under way)';
  return [alarm('critical', 'GROUP_NOT_SERVING', where, `no reachable site is the primary of group ${g.name}${why}`)];
}

/** Whether the secondary could take over now with no acknowledged write lost; the first reason it could not. */
function protectionAlarms(g: GroupMirrorReport): Alarm[] {
  if (g.primary === null) return [];
  const where = { group: g.name, ...(g.secondary ? { site: g.secondary } : {}) };
  if (g.policy === null) return [alarm('critical', 'MIRROR_OFF', where, `group ${g.name} is not mirrored: mirroring is off at its primary ${g.primary}`)];
  if (!g.attached) {
    return [alarm('critical', 'SECONDARY_DETACHED', where, `group ${g.name} is not mirrored: the secondary ${g.secondary ?? '?'} is not attached to the primary ${g.primary}`)];
  }
  const r = g.resync;
  if (r && !r.done) {
    const pct = resyncPct(r);
    const eta = r.etaMs === null ? '' : `, about ${Math.ceil(r.etaMs / 1000)} s left`;
    return [alarm('critical', 'RESYNC_RUNNING', where, `group ${g.name} is not protected until its ${r.kind} resync to ${g.secondary} completes (${pct}%${eta})`)];
  }
  if (g.upToDate === false) {
    const why = outdatedWhy(g);
    const state = `the secondary ${g.secondary} of group ${g.name} is ${g.secondaryState ?? 'outdated'}${why}`;
    // The witness still fails over to a secondary whose lag is within maxDataLossMs (DESIGN.md "Arbitration").
    if (g.maxDataLossMs > 0 && g.lagMs !== null && g.lagMs <= g.maxDataLossMs) {
      return [alarm('warning', 'SECONDARY_OUTDATED', where, `${state}: an automatic failover to it may lose up to ${g.maxDataLossMs} ms of writes (failover.maxDataLossMs)`)];
    }
    return [alarm('critical', 'SECONDARY_OUTDATED', where, `${state}: it may miss acknowledged writes and cannot take over automatically`)];
  }
  return [];
}

function mirrorAlarms(g: GroupMirrorReport): Alarm[] {
  const out: Alarm[] = [];
  if (g.lagMs !== null && g.lagMs > g.maxLagMs) {
    out.push(alarm('warning', 'LAG_ABOVE_BOUND', { group: g.name },
      `the mirror of group ${g.name} lags ${Math.round(g.lagMs)} ms (${g.lagBytes ?? 0} bytes) behind, above its maxLagMs ${g.maxLagMs}`));
  }
  if (g.throttled) out.push(alarm('warning', 'WRITES_THROTTLED', { group: g.name }, `host writes to group ${g.name} are throttled: the async mirror reached its lag bound`));
  return out;
}

/** A secondary that cannot forward: hosts with paths only to its portal lose the LUNs. Reported
 *  only while the group is otherwise protected (an outdated secondary is unavailable by design). */
function pathAlarms(g: GroupMirrorReport): Alarm[] {
  if (!g.serving || g.upToDate !== true) return [];
  return Object.entries(g.alua).flatMap(([site, states]) => {
    const own = states[site];
    if (site === g.primary || own === undefined || own.startsWith('active')) return [];
    const link = g.paths[site]?.link ?? 'unknown';
    return [alarm('warning', 'PATH_UNAVAILABLE', { site, group: g.name },
      `hosts logged in at ${site}'s portal cannot use group ${g.name}: it reports its port group ${own} (forward link to ${g.primary}: ${link})`)];
  });
}

function divergentAlarms(s: SiteReport): Alarm[] {
  return s.divergent.map((d) => alarm('warning', 'DIVERGENT_WRITES_SAVED', { site: s.name, group: d.group },
    `site ${s.name} kept ${d.regions} region(s) (${d.bytes} bytes) of group ${d.group} volume ${d.volume} written after it was replaced in epoch ${d.epoch}: inspect ${d.file}`));
}

const failedOutcomes = new Set(['failed', 'aborted', 'interrupted']);

function drillAlarms(g: GroupMirrorReport): Alarm[] {
  return g.drills.flatMap((d) => {
    const out: Alarm[] = [];
    const a = d.lastAttempt;
    if (a && failedOutcomes.has(a.outcome)) {
      out.push(alarm('warning', 'DRILL_FAILED', { group: g.name }, `the last run of drill ${d.name} (group ${g.name}, started ${a.startedAt}) ${a.outcome}${a.reason ? `: ${a.reason}` : ''}`));
    }
    if (d.overdue) {
      const skipped = d.last?.outcome === 'skipped' ? ` (its last run, ${d.last.startedAt}, was skipped)` : '';
      out.push(alarm('warning', 'DRILL_OVERDUE', { group: g.name }, `drill ${d.name} of group ${g.name} was due at ${d.overdueSince} (schedule "${d.schedule}") and has not run since${skipped}`));
    }
    return out;
  });
}
