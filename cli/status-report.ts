// What `metroctl status` reports: the wire answers of the daemons (agent Status and Health, witness
// Health, ListDrills) turned into one report, the object `-o json` prints (docs/status-json.md
// documents every field) and the text renderer draws. Pure: the answers and the time in, the
// report out; gathering them is status-command.ts's job. Fields are only ever added, never renamed.
import type { Topology } from '../common/topology/index.ts';
import type { CallResult } from '../common/grpc-client.ts';
import { blindGroups, computeAlarms, drillOverdue, protectionSummary } from './status-alarms.ts';
import type {
  AgentGroup, AgentStatus, DaemonReport, DrillListWire, DrillSummary, Gathered, GroupMirrorReport, Health, SiteReport, StatusFacts, StatusReport,
} from './status-types.ts';

export function buildStatusReport(t: Topology, g: Gathered, nowMs: number): StatusReport {
  const sites = t.sites.map((s, i) => siteReport(s, g.sites[i]));
  const statuses = g.sites.flatMap((s) => (s.status.ok ? [{ site: s.name, status: s.status.value }] : []));
  const witnessStartedMs = g.witness.ok ? nowMs - Number(g.witness.value.uptime_ms) : null;
  const facts: StatusFacts = {
    cluster: t.name,
    generatedAt: new Date(nowMs).toISOString(),
    witness: { address: `${t.witness.address}:${t.witness.port}`, fireZone: t.witness.fireZone, ...summarize(g.witness) },
    sites,
    link: { rttMs: null },
    automaticFailover: automaticFailover(g.witness.ok, sites),
    drillsKnown: g.drills.ok,
    groups: t.groups.map((x) => ({
      ...groupReport(x.name, statuses),
      ...groupPlacement(x.name, statuses),
      preferredSite: x.preferredSite,
      maxLagMs: x.replication.maxLagMs,
      maxDataLossMs: t.failover.maxDataLossMs,
      drills: t.drills.filter((d) => d.group === x.name).map((d) => drillSummary(d, g.drills, nowMs, witnessStartedMs)),
    })),
  };
  const rtts = facts.groups.filter((x) => x.attached && x.rttMs !== null).map((x) => x.rttMs!);
  facts.link = { rttMs: rtts.length > 0 ? Math.max(...rtts) : null };
  const alarms = computeAlarms(facts);
  // The verdict and the alarms first: what a person reading the JSON wants to see first too.
  const { cluster, generatedAt, ...rest } = facts;
  return { cluster, generatedAt, ...protectionSummary(facts, alarms), alarms, ...rest };
}

export function summarize(h: CallResult<Health>): DaemonReport {
  return h.ok
    ? { up: true, pid: h.value.pid, uptimeMs: Number(h.value.uptime_ms), version: h.value.version }
    : { up: false, reason: h.reason };
}

function siteReport(s: Topology['sites'][number], g: Gathered['sites'][number]): SiteReport {
  const st = g.status;
  return {
    name: s.name, fireZone: s.fireZone, address: `${s.agent.address}:${s.agent.port}`, ...summarize(g.health),
    portal: st.ok ? { address: `${st.value.portal.address}:${st.value.portal.port}`, sessions: st.value.portal.sessions } : null,
    ...(st.ok || !g.health.ok ? {} : { statusReason: st.reason }),
    groups: st.ok ? st.value.groups : [],
    divergent: st.ok ? st.value.divergent ?? [] : [],
  };
}

/**
 * Automatic failover needs the witness (DESIGN.md "Arbitration"): without it nothing changes while
 * the sites see each other, but a lost site's groups stay down until an operator acts.
 */
function automaticFailover(witnessUp: boolean, sites: Array<{ groups: AgentGroup[] }>): { available: boolean; reason?: string } {
  if (!witnessUp) return { available: false, reason: 'the witness is unreachable from metroctl' };
  const blind = sites.flatMap((s) => blindGroups(s.groups));
  if (blind.length > 0) return { available: false, reason: `the witness is unreachable from a site for group(s) ${[...new Set(blind)].join(', ')}` };
  return { available: true };
}

type GroupBase = Omit<GroupMirrorReport, 'preferredSite' | 'maxLagMs' | 'maxDataLossMs' | 'serving' | 'gate' | 'alua' | 'paths' | 'drills'>;

function groupReport(name: string, statuses: Array<{ site: string; status: AgentStatus }>): GroupBase {
  const at = statuses.map((s) => ({ site: s.site, g: s.status.groups.find((x) => x.name === name) }));
  const primary = at.find((x) => x.g?.role === 'primary');
  const m = primary?.g?.mirror ?? null;
  const r = m?.resync ?? null;
  return {
    name,
    primary: primary?.site ?? null,
    secondary: m?.peer_site ?? at.find((x) => x.g?.role === 'secondary')?.site ?? null,
    epoch: primary?.g ? Number(primary.g.epoch) : null,
    policy: m?.policy ?? null,
    ackMode: m?.mode || null,
    modeSwitches: m ? m.mode_switches : null,
    holdDownMs: m?.mode ? Number(m.hold_down_ms) : null,
    rttMs: m ? m.rtt_ms : null,
    lagBytes: m ? Number(m.lag_bytes) : null,
    lagMs: m ? m.lag_ms : null,
    attached: m?.attached ?? false,
    upToDate: m ? m.secondary === 'up-to-date' : null,
    secondaryState: m?.secondary || null,
    outdated: m && m.secondary !== 'up-to-date' ? { reason: m.outdated_reason, since: m.outdated_since } : null,
    throttled: m?.throttled ?? false,
    resync: r ? {
      kind: r.kind, done: r.done, bytesTotal: Number(r.bytes_total), bytesDone: Number(r.bytes_done), bytesSent: Number(r.bytes_sent),
      bytesMatched: Number(r.bytes_matched), regionsTotal: Number(r.regions_total), regionsDone: Number(r.regions_done),
      rateBytesPerSec: r.rate_bytes_per_sec, etaMs: Number(r.eta_ms) < 0 ? null : Number(r.eta_ms),
    } : null,
    resyncBytesSentTotal: m ? Number(m.resync_bytes_sent_total) : null,
    resyncRateLimitBytesPerSec: m ? Number(m.resync_rate_limit_bytes_per_sec) : null,
  };
}

/** Who serves the group and what each reachable portal tells hosts about it. */
function groupPlacement(name: string, statuses: Array<{ site: string; status: AgentStatus }>): Pick<GroupMirrorReport, 'serving' | 'gate' | 'alua' | 'paths'> {
  const at = statuses.flatMap((s) => {
    const g = s.status.groups.find((x) => x.name === name);
    return g ? [{ site: s.site, g }] : [];
  });
  const primary = at.find((x) => x.g.role === 'primary');
  const gate = primary?.g.arbitration?.gate ?? null;
  const alua: GroupMirrorReport['alua'] = {};
  const paths: GroupMirrorReport['paths'] = {};
  for (const { site, g } of at) {
    if (!g.path) continue;
    alua[site] = Object.fromEntries(g.path.port_groups.map((p) => [p.site, p.state]));
    paths[site] = { primary: g.path.primary || null, fenced: g.path.fenced, link: g.path.link, forwardingSites: g.path.forwarding_sites };
  }
  return { serving: primary !== undefined && gate !== 'closed' && !(paths[primary.site]?.fenced ?? false), gate, alua, paths };
}

function drillSummary(d: Topology['drills'][number], list: CallResult<DrillListWire>, nowMs: number, witnessStartedMs: number | null): DrillSummary {
  const w = list.ok ? list.value.drills.find((x) => x.name === d.name) : undefined;
  const base = { name: d.name, schedule: d.schedule, failback: d.failback };
  if (!w) {
    return { ...base, timezone: null, historyKnown: false, running: false, nextRun: null, overdueSince: null, overdue: null, last: null, lastAttempt: null };
  }
  const lastEnd = w.last_ended_at || w.last_started_at;
  const rto = Number(w.last_rto_ms ?? -1);
  const rpo = Number(w.last_rpo_ms ?? -1);
  const last = w.last_run_id ? {
    id: w.last_run_id, outcome: w.last_outcome, startedAt: w.last_started_at, endedAt: w.last_ended_at || null,
    ageMs: Math.max(0, nowMs - Date.parse(lastEnd)), reason: w.last_reason || null, rtoMs: rto >= 0 ? rto : null,
    rpoMs: rpo >= 0 ? rpo : null, rpoAtRisk: w.last_rpo_at_risk ?? false,
  } : null;
  const lastAttempt = w.last_attempt_started_at
    ? { outcome: w.last_attempt_outcome ?? '', startedAt: w.last_attempt_started_at, reason: w.last_attempt_reason || null }
    : null;
  const due = drillOverdue({
    schedule: d.schedule, timezone: w.timezone || undefined, running: w.running, nowMs, witnessStartedMs,
    lastAttemptStartedMs: lastAttempt ? Date.parse(lastAttempt.startedAt) : null,
  });
  return {
    ...base, timezone: w.timezone || null, historyKnown: true, running: w.running, nextRun: w.next_run || null,
    overdueSince: due === null ? null : new Date(due).toISOString(), overdue: due !== null, last, lastAttempt,
  };
}
