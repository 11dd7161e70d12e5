// The runbook engine and its loop, without I/O: a run interrupted after every possible journal
// write resumes and completes with every action executed exactly once; a failed step stops the run
// with its advice and resumes at that step; the journal records who, when, what and the outcome.
import test from 'ava';
import { advance, describeStop, newRun, nextMove, resume, type Actor, type Run, type StepSpec } from './engine.ts';
import { drive, type DriveEdges, type StepImpl } from './drive.ts';

const admin: Actor = { user: 'ops', host: 'console', identity: null, pid: 100 };
const spec = (id: string, extra: Partial<StepSpec> = {}): StepSpec => ({
  id, title: `step ${id}`, check: `may ${id} run?`, action: `do ${id}`, verify: `${id} is done`, advice: `fix ${id} by hand`, ...extra,
});
const steps = ['fence', 'promote', 'verify', 'tell-hosts'].map((id) => spec(id));

/** A world the actions change: each action sets its step's flag; checks see it. */
class World {
  done = new Set<string>();
  executed: string[] = [];
  failVerify = new Set<string>();
  refuse = new Set<string>();
  impl(s: StepSpec): StepImpl {
    return {
      check: async () => this.refuse.has(s.id) ? { outcome: 'refused', detail: `${s.id} not allowed` }
        : this.done.has(s.id) ? { outcome: 'done', detail: 'already' } : { outcome: 'go', detail: 'needed' },
      action: async () => { this.executed.push(s.id); this.done.add(s.id); return { ok: true, detail: `${s.id} done` }; },
      verify: async () => this.failVerify.has(s.id) ? { ok: false, detail: `${s.id} not seen` } : { ok: true, detail: 'seen' },
    };
  }
}

class Killed extends Error {}

/** Edges whose persist "kills the process" after `killAfter` successful writes. */
function edges(world: World, store: { saved: Run | null; writes: number }, killAfter = Infinity): DriveEdges {
  let clock = 0;
  return {
    impl: (i) => world.impl(steps[i]),
    persist: async (run) => {
      if (store.writes >= killAfter) throw new Killed('SIGKILL');
      store.writes += 1;
      store.saved = structuredClone(run);
    },
    now: () => new Date(Date.UTC(2026, 10, 25, 3, 0, clock++)).toISOString(),
    confirm: async () => true,
    show: () => undefined,
    progress: () => ({ update: () => undefined, note: () => undefined }),
  };
}

const fresh = (): Run => newRun({ id: 'r1', runbook: 'site-loss', params: { site: 'alpha' }, cluster: 'demo', steps, at: '2026-11-25T03:00:00.000Z', by: admin });

test('an uninterrupted run executes check, action, verify of every step in order', async (t) => {
  const world = new World();
  const store = { saved: null as Run | null, writes: 0 };
  const run = await drive(fresh(), edges(world, store));
  t.is(run.state, 'succeeded');
  t.deepEqual(world.executed, steps.map((s) => s.id));
  t.deepEqual(run.entries.map((e) => `${e.step}:${e.phase}:${e.outcome}`), steps.flatMap((_, i) => [`${i}:check:go`, `${i}:action:started`, `${i}:action:ok`, `${i}:verify:ok`]));
  t.deepEqual(store.saved, run, 'the last persisted run is the final one');
});

// 1 initial write + 4 writes per step: interrupting after each write covers every step index and
// every phase, including "action started but its result not journaled".
const totalWrites = 1 + 4 * steps.length;
for (let k = 0; k < totalWrites; k++) {
  test(`a run killed after journal write ${k} resumes and executes every action exactly once`, async (t) => {
    const world = new World();
    const store = { saved: null as Run | null, writes: 0 };
    await t.throwsAsync(drive(fresh(), edges(world, store, k)), { instanceOf: Killed });
    if (store.saved === null) {
      t.is(k, 0);
      t.deepEqual(world.executed, []);
      return;
    }
    const stopped = store.saved;
    t.is(stopped.state, 'running', 'an interrupted run is still "running" in the journal');
    t.regex(describeStop(stopped), /^interrupted at step \d\/4/);
    const resumed = resume(stopped, { at: '2026-11-25T04:00:00.000Z', by: { ...admin, pid: 200 }, steps });
    if ('refusal' in resumed) return t.fail(resumed.refusal);
    t.is(resumed.cursor.phase, 'check', 'a resumed run restarts its step at the check');
    const done = await drive(resumed, edges(world, { saved: null, writes: 0 }));
    t.is(done.state, 'succeeded');
    t.deepEqual([...world.executed].sort(), steps.map((s) => s.id).sort(), 'no action repeated, none left out');
    t.deepEqual(done.sessions.map((s) => [s.kind, s.by.pid]), [['start', 100], ['resume', 200]]);
    // An action that completed before the kill is recognised by its check, not run again.
    const beforeKill = stopped.entries.filter((e) => e.phase === 'action' && e.outcome === 'started').length;
    const redone = done.entries.slice(stopped.entries.length).filter((e) => e.phase === 'check' && e.outcome === 'done').length;
    const lastStopped = stopped.entries[stopped.entries.length - 1];
    const ranUnjournaled = lastStopped?.phase === 'action' && lastStopped.outcome === 'started';
    t.is(redone, ranUnjournaled ? 1 : (stopped.cursor.phase === 'verify' ? 1 : 0), `check outcomes after resume (actions started before the kill: ${beforeKill})`);
  });
}

test('a failed verification stops the run with the step\'s advice; resume continues at that step', async (t) => {
  const world = new World();
  world.failVerify.add('promote');
  const store = { saved: null as Run | null, writes: 0 };
  const run = await drive(fresh(), edges(world, store));
  t.is(run.state, 'failed');
  t.deepEqual(run.failure, { step: 1, phase: 'verify', detail: 'promote not seen', advice: 'fix promote by hand' });
  t.deepEqual(world.executed, ['fence', 'promote'], 'nothing after the failed step ran');
  t.is(describeStop(run), 'stopped at step 2/4 (step promote), verify: promote not seen');
  t.deepEqual(nextMove(run), { kind: 'finished', state: 'failed' });
  t.deepEqual(store.saved, run, 'the failure is journaled');

  world.failVerify.clear();
  const again = resume(run, { at: '2026-11-25T05:00:00.000Z', by: admin, steps });
  if ('refusal' in again) return t.fail(again.refusal);
  const done = await drive(again, edges(world, { saved: null, writes: 0 }));
  t.is(done.state, 'succeeded');
  t.deepEqual(world.executed, steps.map((s) => s.id), 'the failed step\'s action was not repeated');
});

test('a refused check stops before the action', async (t) => {
  const world = new World();
  world.refuse.add('fence');
  const run = await drive(fresh(), edges(world, { saved: null, writes: 0 }));
  t.is(run.state, 'failed');
  t.like(run.failure, { step: 0, phase: 'check', detail: 'fence not allowed', advice: 'fix fence by hand' });
  t.deepEqual(world.executed, []);
});

test('a declined confirmation fails the step without running the action', async (t) => {
  const world = new World();
  const e = edges(world, { saved: null, writes: 0 });
  const confirmSteps = [spec('fence'), spec('promote', { confirm: 'promote beta?' })];
  const run = await drive(newRun({ id: 'r2', runbook: 'x', params: {}, cluster: 'demo', steps: confirmSteps, at: 'a', by: admin }), { ...e, impl: (i) => world.impl(confirmSteps[i]), confirm: async () => false });
  t.is(run.state, 'failed');
  t.like(run.failure, { step: 1, phase: 'action', detail: 'the admin declined' });
  t.deepEqual(world.executed, ['fence']);
});

test('a step that throws fails with the error, and the run says where', async (t) => {
  const world = new World();
  const e = edges(world, { saved: null, writes: 0 });
  const run = await drive(fresh(), { ...e, impl: (i) => i === 2 ? { ...world.impl(steps[2]), action: async () => { throw new Error('socket hang up'); } } : world.impl(steps[i]) });
  t.is(run.state, 'failed');
  t.like(run.failure, { step: 2, phase: 'action', detail: 'unexpected error: socket hang up' });
});

test('the journal keeps timestamps, who ran it, what each phase did, and the outcome', (t) => {
  let run = fresh();
  run = advance(run, { type: 'result', at: 't1', step: 0, phase: 'check', outcome: 'go', detail: 'alpha unreachable from beta and the witness' });
  run = advance(run, { type: 'action-started', at: 't2', step: 0 });
  run = advance(run, { type: 'result', at: 't3', step: 0, phase: 'action', outcome: 'ok', detail: 'fenced' });
  t.deepEqual(run.entries, [
    { at: 't1', step: 0, phase: 'check', outcome: 'go', detail: 'alpha unreachable from beta and the witness' },
    { at: 't2', step: 0, phase: 'action', outcome: 'started', detail: '' },
    { at: 't3', step: 0, phase: 'action', outcome: 'ok', detail: 'fenced' },
  ]);
  t.deepEqual(run.sessions, [{ at: '2026-11-25T03:00:00.000Z', by: admin, kind: 'start' }]);
  t.deepEqual(run.params, { site: 'alpha' });
  t.deepEqual(run.cursor, { step: 0, phase: 'verify' });
});

test('events out of order are bugs: they throw', (t) => {
  const run = fresh();
  t.throws(() => advance(run, { type: 'result', at: 't', step: 0, phase: 'action', outcome: 'ok', detail: '' }), { message: /action result while at check/ });
  t.throws(() => advance(run, { type: 'result', at: 't', step: 1, phase: 'check', outcome: 'go', detail: '' }), { message: /expected step 0/ });
  t.throws(() => advance(run, { type: 'result', at: 't', step: 0, phase: 'check', outcome: 'ok', detail: '' }), { message: /not an outcome of check/ });
  const go = advance(run, { type: 'result', at: 't', step: 0, phase: 'check', outcome: 'go', detail: '' });
  t.throws(() => advance(go, { type: 'result', at: 't', step: 0, phase: 'action', outcome: 'ok', detail: '' }), { message: /without its start/ });
});

test('resume refuses a succeeded run and a plan whose steps changed', async (t) => {
  const done = await drive(fresh(), edges(new World(), { saved: null, writes: 0 }));
  t.deepEqual(resume(done, { at: 'x', by: admin, steps }), { refusal: 'run r1 of site-loss has already succeeded' });
  const failed = advance(fresh(), { type: 'result', at: 't', step: 0, phase: 'check', outcome: 'refused', detail: 'no' });
  const r = resume(failed, { at: 'x', by: admin, steps: steps.slice(1) });
  t.true('refusal' in r && /steps of site-loss changed/.test(r.refusal));
});
