// The types of `metroctl status`: the daemons' answers as they arrive (protos/*.proto with keepCase
// and 64-bit values as strings) and the report built from them, which `-o json` prints as is
// (docs/status-json.md documents every field). Fields are only ever added, never renamed.
import type { CallResult } from '../common/grpc-client.ts';

// ------------------------------------------------------------ the wire (protos/*.proto, keepCase, longs as strings)

export interface Health { role: string; cluster: string; site: string; version: string; uptime_ms: string; pid: number }
export interface ResyncStatus {
  kind: string; done: boolean; bytes_total: string; bytes_done: string; bytes_sent: string; bytes_matched: string;
  regions_total: string; regions_done: string; rate_bytes_per_sec: number; eta_ms: string;
}
export interface MirrorStatus {
  peer_site: string; attached: boolean; policy: string; mode: string; mode_switches: number; rtt_ms: number;
  lag_bytes: string; lag_ms: number; secondary: string; outdated_reason: string; outdated_since: string;
  resync: ResyncStatus | null; resync_bytes_sent_total: string; resync_rate_limit_bytes_per_sec: string; throttled: boolean;
  copy_has_data: boolean; copy_consistent: boolean; hold_down_ms: string;
}
export interface Arbitration {
  primary: string; epoch: string; lease_state: string; peer_lease_remaining_ms: string; witness_lease_remaining_ms: string;
  witness_reachable: boolean; access: string; gate: string; peer_alive: boolean; secondary: string; blocked: string;
  switchover: boolean; failover_requested: boolean;
}
export interface PathStatus {
  primary: string; fenced: boolean; link: string; forwarding_sites: string[];
  port_groups: Array<{ site: string; port_group: number; state: string }>;
}
export interface AgentGroup {
  name: string; iqn: string; preferred_site: string; role: string; epoch: string;
  volumes: Array<{ name: string; lun: number; size_bytes: string; naa: string }>;
  arbitration?: Arbitration | null;
  mirror: MirrorStatus | null;
  path?: PathStatus | null;
}
export interface DivergentSave { group: string; volume: string; epoch: string; file: string; regions: number; bytes: string; saved_at: string }
export interface AgentStatus {
  cluster: string;
  site: string;
  portal: { address: string; port: number; portal_group_tag: number; sessions: number };
  groups: AgentGroup[];
  divergent?: DivergentSave[];
}
export interface DrillScheduleWire {
  name: string; group: string; schedule: string; failback: boolean; next_run: string; last_run_id: string; last_outcome: string;
  last_started_at: string; running: boolean; last_ended_at?: string; last_reason?: string; last_rto_ms?: string;
  last_rpo_ms?: string; last_rpo_at_risk?: boolean;
  last_attempt_outcome?: string; last_attempt_started_at?: string; last_attempt_reason?: string; timezone?: string;
}
export interface DrillListWire { running_id: string; drills: DrillScheduleWire[] }

/** Everything metroctl asked, per daemon. */
export interface Gathered {
  witness: CallResult<Health>;
  drills: CallResult<DrillListWire>;
  sites: Array<{ name: string; health: CallResult<Health>; status: CallResult<AgentStatus> }>;
}

// ------------------------------------------------------------ the report


export interface DaemonReport { up: boolean; pid?: number; uptimeMs?: number; version?: string; reason?: string }

/** One drill of a group, from the witness's history; `historyKnown` false when the witness did not answer. */
export interface DrillSummary {
  name: string;
  schedule: string;
  timezone: string | null;
  failback: boolean;
  historyKnown: boolean;
  running: boolean;
  nextRun: string | null;
  /** The latest scheduled time no drill started for (a skipped run does not count); null when none is owed. */
  overdueSince: string | null;
  overdue: boolean | null;
  last: { id: string; outcome: string; startedAt: string; endedAt: string | null; ageMs: number; reason: string | null; rtoMs: number | null;
    /** Measured RPO of the run (null: not measured, or a witness before it) and whether it showed data at risk. */
    rpoMs: number | null; rpoAtRisk: boolean } | null;
  lastAttempt: { outcome: string; startedAt: string; reason: string | null } | null;
}

/** Per group, from the primary's agent: the mirror as `metroctl status` reports it. */
export interface GroupMirrorReport {
  name: string;
  primary: string | null;
  secondary: string | null;
  epoch: number | null;
  policy: string | null;
  ackMode: string | null;
  modeSwitches: number | null;
  /** adaptive: healthy time the link needs before the group returns to sync (grows while it flaps). */
  holdDownMs: number | null;
  rttMs: number | null;
  lagBytes: number | null;
  lagMs: number | null;
  attached: boolean;
  upToDate: boolean | null;
  secondaryState: string | null;
  outdated: { reason: string; since: string } | null;
  throttled: boolean;
  resync: {
    kind: string; done: boolean; bytesTotal: number; bytesDone: number; bytesSent: number; bytesMatched: number;
    regionsTotal: number; regionsDone: number; rateBytesPerSec: number; etaMs: number | null;
  } | null;
  resyncBytesSentTotal: number | null;
  resyncRateLimitBytesPerSec: number | null;
  preferredSite: string;
  /** The lag bound of the topology file (replication.maxLagMs, the group's override merged). */
  maxLagMs: number;
  /** failover.maxDataLossMs: the lag an outdated secondary may have and still be failed over to automatically. */
  maxDataLossMs: number;
  /** A reachable site is the group's primary with its write gate open: hosts' I/O is executed. */
  serving: boolean;
  /** The primary's write gate (closed: fenced, no quorum); null when no reachable site is primary. */
  gate: string | null;
  /** Per reachable site, the ALUA state of every site's port group as that site's portal reports it. */
  alua: Record<string, Record<string, string>>;
  /** Per reachable site, where its portal sends the group's commands. */
  paths: Record<string, { primary: string | null; fenced: boolean; link: string; forwardingSites: string[] }>;
  drills: DrillSummary[];
}

export interface SiteReport extends DaemonReport {
  name: string;
  fireZone: string;
  address: string;
  portal: { address: string; sessions: number } | null;
  /** Why the Status call failed while Health answered; absent when it answered. */
  statusReason?: string;
  groups: AgentGroup[];
  divergent: DivergentSave[];
}

export interface StatusReport {
  cluster: string;
  generatedAt: string;
  protected: boolean;
  summary: string;
  alarms: Alarm[];
  witness: DaemonReport & { address: string; fireZone: string };
  sites: SiteReport[];
  /** The metro link: the highest mirror round trip of the attached groups. */
  link: { rttMs: number | null };
  automaticFailover: { available: boolean; reason?: string };
  drillsKnown: boolean;
  groups: GroupMirrorReport[];
}

/** The report without its verdict: what the alarms are computed from. */
export type StatusFacts = Omit<StatusReport, 'protected' | 'summary' | 'alarms'>;

// ------------------------------------------------------------ alarms (status-alarms.ts)

export type AlarmSeverity = 'critical' | 'warning';

export type AlarmCode =
  /** metroctl does not reach the witness: no automatic failover (DESIGN.md "Arbitration"). */
  | 'WITNESS_UNREACHABLE'
  /** metroctl reaches the witness, a site does not: no automatic failover for that site's groups. */
  | 'WITNESS_UNREACHABLE_FROM_SITE'
  /** A site's agent does not answer (Health or Status). */
  | 'AGENT_UNREACHABLE'
  /** No reachable site executes the group's I/O: no primary known, or the primary is fenced. */
  | 'GROUP_NOT_SERVING'
  /** The group is not mirrored: mirroring is off at its primary. */
  | 'MIRROR_OFF'
  /** The secondary's mirror stream is not attached to the primary. */
  | 'SECONDARY_DETACHED'
  /** A resync to the secondary is running: it is not up-to-date until it ends. */
  | 'RESYNC_RUNNING'
  /** The secondary may miss acknowledged writes (async mode, a lost link): no automatic failover to it
   *  (critical), or one that may lose up to failover.maxDataLossMs of writes (warning: lag within it). */
  | 'SECONDARY_OUTDATED'
  /** The mirror's lag is above the group's maxLagMs. */
  | 'LAG_ABOVE_BOUND'
  /** Host writes are held: the async mirror reached its lag bound. */
  | 'WRITES_THROTTLED'
  /** Hosts logged in at a secondary's portal have no usable path: its port group is not active. */
  | 'PATH_UNAVAILABLE'
  /** A replaced primary kept writes that never reached the new primary, waiting for inspection. */
  | 'DIVERGENT_WRITES_SAVED'
  /** The last drill run that was not skipped failed, aborted or was interrupted. */
  | 'DRILL_FAILED'
  /** A scheduled drill time passed and no run of the drill started. */
  | 'DRILL_OVERDUE';

export interface Alarm {
  severity: AlarmSeverity;
  code: AlarmCode;
  /** The site it is about, or null. */
  site: string | null;
  /** The group it is about, or null. */
  group: string | null;
  /** One sentence for the admin. */
  message: string;
}
