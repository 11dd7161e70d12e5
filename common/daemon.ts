// What every metrocluster daemon does the same way: load its topology (exit 2 with every issue
// printed when it is invalid), tell a supervising `metroctl up` when it is ready, stop on signals.
import path from 'node:path';
import { loadTopology, formatIssue, type Topology } from './topology/index.ts';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** A refusal the daemon reports in one sentence and exits with its code; not a bug. */
export class DaemonError extends Error {
  override name = 'DaemonError';
  constructor(message: string, readonly exitCode: number = EXIT_FAILED, opts?: { cause?: unknown }) {
    super(message, opts);
  }
}

const loaded = new Map<string, Promise<Topology>>();

/** Loads a topology once per process (its warnings are printed once), or exits 2. */
export function loadTopologyOrExit(file: string): Promise<Topology> {
  const key = path.resolve(file);
  let p = loaded.get(key);
  if (!p) {
    p = loadOnce(file);
    loaded.set(key, p);
  }
  return p;
}

async function loadOnce(file: string): Promise<Topology> {
  const result = await loadTopology(file);
  for (const w of result.warnings) process.stderr.write(formatIssue(w) + '\n');
  if (!result.ok) {
    for (const e of result.errors) process.stderr.write(formatIssue(e) + '\n');
    throw new DaemonError(`topology ${file} is invalid (${result.errors.length} error(s))`, EXIT_USAGE);
  }
  return result.topology;
}

/** The message a daemon sends its supervisor over the IPC channel once it serves. */
export interface ReadyMessage {
  type: 'ready';
  role: 'agent' | 'witness';
  name: string;
  listen: Array<{ what: string; address: string; port: number }>;
}

export function announceReady(msg: ReadyMessage): void {
  if (process.send) process.send(msg);
}

/** Runs `stop` once on SIGINT or SIGTERM, then exits 0 (1 if stopping failed). */
export function onStopSignal(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (): void => {
    if (stopping) return;
    stopping = true;
    stop().then(
      () => process.exit(EXIT_OK),
      (err: unknown) => {
        process.stderr.write(`error while stopping: ${String(err)}\n`);
        process.exit(EXIT_FAILED);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  // A supervisor that dies takes its daemons with it rather than leaving orphans serving.
  process.on('disconnect', handler);
}

/** Top-level wrapper for a daemon's main: one clear sentence and the right exit code on failure. */
export async function runMain(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (err) {
    if (err instanceof DaemonError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(err.exitCode);
    }
    process.stderr.write(`fatal: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(EXIT_FAILED);
  }
}
