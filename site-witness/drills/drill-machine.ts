// The order of a drill, pure: precheck -> switchover -> verify -> failback (when configured), and
// the way back when something fails: a failed precheck changes nothing; once the group has moved,
// any failed check returns it to the site it came from. `drillStep(state, result)` takes the
// outcome of the phase the state names and returns the next phase, or the end with the outcome.

import type { DrillOutcome } from '../../common/drills/report.ts';

export type DrillPhase = 'precheck' | 'switchover' | 'verify' | 'failback' | 'return';

export type DrillState =
  | { readonly kind: 'phase'; readonly phase: DrillPhase; readonly failback: boolean; readonly moved: boolean; readonly reason: string | null }
  | { readonly kind: 'end'; readonly outcome: Exclude<DrillOutcome, 'running' | 'skipped' | 'interrupted'>; readonly reason: string | null; readonly moved: boolean };

export interface PhaseResult {
  readonly ok: boolean;
  readonly detail: string;
  /** Whether the group's primary is away from where the drill found it after this phase. */
  readonly moved: boolean;
}

export function startDrill(failback: boolean): DrillState {
  return { kind: 'phase', phase: 'precheck', failback, moved: false, reason: null };
}

export function drillStep(s: DrillState, r: PhaseResult): DrillState {
  if (s.kind === 'end') throw new Error('drillStep after the end of the drill');
  const end = (outcome: 'passed' | 'failed' | 'aborted', reason: string | null): DrillState => ({ kind: 'end', outcome, reason, moved: r.moved });
  const back = (reason: string): DrillState => r.moved
    ? { kind: 'phase', phase: 'return', failback: s.failback, moved: true, reason }
    : end('failed', reason);
  switch (s.phase) {
    case 'precheck':
      return r.ok ? { ...s, phase: 'switchover' } : end('aborted', `precheck: ${r.detail}`);
    case 'switchover':
      return r.ok ? { ...s, phase: 'verify', moved: true } : back(`switchover: ${r.detail}`);
    case 'verify':
      if (!r.ok) return back(`verify: ${r.detail}`);
      return s.failback ? { ...s, phase: 'failback' } : end('passed', null);
    case 'failback':
      return r.ok ? end('passed', null) : end('failed', `failback: ${r.detail}`);
    case 'return':
      return end('failed', r.ok ? `${s.reason}; the group was returned` : `${s.reason}; returning the group failed too: ${r.detail}`);
  }
}
