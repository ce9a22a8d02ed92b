// Group commit: work submitted while a write is running is written together by the next write, as
// a database groups the commits that arrive during a log flush. Idle, a submission is written at
// once (after one turn of the event loop, so that submissions made together go together); busy,
// the writes grow with the load. The materializer groups the Kafka batches of the partitions it
// consumes at once into one store write: fewer, larger writes, and the tiles that several
// partitions share (an airport's current hour) are merged once per write instead of once per
// partition.

interface Waiting<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (error: unknown) => void;
}

export class GroupCommit<T, R> {
  private queue: Waiting<T, R>[] = [];
  private running = false;

  /**
   * `write` writes a group and returns one result per item, in order (or throws, failing every
   * item of the group). Items with the same `exclusiveKey` never go in one group: the later waits
   * for the next write.
   */
  constructor(
    private readonly write: (items: readonly T[]) => Promise<R[]>,
    private readonly exclusiveKey: (item: T) => string,
  ) {}

  /** Items waiting for a write (not counting the one running). */
  get waiting(): number {
    return this.queue.length;
  }

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.running) {
        this.running = true;
        void this.drain();
      }
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        await new Promise((resolve) => setImmediate(resolve));
        const group: Waiting<T, R>[] = [];
        const later: Waiting<T, R>[] = [];
        const keys = new Set<string>();
        for (const w of this.queue) {
          const key = this.exclusiveKey(w.item);
          if (keys.has(key)) later.push(w);
          else {
            keys.add(key);
            group.push(w);
          }
        }
        this.queue = later;
        try {
          const results = await this.write(group.map((w) => w.item));
          group.forEach((w, i) => w.resolve(results[i]!));
        } catch (e) {
          for (const w of group) w.reject(e);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
