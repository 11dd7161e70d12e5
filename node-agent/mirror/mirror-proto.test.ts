// The mirror contract loads with the shared proto-loader options and carries every message kind
// across the wire unchanged (64-bit values as strings, bytes as Buffers, oneof discriminators).
import test from 'ava';
import { crc32c } from '@node-rs/crc32';
import { serviceOf } from '../../common/proto.ts';

const Mirror = serviceOf('mirror.proto', 'MetroMirror');
const attach = Mirror.service.Attach;

function primaryRoundTrip(msg: object): Record<string, unknown> {
  return attach.responseDeserialize(attach.responseSerialize(msg)) as Record<string, unknown>;
}
function secondaryRoundTrip(msg: object): Record<string, unknown> {
  return attach.requestDeserialize(attach.requestSerialize(msg)) as Record<string, unknown>;
}

test('Attach is a bidirectional stream: secondary messages up, primary messages down', (t) => {
  t.true(attach.requestStream);
  t.true(attach.responseStream);
  t.is(attach.path, '/metrocluster.v1.MetroMirror/Attach');
});

test('an entry batch keeps order, sequences beyond 2^53, data and markers', (t) => {
  const data = Buffer.from('mirrored block'.padEnd(512, '.'));
  const big = '18446744073709551615';
  const out = primaryRoundTrip({
    batch: {
      epoch: '7',
      entries: [
        { seq: '9007199254740993', write: { volume: 1, offset_bytes: '1099511627776', data, crc32c: crc32c(data), fua: true } },
        { seq: '9007199254740994', flush: { all_volumes: true } },
        { seq: '9007199254740995', state: { kind: 'persistent-reservations', volume: 0, payload: Buffer.from([1, 2, 3]), crc32c: 5 } },
        { seq: '9007199254740996', deallocate: { volume: 0, offset_bytes: '0', length_bytes: big } },
        { seq: '9007199254740997', resync: { volume: 2, region: '3', offset_bytes: '196608', data: Buffer.alloc(4), crc32c: 0 } },
        { seq: '9007199254740998', resync_complete: { volume: 2, regions_sent: '1', bytes_sent: '4', regions_matched: '10' } },
      ],
    },
  });
  t.is(out.kind, 'batch');
  const batch = out.batch as { epoch: string; entries: Array<Record<string, any>> };
  t.is(batch.epoch, '7');
  t.deepEqual(batch.entries.map((e) => e.kind), ['write', 'flush', 'state', 'deallocate', 'resync', 'resync_complete']);
  t.deepEqual(batch.entries.map((e) => e.seq), ['9007199254740993', '9007199254740994', '9007199254740995', '9007199254740996', '9007199254740997', '9007199254740998']);
  const w = batch.entries[0].write;
  t.is(w.offset_bytes, '1099511627776');
  t.true(Buffer.isBuffer(w.data));
  t.deepEqual(w.data, data);
  t.is(w.crc32c, crc32c(data));
  t.true(w.fua);
  t.is(batch.entries[3].deallocate.length_bytes, big);
  t.deepEqual(batch.entries[2].state.payload, Buffer.from([1, 2, 3]));
});

test('hello, ack, heartbeat, refusal, resync request and checksums round-trip', (t) => {
  const hello = secondaryRoundTrip({
    hello: { cluster: 'demo', group: 'db', site: 'beta', epoch: '3', applied_seq: '41', durable_seq: '40', up_to_date: true, has_data: true,
      volumes: [{ volume: 0, size_bytes: '1073741824', region_size_bytes: 65536 }] },
  });
  t.is(hello.kind, 'hello');
  t.like(hello.hello as object, { group: 'db', epoch: '3', applied_seq: '41', durable_seq: '40', up_to_date: true });
  t.like(secondaryRoundTrip({ ack: { epoch: '3', applied_seq: '100', durable_seq: '96' } }), { kind: 'ack', ack: { epoch: '3', applied_seq: '100', durable_seq: '96' } });
  t.like(secondaryRoundTrip({ heartbeat: { epoch: '3', sent_at_us: '123456789', echo_sent_at_us: '123450000', echo_held_us: '20' } }),
    { kind: 'heartbeat', heartbeat: { sent_at_us: '123456789', echo_sent_at_us: '123450000', echo_held_us: '20', last_seq: '0' } });
  t.like(primaryRoundTrip({ refusal: { epoch_seen: '2', epoch_current: '3', reason: 'OLD_EPOCH', message: 'epoch 2 is over' } }),
    { kind: 'refusal', refusal: { epoch_seen: '2', epoch_current: '3', reason: 'OLD_EPOCH' } });
  const bitmap = Buffer.from([0b1000_0001, 0, 0xff]);
  const rr = secondaryRoundTrip({ resync_request: { epoch: '3', volume: 1, region_size_bytes: 65536, full: false, dirty_bitmap: bitmap } });
  t.deepEqual((rr.resync_request as { dirty_bitmap: Buffer }).dirty_bitmap, bitmap);
  const sums = secondaryRoundTrip({ checksums: { epoch: '3', request_id: '9', volume: 0, region_size_bytes: 65536, first_region: '16', crc32c: [0, 0xffffffff, 12345], at_seq: '77' } });
  t.deepEqual((sums.checksums as { crc32c: number[] }).crc32c, [0, 0xffffffff, 12345]);
  t.like(primaryRoundTrip({ checksum_request: { epoch: '3', request_id: '9', purpose: 'verify', volume: 0, region_size_bytes: 65536, first_region: '16', region_count: 3, after_seq: '77' } }),
    { kind: 'checksum_request', checksum_request: { purpose: 'verify', first_region: '16', region_count: 3 } });
  t.like(primaryRoundTrip({ welcome: { epoch: '3', site: 'alpha', resume_seq: '42', resync_needed: true, full_resync: false } }),
    { kind: 'welcome', welcome: { resume_seq: '42', resync_needed: true } });
});
