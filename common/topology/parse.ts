// From topology text to a validated Topology: YAML with source positions, the field table, the
// semantic checks, then the typed result. Pure apart from resolving the file name against the
// working directory; checks that need the filesystem live in filesystem-checks.ts.
import * as nodePath from 'node:path';
import { LineCounter, parseDocument, type Node } from 'yaml';
import { Report, checkTopology } from './checks.ts';
import { Validator } from './schema-engine.ts';
import { apiVersion, kind, topologySpec, type RawEndpoint, type RawReplication, type RawTopology } from './schema.ts';
import type { Endpoint, Group, ReplicationConfig, Site, Topology, TopologyIssue, TopologyResult } from './types.ts';

export const iqnPrefix = 'iqn.2026-11.io.metrocluster';

export function groupIqn(cluster: string, group: string): string {
  return `${iqnPrefix}:${cluster}.${group}`;
}

/** A parse with what the filesystem checks need: where each path sits, and the report to add to. */
export interface Analysis {
  result: TopologyResult;
  report: Report;
  /** The values that passed the field table (undefined after a YAML syntax error). */
  raw?: RawTopology;
  dir: string;
}

export function analyseTopology(text: string, file: string): Analysis {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true, strict: true });
  const abs = nodePath.resolve(file);
  const dir = nodePath.dirname(abs);
  const yamlIssues = (list: typeof doc.errors, severity: 'error' | 'warning'): TopologyIssue[] =>
    list.map((e) => {
      const pos = e.linePos?.[0] ?? lineCounter.linePos(e.pos[0]);
      const message = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
      return { file, line: pos.line, column: pos.col, path: '', message: `YAML: ${message}`, severity };
    });
  const syntaxErrors = yamlIssues(doc.errors, 'error');
  const syntaxWarnings = yamlIssues(doc.warnings, 'warning');
  if (syntaxErrors.length > 0) {
    const report = new Report(file, new Map());
    report.errors.push(...syntaxErrors);
    report.warnings.push(...syntaxWarnings);
    return { result: { ok: false, errors: syntaxErrors, warnings: syntaxWarnings }, report, dir };
  }
  const v = new Validator(doc, lineCounter, file);
  const raw = v.validate(doc.contents as Node | null, topologySpec, '') as RawTopology | undefined;
  const report = new Report(file, v.positions);
  report.errors.push(...v.errors);
  report.warnings.push(...syntaxWarnings);
  if (raw !== undefined) checkTopology(raw, dir, report);
  if (report.errors.length > 0 || raw === undefined) return { result: failed(report), report, raw, dir };
  return { result: { ok: true, topology: build(raw, abs, dir), warnings: sortIssues(report.warnings) }, report, raw, dir };
}

export function failed(report: Report): TopologyResult {
  return { ok: false, errors: sortIssues(report.errors), warnings: sortIssues(report.warnings) };
}

export function sortIssues(issues: TopologyIssue[]): TopologyIssue[] {
  return [...issues].sort((a, b) => a.line - b.line || a.column - b.column);
}

/** Only called once every check passed: every field the table requires is present. */
function build(raw: RawTopology, file: string, dir: string): Topology {
  const r = <T>(x: T | undefined): T => x as T;
  const abs = (p: string | undefined) => nodePath.resolve(dir, r(p));
  const cluster = r(raw.metadata?.name);
  const replication = raw.replication as ReplicationConfig;
  const w = r(raw.witness);
  const endpoint = (e: RawEndpoint | undefined): Endpoint => ({ address: r(e?.address), port: r(e?.port) });
  const rawSites = r(raw.sites);
  const sites = rawSites.map((s, i): Site => ({
    name: r(s?.name),
    index: i + 1,
    fireZone: r(s?.fireZone),
    agent: endpoint(s?.agent),
    portal: endpoint(s?.portal),
    dataDir: abs(s?.dataDir),
    routes: {
      peer: endpoint(s?.routes?.peer ?? rawSites[1 - i]?.agent),
      witness: endpoint(s?.routes?.witness ?? w),
    },
  })) as [Site, Site];
  const groups = r(raw.groups).map((g): Group => ({
    name: r(g?.name),
    preferredSite: r(g?.preferredSite),
    volumes: r(g?.volumes).map((v, lun) => ({ name: r(v?.name), sizeBytes: r(v?.size), lun })),
    replication: mergeReplication(replication, g?.replication),
    iqn: groupIqn(cluster, r(g?.name)),
  }));
  const chap = raw.access?.chap;
  const topology: Topology = {
    file,
    dir,
    apiVersion,
    kind,
    name: cluster,
    sites,
    witness: { fireZone: r(w.fireZone), address: r(w.address), port: r(w.port), dataDir: abs(w.dataDir) },
    replication: { ...replication },
    failover: raw.failover as Topology['failover'],
    groups,
    access: { initiators: (raw.access?.initiators ?? []) as string[], limits: r(raw.access?.limits) },
    drills: (raw.drills ?? []).map((d) => ({ name: r(d?.name), group: r(d?.group), schedule: r(d?.schedule), failback: r(d?.failback) })),
  };
  if (chap) {
    topology.access.chap = { user: r(chap.user), secretFile: abs(chap.secretFile) };
    if (chap.mutual) topology.access.chap.mutual = { user: r(chap.mutual.user), secretFile: abs(chap.mutual.secretFile) };
  }
  if (raw.security) {
    const tls = raw.security.tls;
    topology.security = { insecure: r(raw.security.insecure) };
    if (tls) {
      const daemons = Object.fromEntries(
        Object.entries(tls.daemons ?? {}).map(([k, v]) => [k, { cert: abs(v?.cert), key: abs(v?.key) }]),
      );
      topology.security.tls = { ca: abs(tls.ca), daemons };
      if (tls.metroctl) topology.security.tls.metroctl = { cert: abs(tls.metroctl.cert), key: abs(tls.metroctl.key) };
    }
  }
  return topology;
}

function mergeReplication(base: ReplicationConfig, override: RawReplication | undefined): ReplicationConfig {
  return {
    ack: override?.ack ?? base.ack,
    syncMaxRttMs: override?.syncMaxRttMs ?? base.syncMaxRttMs,
    maxLagMs: override?.maxLagMs ?? base.maxLagMs,
    resyncMbps: override?.resyncMbps ?? base.resyncMbps,
  };
}
