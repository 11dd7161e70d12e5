// The arbitration simulator in CI: many short seeded runs (METRO_SIM_SEEDS, default 5000, from a
// random base printed at the start; METRO_SIM_SEED replays one run exactly). A failing seed prints
// itself, the broken invariant and the run's recent trace.
import test from 'ava';
import { seedFromEnv } from '../../common/prng.ts';
import { simulate } from './simulate.ts';

const replay = process.env.METRO_SIM_SEED;
const count = replay ? 1 : Number(process.env.METRO_SIM_SEEDS ?? 5000);
const base = replay ? Number(replay) >>> 0 : seedFromEnv('METRO_SIM_BASE');

test(`arbitration simulator: ${count} seeds from ${base}: no two primaries (but where an operator's forced failover made them), no acknowledged write lost, epochs only grow, one primary after healing`, (t) => {
  t.log(`seeds ${base}..${(base + count - 1) >>> 0} (replay one with METRO_SIM_SEED=<seed>)`);
  const started = performance.now();
  const failures: string[] = [];
  let failovers = 0;
  let forced = 0;
  let switchovers = 0;
  let acked = 0;
  let lost = 0;
  let withoutWitness = 0;
  let adopted = 0;
  let setAside = 0;
  let setAsideWrites = 0;
  let worstConvergeMs = 0;
  for (let i = 0; i < count; i++) {
    const seed = (base + i) >>> 0;
    const r = simulate(seed);
    failovers += r.stats.failovers;
    forced += r.stats.forcedFailovers;
    switchovers += r.stats.switchovers;
    acked += r.stats.writesAcked;
    lost += r.stats.forcedLossWrites;
    withoutWitness += r.stats.forcedWithoutWitness;
    adopted += r.stats.forcedAdoptions;
    setAside += r.stats.setAside;
    setAsideWrites += r.stats.setAsideWrites;
    worstConvergeMs = Math.max(worstConvergeMs, r.convergedAfterMs ?? 0);
    if (!r.ok) {
      failures.push(`METRO_SIM_SEED=${seed}: ${r.error}`);
      if (failures.length === 1) t.log(`first failing seed ${seed}: ${r.error}\n${r.trace}`);
      if (failures.length >= 5) break;
    }
  }
  t.log(`${count} seeds in ${Math.round(performance.now() - started)} ms: ${acked} writes acknowledged, ${failovers} automatic failovers, ${forced} forced (${lost} writes lost by them, accounted), ${switchovers} switchovers; ${withoutWitness} forced without the witness (${adopted} epochs adopted by it later; ${setAside} times an old primary wrongly declared lost went on serving, ${setAsideWrites} writes it acknowledged saved aside, accounted); slowest convergence after healing ${worstConvergeMs} ms`);
  t.deepEqual(failures, []);
  // A simulator that never fails over proves nothing.
  if (count >= 500) t.true(failovers > 0 && switchovers > 0 && forced > 0 && withoutWitness > 0 && adopted > 0);
});
