// The drill's probe initiator: a host with a path to each site's portal, one I/O at a time per
// path, that never changes user data: it READs one block of the group's first LUN and writes the
// same bytes back with COMPARE AND WRITE (atomic against other writers: if a host wrote the block in
// between, the compare fails and nothing is written). What it measures is what a multipath host
// sees: the longest interval in which NO path completed an I/O (the RTO of a switchover), and which
// of its writes were acknowledged when (the last one acknowledged at the old primary must read back
// at the new one: the read-back half of the RPO). With access.chap it logs in with CHAP.
import { ProbeSession, ProbeError, ProbeLoginRefused, cdbs, type ScsiOutcome } from './probe-session.ts';
import type { ProbeChapCredentials } from './probe-chap.ts';
import { readChapSecrets } from '../chap/chap-secrets.ts';
import type { Topology } from '../topology/index.ts';

export interface ProbePath { site: string; host: string; port: number }

/** The probe's initiator name: allow it in `access.initiators` when the topology restricts them. */
export const probeInitiator = (cluster: string): string => `iqn.2026-11.io.metrocluster:${cluster}.drill-probe`;

/** Why the probe cannot log in to this topology's targets; null when it can. */
export function probeRefusal(t: Topology): string | null {
  const iqn = probeInitiator(t.name);
  if (t.access.initiators.length > 0 && !t.access.initiators.some((i) => i.toLowerCase() === iqn)) return `access.initiators does not allow the probe initiator ${iqn}: add it`;
  return null;
}

/**
 * What the probe logs in with: nothing, or the topology's CHAP secrets read as the agents read them
 * (a file open to group or others is refused); or why it cannot log in. The reason names files,
 * never a secret.
 */
export async function probeLogin(t: Topology): Promise<{ ok: true; chap?: ProbeChapCredentials } | { ok: false; reason: string }> {
  const refusal = probeRefusal(t);
  if (refusal) return { ok: false, reason: refusal };
  if (!t.access.chap) return { ok: true };
  try {
    return { ok: true, chap: await readChapSecrets(t.access.chap) };
  } catch (err) {
    return { ok: false, reason: `the probe initiator cannot read its CHAP secrets: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/** Served-I/O timestamps and acknowledged writes kept (monotonic ms); past it the oldest half is dropped. */
export const completionsMax = 200_000;
const retryPauseMs = 20;
/** After a login refused for the initiator's own fault (CHAP, allow-list): retrying at once only
 *  fills the target's log. */
const refusedRetryMs = 1000;
const senseKey = { notReady: 0x2, unitAttention: 0x6, miscompare: 0xe } as const;

interface PathState { path: ProbePath; session: ProbeSession | null; served: number; errors: number; lastError: string }

/** A COMPARE AND WRITE the target completed with GOOD: the probe block held `data` then. */
export interface ProbeAck { atMs: number; site: string; data: Buffer }

export class IoProbe {
  private readonly paths: PathState[];
  private completions: number[] = [];
  private acks: ProbeAck[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private lba: number | null = null;

  constructor(private readonly o: {
    paths: ProbePath[]; target: string; initiator: string; lun: number; commandTimeoutMs: number; now: () => number; chap?: ProbeChapCredentials;
  }) {
    this.paths = o.paths.map((path) => ({ path, session: null, served: 0, errors: 0, lastError: '' }));
  }

  start(): void {
    this.running = true;
    this.loops = this.paths.map((p) => this.loop(p));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    for (const p of this.paths) { await p.session?.logout().catch(() => undefined); p.session = null; }
  }

  /** Waits until `n` I/Os were served after now, or the deadline passes; false on the deadline. */
  async warm(n: number, deadlineMs: number): Promise<boolean> {
    const from = this.completions.length;
    const until = this.o.now() + deadlineMs;
    while (this.o.now() < until) {
      if (this.completions.length - from >= n) return true;
      await new Promise((r) => setTimeout(r, 10));
    }
    return false;
  }

  /** Longest interval without a served I/O on any path that overlaps [fromMs, toMs]. */
  maxPauseMs(fromMs: number, toMs: number): number {
    let prev: number | null = null;
    let worst = 0;
    for (const t of this.completions) {
      if (prev !== null && t >= fromMs && prev <= toMs) worst = Math.max(worst, t - prev);
      prev = t;
      if (t > toMs) return worst;
    }
    // No I/O served after toMs (yet): the pause runs until now.
    return Math.max(worst, this.o.now() - (prev ?? fromMs));
  }

  /** Logs in once through every path and out again: null, or why a path refused the probe. */
  async checkLogins(): Promise<string | null> {
    const failures: string[] = [];
    for (const p of this.paths) {
      try {
        const s = await this.open(p.path);
        await s.logout().catch(() => undefined);
      } catch (err) {
        failures.push(`at ${p.path.site}'s portal ${p.path.host}:${p.path.port}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return failures.length ? `the probe initiator cannot log in ${failures.join('; ')}` : null;
  }

  /** The last write acknowledged before `tMs` (monotonic), or null when none was. */
  lastAckBefore(tMs: number): ProbeAck | null {
    for (let i = this.acks.length - 1; i >= 0; i--) if (this.acks[i].atMs < tMs) return this.acks[i];
    return null;
  }

  stats(): Array<{ site: string; served: number; errors: number; lastError: string }> {
    return this.paths.map((p) => ({ site: p.path.site, served: p.served, errors: p.errors, lastError: p.lastError }));
  }

  /**
   * One READ and one COMPARE AND WRITE through `site`'s portal on a fresh session; `read` is the
   * probe block as that site's portal served it.
   */
  async writeReadThrough(site: string): Promise<{ ok: boolean; detail: string; read?: Buffer }> {
    const p = this.paths.find((x) => x.path.site === site);
    if (!p) return { ok: false, detail: `no probe path to ${site}` };
    let s: ProbeSession | null = null;
    try {
      s = await this.open(p.path);
      const lba = await this.probeLba(s);
      for (let attempt = 0; attempt < 5; attempt++) {
        const r = await s.command(cdbs.read10(lba, 1), { readBytes: 512 });
        if (r.status !== 0) { if (isUnitAttention(r)) continue; return { ok: false, detail: `READ through ${site}: ${describe(r)}` }; }
        const w = await s.command(cdbs.compareAndWrite(lba), { dataOut: Buffer.concat([r.data, r.data]) });
        if (w.status === 0) return { ok: true, detail: `READ and COMPARE AND WRITE (FUA) of LBA ${lba} through ${site}'s portal ${p.path.host}:${p.path.port}`, read: r.data };
        if (w.sense?.key === senseKey.miscompare || isUnitAttention(w)) continue; // a host wrote it meanwhile
        return { ok: false, detail: `COMPARE AND WRITE through ${site}: ${describe(w)}` };
      }
      return { ok: false, detail: `the block kept changing under the probe at ${site}` };
    } catch (err) {
      return { ok: false, detail: `probe through ${site}: ${err instanceof Error ? err.message : String(err)}` };
    } finally {
      await s?.logout().catch(() => undefined);
    }
  }

  private open(path: ProbePath): Promise<ProbeSession> {
    return ProbeSession.open({ host: path.host, port: path.port, initiator: this.o.initiator, target: this.o.target, timeoutMs: this.o.commandTimeoutMs, chap: this.o.chap });
  }

  /** The last block of the LUN: the least likely to be a filesystem's hot metadata. */
  private async probeLba(s: ProbeSession): Promise<number> {
    if (this.lba !== null) return this.lba;
    for (let attempt = 0; attempt < 5; attempt++) {
      const r = await s.command(cdbs.readCapacity10(), { readBytes: 8 });
      if (r.status === 0 && r.data.length >= 8) {
        if (r.data.readUInt32BE(4) !== 512) throw new ProbeError(`block size ${r.data.readUInt32BE(4)}: the probe handles 512-byte blocks`);
        this.lba = r.data.readUInt32BE(0);
        return this.lba;
      }
      if (!isUnitAttention(r)) throw new ProbeError(`READ CAPACITY: ${describe(r)}`);
    }
    throw new ProbeError('READ CAPACITY kept reporting unit attentions');
  }

  private served(p: PathState): void {
    p.served += 1;
    this.completions.push(this.o.now());
    if (this.completions.length > completionsMax) this.completions = this.completions.slice(completionsMax / 2);
  }

  private acked(p: PathState, data: Buffer): void {
    // The block rarely changes: equal contents share one buffer.
    const last = this.acks.at(-1);
    this.acks.push({ atMs: this.o.now(), site: p.path.site, data: last?.data.equals(data) ? last.data : data });
    if (this.acks.length > completionsMax) this.acks = this.acks.slice(completionsMax / 2);
  }

  private async loop(p: PathState): Promise<void> {
    while (this.running) {
      try {
        p.session ??= await this.open(p.path);
        const lba = await this.probeLba(p.session);
        const r = await p.session.command(cdbs.read10(lba, 1), { readBytes: 512 });
        if (r.status !== 0) { this.error(p, describe(r)); if (!isUnitAttention(r)) await pause(); continue; }
        this.served(p);
        const w = await p.session.command(cdbs.compareAndWrite(lba), { dataOut: Buffer.concat([r.data, r.data]) });
        if (w.status === 0) this.acked(p, r.data);
        if (w.status === 0 || w.sense?.key === senseKey.miscompare) this.served(p);
        else { this.error(p, describe(w)); if (!isUnitAttention(w)) await pause(); }
      } catch (err) {
        this.error(p, err instanceof Error ? err.message : String(err));
        p.session?.close();
        p.session = null;
        await pause(err instanceof ProbeLoginRefused && err.initiatorError ? refusedRetryMs : retryPauseMs);
      }
    }
  }

  private error(p: PathState, detail: string): void {
    p.errors += 1;
    p.lastError = detail;
  }
}

const pause = (ms = retryPauseMs): Promise<void> => new Promise((r) => setTimeout(r, ms));
const isUnitAttention = (r: ScsiOutcome): boolean => r.status === 2 && r.sense?.key === senseKey.unitAttention;

function describe(r: ScsiOutcome): string {
  if (r.status === 0) return 'GOOD';
  if (r.sense) return `status 0x${r.status.toString(16)}, sense key 0x${r.sense.key.toString(16)} ASC/ASCQ 0x${r.sense.asc.toString(16)}/0x${r.sense.ascq.toString(16)}`;
  return `status 0x${r.status.toString(16)}`;
}
