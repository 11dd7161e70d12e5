// `metroctl topology plan -f FILE` and `metroctl topology apply -f FILE [--force]`: what a topology
// file would change in the running cluster, and the change itself, pushed to both agents and the
// witness phase by phase (PREPARE on all, COMMIT on all, FINISH on all; topology.proto) under a new
// version number. Exit codes: 0 done or nothing to do, 1 unreachable or refused, 2 bad file or usage.
import path from 'node:path';
import fs from 'node:fs/promises';
import type { Command } from 'commander';
import { formatIssue, parseTopology, type Topology } from '../common/topology/index.ts';
import { diffTopology, type TopologyPlan } from '../common/topology/topology-diff.ts';
import { dial, call } from '../common/grpc-client.ts';
import { EXIT_FAILED, EXIT_USAGE, loadTopologyOrExit } from '../common/daemon.ts';

interface TopologyState { cluster: string; version: string; text: string; file: string; applied_at: string; pending_phase: string }
interface Daemon { name: string; proto: string; service: string; address: string; port: number }
interface Running { daemon: Daemon; state: TopologyState }

const getDeadlineMs = 3000;
/** COMMIT waits for the mirror to hold every write to a shrunk or deleted volume. */
const applyDeadlineMs = 30_000;
const phases = ['PREPARE', 'COMMIT', 'FINISH'] as const;

export function registerTopologyChangeCommands(topology: Command): void {
  topology
    .command('plan')
    .description('show what a topology file would change in the running cluster (nothing is changed)')
    .requiredOption('-f, --file <topology>', 'the new topology YAML file')
    .option('-o, --output <format>', 'text or json', 'text')
    .addHelpText('after', `
Compares FILE with the topology the agents and the witness run (their applied version) and lists
volumes added, grown, shrunk or deleted, groups added or removed, and settings changed. Changes that
destroy data are marked DESTRUCTIVE (apply refuses them without --force); changes that cannot be
made while the cluster runs are listed as not applicable online.
Exit codes: 0 plan shown (or no changes), 1 a daemon is unreachable, 2 FILE is invalid.

Examples:
  metroctl topology plan -f topology.yaml
  metroctl topology plan -f topology.yaml -o json | jq '.changes[] | select(.destructive)'
`)
    .action(async (opts: { file: string; output: string }) => {
      process.exitCode = await plan(opts.file, opts.output === 'json');
    });
  topology
    .command('apply')
    .description('apply a topology file to the running cluster without stopping I/O')
    .requiredOption('-f, --file <topology>', 'the new topology YAML file')
    .option('--force', 'also make destructive changes (shrinking or deleting a volume, removing a group)', false)
    .option('--topology-version <n>', 'the version number to apply (default: one more than the newest the cluster holds)')
    .addHelpText('after', `
Pushes FILE to both agents and the witness under a new version number. Each daemon records the
version durably (a restart serves it) and refuses a version not newer than its own or a topology of
another cluster. New volumes appear to hosts as new LUNs (REPORTED LUNS DATA HAS CHANGED), grown
volumes are grown at both sites before hosts see the new capacity (CAPACITY DATA HAS CHANGED), new
groups get their targets, settings take effect. Destructive changes are refused unless --force; a
deleted volume's file is kept aside (renamed *.deleted-v<N>) at each site.
An apply interrupted half way is completed by the next apply.
Exit codes: 0 applied (or nothing to apply), 1 unreachable or refused, 2 FILE is invalid.

Examples:
  metroctl topology plan -f topology.yaml && metroctl topology apply -f topology.yaml
  metroctl topology apply -f topology.yaml --force        # also shrink or delete volumes
  metroctl topology apply -f topology.yaml --topology-version 7   # refused unless 7 is newer than the cluster's
`)
    .action(async (opts: { file: string; force: boolean; topologyVersion?: string }) => {
      process.exitCode = await apply(opts.file, { force: opts.force, version: opts.topologyVersion });
    });
}

/** The file as the command's preAction hook loaded and checked it (once per process), and its text. */
async function loadWithText(file: string): Promise<{ topology: Topology; text: string }> {
  return { topology: await loadTopologyOrExit(file), text: await fs.readFile(file, 'utf8') };
}

function daemonsOf(t: Topology): Daemon[] {
  return [
    ...t.sites.map((s) => ({ name: `agent ${s.name}`, proto: 'agent.proto', service: 'MetroAgent', address: s.agent.address, port: s.agent.port })),
    { name: 'witness', proto: 'witness.proto', service: 'MetroWitness', address: t.witness.address, port: t.witness.port },
  ];
}

/** Every daemon's applied topology; undefined (after saying which) when one cannot be asked. */
async function fetchRunning(t: Topology): Promise<Running[] | undefined> {
  const daemons = daemonsOf(t);
  const results = await Promise.all(daemons.map(async (d) => {
    const client = dial(d.proto, d.service, d.address, d.port);
    try {
      return await call<TopologyState>(client, 'GetTopology', {}, getDeadlineMs);
    } finally {
      client.close();
    }
  }));
  let ok = true;
  const running: Running[] = [];
  for (const [i, r] of results.entries()) {
    if (!r.ok) {
      ok = false;
      process.stderr.write(`metroctl: ${daemons[i].name} at ${daemons[i].address}:${daemons[i].port} did not answer: ${r.reason}\n`);
    } else running.push({ daemon: daemons[i], state: r.value });
  }
  return ok ? running : undefined;
}

function newest(running: Running[]): Running {
  return running.reduce((a, b) => (Number(b.state.version) > Number(a.state.version) ? b : a));
}

/**
 * The new text as the daemons will read it: its relative paths resolve against the folder of their
 * topology file, not of the operator's copy.
 */
function asRunning(text: string, r: Running): Topology | undefined {
  const parsed = parseTopology(text, r.state.file);
  return parsed.ok ? parsed.topology : undefined;
}

function parseRunning(r: Running): Topology | undefined {
  const parsed = parseTopology(r.state.text, r.state.file);
  if (parsed.ok) return parsed.topology;
  process.stderr.write(`metroctl: the topology version ${r.state.version} that ${r.daemon.name} runs does not parse here: ${parsed.errors.map(formatIssue).join('; ')}\n`);
  return undefined;
}

/** Daemons whose apply of the newest version is not finished (behind, or a phase pending). */
function unfinished(running: Running[]): Running[] {
  const top = newest(running);
  return running.filter((r) => r.state.version !== top.state.version || r.state.text !== top.state.text || r.state.pending_phase !== '');
}

function versionsLine(running: Running[]): string {
  return running.map((r) => `${r.daemon.name} ${r.state.version}${r.state.pending_phase ? ` (${r.state.pending_phase.toLowerCase()} done)` : ''}`).join(', ');
}

function printPlan(p: TopologyPlan): void {
  for (const c of p.changes) {
    const mark = c.destructive ? '! DESTRUCTIVE' : c.change.kind.endsWith('added') || c.change.kind === 'volume-grown' ? '+' : '~';
    process.stdout.write(`  ${mark} ${c.sentence}\n`);
  }
  for (const r of p.refusals) process.stdout.write(`  x not applicable online: ${r}\n`);
}

/** The file read and checked, the running daemons' topology fetched, and the change between them; an exit code when any step fails (it has said why). */
async function planAgainstRunning(file: string) {
  const loaded = await loadWithText(file);
  const running = await fetchRunning(loaded.topology);
  if (!running) return EXIT_FAILED;
  const top = newest(running);
  const current = parseRunning(top);
  if (!current) return EXIT_FAILED;
  const p = diffTopology(current, asRunning(loaded.text, top) ?? loaded.topology);
  return { loaded, running, top, current, p };
}

export async function plan(file: string, json: boolean): Promise<number> {
  const against = await planAgainstRunning(file);
  if (typeof against === 'number') return against;
  const { running, top, current, p } = against;
  const behind = unfinished(running);
  if (json) {
    process.stdout.write(JSON.stringify({
      cluster: current.name,
      runningVersion: Number(top.state.version),
      daemons: running.map((r) => ({ name: r.daemon.name, version: Number(r.state.version), pendingPhase: r.state.pending_phase || null })),
      changes: p.changes.map((c) => ({ ...c.change, destructive: c.destructive, sentence: c.sentence })),
      notApplicableOnline: p.refusals,
    }, null, 2) + '\n');
    return 0;
  }
  process.stdout.write(`cluster ${current.name}: running version ${top.state.version} (${versionsLine(running)})\n`);
  if (behind.length > 0) process.stdout.write(`version ${top.state.version} is not applied everywhere yet: the next apply completes it first\n`);
  if (p.changes.length === 0 && p.refusals.length === 0) {
    process.stdout.write(`no changes: ${file} matches version ${top.state.version}\n`);
    return 0;
  }
  process.stdout.write(`${file} would change:\n`);
  printPlan(p);
  const destructive = p.changes.filter((c) => c.destructive).length;
  process.stdout.write(`${p.changes.length} change(s), ${destructive} destructive${destructive > 0 ? ' (apply needs --force)' : ''}` +
    `${p.refusals.length > 0 ? `, ${p.refusals.length} not applicable online (apply refuses the file)` : ''}\n`);
  return 0;
}

async function applyPhase(running: Running[], req: { cluster: string; version: number; text: string; file: string; force: boolean }, phase: (typeof phases)[number]): Promise<boolean> {
  const results = await Promise.all(running.map(async (r) => {
    const client = dial(r.daemon.proto, r.daemon.service, r.daemon.address, r.daemon.port);
    try {
      return await call<{ version: string; done: string[] }>(client, 'ApplyTopology', { ...req, version: String(req.version), phase }, applyDeadlineMs);
    } finally {
      client.close();
    }
  }));
  let ok = true;
  for (const [i, r] of results.entries()) {
    const who = running[i].daemon.name;
    if (!r.ok) {
      ok = false;
      process.stderr.write(`metroctl: ${phase.toLowerCase()} of version ${req.version} refused by ${who}: ${r.reason}\n`);
      continue;
    }
    for (const line of r.value.done) process.stdout.write(`  ${phase.toLowerCase()} ${who}: ${line}\n`);
  }
  return ok;
}

async function pushVersion(running: Running[], req: { cluster: string; version: number; text: string; file: string; force: boolean }): Promise<boolean> {
  for (const phase of phases) {
    if (!(await applyPhase(running, req, phase))) {
      process.stderr.write(`metroctl: version ${req.version} stopped after a failed ${phase.toLowerCase()}; what was done is recorded, run apply again once the cause is fixed\n`);
      return false;
    }
  }
  return true;
}

export async function apply(file: string, opts: { force: boolean; version?: string }): Promise<number> {
  if (opts.version !== undefined && !/^[1-9][0-9]{0,15}$/.test(opts.version)) {
    process.stderr.write(`metroctl: --topology-version ${opts.version}: expected a positive integer\n`);
    return EXIT_USAGE;
  }
  const against = await planAgainstRunning(file);
  if (typeof against === 'number') return against;
  const { loaded, running, top, current, p } = against;
  if (p.refusals.length > 0) {
    for (const r of p.refusals) process.stderr.write(`metroctl: refused: ${r}\n`);
    return EXIT_FAILED;
  }
  const destructive = p.changes.filter((c) => c.destructive);
  if (destructive.length > 0 && !opts.force) {
    for (const c of destructive) process.stderr.write(`metroctl: refused without --force: ${c.sentence}\n`);
    process.stderr.write(`metroctl: nothing was changed; review with "metroctl topology plan -f ${file}", then apply with --force\n`);
    return EXIT_FAILED;
  }
  if (unfinished(running).length > 0) {
    process.stdout.write(`completing version ${top.state.version} (${versionsLine(running)})\n`);
    const ok = await pushVersion(running, { cluster: current.name, version: Number(top.state.version), text: top.state.text, file: top.state.file, force: opts.force });
    if (!ok) return EXIT_FAILED;
  }
  if (p.changes.length === 0 && opts.version === undefined) {
    process.stdout.write(`no changes: ${file} matches version ${top.state.version}; nothing to apply\n`);
    return 0;
  }
  const version = opts.version !== undefined ? Number(opts.version) : Number(top.state.version) + 1;
  process.stdout.write(`applying version ${version} to cluster ${current.name} (${running.map((r) => r.daemon.name).join(', ')}):\n`);
  printPlan(p);
  const req = { cluster: loaded.topology.name, version, text: loaded.text, file: path.resolve(file), force: opts.force };
  if (!(await pushVersion(running, req))) return EXIT_FAILED;
  process.stdout.write(`applied version ${version}: ${p.changes.length} change(s)\n`);
  return 0;
}
