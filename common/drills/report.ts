// A drill's report: what the witness records for every drill it runs (or skips), what
// `metroctl drill report` prints as Markdown or JSON. The JSON fields below are the stable contract
// for scripts; times are ISO 8601 UTC, durations ms.

export type DrillOutcome =
  /** still running */
  | 'running'
  /** switched over, verified (and failed back when configured) */
  | 'passed'
  /** a check after the switchover failed; the group was returned where it was (see `finalPrimary`) */
  | 'failed'
  /** the precheck refused: nothing was changed */
  | 'aborted'
  /** not started: another drill was running */
  | 'skipped'
  /** the witness stopped during the drill */
  | 'interrupted';

export interface DrillPhaseRecord {
  name: 'precheck' | 'switchover' | 'verify' | 'failback' | 'return';
  startedAt: string;
  endedAt: string;
  ok: boolean;
  detail: string;
}

/** What a drill's RPO figure was measured from (site-witness/drills/rpo-measure.ts). */
export interface RpoEvidence {
  /**
   * The old primary's mirror in its last status as primary while the switchover ran: ack mode,
   * the secondary's state, what the secondary had not acknowledged, whether the switchover had
   * drained it (new I/O held), and how long before the first status naming another primary.
   */
  handover: { mode: string; secondary: string; lagBytes: number; lagMs: number; drained: boolean; windowMs: number | null } | null;
  /** The probe's last write acknowledged at the old primary, read at the new primary. */
  readBack: 'identical' | 'differs' | 'not run';
  /** The measurement shows acknowledged writes the new primary may lack. */
  atRisk: boolean;
}

export interface DrillReport {
  id: string;
  drill: string;
  group: string;
  cluster: string;
  trigger: 'schedule' | 'manual';
  requestedBy: string;
  startedAt: string;
  endedAt: string | null;
  outcome: DrillOutcome;
  /** Why it did not pass, in one sentence; null when it passed. */
  reason: string | null;
  /** The group's primary before the drill and the site it was switched over to. */
  from: string | null;
  to: string | null;
  failback: boolean;
  /** Longest I/O pause the probe initiator saw (any path) during the switchover, and the failback. */
  rtoMs: number | null;
  failbackRtoMs: number | null;
  /** Acknowledged writes the switchover may have lost, in ms of writes; 0 expected (measured:
   *  `rpoEvidence`); null when not measured. */
  rpoMs: number | null;
  /** How the figure was measured, in one sentence (it starts with "DATA AT RISK" when it shows a loss). */
  rpoBasis: string;
  /** Absent from reports written before RPO was measured. */
  rpoEvidence?: RpoEvidence | null;
  /** Online verify of both copies after the switchover. */
  verify: { mismatches: number | null; detail: string } | null;
  /** The probe initiator: I/Os served and errors per path, and the write+read through the new primary. */
  probe: { paths: Array<{ site: string; served: number; errors: number; lastError: string }>; writeRead: string | null } | null;
  phases: DrillPhaseRecord[];
  /** The group's primary when the drill ended. */
  finalPrimary: string | null;
}

/**
 * A report as its drill starts: nothing measured, no phase run. The runner fills it in phase by
 * phase; a drill skipped because another runs ends it at once (outcome, endedAt, reason).
 */
export function newDrillReport(o: {
  id: string;
  drill: { name: string; group: string; failback: boolean };
  cluster: string;
  trigger: DrillReport['trigger'];
  requestedBy: string;
  startedAt: string;
}): DrillReport {
  return {
    id: o.id, drill: o.drill.name, group: o.drill.group, cluster: o.cluster, trigger: o.trigger, requestedBy: o.requestedBy,
    startedAt: o.startedAt, endedAt: null, outcome: 'running', reason: null, from: null, to: null, failback: o.drill.failback,
    rtoMs: null, failbackRtoMs: null, rpoMs: null, rpoBasis: 'not measured', rpoEvidence: null, verify: null, probe: null, phases: [], finalPrimary: null,
  };
}

const ms = (n: number | null): string => n === null ? 'not measured' : `${n} ms`;

export function reportMarkdown(r: DrillReport): string {
  const lines = [
    `# Drill ${r.drill}: ${r.outcome.toUpperCase()}`,
    '',
    `| | |`,
    `| --- | --- |`,
    `| report | ${r.id} |`,
    `| cluster / group | ${r.cluster} / ${r.group} |`,
    `| started | ${r.startedAt} (${r.trigger}${r.requestedBy ? `, by ${r.requestedBy}` : ''}) |`,
    `| ended | ${r.endedAt ?? '-'} |`,
    `| switchover | ${r.from && r.to ? `${r.from} -> ${r.to}${r.failback ? ', then back' : ''}` : 'not started'} |`,
    `| RTO (I/O pause seen by the probe) | ${ms(r.rtoMs)} |`,
    ...(r.failback ? [`| failback I/O pause | ${ms(r.failbackRtoMs)} |`] : []),
    `| RPO | ${r.rpoMs === null ? r.rpoBasis : `${r.rpoEvidence?.atRisk ? `**${r.rpoMs} ms**` : `${r.rpoMs} ms`}: ${r.rpoBasis}`} |`,
    `| verify | ${r.verify ? `${r.verify.mismatches ?? '?'} mismatches: ${r.verify.detail}` : 'not run'} |`,
    `| primary now | ${r.finalPrimary ?? 'unknown'} |`,
  ];
  if (r.reason) lines.push('', `**Why:** ${r.reason}`);
  if (r.phases.length) {
    lines.push('', '## Phases', '', '| phase | started | ended | result | detail |', '| --- | --- | --- | --- | --- |');
    for (const p of r.phases) lines.push(`| ${p.name} | ${p.startedAt} | ${p.endedAt} | ${p.ok ? 'ok' : 'FAILED'} | ${p.detail.replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`);
  }
  if (r.probe) {
    lines.push('', '## Probe initiator', '', '| path | I/Os served | errors | last error |', '| --- | --- | --- | --- |');
    for (const p of r.probe.paths) lines.push(`| ${p.site} | ${p.served} | ${p.errors} | ${p.lastError.replace(/\|/g, '\\|') || '-'} |`);
    if (r.probe.writeRead) lines.push('', `Write and read through the new primary: ${r.probe.writeRead}`);
  }
  return lines.join('\n') + '\n';
}
