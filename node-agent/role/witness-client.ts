// The agent's WitnessClient edge: RegisterGroup and arbitration on metro-witness over gRPC, dialled
// through common/grpc-client.ts. Never throws: an unanswered request is simply lost (the role
// machine repeats what it still needs), and the reply is handed to the caller as a value. The
// requests of one turn of the event loop (the lease renewals and polls of the groups that fall due
// in the same role tick) travel in one ArbitrateBatch call rather than one call each.
import * as grpc from '@grpc/grpc-js';
import { dial, call } from '../../common/grpc-client.ts';
import type { Identity } from '../../common/tls/identity.ts';
import type { GroupRegistration } from '../../site-witness/arbiter.ts';
import type { WitnessReply, WitnessRequest } from '../../site-witness/arbiter-messages.ts';
import { batchRequestsMax, outcomeFromWire, replyFromWire, requestToWire } from '../../site-witness/arbiter-wire.ts';

export interface WitnessClient {
  /** Resolves with the reply, or with the reason the witness did not answer. */
  arbitrate(r: WitnessRequest): Promise<{ ok: true; reply: WitnessReply } | { ok: false; reason: string }>;
  register(g: GroupRegistration): Promise<{ ok: boolean; reason?: string }>;
  close(): void;
}

/**
 * A late reply still counts (a lease runs from the request's send), so the deadline is the lease;
 * reconnects are retried quickly: a site that waits minutes of gRPC backoff for a restarted witness
 * cannot renew its lease.
 */
export const reconnectOptions = { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.min_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1000 };

type ArbitrateResult = { ok: true; reply: WitnessReply } | { ok: false; reason: string };

export function grpcWitnessClient(address: string, port: number, expect: Identity, deadlineMs: number): WitnessClient {
  const client: grpc.Client = dial('witness.proto', 'MetroWitness', address, port, { expect, channel: reconnectOptions });
  let queued: Array<{ request: WitnessRequest; resolve: (r: ArbitrateResult) => void }> = [];
  // A witness of an earlier release knows Arbitrate only: then each request goes on its own.
  let batches = true;
  const single = async (r: WitnessRequest): Promise<ArbitrateResult> => {
    const res = await call<Record<string, any>>(client, 'Arbitrate', requestToWire(r), deadlineMs);
    return res.ok ? { ok: true, reply: replyFromWire(res.value) } : { ok: false, reason: res.reason };
  };
  const send = async (part: typeof queued): Promise<void> => {
    if (!batches) {
      for (const q of part) single(q.request).then(q.resolve);
      return;
    }
    const res = await call<{ outcomes?: Array<Record<string, any>> }>(client, 'ArbitrateBatch', { requests: part.map((q) => requestToWire(q.request)) }, deadlineMs);
    if (!res.ok && res.code === grpc.status.UNIMPLEMENTED) {
      batches = false;
      return send(part);
    }
    part.forEach((q, i) => {
      if (!res.ok) return q.resolve({ ok: false, reason: res.reason });
      const w = res.value.outcomes?.[i];
      if (w === undefined) return q.resolve({ ok: false, reason: `the witness answered ${res.value.outcomes?.length ?? 0} of ${part.length} requests` });
      const o = outcomeFromWire(w);
      q.resolve('reply' in o ? { ok: true, reply: o.reply } : { ok: false, reason: `refused: ${o.invalid}` });
    });
  };
  const flush = (): void => {
    const all = queued;
    queued = [];
    for (let i = 0; i < all.length; i += batchRequestsMax) void send(all.slice(i, i + batchRequestsMax));
  };
  return {
    arbitrate(r) {
      return new Promise((resolve) => {
        if (queued.length === 0) setImmediate(flush);
        queued.push({ request: r, resolve });
      });
    },
    async register(g) {
      const res = await call<{ accepted: boolean; refusal: string }>(client, 'RegisterGroup', {
        key: g.key, sites: [...g.sites], preferred_site: g.preferredSite, lease_ms: String(g.leaseMs), max_data_loss_ms: String(g.maxDataLossMs),
      });
      if (!res.ok) return { ok: false, reason: res.reason };
      return res.value.accepted ? { ok: true } : { ok: false, reason: res.value.refusal };
    },
    close: () => client.close(),
  };
}
