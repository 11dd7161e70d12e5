// Checks that look at the filesystem: secret and certificate files exist (their contents are never
// read here; the agent reads them), and each data directory's filesystem has room for the volumes
// (a warning only: volumes are thin). Adds to the report of a topology that passed the pure checks.
import { stat, statfs } from 'node:fs/promises';
import * as nodePath from 'node:path';
import type { Report } from './checks.ts';
import type { RawTopology } from './schema.ts';
import { formatSize } from './size.ts';
import type { Topology } from './types.ts';

/** Runs on the raw values, so a missing file is reported together with every other error. */
export async function checkFiles(raw: RawTopology, dir: string, r: Report): Promise<void> {
  const files: [string, string | undefined, string][] = [];
  const chap = raw.access?.chap;
  files.push(['access.chap.secretFile', chap?.secretFile, 'the CHAP secret the initiators use']);
  files.push(['access.chap.mutual.secretFile', chap?.mutual?.secretFile, 'the CHAP secret the target uses (mutual CHAP)']);
  const tls = raw.security?.tls;
  files.push(['security.tls.ca', tls?.ca, 'the cluster CA certificate']);
  for (const [name, pair] of Object.entries(tls?.daemons ?? {})) {
    files.push([`security.tls.daemons.${name}.cert`, pair?.cert, `the certificate of ${name}`]);
    files.push([`security.tls.daemons.${name}.key`, pair?.key, `the private key of ${name}`]);
  }
  files.push(['security.tls.metroctl.cert', tls?.metroctl?.cert, 'the certificate metroctl presents']);
  files.push(['security.tls.metroctl.key', tls?.metroctl?.key, 'the private key metroctl presents']);
  for (const [path, given, what] of files) {
    if (given === undefined) continue;
    const file = nodePath.resolve(dir, given);
    const shown = file === given ? file : `${given} (${file})`;
    const s = await stat(file).catch(() => undefined);
    if (s === undefined) r.error(path, `found ${shown}, which does not exist, expected a file holding ${what}`);
    else if (!s.isFile()) r.error(path, `found ${shown}, which is not a regular file, expected a file holding ${what}`);
  }
}

/** Nearest existing ancestor of a directory that may not exist yet (it is created on first start). */
async function nearestExisting(dir: string): Promise<string> {
  for (let d = dir; ; d = nodePath.dirname(d)) {
    if (await stat(d).then(() => true, () => false)) return d;
    if (nodePath.dirname(d) === d) return d;
  }
}

export async function checkFreeSpace(t: Topology, r: Report): Promise<void> {
  // Every volume of every group lives at both sites; sites sharing a filesystem share its space.
  const totalBytes = t.groups.flatMap((g) => g.volumes).reduce((sum, v) => sum + v.sizeBytes, 0);
  const byDevice = new Map<number, { sites: number[]; existing: string; freeBytes: number }>();
  for (const [i, site] of t.sites.entries()) {
    const existing = await nearestExisting(site.dataDir);
    const [s, fs] = await Promise.all([stat(existing), statfs(existing)]).catch(() => [undefined, undefined]);
    if (s === undefined || fs === undefined) continue;
    const entry = byDevice.get(s.dev) ?? { sites: [], existing, freeBytes: fs.bavail * fs.bsize };
    entry.sites.push(i);
    byDevice.set(s.dev, entry);
  }
  for (const { sites, existing, freeBytes } of byDevice.values()) {
    const needBytes = totalBytes * sites.length;
    if (needBytes <= freeBytes) continue;
    const first = sites[0];
    const who =
      sites.length === 1
        ? `the volumes of site "${t.sites[first].name}" total ${formatSize(needBytes)}`
        : `sites ${sites.map((i) => `"${t.sites[i].name}"`).join(' and ')} share one filesystem and their volumes total ${formatSize(needBytes)}`;
    r.warning(
      `sites[${first}].dataDir`,
      `found ${formatSize(freeBytes)} free on the filesystem of ${existing}, but ${who} ` +
        '(volumes are thin: this works until they fill up, then writes fail)',
    );
  }
}
