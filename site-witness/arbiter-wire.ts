// Mapping between the arbitration messages (arbiter-messages.ts) and protos/witness.proto as
// proto-loader decodes it (keepCase, longs as strings, enums as strings, oneofs named). Pure; the
// gRPC client and server call these at the edge and nowhere else.
import type { BatchOutcome, RecordView, RefusalReason, WitnessAsk, WitnessReply, WitnessRequest } from './arbiter-messages.ts';

type Wire = Record<string, any>;

/** Requests in one ArbitrateBatch call at most (an agent has one at a time per group). */
export const batchRequestsMax = 4096;

const u64 = (n: number): string => String(Math.max(0, Math.floor(n)));
const num = (s: unknown): number => Number(s ?? 0);

export function requestToWire(r: WitnessRequest): Wire {
  const a = r.ask;
  const ask: Wire = a.kind === 'lease' ? { lease: {} }
    : a.kind === 'secondary-status' ? { secondary_status: { up_to_date: a.upToDate, lag_bounded: a.lagMs !== null, lag_ms: u64(a.lagMs ?? 0) } }
      : a.kind === 'promotion' ? { promotion: { forced: a.forced } }
        : a.kind === 'epoch-report' ? { epoch_report: { primary: a.primary } }
          : { handover: { to: a.to } };
  // Rounded down: a lease measured from an earlier send ends earlier, never later.
  return { key: r.key, site: r.site, epoch: u64(r.epoch), seq: u64(r.seq), sent_at_ms: u64(r.sentAtMs), incarnation: u64(r.incarnation), ...ask };
}

export function requestFromWire(w: Wire): WitnessRequest {
  let ask: WitnessAsk;
  switch (w.ask) {
    case 'secondary_status': {
      const s = w.secondary_status;
      ask = { kind: 'secondary-status', upToDate: !!s.up_to_date, lagMs: s.lag_bounded ? num(s.lag_ms) : null };
      break;
    }
    case 'promotion': ask = { kind: 'promotion', forced: !!w.promotion.forced }; break;
    case 'handover': ask = { kind: 'handover', to: String(w.handover.to) }; break;
    case 'epoch_report': ask = { kind: 'epoch-report', primary: String(w.epoch_report.primary ?? '') }; break;
    default: ask = { kind: 'lease' };
  }
  return {
    key: { cluster: String(w.key?.cluster ?? ''), group: String(w.key?.group ?? '') }, site: String(w.site),
    epoch: num(w.epoch), seq: num(w.seq), sentAtMs: num(w.sent_at_ms), incarnation: num(w.incarnation), ask,
  };
}

export function replyToWire(r: WitnessReply): Wire {
  const o = r.outcome;
  const rec = r.record;
  return {
    key: r.key, site: r.site, ask: r.ask, epoch: u64(r.epoch), seq: u64(r.seq), sent_at_ms: u64(r.sentAtMs), incarnation: u64(r.incarnation),
    granted: o.granted, lease_ms: u64(o.granted ? o.leaseMs : 0), refusal: o.granted ? 'REFUSAL_NONE' : o.reason,
    has_retry: !o.granted && o.retryInMs !== null, retry_in_ms: u64(!o.granted ? o.retryInMs ?? 0 : 0),
    record: rec && { epoch: u64(rec.epoch), primary: rec.primary, secondary_up_to_date: rec.secondaryUpToDate, lag_bounded: rec.lagMs !== null, lag_ms: u64(rec.lagMs ?? 0), forced: rec.forced, forced_without_witness: rec.forcedWithoutWitness },
  };
}

export function replyFromWire(w: Wire): WitnessReply {
  const rec: RecordView | null = w.record
    ? { epoch: num(w.record.epoch), primary: String(w.record.primary), secondaryUpToDate: !!w.record.secondary_up_to_date, lagMs: w.record.lag_bounded ? num(w.record.lag_ms) : null, forced: !!w.record.forced, forcedWithoutWitness: !!w.record.forced_without_witness }
    : null;
  return {
    key: { cluster: String(w.key?.cluster ?? ''), group: String(w.key?.group ?? '') }, site: String(w.site), ask: w.ask as WitnessAsk['kind'],
    epoch: num(w.epoch), seq: num(w.seq), sentAtMs: num(w.sent_at_ms), incarnation: num(w.incarnation),
    outcome: w.granted ? { granted: true, leaseMs: num(w.lease_ms) } : { granted: false, reason: w.refusal as RefusalReason, retryInMs: w.has_retry ? num(w.retry_in_ms) : null },
    record: rec,
  };
}

/** An ArbitrateBatch outcome: the reply, or the reason its request never reached the arbiter. */
export function outcomeToWire(o: BatchOutcome): Wire {
  return 'reply' in o ? { reply: replyToWire(o.reply) } : { invalid: o.invalid };
}

export function outcomeFromWire(w: Wire): BatchOutcome {
  return w.reply ? { reply: replyFromWire(w.reply) } : { invalid: String(w.invalid || 'the witness gave no reply to this request') };
}
