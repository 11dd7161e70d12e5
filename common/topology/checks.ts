// Semantic checks of a topology that passed the field table: counts, unique names, references
// between sections, clashing endpoints, data directories, fire zones. Pure: issues out, no I/O.
import * as nodePath from 'node:path';
import type { Position } from './schema-engine.ts';
import type { RawEndpoint, RawTopology } from './schema.ts';
import { didYouMean } from './suggest.ts';
import type { TopologyIssue } from './types.ts';
import { normaliseAddress } from './value-checks.ts';

/** Where issues go, and where a path's value starts (the nearest recorded ancestor otherwise). */
export class Report {
  readonly errors: TopologyIssue[] = [];
  readonly warnings: TopologyIssue[] = [];

  constructor(
    readonly file: string,
    private readonly positions: Map<string, Position>,
  ) {}

  at(path: string): Position {
    for (let p = path; ; p = parentPath(p)) {
      const found = this.positions.get(p);
      if (found) return found;
      if (p === '') return { line: 1, column: 1 };
    }
  }

  error(path: string, message: string, at: string = path): void {
    this.errors.push({ file: this.file, ...this.at(at), path, message, severity: 'error' });
  }

  warning(path: string, message: string, at: string = path): void {
    this.warnings.push({ file: this.file, ...this.at(at), path, message, severity: 'warning' });
  }
}

function parentPath(p: string): string {
  const m = /^(.*)(\.[^.[\]]+|\[\d+\])$/.exec(p);
  return m ? m[1] : '';
}

export const volumesPerGroupMax = 256;

export function checkTopology(raw: RawTopology, dir: string, r: Report): void {
  checkSiteCount(raw, r);
  checkUnique(r, 'site name', raw.sites?.map((s, i) => [`sites[${i}].name`, s?.name]));
  checkUnique(r, 'group name', raw.groups?.map((g, i) => [`groups[${i}].name`, g?.name]));
  checkUnique(r, 'drill name', raw.drills?.map((d, i) => [`drills[${i}].name`, d?.name]));
  checkUnique(r, 'initiator name', raw.access?.initiators?.map((n, i) => [`access.initiators[${i}]`, n]));
  raw.groups?.forEach((g, gi) => {
    checkUnique(r, `volume name within group "${g?.name ?? gi}"`, g?.volumes?.map((v, vi) => [`groups[${gi}].volumes[${vi}].name`, v?.name]));
    if ((g?.volumes?.length ?? 0) > volumesPerGroupMax) {
      r.error(`groups[${gi}].volumes`, `found ${g!.volumes!.length} volumes, expected at most ${volumesPerGroupMax} per group (one LUN each, LUN 0 to ${volumesPerGroupMax - 1})`);
    }
  });
  checkReferences(raw, r);
  checkEndpoints(raw, r);
  checkRoutes(raw, r);
  checkDataDirs(raw, dir, r);
  checkChap(raw, dir, r);
  checkSecurity(raw, r);
  checkFireZones(raw, r);
}

function checkSiteCount(raw: RawTopology, r: Report): void {
  const n = raw.sites?.length;
  if (n === undefined || n === 2) return;
  const why = 'a metro cluster mirrors between two sites; the witness, in a third fire zone, is not a site';
  if (n < 2) r.error('sites', `found ${n} site${n === 1 ? '' : 's'}, expected exactly 2 sites (${why})`);
  else r.error('sites', `found ${n} sites, expected exactly 2 sites (${why})`, 'sites[2]');
}

function checkUnique(r: Report, what: string, entries: [string, string | undefined][] | undefined): void {
  const seen = new Map<string, string>();
  for (const [path, name] of entries ?? []) {
    if (name === undefined) continue;
    const first = seen.get(name);
    if (first === undefined) seen.set(name, path);
    else r.error(path, `found "${name}" again, expected a unique ${what} (${first} is already "${name}")`);
  }
}

function siteNames(raw: RawTopology): string[] {
  return [...new Set((raw.sites ?? []).flatMap((s) => (s?.name ? [s.name] : [])))];
}

function checkReferences(raw: RawTopology, r: Report): void {
  // A reference is only checked against a list that validated: one mistake, one message.
  const sites = siteNames(raw);
  const siteNamesValid = sites.length > 0 && (raw.sites ?? []).every((s) => s?.name !== undefined);
  raw.groups?.forEach((g, i) => {
    const p = g?.preferredSite;
    if (p === undefined || sites.includes(p) || !siteNamesValid) return;
    r.error(`groups[${i}].preferredSite`, `found "${p}", expected the name of a site: ${sites.join(' or ')}${didYouMean(p, sites)}`);
  });
  const groups = [...new Set((raw.groups ?? []).flatMap((g) => (g?.name ? [g.name] : [])))];
  const groupNamesValid = groups.length > 0 && (raw.groups ?? []).every((g) => g?.name !== undefined);
  raw.drills?.forEach((d, i) => {
    const g = d?.group;
    if (g === undefined || groups.includes(g) || !groupNamesValid) return;
    r.error(`drills[${i}].group`, `found "${g}", expected the name of a group: ${groups.join(', ')}${didYouMean(g, groups)}`);
  });
}

function checkEndpoints(raw: RawTopology, r: Report): void {
  const endpoints: { path: string; what: string; e: RawEndpoint | undefined }[] = [];
  raw.sites?.forEach((s, i) => {
    endpoints.push({ path: `sites[${i}].agent`, what: `site "${s?.name}" agent`, e: s?.agent });
    endpoints.push({ path: `sites[${i}].portal`, what: `site "${s?.name}" portal`, e: s?.portal });
  });
  endpoints.push({ path: 'witness', what: 'the witness', e: raw.witness });
  const seen = new Map<string, { path: string; what: string }>();
  for (const { path, what, e } of endpoints) {
    if (e?.address === undefined || e.port === undefined) continue;
    const key = `${normaliseAddress(e.address)}|${e.port}`;
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, { path, what });
      continue;
    }
    const shown = e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
    r.error(
      path,
      `found ${shown}, which ${first.path} (${first.what}) already uses, ` +
        'expected a distinct address:port for every agent, portal and the witness',
      `${path}.port`,
    );
  }
}

/**
 * A route leads to its target directly or through something in between (a replication network
 * address, a proxy). Either way it cannot be another daemon's listening endpoint: that daemon would
 * answer instead of the one meant.
 */
function checkRoutes(raw: RawTopology, r: Report): void {
  const listening: { path: string; what: string; e: RawEndpoint | undefined }[] = [];
  raw.sites?.forEach((s, i) => {
    listening.push({ path: `sites[${i}].agent`, what: `site "${s?.name}" agent`, e: s?.agent });
    listening.push({ path: `sites[${i}].portal`, what: `site "${s?.name}" portal`, e: s?.portal });
  });
  listening.push({ path: 'witness', what: 'the witness', e: raw.witness });
  const key = (e: RawEndpoint | undefined) =>
    e?.address === undefined || e.port === undefined ? undefined : `${normaliseAddress(e.address)}|${e.port}`;
  raw.sites?.forEach((s, i) => {
    const routes: { name: string; target: string; e: RawEndpoint | undefined }[] = [
      { name: 'peer', target: `sites[${1 - i}].agent`, e: s?.routes?.peer },
      { name: 'witness', target: 'witness', e: s?.routes?.witness },
    ];
    for (const { name, target, e } of routes) {
      const k = key(e);
      if (k === undefined) continue;
      const clash = listening.find((l) => l.path !== target && key(l.e) === k);
      if (!clash) continue;
      const shown = e!.address!.includes(':') ? `[${e!.address}]:${e!.port}` : `${e!.address}:${e!.port}`;
      const expected = name === 'peer' ? "the other site's agent" : 'the witness';
      r.error(
        `sites[${i}].routes.${name}`,
        `found ${shown}, which is ${clash.path} (${clash.what}), expected an address:port that leads to ${expected} ` +
          `(its own endpoint, ${target}, or a route or proxy to it)`,
        `sites[${i}].routes.${name}.port`,
      );
    }
  });
}

function checkDataDirs(raw: RawTopology, dir: string, r: Report): void {
  const dirs: { path: string; abs: string }[] = [];
  raw.sites?.forEach((s, i) => {
    if (s?.dataDir !== undefined) dirs.push({ path: `sites[${i}].dataDir`, abs: nodePath.resolve(dir, s.dataDir) });
  });
  if (raw.witness?.dataDir !== undefined) dirs.push({ path: 'witness.dataDir', abs: nodePath.resolve(dir, raw.witness.dataDir) });
  for (let i = 0; i < dirs.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = dirs[j];
      const b = dirs[i];
      const rel = nodePath.relative(a.abs, b.abs);
      const inside = (x: string) => x === '' || (!x.startsWith('..') && !nodePath.isAbsolute(x));
      let how: string | undefined;
      if (rel === '') how = `the same directory as ${a.path}`;
      else if (inside(rel)) how = `inside ${a.path} (${a.abs})`;
      else if (inside(nodePath.relative(b.abs, a.abs))) how = `a parent of ${a.path} (${a.abs})`;
      if (how) r.error(b.path, `found ${b.abs}, ${how}, expected a data directory of its own for every site and the witness`);
    }
  }
}

function checkChap(raw: RawTopology, dir: string, r: Report): void {
  const chap = raw.access?.chap;
  if (chap?.secretFile === undefined || chap.mutual?.secretFile === undefined) return;
  if (nodePath.resolve(dir, chap.secretFile) === nodePath.resolve(dir, chap.mutual.secretFile)) {
    r.error(
      'access.chap.mutual.secretFile',
      `found the same file as access.chap.secretFile, expected a different secret for the target (RFC 7143 §12.1.3: the same secret must not be used in both directions)`,
    );
  }
}

function checkSecurity(raw: RawTopology, r: Report): void {
  const sec = raw.security;
  if (sec?.tls === undefined) return;
  if (sec.insecure === true) {
    r.error('security.insecure', 'found true together with security.tls, expected one of them: TLS files, or insecure: true for plaintext');
  }
  const daemons = sec.tls.daemons;
  if (daemons === undefined) return;
  const names = [...siteNames(raw), 'witness'];
  for (const key of Object.keys(daemons)) {
    if (!names.includes(key)) {
      r.error(`security.tls.daemons.${key}`, `found "${key}", expected a site name or "witness": ${names.join(', ')}${didYouMean(key, names)}`, `security.tls.daemons.${key}#key`);
    }
  }
  const missing = names.filter((n) => !(n in daemons));
  if (missing.length > 0 && Object.keys(daemons).length > 0) {
    r.error('security.tls.daemons', `found no certificate for ${missing.map((m) => `"${m}"`).join(', ')}, expected a { cert, key } for every site and the witness`);
  }
}

function checkFireZones(raw: RawTopology, r: Report): void {
  const [a, b] = raw.sites ?? [];
  if (raw.sites?.length !== 2) return;
  if (a?.fireZone !== undefined && a.fireZone === b?.fireZone) {
    r.warning(
      'sites[1].fireZone',
      `found "${b.fireZone}" for both sites, expected two different fire zones: one fire can take out both copies of every volume`,
    );
  }
  const w = raw.witness?.fireZone;
  raw.sites.forEach((s, i) => {
    if (w !== undefined && s?.fireZone === w) {
      r.warning(
        'witness.fireZone',
        `found "${w}", the fire zone of site "${s.name}" (sites[${i}]), expected a third fire zone: losing that zone loses the site and the witness together, and the other site cannot take over automatically`,
      );
    }
  });
}
