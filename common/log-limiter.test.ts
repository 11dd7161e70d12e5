// The log limiter: at most linesPerWindow lines per message text and window, then one line that
// counts what was suppressed; distinct texts are limited apart.
import test from 'ava';
import { LogLimiter } from './log-limiter.ts';

test('a flood of one refusal becomes a few lines and a count', (t) => {
  const lines: Array<[string, Record<string, unknown> | undefined]> = [];
  const log = { warn: (m: string, meta?: Record<string, unknown>) => lines.push([m, meta]), info: (m: string, meta?: Record<string, unknown>) => lines.push([m, meta]) };
  let now = 0;
  const limiter = new LogLimiter(log, { linesPerWindow: 3, windowMs: 1000, now: () => now });
  for (let i = 0; i < 100; i++) limiter.warn('iSCSI login refused', { i });
  limiter.warn('iSCSI login timed out');
  t.is(lines.filter(([m]) => m === 'iSCSI login refused').length, 3);
  t.is(lines.filter(([m]) => m === 'iSCSI login timed out').length, 1, 'another text has its own allowance');
  now = 1000;
  limiter.warn('iSCSI login refused', { i: 100 });
  t.deepEqual(lines.at(-2), ['similar log lines suppressed', { message: 'iSCSI login refused', suppressed: 97, windowMs: 1000 }]);
  t.deepEqual(lines.at(-1), ['iSCSI login refused', { i: 100 }]);
});
