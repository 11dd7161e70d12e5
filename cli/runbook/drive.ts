// The runbook runtime's loop, generic over its edges: executes the engine's moves one at a time and
// persists the run after every event, before the next move (the journal is the resume point). The
// step implementations, the journal store, the clock and the confirmation prompt are passed in.
import { advance, nextMove, type CheckOutcome, type Phase, type Run, type StepSpec } from './engine.ts';

export type CheckResult = { readonly outcome: CheckOutcome; readonly detail: string };
export type PhaseResult = { readonly ok: boolean; readonly detail: string };

/** The live part of a step: what runs for its check, action and verification. */
export interface StepImpl {
  check(): Promise<CheckResult>;
  action(progress: ProgressSink): Promise<PhaseResult>;
  verify(): Promise<PhaseResult>;
}

/** Where a long action reports how far it is (a bar on a TTY, plain lines otherwise). */
export interface ProgressSink {
  update(done: number, total: number, label?: string): void;
  note(line: string): void;
}

export interface DriveEdges {
  impl(step: number): StepImpl;
  /** Persists the run atomically; the loop goes on only once it resolved. */
  persist(run: Run): Promise<void>;
  now(): string;
  /** Before an irreversible action; false: the admin declined. */
  confirm(spec: StepSpec): Promise<boolean>;
  /** The runtime's display of each phase as it starts and ends. */
  show(ev: { step: number; phase: Phase; spec: StepSpec; state: 'start' | 'end'; outcome?: string; detail?: string }): void;
  progress(step: number): ProgressSink;
}

export async function drive(start: Run, e: DriveEdges): Promise<Run> {
  let run = start;
  await e.persist(run);
  for (let m = nextMove(run); m.kind === 'execute'; m = nextMove(run)) {
    const impl = e.impl(m.step);
    e.show({ step: m.step, phase: m.phase, spec: m.spec, state: 'start' });
    let outcome: string;
    let detail: string;
    if (m.phase === 'check') {
      const r = await guard(() => impl.check(), (detail) => ({ outcome: 'refused' as const, detail }));
      outcome = r.outcome; detail = r.detail;
    } else if (m.phase === 'action') {
      if (m.spec.confirm && !(await e.confirm(m.spec))) {
        outcome = 'failed'; detail = 'the admin declined';
        run = advance(run, { type: 'action-started', at: e.now(), step: m.step });
      } else {
        run = advance(run, { type: 'action-started', at: e.now(), step: m.step });
        await e.persist(run);
        const r = await guard(() => impl.action(e.progress(m.step)), (detail) => ({ ok: false, detail }));
        outcome = r.ok ? 'ok' : 'failed'; detail = r.detail;
      }
    } else {
      const r = await guard(() => impl.verify(), (detail) => ({ ok: false, detail }));
      outcome = r.ok ? 'ok' : 'failed'; detail = r.detail;
    }
    run = advance(run, { type: 'result', at: e.now(), step: m.step, phase: m.phase, outcome: outcome as never, detail });
    await e.persist(run);
    e.show({ step: m.step, phase: m.phase, spec: m.spec, state: 'end', outcome, detail });
  }
  return run;
}

/** A step that throws has failed; the sentence says so (the run stops, the journal keeps it). */
async function guard<T>(fn: () => Promise<T>, failed: (detail: string) => T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    return failed(`unexpected error: ${err instanceof Error ? err.message : String(err)}`);
  }
}
