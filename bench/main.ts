// `npm run bench`: our agent against tgt, same client (qemu-img bench over iscsi://), same volume
// size on the same filesystem, alternating targets, each case repeated; prints medians and the
// ratio ours/tgt per case with CPU and peak RSS, and saves the run as JSON in bench-results/.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import Table from 'cli-table3';
import { repoRoot, startAgent, type AgentTarget } from './agent-target.ts';
import { checkPrerequisites } from './prerequisites.ts';
import { cpuMs, peakRssBytes, threadCount } from './proc-stats.ts';
import { benchCases, benchArgs, figureOf, ratioOf, runQemuBench, spreadStepBytes, type BenchCase } from './qemu-bench.ts';
import { startTgt, type TgtTarget } from './tgt-target.ts';

type TargetName = 'tgt' | 'ours';

interface Options {
  repeat: number;
  quick: boolean;
  only?: TargetName;
  cases?: string[];
  threads?: number;
  cpuProf?: string;
  sizeMib: number;
}

interface Sample {
  readonly target: TargetName;
  readonly repeat: number;
  readonly seconds: number;
  readonly count: number;
  readonly figure: number;
  readonly cpuMs: number;
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
  const ids = benchCases.map((c) => c.id);
  const program = new Command('bench')
    .description('benchmark metro-agent against tgt with qemu-img bench (ratios, never absolute claims)')
    .option('--repeat <n>', 'runs of each case per target', positiveInt, 5)
    .option('--quick', 'short run: fewer requests per case and 3 repeats unless --repeat is given', false)
    .option('--only <target>', 'benchmark one target only (profiling): tgt or ours')
    .option('--cases <ids>', `comma-separated subset of: ${ids.join(', ')}`, (v) => v.split(','))
    .option('--threads <n>', "UV_THREADPOOL_SIZE for the agent (default: the agent's own)", positiveInt)
    .option('--cpu-prof <dir>', 'write a V8 CPU profile of the agent into <dir>')
    .option('--size-mib <n>', 'volume size in MiB (sparse files)', positiveInt, 1024)
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
  program.parse();
  const o = program.opts<Options>();
  const repeatGiven = program.getOptionValueSource('repeat') === 'cli';
  if (o.quick && !repeatGiven) o.repeat = 3;
  if (o.only !== undefined && o.only !== 'tgt' && o.only !== 'ours') program.error('--only takes tgt or ours');
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
  const aborter = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`\n${sig}: stopping the targets and removing temporary files...\n`);
    aborter.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const cases = benchCases.filter((c) => opts.cases === undefined || opts.cases.includes(c.id));
  const targets: TargetName[] = opts.only !== undefined ? [opts.only] : ['tgt', 'ours'];
  const volumeBytes = opts.sizeMib * 1024 ** 2;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'metro-bench-'));
  const octet = 100 + (process.pid % 150);
  const host = (n: number): string => `127.0.${octet}.${n}`;
  let agent: AgentTarget | undefined;
  let tgt: TgtTarget | undefined;
  try {
    // Mirroring off: tgt has none, and the peer site is not started; this measures the target itself.
    const env: Record<string, string> = { METRO_MIRROR: '0' };
    if (opts.threads !== undefined) env.UV_THREADPOOL_SIZE = String(opts.threads);
    const nodeArgs: string[] = [];
    if (opts.cpuProf !== undefined) {
      fs.mkdirSync(opts.cpuProf, { recursive: true });
      nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${path.resolve(opts.cpuProf)}`);
    }
    if (targets.includes('ours')) {
      agent = await startAgent({ hosts: [host(2), host(3), host(4)], dir: path.join(dir, 'agent'), volumeBytes, env, nodeArgs });
    }
    if (targets.includes('tgt')) {
      const volumeFile = path.join(dir, 'tgt.vol');
      fs.writeFileSync(volumeFile, '');
      fs.truncateSync(volumeFile, volumeBytes);
      tgt = await startTgt({ address: host(1), volumeFile, dir, params: sharedParams });
    }
    const urls: Record<TargetName, string> = { tgt: tgt?.url ?? '', ours: agent?.url ?? '' };
    const pids: Record<TargetName, number> = { tgt: tgt?.pid ?? 0, ours: agent?.pid ?? 0 };
    process.stdout.write(`volumes: ${opts.sizeMib} MiB sparse files in ${dir}\n`);
    for (const t of targets) process.stdout.write(`${t.padEnd(4)}: ${urls[t]} (pid ${pids[t]})\n`);

    // Warm-up, not counted: one short pass of every case on each target, so the agent's JIT has
    // compiled its data path and both volume files have their blocks allocated before timing.
    process.stdout.write('warm-up pass (not counted)...\n');
    for (const c of cases) {
      for (const t of targets) {
        if (aborter.signal.aborted) throw new Error('interrupted');
        await runQemuBench(c, c.quickCount, urls[t], aborter.signal);
      }
    }
    const samples = new Map<string, Sample[]>(cases.map((c) => [c.id, []]));
    const startCpu = Object.fromEntries(targets.map((t) => [t, cpuMs(pids[t]) ?? 0])) as Record<TargetName, number>;
    const started = performance.now();
    for (let r = 0; r < opts.repeat; r++) {
      for (const c of cases) {
        // Alternate which target goes first, so neither always runs on a warmer (or busier) machine.
        const order = r % 2 === 0 ? targets : [...targets].reverse();
        for (const t of order) {
          if (aborter.signal.aborted) throw new Error('interrupted');
          const count = opts.quick ? c.quickCount : c.count;
          const before = cpuMs(pids[t]) ?? 0;
          const run = await runQemuBench(c, count, urls[t], aborter.signal);
          const used = (cpuMs(pids[t]) ?? 0) - before;
          const figure = figureOf(c, run);
          samples.get(c.id)!.push({ target: t, repeat: r, seconds: run.seconds, count: run.count, figure, cpuMs: used });
          process.stdout.write(`  [${r + 1}/${opts.repeat}] ${c.id.padEnd(18)} ${t.padEnd(4)} ${fmt(figure, c.unit).padStart(8)} ${c.unit}  (${run.seconds.toFixed(3)} s, CPU ${used.toFixed(0)} ms)\n`);
        }
      }
    }
    const elapsedS = (performance.now() - started) / 1000;
    const totals = Object.fromEntries(
      targets.map((t) => [t, { cpuMs: (cpuMs(pids[t]) ?? 0) - startCpu[t], peakRssBytes: peakRssBytes(pids[t]), threads: threadCount(pids[t]) }]),
    ) as Record<TargetName, { cpuMs: number; peakRssBytes?: number; threads?: number }>;
    const ourLogin = agent?.lastLogin();
    report({ opts, cases, targets, samples, totals, elapsedS, tgt, ourLogin });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await Promise.allSettled([agent?.stop(), tgt?.stop()]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface ReportInput {
  opts: Options;
  cases: readonly BenchCase[];
  targets: TargetName[];
  samples: Map<string, Sample[]>;
  totals: Record<TargetName, { cpuMs: number; peakRssBytes?: number; threads?: number }>;
  elapsedS: number;
  tgt?: TgtTarget;
  ourLogin?: Record<string, unknown>;
}

function report(r: ReportInput): void {
  const both = r.targets.length === 2;
  const table = new Table({
    head: ['case', 'unit', 'tgt', 'ours', 'ours/tgt', 'tgt CPU ms/run', 'ours CPU ms/run'],
    colAligns: ['left', 'left', 'right', 'right', 'right', 'right', 'right'],
    style: { head: [], border: [] },
  });
  const rows: Array<Record<string, unknown>> = [];
  for (const c of r.cases) {
    const s = r.samples.get(c.id)!;
    const med = (t: TargetName, f: (x: Sample) => number): number | undefined => {
      const xs = s.filter((x) => x.target === t).map(f);
      return xs.length > 0 ? median(xs) : undefined;
    };
    const tgtFig = med('tgt', (x) => x.figure);
    const ourFig = med('ours', (x) => x.figure);
    const ratio = tgtFig !== undefined && ourFig !== undefined ? ratioOf(c, ourFig, tgtFig) : undefined;
    const tgtCpu = med('tgt', (x) => x.cpuMs);
    const ourCpu = med('ours', (x) => x.cpuMs);
    table.push([c.label, c.unit, fmt(tgtFig, c.unit), fmt(ourFig, c.unit), ratio === undefined ? '-' : ratio.toFixed(2), fmt(tgtCpu, ''), fmt(ourCpu, '')]);
    rows.push({ id: c.id, label: c.label, unit: c.unit, count: s[0]?.count, args: benchArgs(c, s[0]?.count ?? c.count, '<url>'), tgtMedian: tgtFig, oursMedian: ourFig, ratio, tgtCpuMsMedian: tgtCpu, oursCpuMsMedian: ourCpu });
  }
  const out = process.stdout;
  out.write(`\nmedians of ${r.opts.repeat} run(s) per case and target${r.opts.quick ? ' (--quick)' : ''}; ratio ours/tgt > 1 means we are faster (latency row: tgt's latency / ours)\n`);
  out.write(table.toString() + '\n');
  out.write(`4 KiB "spread" cases: qemu-img bench only steps sequentially; step -S ${spreadStepBytes} bytes (7919 x 4 KiB, coprime with the slot count), so offsets spread over the whole volume.\n`);
  for (const t of r.targets) {
    const x = r.totals[t];
    out.write(`${t === 'ours' ? 'ours (metro-agent)' : 'tgt  (tgtd)       '}: CPU user+sys ${(x.cpuMs / 1000).toFixed(1)} s over the ${r.elapsedS.toFixed(0)} s run, peak RSS (VmHWM) ${mib(x.peakRssBytes)}, threads ${x.threads ?? '-'}\n`);
  }
  for (const line of durability) out.write(line + '\n');
  // RFC 7143 §13: lengths negotiate to the minimum, InitialR2T by OR, ImmediateData by AND; both
  // targets declare the same values, so the client ends up with the same parameters on both.
  if (r.tgt !== undefined) out.write(`tgt declares (tgtadm; tgt 1.0.85 shows no per-session values): ${negotiatedKeys.filter((k) => k in r.tgt!.params).map((k) => `${k}=${r.tgt!.params[k]}`).join(' ')}\n`);
  if (r.ourLogin !== undefined) out.write(`ours negotiated with qemu-img (agent log): ${Object.entries(r.ourLogin).filter(([k]) => !['initiator', 'target', 'tsih', 'type'].includes(k)).map(([k, v]) => `${k}=${String(v)}`).join(' ')}\n`);
  if (!both) out.write('one target only (--only): no ratios.\n');
  const resultsDir = path.join(repoRoot, 'bench-results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  const json = {
    when: new Date().toISOString(),
    machine: { cpus: os.cpus().length, kernel: os.release(), node: process.version },
    options: r.opts,
    rows,
    samples: Object.fromEntries(r.samples),
    totals: r.totals,
    elapsedS: r.elapsedS,
    negotiated: { ours: r.ourLogin },
    tgtTargetParams: r.tgt?.params,
    durability,
  };
  fs.writeFileSync(file, JSON.stringify(json, null, 2) + '\n');
  out.write(`results: ${path.relative(process.cwd(), file)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
