import test from 'ava';
import { metroCompanyId, volumeIdentity } from './identity.ts';

test('the same names give the same identity (both sites compute it independently)', (t) => {
  const a = volumeIdentity({ cluster: 'demo', group: 'db', volume: 'data' });
  const b = volumeIdentity({ cluster: 'demo', group: 'db', volume: 'data' });
  t.deepEqual(a.naa, b.naa);
  t.is(a.serial, b.serial);
});

test('any differing name gives a different NAA and serial, including shifted separators', (t) => {
  const ids = [
    volumeIdentity({ cluster: 'demo', group: 'db', volume: 'data' }),
    volumeIdentity({ cluster: 'demo', group: 'db', volume: 'log' }),
    volumeIdentity({ cluster: 'demo', group: 'vm', volume: 'data' }),
    volumeIdentity({ cluster: 'prod', group: 'db', volume: 'data' }),
    volumeIdentity({ cluster: 'demo', group: 'dbd', volume: 'ata' }),
  ];
  t.is(new Set(ids.map((i) => i.naa.toString('hex'))).size, ids.length);
  t.is(new Set(ids.map((i) => i.serial)).size, ids.length);
});

test('NAA designator is 16 bytes of type 6 carrying the company id', (t) => {
  const { naa, serial } = volumeIdentity({ cluster: 'c', group: 'g', volume: 'v' });
  t.is(naa.length, 16);
  t.is(naa[0] >> 4, 6);
  const cid = ((naa[0] & 0x0f) << 20) | (naa[1] << 12) | (naa[2] << 4) | (naa[3] >> 4);
  t.is(cid, metroCompanyId);
  t.regex(serial, /^[0-9A-F]{24}$/);
});
