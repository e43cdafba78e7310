/**
 * Per-object backoff with jitter, so one failing ScriptRun never stalls the others. Pure state
 * machine: the caller passes the time and the random source.
 * @module
 */

/** Backoff settings. */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

/** Defaults: 5 s doubling to 5 min. */
export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 5_000, maxMs: 300_000 };

interface Entry {
  failures: number;
  notBefore: number;
  generation?: number;
  /** Permanent: wait for the spec to change (a new generation) rather than for time. */
  untilChanged: boolean;
}

/** Remembers failures per key (a ScriptRun's uid). */
export class Backoff {
  #entries = new Map<string, Entry>();
  #policy: BackoffPolicy;
  #random: () => number;

  /** `random` returns [0, 1) and makes the jitter testable. */
  constructor(policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random) {
    this.#policy = policy;
    this.#random = random;
  }

  /** Whether `key` may be worked on at `now`; a new generation always may. */
  ready(key: string, now: number, generation?: number): boolean {
    const e = this.#entries.get(key);
    if (!e) return true;
    if (generation !== undefined && e.generation !== undefined && generation !== e.generation) {
      this.#entries.delete(key);
      return true;
    }
    if (e.untilChanged) return false;
    return now >= e.notBefore;
  }

  /**
   * Records a failure; returns the delay chosen (ms). Doubling from `baseMs`, capped at `maxMs`,
   * multiplied by a jitter in [0.5, 1.5); never shorter than `retryAfterMs` (429 Retry-After).
   */
  failure(
    key: string,
    now: number,
    options: { generation?: number; retryAfterMs?: number } = {},
  ): number {
    const previous = this.#entries.get(key);
    const failures = (previous?.failures ?? 0) + 1;
    const exp = Math.min(this.#policy.maxMs, this.#policy.baseMs * 2 ** (failures - 1));
    const delay = Math.max(Math.round(exp * (0.5 + this.#random())), options.retryAfterMs ?? 0);
    this.#entries.set(key, {
      failures,
      notBefore: now + delay,
      generation: options.generation,
      untilChanged: false,
    });
    return delay;
  }

  /** Records a failure that only a spec change can fix (invalid spec). */
  untilChanged(key: string, generation?: number): void {
    this.#entries.set(key, { failures: 1, notBefore: Infinity, generation, untilChanged: true });
  }

  /** Clears `key` after a success. */
  success(key: string): void {
    this.#entries.delete(key);
  }

  /** Forgets keys not in `alive` (deleted ScriptRuns), or that `alive` refuses. */
  retain(alive: ReadonlySet<string> | ((key: string) => boolean)): void {
    const keep = typeof alive === "function" ? alive : (key: string) => alive.has(key);
    for (const key of this.#entries.keys()) if (!keep(key)) this.#entries.delete(key);
  }
}

/** Runs `fn` over `items` with at most `limit` in flight; never rejects (errors are fn's job). */
export async function mapLimit<T>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
