// Mirror window: sequence numbers, natural batching, the byte-bounded window, backpressure as
// values, durable acks, reattach with retransmit or gap; and a seeded run against a model secondary.
import test from 'ava';
import { prng, seedFromEnv } from '../../common/prng.ts';
import { MirrorWindow, mirrorWindowDefaults, type MirrorWindowConfig, type WindowEntry } from './mirror-window.ts';

const KiB = 1024;
const cfg = (over: Partial<MirrorWindowConfig> = {}): MirrorWindowConfig => ({ ...mirrorWindowDefaults, ...over });
const seqs = (batch: WindowEntry<string>[] | undefined) => batch?.map((e) => e.seq);

function attachedWindow(over: Partial<MirrorWindowConfig> = {}): MirrorWindow<string> {
  const w = new MirrorWindow<string>(cfg(over));
  const r = w.attached(0, 0);
  if (r.kind !== 'resume') throw new Error('fresh window must resume');
  return w;
}

test('natural batching: an idle link sends at once, whatever queues meanwhile goes in the next batch', (t) => {
  const w = attachedWindow({ inflightBatchesMax: 1 });
  t.deepEqual(w.push('a', 4 * KiB, 0), { kind: 'queued', seq: 1 });
  t.deepEqual(seqs(w.takeBatch()), [1], 'no waiting for company');
  for (let i = 0; i < 9; i++) w.push(`b${i}`, 4 * KiB, 1);
  t.is(w.takeBatch(), undefined, 'previous batch still in flight');
  t.like(w.ack(1, 0), { kind: 'acked' });
  t.deepEqual(seqs(w.takeBatch()), [2, 3, 4, 5, 6, 7, 8, 9, 10]);
  t.is(w.takeBatch(), undefined, 'nothing left');
});

test('the window is bounded by bytes and entries, released by acks only', (t) => {
  const w = attachedWindow({ inflightBytesMax: 16 * KiB, inflightEntriesMax: 32, inflightBatchesMax: 8 });
  for (let i = 0; i < 10; i++) w.push(`w${i}`, 4 * KiB, 0);
  t.deepEqual(seqs(w.takeBatch()), [1, 2, 3, 4]);
  t.is(w.takeBatch(), undefined);
  t.like(w.stats(), { inflightBytes: 16 * KiB, queuedBytes: 24 * KiB });
  const acked = w.ack(2, 0);
  t.deepEqual(acked.kind === 'acked' ? acked.applied.map((e) => e.payload) : [], ['w0', 'w1']);
  t.deepEqual(seqs(w.takeBatch()), [5, 6]);
  const e = attachedWindow({ inflightEntriesMax: 3, inflightBatchesMax: 8 });
  for (let i = 0; i < 5; i++) e.push('x', 512, 0);
  t.deepEqual(seqs(e.takeBatch()), [1, 2, 3]);
});

test('batches respect their own size limits; an oversized entry travels alone', (t) => {
  const w = attachedWindow({ batchBytesMax: 64 * KiB, batchEntriesMax: 3, inflightBytesMax: 1024 * KiB, inflightBatchesMax: 8 });
  for (let i = 0; i < 5; i++) w.push('s', KiB, 0);
  t.deepEqual(seqs(w.takeBatch()), [1, 2, 3]);
  t.deepEqual(seqs(w.takeBatch()), [4, 5]);
  w.push('big', 200 * KiB, 0);
  w.push('small', KiB, 0);
  t.deepEqual(seqs(w.takeBatch()), [6]);
  t.deepEqual(seqs(w.takeBatch()), [7]);
  const tiny = attachedWindow({ inflightBytesMax: 8 * KiB });
  tiny.push('huge', 100 * KiB, 0);
  t.deepEqual(seqs(tiny.takeBatch()), [1], 'an empty window takes any single entry');
});

test("backpressure: a full queue refuses with a value; write()'s false return holds batches until drain", (t) => {
  const w = attachedWindow({ queuedBytesMax: 16 * KiB, inflightBatchesMax: 1 });
  for (let i = 0; i < 4; i++) t.like(w.push('q', 4 * KiB, 0), { kind: 'queued' });
  t.deepEqual(w.push('q', 4 * KiB, 0), { kind: 'full', queuedBytes: 16 * KiB, queuedBytesMax: 16 * KiB });
  t.is(w.stats().nextSeq, 5, 'a refused push takes no sequence number');
  w.blocked();
  t.is(w.takeBatch(), undefined);
  w.drained();
  t.is(w.takeBatch()?.length, 4);
  t.like(w.push('q', 4 * KiB, 0), { kind: 'queued', seq: 5 });
  const empty = attachedWindow({ queuedBytesMax: 4 * KiB });
  t.like(empty.push('large', 64 * KiB, 0), { kind: 'queued' }, 'an empty queue takes one large entry');
});

test('FUA and flush entries complete on the durable sequence, others on applied', (t) => {
  const w = attachedWindow();
  w.push('plain', 512, 0);
  w.push('fua', 512, 0, { durable: true });
  w.push('flush', 0, 0, { durable: true });
  w.takeBatch();
  const a = w.ack(3, 1);
  if (a.kind !== 'acked') return t.fail();
  t.deepEqual(a.applied.map((e) => e.payload), ['plain', 'fua', 'flush']);
  t.deepEqual(a.durable, []);
  const b = w.ack(3, 2);
  t.deepEqual(b.kind === 'acked' ? b.durable.map((e) => e.payload) : [], ['fua']);
  const c = w.ack(3, 3);
  t.deepEqual(c.kind === 'acked' ? c.durable.map((e) => e.payload) : [], ['flush']);
  t.like(w.ack(2, 1), { kind: 'acked', applied: [], durable: [] }, 'older acks change nothing');
});

test('acks of what was never sent are refused as values', (t) => {
  const w = attachedWindow();
  w.push('a', 512, 0);
  w.push('b', 512, 0);
  t.like(w.ack(1, 0), { kind: 'refused', reason: 'beyond-sent' });
  w.takeBatch();
  t.like(w.ack(1, 2), { kind: 'refused', reason: 'durable-beyond-applied' });
  t.like(w.ack(2, 2), { kind: 'acked' });
});

test('reattach: everything unacknowledged is sent again with the same sequence numbers', (t) => {
  const w = attachedWindow({ inflightBatchesMax: 4 });
  for (let i = 1; i <= 6; i++) w.push(`w${i}`, KiB, i);
  w.takeBatch();
  w.ack(2, 2);
  w.detached();
  t.is(w.takeBatch(), undefined, 'no stream');
  w.push('w7', KiB, 7);
  // The secondary had applied 4 before the stream broke (the ack was lost).
  const r = w.attached(4, 3);
  t.like(r, { kind: 'resume', fromSeq: 5, retransmitEntries: 3 });
  if (r.kind === 'resume') t.deepEqual(r.applied.map((e) => e.seq), [3, 4]);
  t.deepEqual(seqs(w.takeBatch()), [5, 6, 7]);
  t.like(w.lag(10), { lagBytes: 3 * KiB, lagMs: 5, lagEntries: 3 });
});

test('reattach after the secondary lost applied entries: a gap to resync; a peer ahead of us is refused', (t) => {
  const w = attachedWindow();
  w.push('w1', KiB, 0);
  w.push('fua2', KiB, 0, { durable: true });
  w.push('w3', KiB, 0);
  w.takeBatch();
  w.ack(3, 0);
  w.detached();
  w.push('w4', KiB, 0);
  const r = w.attached(1, 1); // restarted: only sequence 1 made it to its disk
  t.like(r, { kind: 'gap', missingFromSeq: 2, missingToSeq: 3, fromSeq: 4 });
  if (r.kind === 'gap') t.deepEqual(r.stranded.map((e) => e.payload), ['fua2']);
  t.deepEqual(seqs(w.takeBatch()), [4]);
  w.detached();
  t.like(w.attached(99, 99), { kind: 'peer-ahead', peerAppliedSeq: 99, lastSentSeq: 4 });
});

test('seeded run against a model secondary: contiguous delivery, bounded memory, every entry acknowledged once', (t) => {
  const seed = seedFromEnv();
  t.log(`seed ${seed}`);
  const rand = prng(seed);
  const config = cfg({ inflightBytesMax: 64 * KiB, inflightEntriesMax: 16, inflightBatchesMax: 2, queuedBytesMax: 256 * KiB, batchBytesMax: 32 * KiB, batchEntriesMax: 8 });
  const w = new MirrorWindow<number>(config);
  w.attached(0, 0);
  let peerApplied = 0; // the model secondary: applies in order, may lose unsynced entries on restart
  let peerDurable = 0;
  let wire: WindowEntry<number>[][] = [];
  const completed = new Set<number>();
  let pushed = 0;
  let connected = true;
  for (let step = 0; step < 20_000; step++) {
    const r = rand();
    if (r < 0.45) {
      const bytes = Math.floor(rand() * 16) * 512;
      const res = w.push(pushed + 1, bytes, step, { durable: rand() < 0.1 });
      if (res.kind === 'queued') t.is(res.seq, ++pushed);
    } else if (r < 0.7 && connected) {
      const b = w.takeBatch();
      if (b) wire.push(b);
    } else if (r < 0.93 && connected && wire.length > 0) {
      for (const e of wire.shift()!) {
        if (e.seq === peerApplied + 1) peerApplied = e.seq;
        else if (e.seq > peerApplied + 1) return t.fail(`sequence ${e.seq} arrived after ${peerApplied}`);
      }
      if (rand() < 0.5) peerDurable = peerApplied;
      const a = w.ack(peerApplied, peerDurable);
      if (a.kind !== 'acked') return t.fail(a.message);
      for (const e of a.applied) { t.false(completed.has(e.seq)); completed.add(e.seq); }
    } else if (r < 0.96 && connected) {
      w.detached();
      wire = [];
      connected = false;
      if (rand() < 0.3) peerApplied = peerDurable; // the secondary restarted
    } else if (!connected) {
      const res = w.attached(peerApplied, peerDurable);
      connected = true;
      if (res.kind === 'gap') peerApplied = res.fromSeq - 1; // resync takes over the missing range
      else if (res.kind === 'resume') for (const e of res.applied) { t.false(completed.has(e.seq)); completed.add(e.seq); }
      else return t.fail('peer ahead');
    }
    const s = w.stats();
    t.true(s.queuedBytes <= config.queuedBytesMax + 16 * 512 || s.queuedEntries <= 1, 'queue bounded');
    if (s.inflightEntries > 1) t.true(s.inflightBytes <= config.inflightBytesMax && s.inflightEntries <= config.inflightEntriesMax, 'window bounded');
    t.true(s.inflightBatches <= config.inflightBatchesMax);
  }
  t.true(completed.size > 1000, `${completed.size} entries acknowledged`);
});
