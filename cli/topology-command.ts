// `metroctl topology validate FILE`: checks a topology file. Each issue goes to stderr as
// file:line:column: severity: path: message; a one-line summary goes to stdout when it is valid.
// Exit 0 when valid (warnings allowed), 2 when invalid or unreadable (DESIGN.md exit codes).
import type { Command } from 'commander';
import { formatIssue, formatSize, loadTopology, type Topology } from '../common/topology/index.ts';
import { registerTopologyChangeCommands } from './topology-apply-command.ts';

const exitBadInput = 2;

export function registerTopologyCommands(program: Command): void {
  const topology = program.command('topology').description('check a topology file, plan and apply changes to a running cluster');
  topology
    .command('validate')
    .argument('<FILE>', 'topology YAML file (metrocluster/v1)')
    .description('check a topology: every error names file:line:column, the field path and what was expected')
    .addHelpText('after', '\nExamples:\n  metroctl topology validate topology-examples/local-demo.yaml\n')
    .action(async (file: string) => {
      process.exitCode = await validate(file);
    });
  registerTopologyChangeCommands(topology);
}

export async function validate(file: string): Promise<number> {
  const result = await loadTopology(file);
  for (const w of result.warnings) process.stderr.write(`${formatIssue(w)}\n`);
  if (!result.ok) {
    for (const e of result.errors) process.stderr.write(`${formatIssue(e)}\n`);
    const n = result.errors.length;
    process.stderr.write(`${file}: invalid: ${n} error${n === 1 ? '' : 's'}\n`);
    return exitBadInput;
  }
  process.stdout.write(`${summary(file, result.topology, result.warnings.length)}\n`);
  return 0;
}

export function summary(file: string, t: Topology, warnings: number): string {
  const volumes = t.groups.flatMap((g) => g.volumes);
  const total = volumes.reduce((sum, v) => sum + v.sizeBytes, 0);
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const w = warnings > 0 ? `, ${plural(warnings, 'warning')}` : '';
  return (
    `${file}: valid: cluster "${t.name}", sites ${t.sites.map((s) => s.name).join(' and ')}, ` +
    `${plural(t.groups.length, 'group')}, ${plural(volumes.length, 'volume')}, ${formatSize(total)} per site${w}`
  );
}
