// The tasks of one logical unit between arrival and completion, with the nexus each came from, so
// task management and PREEMPT AND ABORT can abort another nexus's tasks (SAM-5 7.2-7.6). A task
// marked aborted before it starts never starts; one already running finishes, and `settled` waits.

export interface ActiveTask {
  readonly nexusId: string;
  aborted: boolean;
  /** Settles when the task has left the logical unit (set right after it is queued). */
  done: Promise<unknown> | undefined;
}

export class ActiveTasks {
  private readonly tasks = new Set<ActiveTask>();

  add(nexusId: string): ActiveTask {
    const task: ActiveTask = { nexusId, aborted: false, done: undefined };
    this.tasks.add(task);
    return task;
  }

  remove(task: ActiveTask): void {
    this.tasks.delete(task);
  }

  /** Marks every matching task aborted; use `settled` to wait for the running ones to finish. */
  abort(match: (task: ActiveTask) => boolean): void {
    for (const task of this.tasks) if (match(task)) task.aborted = true;
  }

  /** Resolves once every matching task present now has left (later arrivals are not waited for). */
  async settled(match: (task: ActiveTask) => boolean): Promise<void> {
    const waits: Array<Promise<unknown>> = [];
    for (const task of this.tasks) if (match(task) && task.done) waits.push(task.done);
    await Promise.allSettled(waits);
  }
}
