// The drill's RPO as a table: the old primary's status samples through the switchover and the
// probe's read-back in, the figure, whether data was at risk and what the basis says, out.
import test from 'ava';
import { measureRpo, type HandoverSample } from './rpo-measure.ts';
import type { ProbeAck } from '../../common/probe/io-probe.ts';

const block = Buffer.alloc(512, 0x42);
const other = Buffer.alloc(512, 0x17);

/** A sample at `at` ms: alpha primary in the drill's epoch unless told otherwise, sync, beta up-to-date, nothing in flight. */
const at = (sentAtMs: number, o: Partial<HandoverSample> = {}): HandoverSample => ({
  sentAtMs, primary: true, handingOver: false, mode: 'sync', secondary: 'up-to-date', attached: true, lagBytes: 0, lagMs: 0, ...o,
});
const gone = (sentAtMs: number): HandoverSample => at(sentAtMs, { primary: false, mode: '', secondary: '', lagBytes: 0 });

/** Probe writes acknowledged at these times, all with `block`. */
const acks = (...times: number[]) => (tMs: number): ProbeAck | null => {
  const t = times.filter((x) => x < tMs).pop();
  return t === undefined ? null : { atMs: t, site: 'beta', data: block };
};

interface Row {
  title: string;
  samples: HandoverSample[];
  ackBefore?: (tMs: number) => ProbeAck | null;
  readAtNew?: Buffer | null;
  rpoMs: number | null;
  atRisk: boolean;
  readBack: 'identical' | 'differs' | 'not run';
  basis: RegExp;
}

const rows: Row[] = [
  {
    title: 'sync, drained at the handover, read-back identical: 0 ms',
    samples: [at(0), at(20, { lagBytes: 4096, lagMs: 1 }), at(40, { handingOver: true }), gone(60)],
    ackBefore: acks(5, 30), readAtNew: block, rpoMs: 0, atRisk: false, readBack: 'identical',
    basis: /^measured at alpha's mirror at the handover \(its last status as primary, with its writes drained and new I\/O held, at most 20 ms before it named another primary\): sync mode, beta up-to-date, 0 bytes not yet acknowledged by beta; the probe's last write acknowledged at alpha \(through beta's portal, 10 ms before that status\) reads back identically at beta$/,
  },
  {
    title: 'sync with bytes in flight at the last sample: none acknowledged to a host, 0 ms',
    samples: [at(0), at(20, { lagBytes: 8192, lagMs: 2 }), gone(45)],
    ackBefore: acks(10), readAtNew: block, rpoMs: 0, atRisk: false, readBack: 'identical',
    basis: /before the drain, at most 25 ms before it named another primary\): sync mode, beta up-to-date, 8192 bytes not yet acknowledged by beta \(the oldest 2 ms old\), none of them acknowledged to a host/,
  },
  {
    title: 'async with nothing unacknowledged: 0 ms',
    samples: [at(0, { mode: 'async', handingOver: true }), gone(20)],
    ackBefore: acks(-5), readAtNew: block, rpoMs: 0, atRisk: false, readBack: 'identical',
    basis: /async mode, beta up-to-date, 0 bytes not yet acknowledged by beta;/,
  },
  {
    title: 'async with acknowledged writes not on the secondary: data at risk, the lag in ms',
    samples: [at(0, { mode: 'async', lagBytes: 65536, lagMs: 119.2 }), gone(20)],
    ackBefore: acks(-1), readAtNew: block, rpoMs: 120, atRisk: true, readBack: 'identical',
    basis: /^DATA AT RISK: measured at .*async mode, 65536 bytes not yet acknowledged by beta \(the oldest 119 ms old\), acknowledged to hosts already;/,
  },
  {
    title: 'secondary outdated at the handover: at risk, extent unknown',
    samples: [at(0, { secondary: 'outdated', attached: false }), gone(20)],
    ackBefore: acks(-1), readAtNew: block, rpoMs: null, atRisk: true, readBack: 'identical',
    basis: /^DATA AT RISK: .*alpha reported its secondary beta outdated \(detached\): the writes alpha acknowledged alone are not on beta, and their extent is not known here/,
  },
  {
    title: 'the probe block reads back differently: at risk, at least the span since that write',
    samples: [at(0), at(20, { handingOver: true }), gone(40)],
    ackBefore: acks(3), readAtNew: other, rpoMs: 17, atRisk: true, readBack: 'differs',
    basis: /^DATA AT RISK: .*reads back differently at beta \(a lost write, or a host wrote the probe's block meanwhile\)$/,
  },
  {
    title: 'no probe write acknowledged before the handover: the lag alone',
    samples: [at(10, { handingOver: true }), gone(30)],
    ackBefore: acks(), readAtNew: block, rpoMs: 0, atRisk: false, readBack: 'not run',
    basis: /no probe write was acknowledged at alpha before the handover: the read-back did not run$/,
  },
  {
    title: 'not read at the new primary yet (after the switchover phase): the lag alone',
    samples: [at(0), gone(20)],
    ackBefore: acks(-3), readAtNew: null, rpoMs: 0, atRisk: false, readBack: 'not run',
    basis: /the probe block was not read at beta: the read-back did not run$/,
  },
  {
    title: 'the handover never seen in the samples: no window stated',
    samples: [at(0), at(20, { handingOver: true })],
    ackBefore: acks(-3), readAtNew: block, rpoMs: 0, atRisk: false, readBack: 'identical',
    basis: /\(its last status as primary, with its writes drained and new I\/O held\): sync mode/,
  },
  {
    title: 'no ack mode reported: not measured',
    samples: [at(0, { mode: '' }), gone(20)],
    ackBefore: acks(-3), readAtNew: block, rpoMs: null, atRisk: false, readBack: 'identical',
    basis: /no ack mode reported \(none\)/,
  },
  {
    title: 'the old primary never answered as primary: not measured',
    samples: [gone(0)],
    ackBefore: acks(-3), readAtNew: block, rpoMs: null, atRisk: false, readBack: 'not run',
    basis: /^not measured: alpha never answered its status as primary while the switchover ran$/,
  },
];

for (const row of rows) {
  test(`RPO: ${row.title}`, (t) => {
    const m = measureRpo({ from: 'alpha', to: 'beta', samples: row.samples, ackBefore: row.ackBefore ?? acks(), readAtNew: row.readAtNew ?? null });
    t.is(m.rpoMs, row.rpoMs);
    t.is(m.atRisk, row.atRisk);
    t.is(m.evidence.atRisk, row.atRisk);
    t.is(m.evidence.readBack, row.readBack);
    t.regex(m.basis, row.basis);
  });
}

test('RPO evidence: the handover sample as reported, and the window to the first status naming another primary', (t) => {
  const m = measureRpo({
    from: 'alpha', to: 'beta', samples: [at(0), at(21, { handingOver: true, lagBytes: 0, lagMs: 0.4 }), gone(44), gone(65)],
    ackBefore: acks(1), readAtNew: block,
  });
  t.deepEqual(m.evidence.handover, { mode: 'sync', secondary: 'up-to-date', lagBytes: 0, lagMs: 0, drained: true, windowMs: 23 });
});

test('RPO: the read-back uses the last write acknowledged before the handover sample was sent', (t) => {
  const asked: number[] = [];
  measureRpo({
    from: 'alpha', to: 'beta', samples: [at(0), at(20), at(40), gone(60)],
    ackBefore: (tMs) => { asked.push(tMs); return null; }, readAtNew: block,
  });
  t.deepEqual(asked, [40]);
});
