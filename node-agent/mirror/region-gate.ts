// Holds host writes off a region while the resync reads it (mirror.proto ResyncData: the data
// reflects every write with a smaller sequence and none with a larger one). Host writes pass the
// gate from before their sequence is assigned until their local write is done; lock(region) stops
// new ones and waits for those inside. While no lock is wanted the gate only counts writes (one
// integer: the hot path stays cheap); a first lock waits for those counted writes to drain.
import { assert } from '../../common/assert.ts';

/** Proof of passage, handed back to leave(). */
export interface GatePass {
  readonly tracked: boolean;
  readonly volume: number;
  readonly first: number;
  readonly last: number;
}

const untrackedPass: GatePass = { tracked: false, volume: 0, first: 0, last: -1 };

const key = (volume: number, region: number) => volume * 2 ** 32 + region;

export class RegionGate {
  /** Lock users (resync, verify repair); while 0 writes are only counted. */
  private users = 0;
  private untracked = 0;
  private untrackedDrained: Array<() => void> = [];
  /** Writes inside, per region (only while users > 0). */
  private readonly inside = new Map<number, number>();
  private readonly locked = new Set<number>();
  private readonly lockWaiters = new Map<number, () => void>();
  private writeWaiters: Array<{ volume: number; first: number; last: number; resolve: (p: GatePass) => void }> = [];

  /** A host write to regions first..last of volume is about to be issued. */
  enter(volume: number, first: number, last: number): GatePass | Promise<GatePass> {
    if (this.users === 0) {
      this.untracked++;
      return untrackedPass;
    }
    if (this.overlapsLock(volume, first, last)) {
      return new Promise((resolve) => this.writeWaiters.push({ volume, first, last, resolve }));
    }
    return this.admit(volume, first, last);
  }

  /** The write's local part is done (its sequence was assigned before). */
  leave(p: GatePass): void {
    if (!p.tracked) {
      this.untracked--;
      assert(this.untracked >= 0, 'gate: more writes left than entered');
      if (this.untracked === 0) {
        const w = this.untrackedDrained;
        this.untrackedDrained = [];
        for (const r of w) r();
      }
      return;
    }
    for (let r = p.first; r <= p.last; r++) {
      const k = key(p.volume, r);
      const n = (this.inside.get(k) ?? 0) - 1;
      assert(n >= 0, `gate: region ${r} left more often than entered`);
      if (n > 0) this.inside.set(k, n);
      else {
        this.inside.delete(k);
        this.lockWaiters.get(k)?.();
      }
    }
  }

  /** A resync or repair still holds the gate (it may be reading or sending a region). */
  get inUse(): boolean {
    return this.users > 0;
  }

  /** Starts tracking writes per region; resolves once writes that were only counted are done. */
  async use(): Promise<void> {
    this.users++;
    if (this.untracked > 0) await new Promise<void>((resolve) => this.untrackedDrained.push(resolve));
  }

  unuse(): void {
    this.users--;
    assert(this.users >= 0, 'gate: unuse without use');
    assert(this.users > 0 || this.locked.size === 0, 'gate: last user left with regions locked');
  }

  /** New writes to the region wait; resolves when the writes inside it are done. Call use() first. */
  async lock(volume: number, region: number): Promise<void> {
    assert(this.users > 0, 'gate: lock without use');
    const k = key(volume, region);
    assert(!this.locked.has(k), `gate: region ${region} of volume ${volume} locked twice`);
    this.locked.add(k);
    if ((this.inside.get(k) ?? 0) > 0) {
      await new Promise<void>((resolve) => this.lockWaiters.set(k, resolve));
      this.lockWaiters.delete(k);
    }
  }

  unlock(volume: number, region: number): void {
    const k = key(volume, region);
    assert(this.locked.delete(k), `gate: unlock of region ${region}, which is not locked`);
    const waiting = this.writeWaiters;
    this.writeWaiters = [];
    for (const w of waiting) {
      if (this.overlapsLock(w.volume, w.first, w.last)) this.writeWaiters.push(w);
      else w.resolve(this.admit(w.volume, w.first, w.last));
    }
  }

  private admit(volume: number, first: number, last: number): GatePass {
    for (let r = first; r <= last; r++) {
      const k = key(volume, r);
      this.inside.set(k, (this.inside.get(k) ?? 0) + 1);
    }
    return { tracked: true, volume, first, last };
  }

  private overlapsLock(volume: number, first: number, last: number): boolean {
    if (this.locked.size === 0) return false;
    for (let r = first; r <= last; r++) if (this.locked.has(key(volume, r))) return true;
    return false;
  }
}
