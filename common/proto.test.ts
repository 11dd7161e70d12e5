// The .proto contracts are parsed once per file: dial() asks for a service on every call.
import test from 'ava';
import { loadProto, serviceOf } from './proto.ts';

test('a proto file is parsed once: the same package and service constructor every time', (t) => {
  t.is(loadProto('agent.proto'), loadProto('agent.proto'));
  t.is(serviceOf('agent.proto', 'MetroAgent'), serviceOf('agent.proto', 'MetroAgent'));
  t.not(loadProto('agent.proto'), loadProto('witness.proto'));
  t.truthy(serviceOf('witness.proto', 'MetroWitness').service.Arbitrate);
});
