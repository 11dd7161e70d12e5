// What `metroctl verify -o json` printed, for runbooks and drills: the mismatch count and the bytes
// compared; null when it printed no result (the verify could not run).
export function parseVerify(stdout: string): { mismatchCount: number; bytesChecked: number } | null {
  try {
    const j = JSON.parse(stdout) as { mismatchCount?: unknown; bytesChecked?: unknown };
    return typeof j.mismatchCount === 'number' ? { mismatchCount: j.mismatchCount, bytesChecked: Number(j.bytesChecked ?? 0) } : null;
  } catch {
    return null;
  }
}
