// RegionGate: writes are only counted while nobody locks; a lock waits for the writes inside its
// region and holds new ones off it (others pass); the first lock waits for writes counted before.
import test from 'ava';
import { RegionGate, type GatePass } from './region-gate.ts';

const tick = () => new Promise((r) => setImmediate(r));

async function settled<T>(p: Promise<T>): Promise<boolean> {
  let done = false;
  void p.then(() => { done = true; });
  await tick();
  await tick();
  return done;
}

test('without users the gate only counts; the first user waits for those writes', async (t) => {
  const g = new RegionGate();
  const a = g.enter(0, 0, 3) as GatePass;
  t.false(a.tracked);
  const use = g.use();
  t.false(await settled(use), 'a write from before the lock user is still inside');
  g.leave(a);
  t.true(await settled(use));
});

test('a lock waits for the writes inside its region and holds new ones off it only', async (t) => {
  const g = new RegionGate();
  await g.use();
  const inside = g.enter(0, 4, 6) as GatePass;
  t.true(inside.tracked);
  const lock = g.lock(0, 5);
  t.false(await settled(lock), 'the write in region 5 is not done');
  g.leave(inside);
  t.true(await settled(lock));

  const blocked = g.enter(0, 5, 5);
  t.true(blocked instanceof Promise, 'a write to the locked region waits');
  const otherRegion = g.enter(0, 6, 9);
  const otherVolume = g.enter(1, 5, 5);
  t.false(otherRegion instanceof Promise);
  t.false(otherVolume instanceof Promise);
  t.false(await settled(blocked as Promise<GatePass>));
  g.unlock(0, 5);
  const pass = await (blocked as Promise<GatePass>);
  t.deepEqual([pass.volume, pass.first, pass.last], [0, 5, 5]);

  // The admitted write now counts: a new lock waits for it.
  const again = g.lock(0, 5);
  t.false(await settled(again));
  g.leave(pass);
  t.true(await settled(again));
  g.unlock(0, 5);
  g.leave(otherRegion as GatePass);
  g.leave(otherVolume as GatePass);
  g.unuse();
});

test('a write spanning a locked region waits as a whole', async (t) => {
  const g = new RegionGate();
  await g.use();
  await g.lock(2, 10);
  const spanning = g.enter(2, 8, 12);
  t.true(spanning instanceof Promise);
  g.unlock(2, 10);
  const p = await (spanning as Promise<GatePass>);
  t.true(p.tracked);
  g.leave(p);
  g.unuse();
});
