// Runs one drill from the witness: executes the phases drill-machine.ts orders, with the probe
// initiator running across the switchover, and keeps the report current in the drill store after
// every phase. The switchover and verify are the `metroctl` commands of DESIGN.md, run against the
// witness's topology file: the drill does what an admin would, and measures it: the RTO from the
// probe's I/O pause, the RPO from the old primary's mirror status sampled through the switchover
// and the probe block read back at the new primary (rpo-measure.ts).
import type { Drill, Topology } from '../../common/topology/index.ts';
import { newDrillReport, type DrillPhaseRecord, type DrillReport } from '../../common/drills/report.ts';
import { operate, pollUntil, primaryOf, reachFrom, readCluster, metroctlHas } from '../../common/ops/cluster-ops.ts';
import type { DurableRecord } from '../arbiter.ts';
import { drillStep, startDrill, type DrillPhase, type DrillState, type PhaseResult } from './drill-machine.ts';
import { IoProbe, probeInitiator, probeLogin } from '../../common/probe/io-probe.ts';
import type { ProbeChapCredentials } from '../../common/probe/probe-chap.ts';
import { parseVerify } from '../../common/ops/verify-result.ts';
import { HandoverSampler } from './handover-sampler.ts';
import { measureRpo, type HandoverSample } from './rpo-measure.ts';

export interface DrillEdges {
  topology: Topology;
  /** The witness's own records (read in-process). */
  records(): DurableRecord[];
  save(r: DrillReport): Promise<void>;
  progress(phase: string, line: string): void;
  nowIso(): string;
  nowMs(): number;
  /** Deadline of one switchover or verify command. */
  operationTimeoutMs: number;
}


const probeWarmIos = 20;
const probeWarmMs = 10_000;
const settleMs = 15_000;
/** How often the old primary's status is read while a switchover runs: the handover falls between
 *  two reads, and a drained switchover holds I/O for at least a witness round trip. */
const handoverSampleIntervalMs = 20;

export async function runDrill(e: DrillEdges, drill: Drill, o: { id: string; trigger: 'schedule' | 'manual'; requestedBy: string }): Promise<DrillReport> {
  const t = e.topology;
  const report = newDrillReport({ id: o.id, drill, cluster: t.name, trigger: o.trigger, requestedBy: o.requestedBy, startedAt: e.nowIso() });
  await e.save(report);
  const g = t.groups.find((x) => x.name === drill.group)!;
  let probe: IoProbe | null = null;
  let state: DrillState = startDrill(drill.failback);
  let fromEpoch = 0;
  let handover: HandoverSample[] = [];
  const rpo = (readAtNew: Buffer | null): void => {
    const m = measureRpo({ from: report.from!, to: report.to!, samples: handover, ackBefore: (tMs) => probe?.lastAckBefore(tMs) ?? null, readAtNew });
    report.rpoMs = m.rpoMs;
    report.rpoBasis = m.basis;
    report.rpoEvidence = m.evidence;
  };
  const moved = async (): Promise<boolean> => {
    const p = primaryOf(await readCluster(t), g.name);
    return report.from !== null && p !== null && p.site !== report.from;
  };
  /**
   * One switchover measured by the probe: the longest I/O pause from its start until I/O flows
   * again; with `sample`, the old primary's status read throughout (the RPO's handover samples).
   */
  const switchTo = async (to: string, sample?: { from: string; epoch: number }): Promise<{ ok: boolean; detail: string; pauseMs: number | null }> => {
    const sampler = sample ? new HandoverSampler({ topology: t, site: sample.from, group: g.name, epoch: sample.epoch, intervalMs: handoverSampleIntervalMs, now: e.nowMs }) : null;
    sampler?.start();
    const t0 = e.nowMs();
    const r = await operate('switchover', ['--group', g.name, '--to', to, '-f', t.file], { timeoutMs: e.operationTimeoutMs })
      .finally(async () => { if (sampler) handover = await sampler.stop(); });
    const t1 = e.nowMs();
    if (!r.ok) return { ok: false, detail: r.detail || `metroctl switchover exited with ${r.code}`, pauseMs: null };
    const resumed = probe ? await probe.warm(5, settleMs) : false;
    const pauseMs = probe ? Math.round(probe.maxPauseMs(t0, t1)) : null;
    const landed = await waitPrimary(t, g.name, to, settleMs);
    if (!landed.ok) return { ok: false, detail: `metroctl switchover succeeded but ${landed.detail}`, pauseMs };
    if (!resumed) return { ok: false, detail: `the probe saw no I/O served within ${settleMs} ms after the switchover (${lastErrors(probe!)})`, pauseMs };
    return { ok: true, detail: `${r.detail || 'switched over'}; ${to} is primary in epoch ${landed.epoch}; probe I/O paused ${pauseMs} ms`, pauseMs };
  };

  const phases: Record<DrillPhase, () => Promise<{ ok: boolean; detail: string }>> = {
    precheck: async () => {
      const r = await precheck(e, drill);
      if (!r.ok) return r;
      probe = new IoProbe({
        paths: t.sites.map((s) => ({ site: s.name, host: s.portal.address, port: s.portal.port })),
        target: g.iqn, initiator: probeInitiator(t.name), lun: 0, commandTimeoutMs: 2000, now: e.nowMs, chap: r.chap,
      });
      // One login per portal first: a refused login (CHAP, allow-list) is a reason, not a timeout.
      const refused = await probe.checkLogins();
      if (refused) return { ok: false, detail: refused };
      probe.start();
      if (!(await probe.warm(probeWarmIos, probeWarmMs))) return { ok: false, detail: `the probe initiator got no I/O served through either portal (${lastErrors(probe)})` };
      // Only a passed precheck names the move: an aborted drill's report says it never started.
      report.from = r.from; report.to = r.to; fromEpoch = r.epoch;
      return { ok: true, detail: `${r.detail}; probe initiator serving I/O` };
    },
    switchover: async () => {
      const r = await switchTo(report.to!, { from: report.from!, epoch: fromEpoch });
      report.rtoMs = r.pauseMs;
      // The handover half of the RPO now, so a switchover that fails later still reports it.
      rpo(null);
      return r;
    },
    verify: async () => {
      // The probe block at the new primary first: the read-back half of the RPO.
      const wr = await probe!.writeReadThrough(report.to!);
      report.probe = { paths: probe!.stats(), writeRead: wr.detail };
      rpo(wr.read ?? null);
      if (!wr.ok) return wr;
      if (report.rpoEvidence?.atRisk) return { ok: false, detail: `RPO ${report.rpoMs === null ? 'of unknown extent' : `${report.rpoMs} ms`}, 0 expected: ${report.rpoBasis}` };
      const v = await operate('verify', ['--group', g.name, '-o', 'json', '-f', t.file], { timeoutMs: e.operationTimeoutMs });
      const result = parseVerify(v.stdout);
      const detail = result ? `${result.mismatchCount} mismatched regions in ${result.bytesChecked} bytes compared` : v.detail;
      report.verify = { mismatches: result?.mismatchCount ?? null, detail };
      if (!v.ok || !result || result.mismatchCount !== 0) return { ok: false, detail: `online verify: ${v.ok ? detail : v.detail}` };
      return { ok: true, detail: `${detail}; ${wr.detail}; RPO ${report.rpoMs ?? 'not measured'}${report.rpoMs === null ? '' : ' ms'}` };
    },
    failback: async () => {
      const r = await switchTo(report.from!);
      report.failbackRtoMs = r.pauseMs;
      return r;
    },
    return: async () => {
      const r = await switchTo(report.from!);
      return r.ok ? { ok: true, detail: `returned to ${report.from}` } : r;
    },
  };

  try {
    while (state.kind === 'phase') {
      const name = state.phase;
      e.progress(name, `${name}...`);
      const startedAt = e.nowIso();
      const r = await phases[name]().catch((err: unknown) => ({ ok: false, detail: `unexpected error: ${err instanceof Error ? err.message : String(err)}` }));
      const rec: DrillPhaseRecord = { name, startedAt, endedAt: e.nowIso(), ok: r.ok, detail: r.detail };
      report.phases.push(rec);
      e.progress(name, `${name}: ${r.ok ? 'ok' : 'FAILED'}: ${r.detail}`);
      const result: PhaseResult = { ...r, moved: name === 'precheck' ? false : await moved().catch(() => true) };
      state = drillStep(state, result);
      await e.save(report);
    }
    report.outcome = state.outcome;
    report.reason = state.reason;
  } finally {
    if (probe) {
      const p = probe as IoProbe;
      await p.stop();
      report.probe = { paths: p.stats(), writeRead: report.probe?.writeRead ?? null };
    }
    const view = await readCluster(t).catch(() => null);
    report.finalPrimary = view ? primaryOf(view, g.name)?.site ?? null : null;
    report.endedAt = e.nowIso();
    if (report.outcome === 'running') { report.outcome = 'failed'; report.reason ??= 'the drill ended unexpectedly'; }
    await e.save(report);
  }
  return report;
}

type Precheck = { ok: false; detail: string } | { ok: true; detail: string; from: string; to: string; epoch: number; chap?: ProbeChapCredentials };

async function precheck(e: DrillEdges, drill: Drill): Promise<Precheck> {
  const t = e.topology;
  const no = (detail: string) => ({ ok: false as const, detail });
  // Read at every drill: a rotated secret is picked up, a file gone wrong refuses this drill only.
  const login = await probeLogin(t);
  if (!login.ok) return no(login.reason);
  const v = await readCluster(t);
  const down = v.sites.filter((s) => !s.up).map((s) => `${s.name} (${s.reason})`);
  if (down.length) return no(`site ${down.join(' and ')} is down`);
  const p = primaryOf(v, drill.group);
  if (!p) return no(`no site reports itself primary of ${drill.group}`);
  const to = t.sites.find((s) => s.name !== p.site)!.name;
  const [ab, ba] = await Promise.all([reachFrom(t, p.site, to), reachFrom(t, to, p.site)]);
  const cut = [ab, ba].filter((r) => !r.reachable);
  if (cut.length) return no(cut.map((r) => `${r.from} does not reach ${r.site}: ${r.reason}`).join('; '));
  const rec = e.records().find((r) => r.key.group === drill.group && r.key.cluster === t.name);
  if (!rec) return no(`the witness has no record of group ${drill.group}`);
  if (rec.primary !== p.site || rec.epoch !== p.epoch) return no(`the witness's record (epoch ${rec.epoch}, primary ${rec.primary}) differs from the sites' (epoch ${p.epoch}, primary ${p.site})`);
  if (!rec.secondaryUpToDate) return no(`the secondary ${to} of ${drill.group} is outdated${rec.lagMs !== null ? ` (lag up to ${rec.lagMs} ms)` : ''}: a switchover now could lose writes`);
  const agentView = v.sites.find((s) => s.name === p.site)!.groups[drill.group]?.secondaryUpToDate;
  if (agentView === false) return no(`${p.site} reports its secondary ${to} of ${drill.group} outdated: a switchover now could lose writes`);
  for (const cmd of ['switchover', 'verify']) {
    if (!(await metroctlHas(cmd))) return no(`\`metroctl ${cmd}\` is not available in this build`);
  }
  return { ok: true, detail: `both sites up and connected (${ab.rttMs}/${ba.rttMs} ms); ${drill.group} primary ${p.site} in epoch ${p.epoch}, ${to} up-to-date`, from: p.site, to, epoch: p.epoch, chap: login.chap };
}

async function waitPrimary(t: Topology, group: string, site: string, waitMs: number): Promise<{ ok: true; epoch: number } | { ok: false; detail: string }> {
  const r = await pollUntil(async () => primaryOf(await readCluster(t), group), (p) => p?.site === site, { waitMs, intervalMs: 200 });
  return r.met ? { ok: true, epoch: r.value!.epoch } : { ok: false, detail: `${group}'s primary is ${r.value?.site ?? 'nobody'}, not ${site}` };
}

function lastErrors(p: IoProbe): string {
  return p.stats().map((s) => `${s.site}: ${s.served} served, ${s.lastError || 'no error'}`).join('; ');
}
