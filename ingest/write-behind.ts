// A write-behind queue with group commit, for the materializer's store writes. Kafka batches are
// queued as they are decoded, and one writer takes them in arrival order: each write takes every
// queued batch, at most one per partition (a partition's batches are written one after the other,
// in offset order), as a database groups the commits that arrive during a log flush. So the
// consumer decodes the next batches while the store applies the previous ones, and the tiles
// several partitions share (an airport's current hour) are merged once per write. While a write
// runs, the next group is taken and prepared (its tile batch built), so that work is off the
// store's critical path too; it is written only once the running write is done. Idle, a batch is
// written at once (after one turn of the event loop, so that batches decoded together go
// together); busy, the writes grow with the load, and a full queue holds the consumer back.

export class WriteBehindQueue<T, P> {
  private queue: T[] = [];
  private running = false;
  private readonly roomWaiters: (() => void)[] = [];
  private readonly idleWaiters: (() => void)[] = [];

  /**
   * `prepare` does a group's work that needs nothing from the writes before it; `write` writes
   * the group and never throws (it handles its own failures). Items with the same `partitionOf`
   * go in separate writes, in queue order. At most `maxQueued` items wait.
   */
  constructor(
    private readonly prepare: (items: T[]) => P,
    private readonly write: (items: T[], prepared: P) => Promise<void>,
    private readonly partitionOf: (item: T) => string,
    private readonly maxQueued: number,
  ) {}

  /** Resolves when there is room for one more item. */
  async room(): Promise<void> {
    while (this.queue.length >= this.maxQueued) await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
  }

  push(item: T): void {
    this.queue.push(item);
    if (!this.running) {
      this.running = true;
      void this.drain();
    }
  }

  /** Resolves when nothing is queued or being written. */
  idle(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** The next group: the queue's first item of each partition, in queue order. */
  private take(): { items: T[]; prepared: P } {
    const items: T[] = [];
    const later: T[] = [];
    const partitions = new Set<string>();
    for (const item of this.queue) {
      const p = this.partitionOf(item);
      if (partitions.has(p)) later.push(item);
      else {
        partitions.add(p);
        items.push(item);
      }
    }
    this.queue = later;
    for (const wake of this.roomWaiters.splice(0)) wake();
    return { items, prepared: this.prepare(items) };
  }

  private async drain(): Promise<void> {
    let next: { items: T[]; prepared: P } | null = null;
    while (next !== null || this.queue.length > 0) {
      if (next === null) {
        await new Promise((resolve) => setImmediate(resolve));
        next = this.take();
      }
      const current = next;
      const writing = this.write(current.items, current.prepared);
      // The running write waits on the store: take and prepare the next group meanwhile.
      await new Promise((resolve) => setImmediate(resolve));
      next = this.queue.length > 0 ? this.take() : null;
      await writing;
    }
    this.running = false;
    for (const wake of this.idleWaiters.splice(0)) wake();
  }
}
