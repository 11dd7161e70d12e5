// The drill's order as a table: each row feeds phase results and expects the phases visited and
// the outcome. A failed precheck changes nothing; a failure after the move returns the group.
import test from 'ava';
import { drillStep, startDrill, type DrillState } from './drill-machine.ts';

const ok = (moved: boolean) => ({ ok: true, detail: 'fine', moved });
const bad = (moved: boolean, detail = 'broken') => ({ ok: false, detail, moved });

const rows: Array<{ title: string; failback: boolean; results: ReturnType<typeof ok>[]; phases: string[]; outcome: string; reason: string | null }> = [
  { title: 'pass with failback', failback: true, results: [ok(false), ok(true), ok(true), ok(false)], phases: ['precheck', 'switchover', 'verify', 'failback'], outcome: 'passed', reason: null },
  { title: 'pass without failback', failback: false, results: [ok(false), ok(true), ok(true)], phases: ['precheck', 'switchover', 'verify'], outcome: 'passed', reason: null },
  { title: 'precheck refuses: nothing changes', failback: true, results: [bad(false, 'secondary outdated')], phases: ['precheck'], outcome: 'aborted', reason: 'precheck: secondary outdated' },
  { title: 'switchover refused before moving', failback: true, results: [ok(false), bad(false)], phases: ['precheck', 'switchover'], outcome: 'failed', reason: 'switchover: broken' },
  { title: 'switchover failed after moving: return', failback: true, results: [ok(false), bad(true), ok(false)], phases: ['precheck', 'switchover', 'return'], outcome: 'failed', reason: 'switchover: broken; the group was returned' },
  { title: 'verify fails: return', failback: false, results: [ok(false), ok(true), bad(true, '3 mismatches'), ok(false)], phases: ['precheck', 'switchover', 'verify', 'return'], outcome: 'failed', reason: 'verify: 3 mismatches; the group was returned' },
  { title: 'return fails too', failback: true, results: [ok(false), ok(true), bad(true), bad(true, 'refused')], phases: ['precheck', 'switchover', 'verify', 'return'], outcome: 'failed', reason: 'verify: broken; returning the group failed too: refused' },
  { title: 'failback fails', failback: true, results: [ok(false), ok(true), ok(true), bad(true, 'refused')], phases: ['precheck', 'switchover', 'verify', 'failback'], outcome: 'failed', reason: 'failback: refused' },
];

for (const row of rows) {
  test(`drill: ${row.title}`, (t) => {
    let s: DrillState = startDrill(row.failback);
    const phases: string[] = [];
    for (const r of row.results) {
      if (s.kind !== 'phase') return t.fail(`ended early: ${JSON.stringify(s)}`);
      phases.push(s.phase);
      s = drillStep(s, r);
    }
    t.deepEqual(phases, row.phases);
    t.like(s, { kind: 'end', outcome: row.outcome, reason: row.reason });
  });
}
