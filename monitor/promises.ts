// Promises the monitor starts ahead of their use (queries queued in ClickHouse's one-at-a-time
// queue while this thread works): a rejection must not go unhandled before they are awaited.

/** The same promise, its rejection marked handled until it is awaited (later, or never if the consumer stops first). */
export function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}
