// One logical unit's task set (SAM-5 8.6, simplified): SIMPLE and untagged tasks run in parallel,
// an ORDERED task starts after every earlier task has completed and holds back every later one,
// HEAD OF QUEUE starts at once. Tracks what is in flight so task management can wait for it.

import type { TaskAttribute } from './types.ts';

export class TaskSet {
  private running = 0;
  /** Settles when the newest ORDERED task has completed; undefined when none is pending. */
  private barrier: Promise<void> | undefined;
  private idleWaiters: Array<() => void> = [];
  private readonly inflight = new Set<Promise<unknown>>();

  get size(): number {
    return this.inflight.size;
  }

  run<T>(attribute: TaskAttribute, task: () => Promise<T>): Promise<T> {
    let p: Promise<T>;
    if (attribute === 'ordered') p = this.runOrdered(task);
    else if (attribute === 'head-of-queue' || this.barrier === undefined) p = this.start(task);
    else p = this.barrier.then(() => this.start(task));
    this.inflight.add(p);
    // One unnamed callback for both outcomes: this runs for every READ and WRITE, and a named
    // closure costs a defineProperty of its name under tsx (esbuild keepNames).
    const settled = this.inflight.delete.bind(this.inflight, p);
    p.then(settled, settled);
    return p;
  }

  /** Resolves once every task in flight now has completed (later tasks are not waited for). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
  }

  private async start<T>(task: () => Promise<T>): Promise<T> {
    this.running++;
    try {
      return await task();
    } finally {
      this.running--;
      if (this.running === 0 && this.idleWaiters.length > 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const wake of waiters) wake();
      }
    }
  }

  private whenIdle(): Promise<void> | undefined {
    if (this.running === 0) return undefined;
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private runOrdered<T>(task: () => Promise<T>): Promise<T> {
    const previous = this.barrier;
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    this.barrier = mine;
    const go = async (): Promise<T> => {
      try {
        // Tasks queued behind `previous` registered their continuations first, so they are
        // counted in `running` by the time this one checks for idleness.
        if (previous) await previous;
        const idle = this.whenIdle();
        if (idle) await idle;
        return await this.start(task);
      } finally {
        if (this.barrier === mine) this.barrier = undefined;
        release();
      }
    };
    return go();
  }
}
