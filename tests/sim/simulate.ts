// One seeded run of the arbitration simulator: a safety phase (random partitions, one-way cuts,
// loss, delay and reordering, crashes and restarts, drifting clocks, switchovers, forced failovers,
// client writes; World checks the invariants after every event), then a liveness phase (everything
// healed and restarted: each group must have exactly one serving primary within the bound).
import { World, SITES, WITNESS, type NodeId, type SiteId, type WorldOptions, type WorldStats } from './world.ts';
import type { RoleTiming } from '../../node-agent/role/role-machine.ts';

export const simTiming: RoleTiming = {
  driftMax: 0.01,
  safetyMarginMs: 10,
  peerLeaseMs: 1000,
  heartbeatMs: 200,
  leaseRenewMs: 300,
  witnessPollMs: 600,
  witnessRetryMs: 200,
  switchoverDrainMaxMs: 2000,
  forceFailoverMaxMs: 3000,
  witnessLeaseMs: 1000,
  forceWitnessWaitMs: 400,
};

export function worldOptions(seed: number, over: Partial<WorldOptions> = {}): WorldOptions {
  return {
    seed,
    cluster: 'sim',
    groups: [{ name: 'db', preferredSite: 'alpha' }, { name: 'vm', preferredSite: 'beta' }],
    leaseMs: 1000,
    maxDataLossMs: 0,
    timing: simTiming,
    tickMs: 100,
    drift: 'random',
    delayMs: [1, 20],
    stallMs: 300,
    writeTimeoutMs: 3000,
    resyncEveryMs: 200,
    ...over,
  };
}

export interface SimOptions {
  safetyMs: number;
  /** After healing, each group must have one serving primary by then. */
  livenessBoundMs: number;
}

export const defaultSimOptions: SimOptions = { safetyMs: 7000, livenessBoundMs: 6000 };

export interface SimResult {
  seed: number;
  ok: boolean;
  error?: string;
  trace?: string;
  stats: WorldStats;
  /** ms from healing until every group had one serving primary. */
  convergedAfterMs?: number;
}

export function simulate(seed: number, opts: SimOptions = defaultSimOptions): SimResult {
  const world = new World(worldOptions(seed));
  const r = world.rand;
  try {
    world.start();
    scheduleChaos(world, r, opts.safetyMs);
    scheduleWrites(world, r, opts.safetyMs + opts.livenessBoundMs);
    world.runUntil(opts.safetyMs);
    world.healAll();
    for (const n of [...SITES, WITNESS] as NodeId[]) world.restart(n);
    const healedAt = world.t;
    let convergedAt: number | null = null;
    // Step through the bound; once converged, it must stay so (no flapping) for a while.
    for (let t = healedAt + 250; t <= healedAt + opts.livenessBoundMs; t += 250) {
      world.runUntil(t);
      const c = world.converged();
      if (c.ok && convergedAt === null) convergedAt = t;
      if (!c.ok && convergedAt !== null) world.violation(`liveness: converged at ${convergedAt.toFixed(0)} then ${c.why}`);
      if (convergedAt !== null && t - convergedAt >= stableMs) break;
    }
    const c = world.converged();
    if (!c.ok) world.violation(`liveness: not converged ${opts.livenessBoundMs} ms after healing: ${c.why}`);
    return { seed, ok: true, stats: world.stats, convergedAfterMs: (convergedAt ?? world.t) - healedAt };
  } catch (e) {
    const err = e as Error;
    return { seed, ok: false, error: `${err.name}: ${err.message}`, trace: world.recentTrace(), stats: world.stats };
  }
}

/** How long a converged world is watched for flapping. */
const stableMs = 1500;

const pairs: readonly [NodeId, NodeId][] = [['alpha', 'beta'], ['alpha', WITNESS], ['beta', WITNESS]];

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)];
}

function scheduleChaos(world: World, r: () => number, untilT: number): void {
  let t = 200 + r() * 800;
  while (t < untilT) {
    world.schedule(t, () => chaos(world, r));
    t += 150 + r() * 1200;
  }
}

function chaos(world: World, r: () => number): void {
  const x = r();
  const [a, b] = pick(r, pairs);
  const groups = world.opts.groups;
  if (x < 0.28) {
    const oneWay = r() < 0.4;
    if (oneWay && r() < 0.5) world.partition(b, a, true);
    else world.partition(a, b, oneWay);
  } else if (x < 0.50) {
    world.heal(a, b);
  } else if (x < 0.54) {
    world.heal();
  } else if (x < 0.64) {
    const n = pick(r, [...SITES, WITNESS] as NodeId[]);
    if (world.isUp(n)) {
      world.crash(n);
      const back = world.t + 200 + r() * 3500;
      world.schedule(back, () => world.restart(n));
    }
  } else if (x < 0.74) {
    const lossy = r() < 0.5;
    const hi = 1 + r() * (r() < 0.1 ? 1500 : r() < 0.3 ? 400 : 40);
    world.note(`link ${a}-${b}: delay up to ${hi.toFixed(0)} ms, loss ${lossy ? 'up to 30%' : 'none'}`);
    for (const [f, to] of [[a, b], [b, a]] as const) world.setLink(f, to, { delayMs: [r() * hi * 0.5, hi], loss: lossy ? r() * 0.3 : 0 });
  } else if (x < 0.82) {
    const g = pick(r, groups).name;
    const site = SITES.find((s) => world.persistedRole(s, g)?.primary === s && world.isUp(s));
    if (site) world.operator(site, g, 'switchover');
  } else if (x < 0.86) {
    const g = pick(r, groups).name;
    const site = pick(r, SITES);
    world.operator(site, g, 'force-failover');
  } else if (x < 0.89) {
    disaster(world, r);
  }
}

/**
 * The admin's disaster: a group's primary and the witness are lost (crashed, or only cut off from
 * the other site, so that the declaration is wrong), and the admin forces the group to the other
 * site a little later. Whatever healed meanwhile heals as it comes.
 */
function disaster(world: World, r: () => number): void {
  const g = pick(r, world.opts.groups).name;
  const primary = SITES.find((s) => world.isUp(s) && world.persistedRole(s, g)?.primary === s);
  if (!primary) return;
  const other = primary === 'alpha' ? 'beta' : 'alpha';
  world.note(`disaster: ${primary} and the witness lost for ${g}`);
  if (r() < 0.6) world.crash(primary);
  else world.partition(primary, other);
  if (r() < 0.5) world.crash(WITNESS);
  else world.partition(other, WITNESS);
  for (const n of [primary, WITNESS] as NodeId[]) {
    if (!world.isUp(n)) world.schedule(world.t + 1500 + r() * 3500, () => world.restart(n));
  }
  world.schedule(world.t + 100 + r() * 1400, () => { world.operator(other, g, 'force-failover'); });
}

/** Clients write to whichever site claims to be the group's primary (either, if both do). */
function scheduleWrites(world: World, r: () => number, untilT: number): void {
  let t = 50 + r() * 50;
  while (t < untilT) {
    world.schedule(t, () => {
      const g = pick(r, world.opts.groups).name;
      const claimants: SiteId[] = SITES.filter((s) => world.isUp(s) && world.role(s, g)?.persisted.primary === s);
      if (claimants.length === 0) return;
      world.write(pick(r, claimants), g);
    });
    t += 20 + r() * 100;
  }
}

