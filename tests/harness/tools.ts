// Real clients nobody here wrote (libiscsi's tools, qemu-img, qemu-io): finding them and running
// them with a deadline. In CI a missing tool fails the test; elsewhere the test is skipped loudly.
import { spawn, spawnSync } from 'node:child_process';
import type { ExecutionContext } from 'ava';

export function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/** Returns true when every tool is present. Otherwise: fails the test in CI, skips it loudly elsewhere. */
export function requireTools(t: ExecutionContext, names: string[]): boolean {
  const missing = names.filter((n) => !hasTool(n));
  if (missing.length === 0) return true;
  const msg = `missing ${missing.join(', ')}: run \`npm run test:setup\` as root (Debian packages libiscsi-bin, qemu-utils, qemu-block-extra)`;
  if (process.env.CI) {
    t.fail(msg);
  } else {
    process.stderr.write(`\n*** SKIPPED: ${t.title}: ${msg} ***\n\n`);
    t.pass(`skipped: ${msg}`);
  }
  return false;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
}

/** Runs a command to completion (or SIGKILL at the deadline) and collects its output. */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<RunResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, opts.timeoutMs ?? 60_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut, ms: performance.now() - started });
    });
    if (child.stdin) {
      // A tool that exits without reading its input must not turn into an EPIPE in the test.
      child.stdin.on('error', () => undefined);
      child.stdin.end(opts.input);
    }
  });
}

/** Whether qemu-io's output reports a failure. "Failed MODE_SENSE(6), LUN assumed writable" is not
 *  one: qemu prints it when its open-time probe meets a unit attention (an ALUA state change, for
 *  instance, which every nexus hears) and carries on with the LUN writable, as it is. */
export function qemuIoFailed(out: string): boolean {
  return /fail|error/i.test(out.replace(/^.*Failed MODE_SENSE\(6\), LUN assumed writable\s*$/gm, ''));
}
