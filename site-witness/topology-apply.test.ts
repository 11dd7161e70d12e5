// The witness's ApplyTopology steps against its record: phases repeated by metroctl are done, not run
// again, and a PREPARE of another version waits until the version half applied is completed (as at
// the agents), instead of overwriting it.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../common/log.ts';
import type { Topology } from '../common/topology/index.ts';
import type { RecordStore, WitnessTopology } from './record-store.ts';
import { witnessTopologyService } from './topology-apply.ts';
import { demoTopologyHead } from '../common/topology/test-support.ts';

const silent: Logger = { error() {}, warn() {}, info() {}, debug() {}, child() { return silent; } };
const file = '/etc/metro/topology.yaml';
const text = (leaseMs: number): string => `${demoTopologyHead}failover: { leaseMs: ${leaseMs} }
groups:
  - { name: db, preferredSite: alpha, volumes: [ { name: data, size: 1GiB } ] }
`;

function witness(): { apply(version: number, text: string, phase: string): Promise<{ code: grpc.status; details: string }>; record(): WitnessTopology; registered: Topology[] } {
  let rec: WitnessTopology = { version: 1, text: text(2000), file, appliedAt: '2026-11-29T03:00:00.000Z' };
  const store = { topology: () => rec, saveTopology: async (t: WitnessTopology) => { rec = t; } } as unknown as RecordStore;
  const registered: Topology[] = [];
  const service = witnessTopologyService({ store, cluster: 'demo', register: async (t) => { registered.push(t); }, log: silent });
  const apply = (version: number, body: string, phase: string): Promise<{ code: grpc.status; details: string }> => new Promise((resolve) => {
    const request = { cluster: 'demo', version: String(version), text: body, file, force: false, phase };
    (service.ApplyTopology as (call: object, cb: (err: grpc.ServiceError | null) => void) => void)({ request }, (err) =>
      resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '' }));
  });
  return { apply, record: () => rec, registered };
}

test('a PREPARE of another version over a pending one is refused; completing the pending one comes first', async (t) => {
  const w = witness();
  t.is((await w.apply(2, text(3000), 'PREPARE')).code, grpc.status.OK);
  const over = await w.apply(3, text(4000), 'PREPARE');
  t.is(over.code, grpc.status.FAILED_PRECONDITION);
  t.is(over.details, 'the witness has version 2 half applied (prepare done): complete it first');
  t.like(w.record(), { version: 2, text: text(3000), pendingPhase: 'prepare' });

  t.is((await w.apply(2, text(3000), 'COMMIT')).code, grpc.status.OK);
  t.is(w.registered.at(-1)?.failover.leaseMs, 3000);
  t.is((await w.apply(3, text(4000), 'PREPARE')).details, 'the witness has version 2 half applied (commit done): complete it first');
  t.is((await w.apply(2, text(3000), 'FINISH')).code, grpc.status.OK);
  t.is((await w.apply(3, text(4000), 'PREPARE')).code, grpc.status.OK);
  t.like(w.record(), { version: 3, text: text(4000), pendingPhase: 'prepare' });
});

test('a PREPARE of the pending version again runs again; repeated COMMIT and FINISH are done', async (t) => {
  const w = witness();
  t.is((await w.apply(2, text(3000), 'PREPARE')).code, grpc.status.OK);
  t.is((await w.apply(2, text(3000), 'PREPARE')).code, grpc.status.OK);
  t.is((await w.apply(2, text(3000), 'COMMIT')).code, grpc.status.OK);
  t.is((await w.apply(2, text(3000), 'COMMIT')).code, grpc.status.OK);
  t.is(w.registered.length, 1);
  t.is((await w.apply(2, text(3000), 'FINISH')).code, grpc.status.OK);
  t.is(w.record().pendingPhase, undefined);
  const old = await w.apply(2, text(3500), 'PREPARE');
  t.is(old.code, grpc.status.FAILED_PRECONDITION);
  t.is(old.details, 'version 2 is not newer than version 2, which the witness already applied');
});
