// The PeerLink edge: role messages to the peer agent over MetroPeer.Exchange (protos/peer.proto),
// dialled through common/grpc-client.ts, and the server side that hands the peer's messages to the
// role runtime and returns its answers in the reply.
import * as grpc from '@grpc/grpc-js';
import { dial, call } from '../../common/grpc-client.ts';
import type { Identity } from '../../common/tls/identity.ts';
import { reconnectOptions } from './witness-client.ts';
import type { PeerMessage } from './role-machine.ts';
import { peerFromWire, peerToWire } from './peer-wire.ts';


export interface PeerLink {
  exchange(messages: PeerMessage[]): Promise<PeerMessage[] | 'unreachable' | 'failed'>;
  close(): void;
}

/** deadlineMs: an answer later than this is of no use (half the peer lease). */
export function grpcPeerLink(address: string, port: number, expect: Identity, deadlineMs: number): PeerLink {
  const client: grpc.Client = dial('peer.proto', 'MetroPeer', address, port, { expect, channel: reconnectOptions });
  return {
    async exchange(messages) {
      const r = await call<{ messages?: Array<Record<string, any>> }>(client, 'Exchange', { messages: messages.map(peerToWire) }, deadlineMs);
      if (!r.ok) return r.reason === 'unreachable' ? 'unreachable' : 'failed';
      return (r.value.messages ?? []).map(peerFromWire).filter((m): m is PeerMessage => m !== undefined);
    },
    close: () => client.close(),
  };
}

/** MetroPeer.Exchange implementation over the role runtime's onPeerMessages. */
export function peerExchangeHandler(onMessages: (m: PeerMessage[]) => Promise<PeerMessage[]>) {
  return (c: grpc.ServerUnaryCall<{ messages?: Array<Record<string, any>> }, object>, cb: (err: grpc.ServiceError | null, reply?: object) => void): void => {
    const incoming = (c.request.messages ?? []).map(peerFromWire).filter((m): m is PeerMessage => m !== undefined);
    onMessages(incoming).then((answers) => cb(null, { messages: answers.map(peerToWire) }), (err: Error) => cb({ code: grpc.status.INTERNAL, details: err.message, name: 'PeerExchangeFailed', message: err.message, metadata: new grpc.Metadata() }));
  };
}
