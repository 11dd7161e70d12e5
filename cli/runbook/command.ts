// `metroctl runbook list|show|run|history`: guided DR procedures. `run` journals every phase in the
// state folder next to the topology (journal-store.ts) and resumes an interrupted or stopped run
// with --resume; --dry-run prints every step and touches nothing (no daemon, no journal).
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import readline from 'node:readline/promises';
import type { Command } from 'commander';
import { loadTopologyOrExit, DaemonError, EXIT_FAILED, EXIT_USAGE } from '../../common/daemon.ts';
import type { Topology } from '../../common/topology/index.ts';
import { abandon, describeStop, newRun, resume, type Actor, type Run, type StepSpec } from './engine.ts';
import { drive } from './drive.ts';
import { checkParams, findRunbook, runbooks, type BuiltStep, type RunbookDef } from './builtins.ts';
import { lockJournal, openJournal, stateDirFor, unfinishedRun } from './journal-store.ts';
import { createProgress } from '../progress.ts';
import { currentGrpcSecurity } from '../../common/tls/grpc-security.ts';
import { identityUri } from '../../common/tls/identity.ts';

const out = (s: string): void => { process.stdout.write(s + '\n'); };

/** Who runs: the OS user, and the identity of metroctl's client certificate under mutual TLS. */
export function actor(): Actor {
  const sec = currentGrpcSecurity();
  return { user: os.userInfo().username, host: os.hostname(), identity: sec.mode === 'tls' ? identityUri(sec.self) : null, pid: process.pid };
}

function defOrExit(name: string): RunbookDef {
  const def = findRunbook(name);
  if (!def) throw new DaemonError(`no runbook named "${name}": the runbooks are ${runbooks.map((r) => r.name).join(', ')}`, EXIT_USAGE);
  return def;
}

interface RunOpts { file: string; site?: string; group?: string; dryRun?: boolean; yes?: boolean; resume?: boolean; new?: boolean; force?: boolean; stateDir?: string; waitMax: string }

function paramsOf(def: RunbookDef, t: Topology, o: { site?: string; group?: string }): Record<string, string> {
  const params: Record<string, string> = {};
  if (o.site !== undefined) params.site = o.site;
  if (o.group !== undefined) params.group = o.group;
  const extra = Object.keys(params).filter((k) => !def.params.some((p) => p.name === k));
  if (extra.length) throw new DaemonError(`runbook ${def.name} takes no --${extra[0]}`, EXIT_USAGE);
  const wrong = checkParams(def, t, params);
  if (wrong) throw new DaemonError(wrong, EXIT_USAGE);
  return params;
}

export function printSteps(steps: readonly StepSpec[]): void {
  steps.forEach((s, i) => {
    out(`${String(i + 1).padStart(2)}. ${s.title}${s.confirm ? '  [asks for confirmation]' : ''}`);
    out(`      check:  ${s.check}`);
    out(`      action: ${s.action}`);
    out(`      verify: ${s.verify}`);
    out(`      if it fails: ${s.advice}`);
  });
}

/** ' --site alpha --group db', or '' without parameters: to follow a runbook's name. */
const paramsSuffix = (p: Record<string, string>): string => Object.entries(p).map(([k, v]) => ` --${k} ${v}`).join('');

function build(def: RunbookDef, t: Topology, params: Record<string, string>, o: { waitMaxMs: number; force?: boolean }): BuiltStep[] {
  return def.build({ topology: t, params, operationTimeoutMs: 120_000, waitMaxMs: o.waitMaxMs, force: !!o.force });
}

export function registerRunbookCommands(program: Command): void {
  const rb = program.command('runbook').description('guided DR procedures: each step a check, an action and a verification, journaled')
    .addHelpText('after', `
Examples:
  metroctl runbook list
  metroctl runbook show site-loss -f cluster.yaml --site alpha
  metroctl runbook run site-loss -f cluster.yaml --site alpha --dry-run
  metroctl runbook run site-loss -f cluster.yaml --site alpha --resume
  metroctl runbook history -f cluster.yaml
`);

  rb.command('list').description('list the built-in runbooks')
    .addHelpText('after', '\nExamples:\n  metroctl runbook list\n')
    .action(() => {
      for (const r of runbooks) {
        const params = r.params.map((p) => p.required ? `--${p.name} ${p.name.toUpperCase()}` : `[--${p.name} ${p.name.toUpperCase()}]`).join(' ');
        out(`${r.name.padEnd(20)} ${r.summary}${params ? `\n${''.padEnd(20)} parameters: ${params}` : ''}`);
      }
    });

  rb.command('show').argument('<NAME>', 'runbook name').description('show a runbook\'s steps for a topology')
    .option('-f, --file <topology>', 'topology YAML file: the steps are expanded for its sites and groups')
    .option('--site <name>', 'site parameter')
    .option('--group <name>', 'group parameter')
    .addHelpText('after', '\nExamples:\n  metroctl runbook show site-loss\n  metroctl runbook show planned-maintenance -f cluster.yaml --site beta\n')
    .action(async (name: string, o: { file?: string; site?: string; group?: string }) => {
      const def = defOrExit(name);
      out(`${def.name}: ${def.summary}`);
      for (const p of def.params) out(`  --${p.name}: ${p.description}${p.required ? '' : ' (optional)'}`);
      if (!o.file) {
        out(`\nIts steps depend on the topology: pass -f FILE${def.params.some((p) => p.required) ? ' and the parameters' : ''}.\n\nExamples:\n${def.examples.map((e) => `  ${e}`).join('\n')}`);
        return;
      }
      const t = await loadTopologyOrExit(o.file);
      const params = paramsOf(def, t, o);
      const steps = build(def, t, params, { waitMaxMs: 0 }).map((s) => s.spec);
      out(`\n${steps.length} steps on cluster ${t.name}${Object.keys(params).length ? ` (${paramsSuffix(params).slice(1)})` : ''}:`);
      printSteps(steps);
    });

  rb.command('run').argument('<NAME>', 'runbook name').description('run a runbook (or continue a stopped one with --resume)')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .option('--site <name>', 'site parameter (site-loss, planned-maintenance)')
    .option('--group <name>', 'group parameter (failback)')
    .option('--dry-run', 'print every step without acting: no daemon is contacted, nothing is journaled')
    .option('--yes', 'do not ask before irreversible actions (failover)')
    .option('--resume', 'continue the last unfinished run of this runbook at the step it stopped in')
    .option('--new', 'start a new run, closing an unfinished one as abandoned')
    .option('--force', 'site-loss: declare disaster: fail over even an outdated copy (the data-loss bound is shown first, each failover asks)')
    .option('--state-dir <dir>', 'journal folder (default: .metroctl next to the topology file)')
    .option('--wait-max <ms>', 'how long a step waits for a condition (resync, a new witness)', '600000')
    .addHelpText('after', `
A step that fails stops the run and says what to do next; fix it, then run again with --resume.
The journal (timestamps, who, each step's outcome) is in .metroctl/<cluster>.runbooks.json beside
the topology; \`metroctl runbook history\` prints it.

Examples:
  metroctl runbook run site-loss -f cluster.yaml --site alpha --dry-run
  metroctl runbook run site-loss -f cluster.yaml --site alpha
  metroctl runbook run site-loss -f cluster.yaml --site alpha --resume --force
  metroctl runbook run planned-maintenance -f cluster.yaml --site beta --yes
  metroctl runbook run failback -f cluster.yaml --resume
`)
    .action(async (name: string, o: RunOpts) => {
      const def = defOrExit(name);
      const t = await loadTopologyOrExit(o.file);
      const params = paramsOf(def, t, o);
      const waitMaxMs = Number(o.waitMax);
      if (!Number.isSafeInteger(waitMaxMs) || waitMaxMs < 0) throw new DaemonError(`--wait-max ${o.waitMax}: expected milliseconds`, EXIT_USAGE);
      if (o.force && def.name !== 'site-loss') throw new DaemonError('--force applies to site-loss only', EXIT_USAGE);
      const built = build(def, t, params, { waitMaxMs, force: o.force });
      const specs = built.map((s) => s.spec);
      if (o.dryRun) {
        out(`dry run of ${def.name}${paramsSuffix(params)} on cluster ${t.name}: ${specs.length} steps`);
        printSteps(specs);
        out('dry run: nothing was done');
        return;
      }
      if (o.resume && o.new) throw new DaemonError('--resume and --new exclude each other', EXIT_USAGE);
      const stateDir = stateDirFor(t.dir, o.stateDir);
      const unlock = await lockJournal(stateDir).catch((err: unknown) => { throw new DaemonError(err instanceof Error ? err.message : String(err), EXIT_FAILED); });
      try {
        const journal = await openJournal(stateDir, t.name);
        const now = (): string => new Date().toISOString();
        const pending = unfinishedRun(journal.runs(), def.name, params);
        let run: Run;
        if (o.resume) {
          if (!pending) throw new DaemonError(`no unfinished run of ${def.name}${paramsSuffix(params)} to resume`, EXIT_FAILED);
          const r = resume(pending, { at: now(), by: actor(), steps: specs });
          if ('refusal' in r) throw new DaemonError(r.refusal, EXIT_FAILED);
          run = r;
          out(`resuming run ${run.id} of ${def.name}: ${describeStop(pending)}`);
        } else {
          if (pending && !o.new) {
            throw new DaemonError(`run ${pending.id} of ${def.name} is unfinished: ${describeStop(pending)}; continue it with --resume, or start over with --new`, EXIT_FAILED);
          }
          if (pending) await journal.save(abandon(pending, { at: now(), by: actor() }));
          const stamp = now().replace(/[-:]/g, '').replace(/\..*/, '');
          run = newRun({ id: `${def.name}-${stamp}-${randomBytes(2).toString('hex')}`, runbook: def.name, params, cluster: t.name, steps: specs, at: now(), by: actor() });
          out(`run ${run.id}: ${def.name}${paramsSuffix(params)} on cluster ${t.name}, ${specs.length} steps (journal ${path.relative(process.cwd(), journal.file) || journal.file})`);
        }
        const final = await drive(run, {
          impl: (i) => built[i].impl,
          persist: (r) => journal.save(r),
          now,
          confirm: (spec) => confirm(spec, !!o.yes),
          show: (ev) => {
            const head = `[${ev.step + 1}/${specs.length}] ${ev.spec.title}`;
            if (ev.state === 'start' && ev.phase === 'check') out(head);
            if (ev.state === 'end') out(`  ${ev.phase}: ${ev.outcome}${ev.detail ? ` - ${ev.detail}` : ''}`);
          },
          progress: (i) => createProgress({ title: specs[i].title }),
        });
        if (final.state === 'succeeded') {
          out(`run ${final.id} of ${def.name} succeeded`);
          return;
        }
        const f = final.failure!;
        const again = `metroctl runbook run ${def.name} -f ${o.file}${paramsSuffix(params)} --resume`;
        throw new DaemonError(`runbook ${def.name} stopped at step ${f.step + 1}/${specs.length} (${specs[f.step].title}), ${f.phase}: ${f.detail}\nwhat to do next: ${f.advice}\nthen continue: ${again}`, EXIT_FAILED);
      } finally {
        await unlock();
      }
    });

  rb.command('history').argument('[ID]', 'one run in detail').description('the journal: every run, who ran it, each step\'s outcome')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .option('-o, --output <format>', 'text or json', 'text')
    .option('--state-dir <dir>', 'journal folder (default: .metroctl next to the topology file)')
    .addHelpText('after', '\nExamples:\n  metroctl runbook history -f cluster.yaml\n  metroctl runbook history -f cluster.yaml site-loss-20261125T030000-1a2b\n  metroctl runbook history -f cluster.yaml -o json\n')
    .action(async (id: string | undefined, o: { file: string; output: string; stateDir?: string }) => {
      const t = await loadTopologyOrExit(o.file);
      const journal = await openJournal(stateDirFor(t.dir, o.stateDir), t.name);
      const runs = id ? journal.runs().filter((r) => r.id === id) : journal.runs();
      if (id && runs.length === 0) throw new DaemonError(`no run ${id} in ${journal.file}`, EXIT_FAILED);
      if (o.output === 'json') { out(JSON.stringify(runs, null, 2)); return; }
      if (runs.length === 0) { out('no runbook has been run on this cluster'); return; }
      for (const r of runs) printRun(r, !!id);
    });
}

function printRun(r: Run, detailed: boolean): void {
  const who = (a: Actor): string => `${a.user}@${a.host}${a.identity ? ` (${a.identity})` : ''}`;
  const state = r.abandoned ? 'abandoned' : r.state === 'running' ? 'interrupted' : r.state;
  out(`${r.id}  ${r.runbook}${paramsSuffix(r.params) || ' '}  ${state}  started ${r.startedAt} by ${who(r.sessions[0].by)}${r.endedAt ? `  ended ${r.endedAt}` : ''}`);
  for (const s of r.sessions.slice(1)) out(`    resumed ${s.at} by ${who(s.by)}`);
  if (r.state !== 'succeeded') out(`    ${describeStop(r)}`);
  if (!detailed) return;
  for (const e of r.entries) out(`    ${e.at}  ${e.step + 1}. ${r.steps[e.step].title}: ${e.phase} ${e.outcome}${e.detail ? ` - ${e.detail}` : ''}`);
}

async function confirm(spec: StepSpec, yes: boolean): Promise<boolean> {
  if (yes) return true;
  if (!process.stdin.isTTY) {
    process.stdout.write(`  ${spec.confirm} not confirmed: no terminal to ask on (pass --yes)\n`);
    return false;
  }
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
  try {
    const a = await rl.question(`  ${spec.confirm} [y/N] `);
    return /^y(es)?$/i.test(a.trim());
  } finally {
    rl.close();
  }
}
