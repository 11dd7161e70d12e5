// Checks of command-line arguments several metroctl commands share: one sentence each, exit 2.
import { DaemonError, EXIT_USAGE } from '../common/daemon.ts';
import type { Group, Topology } from '../common/topology/index.ts';

/** The group the argument names, or a usage error listing the topology's groups. */
export function groupOrExit(t: Topology, name: string): Group {
  const g = t.groups.find((x) => x.name === name);
  if (!g) throw new DaemonError(`no group "${name}" in ${t.file}: its groups are ${t.groups.map((x) => x.name).join(', ')}`, EXIT_USAGE);
  return g;
}

/** `-o text|json`: whether the output is JSON, or a usage error. */
export function jsonOutput(o: string): boolean {
  if (o !== 'text' && o !== 'json') throw new DaemonError(`-o ${o}: expected text or json`, EXIT_USAGE);
  return o === 'json';
}
