// The drill's RPO, measured: what the old primary's own status said of its mirror at the handover
// (its last answer as primary while the switchover ran: ack mode, the secondary's state, the bytes
// and age of what the secondary had not acknowledged), and whether the probe's last write
// acknowledged at the old primary reads back identically at the new one. Pure: samples in, the
// figure, whether data was at risk, and the sentence that says how it was measured, out.
import type { RpoEvidence } from '../../common/drills/report.ts';
import type { ProbeAck } from '../../common/probe/io-probe.ts';

/** One Status answer of the old primary for the group during the switchover (agent.proto). */
export interface HandoverSample {
  /** Monotonic ms when the request was sent: the answer describes a moment after it. */
  sentAtMs: number;
  /** The site names itself the group's primary in the epoch the drill started from. */
  primary: boolean;
  /** Its switchover is under way: writes in flight drained to the secondary, new I/O held. */
  handingOver: boolean;
  /** MirrorStatus.mode: 'sync', 'async', or '' when it reported none. */
  mode: string;
  /** MirrorStatus.secondary: 'up-to-date', 'outdating', 'outdated', or ''. */
  secondary: string;
  attached: boolean;
  lagBytes: number;
  lagMs: number;
}

export interface RpoInput {
  from: string;
  to: string;
  /** In the order they were sent. */
  samples: readonly HandoverSample[];
  /** The probe's last write acknowledged before a monotonic time. */
  ackBefore: (tMs: number) => ProbeAck | null;
  /** The probe block as the new primary's portal served it after the switchover; null: not read. */
  readAtNew: Buffer | null;
}

export interface RpoMeasure {
  /** Acknowledged writes the new primary may lack, in ms of writes; null when not measured. */
  rpoMs: number | null;
  atRisk: boolean;
  basis: string;
  evidence: RpoEvidence;
}

type Lag = { rpoMs: number | null; atRisk: boolean; says: string };

/** What the mirror at the handover says of acknowledged writes missing at the new primary. */
function lagAt(h: HandoverSample, from: string, to: string): Lag {
  const unacked = `${h.lagBytes} bytes not yet acknowledged by ${to}${h.lagBytes > 0 ? ` (the oldest ${Math.round(h.lagMs)} ms old)` : ''}`;
  if (h.secondary !== 'up-to-date') {
    return { rpoMs: null, atRisk: true, says: `${from} reported its secondary ${to} ${h.secondary || 'in no known state'} (${h.attached ? 'attached' : 'detached'}): the writes ${from} acknowledged alone are not on ${to}, and their extent is not known here` };
  }
  if (h.mode === 'sync') {
    // A sync write completes once the secondary holds it: what is in flight was acknowledged to no host.
    return { rpoMs: 0, atRisk: false, says: `sync mode, ${to} up-to-date, ${unacked}${h.lagBytes > 0 ? ', none of them acknowledged to a host (a sync write completes once the secondary holds it)' : ''}` };
  }
  if (h.mode === 'async') {
    if (h.lagBytes === 0) return { rpoMs: 0, atRisk: false, says: `async mode, ${to} up-to-date, ${unacked}` };
    return { rpoMs: Math.ceil(h.lagMs), atRisk: true, says: `async mode, ${unacked}, acknowledged to hosts already` };
  }
  return { rpoMs: null, atRisk: false, says: `no ack mode reported (${h.mode || 'none'})` };
}

export function measureRpo(i: RpoInput): RpoMeasure {
  const at = findLastIndex(i.samples, (s) => s.primary);
  if (at < 0) {
    return {
      rpoMs: null, atRisk: false,
      basis: `not measured: ${i.from} never answered its status as primary while the switchover ran`,
      evidence: { handover: null, readBack: 'not run', atRisk: false },
    };
  }
  const h = i.samples[at];
  const seen = i.samples.slice(at + 1).find((s) => !s.primary);
  const windowMs = seen ? Math.round(seen.sentAtMs - h.sentAtMs) : null;
  const lag = lagAt(h, i.from, i.to);
  const when = h.handingOver
    ? `its last status as primary, with its writes drained and new I/O held${windowMs !== null ? `, at most ${windowMs} ms before it named another primary` : ''}`
    : `its last status as primary, before the drain${windowMs !== null ? `, at most ${windowMs} ms before it named another primary` : ''}`;
  // Writes completed before the request was sent were executed by the old primary: the status
  // that followed still named it primary of the drill's epoch.
  const ack = i.ackBefore(h.sentAtMs);
  let rpoMs = lag.rpoMs;
  let atRisk = lag.atRisk;
  let readBack: RpoEvidence['readBack'] = 'not run';
  let readSays: string;
  if (!ack) readSays = `no probe write was acknowledged at ${i.from} before the handover: the read-back did not run`;
  else if (!i.readAtNew) readSays = `the probe block was not read at ${i.to}: the read-back did not run`;
  else if (i.readAtNew.equals(ack.data)) {
    readBack = 'identical';
    readSays = `the probe's last write acknowledged at ${i.from} (through ${ack.site}'s portal, ${Math.round(h.sentAtMs - ack.atMs)} ms before that status) reads back identically at ${i.to}`;
  } else {
    readBack = 'differs';
    atRisk = true;
    // Every write from that one to the handover may be missing: at least that span of writes.
    rpoMs = Math.max(rpoMs ?? 0, Math.ceil(h.sentAtMs - ack.atMs));
    readSays = `the probe's last write acknowledged at ${i.from} reads back differently at ${i.to} (a lost write, or a host wrote the probe's block meanwhile)`;
  }
  const basis = `${atRisk ? 'DATA AT RISK: ' : ''}measured at ${i.from}'s mirror at the handover (${when}): ${lag.says}; ${readSays}`;
  return {
    rpoMs, atRisk, basis,
    evidence: {
      handover: { mode: h.mode, secondary: h.secondary, lagBytes: h.lagBytes, lagMs: Math.round(h.lagMs), drained: h.handingOver, windowMs },
      readBack, atRisk,
    },
  };
}

function findLastIndex<T>(xs: readonly T[], p: (x: T) => boolean): number {
  for (let k = xs.length - 1; k >= 0; k--) if (p(xs[k])) return k;
  return -1;
}
