/**
 * A work queue of string keys (e.g. `namespace/name` of a ScriptRun), like client-go's
 * workqueue: `add()` is debounced and deduplicated, at most `concurrency` keys are processed at
 * once, a key is never processed twice at the same time, and a key added while it is being
 * processed runs once more after. `addAfter()` sets a per-key "not before" time (backoff).
 * Timers and clock are injectable so tests run without waiting. No I/O.
 * @module
 */

/** The clock and timers the queue uses (the global ones by default). */
export interface QueueTimers {
  /** Milliseconds, monotonic enough for ordering. */
  now(): number;
  /** Calls `fn` after `ms` milliseconds; returns a handle for `clearTimeout`. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancels a `setTimeout`. */
  clearTimeout(handle: unknown): void;
}

/** The global clock and timers. */
export const REAL_TIMERS: QueueTimers = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as number),
};

/** Options of {@linkcode WorkQueue}. */
export interface WorkQueueOptions {
  /** Keys processed at once (default 8). */
  concurrency?: number;
  /** Delay of `add()`: changes within it are coalesced into one run (default 100 ms). */
  debounceMs?: number;
  /** Clock and timers (default {@linkcode REAL_TIMERS}). */
  timers?: QueueTimers;
  /** Called when `process` throws or rejects (the key is not requeued by the queue). */
  onError?: (key: string, error: unknown) => void;
  /**
   * Called when a key starts, with the milliseconds it waited since it became due (after its
   * debounce or backoff): time lost to the concurrency bound.
   */
  onStart?: (waitedMs: number) => void;
  /** Called when a key becomes due and is not already due (client-go's count of adds). */
  onAdd?: () => void;
}

/** How soon a key runs among due keys: urgent ones first, then changes, then low (periodic). */
const URGENT = 0;
const NORMAL = 1;
const LOW = 2;
type Lane = typeof URGENT | typeof NORMAL | typeof LOW;

/** How `add()` ranks a key; without options a key is a change (normal). */
export interface AddOptions {
  /** A periodic pass, not a change: starts only when no change or urgent key is due. */
  low?: boolean;
  /** Starts before every other due key (e.g. a run whose Job just finished). Wins over `low`. */
  urgent?: boolean;
}

function laneOf(options: AddOptions): Lane {
  return options.urgent ? URGENT : options.low ? LOW : NORMAL;
}

/**
 * Debounced, deduplicated, bounded-concurrency work queue.
 *
 * A key is in at most one of: waiting (with a due time), ready (due, in FIFO order within its
 * lane: urgent, normal, low), or active (being processed). A key added while active waits and
 * becomes ready again when its run ends; a key's due time only ever moves earlier and its lane only
 * ever moves up (`add` after `addAfter` wins: a real change is not held back by a backoff; the
 * reconcile is level-triggered so an early run is harmless).
 */
export class WorkQueue {
  #process: (key: string) => Promise<void>;
  #concurrency: number;
  #debounceMs: number;
  #timers: QueueTimers;
  #onError: (key: string, error: unknown) => void;
  #onStart: (waitedMs: number) => void;
  #onAdd: () => void;
  /** When each ready (or again) key became due. */
  #dueAt = new Map<string, number>();
  /** Key -> due time, the timer that moves it to a ready lane, and that lane. */
  #waiting = new Map<string, { due: number; timer: unknown; lane: Lane }>();
  /** Due keys by lane, each in FIFO order (a Set keeps insertion order and dedupes). */
  #ready: [Set<string>, Set<string>, Set<string>] = [new Set(), new Set(), new Set()];
  /** Keys being processed, with their runs. */
  #active = new Map<string, Promise<void>>();
  /** Keys that became due while active, with their lane: they run again when their run ends. */
  #again = new Map<string, Lane>();
  #closed = false;
  #idleWaiters: (() => void)[] = [];

  /** `process(key)` is called for each due key; it must not throw for expected errors. */
  constructor(process: (key: string) => Promise<void>, options: WorkQueueOptions = {}) {
    this.#process = process;
    this.#concurrency = Math.max(1, options.concurrency ?? 8);
    this.#debounceMs = options.debounceMs ?? 100;
    this.#timers = options.timers ?? REAL_TIMERS;
    this.#onError = options.onError ?? (() => {});
    this.#onStart = options.onStart ?? (() => {});
    this.#onAdd = options.onAdd ?? (() => {});
  }

  /**
   * Queues `key` to run after the debounce delay (or earlier if already due earlier). `low`: a
   * periodic pass, not a change; such keys start only when no other key is ready, and a later
   * `add` without `low` (a change) lifts the key out of them. `urgent`: ahead of every other key.
   */
  add(key: string, options: AddOptions = {}): void {
    this.addAfter(key, this.#debounceMs, options);
  }

  /** Queues `key` to run not before `ms` from now (unless it is already due earlier). */
  addAfter(key: string, ms: number, options: AddOptions = {}): void {
    if (this.#closed) return;
    const lane = laneOf(options);
    const again = this.#again.get(key);
    if (again !== undefined) {
      if (lane < again) this.#again.set(key, lane);
      return;
    }
    for (const l of [URGENT, NORMAL, LOW] as const) {
      if (!this.#ready[l].has(key)) continue;
      if (l <= lane) return;
      // Ready in a lower lane: lifted, through the debounce like any change.
      this.#ready[l].delete(key);
      this.#dueAt.delete(key);
    }
    const due = this.#timers.now() + Math.max(0, ms);
    const current = this.#waiting.get(key);
    if (current && current.due <= due) {
      if (lane < current.lane) current.lane = lane;
      return;
    }
    if (current) this.#timers.clearTimeout(current.timer);
    const timer = this.#timers.setTimeout(() => this.#due(key), Math.max(0, ms));
    this.#waiting.set(key, { due, timer, lane: Math.min(lane, current?.lane ?? lane) as Lane });
  }

  /** Keys due and not yet started (client-go's queue depth): waiting for a free worker. */
  get depth(): number {
    return this.#ready[URGENT].size + this.#ready[NORMAL].size + this.#ready[LOW].size +
      this.#again.size;
  }

  /** Keys waiting, ready or being processed. */
  get size(): number {
    const keys = new Set([
      ...this.#waiting.keys(),
      ...this.#ready.flatMap((lane) => [...lane]),
      ...this.#active.keys(),
    ]);
    return keys.size;
  }

  /** Whether `key` is waiting, ready or being processed. */
  has(key: string): boolean {
    return this.#waiting.has(key) || this.#ready.some((lane) => lane.has(key)) ||
      this.#active.has(key);
  }

  /** Resolves when no key is waiting, ready or active (keys added meanwhile are awaited too). */
  idle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Stops the queue: drops waiting and ready keys, cancels their timers, ignores later adds, and
   * resolves when the runs in progress have ended.
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const { timer } of this.#waiting.values()) this.#timers.clearTimeout(timer);
    this.#waiting.clear();
    for (const lane of this.#ready) lane.clear();
    this.#again.clear();
    this.#dueAt.clear();
    await Promise.all([...this.#active.values()]);
    this.#checkIdle();
  }

  #due(key: string): void {
    const lane = this.#waiting.get(key)?.lane ?? NORMAL;
    this.#waiting.delete(key);
    if (this.#closed) return;
    this.#onAdd();
    this.#dueAt.set(key, this.#timers.now());
    if (this.#active.has(key)) {
      this.#again.set(key, Math.min(lane, this.#again.get(key) ?? lane) as Lane);
    } else this.#ready[lane].add(key);
    this.#pump();
  }

  #pump(): void {
    for (const ready of this.#ready) {
      for (const key of ready) {
        if (this.#active.size >= this.#concurrency) break;
        ready.delete(key);
        this.#start(key);
      }
    }
    this.#checkIdle();
  }

  #start(key: string): void {
    const dueAt = this.#dueAt.get(key);
    this.#dueAt.delete(key);
    if (dueAt !== undefined) this.#onStart(this.#timers.now() - dueAt);
    const run = (async () => {
      await null; // so #active holds the run before it can end, even if `process` throws at once
      try {
        await this.#process(key);
      } catch (error) {
        this.#onError(key, error);
      } finally {
        this.#active.delete(key);
        const again = this.#again.get(key);
        this.#again.delete(key);
        if (again !== undefined && !this.#closed) this.#ready[again].add(key);
        this.#pump();
      }
    })();
    this.#active.set(key, run);
  }

  #isIdle(): boolean {
    return this.#waiting.size === 0 && this.#ready.every((lane) => lane.size === 0) &&
      this.#active.size === 0;
  }

  #checkIdle(): void {
    if (!this.#isIdle()) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
