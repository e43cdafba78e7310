/**
 * The Warning Events of each namespace's Jobs (FailedCreate says why a Job has no pod), read at
 * most once per `JOB_EVENTS_MS` for all runs of the namespace, concurrent reconciles sharing one
 * request: runs whose pods are late wake often, and each such LIST costs the API server a scan of
 * every Event in the namespace. Keyed by namespace; entries older than `JOB_EVENTS_MS` are pruned.
 * @module
 */
import type { JobEvent } from "../types.ts";

/** A namespace's Job warnings are read again after this. */
export const JOB_EVENTS_MS = 10_000;

/** The last read of each namespace's Job warnings (in flight or done), with when it began. */
export class JobWarnings {
  #byNamespace = new Map<string, { at: number; byJob: Promise<Map<string, JobEvent[]>> }>();
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

  /** Namespaces with a read kept (for tests). */
  get size(): number {
    return this.#byNamespace.size;
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

  /** Drops reads that are too old to serve. */
  prune(): void {
    const now = this.#clock();
    for (const [namespace, e] of this.#byNamespace) {
      if (now - e.at >= JOB_EVENTS_MS) this.#byNamespace.delete(namespace);
    }
  }

  /** Forgets every read. */
  clear(): void {
    this.#byNamespace.clear();
  }
}
