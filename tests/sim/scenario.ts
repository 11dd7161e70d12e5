// A tiny language for arbitration stories, run on the simulated world with exact clocks and 1 ms
// links. One command a line; `#` starts a comment. A failing line throws with its number and the
// world's recent trace.
//   groups db@alpha vm@beta        (before anything else; default: db@alpha)
//   mirror stall 3000 resync 2000  (before anything else: the mirror model's stallMs, resyncEveryMs)
//   grace 4000                     (before anything else: the role machines' startGraceMs)
//   tick 2000                      partition alpha-beta | alpha->beta     heal [a-b]
//   delay witness->beta 2000       (every message on that link, or both ways with a-b, takes that long)
//   crash alpha | restart witness  switchover db [-> REFUSAL]              force db at beta [-> REFUSAL]
//   replace witness                (a new witness on an empty data folder)
//   write db at alpha [-> acked|pending|refused] [as w1]                   expect beta has w1 | has-all-acked db
//   expect beta [db] primary|secondary [epoch 2] [forced-without-witness|on-leases]
//   expect alpha [db] gate closed|mirrored|local   expect alpha [db] alua active-optimized
//   expect alpha [db] saved-divergent [N]          expect alpha [db] blocked REASON|none
//   expect witness [db] epoch 2 primary beta [up-to-date|outdated] [forced-without-witness] [hold|no-hold]
import { World, SITES, WITNESS, type NodeId, type SiteId } from './world.ts';
import { simTiming, worldOptions } from './simulate.ts';

export class ScenarioFailure extends Error {
  override name = 'ScenarioFailure';
}

export function runScenario(script: string): World {
  const lines = script.split('\n');
  let world: World | null = null;
  const writes = new Map<string, { id: number; group: string }>();
  let groups: { name: string; preferredSite: SiteId }[] = [{ name: 'db', preferredSite: 'alpha' }];
  const mirror: { stallMs?: number; resyncEveryMs?: number } = {};
  let startGraceMs: number | undefined;
  const mk = (): World => {
    const timing = startGraceMs === undefined ? simTiming : { ...simTiming, startGraceMs };
    const w = new World(worldOptions(1, { groups, drift: 'none', delayMs: [1, 1], timing, ...mirror }));
    w.start();
    return w;
  };
  lines.forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const words = line.split(/\s+/);
    try {
      if (words[0] === 'groups' || words[0] === 'mirror' || words[0] === 'grace') {
        if (world) throw new Error(`${words[0]} must come first`);
        if (words[0] === 'grace') {
          startGraceMs = Number(words[1]);
          if (!Number.isFinite(startGraceMs) || startGraceMs < 0) throw new Error(`grace ${words[1]}: a number of ms expected`);
        } else if (words[0] === 'groups') {
          groups = words.slice(1).map((w) => {
            const [name, site] = w.split('@');
            return { name, preferredSite: site as SiteId };
          });
        } else {
          for (let j = 1; j + 1 < words.length; j += 2) {
            const ms = Number(words[j + 1]);
            if (words[j] === 'stall') mirror.stallMs = ms;
            else if (words[j] === 'resync') mirror.resyncEveryMs = ms;
            else throw new Error(`unknown mirror setting ${words[j]}`);
          }
        }
        return;
      }
      world ??= mk();
      world.note(`> ${line}`);
      command(world, words, writes);
    } catch (e) {
      const trace = world ? `\n${world.recentTrace(40)}` : '';
      throw new ScenarioFailure(`line ${i + 1} "${line}": ${(e as Error).message}${trace}`, { cause: e });
    }
  });
  return world!;
}

function node(w: string): NodeId {
  if (w === WITNESS || (SITES as readonly string[]).includes(w)) return w as NodeId;
  throw new Error(`unknown node ${w}`);
}

function site(w: string): SiteId {
  const n = node(w);
  if (n === WITNESS) throw new Error('a site is expected, not the witness');
  return n;
}

function pair(w: string): { a: NodeId; b: NodeId; oneWay: boolean } {
  const oneWay = w.includes('->');
  const [a, b] = w.split(oneWay ? '->' : '-');
  return { a: node(a), b: node(b), oneWay };
}

function expectEq(what: string, got: unknown, want: unknown): void {
  if (got !== want) throw new Error(`${what}: got ${String(got)}, expected ${String(want)}`);
}

function command(world: World, words: string[], writes: Map<string, { id: number; group: string }>): void {
  const [cmd, ...rest] = words;
  const groups = world.opts.groups.map((g) => g.name);
  const outcomeOf = (): string | undefined => {
    const k = rest.indexOf('->');
    return k >= 0 ? rest[k + 1] : undefined;
  };
  switch (cmd) {
    case 'tick':
      world.runUntil(world.t + Number(rest[0]));
      return;
    case 'partition': {
      const { a, b, oneWay } = pair(rest[0]);
      world.partition(a, b, oneWay);
      return;
    }
    case 'delay': {
      const { a, b, oneWay } = pair(rest[0]);
      const ms = Number(rest[1]);
      if (!(ms >= 0)) throw new Error(`bad delay ${rest[1]}`);
      world.note(`delay ${rest[0]} ${ms} ms`);
      world.setLink(a, b, { delayMs: [ms, ms] });
      if (!oneWay) world.setLink(b, a, { delayMs: [ms, ms] });
      return;
    }
    case 'heal':
      if (rest[0]) {
        const { a, b } = pair(rest[0]);
        world.heal(a, b);
      } else world.heal();
      return;
    case 'crash':
      world.crash(node(rest[0]));
      return;
    case 'restart':
      world.restart(node(rest[0]));
      return;
    case 'replace':
      if (rest[0] !== WITNESS) throw new Error('only the witness can be replaced');
      world.replaceWitness();
      return;
    case 'switchover': {
      const g = rest[0];
      const at = SITES.find((s) => world.persistedRole(s, g)?.primary === s && world.isUp(s)) ?? 'alpha';
      const refusal = world.operator(at, g, 'switchover');
      expectEq(`switchover ${g} at ${at}`, refusal ?? 'accepted', outcomeOf() ?? 'accepted');
      return;
    }
    case 'force': {
      const refusal = world.operator(site(rest[2]), rest[0], 'force-failover');
      expectEq(`force ${rest[0]} at ${rest[2]}`, refusal ?? 'accepted', outcomeOf() ?? 'accepted');
      return;
    }
    case 'write': {
      const r = world.write(site(rest[2]), rest[0]);
      const want = outcomeOf();
      if (want) expectEq(`write ${rest[0]} at ${rest[2]}`, r.outcome, want);
      const as = rest.indexOf('as');
      if (as >= 0) writes.set(rest[as + 1], { id: r.id, group: rest[0] });
      return;
    }
    case 'expect':
      return expectation(world, rest, groups, writes);
    default:
      throw new Error(`unknown command ${cmd}`);
  }
}

function expectation(world: World, words: string[], groups: string[], writes: Map<string, { id: number; group: string }>): void {
  const who = node(words[0]);
  let k = 1;
  const group = groups.includes(words[k]) ? words[k++] : groups[0];
  const what = words[k++];
  const arg = words.slice(k);
  if (who === WITNESS) {
    const rec = world.witnessRecord(group);
    if (!rec) throw new Error(`witness has no record of ${group}`);
    for (let j = 0; j < words.length; j++) {
      if (words[j] === 'epoch') expectEq(`witness ${group} epoch`, rec.epoch, Number(words[j + 1]));
      if (words[j] === 'primary') expectEq(`witness ${group} primary`, rec.primary, words[j + 1]);
      if (words[j] === 'up-to-date') expectEq(`witness ${group} secondary up-to-date`, rec.secondaryUpToDate, true);
      if (words[j] === 'outdated') expectEq(`witness ${group} secondary up-to-date`, rec.secondaryUpToDate, false);
      if (words[j] === 'forced-without-witness') expectEq(`witness ${group} epoch forced without it`, rec.forcedWithoutWitness, true);
      if (words[j] === 'hold') expectEq(`witness ${group} operator hold`, rec.operatorHold, true);
      if (words[j] === 'no-hold') expectEq(`witness ${group} operator hold`, rec.operatorHold, false);
    }
    return;
  }
  const s = who;
  switch (what) {
    case 'primary':
    case 'secondary': {
      const p = world.persistedRole(s, group);
      if (!p) throw new Error(`${s} has no role for ${group}`);
      expectEq(`${s} ${group} role`, p.primary === s ? 'primary' : 'secondary', what);
      if (arg[0] === 'epoch') expectEq(`${s} ${group} epoch`, p.epoch, Number(arg[1]));
      if (arg.includes('forced-without-witness')) expectEq(`${s} ${group} forced without the witness`, p.forcedWithoutWitness, true);
      if (arg.includes('on-leases')) expectEq(`${s} ${group} forced without the witness`, p.forcedWithoutWitness, false);
      return;
    }
    case 'saved-divergent': {
      const n = world.divergentSaves(s, group);
      if (arg[0] === undefined) expectEq(`${s} ${group} saved its divergent writes aside`, n > 0, true);
      else expectEq(`${s} ${group} times it saved divergent writes aside`, n, Number(arg[0]));
      return;
    }
    case 'blocked': {
      const r = world.role(s, group);
      if (!r) throw new Error(`${s} is down`);
      expectEq(`${s} ${group} blocked`, r.blocked ?? 'none', arg[0]);
      return;
    }
    case 'gate':
      expectEq(`${s} ${group} write gate`, world.gate(s, group), arg[0]);
      return;
    case 'alua':
      expectEq(`${s} ${group} ALUA state`, world.alua(s, group), arg[0]);
      return;
    case 'has': {
      const w = writes.get(arg[0]);
      if (!w) throw new Error(`no write named ${arg[0]}`);
      expectEq(`${s} has ${arg[0]}`, world.hasWrite(s, w.group, w.id), true);
      return;
    }
    case 'lacks': {
      const w = writes.get(arg[0]);
      if (!w) throw new Error(`no write named ${arg[0]}`);
      expectEq(`${s} has ${arg[0]}`, world.hasWrite(s, w.group, w.id), false);
      return;
    }
    case 'has-all-acked': {
      const missing = world.acks.filter((a) => a.group === group && !world.hasWrite(s, group, a.id));
      expectEq(`${s} ${group} acknowledged writes missing`, missing.length, 0);
      return;
    }
    default:
      throw new Error(`unknown expectation ${what}`);
  }
}
