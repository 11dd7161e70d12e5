// The text screen of `metroctl status`: the verdict in one line, the alarms first, then the daemons
// (fire zone, address, state, pid, uptime), the groups (primary, secondary, epoch, ack mode, RTT,
// lag, up-to-date, resync, last drill) and each portal's view (ALUA states as hosts see them, path,
// lease). Pure: a report in, a string out; colours only when the caller says the reader is a person.
import Table from 'cli-table3';
import type { Alarm, DrillSummary, GroupMirrorReport, SiteReport, StatusReport } from './status-types.ts';
import { outdatedWhy, resyncPct } from './status-alarms.ts';

export interface RenderOptions {
  /** ANSI colours (a terminal, NO_COLOR unset); never for pipes, files or JSON. */
  color: boolean;
}

interface Paint { red(s: string): string; yellow(s: string): string; green(s: string): string; bold(s: string): string }

function painter(on: boolean): Paint {
  const sgr = (code: number) => (s: string): string => (on && s !== '' ? `\x1b[${code}m${s}\x1b[0m` : s);
  return { red: sgr(31), yellow: sgr(33), green: sgr(32), bold: sgr(1) };
}

export function renderStatusText(r: StatusReport, o: RenderOptions): string {
  const p = painter(o.color);
  // cli-table3 colours its headers and borders by default: plain when colour is off.
  const style = o.color ? { style: { head: ['bold'], border: [] as string[] } } : { style: { head: [] as string[], border: [] as string[] } };
  const parts = [
    `${r.protected ? p.green(r.summary) : p.red(p.bold(r.summary))}  [cluster ${r.cluster}, ${r.generatedAt}]`,
    ...alarmLines(r.alarms, p),
    ...(r.automaticFailover.available ? [] : [p.red(p.bold(`!!! AUTOMATIC FAILOVER UNAVAILABLE: ${r.automaticFailover.reason}. I/O goes on while the sites reach each other; a lost site's groups need \`metroctl failover\`. !!!`))]),
    daemonsTable(r, p, style),
    `metro link RTT: ${r.link.rttMs === null ? 'unknown (no group attached)' : fmtMs(r.link.rttMs)}`,
    groupsTable(r.groups, p, style),
    portalsTable(r, p, style),
    ...divergentLines(r.sites),
  ];
  return parts.filter((s) => s !== '').join('\n') + '\n';
}

function alarmLines(alarms: readonly Alarm[], p: Paint): string[] {
  if (alarms.length === 0) return [];
  const lines = alarms.map((a) => {
    const sev = a.severity === 'critical' ? p.red('CRITICAL') : p.yellow('WARNING ');
    return `  ${sev} ${a.code.padEnd(30)} ${a.message}`;
  });
  return [`ALARMS (${alarms.length})`, ...lines];
}

type Style = { style: { head: string[]; border: string[] } };

function daemonsTable(r: StatusReport, p: Paint, style: Style): string {
  const t = new Table({ head: ['daemon', 'fire zone', 'address', 'state', 'pid', 'uptime'], ...style });
  const state = (d: { up: boolean; reason?: string; statusReason?: string }): string =>
    !d.up ? p.red(`DOWN (${d.reason ?? 'no answer'})`) : d.statusReason ? p.yellow(`up, no status (${d.statusReason})`) : p.green('up');
  t.push(['witness', r.witness.fireZone, r.witness.address, state(r.witness), r.witness.pid ?? '', fmtUptime(r.witness.uptimeMs)]);
  for (const s of r.sites) t.push([`agent ${s.name}`, s.fireZone, s.address, state(s), s.pid ?? '', fmtUptime(s.uptimeMs)]);
  return t.toString();
}

function groupsTable(groups: readonly GroupMirrorReport[], p: Paint, style: Style): string {
  const t = new Table({ head: ['group', 'primary', 'secondary', 'epoch', 'ack (policy)', 'RTT', 'lag', 'up-to-date', 'resync', 'last drill'], ...style });
  for (const g of groups) {
    t.push([
      g.name,
      g.primary === null ? p.red('NONE') : g.serving ? g.primary : p.red(`${g.primary} (FENCED)`),
      g.secondary === null ? '?' : g.attached ? g.secondary : p.red(`${g.secondary} (detached)`),
      g.epoch ?? '',
      g.policy === null ? (g.primary === null ? '' : p.red('mirroring off')) : `${g.ackMode === 'sync' ? g.ackMode : p.yellow(g.ackMode ?? '?')} (${g.policy})${g.throttled ? p.red(' THROTTLED') : ''}`,
      g.rttMs === null ? '' : fmtMs(g.rttMs),
      fmtLag(g, p),
      fmtUpToDate(g, p),
      fmtResync(g),
      g.drills.map((d) => fmtDrill(d, p)).join('\n'),
    ]);
  }
  return t.toString();
}

/** Per group and site: what that site's portal tells hosts and where it sends their commands. */
function portalsTable(r: StatusReport, p: Paint, style: Style): string {
  const t = new Table({ head: ['group', 'portal', 'role', 'port groups as hosts see them here', 'path', 'lease', 'witness', 'LUNs'], ...style });
  for (const g of r.groups) {
    for (const s of r.sites) {
      const ag = s.groups.find((x) => x.name === g.name);
      if (!ag) continue;
      const a = ag.arbitration;
      const states = g.alua[s.name];
      t.push([
        g.name, s.name, ag.role,
        states ? Object.entries(states).map(([site, st]) => `${site} ${fmtAlua(st, p)}`).join('\n') : '?',
        fmtPath(g.paths[s.name], p),
        a ? `${a.lease_state}${a.gate === 'closed' && ag.role === 'primary' ? p.red(' (FENCED)') : ''}` : '',
        a ? (a.witness_reachable ? 'reachable' : p.red('UNREACHABLE')) : '',
        ag.volumes.map((v) => `${v.lun}:${v.name}`).join(' '),
      ]);
    }
  }
  return t.length > 0 ? t.toString() : '';
}

function divergentLines(sites: readonly SiteReport[]): string[] {
  return sites.flatMap((s) => s.divergent.map((d) =>
    `divergent writes kept at ${s.name}: group ${d.group} volume ${d.volume} (replaced in epoch ${d.epoch}), ${d.regions} region(s), ${d.bytes} bytes: ${d.file}`));
}

function fmtAlua(state: string, p: Paint): string {
  const name = state.replace(/^active-/, 'active/');
  if (state === 'active-optimized') return p.green(name);
  if (state === 'active-non-optimized') return name;
  return state === 'transitioning' ? p.yellow(name) : p.red(name);
}

function fmtPath(path: GroupMirrorReport['paths'][string] | undefined, p: Paint): string {
  if (!path) return '';
  if (path.fenced) return p.red('fenced');
  if (path.link === 'none') return `executes${path.forwardingSites.length > 0 ? ` (${path.forwardingSites.join(', ')} forwarding)` : ''}`;
  const link = path.link === 'attached' ? path.link : p.yellow(path.link);
  return `forwards to ${path.primary ?? '?'}: ${link}`;
}

function fmtLag(g: GroupMirrorReport, p: Paint): string {
  if (g.lagBytes === null) return '';
  const text = `${fmtBytes(g.lagBytes)} / ${Math.round(g.lagMs ?? 0)} ms`;
  return (g.lagMs ?? 0) > g.maxLagMs ? p.red(`${text} (max ${g.maxLagMs})`) : text;
}

function fmtUpToDate(g: GroupMirrorReport, p: Paint): string {
  if (g.upToDate === null) return '';
  if (g.upToDate) return p.green('yes');
  return p.red(`NO: ${g.secondaryState ?? 'unknown'}${outdatedWhy(g)}`);
}

function fmtDrill(d: DrillSummary, p: Paint): string {
  if (!d.historyKnown) return `${d.name}: unknown (witness)`;
  if (d.running) return `${d.name}: ${p.yellow('RUNNING')}`;
  const overdue = d.overdue ? p.red(' OVERDUE') : '';
  if (!d.last) return `${d.name}: never run${overdue}`;
  const outcome = d.last.outcome === 'passed' ? p.green('passed') : p.red(d.last.outcome.toUpperCase());
  const rto = d.last.rtoMs !== null ? `, RTO ${d.last.rtoMs} ms` : '';
  const rpo = d.last.rpoMs !== null ? `, RPO ${d.last.rpoMs} ms` : '';
  const risk = d.last.rpoAtRisk ? p.red(' DATA AT RISK') : '';
  return `${d.name}: ${outcome} ${fmtAge(d.last.ageMs)} ago${rto}${rpo}${risk}${overdue}`;
}

export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function fmtMs(ms: number): string {
  return `${ms.toFixed(2)} ms`;
}

function fmtResync(g: GroupMirrorReport): string {
  const r = g.resync;
  if (!r) return '';
  if (r.done) return `${r.kind} done: ${fmtBytes(r.bytesSent)} sent, ${fmtBytes(r.bytesMatched)} matched`;
  const eta = r.etaMs === null ? '' : `, ETA ${Math.ceil(r.etaMs / 1000)} s`;
  return `${r.kind} ${resyncPct(r)}%: ${fmtBytes(r.bytesDone)}/${fmtBytes(r.bytesTotal)} at ${fmtBytes(r.rateBytesPerSec)}/s${eta}`;
}

function fmtUptime(ms: number | undefined): string {
  if (ms === undefined) return '';
  const s = Math.floor(ms / 1000);
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.floor(s / 60)}m` : `${Math.floor(s / 3600)}h`;
}

function fmtAge(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  if (s < 172_800) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86_400)} d`;
}
