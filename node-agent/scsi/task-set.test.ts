import test from 'ava';
import { TaskSet } from './task-set.ts';

/** A task that records when it starts and finishes only when released. */
function gate(log: string[], name: string) {
  let release!: () => void;
  const done = new Promise<void>((r) => (release = r));
  return {
    release,
    task: async () => {
      log.push(`start ${name}`);
      await done;
      log.push(`end ${name}`);
      return name;
    },
  };
}

const settle = () => new Promise((r) => setImmediate(r));

test('SIMPLE tasks run in parallel', async (t) => {
  const log: string[] = [];
  const set = new TaskSet();
  const a = gate(log, 'a');
  const b = gate(log, 'b');
  const pa = set.run('simple', a.task);
  const pb = set.run('simple', b.task);
  await settle();
  t.deepEqual(log, ['start a', 'start b']);
  b.release();
  a.release();
  t.deepEqual(await Promise.all([pa, pb]), ['a', 'b']);
});

test('ORDERED waits for earlier tasks and holds back later SIMPLE ones', async (t) => {
  const log: string[] = [];
  const set = new TaskSet();
  const a = gate(log, 'a');
  const o = gate(log, 'o');
  const c = gate(log, 'c');
  const all = [set.run('simple', a.task), set.run('ordered', o.task), set.run('simple', c.task)];
  await settle();
  t.deepEqual(log, ['start a']);
  a.release();
  await settle();
  t.deepEqual(log, ['start a', 'end a', 'start o']);
  o.release();
  await settle();
  t.deepEqual(log, ['start a', 'end a', 'start o', 'end o', 'start c']);
  c.release();
  await Promise.all(all);
});

test('HEAD OF QUEUE starts at once even behind an ORDERED task', async (t) => {
  const log: string[] = [];
  const set = new TaskSet();
  const a = gate(log, 'a');
  const o = gate(log, 'o');
  const h = gate(log, 'h');
  const all = [set.run('simple', a.task), set.run('ordered', o.task), set.run('head-of-queue', h.task)];
  await settle();
  t.deepEqual(log, ['start a', 'start h']);
  h.release();
  a.release();
  await settle();
  t.true(log.indexOf('start o') > log.indexOf('end h'), 'ordered waits for the head-of-queue task too');
  o.release();
  await Promise.all(all);
});

test('two ORDERED tasks run one after the other, SIMPLE ones between them wait', async (t) => {
  const log: string[] = [];
  const set = new TaskSet();
  const o1 = gate(log, 'o1');
  const s = gate(log, 's');
  const o2 = gate(log, 'o2');
  const all = [set.run('ordered', o1.task), set.run('simple', s.task), set.run('ordered', o2.task)];
  await settle();
  t.deepEqual(log, ['start o1']);
  o1.release();
  await settle();
  t.deepEqual(log, ['start o1', 'end o1', 'start s']);
  s.release();
  await settle();
  t.deepEqual(log.slice(-1), ['start o2']);
  o2.release();
  await Promise.all(all);
});

test('a failing task does not block the set, and drain waits only for tasks in flight', async (t) => {
  const log: string[] = [];
  const set = new TaskSet();
  await t.throwsAsync(set.run('ordered', async () => Promise.reject(new Error('boom'))));
  const a = gate(log, 'a');
  const pa = set.run('simple', a.task);
  let drained = false;
  const d = set.drain().then(() => (drained = true));
  await settle();
  t.false(drained);
  const later = gate(log, 'later');
  const pl = set.run('simple', later.task);
  a.release();
  await d;
  t.true(drained);
  t.deepEqual(log, ['start a', 'start later', 'end a']);
  later.release();
  await Promise.all([pa, pl]);
  t.is(set.size, 0);
});
