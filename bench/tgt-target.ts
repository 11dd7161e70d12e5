// The reference target: a private tgtd (Debian tgt) on a loopback portal with its own control port,
// so a tgtd the developer runs is never touched. One target, LUN 1 on a volume file (rdwr backing
// store: pwrite into the page cache, write-back; thin provisioning on, as ours), the session
// parameters set to match ours.
// stop() ends only the tgtd this module started, and removes its control socket files.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { tgtadmPath, tgtdPath } from './prerequisites.ts';

export interface TgtTarget {
  readonly pid: number;
  readonly url: string;
  readonly iqn: string;
  readonly controlPort: number;
  /** Target parameters as tgtadm shows them after configuration. */
  readonly params: Record<string, string>;
  /** What tgtd logged at start (backing store threads, etc.). */
  log(): string;
  stop(): Promise<void>;
}

export interface TgtOptions {
  readonly address: string;
  readonly volumeFile: string;
  readonly dir: string;
  /** Session parameters to set (tgtadm --op update --mode target), e.g. MaxBurstLength. */
  readonly params: Record<string, string>;
}

const controlDir = '/var/run/tgtd';
const readyTimeoutMs = 10_000;
const stopTimeoutMs = 5_000;

export class TgtError extends Error {
  override name = 'TgtError';
}

function tgtadm(controlPort: number, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(tgtadmPath, ['-C', String(controlPort), '--lld', 'iscsi', ...args], { encoding: 'utf8', timeout: 10_000 });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

function must(controlPort: number, args: string[]): string {
  const r = tgtadm(controlPort, args);
  if (!r.ok) throw new TgtError(`tgtadm ${args.join(' ')} failed: ${r.out.trim()}`);
  return r.out;
}

/** A control port no tgtd holds now: its socket lock file absent (stale files of a dead tgtd are reused). */
function freeControlPort(): number {
  for (let i = 0; i < 200; i++) {
    const port = 600 + ((process.pid + i) % 400);
    if (!fs.existsSync(path.join(controlDir, `socket.${port}`))) return port;
  }
  throw new TgtError(`no free tgtd control port in 600..999 (${controlDir} is full of sockets)`);
}

function parseParams(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = line.trim().match(/^([A-Za-z0-9_]+)=(.*)$/);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

export async function startTgt(opts: TgtOptions): Promise<TgtTarget> {
  const controlPort = freeControlPort();
  const iqn = 'iqn.2026-11.io.metrocluster.bench:tgt';
  const logFile = path.join(opts.dir, 'tgtd.log');
  const logFd = fs.openSync(logFile, 'a');
  const child: ChildProcess = spawn(tgtdPath, ['-f', '-C', String(controlPort), '--iscsi', `portal=${opts.address}:3260`], {
    stdio: ['ignore', logFd, logFd],
  });
  fs.closeSync(logFd);
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => { exited = true; resolve(); }));
  const stop = async (): Promise<void> => {
    if (!exited) {
      // tgtd ignores SIGINT and SIGTERM while it serves targets; the management call ends it.
      tgtadm(controlPort, ['--mode', 'target', '--op', 'delete', '--force', '--tid', '1']);
      spawnSync(tgtadmPath, ['-C', String(controlPort), '--op', 'delete', '--mode', 'system', '--force'], { timeout: 5_000 });
      const timer = setTimeout(() => child.kill('SIGKILL'), stopTimeoutMs);
      await exit;
      clearTimeout(timer);
    }
    for (const f of [`socket.${controlPort}`, `socket.${controlPort}.lock`]) fs.rmSync(path.join(controlDir, f), { force: true });
  };
  try {
    const deadline = performance.now() + readyTimeoutMs;
    while (!tgtadm(controlPort, ['--mode', 'target', '--op', 'show']).ok) {
      if (exited) throw new TgtError(`tgtd exited at start: ${fs.readFileSync(logFile, 'utf8').trim()}`);
      if (performance.now() > deadline) throw new TgtError(`tgtd did not answer on control port ${controlPort} within ${readyTimeoutMs} ms`);
      await sleep(100);
    }
    must(controlPort, ['--mode', 'target', '--op', 'new', '--tid', '1', '--targetname', iqn]);
    must(controlPort, ['--mode', 'logicalunit', '--op', 'new', '--tid', '1', '--lun', '1', '--backing-store', opts.volumeFile, '--bstype', 'rdwr']);
    // Thin provisioning (LBPME) as ours advertises it: qemu's iscsi driver then sends the same
    // command mix to both (GET LBA STATUS before reads of 32 KiB or more in regions it has not seen written).
    must(controlPort, ['--mode', 'logicalunit', '--op', 'update', '--tid', '1', '--lun', '1', '--params', 'thin_provisioning=1']);
    must(controlPort, ['--mode', 'target', '--op', 'bind', '--tid', '1', '--initiator-address', 'ALL']);
    for (const [name, value] of Object.entries(opts.params)) {
      must(controlPort, ['--mode', 'target', '--op', 'update', '--tid', '1', '--name', name, '--value', value]);
    }
    const params = parseParams(must(controlPort, ['--mode', 'target', '--op', 'show', '--tid', '1']));
    return {
      pid: child.pid!,
      url: `iscsi://${opts.address}:3260/${iqn}/1`,
      iqn,
      controlPort,
      params,
      log: () => fs.readFileSync(logFile, 'utf8'),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
