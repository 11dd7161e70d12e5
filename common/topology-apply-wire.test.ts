// ApplyTopology requests are checked field by field before an agent or the witness acts on them.
import test from 'ava';
import { applyGate, checkApplyRequest, topologyTextBytesMax, type AppliedVersion, type ApplyGate, type ApplyRequest } from './topology-apply-wire.ts';

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

// The gate of an apply step at a daemon holding version 3 (text 'v3'), by the last phase done.
const at = (applied: AppliedVersion) => ({ who: 'site alpha', cluster: 'demo', applied });
const req = (version: number, text: string, phase: ApplyRequest['phase']): ApplyRequest => ({ cluster: 'demo', version, text, file: '/t.yaml', force: false, phase });
const done: ApplyGate = { refused: false, version: 3, done: [] };
const refused = (message: string): ApplyGate => ({ refused: true, code: 'precondition', message });
const gates: Array<[string, ApplyRequest, AppliedVersion, ApplyGate]> = [
  ['prepare of a newer version', req(4, 'v4', 'prepare'), { version: 3, text: 'v3' }, { run: 'prepare' }],
  ['prepare of the pending version again', req(3, 'v3', 'prepare'), { version: 3, text: 'v3', pendingPhase: 'prepare' }, { run: 'prepare' }],
  ['prepare of a version committed', req(3, 'v3', 'prepare'), { version: 3, text: 'v3', pendingPhase: 'commit' }, done],
  ['prepare of the version applied', req(3, 'v3', 'prepare'), { version: 3, text: 'v3' }, done],
  ['prepare of an older version', req(2, 'v2', 'prepare'), { version: 3, text: 'v3' }, refused('version 2 is not newer than version 3, which site alpha already applied')],
  ['prepare over a pending prepare', req(4, 'v4', 'prepare'), { version: 3, text: 'v3', pendingPhase: 'prepare' }, refused('site alpha has version 3 half applied (prepare done): complete it first')],
  ['prepare over a pending commit', req(4, 'v4', 'prepare'), { version: 3, text: 'v3', pendingPhase: 'commit' }, refused('site alpha has version 3 half applied (commit done): complete it first')],
  ['commit after prepare', req(3, 'v3', 'commit'), { version: 3, text: 'v3', pendingPhase: 'prepare' }, { run: 'commit' }],
  ['commit again', req(3, 'v3', 'commit'), { version: 3, text: 'v3', pendingPhase: 'commit' }, done],
  ['finish after commit', req(3, 'v3', 'finish'), { version: 3, text: 'v3', pendingPhase: 'commit' }, { run: 'finish' }],
  ['finish again', req(3, 'v3', 'finish'), { version: 3, text: 'v3' }, done],
  ['commit of a version not prepared', req(4, 'v4', 'commit'), { version: 3, text: 'v3' }, refused('site alpha has not prepared version 4 of this topology (it holds version 3)')],
  ['commit of another text', req(3, 'other', 'commit'), { version: 3, text: 'v3', pendingPhase: 'prepare' }, refused('site alpha has not prepared version 3 of this topology (it holds version 3)')],
  ['another cluster', { ...req(4, 'v4', 'prepare'), cluster: 'other' }, { version: 3, text: 'v3' }, refused('site alpha serves cluster "demo", not "other"')],
];
for (const [name, q, applied, want] of gates) {
  test(`apply gate: ${name}`, (t) => {
    t.deepEqual(applyGate(q, at(applied)), want);
  });
}
