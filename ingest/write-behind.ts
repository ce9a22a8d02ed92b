// A write-behind queue with group commit, for the materializer's store writes. Kafka batches are
// queued as they are decoded, and one writer takes them in arrival order: each write takes every
// queued batch, at most one per partition (a partition's batches are written one after the other,
// in offset order), as a database groups the commits that arrive during a log flush. So the
// consumer decodes the next batches while the store applies the previous ones, and the tiles
// several partitions share (an airport's current hour) are merged once per write. Idle, a batch
// is written at once (after one turn of the event loop, so that batches decoded together go
// together); busy, the writes grow with the load, and a full queue holds the consumer back.

export class WriteBehindQueue<T> {
  private queue: T[] = [];
  private writing = 0;
  private running = false;
  private readonly roomWaiters: (() => void)[] = [];
  private readonly idleWaiters: (() => void)[] = [];

  /**
   * `write` writes a group and never throws (it handles its own failures). Items with the same
   * `partitionOf` go in separate writes, in queue order. At most `maxQueued` items wait.
   */
  constructor(
    private readonly write: (items: T[]) => Promise<void>,
    private readonly partitionOf: (item: T) => string,
    private readonly maxQueued: number,
  ) {}

  /** Items queued or being written. */
  get size(): number {
    return this.queue.length + this.writing;
  }

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

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      await new Promise((resolve) => setImmediate(resolve));
      const group: T[] = [];
      const later: T[] = [];
      const partitions = new Set<string>();
      for (const item of this.queue) {
        const p = this.partitionOf(item);
        if (partitions.has(p)) later.push(item);
        else {
          partitions.add(p);
          group.push(item);
        }
      }
      this.queue = later;
      this.writing = group.length;
      for (const wake of this.roomWaiters.splice(0)) wake();
      await this.write(group);
      this.writing = 0;
    }
    this.running = false;
    for (const wake of this.idleWaiters.splice(0)) wake();
  }
}
