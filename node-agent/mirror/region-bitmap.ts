// A fixed-size bitmap of regions: bit r is byte r >> 3, bit r & 7 (LSB first), the layout of the
// mirror contract's dirty_bitmap and of the dirty-map file. Memory is ceil(regionCount / 8) bytes.
import { assert } from '../../common/assert.ts';

export class RegionBitmap {
  readonly bytes: Uint8Array;
  private setCount = 0;

  constructor(readonly regionCount: number, from?: Uint8Array) {
    assert(Number.isSafeInteger(regionCount) && regionCount >= 0, `region count ${regionCount} must be a non-negative integer`);
    this.bytes = new Uint8Array(Math.ceil(regionCount / 8));
    if (from) {
      assert(from.length === this.bytes.length, `bitmap of ${from.length} bytes for ${regionCount} regions`);
      this.bytes.set(from);
      // Bits past the last region must be zero: anything else is a corrupt or foreign bitmap.
      const tailBits = regionCount & 7;
      if (tailBits !== 0) assert((this.bytes[this.bytes.length - 1] >> tailBits) === 0, 'bits set past the last region');
      for (const b of this.bytes) this.setCount += popcount8(b);
    }
  }

  get count(): number {
    return this.setCount;
  }

  has(r: number): boolean {
    return (this.bytes[r >> 3] & (1 << (r & 7))) !== 0;
  }

  /** Returns whether the bit changed. */
  set(r: number): boolean {
    assert(r >= 0 && r < this.regionCount, `region ${r} outside 0..${this.regionCount - 1}`);
    const m = 1 << (r & 7);
    if (this.bytes[r >> 3] & m) return false;
    this.bytes[r >> 3] |= m;
    this.setCount++;
    return true;
  }

  /** Returns whether the bit changed. */
  clear(r: number): boolean {
    assert(r >= 0 && r < this.regionCount, `region ${r} outside 0..${this.regionCount - 1}`);
    const m = 1 << (r & 7);
    if (!(this.bytes[r >> 3] & m)) return false;
    this.bytes[r >> 3] &= ~m;
    this.setCount--;
    return true;
  }

  clearAll(): void {
    this.bytes.fill(0);
    this.setCount = 0;
  }

  /** The next set bit at or after `from`, or -1. Skips zero bytes, so sparse maps scan fast. */
  nextSet(from: number): number {
    for (let r = Math.max(0, from); r < this.regionCount; ) {
      const byte = this.bytes[r >> 3];
      if (byte === 0) {
        r = (r | 7) + 1;
        continue;
      }
      if (byte & (1 << (r & 7))) return r;
      r++;
    }
    return -1;
  }

  /** Set bits as [first, count] runs: the compact form for logs and messages. */
  runs(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (let r = this.nextSet(0); r >= 0; ) {
      let end = r + 1;
      while (end < this.regionCount && this.has(end)) end++;
      out.push([r, end - r]);
      r = this.nextSet(end);
    }
    return out;
  }

  union(other: RegionBitmap): RegionBitmap {
    assert(other.regionCount === this.regionCount, `union of ${this.regionCount} and ${other.regionCount} regions`);
    const out = new Uint8Array(this.bytes.length);
    for (let i = 0; i < out.length; i++) out[i] = this.bytes[i] | other.bytes[i];
    return new RegionBitmap(this.regionCount, out);
  }

  copy(): RegionBitmap {
    return new RegionBitmap(this.regionCount, this.bytes);
  }

  /** Every one of regionCount regions set. */
  static full(regionCount: number): RegionBitmap {
    return new RegionBitmap(regionCount, fitBitmap(new Uint8Array(Math.ceil(regionCount / 8)).fill(0xff), regionCount));
  }
}

/** An LSB-first region bitmap cut or zero-extended to regionCount regions (bits past the new end cleared). */
export function fitBitmap(bytes: Uint8Array, regionCount: number): Uint8Array {
  const out = new Uint8Array(Math.ceil(regionCount / 8));
  out.set(bytes.subarray(0, out.length));
  if (regionCount & 7 && out.length <= bytes.length) out[out.length - 1] &= (1 << (regionCount & 7)) - 1;
  return out;
}

function popcount8(b: number): number {
  let n = 0;
  for (let x = b; x !== 0; x &= x - 1) n++;
  return n;
}
