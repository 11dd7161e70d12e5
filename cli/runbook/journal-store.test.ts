// The runbook journal on disk: runs survive a reopen, the newest unfinished run of a runbook is
// found by its parameters, one metroctl holds the lock at a time and a dead holder's lock is taken.
import test from 'ava';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { JournalLocked, lockJournal, openJournal, unfinishedRun } from './journal-store.ts';
import { abandon, advance, newRun } from './engine.ts';

const by = { user: 'ops', host: 'console', identity: null, pid: 1 };
const steps = [{ id: 'a', title: 'A', check: 'c', action: 'a', verify: 'v', advice: 'x' }];

test('runs survive a reopen; the unfinished one is found by runbook and parameters', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'journal-'));
  try {
    const j = await openJournal(dir, 'demo');
    const failed = advance(newRun({ id: 'r1', runbook: 'site-loss', params: { site: 'alpha' }, cluster: 'demo', steps, at: 't0', by }),
      { type: 'result', at: 't1', step: 0, phase: 'check', outcome: 'refused', detail: 'alpha answers' });
    await j.save(failed);
    await j.save(newRun({ id: 'r2', runbook: 'site-loss', params: { site: 'beta' }, cluster: 'demo', steps, at: 't2', by }));
    const again = await openJournal(dir, 'demo');
    t.deepEqual(again.runs().map((r) => [r.id, r.state]), [['r1', 'failed'], ['r2', 'running']]);
    t.is(unfinishedRun(again.runs(), 'site-loss', { site: 'alpha' })?.id, 'r1');
    t.is(unfinishedRun(again.runs(), 'site-loss', { site: 'beta' })?.id, 'r2');
    t.is(unfinishedRun(again.runs(), 'failback', {}), undefined);
    await again.save(abandon(failed, { at: 't3', by }));
    t.is(unfinishedRun(again.runs(), 'site-loss', { site: 'alpha' }), undefined, 'an abandoned run is not resumable');
    t.is(JSON.parse(await fs.readFile(path.join(dir, 'demo.runbooks.json'), 'utf8')).runs.length, 2);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('one holder of the lock at a time; a lock left by a dead process is taken over', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'journal-'));
  try {
    const unlock = await lockJournal(dir);
    await t.throwsAsync(lockJournal(dir), { instanceOf: JournalLocked, message: new RegExp(`another metroctl \\(pid ${process.pid}\\)`) });
    await unlock();
    // A pid that cannot be alive: beyond the kernel's pid range.
    await fs.writeFile(path.join(dir, 'runbook.lock'), `${os.hostname()} 99999999`);
    const again = await lockJournal(dir);
    t.is(await fs.readFile(path.join(dir, 'runbook.lock'), 'utf8'), `${os.hostname()} ${process.pid}`);
    await again();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
