// Runs the arbiter for the witness daemon: requests are stepped one at a time on the monotonic
// clock, every `persist` action is written to the record store before the reply leaves (the
// arbiter's contract), and malformed requests are refused before they reach the core.
import type { Logger } from '../common/log.ts';
import { nameBytesMax, safeU64 } from '../common/grpc-validate.ts';
import { arbiterStep, restoreArbiter, type ArbiterAction, type ArbiterState, type DurableRecord, type GroupRegistration } from './arbiter.ts';
import type { BatchOutcome, WitnessReply, WitnessRequest } from './arbiter-messages.ts';
import type { RecordStore } from './record-store.ts';

/** A request that never reaches the arbiter, with the reason for the caller. */
export class InvalidWitnessRequest extends Error {
  override name = 'InvalidWitnessRequest';
}

const safe = (n: number): boolean => safeU64(n) !== undefined;
/** A lease longer than this would let a silent primary block failover for too long to be meant. */
export const leaseMsMax = 3_600_000;

/** Why a request may not reach the arbiter, or undefined when it may. */
function requestProblem(r: WitnessRequest): string | undefined {
  const names = [r.key.cluster, r.key.group, r.site];
  if (names.some((s) => s.length === 0 || s.length > nameBytesMax)) return `cluster, group and site must be names of 1 to ${nameBytesMax} characters`;
  if (![r.epoch, r.seq, r.sentAtMs, r.incarnation].every(safe)) return 'epoch, seq, sent_at_ms and incarnation must be integers below 2^53';
  if (r.ask.kind === 'handover' && (r.ask.to.length === 0 || r.ask.to.length > nameBytesMax)) return 'handover needs a site to hand over to';
  if (r.ask.kind === 'epoch-report' && (r.ask.primary.length === 0 || r.ask.primary.length > nameBytesMax)) return 'an epoch report names the primary of its epoch';
  if (r.ask.kind === 'secondary-status' && r.ask.lagMs !== null && !safe(r.ask.lagMs)) return 'lag_ms must be an integer below 2^53';
  return undefined;
}

function checkRegistration(g: GroupRegistration): void {
  const names = [g.key.cluster, g.key.group, ...g.sites, g.preferredSite];
  if (g.sites.length !== 2 || g.sites[0] === g.sites[1]) throw new InvalidWitnessRequest('a group has exactly two distinct sites');
  if (names.some((s) => s.length === 0 || s.length > nameBytesMax)) throw new InvalidWitnessRequest(`cluster, group and site must be names of 1 to ${nameBytesMax} characters`);
  if (!g.sites.includes(g.preferredSite)) throw new InvalidWitnessRequest('the preferred site must be one of the two sites');
  if (!safe(g.leaseMs) || g.leaseMs === 0 || g.leaseMs > leaseMsMax || !safe(g.maxDataLossMs)) {
    throw new InvalidWitnessRequest(`lease_ms must be from 1 to ${leaseMsMax} and max_data_loss_ms an integer below 2^53`);
  }
}

export class WitnessService {
  private state: ArbiterState;
  /** One step at a time: persists happen in the order the arbiter decided them. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: RecordStore,
    private readonly now: () => number,
    private readonly log: Logger,
  ) {
    this.state = restoreArbiter(store.records(), now());
  }

  register(g: GroupRegistration): Promise<{ accepted: boolean; refusal?: string }> {
    checkRegistration(g);
    return this.serial(async () => {
      const step = arbiterStep(this.state, { type: 'register', nowMs: this.now(), registration: g });
      await this.apply(step.state, step.actions);
      return step.refusal ? { accepted: false, refusal: step.refusal } : { accepted: true };
    });
  }

  arbitrate(r: WitnessRequest): Promise<WitnessReply> {
    const problem = requestProblem(r);
    if (problem !== undefined) throw new InvalidWitnessRequest(problem);
    return this.serial(() => this.step(r));
  }

  /** One request through the arbiter, its persists written; inside serial() only. */
  private async step(r: WitnessRequest): Promise<WitnessReply> {
    const step = arbiterStep(this.state, { type: 'request', nowMs: this.now(), request: r });
    await this.apply(step.state, step.actions);
    const reply = step.actions.find((a): a is Extract<ArbiterAction, { type: 'reply' }> => a.type === 'reply');
    if (!reply) throw new Error('the arbiter answered a request without a reply');
    return reply.reply;
  }

  /**
   * Several requests stepped in order in one turn of the queue, each as arbitrate() would; a
   * request that fails validation is answered with its reason and does not reach the arbiter.
   */
  arbitrateBatch(rs: readonly WitnessRequest[]): Promise<BatchOutcome[]> {
    const checked = rs.map((r): WitnessRequest | { invalid: string } => {
      const problem = requestProblem(r);
      return problem === undefined ? r : { invalid: problem };
    });
    return this.serial(async () => {
      const out: BatchOutcome[] = [];
      for (const r of checked) out.push('invalid' in r ? r : { reply: await this.step(r) });
      return out;
    });
  }

  /** The durable record of every group, read-only (drills and runbooks read them). */
  records(): DurableRecord[] {
    return [...this.state.groups.values()].map((g) => g.durable);
  }

  private async apply(next: ArbiterState, actions: readonly ArbiterAction[]): Promise<void> {
    for (const a of actions) {
      if (a.type === 'persist') await this.store.save(a.record);
      else if (a.type === 'primary-changed') this.log.warn('primary changed', { cluster: a.key.cluster, group: a.key.group, from: a.from, to: a.to, epoch: a.epoch, cause: a.cause });
      else if (a.type === 'epoch-adopted') {
        this.log.warn('adopted an epoch made by a forced failover without the witness', {
          cluster: a.key.cluster, group: a.key.group, fromEpoch: a.fromEpoch, epoch: a.epoch, primary: a.primary, reportedBy: a.reportedBy,
        });
      }
    }
    this.state = next;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
