// Field checks of mirror messages at the primary: a valid hello and valid later messages pass; each
// hostile variant is refused with a sentence naming the field.
import test from 'ava';
import { checkHello, checkSecondaryMessage } from './mirror-checks.ts';

const sizes = [1 << 20, 1 << 16];
const hello = {
  cluster: 'c', group: 'db', site: 'beta', epoch: '3', applied_seq: '10', durable_seq: '9', up_to_date: true, has_data: true,
  volumes: sizes.map((s, i) => ({ volume: i, size_bytes: String(s), region_size_bytes: 65536 })),
};

test('a valid hello passes; hostile ones name the field', (t) => {
  t.is(checkHello(hello), undefined);
  const table: Array<[object | undefined, RegExp]> = [
    [undefined, /must be a hello/],
    [{ ...hello, epoch: '18446744073709551615' }, /^hello.epoch/],
    [{ ...hello, applied_seq: '9223372036854775808' }, /^hello.applied_seq/],
    [{ ...hello, durable_seq: '11' }, /durable_seq 11 is past applied_seq 10/],
    [{ ...hello, cluster: '' }, /^hello.cluster is missing/],
    [{ ...hello, site: 's'.repeat(300) }, /^hello.site is longer/],
    [{ ...hello, volumes: [hello.volumes[1], hello.volumes[0]] }, /listed in LUN order/],
    [{ ...hello, volumes: Array.from({ length: 300 }, (_, i) => ({ volume: i, size_bytes: '512', region_size_bytes: 512 })) }, /at most 256/],
    [{ ...hello, volumes: [{ ...hello.volumes[0], region_size_bytes: 0 }, hello.volumes[1]] }, /region_size_bytes 0/],
  ];
  for (const [h, re] of table) t.regex(checkHello(h as never) ?? '', re);
});

test('later messages: acks, heartbeats, refusals, resync requests, checksums', (t) => {
  const ok = [
    { kind: 'ack', ack: { epoch: '3', applied_seq: '5', durable_seq: '5' } },
    { kind: 'heartbeat', heartbeat: { epoch: '3', sent_at_us: '1', echo_sent_at_us: '0', echo_held_us: '0', last_seq: '0', lag_bytes: '0', lag_ms: '0' } },
    { kind: 'refusal', refusal: { epoch_seen: '3', epoch_current: '4', reason: 'OLD_EPOCH', message: 'epoch 3 is over' } },
    { kind: 'resync_request', resync_request: { epoch: '3', volume: 1, region_size_bytes: 65536, full: false, dirty_bitmap: Buffer.alloc(1) } },
    { kind: 'checksums', checksums: { epoch: '3', request_id: '1', volume: 0, region_size_bytes: 65536, first_region: '10', crc32c: [1, 2, 3, 4, 5, 6], at_seq: '0' } },
  ];
  for (const m of ok) t.is(checkSecondaryMessage(m, () => sizes), undefined, m.kind);
  const hostile: Array<[object, RegExp]> = [
    [{ kind: 'ack', ack: { epoch: '3', applied_seq: '5', durable_seq: '6' } }, /past applied_seq/],
    [{ kind: 'heartbeat', heartbeat: { ...ok[1].heartbeat, lag_ms: '18446744073709551615' } }, /heartbeat.lag_ms/],
    [{ kind: 'refusal', refusal: { ...ok[2].refusal, message: 'x'.repeat(5000) } }, /longer than 1024/],
    [{ kind: 'resync_request', resync_request: { ...ok[3].resync_request, volume: 2 } }, /volume 2 does not exist/],
    [{ kind: 'resync_request', resync_request: { ...ok[3].resync_request, dirty_bitmap: Buffer.alloc(2) } }, /dirty_bitmap holds 2 bytes/],
    [{ kind: 'checksums', checksums: { ...ok[4].checksums, crc32c: new Array(7).fill(0) } }, /checksums.crc32c holds 7 items/],
    [{ kind: 'hello', hello }, /second hello/],
    [{}, /no known kind/],
  ];
  for (const [m, re] of hostile) t.regex(checkSecondaryMessage(m as never, () => sizes) ?? '', re);
});
