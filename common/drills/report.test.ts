// A drill report as Markdown: both measured figures in the summary table, the RPO with how it was
// measured (in bold when it showed data at risk), and reports from before RPO was measured.
import test from 'ava';
import { reportMarkdown, type DrillReport } from './report.ts';

const base: DrillReport = {
  id: 'weekly-db-20261129T030000-1a2b', drill: 'weekly-db', group: 'db', cluster: 'demo', trigger: 'schedule', requestedBy: 'schedule',
  startedAt: '2026-11-29T03:00:00.000Z', endedAt: '2026-11-29T03:00:40.000Z', outcome: 'passed', reason: null, from: 'alpha', to: 'beta',
  failback: true, rtoMs: 406, failbackRtoMs: 343, rpoMs: 0, rpoBasis: 'measured at alpha\'s mirror at the handover (...): sync mode, beta up-to-date',
  rpoEvidence: { handover: { mode: 'sync', secondary: 'up-to-date', lagBytes: 0, lagMs: 0, drained: true, windowMs: 20 }, readBack: 'identical', atRisk: false },
  verify: { mismatches: 0, detail: '0 mismatched regions' }, probe: null, phases: [], finalPrimary: 'alpha',
};

const rows: Array<[string, Partial<DrillReport>, RegExp[]]> = [
  ['a passed drill: RTO, failback pause and RPO with its basis', {}, [
    /^\| RTO \(I\/O pause seen by the probe\) \| 406 ms \|$/m,
    /^\| failback I\/O pause \| 343 ms \|$/m,
    /^\| RPO \| 0 ms: measured at alpha's mirror at the handover \(\.\.\.\): sync mode, beta up-to-date \|$/m,
  ]],
  ['data at risk: the figure in bold', { outcome: 'failed', rpoMs: 120, rpoBasis: 'DATA AT RISK: measured ...', rpoEvidence: { ...base.rpoEvidence!, atRisk: true } }, [
    /^\| RPO \| \*\*120 ms\*\*: DATA AT RISK: measured \.\.\. \|$/m,
  ]],
  ['not measured: the reason alone', { rpoMs: null, rpoBasis: 'not measured', rpoEvidence: null, rtoMs: null }, [
    /^\| RTO \(I\/O pause seen by the probe\) \| not measured \|$/m,
    /^\| RPO \| not measured \|$/m,
  ]],
  ['a report from before RPO was measured (no rpoEvidence)', { rpoEvidence: undefined, rpoBasis: 'the witness granted the handover only with the new primary up-to-date' }, [
    /^\| RPO \| 0 ms: the witness granted the handover only with the new primary up-to-date \|$/m,
  ]],
];
for (const [name, change, want] of rows) {
  test(`report Markdown: ${name}`, (t) => {
    const md = reportMarkdown({ ...base, ...change });
    for (const re of want) t.regex(md, re);
  });
}
