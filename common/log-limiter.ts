// Refusal logging that an attacker cannot turn into a log flood: per message text, at most
// linesPerWindow lines per window; the rest are counted and reported in one line when the next
// window opens. Use it wherever a remote peer decides how often a line is written.
import type { Logger } from './log.ts';

export interface LogLimiterOptions {
  readonly linesPerWindow: number;
  readonly windowMs: number;
  /** Monotonic milliseconds (default performance.now). */
  readonly now?: () => number;
}

export const logLimiterDefaults: LogLimiterOptions = { linesPerWindow: 20, windowMs: 10_000 };

interface Window { startMs: number; lines: number; suppressed: number }

/** Distinct message texts remembered at once; callers use a fixed set of sentences. */
const messagesMax = 256;

export class LogLimiter {
  private readonly windows = new Map<string, Window>();
  private readonly now: () => number;

  constructor(private readonly log: Pick<Logger, 'warn' | 'info'>, private readonly opts: LogLimiterOptions = logLimiterDefaults) {
    this.now = opts.now ?? (() => performance.now());
  }

  warn(message: string, meta?: Record<string, unknown>): void {
    if (this.admit(message)) this.log.warn(message, meta);
  }

  info(message: string, meta?: Record<string, unknown>): void {
    if (this.admit(message)) this.log.info(message, meta);
  }

  private admit(message: string): boolean {
    const nowMs = this.now();
    let w = this.windows.get(message);
    if (w === undefined) {
      if (this.windows.size >= messagesMax) this.windows.clear();
      w = { startMs: nowMs, lines: 0, suppressed: 0 };
      this.windows.set(message, w);
    }
    if (nowMs - w.startMs >= this.opts.windowMs) {
      if (w.suppressed > 0) this.log.warn('similar log lines suppressed', { message, suppressed: w.suppressed, windowMs: this.opts.windowMs });
      w.startMs = nowMs;
      w.lines = 0;
      w.suppressed = 0;
    }
    if (w.lines < this.opts.linesPerWindow) {
      w.lines++;
      return true;
    }
    w.suppressed++;
    return false;
  }
}
