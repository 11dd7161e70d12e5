// witness.proto as proto-loader loads it (common/proto.ts options): every arbitration request and
// reply survives encoding to bytes and back unchanged, 64-bit values included.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { serviceOf } from '../common/proto.ts';
import { replyFromWire, replyToWire, requestFromWire, requestToWire } from './arbiter-wire.ts';
import type { WitnessAsk, WitnessReply, WitnessRequest } from './arbiter-messages.ts';

const service = serviceOf('witness.proto', 'MetroWitness').service as grpc.ServiceDefinition;
const arbitrate = service.Arbitrate;

test('the witness service offers Health, RegisterGroup, Arbitrate and the topology methods', (t) => {
  t.deepEqual(Object.keys(service).sort(), ['ApplyTopology', 'Arbitrate', 'GetTopology', 'Health', 'RegisterGroup']);
});

test('arbitration requests round-trip through protobuf bytes', (t) => {
  const asks: WitnessAsk[] = [
    { kind: 'lease' }, { kind: 'secondary-status', upToDate: false, lagMs: null }, { kind: 'secondary-status', upToDate: false, lagMs: 1500 },
    { kind: 'secondary-status', upToDate: true, lagMs: null }, { kind: 'promotion', forced: true }, { kind: 'handover', to: 'beta' },
    { kind: 'epoch-report', primary: 'beta' },
  ];
  for (const ask of asks) {
    const req: WitnessRequest = { key: { cluster: 'demo', group: 'db' }, site: 'alpha', epoch: 7, seq: 2 ** 40, sentAtMs: 123456789012, incarnation: 3, ask };
    const bytes = arbitrate.requestSerialize(requestToWire(req));
    t.deepEqual(requestFromWire(arbitrate.requestDeserialize(bytes)), req, ask.kind);
  }
});

test('arbitration replies round-trip, granted and refused', (t) => {
  const base = { key: { cluster: 'demo', group: 'db' }, site: 'beta', ask: 'promotion' as const, epoch: 1, seq: 4, sentAtMs: 99, incarnation: 2 };
  const replies: WitnessReply[] = [
    { ...base, outcome: { granted: true, leaseMs: 2000 }, record: { epoch: 2, primary: 'beta', secondaryUpToDate: false, lagMs: null, forced: false, forcedWithoutWitness: false } },
    { ...base, outcome: { granted: false, reason: 'LEASE_HELD', retryInMs: 850 }, record: { epoch: 1, primary: 'alpha', secondaryUpToDate: false, lagMs: 300, forced: true, forcedWithoutWitness: false } },
    { ...base, ask: 'epoch-report', epoch: 4, outcome: { granted: true, leaseMs: 2000 }, record: { epoch: 4, primary: 'beta', secondaryUpToDate: false, lagMs: null, forced: true, forcedWithoutWitness: true } },
    { ...base, outcome: { granted: false, reason: 'FORCED_PRIMARY_UNCONFIRMED', retryInMs: null }, record: { epoch: 4, primary: 'alpha', secondaryUpToDate: false, lagMs: null, forced: true, forcedWithoutWitness: true } },
    { ...base, outcome: { granted: false, reason: 'UNKNOWN_GROUP', retryInMs: null }, record: null },
  ];
  for (const r of replies) {
    const bytes = arbitrate.responseSerialize(replyToWire(r));
    t.deepEqual(replyFromWire(arbitrate.responseDeserialize(bytes)), r);
  }
});
