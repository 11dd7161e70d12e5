// Runs libiscsi's conformance suite (iscsi-test-cu) against a LUN and reads its verbose output.
// Each test's verdict is CUnit's own ("passed" / "FAILED"); every "[FAILED] ..." and "[SKIPPED] ..."
// message a test prints is kept too, because the suite's helpers log "[FAILED]" for an unexpected
// status even inside a test that then passes (or should not have passed).
import { run } from './tools.ts';

export interface CaseResult {
  /** Suite.Test, e.g. "CompareAndWrite.Miscompare". */
  name: string;
  verdict: 'passed' | 'failed';
  failedMessages: string[];
  skippedMessages: string[];
}

export interface ConformanceReport {
  cases: CaseResult[];
  summary: { tests: number; ran: number; passed: number; failed: number } | undefined;
  raw: string;
  timedOut: boolean;
}

export function parseConformance(raw: string): Omit<ConformanceReport, 'timedOut'> {
  const cases: CaseResult[] = [];
  let suite = '';
  let current: CaseResult | undefined;
  for (const line of raw.split('\n')) {
    const s = /^Suite: (\S+)/.exec(line);
    if (s) { suite = s[1]; current = undefined; continue; }
    const t = /^\s+Test: (\S+) \.\.\.(.*)$/.exec(line);
    let rest = line;
    if (t) {
      current = { name: `${suite}.${t[1]}`, verdict: 'passed', failedMessages: [], skippedMessages: [] };
      cases.push(current);
      rest = t[2];
    }
    if (!current) continue;
    for (const m of rest.matchAll(/\[(FAILED|SKIPPED)\]\s*(.*?)(?=\s*\[(?:FAILED|SKIPPED)\]|$)/g)) {
      (m[1] === 'FAILED' ? current.failedMessages : current.skippedMessages).push(m[2].trim());
    }
    // CUnit's verdict: "FAILED" alone on a line, or right after the "Test: X ..." prefix.
    if (/^FAILED\s*$/.test(rest.trim()) || (t && /^FAILED\b/.test(t[2]))) current.verdict = 'failed';
  }
  const sm = /^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(raw);
  const summary = sm ? { tests: Number(sm[1]), ran: Number(sm[2]), passed: Number(sm[3]), failed: Number(sm[4]) } : undefined;
  return { cases, summary, raw };
}

export async function runConformance(o: { url: string; multipathUrl?: string; initiator: string; initiator2: string; timeoutMs?: number }): Promise<ConformanceReport> {
  const args = ['--dataloss', '-i', o.initiator, '-I', o.initiator2, o.url, ...(o.multipathUrl ? [o.multipathUrl] : [])];
  const r = await run('iscsi-test-cu', args, { timeoutMs: o.timeoutMs ?? 600_000 });
  return { ...parseConformance(r.stdout + r.stderr), timedOut: r.timedOut };
}
