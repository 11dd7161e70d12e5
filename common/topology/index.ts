// Public entry of the topology package: load, parse and validate metrocluster/v1 topology files.
// Invalid topologies are returned as issues (file:line:column, field path, found/expected), never
// thrown. loadTopology adds the checks that need the filesystem; parseTopology is pure.
import { readFile } from 'node:fs/promises';
import { analyseTopology, failed, sortIssues } from './parse.ts';
import { checkFiles, checkFreeSpace } from './filesystem-checks.ts';
import type { TopologyIssue, TopologyResult } from './types.ts';

export type {
  ChapConfig, Drill, Endpoint, Group, PortalLimitsConfig, ReplicationConfig, SecurityConfig, Site, TlsKeyPair, Topology,
  TopologyIssue, TopologyResult, Volume, Witness,
} from './types.ts';
export { parseSize, formatSize, blockSizeBytes, type SizeResult } from './size.ts';
export { groupIqn, iqnPrefix } from './parse.ts';

export function parseTopology(text: string, file: string): TopologyResult {
  return analyseTopology(text, file).result;
}

export async function loadTopology(file: string): Promise<TopologyResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message;
    const issue: TopologyIssue = {
      file, line: 1, column: 1, path: '', severity: 'error',
      message: `cannot read the topology file (${reason}), expected a readable YAML file`,
    };
    return { ok: false, errors: [issue], warnings: [] };
  }
  const { result, report, raw, dir } = analyseTopology(text, file);
  if (raw !== undefined) await checkFiles(raw, dir, report);
  if (!result.ok || report.errors.length > 0) return failed(report);
  await checkFreeSpace(result.topology, report);
  return { ok: true, topology: result.topology, warnings: sortIssues(report.warnings) };
}

/** "file:line:column: error: sites[1].portal.port: found 70000, expected an integer from 1 to 65535" */
export function formatIssue(i: TopologyIssue): string {
  return `${i.file}:${i.line}:${i.column}: ${i.severity}: ${i.path ? `${i.path}: ` : ''}${i.message}`;
}
