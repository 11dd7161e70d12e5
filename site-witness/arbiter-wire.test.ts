// witness.proto as proto-loader loads it (common/proto.ts options): every arbitration request and
// reply survives encoding to bytes and back unchanged, 64-bit values included.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { serviceOf } from '../common/proto.ts';
import { outcomeFromWire, outcomeToWire, replyFromWire, replyToWire, requestFromWire, requestToWire } from './arbiter-wire.ts';
import type { WitnessAsk, WitnessReply, WitnessRequest } from './arbiter-messages.ts';

const service = serviceOf('witness.proto', 'MetroWitness').service as grpc.ServiceDefinition;
const arbitrate = service.Arbitrate;

test('the witness service offers Health, RegisterGroup, Arbitrate, ArbitrateBatch and the topology methods', (t) => {
  t.deepEqual(Object.keys(service).sort(), ['ApplyTopology', 'Arbitrate', 'ArbitrateBatch', 'GetTopology', 'Health', 'RegisterGroup']);
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

test('a batch of requests and its outcomes round-trip, a refused request and an empty reason included', (t) => {
  const batch = service.ArbitrateBatch;
  const req: WitnessRequest = { key: { cluster: 'demo', group: 'db' }, site: 'alpha', epoch: 3, seq: 2 ** 41, sentAtMs: 5, incarnation: 1, ask: { kind: 'lease' } };
  const sent = batch.requestDeserialize(batch.requestSerialize({ requests: [requestToWire(req), requestToWire({ ...req, seq: 1 })] }));
  t.deepEqual(sent.requests.map(requestFromWire), [req, { ...req, seq: 1 }]);
  const reply: WitnessReply = { key: req.key, site: 'alpha', ask: 'lease', epoch: 3, seq: 2 ** 41, sentAtMs: 5, incarnation: 1, outcome: { granted: true, leaseMs: 2000 }, record: null };
  const outcomes = [{ reply }, { invalid: 'epoch, seq, sent_at_ms and incarnation must be integers below 2^53' }];
  const got = batch.responseDeserialize(batch.responseSerialize({ outcomes: outcomes.map(outcomeToWire) }));
  t.deepEqual(got.outcomes.map(outcomeFromWire), outcomes);
  // An outcome with neither (a witness that answered nothing for a request) is not taken for a reply.
  t.deepEqual(outcomeFromWire(batch.responseDeserialize(batch.responseSerialize({ outcomes: [{}] })).outcomes[0]), { invalid: 'the witness gave no reply to this request' });
});
