// Served reads waiting in the feature-log queue, off the JS heap: each read's JSON text and a
// newline, back to back in preallocated chunks (Buffers, reused), with its read time and feature
// set in arrays indexed by its place in the queue. A queued read is then no JS object, string or
// Buffer that the young-generation collector copies while it waits out the linger (a record,
// its Buffer and its request id per read did: about 1 µs a read at 100% by --trace-gc), and a
// batch's reads are a few slices of chunks that the lines sink writes as they are and the Kafka
// sink cuts its messages from.
import type { EncodedFeatureLogRecord, EncodedFeatureSet } from './feature-log.js';

/** Bytes of a chunk: a full batch of 1 entity x 7 features reads (5 000 x ~220 bytes) spans two. */
const CHUNK_BYTES = 1 << 20;
/** Free chunks kept for reuse: the default queue (10 000 reads) fills about three. */
const POOLED_CHUNKS = 4;
/** Read slots the index starts with; it doubles up to the queue's limit. */
const FIRST_SLOTS = 1_024;
/** What every version-3 read written by encodeLoggedRead starts with, its request id next. */
const V3_PREFIX = Buffer.from('{"kind":"read","v":3,"request_id":"');

interface Chunk {
  readonly bytes: Buffer;
  /** Reads queued or being written that lie in this chunk: it is free again at 0. */
  reads: number;
  /** Part of a write that timed out (the sink may still read it): never reused. */
  retired: boolean;
}

/** The queue's store of encoded reads (FeatureLogQueue.offerRead). */
export class ReadArena {
  private chunk: Chunk;
  private pos = 0;
  private readonly pool: Chunk[] = [];
  // A ring of read slots: head is the oldest queued read.
  private slots = 0;
  private head = 0;
  private size = 0;
  private chunkOf: (Chunk | undefined)[] = [];
  private setOf: (EncodedFeatureSet | undefined)[] = [];
  private start = new Int32Array(0);
  private end = new Int32Array(0);
  private time = new Float64Array(0);

  constructor(private readonly maxSlots: number) {
    this.chunk = this.newChunk(CHUNK_BYTES);
    this.grow();
  }

  /** Reads queued (not yet taken by a write). */
  get count(): number {
    return this.size;
  }

  /** Queue a read's JSON text (the caller keeps count against the queue's limit). */
  push(json: string, timeMs: number, features: EncodedFeatureSet | undefined): void {
    if (this.size === this.slots) this.grow();
    // At most 3 bytes a UTF-16 unit, and the newline: a chunk is never written past its end.
    const most = json.length * 3 + 1;
    if (this.pos + most > this.chunk.bytes.length) this.nextChunk(most);
    const chunk = this.chunk;
    const at = this.pos;
    const to = at + chunk.bytes.write(json, at);
    chunk.bytes[to] = 0x0a;
    this.pos = to + 1;
    chunk.reads++;
    let slot = this.head + this.size;
    if (slot >= this.slots) slot -= this.slots;
    this.chunkOf[slot] = chunk;
    this.setOf[slot] = features;
    this.start[slot] = at;
    this.end[slot] = to;
    this.time[slot] = timeMs;
    this.size++;
  }

  /** The oldest `most` queued reads, out of the queue: a batch to write, then release(). */
  take(most: number): ReadBatch {
    const n = Math.min(most, this.size);
    const chunks: Chunk[] = new Array<Chunk>(n);
    const sets: (EncodedFeatureSet | undefined)[] = new Array<EncodedFeatureSet | undefined>(n);
    const start = new Int32Array(n);
    const end = new Int32Array(n);
    const time = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let slot = this.head + i;
      if (slot >= this.slots) slot -= this.slots;
      chunks[i] = this.chunkOf[slot]!;
      sets[i] = this.setOf[slot];
      start[i] = this.start[slot]!;
      end[i] = this.end[slot]!;
      time[i] = this.time[slot]!;
      // The slot lets go of its chunk and set (the batch holds them now).
      this.chunkOf[slot] = undefined;
      this.setOf[slot] = undefined;
    }
    this.head += n;
    if (this.head >= this.slots) this.head -= this.slots;
    this.size -= n;
    return new ReadBatch(chunks, sets, start, end, time, (reuse) => this.release(chunks, reuse));
  }

  private release(chunks: readonly Chunk[], reuse: boolean): void {
    for (const chunk of chunks) {
      chunk.reads--;
      if (!reuse) chunk.retired = true;
      if (chunk.reads === 0 && chunk !== this.chunk) this.free(chunk);
    }
  }

  private nextChunk(most: number): void {
    const old = this.chunk;
    this.chunk = most > CHUNK_BYTES ? this.newChunk(most) : (this.pool.pop() ?? this.newChunk(CHUNK_BYTES));
    this.pos = 0;
    if (old.reads === 0) this.free(old);
  }

  private free(chunk: Chunk): void {
    if (!chunk.retired && chunk.bytes.length === CHUNK_BYTES && this.pool.length < POOLED_CHUNKS) this.pool.push(chunk);
  }

  private newChunk(bytes: number): Chunk {
    return { bytes: Buffer.allocUnsafeSlow(bytes), reads: 0, retired: false };
  }

  /** Double the ring of slots (up to the queue's limit), the queued reads first in it. */
  private grow(): void {
    const slots = Math.max(1, Math.min(this.maxSlots, Math.max(FIRST_SLOTS, this.slots * 2)));
    if (slots <= this.slots) throw new RangeError(`the read arena holds at most ${this.maxSlots} reads`);
    const order = Array.from({ length: this.size }, (_, i) => (this.head + i) % this.slots);
    const start = new Int32Array(slots);
    const end = new Int32Array(slots);
    const time = new Float64Array(slots);
    order.forEach((slot, i) => {
      start[i] = this.start[slot]!;
      end[i] = this.end[slot]!;
      time[i] = this.time[slot]!;
    });
    this.chunkOf = [...order.map((slot) => this.chunkOf[slot]), ...new Array<undefined>(slots - this.size).fill(undefined)];
    this.setOf = [...order.map((slot) => this.setOf[slot]), ...new Array<undefined>(slots - this.size).fill(undefined)];
    this.start = start;
    this.end = end;
    this.time = time;
    this.slots = slots;
    this.head = 0;
  }
}

/**
 * Reads taken from the arena for one write. Their bytes stay valid until the queue releases the
 * batch, after the sink's write: a sink that keeps bytes beyond its write copies them.
 */
export class ReadBatch {
  constructor(
    private readonly chunks: readonly Chunk[],
    private readonly sets: readonly (EncodedFeatureSet | undefined)[],
    private readonly start: Int32Array,
    private readonly end: Int32Array,
    private readonly time: Float64Array,
    /** Gives the chunks back (reuse false: the sink may still read them). */
    readonly release: (reuse: boolean) => void,
  ) {}

  get count(): number {
    return this.start.length;
  }

  /** Read i's JSON text as UTF-8 bytes (a view into the arena, no copy). */
  json(i: number): Buffer {
    return this.chunks[i]!.bytes.subarray(this.start[i]!, this.end[i]!);
  }

  /** Read i's line: its JSON text and a newline, in bytes. */
  lineBytes(i: number): number {
    return this.end[i]! - this.start[i]! + 1;
  }

  timeMs(i: number): number {
    return this.time[i]!;
  }

  features(i: number): EncodedFeatureSet | undefined {
    return this.sets[i];
  }

  /** Read i's request id, taken from its text (a version-3 read starts with it). */
  requestId(i: number): string {
    const bytes = this.json(i);
    if (bytes.length > V3_PREFIX.length && bytes.subarray(0, V3_PREFIX.length).equals(V3_PREFIX)) {
      // The string ends at the first quote not escaped by a backslash (a backslash escapes the next byte).
      for (let at = V3_PREFIX.length; at < bytes.length; at++) {
        if (bytes[at] === 0x5c) at++;
        else if (bytes[at] === 0x22) return JSON.parse(bytes.toString('utf8', V3_PREFIX.length - 1, at + 1)) as string;
      }
    }
    return (JSON.parse(bytes.toString('utf8')) as { request_id: string }).request_id;
  }

  /** The lines of reads from..to-1 ("json\n" each), in order: one slice per chunk they lie in, no copy. */
  lines(from = 0, to = this.count): Buffer[] {
    const out: Buffer[] = [];
    let i = from;
    while (i < to) {
      const chunk = this.chunks[i]!;
      const first = this.start[i]!;
      // Reads in one chunk lie back to back (each push appends): the run ends where the chunk changes.
      let j = i + 1;
      while (j < to && this.chunks[j] === chunk && this.start[j] === this.end[j - 1]! + 1) j++;
      out.push(chunk.bytes.subarray(first, this.end[j - 1]! + 1));
      i = j;
    }
    return out;
  }

  /** The feature sets reads from..to-1 name, each once, in order of first use; `skip` leaves out sets the destination holds. */
  featureSets(from = 0, to = this.count, skip: (id: string) => boolean = () => false): EncodedFeatureSet[] {
    const sets = new Map<string, EncodedFeatureSet>();
    let last: EncodedFeatureSet | undefined;
    for (let i = from; i < to; i++) {
      const set = this.sets[i];
      // Consecutive reads mostly share their set: one map lookup per change.
      if (set === undefined || set === last) continue;
      last = set;
      if (!sets.has(set.id) && !skip(set.id)) sets.set(set.id, set);
    }
    return [...sets.values()];
  }

  /** The reads as record objects, their text as bytes copied out of the arena (a sink may keep them), for a sink that takes no ReadBatch. */
  records(): EncodedFeatureLogRecord[] {
    return Array.from({ length: this.count }, (_, i) => {
      const features = this.sets[i];
      return { kind: 'read' as const, requestId: this.requestId(i), timeMs: this.time[i]!, json: Buffer.from(this.json(i)), ...(features ? { features } : {}) };
    });
  }
}
