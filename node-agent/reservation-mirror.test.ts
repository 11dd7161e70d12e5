// The persistent-reservations state record: the payload round-trips, and what is not a PrState is
// refused with a reason (it comes from the peer site's stream).
import test from 'ava';
import { decodeReservations, encodeReservations } from './reservation-mirror.ts';
import type { PrState } from './scsi/persistent-reservations.ts';

const state: PrState = {
  generation: 7, aptpl: true,
  registrations: [{ key: '00000000000000b1', initiatorPort: 'iqn.2026-11.org.example:b,i,0x000000000001', relativeTargetPortId: 1, allTargetPorts: false }],
  reservation: { type: 1, holder: { initiatorPort: 'iqn.2026-11.org.example:b,i,0x000000000001', relativeTargetPortId: 1 } },
} as unknown as PrState;

test('a reservation state round-trips through its payload', (t) => {
  const d = decodeReservations(encodeReservations(state));
  t.true(d.ok);
  if (d.ok) t.deepEqual(d.state, state);
});

test('payloads that are not a reservation state are refused with a reason', (t) => {
  for (const [what, payload] of [
    ['not JSON', Buffer.from('{"generation":')],
    ['an array', Buffer.from('[]')],
    ['a bad key', Buffer.from(JSON.stringify({ ...state, registrations: [{ ...state.registrations[0], key: 'zz' }] }))],
    ['an unknown reservation type', Buffer.from(JSON.stringify({ ...state, reservation: { ...state.reservation, type: 99 } }))],
  ] as const) {
    const d = decodeReservations(payload);
    t.false(d.ok, what);
    if (!d.ok) t.true(d.reason.length > 0, what);
  }
});
