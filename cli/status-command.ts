// `metroctl status -f FILE [-o json] [--watch [seconds]]`: are we protected? Asks every daemon of
// the topology (agents' Health and Status, the witness's Health and drill list), builds the report
// (status-report.ts, alarms from status-alarms.ts) and prints it as text or JSON (fields:
// docs/status-json.md). Exit 1 when a daemon is unreachable; with --watch, 0 when stopped by Ctrl-C.
import type { Command } from 'commander';
import { loadTopologyOrExit, DaemonError, EXIT_FAILED, EXIT_OK, EXIT_USAGE } from '../common/daemon.ts';
import { dial, call } from '../common/grpc-client.ts';
import type { Topology } from '../common/topology/index.ts';
import { buildStatusReport } from './status-report.ts';
import type { AgentStatus, DrillListWire, Gathered, Health, StatusReport } from './status-types.ts';
import { renderStatusText } from './status-render.ts';
import { jsonOutput } from './arguments.ts';

export type { GroupMirrorReport, StatusReport } from './status-types.ts';

/** Status gathers every group's mirror state: give a busy agent longer than a health probe. */
const statusDeadlineMs = 5000;
export const watchIntervalSDefault = 2;
/** Below this a refresh would mostly wait for the previous one's answers. */
const watchIntervalSMin = 0.5;

const examples = `
Examples:
  metroctl status -f cluster.yaml               alarms first, then daemons, groups and ALUA paths
  metroctl status -f cluster.yaml -o json       the same for scripts (fields: docs/status-json.md)
  metroctl status -f cluster.yaml --watch       redraw every ${watchIntervalSDefault} s in place until Ctrl-C
  metroctl status -f cluster.yaml --watch 10 -o json >> status.ndjson   one JSON report per line

The first line says whether the cluster is protected (a site lost now would fail over automatically,
with no acknowledged write lost) or lists why not. Colours only on a terminal, never with NO_COLOR
set, -o json or piped output. Exit 1 when a daemon is unreachable; --watch exits 0 on Ctrl-C.
`;

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('are we protected? alarms, sites, witness and groups of a running cluster')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .option('-o, --output <format>', 'text or json', 'text')
    .option('-w, --watch [seconds]', `refresh every N seconds (default ${watchIntervalSDefault}) until Ctrl-C`)
    .addHelpText('after', examples)
    .action(async (opts: { file: string; output: string; watch?: string | boolean }) => {
      const json = jsonOutput(opts.output);
      const intervalS = watchInterval(opts.watch);
      const t = await loadTopologyOrExit(opts.file);
      if (intervalS === undefined) {
        const r = await collect(t);
        process.stdout.write(json ? JSON.stringify(r, null, 2) + '\n' : renderStatusText(r, { color: colorWanted() }));
        if (!r.witness.up || r.sites.some((s) => !s.up)) process.exitCode = EXIT_FAILED;
        return;
      }
      await watch(t, json, intervalS);
    });
}

function watchInterval(w: string | boolean | undefined): number | undefined {
  if (w === undefined || w === false) return undefined;
  if (w === true) return watchIntervalSDefault;
  const s = Number(w);
  if (!Number.isFinite(s) || s < watchIntervalSMin) throw new DaemonError(`--watch ${w}: expected a number of seconds, at least ${watchIntervalSMin}`, EXIT_USAGE);
  return s;
}

/** A person reads it: a terminal, and NO_COLOR (https://no-color.org) not set. */
function colorWanted(): boolean {
  return process.stdout.isTTY === true && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
}

async function collect(t: Topology): Promise<StatusReport> {
  return buildStatusReport(t, await gather(t), Date.now());
}

async function gather(t: Topology): Promise<Gathered> {
  const witness = dial('witness.proto', 'MetroWitness', t.witness.address, t.witness.port);
  const drills = dial('drills.proto', 'MetroDrills', t.witness.address, t.witness.port);
  const agents = t.sites.map((s) => dial('agent.proto', 'MetroAgent', s.agent.address, s.agent.port));
  try {
    const [wh, dl, ...rest] = await Promise.all([
      call<Health>(witness, 'Health', {}),
      call<DrillListWire>(drills, 'ListDrills', {}),
      ...agents.flatMap((a) => [call<Health>(a, 'Health', {}), call<AgentStatus>(a, 'Status', {}, statusDeadlineMs)]),
    ]);
    return {
      witness: wh as Gathered['witness'],
      drills: dl as Gathered['drills'],
      sites: t.sites.map((s, i) => ({ name: s.name, health: rest[2 * i] as Gathered['sites'][number]['health'], status: rest[2 * i + 1] as Gathered['sites'][number]['status'] })),
    };
  } finally {
    witness.close();
    drills.close();
    agents.forEach((a) => a.close());
  }
}

const ansi = { home: '\x1b[H', clearScreen: '\x1b[2J', clearLine: '\x1b[K', clearBelow: '\x1b[J', hideCursor: '\x1b[?25l', showCursor: '\x1b[?25h' };

/**
 * Redraws until SIGINT or SIGTERM (exit 0). On a terminal (text) in place: cursor home, each line
 * cleared to its end, the rest of the screen cleared, so nothing flickers or scrolls. Elsewhere a
 * new report per interval: text under a separator line, JSON one object per line.
 */
async function watch(t: Topology, json: boolean, intervalS: number): Promise<never> {
  const inPlace = !json && process.stdout.isTTY === true;
  const stop = (): void => {
    if (inPlace) process.stdout.write(ansi.showCursor + '\n');
    process.exit(EXIT_OK);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (inPlace) process.stdout.write(ansi.hideCursor + ansi.clearScreen);
  for (let n = 1; ; n++) {
    const startedMs = performance.now();
    const r = await collect(t);
    process.stdout.write(frame(r, { json, inPlace, n, intervalS }));
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, intervalS * 1000 - (performance.now() - startedMs))));
  }
}

function frame(r: StatusReport, o: { json: boolean; inPlace: boolean; n: number; intervalS: number }): string {
  if (o.json) return JSON.stringify(r) + '\n';
  const head = `metroctl status: every ${o.intervalS} s, Ctrl-C stops (refresh ${o.n}, ${r.generatedAt})`;
  if (!o.inPlace) return `${o.n > 1 ? '\n' : ''}=== ${head} ===\n${renderStatusText(r, { color: false })}`;
  const body = renderStatusText(r, { color: colorWanted() }).replace(/\n/g, `${ansi.clearLine}\n`);
  return `${ansi.home}${head}${ansi.clearLine}\n${body}${ansi.clearBelow}`;
}
