import test from 'ava';
import { Assembly, messageBytesMax, pieceBytesMax, piecesOf, sized, takeMessage } from './forward-pieces.ts';

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
