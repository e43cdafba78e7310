/**
 * The Warning Events of each namespace's Jobs (FailedCreate says why a Job has no pod), read at
 * most once per `JOB_EVENTS_MS` for all runs of the namespace, concurrent reconciles sharing one
 * request: each such LIST costs the API server a scan of every Event in the namespace.
 *
 * Events are not watched, so a run whose pod is missing cannot be woken by a new one the way a
 * pod or a Job wakes it. Instead such a run waits here with the warnings its plan read, and the
 * periodic pass calls `poll()`: one read per namespace with waiting runs wakes only the runs
 * whose Job's warnings changed. A thousand runs waiting for their pods cost one LIST per
 * interval, not a thousand reconciles. Keyed by namespace (reads) and by run (waiters); both are
 * pruned.
 * @module
 */
import type { JobEvent } from "../types.ts";

/** A namespace's Job warnings are read again after this. */
export const JOB_EVENTS_MS = 10_000;

/** A run waiting for its Job's warnings to change. */
interface Waiter {
  namespace: string;
  job: string;
  /** The warnings its plan read, as compared. */
  seen: string;
  wake: () => void;
}

/** The last read of each namespace's Job warnings (in flight or done), with when it began. */
export class JobWarnings {
  #byNamespace = new Map<string, { at: number; byJob: Promise<Map<string, JobEvent[]>> }>();
  #waiters = new Map<string, Waiter>();
  #read: (namespace: string) => Promise<Map<string, JobEvent[]>>;
  #clock: () => number;

  /** `read` lists a namespace's Job warnings; `clock` is monotonic milliseconds. */
  constructor(
    read: (namespace: string) => Promise<Map<string, JobEvent[]>>,
    clock: () => number = () => performance.now(),
  ) {
    this.#read = read;
    this.#clock = clock;
  }

  /** Namespaces with a read kept plus runs waiting (for tests that check it is bounded). */
  get size(): number {
    return this.#byNamespace.size + this.#waiters.size;
  }

  /** The namespace's Job warnings by Job name, from a read at most JOB_EVENTS_MS old. */
  of(namespace: string): Promise<Map<string, JobEvent[]>> {
    const cached = this.#byNamespace.get(namespace);
    if (cached && this.#clock() - cached.at < JOB_EVENTS_MS) return cached.byJob;
    const entry = { at: this.#clock(), byJob: this.#read(namespace) };
    this.#byNamespace.set(namespace, entry);
    entry.byJob.catch(() => {
      if (this.#byNamespace.get(namespace) === entry) this.#byNamespace.delete(namespace);
    });
    return entry.byJob;
  }

  /**
   * Run `key` waits for the warnings of Job `job` to differ from `seen` (what its plan read):
   * `poll()` then calls `wake` once. Replaces the run's earlier wait.
   */
  wait(key: string, namespace: string, job: string, seen: JobEvent[], wake: () => void): void {
    this.#waiters.set(key, { namespace, job, seen: warningsKey(seen), wake });
  }

  /** Run `key` no longer waits (its pod came, or it moved on). */
  stopWaiting(key: string): void {
    this.#waiters.delete(key);
  }

  /**
   * Reads the warnings of each namespace with waiting runs (at most once per JOB_EVENTS_MS) and
   * wakes the runs whose Job's warnings changed. A namespace that cannot be read keeps its waiters
   * for the next poll.
   */
  async poll(): Promise<void> {
    const namespaces = new Set([...this.#waiters.values()].map((w) => w.namespace));
    await Promise.all([...namespaces].map(async (namespace) => {
      let byJob: Map<string, JobEvent[]>;
      try {
        byJob = await this.of(namespace);
      } catch {
        return;
      }
      for (const [key, w] of this.#waiters) {
        if (w.namespace !== namespace || warningsKey(byJob.get(w.job) ?? []) === w.seen) continue;
        this.#waiters.delete(key);
        w.wake();
      }
    }));
  }

  /** Drops reads that are too old to serve, and the waits of runs `keep` refuses. */
  prune(keep: (key: string) => boolean = () => true): void {
    const now = this.#clock();
    for (const [namespace, e] of this.#byNamespace) {
      if (now - e.at >= JOB_EVENTS_MS) this.#byNamespace.delete(namespace);
    }
    for (const key of this.#waiters.keys()) if (!keep(key)) this.#waiters.delete(key);
  }

  /** Forgets every read and every wait. */
  clear(): void {
    this.#byNamespace.clear();
    this.#waiters.clear();
  }
}

function warningsKey(events: JobEvent[]): string {
  return JSON.stringify(events.map((e) => [e.reason, e.message]));
}
