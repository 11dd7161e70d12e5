// `npm run bench`: our agent against tgt, same client (qemu-img bench over iscsi://), same volume
// size on the same filesystem, alternating targets, each case repeated; and our agent's group
// mirrored in sync mode (a second pair of agents) against the same group unmirrored. Each comparison
// runs with only its own targets started (fresh volume files), so no idle daemon shares the CPUs. Prints medians
// and the ratio per case with CPU per I/O and peak RSS, and saves the run as JSON in bench-results/.
// With the mirrored QD32 case, also the mirror's transport floor (mirror-floor.ts) and the highest
// mirrored/unmirrored ratio it leaves this machine.
// Then the failover figures (failover-bench.ts): SIGKILL to the first write at the survivor, and the
// I/O pause of a switchover, medians over the same number of rounds.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import Table from 'cli-table3';
import { startAgent, startMirroredPair, type AgentTarget, type MirroredPair } from './agent-target.ts';
import { installRoot } from '../common/install-root.ts';
import { checkPrerequisites } from './prerequisites.ts';
import { cpuMs, peakRssBytes, threadCount } from './proc-stats.ts';
import { benchCases, benchArgs, figureOf, mirrorCases, ratioOf, runQemuBench, spreadStepBytes, type BenchCase } from './qemu-bench.ts';
import { startTgt, type TgtTarget } from './tgt-target.ts';
import { floorBatchEntries, runMirrorFloor, type FloorFigures } from './mirror-floor.ts';
import { failoverGoalMs, failoverLeaseMs, failoverLoad, runFailoverBench, switchoverPauseGoalMs, type FailoverFigures } from './failover-bench.ts';

/** ours: one agent, mirroring off; mirrored: site alpha's agent mirroring to beta's in sync mode. */
type TargetName = 'tgt' | 'ours' | 'mirrored';
const targetNames: readonly TargetName[] = ['tgt', 'ours', 'mirrored'];

/** Rows measured together: each case on the reference and on the subject, alternating. */
interface Comparison {
  readonly id: string;
  readonly title: string;
  readonly reference: TargetName;
  readonly subject: TargetName;
  readonly cases: readonly BenchCase[];
}

const comparisons: readonly Comparison[] = [
  { id: 'vs-tgt', title: 'ours/tgt > 1 means we are faster (latency row: tgt\'s latency / ours)', reference: 'tgt', subject: 'ours', cases: benchCases },
  {
    id: 'mirror',
    title: 'mirrored/unmirrored: the group mirrored in sync mode (every write acknowledged by the peer agent before it completes) over the same group unmirrored (latency row: unmirrored latency / mirrored)',
    reference: 'ours',
    subject: 'mirrored',
    cases: mirrorCases,
  },
];

interface Options {
  repeat: number;
  quick: boolean;
  only?: TargetName;
  cases?: string[];
  threads?: number;
  cpuProf?: string;
  sizeMib: number;
  /** commander's --no-failover */
  failover: boolean;
}

interface Sample {
  readonly target: TargetName;
  readonly repeat: number;
  readonly seconds: number;
  readonly count: number;
  readonly figure: number;
  /** CPU of the process the client drives (for mirrored: the primary's agent). */
  readonly cpuMs: number;
  /** mirrored only: CPU of the secondary's agent. */
  readonly peerCpuMs?: number;
  /** CPU of the client (qemu-img bench). */
  readonly clientCpuMs: number;
  /** Share (0-100) of the machine's CPU time in use during the run, by any task. */
  readonly machineBusyPct: number | undefined;
}

/** Our target's declared session parameters, set on tgt too so both negotiate the same with the client. */
const sharedParams: Record<string, string> = {
  MaxRecvDataSegmentLength: '262144',
  MaxXmitDataSegmentLength: '262144',
  MaxBurstLength: '8388608',
  FirstBurstLength: '262144',
  InitialR2T: 'No',
  ImmediateData: 'Yes',
  MaxOutstandingR2T: '16',
};

const durability = [
  'ours runs one site with mirroring off (METRO_MIRROR=0): tgt has no mirror; this compares the targets alone.',
  'mirrored: site alpha\'s agent with site beta\'s attached on loopback, replication.ack sync: a WRITE completes once written locally and applied by the peer.',
  'Both thin-provisioned sparse files (LBPME: UNMAP, GET LBA STATUS). Durability, both write-back (WCE=1): a WRITE lands in the page cache;',
  '  tgt (rdwr backing store): SYNCHRONIZE CACHE -> fdatasync(2) of the file; FUA -> sync of the range.',
  '  ours (FileBlockDevice):   SYNCHRONIZE CACHE -> fdatasync(2) of the file; FUA -> fdatasync(2).',
  '  qemu-img bench (cache=none) sends no flush while timing; it flushes once when closing, outside the time.',
];

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function parseOptions(): Options {
  const ids = comparisons.flatMap((c) => c.cases.map((x) => x.id));
  const program = new Command('bench')
    .description('benchmark metro-agent against tgt, and mirrored against unmirrored, with qemu-img bench (ratios, never absolute claims)')
    .option('--repeat <n>', 'runs of each case per target', positiveInt, 5)
    .option('--quick', 'short run: fewer requests per case and 3 repeats unless --repeat is given', false)
    .option('--only <target>', `benchmark one target only (profiling): ${targetNames.join(', ')}`)
    .option('--cases <ids>', `comma-separated subset of: ${ids.join(', ')}`, (v) => v.split(','))
    .option('--threads <n>', "UV_THREADPOOL_SIZE for the agent (default: the agent's own)", positiveInt)
    .option('--cpu-prof <dir>', 'write a V8 CPU profile of the agent into <dir>')
    .option('--size-mib <n>', 'volume size in MiB (sparse files)', positiveInt, 1024)
    .option('--no-failover', 'skip the failover and switchover figures (a cluster run by metroctl up, after the other cases)')
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
  program.parse();
  const o = program.opts<Options>();
  const repeatGiven = program.getOptionValueSource('repeat') === 'cli';
  if (o.quick && !repeatGiven) o.repeat = 3;
  if (o.only !== undefined && !targetNames.includes(o.only)) program.error(`--only takes one of ${targetNames.join(', ')}`);
  const unknown = (o.cases ?? []).filter((c) => !ids.includes(c));
  if (unknown.length > 0) program.error(`unknown case ${unknown.join(', ')}; cases: ${ids.join(', ')}`);
  return o;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function fmt(x: number | undefined, unit: string): string {
  if (x === undefined || Number.isNaN(x)) return '-';
  if (unit === 'IOPS') return Math.round(x).toLocaleString('en-US');
  return x >= 100 ? x.toFixed(0) : x.toFixed(1);
}

function mib(bytes: number | undefined): string {
  return bytes === undefined ? '-' : `${(bytes / 1024 ** 2).toFixed(0)} MiB`;
}

const negotiatedKeys = ['MaxRecvDataSegmentLength', 'MaxXmitDataSegmentLength', 'MaxBurstLength', 'FirstBurstLength', 'InitialR2T', 'ImmediateData', 'MaxOutstandingR2T', 'HeaderDigest', 'DataDigest'];

/** The comparisons and cases this run measures (--cases, --only), each with the targets it runs. */
interface Plan {
  readonly comparison: Comparison;
  readonly cases: readonly BenchCase[];
  readonly targets: readonly TargetName[];
}

function planOf(opts: Options): Plan[] {
  const plans: Plan[] = [];
  for (const comparison of comparisons) {
    const cases = comparison.cases.filter((c) => opts.cases === undefined || opts.cases.includes(c.id));
    const both: TargetName[] = [comparison.reference, comparison.subject];
    const targets = opts.only === undefined ? both : both.filter((t) => t === opts.only);
    if (cases.length > 0 && targets.length > 0) plans.push({ comparison, cases, targets });
  }
  return plans;
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const missing = checkPrerequisites();
  if (missing.length > 0) {
    process.stderr.write('npm run bench cannot start; missing:\n');
    for (const m of missing) process.stderr.write(`  - ${m.what}: ${m.fix}\n`);
    process.stderr.write('Nothing was installed or started.\n');
    process.exitCode = 1;
    return;
  }
  const plans = planOf(opts);
  // Failover figures come with a full run (not with --only or --cases, which profile one data path).
  const withFailover = opts.failover && opts.only === undefined && opts.cases === undefined;
  if (plans.length === 0) {
    process.stderr.write('nothing to run: no case of --cases runs on the --only target\n');
    process.exitCode = 2;
    return;
  }
  const aborter = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`\n${sig}: stopping the targets and removing temporary files...\n`);
    aborter.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const volumeBytes = opts.sizeMib * 1024 ** 2;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'metro-bench-'));
  const octet = 100 + (process.pid % 150);
  const host = (n: number): string => `127.0.${octet}.${n}`;
  let saved: { file: string; json: Record<string, unknown> } | undefined;
  try {
    const env: Record<string, string> = {};
    if (opts.threads !== undefined) env.UV_THREADPOOL_SIZE = String(opts.threads);
    const nodeArgs: string[] = [];
    if (opts.cpuProf !== undefined) {
      fs.mkdirSync(opts.cpuProf, { recursive: true });
      nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${path.resolve(opts.cpuProf)}`);
    }
    process.stdout.write(`volumes: ${opts.sizeMib} MiB sparse files in ${dir}\n`);
    const samples = new Map<string, Sample[]>(plans.flatMap((p) => p.cases.map((c) => [c.id, []] as [string, Sample[]])));
    const runs: PlanRun[] = [];
    for (const [i, plan] of plans.entries()) {
      const targets = { env, nodeArgs, volumeBytes, dir: path.join(dir, plan.comparison.id), host };
      runs.push(await measurePlan(plan, targets, opts, samples, aborter.signal));
      if (i < plans.length - 1) process.stdout.write('\n');
    }
    const floor = plans.some((p) => p.comparison.id === 'mirror' && p.targets.length === 2 && p.cases.some((c) => c.id === floorCaseId))
      ? await measureFloor(opts, path.join(dir, 'floor'), host, aborter.signal)
      : [];
    saved = report({ opts, plans, samples, runs, floor });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    if (!withFailover || saved === undefined) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
  if (!withFailover || saved === undefined) return;
  try {
    process.stdout.write(`\nfailover: ${opts.repeat} round(s) of a switchover and a SIGKILL of the primary's agent (metroctl up, leaseMs ${failoverLeaseMs}, ack sync)...\n`);
    const loadBefore = failoverLoad();
    const figures = await runFailoverBench(opts.repeat, aborter.signal, process.stdout);
    reportFailover(figures, saved, loadBefore);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** The mirror case the transport floor bounds: its depth over the window's batches in flight is the floor's batch. */
const floorCaseId = 'mirror-randwrite-4k-qd32';
const floorSeconds = 5;

/** The mirror's transport floor (mirror-floor.ts), as many runs as each case, with no target running. */
async function measureFloor(opts: Options, dir: string, host: (n: number) => string, signal: AbortSignal): Promise<FloorFigures[]> {
  const c = mirrorCases.find((x) => x.id === floorCaseId)!;
  const batchEntries = floorBatchEntries(c.depth);
  process.stdout.write(`\nmirror floor: ${opts.repeat} run(s) of the mirror's wire alone (bench/mirror-floor.ts), ${batchEntries}-write batches...\n`);
  const figures: FloorFigures[] = [];
  for (let r = 0; r < opts.repeat; r++) {
    if (signal.aborted) throw new Error('interrupted');
    const f = await runMirrorFloor({ dir: path.join(dir, String(r)), hosts: [host(8), host(9), host(10)], batchEntries, seconds: opts.quick ? 2 : floorSeconds, signal });
    process.stdout.write(`  [${r + 1}/${opts.repeat}] ${Math.round(f.writesPerSec)} writes/s, CPU per write: primary ${f.primaryCpuUsPerWrite.toFixed(1)} us, secondary ${f.secondaryCpuUsPerWrite.toFixed(1)} us\n`);
    figures.push(f);
  }
  return figures;
}

/** What measuring one comparison left for the report. */
interface PlanRun {
  readonly comparison: string;
  readonly elapsedS: number;
  /** Per process of this comparison (pid -> name and totals over its timed runs). */
  readonly processes: Array<{ name: string } & ProcessTotals>;
  /** 1, 5 and 15 minute load averages when timing started and ended (the machine may be shared). */
  readonly load: { before: number[]; after: number[] };
  readonly tgt?: TgtTarget['params'];
  readonly ourLogin?: Record<string, unknown>;
  /** Mirror events during the timed runs: the mirrored figures are not sync mirroring if any. */
  readonly mirrorTrouble: string[];
}

interface TargetSetup {
  readonly env: Record<string, string>;
  readonly nodeArgs: string[];
  readonly volumeBytes: number;
  readonly dir: string;
  readonly host: (n: number) => string;
}

/**
 * One comparison: its two targets only are started (an idle agent still spends CPU on heartbeats,
 * and this machine may have two cores), warmed up, measured alternately, and stopped again.
 */
async function measurePlan(p: Plan, setup: TargetSetup, opts: Options, samples: Map<string, Sample[]>, signal: AbortSignal): Promise<PlanRun> {
  const { env, nodeArgs, volumeBytes, dir, host } = setup;
  let agent: AgentTarget | undefined;
  let pair: MirroredPair | undefined;
  let tgt: TgtTarget | undefined;
  try {
    if (p.targets.includes('ours')) agent = await startAgent({ hosts: [host(2), host(3), host(4)], dir: path.join(dir, 'agent'), volumeBytes, env, nodeArgs });
    if (p.targets.includes('mirrored')) pair = await startMirroredPair({ hosts: [host(5), host(6), host(7)], dir: path.join(dir, 'mirrored'), volumeBytes, env, nodeArgs });
    if (p.targets.includes('tgt')) {
      const volumeFile = path.join(dir, 'tgt.vol');
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(volumeFile, '');
      fs.truncateSync(volumeFile, volumeBytes);
      tgt = await startTgt({ address: host(1), volumeFile, dir, params: sharedParams });
    }
    const urls: Record<TargetName, string> = { tgt: tgt?.url ?? '', ours: agent?.url ?? '', mirrored: pair?.primary.url ?? '' };
    const pids: Record<TargetName, number> = { tgt: tgt?.pid ?? 0, ours: agent?.pid ?? 0, mirrored: pair?.primary.pid ?? 0 };
    const peerPid = pair?.secondary.pid;
    process.stdout.write(`${p.comparison.id}:\n`);
    for (const t of p.targets) process.stdout.write(`  ${t.padEnd(8)}: ${urls[t]} (pid ${pids[t]}${t === 'mirrored' ? `, secondary pid ${peerPid}` : ''})\n`);

    // Warm-up, not counted: one short pass of every case on each target, so the agents' JIT has
    // compiled their data path and the volume files have their blocks allocated before timing.
    process.stdout.write('  warm-up pass (not counted)...\n');
    for (const c of p.cases) {
      for (const t of p.targets) {
        if (signal.aborted) throw new Error('interrupted');
        await runQemuBench(c, c.quickCount, urls[t], signal);
      }
    }
    const troubleBefore = pair?.mirrorTrouble().length ?? 0;
    const allPids = [...p.targets.map((t) => pids[t]), ...(peerPid !== undefined ? [peerPid] : [])];
    const startCpu = new Map(allPids.map((pid) => [pid, cpuMs(pid) ?? 0]));
    const loadBefore = os.loadavg();
    const started = performance.now();
    for (let r = 0; r < opts.repeat; r++) {
      for (const c of p.cases) {
        // Alternate which target goes first, so neither always runs on a warmer (or busier) machine.
        const order = r % 2 === 0 ? p.targets : [...p.targets].reverse();
        for (const t of order) {
          if (signal.aborted) throw new Error('interrupted');
          const count = opts.quick ? c.quickCount : c.count;
          const before = cpuMs(pids[t]) ?? 0;
          const peerBefore = t === 'mirrored' && peerPid !== undefined ? (cpuMs(peerPid) ?? 0) : undefined;
          const run = await runQemuBench(c, count, urls[t], signal);
          const used = (cpuMs(pids[t]) ?? 0) - before;
          const peerUsed = peerBefore !== undefined ? (cpuMs(peerPid!) ?? 0) - peerBefore : undefined;
          const figure = figureOf(c, run);
          samples.get(c.id)!.push({ target: t, repeat: r, seconds: run.seconds, count: run.count, figure, cpuMs: used, peerCpuMs: peerUsed, clientCpuMs: run.clientCpuMs, machineBusyPct: run.machineBusyPct });
          const peerNote = peerUsed !== undefined ? `, secondary ${peerUsed.toFixed(0)} ms` : '';
          process.stdout.write(`  [${r + 1}/${opts.repeat}] ${c.id.padEnd(24)} ${t.padEnd(8)} ${fmt(figure, c.unit).padStart(8)} ${c.unit}  (${run.seconds.toFixed(3)} s, CPU ${used.toFixed(0)} ms${peerNote}, client ${run.clientCpuMs.toFixed(0)} ms, machine busy ${fmt(run.machineBusyPct, '')}%)\n`);
        }
      }
    }
    const elapsedS = (performance.now() - started) / 1000;
    const names: Record<number, string> = {};
    if (tgt) names[tgt.pid] = 'tgt (tgtd)';
    if (agent) names[agent.pid] = 'ours (metro-agent, unmirrored)';
    if (pair) {
      names[pair.primary.pid] = 'mirrored primary (metro-agent alpha)';
      names[pair.secondary.pid] = 'mirrored secondary (metro-agent beta)';
    }
    return {
      comparison: p.comparison.id,
      elapsedS,
      processes: allPids.map((pid) => ({ name: names[pid] ?? String(pid), cpuMs: (cpuMs(pid) ?? 0) - (startCpu.get(pid) ?? 0), peakRssBytes: peakRssBytes(pid), threads: threadCount(pid) })),
      load: { before: loadBefore, after: os.loadavg() },
      tgt: tgt?.params,
      ourLogin: agent?.lastLogin() ?? pair?.primary.lastLogin(),
      mirrorTrouble: pair?.mirrorTrouble().slice(troubleBefore) ?? [],
    };
  } finally {
    await Promise.allSettled([agent?.stop(), pair?.stop(), tgt?.stop()]);
  }
}

function reportFailover(f: FailoverFigures, saved: { file: string; json: Record<string, unknown> }, loadBefore: string): void {
  const table = new Table({ head: ['figure', 'median', 'runs (ms)', 'goal'], colAligns: ['left', 'right', 'left', 'left'], style: { head: [], border: [] } });
  const ms = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
  table.push(
    ['failover: SIGKILL of the primary\'s agent to the first write completed at the survivor', `${median(f.failoverMs).toFixed(0)} ms`, ms(f.failoverMs), `under ${failoverGoalMs} ms`],
    ['switchover: I/O pause a multipath host sees (probe, both portals)', `${median(f.switchoverPauseMs).toFixed(0)} ms`, ms(f.switchoverPauseMs), `under ${switchoverPauseGoalMs} ms`],
    ['switchover: metroctl switchover, start to exit', `${median(f.switchoverCommandMs).toFixed(0)} ms`, ms(f.switchoverCommandMs), '-'],
  );
  process.stdout.write(`\nfailover: medians of ${f.failoverMs.length} round(s) (absolute times on this machine; load average ${loadBefore} before, ${failoverLoad()} after)\n`);
  process.stdout.write(table.toString() + '\n');
  fs.writeFileSync(saved.file, JSON.stringify({ ...saved.json, failover: { leaseMs: failoverLeaseMs, ...f, failoverMedianMs: median(f.failoverMs), switchoverPauseMedianMs: median(f.switchoverPauseMs) } }, null, 2) + '\n');
}

interface ProcessTotals {
  cpuMs: number;
  peakRssBytes?: number;
  threads?: number;
}

interface ReportInput {
  opts: Options;
  plans: readonly Plan[];
  samples: Map<string, Sample[]>;
  runs: readonly PlanRun[];
  floor: readonly FloorFigures[];
}

/** The floor's medians and the bound they set on the mirrored QD32 case (floorCeiling). */
interface FloorCeiling {
  batchEntries: number;
  batchesInFlight: number;
  writesPerSecMedian: number;
  primaryCpuUsPerWriteMedian: number;
  secondaryCpuUsPerWriteMedian: number;
  unmirroredAllCpuUsPerIo: number;
  unmirroredIops: number;
  /** With every CPU of the machine busy. */
  ceilingIops: number;
  ceilingRatio: number;
  /** With the machine as busy as in the unmirrored run (absent when that share was not read). */
  unmirroredBusyPct?: number;
  ceilingIopsAtUnmirroredBusy?: number;
  ceilingRatioAtUnmirroredBusy?: number;
}

/**
 * The most the mirrored QD32 case could reach here if the agents spent nothing on mirroring beyond
 * the floor: the unmirrored run's CPU per write (client and agent) plus the floor's (both sides), over
 * every CPU of the machine (an upper bound: the unmirrored run itself leaves CPUs idle), and over
 * the share of them the unmirrored run kept busy; each against the unmirrored figure.
 */
function floorCeiling(floor: readonly FloorFigures[], rows: ReadonlyArray<Record<string, unknown>>): FloorCeiling | undefined {
  const row = rows.find((x) => x.id === floorCaseId);
  const unmirroredIops = row?.referenceMedian as number | undefined;
  const unmirroredAllCpu = row?.referenceAllCpuUsPerIoMedian as number | undefined;
  const unmirroredBusyPct = row?.referenceMachineBusyPctMedian as number | undefined;
  if (floor.length === 0 || unmirroredIops === undefined || unmirroredAllCpu === undefined) return undefined;
  const primary = median(floor.map((f) => f.primaryCpuUsPerWrite));
  const secondary = median(floor.map((f) => f.secondaryCpuUsPerWrite));
  const perWrite = unmirroredAllCpu + primary + secondary;
  const ceilingIops = (os.cpus().length * 1e6) / perWrite;
  return {
    batchEntries: floor[0].batchEntries, batchesInFlight: floor[0].batchesInFlight, writesPerSecMedian: median(floor.map((f) => f.writesPerSec)),
    primaryCpuUsPerWriteMedian: primary, secondaryCpuUsPerWriteMedian: secondary,
    unmirroredAllCpuUsPerIo: unmirroredAllCpu, unmirroredIops, ceilingIops, ceilingRatio: ceilingIops / unmirroredIops,
    ...(unmirroredBusyPct === undefined ? {} : {
      unmirroredBusyPct,
      ceilingIopsAtUnmirroredBusy: (ceilingIops * unmirroredBusyPct) / 100,
      ceilingRatioAtUnmirroredBusy: (ceilingIops * unmirroredBusyPct) / 100 / unmirroredIops,
    }),
  };
}

function report(r: ReportInput): { file: string; json: Record<string, unknown> } {
  const out = process.stdout;
  const rows: Array<Record<string, unknown>> = [];
  for (const p of r.plans) {
    const { reference: ref, subject: sub } = p.comparison;
    const both = p.targets.length === 2;
    const table = new Table({
      head: ['case', 'unit', ref, sub, both ? `${sub}/${ref}` : 'ratio', `${ref} CPU us/IO`, `${sub} CPU us/IO`, ...(sub === 'mirrored' ? ['secondary CPU us/IO'] : []), 'client CPU us/IO', 'all CPU us/IO', 'machine busy %'],
      colAligns: ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
      style: { head: [], border: [] },
    });
    for (const c of p.cases) {
      const s = r.samples.get(c.id)!;
      const med = (t: TargetName, f: (x: Sample) => number | undefined): number | undefined => {
        const xs = s.filter((x) => x.target === t).map(f).filter((x): x is number => x !== undefined);
        return xs.length > 0 ? median(xs) : undefined;
      };
      const refFig = med(ref, (x) => x.figure);
      const subFig = med(sub, (x) => x.figure);
      const ratio = refFig !== undefined && subFig !== undefined ? ratioOf(c, subFig, refFig) : undefined;
      const perIo = (x: Sample, ms: number | undefined) => (ms === undefined ? undefined : (ms * 1000) / x.count);
      const refCpu = med(ref, (x) => perIo(x, x.cpuMs));
      const subCpu = med(sub, (x) => perIo(x, x.cpuMs));
      const peerCpu = med(sub, (x) => perIo(x, x.peerCpuMs));
      const refClient = med(ref, (x) => perIo(x, x.clientCpuMs));
      const subClient = med(sub, (x) => perIo(x, x.clientCpuMs));
      // Every process of the setup: the client, the target, and for mirrored the secondary too.
      const allCpuMs = (x: Sample) => x.cpuMs + (x.peerCpuMs ?? 0) + x.clientCpuMs;
      const refAll = med(ref, (x) => perIo(x, allCpuMs(x)));
      const subAll = med(sub, (x) => perIo(x, allCpuMs(x)));
      const refBusy = med(ref, (x) => x.machineBusyPct);
      const subBusy = med(sub, (x) => x.machineBusyPct);
      const pair = (a: number | undefined, b: number | undefined) => `${fmt(a, '')} / ${fmt(b, '')}`;
      table.push([c.label, c.unit, fmt(refFig, c.unit), fmt(subFig, c.unit), ratio === undefined ? '-' : ratio.toFixed(2), fmt(refCpu, ''), fmt(subCpu, ''), ...(sub === 'mirrored' ? [fmt(peerCpu, '')] : []), pair(refClient, subClient), pair(refAll, subAll), pair(refBusy, subBusy)]);
      rows.push({
        comparison: p.comparison.id, id: c.id, label: c.label, unit: c.unit, count: s[0]?.count, args: benchArgs(c, s[0]?.count ?? c.count, '<url>'),
        reference: ref, subject: sub, referenceMedian: refFig, subjectMedian: subFig, ratio,
        referenceCpuUsPerIoMedian: refCpu, subjectCpuUsPerIoMedian: subCpu, secondaryCpuUsPerIoMedian: peerCpu,
        referenceClientCpuUsPerIoMedian: refClient, subjectClientCpuUsPerIoMedian: subClient,
        referenceAllCpuUsPerIoMedian: refAll, subjectAllCpuUsPerIoMedian: subAll,
        referenceMachineBusyPctMedian: refBusy, subjectMachineBusyPctMedian: subBusy,
      });
    }
    out.write(`\n${p.comparison.id}: medians of ${r.opts.repeat} run(s) per case and target${r.opts.quick ? ' (--quick)' : ''}; ${p.comparison.title}\n`);
    out.write(table.toString() + '\n');
    if (!both) out.write('one target only (--only): no ratios.\n');
  }
  out.write(`4 KiB "spread" cases: qemu-img bench only steps sequentially; step -S ${spreadStepBytes} bytes (7919 x 4 KiB, coprime with the slot count), so offsets spread over the whole volume.\n`);
  out.write('CPU us/IO: user+system CPU time of the process over the run divided by the requests of the run (median over the runs).\n');
  out.write('client CPU us/IO: qemu-img bench\'s, reference / subject; all CPU us/IO: client + target (+ secondary for mirrored), reference / subject.\n');
  out.write(`  While the reference keeps all ${os.cpus().length} CPUs busy, the subject cannot pass (reference all)/(subject all) of its throughput on this machine.\n`);
  out.write('machine busy %: share of all the machine\'s CPU time (/proc/stat) that any task used during the run, reference / subject. Under 100,\n');
  out.write('  the run also waited on hand-offs between processes (wake-ups, round trips), not on CPU alone, and the bound above is loose.\n');
  const la = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' ');
  for (const run of r.runs) {
    out.write(`${run.comparison}: only its two targets ran; load average (1/5/15 min) ${la(run.load.before)} at the start of timing, ${la(run.load.after)} at the end\n`);
    for (const x of run.processes) {
      out.write(`  ${x.name.padEnd(38)}: CPU user+sys ${(x.cpuMs / 1000).toFixed(1)} s over the ${run.elapsedS.toFixed(0)} s run, peak RSS (VmHWM) ${mib(x.peakRssBytes)}, threads ${x.threads ?? '-'}\n`);
    }
  }
  out.write(`machine: ${os.cpus().length} CPUs\n`);
  for (const line of durability) out.write(line + '\n');
  const ceiling = floorCeiling(r.floor, rows);
  const n0 = (x: number) => Math.round(x).toLocaleString('en-US');
  if (ceiling !== undefined) {
    out.write(`mirror floor (bench/mirror-floor.ts, medians of ${r.floor.length}): the mirror's wire alone between two processes (mutual TLS, protos/mirror.proto,\n`);
    out.write(`  ${ceiling.batchEntries}-write batches, ${ceiling.batchesInFlight} in flight; the secondary checks CRC32C, pwrites, acks each batch; no iSCSI, dirty map or policy):\n`);
    out.write(`  ${n0(ceiling.writesPerSecMedian)} writes/s, CPU per write: primary ${ceiling.primaryCpuUsPerWriteMedian.toFixed(1)} us, secondary ${ceiling.secondaryCpuUsPerWriteMedian.toFixed(1)} us.\n`);
    out.write(`  Highest mirrored/unmirrored for ${floorCaseId} on this machine: (unmirrored all ${ceiling.unmirroredAllCpuUsPerIo.toFixed(1)} + floor ${(ceiling.primaryCpuUsPerWriteMedian + ceiling.secondaryCpuUsPerWriteMedian).toFixed(1)}) us per write\n`);
    out.write(`  with all ${os.cpus().length} CPUs busy: ${n0(ceiling.ceilingIops)} IOPS, ${ceiling.ceilingRatio.toFixed(2)} of the unmirrored ${n0(ceiling.unmirroredIops)}`);
    const { unmirroredBusyPct: busy, ceilingIopsAtUnmirroredBusy: atBusy, ceilingRatioAtUnmirroredBusy: ratioAtBusy } = ceiling;
    if (busy !== undefined && atBusy !== undefined && ratioAtBusy !== undefined) {
      out.write(`; with the machine as busy as in the unmirrored run (${busy.toFixed(0)}%): ${n0(atBusy)} IOPS, ${ratioAtBusy.toFixed(2)}`);
    }
    out.write('.\n');
  }
  const mirrorTrouble = r.runs.flatMap((x) => x.mirrorTrouble);
  if (mirrorTrouble.length > 0) {
    out.write('WARNING: the mirror left sync mode during the timed runs; the mirrored rows do not measure sync mirroring:\n');
    for (const t of mirrorTrouble) out.write(`  ${t}\n`);
  }
  // RFC 7143 §13: lengths negotiate to the minimum, InitialR2T by OR, ImmediateData by AND; both
  // targets declare the same values, so the client ends up with the same parameters on both.
  const tgtParams = r.runs.find((x) => x.tgt !== undefined)?.tgt;
  const ourLogin = r.runs.find((x) => x.ourLogin !== undefined)?.ourLogin;
  if (tgtParams !== undefined) out.write(`tgt declares (tgtadm; tgt 1.0.85 shows no per-session values): ${negotiatedKeys.filter((k) => k in tgtParams).map((k) => `${k}=${tgtParams[k]}`).join(' ')}\n`);
  if (ourLogin !== undefined) out.write(`ours negotiated with qemu-img (agent log): ${Object.entries(ourLogin).filter(([k]) => !['initiator', 'target', 'tsih', 'type'].includes(k)).map(([k, v]) => `${k}=${String(v)}`).join(' ')}\n`);
  const resultsDir = path.join(installRoot, 'bench-results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  const json = {
    when: new Date().toISOString(),
    machine: { cpus: os.cpus().length, kernel: os.release(), node: process.version },
    options: r.opts,
    rows,
    samples: Object.fromEntries(r.samples),
    comparisons: r.runs,
    mirrorTrouble,
    mirrorFloor: ceiling === undefined ? undefined : { runs: r.floor, ...ceiling },
    negotiated: { ours: ourLogin },
    tgtTargetParams: tgtParams,
    durability,
  };
  fs.writeFileSync(file, JSON.stringify(json, null, 2) + '\n');
  out.write(`results: ${path.relative(process.cwd(), file)}\n`);
  return { file, json };
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
