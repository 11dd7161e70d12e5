// Reusable buffers for large reads (READ data on its way to the socket). Node allocates every
// Buffer over a few KiB outside the V8 heap, and V8 answers that external memory with full
// mark-compact collections: at 1 MiB reads and 600 MiB/s the agent spent 40% of its CPU in GC.
// Buffers come in power-of-two size classes and go back to a bounded free list when their last
// user releases them; one that is never released is simply garbage (a leak costs nothing but GC).
import { assert } from '../../common/assert.ts';

export interface PooledBuffer {
  /** Exactly the length asked for (a view of the class-sized buffer). */
  readonly data: Buffer;
  /** The bytes may be reused from now on; later calls do nothing. */
  release(): void;
}

export interface BufferPoolConfig {
  /** Smaller requests get a plain Buffer (Node's own slab serves them cheaply). */
  readonly minBytes: number;
  /** Larger requests get a plain Buffer. */
  readonly maxBytes: number;
  /** Free buffers kept at most, in bytes, over every class. */
  readonly freeBytesMax: number;
}

export const bufferPoolDefaults: BufferPoolConfig = { minBytes: 64 * 1024, maxBytes: 8 * 1024 * 1024, freeBytesMax: 64 * 1024 * 1024 };

/** The release of a buffer that is not the pool's (nothing to give back): callers may skip it. */
export const noRelease = (): void => undefined;

export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private freeBytes = 0;
  /** For tests and status: buffers handed out from a free list, and newly allocated. */
  readonly stats = { reused: 0, allocated: 0, unpooled: 0 };

  constructor(private readonly config: BufferPoolConfig = bufferPoolDefaults) {
    assert(config.minBytes > 0 && config.minBytes <= config.maxBytes, 'buffer pool: minBytes must be in (0, maxBytes]');
  }

  acquire(lengthBytes: number): PooledBuffer {
    if (lengthBytes < this.config.minBytes || lengthBytes > this.config.maxBytes) {
      this.stats.unpooled++;
      return { data: Buffer.allocUnsafe(lengthBytes), release: noRelease };
    }
    const size = classOf(lengthBytes);
    const list = this.free.get(size);
    let whole = list?.pop();
    if (whole) {
      this.freeBytes -= size;
      this.stats.reused++;
    } else {
      whole = Buffer.allocUnsafeSlow(size);
      this.stats.allocated++;
    }
    const buffer = whole;
    let released = false;
    return {
      data: buffer.subarray(0, lengthBytes),
      release: () => {
        if (released) return;
        released = true;
        this.giveBack(buffer);
      },
    };
  }

  private giveBack(buffer: Buffer): void {
    if (this.freeBytes + buffer.length > this.config.freeBytesMax) return;
    const list = this.free.get(buffer.length);
    if (list) list.push(buffer);
    else this.free.set(buffer.length, [buffer]);
    this.freeBytes += buffer.length;
  }
}

/** The smallest power of two holding n. */
function classOf(n: number): number {
  return 2 ** Math.ceil(Math.log2(n));
}
