// Structured logs for the daemons: JSON lines to a file (for machines), readable lines to a TTY
// (for people). Secrets never reach a logger: callers pass names and paths, never their contents.
import fs from 'node:fs';
import path from 'node:path';
import winston from 'winston';

export interface Logger {
  error(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  debug(message: string, meta?: Record<string, unknown>): void;
  child(meta: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  /** Component name shown on every line, e.g. `agent/alpha`. */
  component: string;
  /** JSON log file; its folder is created. Absent: no file. */
  file?: string;
  /** Readable lines on stderr: defaults to whether stderr is a TTY. */
  console?: boolean;
  level?: string;
}

export function createLogger(opts: LoggerOptions): Logger {
  const transports: winston.transport[] = [];
  if (opts.file) {
    fs.mkdirSync(path.dirname(opts.file), { recursive: true });
    transports.push(new winston.transports.File({
      filename: opts.file,
      format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    }));
  }
  const toConsole = opts.console ?? (process.stderr.isTTY === true);
  if (toConsole) {
    transports.push(new winston.transports.Console({
      stderrLevels: ['error', 'warn', 'info', 'debug'],
      format: winston.format.combine(
        winston.format.timestamp({ format: 'HH:mm:ss.SSS' }),
        winston.format.colorize({ level: process.stderr.isTTY === true }),
        winston.format.printf(({ timestamp, level, message, component, ...rest }) => {
          const extra = Object.keys(rest).length ? ' ' + JSON.stringify(rest) : '';
          return `${timestamp} ${level} [${component}] ${message}${extra}`;
        }),
      ),
    }));
  }
  if (transports.length === 0) transports.push(new winston.transports.Console({ silent: true }));
  return winston.createLogger({
    level: opts.level ?? process.env.METRO_LOG_LEVEL ?? 'info',
    defaultMeta: { component: opts.component },
    transports,
  }) as unknown as Logger;
}
