// The MirrorStatus message of the agent's Status RPC (protos/agent.proto) for one group: at the
// primary from its MirrorSession (ack mode, RTT, lag, the secondary's record, resync progress), at
// a secondary from its applier link and its copy's record. Pure mapping, no I/O.
import type { GroupRecord } from '../meta-store.ts';
import type { LinkStatus } from './mirror-applier.ts';
import type { MirrorSession } from './mirror-session.ts';
import type { ResyncRunProgress } from './resync-driver.ts';

export function mirrorStatusMessage(o: {
  peerSite: string;
  policy: string;
  record: GroupRecord | undefined;
  session?: MirrorSession;
  link?: LinkStatus;
}): Record<string, unknown> {
  const copy = o.record?.copy;
  const base = {
    peer_site: o.peerSite, policy: o.policy,
    copy_has_data: copy?.hasData ?? false, copy_consistent: copy?.consistent ?? true,
  };
  if (!o.session) {
    return { ...base, attached: o.link?.attached ?? false, mode: '', secondary: '' };
  }
  const s = o.session.status();
  const outdated = o.record?.peerOutdated;
  return {
    ...base,
    attached: s.attached,
    mode: s.mode,
    mode_switches: s.switches,
    rtt_ms: s.rttPercentileMs,
    lag_bytes: String(s.lagBytes),
    lag_ms: s.lagMs,
    secondary: s.secondary,
    // The metadata's record when there is one, else what the session decided (the policy's reason).
    outdated_reason: s.secondary === 'up-to-date' ? '' : outdated?.reason ?? s.outdatedReason ?? '',
    outdated_since: s.secondary === 'up-to-date' ? '' : outdated?.since ?? s.outdatedSince ?? '',
    resync: s.resync ? resyncMessage(s.resync) : undefined,
    resync_bytes_sent_total: String(s.resyncBytesSentTotal),
    resync_rate_limit_bytes_per_sec: String(Math.round(s.resyncRateBytesPerSec)),
    throttled: s.throttled,
    hold_down_ms: String(s.holdDownMs),
  };
}

function resyncMessage(p: ResyncRunProgress): Record<string, unknown> {
  return {
    kind: p.kind, done: p.done,
    bytes_total: String(p.bytesTotal), bytes_done: String(p.bytesDone), bytes_sent: String(p.bytesSent), bytes_matched: String(p.bytesMatched),
    regions_total: String(p.regionsTotal), regions_done: String(p.regionsDone),
    rate_bytes_per_sec: p.rateBytesPerSec, eta_ms: String(p.etaMs ?? -1),
  };
}
