// The session's command window (RFC 7143 §4.2.2.1, §3.2.2.1): non-immediate commands are accepted
// in CmdSN order, those ahead of ExpCmdSN wait, those outside [ExpCmdSN, MaxCmdSN] are ignored.
// MaxCmdSN = ExpCmdSN + windowMax - 1 - outstanding, so it never decreases. Pure.
import { assert } from '../../common/assert.ts';
import { snAdd, snLess } from './pdu.ts';

export type Arrival<T> =
  /** These items are now accepted, in CmdSN order (the arriving one and any it unblocked). */
  | { readonly kind: 'deliver'; readonly items: readonly T[] }
  /** Ahead of a gap: held until the missing CmdSNs arrive. */
  | { readonly kind: 'held' }
  /** Outside the window, or a duplicate: silently ignored (§4.2.2.1). */
  | { readonly kind: 'ignored' };

export class CommandWindow<T> {
  private exp: number;
  private outstanding = 0;
  private readonly held = new Map<number, T>();
  private advertised: number;

  constructor(
    expCmdSN: number,
    private readonly windowMax: number,
  ) {
    assert(windowMax >= 1, 'command window must hold at least one command');
    this.exp = expCmdSN >>> 0;
    this.advertised = this.computeMax();
  }

  get expCmdSN(): number {
    return this.exp;
  }

  /** The highest CmdSN the initiator may send now; never lower than before. */
  get maxCmdSN(): number {
    const max = this.computeMax();
    assert(!snLess(max, this.advertised), 'MaxCmdSN must not decrease');
    this.advertised = max;
    return max;
  }

  /** Commands accepted and not yet answered. */
  get outstandingCount(): number {
    return this.outstanding;
  }

  get heldCount(): number {
    return this.held.size;
  }

  arrive(cmdSN: number, item: T): Arrival<T> {
    cmdSN >>>= 0;
    if (!this.inWindow(cmdSN) || this.held.has(cmdSN)) return { kind: 'ignored' };
    if (cmdSN !== this.exp) {
      this.held.set(cmdSN, item);
      return { kind: 'held' };
    }
    const items: T[] = [item];
    this.accept();
    for (let next = this.held.get(this.exp); next !== undefined; next = this.held.get(this.exp)) {
      this.held.delete(this.exp);
      items.push(next);
      this.accept();
    }
    return { kind: 'deliver', items };
  }

  /** An accepted command was answered (or aborted): its slot opens again. */
  finish(): void {
    assert(this.outstanding > 0, 'finish without an outstanding command');
    this.outstanding--;
  }

  /** Whether RefCmdSN names a command that is inside the window and has not arrived (§11.5.1). */
  notYetArrived(cmdSN: number): boolean {
    return this.inWindow(cmdSN >>> 0) && !this.held.has(cmdSN >>> 0);
  }

  /** [ExpCmdSN, MaxCmdSN], empty when every slot is outstanding. */
  private inWindow(cmdSN: number): boolean {
    const room = this.windowMax - this.outstanding;
    return room > 0 && ((cmdSN - this.exp) >>> 0) < room;
  }

  private accept(): void {
    this.exp = snAdd(this.exp, 1);
    this.outstanding++;
  }

  private computeMax(): number {
    return snAdd(this.exp, this.windowMax - 1 - this.outstanding);
  }
}
