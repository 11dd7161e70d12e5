// Online verify of one group at its primary (DESIGN.md "Resync and verify"; metroctl verify): per
// volume a VerifyRun compares per-region CRC32C checksums of both copies while host I/O goes on.
// A mismatch in a region with writes in flight is compared again later; only quiet or persistent
// mismatches are reported. With repair, the reported regions travel again as resync entries.
import type { MirrorSession } from './mirror-session.ts';
import { RegionBitmap } from './region-bitmap.ts';
import { regionChecksums } from './region-checksums.ts';
import type { ResyncRunProgress } from './resync-driver.ts';
import { VerifyRun, type VerifyConfig } from './resync-plan.ts';

export const verifyDefaults = {
  batchRegionsMax: 64,
  mismatchesMax: 10_000,
  rechecksMax: 8,
  burstBytes: 4 * 1024 * 1024,
  /** A region caught changing is compared again after this pause. */
  recheckPauseMs: 50,
};

export interface VerifyMismatch { volume: number; region: number; offsetBytes: number; lengthBytes: number }

export interface VerifyProgress {
  bytesTotal: number;
  bytesChecked: number;
  volume: number;
  mismatchCount: number;
  rateBytesPerSec: number;
}

export interface VerifyOutcome {
  bytesTotal: number;
  bytesChecked: number;
  mismatches: VerifyMismatch[];
  mismatchCount: number;
  /** Regions that kept changing under the verify: neither confirmed equal nor reported. */
  unsettled: VerifyMismatch[];
  repaired?: ResyncRunProgress;
}

export async function runVerify(
  session: MirrorSession,
  o: { repair: boolean; rateBytesPerSec?: number; onProgress?: (p: VerifyProgress) => void; progressEveryMs?: number },
): Promise<VerifyOutcome> {
  const side = session.verifySide;
  const rate = o.rateBytesPerSec ?? side.rateBytesPerSec;
  const bytesTotal = side.volumes.reduce((n, v) => n + v.sizeBytes, 0);
  const startedMs = side.now();
  let bytesBefore = 0;
  let lastReportMs = -Infinity;
  const outcome: VerifyOutcome = { bytesTotal, bytesChecked: 0, mismatches: [], mismatchCount: 0, unsettled: [] };
  const report = (volume: number, checkedHere: number, force = false): void => {
    const nowMs = side.now();
    if (!force && nowMs - lastReportMs < (o.progressEveryMs ?? 250)) return;
    lastReportMs = nowMs;
    const bytesChecked = bytesBefore + checkedHere;
    o.onProgress?.({ bytesTotal, bytesChecked, volume, mismatchCount: outcome.mismatchCount, rateBytesPerSec: (bytesChecked * 1000) / Math.max(1, nowMs - startedMs) });
  };
  for (const v of side.volumes) {
    const config: VerifyConfig = {
      volumeSizeBytes: v.sizeBytes, regionSizeBytes: v.regionSizeBytes,
      batchRegionsMax: verifyDefaults.batchRegionsMax, mismatchesMax: verifyDefaults.mismatchesMax, rechecksMax: verifyDefaults.rechecksMax,
      rateBytesPerSec: rate, burstBytes: verifyDefaults.burstBytes,
    };
    const run = new VerifyRun(config, side.now());
    const range = (region: number): VerifyMismatch => {
      const offsetBytes = region * v.regionSizeBytes;
      return { volume: v.index, region, offsetBytes, lengthBytes: Math.min(v.regionSizeBytes, v.sizeBytes - offsetBytes) };
    };
    for (;;) {
      const step = run.next(side.now());
      if (step.kind === 'done') break;
      if (step.kind === 'wait') {
        await new Promise((r) => setTimeout(r, Math.max(1, step.untilMs - side.now())));
        continue;
      }
      if (step.kind === 'busy') throw new Error('verify: a compare step is outstanding'); // steps are awaited one by one
      const first = step.firstRegion;
      // Past the first pass: a recheck of a region caught changing; give its writes time to land.
      if (run.report().regionsChecked >= run.report().regionsTotal) await new Promise((r) => setTimeout(r, verifyDefaults.recheckPauseMs));
      // A region is in flux when a write could have reached one copy and not yet the other while
      // both were read: unacknowledged before, written during, or unacknowledged after.
      const stamp = session.verifyStamp();
      const dirtyBefore = Array.from({ length: step.regionCount }, (_, k) => v.dirty.isDirty(first + k));
      const [peer, local] = await Promise.all([
        session.peerChecksums('verify', v.index, first, step.regionCount),
        regionChecksums(v.device, v.regionSizeBytes, first, step.regionCount),
      ]);
      run.compared(first, local, peer, (r) => dirtyBefore[r - first] || session.writtenSince(v.index, r, stamp) || v.dirty.isDirty(r));
      report(v.index, run.report().bytesChecked);
    }
    const r = run.report();
    outcome.mismatches.push(...r.mismatches.map(range));
    outcome.mismatchCount += r.mismatchCount;
    outcome.unsettled.push(...r.unsettled.map(range));
    bytesBefore += v.sizeBytes;
    outcome.bytesChecked = bytesBefore;
    report(v.index, 0, true);
  }
  if (o.repair && outcome.mismatches.length > 0) {
    const byVolume = new Map<number, RegionBitmap>();
    for (const m of outcome.mismatches) {
      const v = side.volumes[m.volume];
      let b = byVolume.get(m.volume);
      if (!b) byVolume.set(m.volume, (b = new RegionBitmap(v.dirty.regionCount)));
      b.set(m.region);
    }
    outcome.repaired = await session.repair(byVolume);
  }
  return outcome;
}
