// Task management under load against a real agent (SAM-5 7, RFC 7143 §11.5): many WRITEs of
// distinct patterns outstanding, ABORT TASK and LUN RESET in the middle. What the host must see:
// an aborted command never answers, the TMF response comes, and every block reads back either
// its old or its new contents, never a mix.
import test from 'ava';
import { startCluster, type TestCluster } from './harness/cluster.ts';
import { TestSession, type ScsiResult } from './harness/initiator.ts';
import { prng } from '../common/prng.ts';

let cluster: TestCluster | undefined;
test.after.always(async () => { await cluster?.stop(); });

const blockBytes = 512;
const blocksPerWrite = 16;
const writes = 32;
const functionComplete = 0;
const taskDoesNotExist = 1;

function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

test.serial('ABORT TASK and LUN RESET among outstanding WRITEs: no answer after the abort, no torn block', async (t) => {
  cluster = await startCluster();
  const c = cluster;
  const [host, port] = c.portal(1).split(':');
  const s = await TestSession.open({ host, port: Number(port), initiatorName: 'iqn.2026-11.org.example:aborter', targetName: c.iqn('db') });
  const tur = Buffer.alloc(16);
  for (let i = 0; i < 4 && (await s.command(0, tur)).status !== 0; i++);
  const rand = prng(7);
  const oldData = Array.from({ length: writes }, () => randomBytes(rand, blocksPerWrite * blockBytes));
  const newData = Array.from({ length: writes }, () => randomBytes(rand, blocksPerWrite * blockBytes));
  const lba = (i: number) => i * blocksPerWrite;
  for (let i = 0; i < writes; i++) t.is((await s.write10(0, lba(i), oldData[i])).status, 0);

  // Every WRITE outstanding at once; each remembers when (and whether) it was answered.
  const answered: Array<{ result: ScsiResult } | undefined> = new Array(writes).fill(undefined);
  const refs = [];
  for (let i = 0; i < writes; i++) {
    refs.push(s.nextTask());
    s.write10(0, lba(i), newData[i]).then(
      (result) => { answered[i] = { result }; },
      () => undefined, // no answer within the initiator's timeout: the task was aborted
    );
  }
  const aborted = [writes / 2, writes / 2 + 3, writes - 1];
  const abortCodes: number[] = [];
  const abortsAnsweredAt: number[] = [];
  for (const i of aborted) {
    abortCodes.push(await s.taskManagement(1, 0, refs[i]));
    abortsAnsweredAt.push(s.lastTmfArrival);
  }
  const reset = await s.taskManagement(5, 0);
  const resetAnsweredAt = s.lastTmfArrival;
  t.is(reset, functionComplete, 'LUN RESET: function complete');
  await new Promise((r) => setTimeout(r, 2_000));
  // Answered before the reset response arrived (receive order on the connection, not callback time).
  const unansweredAtReset = answered.map((a) => a === undefined || a.result.arrival > resetAnsweredAt);

  aborted.forEach((i, k) => {
    if (abortCodes[k] === functionComplete) t.is(answered[i], undefined, `write ${i}: aborted, never answered`);
    else {
      t.is(abortCodes[k], taskDoesNotExist, `write ${i}: ABORT TASK either completes or finds no task`);
      t.true(answered[i] !== undefined && answered[i]!.result.arrival < abortsAnsweredAt[k], `write ${i}: finished before its abort was answered`);
    }
  });
  for (let i = 0; i < writes; i++) {
    if (unansweredAtReset[i]) t.is(answered[i], undefined, `write ${i}: unanswered at the LUN RESET, never answered after`);
    else t.true(answered[i]!.result.arrival < resetAnsweredAt && answered[i]!.result.status === 0, `write ${i}: GOOD before the reset`);
  }
  t.log(`${answered.filter(Boolean).length} of ${writes} writes completed; ABORT TASK codes ${abortCodes.join(',')}`);

  // The LUN RESET unit attention first, then every block is old or new, never a mix; a write
  // answered GOOD is new throughout.
  for (let i = 0; i < 4 && (await s.command(0, tur)).status !== 0; i++);
  for (let i = 0; i < writes; i++) {
    const r = await s.read10(0, lba(i), blocksPerWrite);
    t.is(r.status, 0);
    for (let b = 0; b < blocksPerWrite; b++) {
      const got = r.data.subarray(b * blockBytes, (b + 1) * blockBytes);
      const isOld = got.equals(oldData[i].subarray(b * blockBytes, (b + 1) * blockBytes));
      const isNew = got.equals(newData[i].subarray(b * blockBytes, (b + 1) * blockBytes));
      t.true(isOld || isNew, `write ${i} block ${b}: old or new contents`);
      if (answered[i]) t.true(isNew, `write ${i} block ${b}: answered GOOD, so new`);
    }
  }
  s.destroy();
});
