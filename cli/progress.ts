// Progress of long operations (resync, verify, drills, runbook steps): a bar (cli-progress) when the
// output is a terminal, plain lines otherwise (logs and scripts), at most one per tenth of the way
// or every `plainEveryMs`, so a log does not fill with percentages.
import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, total: number, label?: string): void;
  note(line: string): void;
  stop(): void;
}

export const plainEveryMs = 2000;

export function createProgress(o: { title: string; stream?: NodeJS.WriteStream; tty?: boolean }): Progress {
  const stream = o.stream ?? process.stdout;
  const tty = o.tty ?? stream.isTTY === true;
  return tty ? barProgress(o.title, stream) : plainProgress(o.title, stream);
}

function barProgress(title: string, stream: NodeJS.WriteStream): Progress {
  const bar = new cliProgress.SingleBar({
    stream,
    format: `  ${title} [{bar}] {percentage}% {value}/{total} {label}`,
    hideCursor: true,
    clearOnComplete: false,
    etaBuffer: 20,
  }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    update(done, total, label = '') {
      if (!started) { bar.start(total, done, { label }); started = true; return; }
      bar.setTotal(total);
      bar.update(done, { label });
    },
    note(line) {
      if (started) { bar.stop(); started = false; }
      stream.write(`  ${line}\n`);
    },
    stop() { if (started) bar.stop(); started = false; },
  };
}

function plainProgress(title: string, stream: NodeJS.WriteStream): Progress {
  let lastTenth = -1;
  let lastAt = 0;
  return {
    update(done, total, label = '') {
      const tenth = total > 0 ? Math.floor((10 * done) / total) : 0;
      const now = performance.now();
      if (tenth === lastTenth && now - lastAt < plainEveryMs) return;
      lastTenth = tenth;
      lastAt = now;
      const pct = total > 0 ? Math.floor((100 * done) / total) : 0;
      stream.write(`  ${title}: ${pct}% (${done}/${total})${label ? ` ${label}` : ''}\n`);
    },
    note(line) { stream.write(`  ${line}\n`); },
    stop() { /* plain lines need no closing */ },
  };
}
