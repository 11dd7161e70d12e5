// The messages between a site's agent and the witness's arbiter, as plain values: what the role
// machine sends, what the arbiter answers. Shared by both cores and by protos/witness.proto's
// adapter; no behaviour here.

export type SiteName = string;

export interface GroupKey {
  readonly cluster: string;
  readonly group: string;
}

/** What a site asks the witness for one group. */
export type WitnessAsk =
  /** Primary: grant or renew my lease. Secondary: a poll; the refusal carries the record. */
  | { readonly kind: 'lease' }
  /** Primary: the secondary is up-to-date again, or outdated (lag bound in ms, null if unbounded). */
  | { readonly kind: 'secondary-status'; readonly upToDate: boolean; readonly lagMs: number | null }
  /** Secondary: promote me (automatic failover, or `forced` by the operator: no data checks). */
  | { readonly kind: 'promotion'; readonly forced: boolean }
  /** Primary, during a switchover: I stopped acknowledging writes; make `to` primary. */
  | { readonly kind: 'handover'; readonly to: SiteName }
  /**
   * Either site: the request's epoch, with `primary` its primary, is one the witness has not made:
   * an operator's forced failover made it while the witness was out of reach (role-machine.ts,
   * "Forced failover without the witness"). The witness adopts it when it is consistent.
   */
  | { readonly kind: 'epoch-report'; readonly primary: SiteName };

export interface WitnessRequest {
  readonly key: GroupKey;
  readonly site: SiteName;
  /** The requester's epoch for the group. */
  readonly epoch: number;
  /**
   * The requester's request sequence (persisted, only grows). The witness refuses a request with a
   * lower sequence than it has seen from that site: a site fences its own older requests in flight.
   */
  readonly seq: number;
  /** Requester's monotonic clock when sent, and its incarnation; echoed in the reply. */
  readonly sentAtMs: number;
  readonly incarnation: number;
  readonly ask: WitnessAsk;
}

export type RefusalReason =
  | 'UNKNOWN_GROUP'
  | 'UNKNOWN_SITE'
  | 'NOT_PRIMARY'
  | 'ALREADY_PRIMARY'
  | 'STALE_EPOCH'
  | 'FUTURE_EPOCH'
  | 'STALE_REQUEST'
  | 'LEASE_HELD'
  | 'SECONDARY_OUTDATED'
  | 'LAG_TOO_LARGE'
  | 'CONFLICT'
  /**
   * The primary was made by a forced failover without the witness and has not asked the witness for
   * anything since it learned that the witness adopted its epoch: it may still be serving on the
   * operator's order alone, with no lease to wait out. Only another forced failover replaces it.
   */
  | 'FORCED_PRIMARY_UNCONFIRMED';

/** The durable part of the witness's record of one group, as it stands after the request. */
export interface RecordView {
  readonly epoch: number;
  readonly primary: SiteName;
  readonly secondaryUpToDate: boolean;
  /** Lag bound the primary reported for an outdated secondary; null: unbounded or up-to-date. */
  readonly lagMs: number | null;
  /** The current epoch came from a forced failover. */
  readonly forced: boolean;
  /** ... made by a site on the operator's order while the witness was out of reach, adopted since. */
  readonly forcedWithoutWitness: boolean;
}

export type ReplyOutcome =
  | { readonly granted: true; /** the lease granted, ms from the witness's receipt; 0 if none */ readonly leaseMs: number }
  | { readonly granted: false; readonly reason: RefusalReason; /** when a retry may succeed (LEASE_HELD) */ readonly retryInMs: number | null };

export interface WitnessReply {
  readonly key: GroupKey;
  readonly site: SiteName;
  /** Echo of the request. */
  readonly ask: WitnessAsk['kind'];
  readonly epoch: number;
  readonly seq: number;
  readonly sentAtMs: number;
  readonly incarnation: number;
  readonly outcome: ReplyOutcome;
  /** null only for UNKNOWN_GROUP. */
  readonly record: RecordView | null;
}

/** A request of an ArbitrateBatch call: its reply, or why it never reached the arbiter. */
export type BatchOutcome = { readonly reply: WitnessReply } | { readonly invalid: string };

export function groupKeyString(k: GroupKey): string {
  return `${k.cluster}/${k.group}`;
}
