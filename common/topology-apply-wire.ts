// The wire side of a topology apply (topology.proto) shared by the agent and the witness: the
// request checked field by field before anything acts on it, and the outcomes an apply step has.
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
  if (typeof q.cluster !== 'string' || q.cluster.length === 0 || q.cluster.length > 223) return bad('cluster must be a name of 1 to 223 characters');
  const version = Number(q.version);
  if (typeof q.version !== 'string' || !/^[0-9]{1,16}$/.test(q.version) || !Number.isSafeInteger(version) || version < 1) return bad('version must be an integer from 1 to 2^53-1');
  if (typeof q.text !== 'string' || Buffer.byteLength(q.text) > topologyTextBytesMax) return bad(`the topology text must be at most ${topologyTextBytesMax} bytes`);
  if (typeof q.file !== 'string' || !q.file.startsWith('/') || Buffer.byteLength(q.file) > pathBytesMax || q.file.includes('\0')) return bad('file must be an absolute path');
  const phase = phases[String(q.phase)];
  if (!phase) return bad('phase must be PREPARE, COMMIT or FINISH');
  return { cluster: q.cluster, version, text: q.text, file: q.file, force: q.force === true, phase };
}

