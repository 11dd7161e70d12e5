// The runbook engine's pure core: a run is a list of steps, each a check, an action and a
// verification, and a journal of what happened to them. `nextMove(run)` says what the runtime must
// execute next; `advance(run, event)` records its outcome and returns the new run, which the runtime
// persists before it executes the following move. No I/O, no clock: times come in every event.
//
// Contract of a step's phases (the runtime executes them, the engine orders them):
// - check: `go` (the action is needed and allowed), `done` (its effect is already there: skip to
//   the verification; this is how a resumed run recognises an action that completed before the
//   interruption), or `refused` (the run stops with the step's advice).
// - action: `ok` or `failed` (stops). An action is journaled as started before it runs.
// - verify: `ok` (next step) or `failed` (stops).
// A run interrupted anywhere, or stopped by a failure, resumes at the check of the step it stopped
// in: checks are written to recognise a completed action, so no action is repeated blindly.
import { assert } from '../../common/assert.ts';

export type Phase = 'check' | 'action' | 'verify';

/** What a step is, as shown by `runbook show`, `--dry-run` and the journal. */
export interface StepSpec {
  /** Stable within a runbook's plan, e.g. `failover:db`. */
  readonly id: string;
  readonly title: string;
  readonly check: string;
  readonly action: string;
  readonly verify: string;
  /** What the admin should do when this step fails. */
  readonly advice: string;
  /** Irreversible: the runtime asks before the action unless the admin passed --yes. */
  readonly confirm?: string;
}

export type CheckOutcome = 'go' | 'done' | 'refused';
export type PhaseOutcome = CheckOutcome | 'ok' | 'failed' | 'started';

export interface JournalEntry {
  readonly at: string;
  readonly step: number;
  readonly phase: Phase;
  readonly outcome: PhaseOutcome;
  readonly detail: string;
}

export interface Actor {
  /** OS user running metroctl. */
  readonly user: string;
  readonly host: string;
  /** Identity of metroctl's client certificate when the cluster uses TLS; null otherwise. */
  readonly identity: string | null;
  readonly pid: number;
}

export type RunState = 'running' | 'succeeded' | 'failed';

export interface Run {
  readonly id: string;
  readonly runbook: string;
  readonly params: Readonly<Record<string, string>>;
  readonly cluster: string;
  readonly steps: readonly StepSpec[];
  readonly startedAt: string;
  readonly endedAt: string | null;
  readonly state: RunState;
  /** The phase to execute next while running; where it stopped once failed. */
  readonly cursor: { readonly step: number; readonly phase: Phase };
  /** Every start and resume, with who did it. */
  readonly sessions: ReadonlyArray<{ readonly at: string; readonly by: Actor; readonly kind: 'start' | 'resume' }>;
  readonly entries: readonly JournalEntry[];
  /** Set when state is failed: the step, what went wrong and what to do next. */
  readonly failure: { readonly step: number; readonly phase: Phase; readonly detail: string; readonly advice: string } | null;
  /** A newer run of the runbook replaced this unfinished one. */
  readonly abandoned?: boolean;
}

export type Move =
  | { readonly kind: 'execute'; readonly step: number; readonly phase: Phase; readonly spec: StepSpec }
  | { readonly kind: 'finished'; readonly state: Exclude<RunState, 'running'> };

export type RunEvent =
  /** The action is about to run: journaled first, so an interruption is visible. */
  | { readonly type: 'action-started'; readonly at: string; readonly step: number }
  | { readonly type: 'result'; readonly at: string; readonly step: number; readonly phase: Phase; readonly outcome: Exclude<PhaseOutcome, 'started'>; readonly detail: string };

export const entriesMax = 10_000;

export function newRun(o: { id: string; runbook: string; params: Record<string, string>; cluster: string; steps: readonly StepSpec[]; at: string; by: Actor }): Run {
  assert(o.steps.length > 0, `runbook ${o.runbook} has no steps`);
  assert(new Set(o.steps.map((s) => s.id)).size === o.steps.length, `runbook ${o.runbook}: step ids are not unique`);
  return {
    id: o.id, runbook: o.runbook, params: { ...o.params }, cluster: o.cluster, steps: o.steps,
    startedAt: o.at, endedAt: null, state: 'running', cursor: { step: 0, phase: 'check' },
    sessions: [{ at: o.at, by: o.by, kind: 'start' }], entries: [], failure: null,
  };
}

export function nextMove(run: Run): Move {
  if (run.state !== 'running') return { kind: 'finished', state: run.state };
  const { step, phase } = run.cursor;
  if (step >= run.steps.length) return { kind: 'finished', state: 'succeeded' };
  return { kind: 'execute', step, phase, spec: run.steps[step] };
}

/** Records one event. Events out of order are a bug in the runtime: they throw. */
export function advance(run: Run, ev: RunEvent): Run {
  assert(run.state === 'running', `run ${run.id} is ${run.state}: no more events`);
  const { step, phase } = run.cursor;
  assert(ev.step === step, `run ${run.id}: event for step ${ev.step}, expected step ${step}`);
  assert(run.entries.length < entriesMax, `run ${run.id}: journal full`);
  if (ev.type === 'action-started') {
    assert(phase === 'action', `run ${run.id}: action started during ${phase}`);
    return { ...run, entries: [...run.entries, { at: ev.at, step, phase: 'action', outcome: 'started', detail: '' }] };
  }
  assert(ev.phase === phase, `run ${run.id}: ${ev.phase} result while at ${phase}`);
  assert(allowed[phase].includes(ev.outcome), `run ${run.id}: ${ev.outcome} is not an outcome of ${phase}`);
  if (phase === 'action') {
    const last = run.entries[run.entries.length - 1];
    assert(last?.phase === 'action' && last.outcome === 'started' && last.step === step, `run ${run.id}: action result without its start`);
  }
  const entries = [...run.entries, { at: ev.at, step, phase, outcome: ev.outcome, detail: ev.detail }];
  if (ev.outcome === 'refused' || ev.outcome === 'failed') {
    const failure = { step, phase, detail: ev.detail, advice: run.steps[step].advice };
    return { ...run, entries, state: 'failed', endedAt: ev.at, failure };
  }
  const cursor = ev.outcome === 'go' ? { step, phase: 'action' as const }
    : ev.outcome === 'done' || phase === 'action' ? { step, phase: 'verify' as const }
      : { step: step + 1, phase: 'check' as const };
  const finished = cursor.step >= run.steps.length;
  return { ...run, entries, cursor, state: finished ? 'succeeded' : 'running', endedAt: finished ? ev.at : null };
}

const allowed: Record<Phase, readonly PhaseOutcome[]> = {
  check: ['go', 'done', 'refused'],
  action: ['ok', 'failed'],
  verify: ['ok', 'failed'],
};

/** A run that stopped (failed) or was interrupted (running, but its process is gone). */
export function canResume(run: Run): boolean {
  return run.state !== 'succeeded' && !run.abandoned;
}

/** Continues a stopped or interrupted run at the check of the step it stopped in. */
export function resume(run: Run, o: { at: string; by: Actor; steps: readonly StepSpec[] }): Run | { refusal: string } {
  if (!canResume(run)) return { refusal: `run ${run.id} of ${run.runbook} has already ${run.abandoned ? 'been abandoned' : 'succeeded'}` };
  const same = o.steps.length === run.steps.length && o.steps.every((s, i) => s.id === run.steps[i].id);
  if (!same) return { refusal: `the steps of ${run.runbook} changed since run ${run.id} started (the topology changed?): start a new run` };
  return {
    ...run, state: 'running', endedAt: null, failure: null,
    cursor: { step: run.cursor.step, phase: 'check' },
    sessions: [...run.sessions, { at: o.at, by: o.by, kind: 'resume' }],
  };
}

/** Where an unfinished run stands, in one sentence. */
export function describeStop(run: Run): string {
  const s = run.steps[Math.min(run.cursor.step, run.steps.length - 1)];
  const n = `step ${run.cursor.step + 1}/${run.steps.length} (${s.title})`;
  if (run.state === 'failed' && run.failure) return `stopped at ${n}, ${run.failure.phase}: ${run.failure.detail}`;
  const last = run.entries[run.entries.length - 1];
  const inAction = last?.phase === 'action' && last.outcome === 'started';
  return `interrupted at ${n}${inAction ? ' while its action was running' : ''}`;
}

/** Closes an unfinished run the admin chose not to resume (a new run of the runbook starts instead). */
export function abandon(run: Run, o: { at: string; by: Actor }): Run {
  assert(canResume(run), `run ${run.id} has already succeeded`);
  const step = Math.min(run.cursor.step, run.steps.length - 1);
  const detail = `abandoned by ${o.by.user} before completion (${describeStop(run)})`;
  return { ...run, state: 'failed', endedAt: o.at, failure: { step, phase: run.cursor.phase, detail, advice: 'none: a newer run replaced it' }, abandoned: true };
}
