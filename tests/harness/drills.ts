// Helpers for the drill process tests: metroctl run as an admin runs it, the weekly drill of group db
// they configure, and which site serves a group according to `metroctl status -o json`.
import { metroctlBin } from './cluster.ts';
import { run } from './tools.ts';

/** metroctl with a deadline generous enough for a whole drill or runbook on a loaded machine. */
export const metroctl = (args: string[], timeoutMs = 300_000) => run(process.execPath, [metroctlBin, ...args], { timeoutMs });

/** The topology's drills block: db switched over and failed back, on a weekly schedule (the tests run it by hand). */
export const weeklyDbDrill = 'drills:\n  - { name: weekly-db, group: db, schedule: "0 3 * * 0", failback: true }';
/** Sync mirroring (the secondary up-to-date unless the link is cut) and a 2 s lease. */
export const drillFailoverSettings = 'replication: { ack: sync }\nfailover: { leaseMs: 2000, maxDataLossMs: 0 }';

/** The site that reports itself primary of the group in the newest epoch, with its gate; null when none does. */
export async function primaryOf(file: string, group: string): Promise<{ site: string; epoch: number; gate: string } | null> {
  const r = await metroctl(['status', '-f', file, '-o', 'json'], 30_000);
  const json = JSON.parse(r.stdout || '{"sites":[]}') as { sites: Array<{ name: string; groups?: Array<{ name: string; arbitration?: { primary: string; epoch: string; gate: string } }> }> };
  let best: { site: string; epoch: number; gate: string } | null = null;
  for (const s of json.sites) {
    const a = s.groups?.find((g) => g.name === group)?.arbitration;
    if (a && a.primary === s.name && (!best || Number(a.epoch) > best.epoch)) best = { site: s.name, epoch: Number(a.epoch), gate: a.gate };
  }
  return best;
}

/** Waits (90 s at most) until `site` is the group's primary with its gate open; throws otherwise. */
export async function serving(file: string, group: string, site: string): Promise<void> {
  const until = Date.now() + 90_000;
  for (;;) {
    const p = await primaryOf(file, group);
    if (p?.site === site && p.gate !== 'closed') return;
    if (Date.now() > until) throw new Error(`${group} not served by ${site}: ${JSON.stringify(p)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
