// CPU time and memory of a running process from /proc (Linux): user+system time from
// /proc/<pid>/stat, peak resident set (VmHWM) from /proc/<pid>/status; and the whole machine's busy
// CPU time from /proc/stat. Reads only; a process that is gone reads as undefined.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

let ticksPerSecond: number | undefined;

function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
function statFields(pid: number | 'self'): string[] | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** User + system CPU time the process has used so far, in milliseconds. */
export function cpuMs(pid: number): number | undefined {
  const f = statFields(pid);
  return f === undefined ? undefined : ((Number(f[11]) + Number(f[12])) * 1000) / clockTicksPerSecond();
}

/**
 * User + system CPU time of this process's children that have exited and been waited for
 * (cutime + cstime), in milliseconds: the difference across one client run that is the only child
 * to exit meanwhile is that client's CPU time.
 */
export function reapedChildrenCpuMs(): number {
  // Asked first: the first ask runs getconf, a child of its own.
  const ticks = clockTicksPerSecond();
  const f = statFields('self');
  return f === undefined ? 0 : ((Number(f[13]) + Number(f[14])) * 1000) / ticks;
}

/** Peak resident set size (VmHWM) in bytes. */
export function peakRssBytes(pid: number): number | undefined {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmHWM:\s+(\d+)\s+kB/m);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Threads of the process (the I/O pools show here). */
export function threadCount(pid: number): number | undefined {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).length;
  } catch {
    return undefined;
  }
}

/** The machine's CPU time so far, all CPUs together, in clock ticks (/proc/stat's first line). */
export interface MachineCpu {
  /** user, nice, system, irq and softirq: time some task or interrupt ran. */
  readonly busyTicks: number;
  /** The above plus idle, iowait and steal (time the hypervisor gave to others). */
  readonly totalTicks: number;
}

/** Parses /proc/stat's aggregate "cpu" line; undefined when it is not there (not Linux). */
export function parseMachineCpu(procStat: string): MachineCpu | undefined {
  const m = procStat.match(/^cpu\s+(.*)$/m);
  if (!m) return undefined;
  // guest and guest_nice (fields 9 and 10) are already counted in user and nice.
  // steal is missing on kernels before 2.6.11.
  const [user, nice, system, idle, iowait, irq, softirq, steal = 0] = m[1].trim().split(/\s+/).map(Number);
  if ([user, nice, system, idle, iowait, irq, softirq, steal].some((x) => !Number.isFinite(x))) return undefined;
  const busyTicks = user + nice + system + irq + softirq;
  return { busyTicks, totalTicks: busyTicks + idle + iowait + steal };
}

export function machineCpu(): MachineCpu | undefined {
  try {
    return parseMachineCpu(fs.readFileSync('/proc/stat', 'utf8'));
  } catch {
    return undefined;
  }
}

/** Share (0-100) of the machine's CPU time that was busy between two readings; undefined without both. */
export function machineBusyPct(before: MachineCpu | undefined, after: MachineCpu | undefined): number | undefined {
  if (before === undefined || after === undefined) return undefined;
  const total = after.totalTicks - before.totalTicks;
  return total > 0 ? (100 * (after.busyTicks - before.busyTicks)) / total : undefined;
}
