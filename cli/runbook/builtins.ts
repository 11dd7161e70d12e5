// The built-in runbooks: site-loss, planned-maintenance, failback, witness-replacement. Each one is
// a plan (the steps, expanded per group from the topology, so a resumed run sees the same list) and
// the live checks, actions and verifications behind it, which read the cluster over gRPC and drive
// the `metroctl` operations of DESIGN.md. A check recognises an action already done, so a resumed
// run never repeats one blindly.
import type { Topology, Group } from '../../common/topology/index.ts';
import {
  operate, pollUntil, primaryOf, reachFrom, readCluster, type ClusterView, type OpResult,
} from '../../common/ops/cluster-ops.ts';
import { witnessRecords, type WitnessRecordView } from '../../common/ops/witness-records.ts';
import type { StepSpec } from './engine.ts';
import { IoProbe, probeInitiator, probeLogin } from '../../common/probe/io-probe.ts';
import { parseVerify } from '../../common/ops/verify-result.ts';
import type { CheckResult, PhaseResult, ProgressSink, StepImpl } from './drive.ts';

export interface ParamSpec { name: string; description: string; required: boolean; choices?: (t: Topology) => string[] }

export interface BuiltStep { spec: StepSpec; impl: StepImpl }

export interface RunbookContext {
  topology: Topology;
  params: Record<string, string>;
  /** Deadline of one operation command (switchover, failover, verify). */
  operationTimeoutMs: number;
  /** How long a step waits for a condition (resync up-to-date, a new witness answering). */
  waitMaxMs: number;
  /** site-loss: the admin declares disaster: failovers skip the up-to-date and lag checks. */
  force: boolean;
}

export interface RunbookDef {
  name: string;
  summary: string;
  params: ParamSpec[];
  examples: string[];
  build(ctx: RunbookContext): BuiltStep[];
}

const siteParam: ParamSpec = { name: 'site', description: 'the site concerned', required: true, choices: (t) => t.sites.map((s) => s.name) };

const other = (t: Topology, site: string): string => t.sites.find((s) => s.name !== site)!.name;
const go = (detail: string): CheckResult => ({ outcome: 'go', detail });
const done = (detail: string): CheckResult => ({ outcome: 'done', detail });
const refused = (detail: string): CheckResult => ({ outcome: 'refused', detail });
const ok = (detail: string): PhaseResult => ({ ok: true, detail });
const failed = (detail: string): PhaseResult => ({ ok: false, detail });
const fromOp = (r: OpResult, what: string): PhaseResult => r.ok ? ok(r.detail || what) : failed(r.missing ? `${r.detail}: ${what} cannot be done by this runbook yet` : `${what} failed: ${r.detail}`);
const file = (c: RunbookContext): string[] => ['-f', c.topology.file];
/** Deadline of a reachability question: generous, a loaded survivor must not make a site look lost. */
const reachMs = 3000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls the cluster every 500 ms until `cond` holds or the wait ends; returns the last view. */
async function waitFor(c: RunbookContext, cond: (v: ClusterView) => boolean, tick?: (v: ClusterView) => void): Promise<{ met: boolean; view: ClusterView }> {
  const r = await pollUntil(() => readCluster(c.topology), cond, { waitMs: c.waitMaxMs, intervalMs: 500, tick });
  return { met: r.met, view: r.value };
}

function describeLossBound(r: WitnessRecordView | undefined): string {
  if (!r) return 'unknown (the witness has no record)';
  if (r.secondaryUpToDate) return '0 (the secondary holds every acknowledged write)';
  return r.lagMs === null ? 'UNBOUNDED: the secondary is outdated and its lag is unknown' : `up to ${r.lagMs} ms of acknowledged writes`;
}

// ---------------------------------------------------------------------------------------- site-loss

function siteLoss(c: RunbookContext): BuiltStep[] {
  const t = c.topology;
  const lost = c.params.site;
  const survivor = other(t, lost);
  const steps: BuiltStep[] = [];
  const confirmLost = async (): Promise<{ lost: boolean; detail: string }> => {
    const [bySurvivor, byWitness, view] = await Promise.all([reachFrom(t, survivor, lost, reachMs), reachFrom(t, 'witness', lost, reachMs), readCluster(t, reachMs)]);
    const seen = [bySurvivor, byWitness].filter((r) => r.reachable).map((r) => r.from);
    if (view.sites.find((s) => s.name === lost)?.up) seen.push('metroctl');
    const notSeen = [bySurvivor, byWitness].filter((r) => !r.reachable).map((r) => `${r.from}: ${r.reason}`);
    if (seen.length) return { lost: false, detail: `site ${lost} answers from ${seen.join(' and ')}: this is not a site loss${notSeen.length ? ` (not from ${notSeen.join('; ')})` : ''}` };
    const silent = [bySurvivor, byWitness].filter((r) => !r.answered).map((r) => r.reason);
    if (silent.length) return { lost: false, detail: `cannot confirm the loss: ${silent.join('; ')}` };
    return { lost: true, detail: `site ${lost} is unreachable from ${survivor} (${bySurvivor.reason}), from the witness (${byWitness.reason}) and from metroctl` };
  };
  steps.push({
    spec: {
      id: 'confirm-loss', title: `confirm site ${lost} is lost`,
      check: `${survivor} and the witness both report ${lost}'s agent unreachable, and so does metroctl`,
      action: `wait one lease (${t.failover.leaseMs} ms): a primary at ${lost} that lost both ${survivor} and the witness has fenced itself by then`,
      verify: `${lost} is still unreachable from ${survivor} and the witness`,
      advice: `if ${lost} answers, it is not lost: use \`metroctl runbook run planned-maintenance --site ${lost}\` or switchover; if the witness is down as well, an automatic failover is impossible: decide with \`metroctl failover --site ${lost} --force\``,
    },
    impl: {
      check: async () => { const r = await confirmLost(); return r.lost ? go(r.detail) : refused(r.detail); },
      action: async () => { await sleep(t.failover.leaseMs + 250); return ok(`waited ${t.failover.leaseMs + 250} ms`); },
      verify: async () => { const r = await confirmLost(); return r.lost ? ok(r.detail) : failed(r.detail); },
    },
  });
  steps.push({
    spec: {
      id: 'data-loss-bound', title: 'show the data-loss bound of every group',
      check: `the witness's record of each group primary at ${lost}: up-to-date secondary, or its lag bound`,
      action: 'report the worst-case loss per group',
      verify: 'every group has a bound (an outdated group needs a forced failover, asked for in its own step)',
      advice: 'the witness must answer to bound the loss; if it is gone too, see `metroctl failover --force`',
    },
    impl: {
      check: async () => {
        const r = await witnessRecords(t);
        return r.ok ? go(`${r.records.length} group records read from the witness`) : refused(`the witness did not answer: ${r.reason}`);
      },
      action: async (p) => {
        const r = await witnessRecords(t);
        if (!r.ok) return failed(r.reason);
        const lines = t.groups.map((g) => {
          const rec = r.records.find((x) => x.group === g.name);
          return rec && rec.primary !== lost
            ? `${g.name}: served by ${rec.primary} (epoch ${rec.epoch})${rec.forced ? ' after a FORCED failover' : ''}: nothing to fail over`
            : `${g.name}: worst-case data loss ${describeLossBound(rec)}`;
        });
        lines.forEach((l) => p.note(l));
        return ok(lines.join('; '));
      },
      verify: async () => ok('bounds shown'),
    },
  });
  for (const g of t.groups) {
    steps.push({
      spec: {
        id: `failover:${g.name}`, title: `fail group ${g.name} over to ${survivor}`,
        check: `${survivor} does not serve ${g.name} yet (already does: done)`,
        action: c.force
          ? `metroctl failover --group ${g.name} --force --yes -f ${t.file} (disaster declared: the data-loss bound of step 2 applies)`
          : `metroctl failover --group ${g.name} -f ${t.file} (refused for an outdated copy beyond failover.maxDataLossMs)`,
        verify: `${survivor} serves ${g.name} as primary in a newer epoch`,
        advice: `see \`metroctl status -f ${t.file}\`; a refusal names the reason (LEASE_HELD: wait and resume; SECONDARY_OUTDATED: the loss bound of step 2 applies: resume with --force if the business accepts it)`,
        confirm: c.force ? `FORCED failover: promote ${survivor} for group ${g.name}, accepting the data-loss bound of step 2?` : `promote ${survivor} for group ${g.name}?`,
      },
      impl: {
        check: async () => {
          const p = primaryOf(await readCluster(t), g.name);
          if (p?.site === survivor) return done(`${survivor} is already primary of ${g.name} (epoch ${p.epoch})`);
          return go(`${g.name} is not served by ${survivor} yet`);
        },
        action: async () => {
          const r = fromOp(await operate('failover', ['--group', g.name, ...(c.force ? ['--force', '--yes'] : []), ...file(c)], { timeoutMs: c.operationTimeoutMs }), `failover of ${g.name}`);
          return c.force ? { ...r, detail: `forced (disaster declared): ${r.detail}` } : r;
        },
        verify: async () => {
          const r = await waitFor({ ...c, waitMaxMs: Math.min(c.waitMaxMs, 15_000) }, (v) => primaryOf(v, g.name)?.site === survivor);
          const p = primaryOf(r.view, g.name);
          return r.met ? ok(`${survivor} is primary of ${g.name} in epoch ${p!.epoch}`) : failed(`${g.name}'s primary is ${p?.site ?? 'nobody'}`);
        },
      },
    });
  }
  for (const g of t.groups) steps.push(ioStep(c, g, survivor));
  steps.push(hostsStep(c, survivor, lost));
  return steps;
}

function ioStep(c: RunbookContext, g: Group, site: string): BuiltStep {
  const t = c.topology;
  const s = t.sites.find((x) => x.name === site)!;
  return {
    spec: {
      id: `verify-io:${g.name}`, title: `verify group ${g.name} serves I/O at ${site}`,
      check: `${site} is ${g.name}'s primary; the probe initiator may log in`,
      action: `a probe initiator reads a block of ${g.iqn} LUN 0 through ${s.portal.address}:${s.portal.port} and writes the same bytes back (COMPARE AND WRITE: user data is never changed)`,
      verify: 'both commands completed with GOOD status',
      advice: `check \`metroctl status -f ${t.file}\` (ALUA state of ${site}, write gate) and the agent log of ${site}`,
    },
    impl: {
      check: async () => {
        const login = await probeLogin(t);
        if (!login.ok) return refused(`${login.reason} (or verify from a host yourself)`);
        const p = primaryOf(await readCluster(t), g.name);
        return p?.site === site ? go(`${site} is primary in epoch ${p.epoch}`) : refused(`${g.name}'s primary is ${p?.site ?? 'nobody'}`);
      },
      action: async () => {
        const login = await probeLogin(t);
        if (!login.ok) return failed(login.reason);
        const probe = new IoProbe({ paths: [{ site, host: s.portal.address, port: s.portal.port }], target: g.iqn, initiator: probeInitiator(t.name), lun: 0, commandTimeoutMs: 5000, now: () => performance.now(), chap: login.chap });
        const r = await probe.writeReadThrough(site);
        return r.ok ? ok(r.detail) : failed(r.detail);
      },
      verify: async () => ok('I/O served'),
    },
  };
}

function hostsStep(c: RunbookContext, survivor: string, lost: string): BuiltStep {
  const t = c.topology;
  const s = t.sites.find((x) => x.name === survivor)!;
  const lines = t.groups.map((g) => `${g.iqn}: hosts keep their paths to ${s.portal.address}:${s.portal.port} (${survivor}); hosts with paths only to ${lost} must log in there: iscsiadm -m discovery -t st -p ${s.portal.address}:${s.portal.port} && iscsiadm -m node -T ${g.iqn} -l`);
  return {
    spec: {
      id: 'tell-hosts', title: 'tell the admin what hosts must do',
      check: `${survivor}'s portal is the one to use`,
      action: 'print, per group, the target and the portal hosts must use',
      verify: 'nothing to verify: the hosts are the admin\'s',
      advice: 'none',
    },
    impl: {
      check: async () => go(`portal ${s.portal.address}:${s.portal.port}`),
      action: async (p) => { lines.forEach((l) => p.note(l)); return ok(`instructions for ${lines.length} group(s) given`); },
      verify: async () => ok('instructions given'),
    },
  };
}

// ------------------------------------------------------------------------------ planned-maintenance

function switchAway(c: RunbookContext, g: Group, from: string, to: string, why: string): BuiltStep {
  const t = c.topology;
  return {
    spec: {
      id: `switchover:${g.name}`, title: `switch group ${g.name} over to ${to}`,
      check: `${g.name}'s primary is ${from} and both sites are up (already ${to}: done)`,
      action: `metroctl switchover --group ${g.name} --to ${to} -f ${t.file}`,
      verify: `${to} serves ${g.name} as primary`,
      advice: `see \`metroctl status -f ${t.file}\`: a switchover needs both sites and an up-to-date secondary; resume this run once they are (${why})`,
    },
    impl: {
      check: async () => {
        const v = await readCluster(t);
        const p = primaryOf(v, g.name);
        if (p?.site === to) return done(`${to} is already primary of ${g.name} (epoch ${p.epoch})`);
        const down = v.sites.filter((s) => !s.up).map((s) => `${s.name} (${s.reason})`);
        if (down.length) return refused(`site ${down.join(' and ')} is down`);
        return go(`${g.name} is primary at ${p?.site ?? 'unknown'} in epoch ${p?.epoch ?? '?'}`);
      },
      action: async () => fromOp(await operate('switchover', ['--group', g.name, '--to', to, ...file(c)], { timeoutMs: c.operationTimeoutMs }), `switchover of ${g.name}`),
      verify: async () => {
        const r = await waitFor({ ...c, waitMaxMs: Math.min(c.waitMaxMs, 15_000) }, (v) => primaryOf(v, g.name)?.site === to);
        return r.met ? ok(`${to} is primary of ${g.name} in epoch ${primaryOf(r.view, g.name)!.epoch}`) : failed(`${g.name}'s primary is ${primaryOf(r.view, g.name)?.site ?? 'nobody'}`);
      },
    },
  };
}

function plannedMaintenance(c: RunbookContext): BuiltStep[] {
  const t = c.topology;
  const site = c.params.site;
  const to = other(t, site);
  const precheck: BuiltStep = {
    spec: {
      id: 'precheck', title: 'both sites and the witness are up',
      check: `${site}, ${to} and the witness answer; ${to} reaches ${site}`,
      action: 'nothing to change',
      verify: 'same as the check',
      advice: 'planned maintenance starts from a healthy cluster: repair what is down first (`metroctl status`)',
    },
    impl: {
      check: async () => {
        const v = await readCluster(t);
        const down = [...v.sites.filter((s) => !s.up).map((s) => `${s.name} (${s.reason})`), ...(v.witness.up ? [] : [`witness (${v.witness.reason})`])];
        if (down.length) return refused(`not answering: ${down.join(', ')}`);
        const r = await reachFrom(t, to, site);
        return r.reachable ? done(`all up; ${to} reaches ${site} in ${r.rttMs} ms`) : refused(`${to} does not reach ${site}: ${r.reason}`);
      },
      action: async () => ok('nothing to do'),
      verify: async () => ok('healthy'),
    },
  };
  const safe: BuiltStep = {
    spec: {
      id: 'safe-to-power-off', title: `confirm ${site} is safe to power off`,
      check: `no group is primary at ${site}; ${to} and the witness are up (${to} keeps its lease when ${site} goes)`,
      action: 'nothing to change',
      verify: 'same as the check',
      advice: `do not power ${site} off: a group still depends on it; resume this run once the check passes`,
    },
    impl: {
      check: async () => {
        const v = await readCluster(t);
        const still = t.groups.filter((g) => primaryOf(v, g.name)?.site !== to).map((g) => g.name);
        if (still.length) return refused(`still not served by ${to}: ${still.join(', ')}`);
        if (!v.witness.up) return refused(`the witness is down: ${to} would lose quorum when ${site} goes`);
        return done(`every group is served by ${to}; ${site} can be powered off (the groups run unprotected until it is back and resynced)`);
      },
      action: async () => ok('nothing to do'),
      verify: async () => ok(`${site} is safe to power off`),
    },
  };
  return [precheck, ...t.groups.map((g) => switchAway(c, g, site, to, `maintenance of ${site}`)), safe];
}

// ----------------------------------------------------------------------------------------- failback

function failback(c: RunbookContext): BuiltStep[] {
  const t = c.topology;
  const groups = c.params.group ? t.groups.filter((g) => g.name === c.params.group) : t.groups;
  const steps: BuiltStep[] = [];
  for (const g of groups) {
    const home = g.preferredSite;
    const atHome = (v: ClusterView): CheckResult | null =>
      primaryOf(v, g.name)?.site === home ? done(`${g.name} already runs at its preferred site ${home}`) : null;
    steps.push({
      spec: {
        id: `resync:${g.name}`, title: `resync group ${g.name} to ${home}`,
        check: `both sites up; ${g.name} away from its preferred site ${home}`,
        action: `wait until ${home} holds every acknowledged write (resync progress shown)`,
        verify: `${home} is up-to-date`,
        advice: `\`metroctl status -f ${t.file}\` shows the resync; resume this run once it is up-to-date`,
      },
      impl: {
        check: async () => {
          const v = await readCluster(t);
          const home_ = atHome(v);
          if (home_) return home_;
          const down = v.sites.filter((s) => !s.up).map((s) => s.name);
          return down.length ? refused(`${down.join(', ')} down`) : go('both sites up');
        },
        action: async (p) => {
          const r = await waitFor(c, (v) => upToDate(v, g.name) === true, (v) => progressOf(v, g.name, p));
          const u = upToDate(r.view, g.name);
          return r.met ? ok(`${home} is up-to-date`) : failed(u === null ? 'the agents do not report whether the secondary is up-to-date in this build' : `${home} is still outdated after ${c.waitMaxMs} ms`);
        },
        verify: async () => upToDate(await readCluster(t), g.name) ? ok('up-to-date') : failed('outdated'),
      },
    });
    steps.push({
      spec: {
        id: `verify:${g.name}`, title: `verify group ${g.name}'s copies`,
        check: `${g.name} away from ${home}`,
        action: `metroctl verify --group ${g.name} -f ${t.file}`,
        verify: 'zero mismatched regions',
        advice: `mismatches mean the copies differ: do not fail back; inspect with \`metroctl verify --group ${g.name}\` and resync`,
      },
      impl: {
        check: async () => atHome(await readCluster(t)) ?? go('copies to compare'),
        action: async () => {
          const r = await operate('verify', ['--group', g.name, '-o', 'json', ...file(c)], { timeoutMs: c.operationTimeoutMs });
          const v = parseVerify(r.stdout);
          if (r.missing) return fromOp(r, `verify of ${g.name}`);
          return v ? (v.mismatchCount === 0 ? ok(`0 mismatched regions in ${v.bytesChecked} bytes`) : failed(`${v.mismatchCount} mismatched regions`)) : failed(`verify of ${g.name} failed: ${r.detail}`);
        },
        verify: async () => ok('the copies match'),
      },
    });
    const back = switchAway(c, g, other(t, home), home, `failback of ${g.name}`);
    steps.push({ ...back, spec: { ...back.spec, id: `return:${g.name}`, title: `return group ${g.name} to ${home}` } });
  }
  return steps;
}

function upToDate(v: ClusterView, group: string): boolean | null {
  const p = primaryOf(v, group);
  return p ? v.sites.find((s) => s.name === p.site)!.groups[group].secondaryUpToDate : null;
}

function progressOf(v: ClusterView, group: string, p: ProgressSink): void {
  const prim = primaryOf(v, group);
  const raw = prim ? v.sites.find((s) => s.name === prim.site)!.groups[group].raw : {};
  const r = (raw.mirror as { resync?: { bytes_total?: string; bytes_done?: string } } | undefined)?.resync;
  if (r?.bytes_total && Number(r.bytes_total) > 0) p.update(Number(r.bytes_done ?? 0), Number(r.bytes_total), 'bytes resynced');
}

// ----------------------------------------------------------------------------- witness-replacement

function witnessReplacement(c: RunbookContext): BuiltStep[] {
  const t = c.topology;
  const [a, b] = t.sites.map((s) => s.name);
  const w = t.witness;
  return [{
    spec: {
      id: 'sites-connected', title: 'the sites reach each other',
      check: `${a} reaches ${b} and ${b} reaches ${a}: while they do, nothing changes without a witness`,
      action: 'nothing to change',
      verify: 'same as the check',
      advice: 'replace the witness only while the sites reach each other: without both, no group may change its primary',
    },
    impl: {
      check: async () => {
        const [ab, ba] = await Promise.all([reachFrom(t, a, b), reachFrom(t, b, a)]);
        return ab.reachable && ba.reachable ? done(`${a}->${b} ${ab.rttMs} ms, ${b}->${a} ${ba.rttMs} ms`) : refused([ab, ba].filter((r) => !r.reachable).map((r) => `${r.from} does not reach ${r.site}: ${r.reason}`).join('; '));
      },
      action: async () => ok('nothing to do'),
      verify: async () => ok('connected'),
    },
  }, {
    spec: {
      id: 'new-witness', title: `the new witness answers at ${w.address}:${w.port}`,
      check: `a witness of cluster ${t.name} answers at the topology's witness address`,
      action: `on the new witness host (fire zone ${w.fireZone}): \`metro-witness -f ${t.file}\`, with the topology's witness address and dataDir set for it; this step waits for it`,
      verify: 'it answers Health as the witness of this cluster',
      advice: `start the witness (\`metro-witness -f ${t.file}\`) and resume this run`,
    },
    impl: {
      check: async () => (await readCluster(t)).witness.up ? done('a witness answers') : go('no witness answers yet'),
      action: async (p) => {
        p.note(`start it now: metro-witness -f ${t.file} (on ${w.address}); waiting up to ${Math.round(c.waitMaxMs / 1000)} s`);
        const r = await waitFor(c, (v) => v.witness.up);
        return r.met ? ok('the witness answers') : failed(`no witness at ${w.address}:${w.port} after ${c.waitMaxMs} ms`);
      },
      verify: async () => (await readCluster(t)).witness.up ? ok('witness up') : failed('witness down'),
    },
  }, ...t.groups.map((g): BuiltStep => {
    const matches = async (): Promise<{ ok: boolean; detail: string }> => {
      const [v, r] = await Promise.all([readCluster(t), witnessRecords(t)]);
      if (!r.ok) return { ok: false, detail: `the witness did not answer: ${r.reason}` };
      const p = primaryOf(v, g.name);
      const rec = r.records.find((x) => x.group === g.name);
      if (p && rec && rec.epoch === p.epoch && rec.primary === p.site) return { ok: true, detail: `epoch ${rec.epoch}, primary ${rec.primary}` };
      return { ok: false, detail: `the witness holds ${rec ? `epoch ${rec.epoch}, primary ${rec.primary}` : 'no record'}; the sites report ${p ? `epoch ${p.epoch}, primary ${p.site}` : 'no primary'}` };
    };
    return {
      spec: {
        id: `record:${g.name}`, title: `the witness's record of ${g.name} matches the sites`,
        check: `the witness holds ${g.name}'s current epoch and primary as the sites report them`,
        action: 'wait for the sites to report their epoch: a witness starting from an empty dataDir registers every group at epoch 1 and adopts the epoch the sites report when its primary follows from epoch 1',
        verify: 'same as the check',
        advice: `copy the old witness's dataDir (witness.json) to the new one if it survived; a witness that does not adopt the sites' epoch (its record names another primary for it) must get the old records`,
      },
      impl: {
        check: async () => {
          const m = await matches();
          return m.ok ? done(m.detail) : go(m.detail);
        },
        action: async () => {
          const r = await pollUntil(matches, (m) => m.ok, { waitMs: c.waitMaxMs, intervalMs: 500 });
          return r.met ? ok(r.value.detail) : failed(`${r.value.detail} after ${c.waitMaxMs} ms`);
        },
        verify: async () => ((await matches()).ok ? ok('record matches') : failed('record differs')),
      },
    };
  })];
}

export const runbooks: readonly RunbookDef[] = [
  {
    name: 'site-loss', summary: 'a site is lost: confirm it, show the data-loss bound, fail every group over to the survivor, tell hosts what to do',
    params: [{ ...siteParam, description: 'the lost site' }],
    examples: ['metroctl runbook run site-loss --site alpha -f cluster.yaml --dry-run', 'metroctl runbook run site-loss --site alpha -f cluster.yaml', 'metroctl runbook run site-loss --site alpha -f cluster.yaml --resume'],
    build: siteLoss,
  },
  {
    name: 'planned-maintenance', summary: 'switch every group away from a site, then confirm it is safe to power off',
    params: [{ ...siteParam, description: 'the site to take down' }],
    examples: ['metroctl runbook run planned-maintenance --site beta -f cluster.yaml'],
    build: plannedMaintenance,
  },
  {
    name: 'failback', summary: 'resync, verify and return groups to their preferred sites',
    params: [{ name: 'group', description: 'only this group (default: every group)', required: false, choices: (t) => t.groups.map((g) => g.name) }],
    examples: ['metroctl runbook run failback -f cluster.yaml', 'metroctl runbook run failback --group db -f cluster.yaml --yes'],
    build: failback,
  },
  {
    name: 'witness-replacement', summary: 'replace a lost witness while the sites keep each other in quorum',
    params: [],
    examples: ['metroctl runbook run witness-replacement -f cluster.yaml'],
    build: witnessReplacement,
  },
];

export function findRunbook(name: string): RunbookDef | undefined {
  return runbooks.find((r) => r.name === name);
}

/** Checks the parameters against the runbook and the topology; returns a sentence when wrong. */
export function checkParams(def: RunbookDef, t: Topology, params: Record<string, string>): string | null {
  for (const p of def.params) {
    const v = params[p.name];
    if (v === undefined) {
      if (p.required) return `runbook ${def.name} needs --${p.name} (${p.description}${p.choices ? `: one of ${p.choices(t).join(', ')}` : ''})`;
      continue;
    }
    const choices = p.choices?.(t);
    if (choices && !choices.includes(v)) return `--${p.name} ${v}: expected one of ${choices.join(', ')}`;
  }
  return null;
}
