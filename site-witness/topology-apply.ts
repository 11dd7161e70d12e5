// Topology changes at the witness (topology.proto): it records each applied version durably and, at
// COMMIT, registers the new topology's groups (RegisterGroup is idempotent and updates a group's
// lease and data-loss settings). A restart registers the recorded topology's groups, not the file's.
import fs from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../common/log.ts';
import { DaemonError } from '../common/daemon.ts';
import { formatIssue, parseTopology, type Topology } from '../common/topology/index.ts';
import { applyGate, checkApplyRequest, type ApplyOutcome, type ApplyRequest } from '../common/topology-apply-wire.ts';
import { refusalStatus } from '../common/grpc-validate.ts';
import type { RecordStore } from './record-store.ts';

export async function witnessTopology(store: RecordStore, fromFile: Topology, log: Logger): Promise<Topology> {
  const rec = store.topology();
  if (!rec) {
    await store.saveTopology({ version: 1, text: await fs.readFile(fromFile.file, 'utf8'), file: fromFile.file, appliedAt: new Date().toISOString() });
    return fromFile;
  }
  const parsed = parseTopology(rec.text, rec.file);
  if (!parsed.ok) throw new DaemonError(`the topology version ${rec.version} recorded by the witness does not parse: ${parsed.errors.map(formatIssue).join('; ')}`);
  if (rec.pendingPhase) await store.saveTopology({ ...rec, pendingPhase: undefined });
  if (parsed.topology.name !== fromFile.name) throw new DaemonError(`this witness data directory serves cluster "${parsed.topology.name}", not "${fromFile.name}"`);
  log.info('serving the applied topology', { version: rec.version });
  return parsed.topology;
}

export function witnessTopologyService(ctx: {
  store: RecordStore;
  cluster: string;
  /** Registers (or updates) every group of a topology. */
  register: (t: Topology) => Promise<void>;
  log: Logger;
}): grpc.UntypedServiceImplementation {
  type Callback = (err: grpc.ServiceError | null, reply?: object) => void;
  const fail = (cb: Callback, code: grpc.status, details: string): void => cb(refusalStatus(code, details));
  let queue: Promise<unknown> = Promise.resolve();

  const step = async (q: ApplyRequest): Promise<ApplyOutcome> => {
    const refuse = (message: string, code: 'invalid' | 'precondition' = 'precondition'): ApplyOutcome => ({ refused: true, code, message });
    const rec = ctx.store.topology()!;
    const gate = applyGate(q, { who: 'the witness', cluster: ctx.cluster, applied: rec });
    if (!('run' in gate)) return gate;
    if (gate.run === 'commit') {
      const parsed = parseTopology(q.text, rec.file);
      if (!parsed.ok) return refuse('the prepared topology no longer parses', 'invalid');
      await ctx.register(parsed.topology);
      await ctx.store.saveTopology({ ...rec, pendingPhase: 'commit' });
      return { refused: false, version: rec.version, done: parsed.topology.groups.map((g) => `witness: group ${g.name} registered (lease ${parsed.topology.failover.leaseMs} ms, maxDataLossMs ${parsed.topology.failover.maxDataLossMs})`) };
    }
    if (gate.run === 'finish') {
      await ctx.store.saveTopology({ ...rec, pendingPhase: undefined });
      return { refused: false, version: rec.version, done: [] };
    }
    // Relative paths resolve against the witness's own topology file (as at the agents).
    const parsed = parseTopology(q.text, rec.file);
    if (!parsed.ok) return refuse(`the topology is invalid: ${parsed.errors.slice(0, 5).map(formatIssue).join('; ')}`, 'invalid');
    if (parsed.topology.name !== ctx.cluster) return refuse(`the topology names cluster "${parsed.topology.name}"`, 'invalid');
    await ctx.store.saveTopology({ version: q.version, text: q.text, file: rec.file, appliedAt: new Date().toISOString(), pendingPhase: 'prepare' });
    return { refused: false, version: q.version, done: [`witness: version ${q.version} recorded`] };
  };

  return {
    GetTopology: (_call: unknown, cb: Callback) => {
      const s = ctx.store.topology()!;
      cb(null, { cluster: ctx.cluster, version: String(s.version), text: s.text, file: s.file, applied_at: s.appliedAt, pending_phase: s.pendingPhase ?? '' });
    },
    ApplyTopology: (call: grpc.ServerUnaryCall<Record<string, unknown>, object>, cb: Callback) => {
      const q = checkApplyRequest(call.request);
      if ('refused' in q) return fail(cb, grpc.status.INVALID_ARGUMENT, q.message);
      const run = queue.then(() => step(q));
      queue = run.catch(() => undefined);
      run.then((r) => {
        if (r.refused) return fail(cb, r.code === 'invalid' ? grpc.status.INVALID_ARGUMENT : grpc.status.FAILED_PRECONDITION, r.message);
        ctx.log.info('topology apply step done', { version: r.version, phase: q.phase });
        cb(null, { version: String(r.version), done: r.done });
      }, (err: Error) => {
        ctx.log.error('topology apply failed', { version: q.version, phase: q.phase, error: err.message });
        fail(cb, grpc.status.INTERNAL, `the apply failed at the witness: ${err.message}`);
      });
    },
  };
}
