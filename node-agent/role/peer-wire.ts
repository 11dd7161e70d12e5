// Mapping between the role machine's PeerMessage and protos/peer.proto as proto-loader decodes it
// (keepCase, longs as strings). Pure; the peer link calls it at the edge and nowhere else.
import type { PeerMessage } from './role-machine.ts';

type Wire = Record<string, any>;

const u64 = (n: number): string => String(Math.max(0, Math.floor(n)));

export function peerToWire(m: PeerMessage): Wire {
  const base = { cluster: m.key.cluster, group: m.key.group, from: m.from, kind: m.kind, epoch: u64(m.epoch), primary: m.primary };
  return m.kind === 'ping'
    ? { ...base, sent_at_ms: m.sentAtMs, incarnation: u64(m.incarnation) }
    : { ...base, echo_sent_at_ms: m.echoSentAtMs, echo_incarnation: u64(m.echoIncarnation), promise: m.promise };
}

/** undefined for a message that is neither ping nor pong (a newer peer's kind): ignored. */
export function peerFromWire(w: Wire): PeerMessage | undefined {
  const key = { cluster: String(w.cluster ?? ''), group: String(w.group ?? '') };
  const common = { key, from: String(w.from ?? ''), epoch: Number(w.epoch ?? 0), primary: String(w.primary ?? '') };
  if (!Number.isSafeInteger(common.epoch)) return undefined;
  if (w.kind === 'ping') return { kind: 'ping', ...common, sentAtMs: Number(w.sent_at_ms ?? 0), incarnation: Number(w.incarnation ?? 0) };
  if (w.kind === 'pong') {
    return { kind: 'pong', ...common, echoSentAtMs: Number(w.echo_sent_at_ms ?? 0), echoIncarnation: Number(w.echo_incarnation ?? 0), promise: !!w.promise };
  }
  return undefined;
}
