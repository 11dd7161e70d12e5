// `metroctl runbook` against a real cluster: a dry run lists every step and changes nothing (no
// journal, no daemon state); site-loss refuses when the site answers, and says why and what to do;
// a run killed (SIGKILL) while its step waits is found unfinished, refused without --resume, and
// completes when resumed; the journal says who ran it and what each step did.
import test from 'ava';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { startCluster, makeTopology, startUp, stopUp, metroctlBin, repoRoot, type TestCluster, type UpProcess } from './harness/cluster.ts';
import { run } from './harness/tools.ts';
import { removeClusterDir } from './harness/secrets.ts';

const metroctl = (args: string[], timeoutMs = 120_000) => run(process.execPath, [metroctlBin, ...args], { timeoutMs });

/** What a runbook could change: each group's epoch and primary at the witness, epoch and role at each agent. */
async function snapshot(c: TestCluster): Promise<object> {
  const read = async (f: string) => JSON.parse(await fs.readFile(path.join(c.dir, f), 'utf8'));
  const w = await read('data/witness/witness.json') as { records: Record<string, { epoch: number; primary: string }> };
  const agent = async (site: string) => {
    const m = await read(`data/${site}/agent-meta.json`) as { groups: Record<string, { epoch: number; role?: string; primary?: string }> };
    return Object.fromEntries(Object.entries(m.groups).map(([g, r]) => [g, [r.epoch, r.role ?? r.primary]]));
  };
  return {
    witness: Object.fromEntries(Object.entries(w.records).map(([k, r]) => [k, [r.epoch, r.primary]])),
    alpha: await agent('alpha'),
    beta: await agent('beta'),
  };
}

const exists = (p: string): Promise<boolean> => fs.access(p).then(() => true, () => false);

test('runbook run site-loss --dry-run lists every step and touches nothing', async (t) => {
  const c = await startCluster();
  try {
    const before = await snapshot(c);
    const statusBefore = await metroctl(['status', '-f', c.file, '-o', 'json']);
    const r = await metroctl(['runbook', 'run', 'site-loss', '--site', 'alpha', '-f', c.file, '--dry-run']);
    t.is(r.code, 0, r.stderr);
    const titles = [...r.stdout.matchAll(/^\s*(\d+)\. (.+?)(?:  \[asks for confirmation\])?$/gm)].map((m) => `${m[1]}. ${m[2]}`);
    t.deepEqual(titles, [
      '1. confirm site alpha is lost',
      '2. show the data-loss bound of every group',
      '3. fail group db over to beta',
      '4. fail group vm over to beta',
      '5. verify group db serves I/O at beta',
      '6. verify group vm serves I/O at beta',
      '7. tell the admin what hosts must do',
    ]);
    // Every step shows its check, action, verification and advice.
    for (const word of ['check:', 'action:', 'verify:', 'if it fails:']) t.is(r.stdout.match(new RegExp(`^ {6}${word} `, 'gm'))?.length, 7, word);
    t.regex(r.stdout, /metroctl failover --group db -f /);
    t.regex(r.stdout, /dry run: nothing was done/);
    t.false(await exists(path.join(c.dir, '.metroctl')), 'no journal folder was created');
    t.deepEqual(await snapshot(c), before, 'every epoch, primary and role unchanged at the witness and the agents');
    const statusAfter = await metroctl(['status', '-f', c.file, '-o', 'json']);
    const roles = (s: string) => (JSON.parse(s) as { sites: Array<{ groups: Array<{ name: string; role: string; epoch: string }> }> }).sites.map((x) => x.groups.map((g) => [g.name, g.role, g.epoch]));
    t.deepEqual(roles(statusAfter.stdout), roles(statusBefore.stdout), 'every group keeps its primary and epoch');

    const bad = await metroctl(['runbook', 'run', 'site-loss', '--site', 'gamma', '-f', c.file, '--dry-run']);
    t.is(bad.code, 2);
    t.regex(bad.stderr, /--site gamma: expected one of alpha, beta/);
  } finally {
    await c.stop();
  }
});

test('site-loss refuses while the site answers: it stops at the check, says why and what to do, and journals it', async (t) => {
  const c = await startCluster();
  try {
    const r = await metroctl(['runbook', 'run', 'site-loss', '--site', 'alpha', '-f', c.file, '--yes']);
    t.is(r.code, 1, r.stdout + r.stderr);
    t.regex(r.stdout, /\[1\/7\] confirm site alpha is lost\n\s+check: refused - site alpha answers from beta and witness and metroctl: this is not a site loss/);
    t.regex(r.stderr, /stopped at step 1\/7 \(confirm site alpha is lost\), check:/);
    t.regex(r.stderr, /what to do next: if alpha answers, it is not lost: use `metroctl runbook run planned-maintenance --site alpha`/);
    t.regex(r.stderr, /then continue: metroctl runbook run site-loss -f .* --site alpha --resume/);
    t.notRegex(r.stdout, /\[2\/7\]/, 'nothing after the refused step ran');

    const h = await metroctl(['runbook', 'history', '-f', c.file, '-o', 'json']);
    t.is(h.code, 0, h.stderr);
    const runs = JSON.parse(h.stdout) as Array<{ runbook: string; state: string; params: object; sessions: Array<{ by: { user: string; host: string } }>; entries: Array<{ phase: string; outcome: string; detail: string; at: string }> }>;
    t.is(runs.length, 1);
    t.like(runs[0], { runbook: 'site-loss', state: 'failed', params: { site: 'alpha' } });
    t.is(runs[0].sessions[0].by.user, os.userInfo().username);
    t.is(runs[0].sessions[0].by.host, os.hostname());
    t.is(runs[0].entries.length, 1);
    t.like(runs[0].entries[0], { phase: 'check', outcome: 'refused' });
    t.false(Number.isNaN(Date.parse(runs[0].entries[0].at)));
  } finally {
    await c.stop();
  }
});

function killWitness(up: UpProcess): Promise<void> {
  const pid = up.pidOf('witness');
  process.kill(pid, 'SIGKILL');
  return new Promise((resolve) => {
    const poll = setInterval(() => { try { process.kill(pid, 0); } catch { clearInterval(poll); resolve(); } }, 50);
  });
}

test('a runbook killed mid-run (SIGKILL) is found unfinished, refused without --resume, and completes when resumed', async (t) => {
  // metroctl up would restart a witness that dies: here it stays down until the admin starts one.
  const c = await makeTopology();
  const up = startUp(c.file, ['--no-restart']);
  let witness: ReturnType<typeof spawn> | undefined;
  try {
    await up.waitFor(/^ready$/m, 90_000);
    await killWitness(up);
    const child = spawn(process.execPath, [metroctlBin, 'runbook', 'run', 'witness-replacement', '-f', c.file, '--wait-max', '120000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    // Step 2 waits for the new witness: kill metroctl while it waits.
    const until = Date.now() + 60_000;
    while (!/start it now: metro-witness/.test(out) && Date.now() < until && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
    t.regex(out, /\[2\/4\] the new witness answers/, out);
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;

    const journal = path.join(c.dir, '.metroctl', `${c.name}.runbooks.json`);
    const saved = JSON.parse(await fs.readFile(journal, 'utf8')) as { runs: Array<{ state: string; cursor: { step: number; phase: string }; entries: Array<{ step: number; phase: string; outcome: string }> }> };
    t.is(saved.runs[0].state, 'running', 'the journal holds the run as it was when killed');
    t.deepEqual(saved.runs[0].cursor, { step: 1, phase: 'action' });
    t.like(saved.runs[0].entries.at(-1), { step: 1, phase: 'action', outcome: 'started' });

    const refused = await metroctl(['runbook', 'run', 'witness-replacement', '-f', c.file]);
    t.is(refused.code, 1);
    t.regex(refused.stderr, /is unfinished: interrupted at step 2\/4 \(the new witness answers at .*\) while its action was running; continue it with --resume/);

    // The admin brings the witness back (same dataDir: its records survive), then resumes.
    witness = spawn(process.execPath, [path.join(repoRoot, 'bin', 'metro-witness.js'), '-f', c.file], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      witness!.on('message', (m: { type?: string }) => { if (m?.type === 'ready') resolve(); });
      witness!.once('exit', (code) => reject(new Error(`witness exited with ${code}`)));
    });
    const resumed = await metroctl(['runbook', 'run', 'witness-replacement', '-f', c.file, '--resume']);
    t.is(resumed.code, 0, resumed.stdout + resumed.stderr);
    t.regex(resumed.stdout, /resuming run witness-replacement-\S+ of witness-replacement: interrupted at step 2\/4/);
    t.regex(resumed.stdout, /\[2\/4\] the new witness answers .*\n\s+check: done - a witness answers/);
    t.regex(resumed.stdout, /\[3\/4\] the witness's record of db matches the sites\n\s+check: done - epoch 1, primary alpha/);
    t.regex(resumed.stdout, /\[4\/4\] the witness's record of vm matches the sites\n\s+check: done - epoch 1, primary beta/);
    t.notRegex(resumed.stdout, /\[1\/4\]/, 'the steps done before the kill were not run again');

    const h = await metroctl(['runbook', 'history', '-f', c.file]);
    t.regex(h.stdout, /witness-replacement-\S+\s+witness-replacement\s+succeeded/);
    t.regex(h.stdout, /resumed \S+ by /);
  } finally {
    if (witness && witness.exitCode === null) witness.kill('SIGKILL');
    await stopUp(up);
    await removeClusterDir(c.dir);
  }
});
