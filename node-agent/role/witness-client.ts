// The agent's WitnessClient edge: RegisterGroup and Arbitrate on metro-witness over gRPC, dialled
// through common/grpc-client.ts. Never throws: an unanswered request is simply lost (the role
// machine repeats what it still needs), and the reply is handed to the caller as a value.
import type * as grpc from '@grpc/grpc-js';
import { dial, call } from '../../common/grpc-client.ts';
import type { Identity } from '../../common/tls/identity.ts';
import type { GroupRegistration } from '../../site-witness/arbiter.ts';
import type { WitnessReply, WitnessRequest } from '../../site-witness/arbiter-messages.ts';
import { replyFromWire, requestToWire } from '../../site-witness/arbiter-wire.ts';

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

export function grpcWitnessClient(address: string, port: number, expect: Identity, deadlineMs: number): WitnessClient {
  const client: grpc.Client = dial('witness.proto', 'MetroWitness', address, port, { expect, channel: reconnectOptions });
  return {
    async arbitrate(r) {
      const res = await call<Record<string, any>>(client, 'Arbitrate', requestToWire(r), deadlineMs);
      return res.ok ? { ok: true, reply: replyFromWire(res.value) } : { ok: false, reason: res.reason };
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
