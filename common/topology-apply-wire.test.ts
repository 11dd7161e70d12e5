// ApplyTopology requests are checked field by field before an agent or the witness acts on them.
import test from 'ava';
import { checkApplyRequest, topologyTextBytesMax } from './topology-apply-wire.ts';

const good = { cluster: 'demo', version: '4', text: 'apiVersion: metrocluster/v1\n', file: '/etc/metro/topology.yaml', force: false, phase: 'PREPARE' };

test('a well-formed request is read as typed values', (t) => {
  t.deepEqual(checkApplyRequest(good), { cluster: 'demo', version: 4, text: good.text, file: good.file, force: false, phase: 'prepare' });
  t.like(checkApplyRequest({ ...good, force: true, phase: 'FINISH' }), { force: true, phase: 'finish' });
});

const bad: Array<[string, Record<string, unknown>, RegExp]> = [
  ['empty cluster', { cluster: '' }, /cluster/],
  ['version 0', { version: '0' }, /version/],
  ['version past 2^53', { version: '9007199254740993' }, /version/],
  ['version not a number', { version: '4a' }, /version/],
  ['relative file', { file: 'topology.yaml' }, /absolute path/],
  ['file with a NUL', { file: '/a\0b' }, /absolute path/],
  ['oversized text', { text: 'x'.repeat(topologyTextBytesMax + 1) }, /at most/],
  ['unknown phase', { phase: 'APPLY_PHASE_UNSPECIFIED' }, /phase/],
];
for (const [name, over, message] of bad) {
  test(`refused: ${name}`, (t) => {
    const r = checkApplyRequest({ ...good, ...over });
    t.true('refused' in r && r.refused);
    if ('refused' in r) t.regex(r.message, message);
  });
}
