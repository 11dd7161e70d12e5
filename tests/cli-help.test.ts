// Every metroctl command answers --help with a usage and examples (issue: "every command has
// `--help` with examples"): the command tree is read from metroctl's own help, so a new command
// without examples fails here.
import test from 'ava';
import { metroctlBin } from './harness/cluster.ts';
import { run } from './harness/tools.ts';

async function help(words: string[]): Promise<string> {
  const r = await run(process.execPath, [metroctlBin, ...words, '--help'], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`metroctl ${words.join(' ')} --help: exit ${r.code}\n${r.stderr}`);
  return r.stdout;
}

/** The sub-commands a help text lists under "Commands:" (help itself excluded). */
function subcommands(text: string): string[] {
  const after = text.split(/^Commands:$/m)[1];
  if (!after) return [];
  const section = after.split(/\n\s*\n/)[0]; // up to the first blank line (examples may follow)
  return section.split('\n').map((l) => /^ {2}(\S+)/.exec(l)?.[1]).filter((w): w is string => w !== undefined && w !== 'help' && !w.startsWith('['));
}

test('every metroctl command has --help with a usage line and examples', async (t) => {
  const leaves: string[][] = [];
  const walk = async (words: string[]): Promise<void> => {
    const text = await help(words);
    const subs = subcommands(text);
    if (subs.length === 0) {
      leaves.push(words);
      t.regex(text, /^Usage: metroctl /m, words.join(' '));
      t.regex(text, /^Examples:\n {2}metroctl /m, `metroctl ${words.join(' ')} --help has no examples`);
      return;
    }
    for (const s of subs) await walk([...words, s]);
  };
  await walk([]);
  t.true(leaves.length >= 20, `${leaves.length} commands found: ${leaves.map((l) => l.join(' ')).join(', ')}`);
  t.log(`${leaves.length} commands: ${leaves.map((l) => l.join(' ')).join(', ')}`);
});
