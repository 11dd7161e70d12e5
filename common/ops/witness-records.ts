// The witness's records of the groups (MetroDrills.GroupRecords), read-only: epoch, primary, and
// whether the secondary is up-to-date or outdated with a lag bound. Runbooks show the data-loss
// bound of a failover from it; drills check a group is up-to-date before they switch it over.
import type { Topology } from '../topology/index.ts';
import { dial, call } from '../grpc-client.ts';

export interface WitnessRecordView {
  group: string;
  epoch: number;
  primary: string;
  secondaryUpToDate: boolean;
  /** Lag bound of an outdated secondary; null: unbounded, or up-to-date. */
  lagMs: number | null;
  forced: boolean;
  /** The epoch was made on an operator's forced failover while the witness was out of reach. */
  forcedWithoutWitness: boolean;
  /** ... and its primary has not yet shown the witness that it serves on leases again. */
  operatorHold: boolean;
}

interface Wire {
  records: Array<{
    group: string; epoch: string; primary: string; secondary_up_to_date: boolean; lag_bounded: boolean; lag_ms: string; forced: boolean;
    forced_without_witness?: boolean; operator_hold?: boolean;
  }>;
}

export async function witnessRecords(t: Topology, deadlineMs = 2000): Promise<{ ok: true; records: WitnessRecordView[] } | { ok: false; reason: string }> {
  const c = dial('drills.proto', 'MetroDrills', t.witness.address, t.witness.port);
  try {
    const r = await call<Wire>(c, 'GroupRecords', {}, deadlineMs);
    if (!r.ok) return r;
    return {
      ok: true,
      records: r.value.records.map((x) => ({
        group: x.group, epoch: Number(x.epoch), primary: x.primary, secondaryUpToDate: x.secondary_up_to_date,
        lagMs: x.secondary_up_to_date || !x.lag_bounded ? null : Number(x.lag_ms), forced: x.forced,
        forcedWithoutWitness: !!x.forced_without_witness, operatorHold: !!x.operator_hold,
      })),
    };
  } finally {
    c.close();
  }
}
