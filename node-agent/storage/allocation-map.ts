// Which granules of a volume are known to be mapped: written in full since the volume was opened and
// not deallocated since. Lets GET LBA STATUS answer "mapped" without reading data; a granule not
// known here is not claimed either way (the caller looks at the data). Pure; pages of the bitmap are
// allocated on first use, so a large volume written in few places costs little memory.

/** Bits per page: one Uint32Array of 8192 words, 1 GiB of volume at 4 KiB granules. */
const pageBits = 1 << 18;
const pageWords = pageBits / 32;

export class AllocationMap {
  private readonly pages = new Map<number, Uint32Array>();
  private granuleCount: number;

  constructor(
    public sizeBytes: number,
    readonly granuleBytes: number,
  ) {
    this.granuleCount = Math.ceil(sizeBytes / granuleBytes);
  }

  /** The volume's size changes: its old last granule (short, or about to be) and every granule
   *  past the new end are unknown again. */
  resize(sizeBytes: number): void {
    const keptBytes = Math.floor(Math.min(this.sizeBytes, sizeBytes) / this.granuleBytes) * this.granuleBytes;
    this.forget(keptBytes, Math.max(this.sizeBytes, sizeBytes) - keptBytes);
    this.sizeBytes = sizeBytes;
    this.granuleCount = Math.ceil(sizeBytes / this.granuleBytes);
  }

  /** A write of [offsetBytes, +lengthBytes) completed: the granules it covers whole are mapped
   *  (the volume's last granule counts as whole when the write reaches the volume's end). */
  markMapped(offsetBytes: number, lengthBytes: number): void {
    const end = offsetBytes + lengthBytes;
    const first = Math.ceil(offsetBytes / this.granuleBytes);
    const last = end >= this.sizeBytes ? this.granuleCount : Math.floor(end / this.granuleBytes);
    for (let g = first; g < last; g++) {
      let page = this.pages.get(Math.floor(g / pageBits));
      if (page === undefined) {
        page = new Uint32Array(pageWords);
        this.pages.set(Math.floor(g / pageBits), page);
      }
      const bit = g % pageBits;
      page[bit >>> 5] |= 1 << (bit & 31);
    }
  }

  /** [offsetBytes, +lengthBytes) is being deallocated: every granule it touches is unknown again. */
  forget(offsetBytes: number, lengthBytes: number): void {
    if (lengthBytes <= 0) return;
    const first = Math.floor(offsetBytes / this.granuleBytes);
    const last = Math.ceil((offsetBytes + lengthBytes) / this.granuleBytes);
    for (let g = first; g < last; g++) {
      const page = this.pages.get(Math.floor(g / pageBits));
      if (page === undefined) {
        g = (Math.floor(g / pageBits) + 1) * pageBits - 1; // the whole page is unknown already
        continue;
      }
      const bit = g % pageBits;
      page[bit >>> 5] &= ~(1 << (bit & 31));
    }
  }

  /** Bytes from offsetBytes on, at most limitBytes, that lie in granules known to be mapped. */
  mappedBytesFrom(offsetBytes: number, limitBytes: number): number {
    const end = Math.min(this.sizeBytes, offsetBytes + limitBytes);
    let g = Math.floor(offsetBytes / this.granuleBytes);
    const lastGranule = Math.ceil(end / this.granuleBytes);
    while (g < lastGranule) {
      const page = this.pages.get(Math.floor(g / pageBits));
      if (page === undefined) break;
      const bit = g % pageBits;
      const word = page[bit >>> 5];
      if ((bit & 31) === 0 && word === 0xffffffff) {
        g += 32; // a whole word of mapped granules
        continue;
      }
      if ((word & (1 << (bit & 31))) === 0) break;
      g++;
    }
    return Math.max(0, Math.min(end, g * this.granuleBytes) - offsetBytes);
  }
}
