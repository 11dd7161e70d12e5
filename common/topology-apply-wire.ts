// The wire side of a topology apply (topology.proto) shared by the agent and the witness: the
// request checked field by field before anything acts on it, the outcomes an apply step has, and
// the gate that decides, from what a daemon has recorded, whether a step runs, was done, or is refused.
import { checkName, checkU64, safeU64 } from './grpc-validate.ts';

/** Largest topology text an apply carries. */
export const topologyTextBytesMax = 1024 * 1024;
const pathBytesMax = 4096;

export type ApplyPhase = 'prepare' | 'commit' | 'finish';

export interface ApplyRequest {
  cluster: string;
  version: number;
  text: string;
  file: string;
  force: boolean;
  phase: ApplyPhase;
}

/** Why an apply is refused before anything changed; `code` picks the gRPC status at the edge. */
export type ApplyRefusal = { refused: true; code: 'invalid' | 'precondition'; message: string };
export type ApplyOutcome = { refused: false; version: number; done: string[] } | ApplyRefusal;

/** Checks a request's fields before anything reads them further (hostile or broken callers). */
export function checkApplyRequest(q: Record<string, unknown>): ApplyRequest | ApplyRefusal {
  const bad = (message: string): ApplyRefusal => ({ refused: true, code: 'invalid', message });
  const phases: Record<string, ApplyPhase> = { PREPARE: 'prepare', COMMIT: 'commit', FINISH: 'finish' };
  const field = checkName('cluster', q.cluster) ?? checkU64('version', q.version, Number.MAX_SAFE_INTEGER, 1);
  if (field !== undefined) return bad(field);
  const cluster = q.cluster as string;
  const version = safeU64(q.version)!;
  if (typeof q.text !== 'string' || Buffer.byteLength(q.text) > topologyTextBytesMax) return bad(`the topology text must be at most ${topologyTextBytesMax} bytes`);
  if (typeof q.file !== 'string' || !q.file.startsWith('/') || Buffer.byteLength(q.file) > pathBytesMax || q.file.includes('\0')) return bad('file must be an absolute path');
  const phase = phases[String(q.phase)];
  if (!phase) return bad('phase must be PREPARE, COMMIT or FINISH');
  return { cluster, version, text: q.text, file: q.file, force: q.force === true, phase };
}

/** What a daemon has recorded of the topology it serves; `pendingPhase` is the last phase done of a version not finished. */
export interface AppliedVersion {
  readonly version: number;
  readonly text: string;
  readonly pendingPhase?: 'prepare' | 'commit';
}

/** A step to run (`run`), or its outcome decided without running anything. */
export type ApplyGate = ApplyOutcome | { run: ApplyPhase };

/**
 * Which step of an apply a daemon runs, from its record alone. A phase repeated (metroctl completing
 * an interrupted apply) is done, not run again, except a PREPARE left as the last phase; a PREPARE of
 * another version waits until the version half applied is completed. `who` opens the refusals
 * ("site alpha", "the witness").
 */
export function applyGate(q: ApplyRequest, at: { who: string; cluster: string; applied: AppliedVersion }): ApplyGate {
  const refuse = (message: string): ApplyRefusal => ({ refused: true, code: 'precondition', message });
  const { who, applied: rec } = at;
  if (q.cluster !== at.cluster) return refuse(`${who} serves cluster "${at.cluster}", not "${q.cluster}"`);
  const doneBefore: ApplyOutcome = { refused: false, version: rec.version, done: [] };
  if (q.phase !== 'prepare') {
    if (q.version !== rec.version || q.text !== rec.text) return refuse(`${who} has not prepared version ${q.version} of this topology (it holds version ${rec.version})`);
    const expected = q.phase === 'commit' ? 'prepare' : 'commit';
    return rec.pendingPhase === expected ? { run: q.phase } : doneBefore;
  }
  const same = q.version === rec.version && q.text === rec.text;
  // A prepare followed by a commit, or the whole version, is done; a prepare left last runs again.
  if (same) return rec.pendingPhase === 'prepare' ? { run: 'prepare' } : doneBefore;
  if (q.version <= rec.version) return refuse(`version ${q.version} is not newer than version ${rec.version}, which ${who} already applied`);
  if (rec.pendingPhase) return refuse(`${who} has version ${rec.version} half applied (${rec.pendingPhase} done): complete it first`);
  return { run: 'prepare' };
}

