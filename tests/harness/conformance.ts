// Runs libiscsi's conformance suite (iscsi-test-cu) against a LUN and reads its verbose output:
// per test passed / [FAILED] / [SKIPPED] with the reason, and CUnit's run summary.
import { run } from './tools.ts';

export interface CaseResult { name: string; outcome: 'passed' | 'failed' | 'skipped'; reason: string }

export interface ConformanceReport {
  cases: CaseResult[];
  summary: { tests: number; ran: number; passed: number; failed: number } | undefined;
  failed: CaseResult[];
  skipped: CaseResult[];
  raw: string;
  timedOut: boolean;
}

export function parseConformance(raw: string): Omit<ConformanceReport, 'timedOut'> {
  const cases: CaseResult[] = [];
  let suite = '';
  for (const line of raw.split('\n')) {
    const s = /^Suite: (\S+)/.exec(line);
    if (s) { suite = s[1]; continue; }
    const m = /^\s+Test: (\S+) \.\.\.\s*(?:\[(FAILED|SKIPPED)\]\s*(.*)|(passed|FAILED))/.exec(line);
    if (!m) continue;
    const name = `${suite}.${m[1]}`;
    const tag = m[2] ?? m[4];
    cases.push({ name, outcome: tag === 'FAILED' ? 'failed' : tag === 'SKIPPED' ? 'skipped' : 'passed', reason: (m[3] ?? '').trim() });
  }
  const sm = /^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(raw);
  const summary = sm ? { tests: Number(sm[1]), ran: Number(sm[2]), passed: Number(sm[3]), failed: Number(sm[4]) } : undefined;
  return { cases, summary, raw, failed: cases.filter((c) => c.outcome === 'failed'), skipped: cases.filter((c) => c.outcome === 'skipped') };
}

export async function runConformance(o: { url: string; multipathUrl?: string; initiator: string; initiator2: string; timeoutMs?: number }): Promise<ConformanceReport> {
  const args = ['--dataloss', '-i', o.initiator, '-I', o.initiator2, o.url, ...(o.multipathUrl ? [o.multipathUrl] : [])];
  const r = await run('iscsi-test-cu', args, { timeoutMs: o.timeoutMs ?? 600_000 });
  return { ...parseConformance(r.stdout + r.stderr), timedOut: r.timedOut };
}
