// The witness's gRPC handlers of arbitration (MetroWitness.Arbitrate and ArbitrateBatch) over the
// WitnessService, and the mapping of a call's failure to a status with a reason. An agent speaks for
// its own site only; a malformed request is refused with its reason, never a crash.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../common/log.ts';
import type { LogLimiter } from '../common/log-limiter.ts';
import { refusalStatus } from '../common/grpc-validate.ts';
import { callerIdentity } from '../common/tls/grpc-security.ts';
import { identityUri } from '../common/tls/identity.ts';
import { InvalidWitnessRequest, type WitnessService } from './witness-service.ts';
import { batchRequestsMax, outcomeToWire, requestFromWire, replyToWire } from './arbiter-wire.ts';

export type Callback = (err: grpc.ServiceError | null, reply?: object) => void;

/** A request refused for what it holds, in the bounded log of refusals. */
function logRefused(refusals: LogLimiter, call: grpc.ServerUnaryCall<unknown, unknown>, reason: string): void {
  refusals.warn('witness call refused', { call: call.getPath(), peer: call.getPeer(), reason });
}

/** Maps a refused or failed call to a gRPC status with a reason; never crashes the witness. */
export function answer<T extends object>(cb: Callback, work: () => Promise<T>, log: Logger, refusals: LogLimiter, call: grpc.ServerUnaryCall<unknown, unknown>): void {
  // A throw before the first await (a malformed message) is a refusal too, never a crash.
  Promise.resolve().then(work).then(
    (reply) => cb(null, reply),
    (err: unknown) => {
      const fail = (code: grpc.status, details: string): void => cb(refusalStatus(code, details));
      if (err instanceof InvalidWitnessRequest) {
        logRefused(refusals, call, err.message);
        return fail(grpc.status.INVALID_ARGUMENT, err.message);
      }
      log.error('arbitration failed', { error: err instanceof Error ? err.message : String(err) });
      fail(grpc.status.INTERNAL, 'the witness could not record the decision');
    },
  );
}

/** Refuses (and logs) a call of an agent that asks for another site than its own; true if refused. */
function refuseForeign(call: grpc.ServerUnaryCall<unknown, unknown>, method: string, sites: readonly unknown[], cb: Callback, refusals: LogLimiter): boolean {
  // The access table let any agent of the topology in; each speaks for itself.
  const caller = callerIdentity(call);
  if (caller?.kind !== 'agent') return false;
  const foreign = sites.find((s) => String(s) !== caller.site);
  if (foreign === undefined) return false;
  const details = `permission denied: agent ${caller.site} may not arbitrate for site ${String(foreign).slice(0, 64)}`;
  refusals.warn('call refused', { method, caller: identityUri(caller), peer: call.getPeer(), reason: details });
  cb(refusalStatus(grpc.status.PERMISSION_DENIED, details));
  return true;
}

export function arbitrationHandlers(service: WitnessService, log: Logger, refusals: LogLimiter) {
  return {
    Arbitrate: (call: grpc.ServerUnaryCall<Record<string, any>, object>, cb: Callback): void => {
      if (refuseForeign(call, 'Arbitrate', [call.request.site], cb, refusals)) return;
      answer(cb, async () => replyToWire(await service.arbitrate(requestFromWire(call.request))), log, refusals, call);
    },
    ArbitrateBatch: (call: grpc.ServerUnaryCall<{ requests?: Array<Record<string, any>> }, object>, cb: Callback): void => {
      const requests = call.request.requests ?? [];
      if (refuseForeign(call, 'ArbitrateBatch', requests.map((q) => q.site), cb, refusals)) return;
      answer(cb, async () => {
        if (requests.length > batchRequestsMax) throw new InvalidWitnessRequest(`a batch holds at most ${batchRequestsMax} requests, not ${requests.length}`);
        const outcomes = await service.arbitrateBatch(requests.map(requestFromWire));
        for (const o of outcomes) if ('invalid' in o) logRefused(refusals, call, o.invalid);
        return { outcomes: outcomes.map(outcomeToWire) };
      }, log, refusals, call);
    },
  };
}
