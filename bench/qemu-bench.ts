// The benchmark cases and the one client that drives both targets: `qemu-img bench` on an iscsi://
// URL. qemu-img bench only steps through the image sequentially, so the 4 KiB "random" cases use a
// large step that is coprime with the number of 4 KiB slots: offset i = i * step mod (size - 4 KiB).
import { spawn } from 'node:child_process';
import { machineBusyPct, machineCpu, reapedChildrenCpuMs } from './proc-stats.ts';

export interface BenchCase {
  readonly id: string;
  readonly label: string;
  readonly write: boolean;
  readonly requestBytes: number;
  readonly depth: number;
  readonly count: number;
  readonly quickCount: number;
  readonly stepBytes: number;
  /** How the row shows a result: operations per second, MiB/s, or mean latency. */
  readonly unit: 'IOPS' | 'MiB/s' | 'us/op';
}

const KiB = 1024;
const MiB = 1024 * KiB;
/** 7919 is prime, so the step visits every 4 KiB slot of the volume before repeating one. */
export const spreadStepBytes = 7919 * 4 * KiB;

export const benchCases: readonly BenchCase[] = [
  { id: 'randwrite-4k-qd32', label: '4 KiB spread writes, QD32', write: true, requestBytes: 4 * KiB, depth: 32, count: 40_000, quickCount: 10_000, stepBytes: spreadStepBytes, unit: 'IOPS' },
  { id: 'randread-4k-qd32', label: '4 KiB spread reads, QD32', write: false, requestBytes: 4 * KiB, depth: 32, count: 40_000, quickCount: 10_000, stepBytes: spreadStepBytes, unit: 'IOPS' },
  { id: 'write-4k-qd1', label: '4 KiB writes, QD1 (latency)', write: true, requestBytes: 4 * KiB, depth: 1, count: 5_000, quickCount: 1_500, stepBytes: spreadStepBytes, unit: 'us/op' },
  { id: 'seqwrite-1m-qd8', label: '1 MiB sequential writes, QD8', write: true, requestBytes: MiB, depth: 8, count: 1_024, quickCount: 256, stepBytes: MiB, unit: 'MiB/s' },
  { id: 'seqread-1m-qd8', label: '1 MiB sequential reads, QD8', write: false, requestBytes: MiB, depth: 8, count: 1_024, quickCount: 256, stepBytes: MiB, unit: 'MiB/s' },
];

/** The mirror comparison: the same 4 KiB writes on the group mirrored in sync mode and unmirrored. */
export const mirrorCases: readonly BenchCase[] = [
  { ...caseOf('randwrite-4k-qd32'), id: 'mirror-randwrite-4k-qd32' },
  { ...caseOf('write-4k-qd1'), id: 'mirror-write-4k-qd1' },
];

function caseOf(id: string): BenchCase {
  const c = benchCases.find((x) => x.id === id);
  if (c === undefined) throw new Error(`no bench case ${id}`);
  return c;
}

export interface BenchRun {
  readonly seconds: number;
  readonly count: number;
  /** The client's (qemu-img's) user + system CPU time over the run. */
  readonly clientCpuMs: number;
  /** Share (0-100) of all the machine's CPU time that some task used during the run (/proc/stat). */
  readonly machineBusyPct: number | undefined;
}

export class BenchRunError extends Error {
  override name = 'BenchRunError';
}

const runTimeoutMs = 300_000;

/** The arguments of one qemu-img bench run (cache=none: no host page cache in the client, writeback
 *  towards the target; qemu-img reports the time before it closes the image and flushes). */
export function benchArgs(c: BenchCase, count: number, url: string): string[] {
  const args = ['bench', '-f', 'raw', '-t', 'none', '-c', String(count), '-d', String(c.depth), '-s', String(c.requestBytes), '-S', String(c.stepBytes)];
  if (c.write) args.push('-w', '--pattern=165');
  args.push(url);
  return args;
}

/** Runs qemu-img bench once; the aborting signal ends it (Ctrl-C). Its CPU time is read as this
 *  process's reaped children's: no other child of the bench exits while it runs. */
export function runQemuBench(c: BenchCase, count: number, url: string, signal: AbortSignal): Promise<BenchRun> {
  return new Promise((resolve, reject) => {
    const cpuBefore = reapedChildrenCpuMs();
    const machineBefore = machineCpu();
    const child = spawn('qemu-img', benchArgs(c, count, url), { stdio: ['ignore', 'pipe', 'pipe'], signal, timeout: runTimeoutMs });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('error', (err) => reject(new BenchRunError(`qemu-img bench ${c.id} on ${url}: ${err.message}`, { cause: err })));
    child.on('close', (code, sig) => {
      const m = out.match(/Run completed in ([\d.]+) seconds/);
      if (code !== 0 || !m) {
        reject(new BenchRunError(`qemu-img bench ${c.id} on ${url} failed (exit ${code ?? sig}):\n${out.trim()}`));
        return;
      }
      resolve({ seconds: Number(m[1]), count, clientCpuMs: reapedChildrenCpuMs() - cpuBefore, machineBusyPct: machineBusyPct(machineBefore, machineCpu()) });
    });
  });
}

/** The row's figure for one run: IOPS, MiB/s or microseconds per operation. */
export function figureOf(c: BenchCase, run: BenchRun): number {
  if (c.unit === 'IOPS') return run.count / run.seconds;
  if (c.unit === 'MiB/s') return (run.count * c.requestBytes) / MiB / run.seconds;
  return (run.seconds * 1e6) / run.count;
}

/** subject/reference as a throughput ratio: above 1 means the subject is faster (for latency: the
 *  reference's latency over the subject's). */
export function ratioOf(c: BenchCase, subject: number, reference: number): number {
  return c.unit === 'us/op' ? reference / subject : subject / reference;
}
