import test from 'ava';
import { machineBusyPct, machineCpu, parseMachineCpu } from './proc-stats.ts';

test('parseMachineCpu: busy is user+nice+system+irq+softirq; total adds idle, iowait and steal; guest is not counted twice', (t) => {
  const text = 'cpu  100 5 40 300 20 3 7 25 60 0\ncpu0 50 2 20 150 10 1 3 12 30 0\nintr 1 2 3\n';
  t.deepEqual(parseMachineCpu(text), { busyTicks: 155, totalTicks: 500 });
  t.is(parseMachineCpu('intr 1 2\n'), undefined);
  t.is(parseMachineCpu('cpu  1 2 x 4\n'), undefined);
});

test('machineBusyPct: the busy share between two readings, undefined without time between them', (t) => {
  t.is(machineBusyPct({ busyTicks: 100, totalTicks: 400 }, { busyTicks: 175, totalTicks: 500 }), 75);
  t.is(machineBusyPct({ busyTicks: 100, totalTicks: 400 }, { busyTicks: 100, totalTicks: 400 }), undefined);
  t.is(machineBusyPct(undefined, { busyTicks: 1, totalTicks: 2 }), undefined);
});

test('machineCpu reads this machine: a busy loop between two readings shows as busy time', (t) => {
  const a = machineCpu();
  if (a === undefined) {
    t.pass('no /proc/stat on this system');
    return;
  }
  const until = performance.now() + 200;
  while (performance.now() < until) { /* spin: this CPU is busy */ }
  const b = machineCpu()!;
  t.true(b.totalTicks > a.totalTicks);
  t.true(b.busyTicks > a.busyTicks, `busy ticks did not grow during a 200 ms spin (${a.busyTicks} -> ${b.busyTicks})`);
  const pct = machineBusyPct(a, b)!;
  t.true(pct > 0 && pct <= 100, `busy share ${pct}`);
});
