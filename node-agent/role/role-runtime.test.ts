// The role runtime's own bookkeeping around the pure role machine: a new epoch or primary closes the
// group's write gate until it is durable, and only until then. Edges: the real arbiter as the
// witness, persists that complete when the test says.
import test from 'ava';
import { RoleRuntime, roleTiming, type RoleEdges } from './role-runtime.ts';
import { arbiterStep, newArbiter, type ArbiterInput } from '../../site-witness/arbiter.ts';
import type { WitnessRequest } from '../../site-witness/arbiter-messages.ts';
import { createLogger } from '../../common/log.ts';

const key = { cluster: 'test', group: 'web' };

test('a persist of the same epoch queued while a new role is written leaves the gate open once both are written', async (t) => {
  const nowMs = 1000;
  let arbiter = newArbiter(nowMs);
  const witnessStep = (input: ArbiterInput) => {
    const s = arbiterStep(arbiter, input);
    arbiter = s.state;
    return s.actions;
  };
  witnessStep({ type: 'register', nowMs, registration: { key, sites: ['alpha', 'beta'], preferredSite: 'beta', leaseMs: 2000, maxDataLossMs: 0 } });
  const unwritten: Array<() => void> = [];
  const edges: RoleEdges = {
    now: () => nowMs,
    persist: () => new Promise<void>((resolve) => unwritten.push(resolve)),
    saveDivergentWrites: async () => undefined,
    applied: () => undefined,
    witness: {
      arbitrate: async (request: WitnessRequest) => {
        const reply = witnessStep({ type: 'request', nowMs, request }).find((a) => a.type === 'reply');
        return reply?.type === 'reply' ? { ok: true as const, reply: reply.reply } : { ok: false as const, reason: 'no reply' };
      },
      register: async () => ({ ok: true }),
      close: () => undefined,
    },
    exchange: async () => 'unreachable' as const,
    log: createLogger({ component: 'role-runtime-test', console: false }),
  };
  const runtime = new RoleRuntime(edges, key.cluster);
  // A group added while the agent runs (topology apply): its restored role is being written when
  // the mirror reports the secondary behind, which makes the machine persist a notice's sequence
  // of the same epoch and primary behind it.
  const added = runtime.addGroup({ key, site: 'beta', peer: 'alpha', preferredSite: 'beta', timing: roleTiming(2000) }, null);
  runtime.mirror('web', false, null);
  t.is(runtime.gate('web'), 'closed', 'closed while the new role is not durable');
  let writes = 0;
  for (let turn = 0; turn < 50 && (unwritten.length > 0 || turn < 5); turn++) {
    while (unwritten.length > 0) {
      unwritten.shift()!();
      writes++;
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  await added;
  t.true(writes >= 2, `persists written: ${writes}`);
  // Both written, the witness's lease held and the secondary recorded outdated there: writes go on
  // locally. Before, the second persist left one change counted forever and the gate closed.
  const s = runtime.statusOf('web')!;
  t.true(s.witnessLeaseRemainingMs > 0, JSON.stringify(s));
  t.is(s.secondaryUpToDate, false);
  t.is(runtime.gate('web'), 'local', JSON.stringify(s));
});
