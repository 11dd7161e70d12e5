// `metroctl switchover`, `failover` and `failback` (DESIGN.md commands table): each asks the agent
// that must act (the group's primary for a switchover, the site to promote for a failover) and
// prints one sentence per group. Exit 0 done, 1 refused or failed (the sentence says why), 2 bad usage.
// A forced failover shows the worst-case data loss first and asks (unless --yes); with the witness
// unreachable too, the promoted site goes on without it, and the outcome says so.
import readline from 'node:readline/promises';
import type { Command } from 'commander';
import type { Topology } from '../common/topology/index.ts';
import { loadTopologyOrExit, DaemonError, EXIT_FAILED, EXIT_USAGE } from '../common/daemon.ts';
import { dial, call } from '../common/grpc-client.ts';
import { groupOrExit } from './arguments.ts';

interface Arbitration { primary: string; epoch: string; gate: string; secondary: string; peer_alive: boolean; witness_reachable: boolean }
interface GroupView { name: string; arbitration?: Arbitration }
interface OperatorReply { ok: boolean; message: string; epoch: string; primary: string; elapsed_ms: number; witness_consulted: boolean; data_loss: string }
interface Preview { primary_reachable: boolean; witness_reachable: boolean; secondary: string; lag_bounded: boolean; lag_ms: string; worst_case: string; without_witness: string }

function agentCall<T>(t: Topology, siteName: string, method: string, request: object, deadlineMs: number) {
  const s = t.sites.find((x) => x.name === siteName)!;
  const client = dial('agent.proto', 'MetroAgent', s.agent.address, s.agent.port);
  return call<T>(client, method, request, deadlineMs).finally(() => client.close());
}

/** Each reachable site's view of every group: the primary is the one named in the highest epoch. */
async function views(t: Topology): Promise<Map<string, { primary: string; epoch: number; at: Map<string, Arbitration> }>> {
  const out = new Map<string, { primary: string; epoch: number; at: Map<string, Arbitration> }>();
  const replies = await Promise.all(t.sites.map((s) => agentCall<{ groups: GroupView[] }>(t, s.name, 'Status', {}, 3000)));
  t.sites.forEach((s, i) => {
    const r = replies[i];
    if (!r.ok) return;
    for (const g of r.value.groups) {
      const a = g.arbitration;
      if (!a) continue;
      const v = out.get(g.name) ?? { primary: a.primary, epoch: Number(a.epoch), at: new Map() };
      if (Number(a.epoch) > v.epoch) { v.primary = a.primary; v.epoch = Number(a.epoch); }
      v.at.set(s.name, a);
      out.set(g.name, v);
    }
  });
  return out;
}

function checkSite(t: Topology, site: string, flag: string): void {
  if (!t.sites.some((s) => s.name === site)) throw new DaemonError(`${flag} ${site}: not a site of ${t.file}; its sites are ${t.sites.map((s) => s.name).join(', ')}`, EXIT_USAGE);
}

function otherSite(t: Topology, site: string): string {
  return t.sites.find((s) => s.name !== site)!.name;
}

/** Waits until the new primary's gate is open for the group (it acknowledges writes again). */
async function servingAgain(t: Topology, site: string, group: string, timeoutMs: number): Promise<boolean> {
  const until = performance.now() + timeoutMs;
  // One channel for the whole wait: polled every 20 ms, a dial per poll would sit inside the pause.
  const s = t.sites.find((x) => x.name === site)!;
  const client = dial('agent.proto', 'MetroAgent', s.agent.address, s.agent.port);
  try {
    while (performance.now() < until) {
      const r = await call<{ groups: GroupView[] }>(client, 'Status', {}, 2000);
      const a = r.ok ? r.value.groups.find((g) => g.name === group)?.arbitration : undefined;
      if (a && a.primary === site && a.gate !== 'closed') return true;
      await new Promise((res) => setTimeout(res, 20));
    }
    return false;
  } finally {
    client.close();
  }
}

async function switchover(t: Topology, group: string, to: string | undefined, verb: string): Promise<void> {
  const v = (await views(t)).get(group);
  if (!v) throw new DaemonError(`${verb} of ${group}: no agent answered; is the cluster running?`, EXIT_FAILED);
  const target = to ?? otherSite(t, v.primary);
  if (target === v.primary) {
    process.stdout.write(`${group} is already served by ${target} (epoch ${v.epoch}); nothing to do\n`);
    return;
  }
  const t0 = performance.now();
  const r = await agentCall<OperatorReply>(t, v.primary, 'Switchover', { group }, 20_000);
  if (!r.ok) throw new DaemonError(`${verb} of ${group}: the primary ${v.primary} did not answer (${r.reason})`, EXIT_FAILED);
  if (!r.value.ok) throw new DaemonError(`${verb} of ${group} refused: ${r.value.message}`, EXIT_FAILED);
  const serving = await servingAgain(t, target, group, 10_000);
  const pauseMs = Math.round(performance.now() - t0);
  if (!serving) throw new DaemonError(`${verb} of ${group}: handed over, but ${target} did not start serving within 10 s`, EXIT_FAILED);
  process.stdout.write(`${verb} of ${group}: ${v.primary} -> ${target} in epoch ${r.value.epoch}; writes paused at most ${pauseMs} ms (command to new primary serving)\n`);
}

/** 'yes' typed at a terminal; 'no-tty' when stdin is not one (a script must pass --yes). */
async function confirm(question: string): Promise<'yes' | 'no' | 'no-tty'> {
  if (!process.stdin.isTTY) return 'no-tty';
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
  try {
    return (await rl.question(question)).trim().toLowerCase() === 'yes' ? 'yes' : 'no';
  } finally {
    rl.close();
  }
}

interface Move { group: string; from: string; to: string }

/**
 * What a failover moves: each group asked for (or each group the lost site --site is primary of)
 * to the other site. With --force, also a group whose primary is the only site that answers and is
 * fenced there (it reaches neither its peer nor the witness): forced to serve where it is.
 */
function planMoves(t: Topology, all: Awaited<ReturnType<typeof views>>, opts: { group?: string; site?: string; force?: boolean }): Move[] {
  const moves: Move[] = [];
  for (const g of t.groups) {
    if (opts.group && g.name !== opts.group) continue;
    const v = all.get(g.name);
    if (!v) throw new DaemonError(`failover of ${g.name}: no agent answered, so nothing can be promoted`, EXIT_FAILED);
    const other = otherSite(t, v.primary);
    const at = v.at.get(v.primary);
    const fencedAlone = !!opts.force && !!at && at.gate === 'closed' && !at.peer_alive && !v.at.has(other);
    if (opts.site && v.primary !== opts.site && !(fencedAlone && other === opts.site)) continue;
    moves.push(fencedAlone ? { group: g.name, from: v.primary, to: v.primary } : { group: g.name, from: v.primary, to: other });
  }
  return moves;
}

async function failover(t: Topology, opts: { group?: string; site?: string; force?: boolean; yes?: boolean }): Promise<void> {
  if (!!opts.group === !!opts.site) throw new DaemonError('failover needs exactly one of --group G or --site S', EXIT_USAGE);
  if (opts.yes && !opts.force) throw new DaemonError('--yes only confirms --force', EXIT_USAGE);
  if (opts.group) groupOrExit(t, opts.group);
  if (opts.site) checkSite(t, opts.site, '--site');
  const moves = planMoves(t, await views(t), opts);
  if (moves.length === 0) {
    process.stdout.write(`no group has ${opts.site} as its primary; nothing to do\n`);
    return;
  }
  if (opts.force) {
    process.stdout.write('FORCED FAILOVER: you declare the primary site lost. Worst-case data loss:\n');
    for (const m of moves) {
      const p = await agentCall<Preview>(t, m.to, 'FailoverPreviewOf', { group: m.group }, 3000);
      if (!p.ok) throw new DaemonError(`failover of ${m.group}: ${m.to} does not answer (${p.reason}); it cannot be promoted`, EXIT_FAILED);
      const what = m.from === m.to ? `${m.to} serves it again, fenced now` : `${m.from} -> ${m.to}`;
      process.stdout.write(`  ${m.group} (${what}): ${p.value.worst_case}\n`);
      if (p.value.without_witness) process.stdout.write(`    ${p.value.without_witness}\n`);
    }
    if (!opts.yes) {
      const answer = await confirm('Type "yes" to promote: ');
      if (answer === 'no-tty') throw new DaemonError('forced failover not confirmed: stdin is not a terminal, so nobody can answer; pass --yes to confirm; nothing changed', EXIT_FAILED);
      if (answer === 'no') throw new DaemonError('forced failover not confirmed (answer "yes", or pass --yes); nothing changed', EXIT_FAILED);
    }
  }
  // One unit: every group is asked at once.
  const t0 = performance.now();
  const replies = await Promise.all(moves.map((m) => agentCall<OperatorReply>(t, m.to, 'Failover', { group: m.group, force: !!opts.force }, 2 * t.failover.leaseMs + 15_000)));
  let failed = 0;
  replies.forEach((r, i) => {
    const m = moves[i];
    if (r.ok && r.value.ok) {
      process.stdout.write(`failover of ${m.group}: ${r.value.message} (${Math.round(performance.now() - t0)} ms)\n`);
      if (r.value.data_loss) process.stdout.write(`  data-loss bound: ${r.value.data_loss}\n`);
      if (!r.value.witness_consulted) process.stdout.write(`  the witness was not consulted (unreachable); it adopts epoch ${r.value.epoch} when it is back\n`);
    } else {
      failed++;
      process.stderr.write(`metroctl: failover of ${m.group} refused: ${r.ok ? r.value.message : `${m.to} did not answer (${r.reason})`}\n`);
      if (r.ok && r.value.data_loss) process.stderr.write(`  data-loss bound shown: ${r.value.data_loss}\n`);
    }
  });
  if (failed > 0) process.exitCode = EXIT_FAILED;
}

export function registerRoleCommands(program: Command): void {
  program
    .command('switchover')
    .description('planned move of a group to the other site (zero data loss)')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .requiredOption('--group <group>', 'the group to move')
    .option('--to <site>', 'the site to move it to (default: the other site)')
    .addHelpText('after', '\nPlanned move, zero data loss: the primary drains, the secondary confirms every write, the roles\nswap in a new epoch. Refused (exit 1, with the reason) when the secondary is not up-to-date within the drain bound.\n\nExamples:\n  metroctl switchover --group db -f cluster.yaml\n  metroctl switchover --group db --to beta -f cluster.yaml\n')
    .action(async (o: { file: string; group: string; to?: string }) => {
      const t = await loadTopologyOrExit(o.file);
      groupOrExit(t, o.group);
      if (o.to) checkSite(t, o.to, '--to');
      await switchover(t, o.group, o.to, 'switchover');
    });
  program
    .command('failover')
    .description('unplanned promotion of the secondary of a group, or of every group whose primary is the lost site S')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .option('--group <group>', 'the group to promote at its secondary')
    .option('--site <site>', 'the lost site: every group it is primary for moves to the other site')
    .option('--force', 'declare disaster: promote without the up-to-date and lag checks, and without the witness if it is unreachable too (shows the worst-case data loss first)')
    .option('--yes', 'with --force: do not ask for confirmation')
    .addHelpText('after', '\nWithout --force the witness decides: refused while the primary holds its lease, or when the\nsecondary may lack acknowledged writes. --force declares disaster: it prints the worst-case data\nloss first and asks (on a terminal) unless --yes.\n\nExamples:\n  metroctl failover --site alpha -f cluster.yaml\n  metroctl failover --group db -f cluster.yaml\n  metroctl failover --group db --force -f cluster.yaml\n  metroctl failover --group db --force --yes -f cluster.yaml   # scripts: no question asked\n')
    .action(async (o: { file: string; group?: string; site?: string; force?: boolean; yes?: boolean }) => {
      const t = await loadTopologyOrExit(o.file);
      await failover(t, o);
    });
  program
    .command('failback')
    .description('move a group back to its preferred site once that site is resynced')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .requiredOption('--group <group>', 'the group to move back')
    .addHelpText('after', '\nExamples:\n  metroctl failback --group db -f cluster.yaml\n')
    .action(async (o: { file: string; group: string }) => {
      const t = await loadTopologyOrExit(o.file);
      const preferred = groupOrExit(t, o.group).preferredSite;
      const v = (await views(t)).get(o.group);
      if (!v) throw new DaemonError(`failback of ${o.group}: no agent answered; is the cluster running?`, EXIT_FAILED);
      if (v.primary === preferred) {
        process.stdout.write(`${o.group} already runs at its preferred site ${preferred}; nothing to do\n`);
        return;
      }
      const a = v.at.get(v.primary);
      if (!a || a.secondary !== 'up-to-date' || !a.peer_alive) {
        throw new DaemonError(`failback of ${o.group} refused: ${preferred} is not resynced yet (the primary ${v.primary} reports its secondary ${a?.secondary ?? 'unknown'}${a && !a.peer_alive ? ', unreachable' : ''})`, EXIT_FAILED);
      }
      await switchover(t, o.group, preferred, 'failback');
    });
}
