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
}

/**
 * Debounced, deduplicated, bounded-concurrency work queue.
 *
 * A key is in at most one of: waiting (with a due time), ready (due, in FIFO order), or active
 * (being processed). A key added while active waits and becomes ready again when its run ends;
 * a key's due time only ever moves earlier (`add` after `addAfter` wins: a real change is not held
 * back by a backoff; the reconcile is level-triggered so an early run is harmless).
 */
export class WorkQueue {
  #process: (key: string) => Promise<void>;
  #concurrency: number;
  #debounceMs: number;
  #timers: QueueTimers;
  #onError: (key: string, error: unknown) => void;
  /** Key -> due time, the timer that moves it to a ready set, and whether it was added low. */
  #waiting = new Map<string, { due: number; timer: unknown; low: boolean }>();
  /** Due keys in FIFO order (a Set keeps insertion order and dedupes). */
  #ready = new Set<string>();
  /** Due keys added with `low`: they start only when #ready is empty. */
  #readyLow = new Set<string>();
  /** Keys being processed, with their runs. */
  #active = new Map<string, Promise<void>>();
  /** Keys that became due while active: they run again when their run ends. */
  #again = new Set<string>();
  #closed = false;
  #idleWaiters: (() => void)[] = [];

  /** `process(key)` is called for each due key; it must not throw for expected errors. */
  constructor(process: (key: string) => Promise<void>, options: WorkQueueOptions = {}) {
    this.#process = process;
    this.#concurrency = Math.max(1, options.concurrency ?? 8);
    this.#debounceMs = options.debounceMs ?? 100;
    this.#timers = options.timers ?? REAL_TIMERS;
    this.#onError = options.onError ?? (() => {});
  }

  /**
   * Queues `key` to run after the debounce delay (or earlier if already due earlier). `low`: a
   * periodic pass, not a change; such keys start only when no other key is ready, and a later
   * `add` without `low` (a change) lifts the key out of them.
   */
  add(key: string, options: { low?: boolean } = {}): void {
    this.addAfter(key, this.#debounceMs, options);
  }

  /** Queues `key` to run not before `ms` from now (unless it is already due earlier). */
  addAfter(key: string, ms: number, options: { low?: boolean } = {}): void {
    if (this.#closed) return;
    if (this.#ready.has(key) || this.#again.has(key)) return;
    const low = options.low === true;
    if (this.#readyLow.has(key)) {
      if (low) return;
      this.#readyLow.delete(key);
    }
    const due = this.#timers.now() + Math.max(0, ms);
    const current = this.#waiting.get(key);
    if (current && current.due <= due) {
      if (!low) current.low = false;
      return;
    }
    if (current) this.#timers.clearTimeout(current.timer);
    const timer = this.#timers.setTimeout(() => this.#due(key), Math.max(0, ms));
    this.#waiting.set(key, { due, timer, low: low && (current?.low ?? true) });
  }

  /** Keys waiting, ready or being processed. */
  get size(): number {
    const keys = new Set([
      ...this.#waiting.keys(),
      ...this.#ready,
      ...this.#readyLow,
      ...this.#active.keys(),
    ]);
    return keys.size;
  }

  /** Whether `key` is waiting, ready or being processed. */
  has(key: string): boolean {
    return this.#waiting.has(key) || this.#ready.has(key) || this.#readyLow.has(key) ||
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
    this.#ready.clear();
    this.#readyLow.clear();
    this.#again.clear();
    await Promise.all([...this.#active.values()]);
    this.#checkIdle();
  }

  #due(key: string): void {
    const low = this.#waiting.get(key)?.low ?? false;
    this.#waiting.delete(key);
    if (this.#closed) return;
    if (this.#active.has(key)) this.#again.add(key);
    else (low ? this.#readyLow : this.#ready).add(key);
    this.#pump();
  }

  #pump(): void {
    for (const ready of [this.#ready, this.#readyLow]) {
      for (const key of ready) {
        if (this.#active.size >= this.#concurrency) break;
        ready.delete(key);
        this.#start(key);
      }
    }
    this.#checkIdle();
  }

  #start(key: string): void {
    const run = (async () => {
      await null; // so #active holds the run before it can end, even if `process` throws at once
      try {
        await this.#process(key);
      } catch (error) {
        this.#onError(key, error);
      } finally {
        this.#active.delete(key);
        if (this.#again.delete(key) && !this.#closed) this.#ready.add(key);
        this.#pump();
      }
    })();
    this.#active.set(key, run);
  }

  #isIdle(): boolean {
    return this.#waiting.size === 0 && this.#ready.size === 0 && this.#readyLow.size === 0 &&
      this.#active.size === 0;
  }

  #checkIdle(): void {
    if (!this.#isIdle()) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
