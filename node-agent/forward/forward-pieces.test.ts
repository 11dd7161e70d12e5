import test from 'ava';
import { Assembly, EventBatcher, commandPieces, messageBytesMax, pieceBytesMax, pieceEvents, piecesOf, resultPieces, sized, takeMessage } from './forward-pieces.ts';

test('pieces: small data is one piece, large data is cut into pieces that join back', (t) => {
  const small = Buffer.alloc(4096, 1);
  t.deepEqual(piecesOf(small), [small]);
  const big = Buffer.alloc(2 * pieceBytesMax + 17);
  for (let i = 0; i < big.length; i++) big[i] = i % 251;
  const pieces = piecesOf(big);
  t.deepEqual(pieces.map((p) => p.length), [pieceBytesMax, pieceBytesMax, 17]);
  const a = new Assembly(pieces[0], big.length);
  t.is(a.add(pieces[1]), undefined);
  const whole = a.add(pieces[2]);
  t.true(Array.isArray(whole) && Buffer.concat(whole).equals(big));
  t.regex(String(new Assembly(pieces[0], pieceBytesMax + 1).add(pieces[1])), /carry/);
});

test('messages: events fill a message up to its byte bound, one event alone may pass it, order kept', (t) => {
  const q = [sized({ n: 1 }, pieceBytesMax), sized({ n: 2 }, pieceBytesMax), sized({ n: 3 }, pieceBytesMax), sized({ n: 4 }, pieceBytesMax), sized({ n: 5 })];
  t.deepEqual(takeMessage(q), [{ n: 1 }, { n: 2 }, { n: 3 }]);
  t.deepEqual(takeMessage(q), [{ n: 4 }, { n: 5 }]);
  t.is(q.length, 0);
  const huge = [sized({ n: 6 }, messageBytesMax * 2), sized({ n: 7 })];
  t.deepEqual(takeMessage(huge), [{ n: 6 }]);
  t.deepEqual(takeMessage(huge), [{ n: 7 }]);
});

test('piece events: parts travel as they are (cut only past the piece size), the head carries the first and the whole length', (t) => {
  const parts = [Buffer.alloc(4096, 1), Buffer.alloc(pieceBytesMax + 8, 2), Buffer.alloc(512, 3)];
  const events = pieceEvents(commandPieces, '7', { id: '7', has_data_out: true }, parts).map((e) => e.event as Record<string, any>);
  t.is(events.length, 4);
  t.is(events[0].command.data_out, parts[0], 'the first part itself, not a copy');
  t.is(events[0].command.data_out_total, 4096 + pieceBytesMax + 8 + 512);
  t.true(events.every((e) => (e.command?.data_out ?? e.command_data.data).length <= pieceBytesMax));
  t.deepEqual(events.slice(1).map((e) => e.command_data.id), ['7', '7', '7']);
  const a = new Assembly(events[0].command.data_out, events[0].command.data_out_total);
  let whole;
  for (const e of events.slice(1)) whole = a.add(e.command_data.data);
  t.true(Array.isArray(whole) && Buffer.concat(whole).equals(Buffer.concat(parts)));
  // No data: the message alone, as it is.
  const head = { id: '8', data_in: Buffer.alloc(0), has_data_in: true };
  t.deepEqual(pieceEvents(resultPieces, '8', head, []).map((e) => e.event), [{ result: head }]);
  t.deepEqual(pieceEvents(resultPieces, '8', head, [Buffer.alloc(0)]).map((e) => e.event), [{ result: head }]);
});

test('batcher: one turn\'s events in one message; a full stream holds them until it drains; a reset drops them', async (t) => {
  const written: unknown[][] = [];
  let room = true;
  let ready = false;
  const b = new EventBatcher({ ready: () => ready, write: (m) => { written.push((m.batch as { events: unknown[] }).events); return room; } });
  const turn = () => new Promise((r) => setImmediate(r));
  b.push(sized({ n: 1 }));
  await turn();
  t.deepEqual(written, [], 'nothing before the stream is ready');
  ready = true;
  b.flush();
  b.push(sized({ n: 2 }));
  b.push(sized({ n: 3 }));
  await turn();
  t.deepEqual(written, [[{ n: 1 }], [{ n: 2 }, { n: 3 }]]);
  room = false;
  b.push(sized({ n: 4 }));
  await turn();
  t.true(b.blocked);
  b.push(sized({ n: 5 }));
  await turn();
  t.is(written.length, 3, 'blocked: the next event waits');
  room = true;
  b.drained();
  t.false(b.blocked);
  t.deepEqual(written.at(-1), [{ n: 5 }]);
  b.push(sized({ n: 6 }));
  b.reset();
  await turn();
  t.is(written.length, 4, 'reset: the queued event is dropped');
});
