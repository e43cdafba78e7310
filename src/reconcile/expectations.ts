/**
 * Our own writes that the watched view has not shown yet, per run (client-go's "expectations"):
 * without them a reconcile planned from a view that lags would repeat a create, a delete, or
 * plan from a status older than the one it just wrote. No I/O.
 *
 * Keyed by `runKey(namespace, uid)`. Bounded: the reconciler prunes runs that are gone, creates
 * and deletes are trusted for `EXPECT_MS` only, and everything is dropped when leadership is lost
 * (a new term plans from what the cluster shows, not from what an old term meant to do).
 * @module
 */
import { compactConfigMap, compactJob } from "../api/compact.ts";
import type { Action, Observed } from "../desired/plan.ts";
import type { ConfigMap, Job, ScriptRun } from "../types.ts";

/** How long a create or delete of ours may take to show in the view before we stop assuming it. */
export const EXPECT_MS = 30_000;

interface Expectation {
  /** When a create or delete was last remembered (performance.now()). */
  at: number;
  /** Compact copies (as the view holds them: no script body, no pod template). */
  created: Map<string, ConfigMap | Job>;
  deleted: Set<string>;
  /**
   * Our latest status patch: the run it returned, and every resourceVersion our patches replaced
   * along the way. While the view shows one of those, it has not caught up with our writes.
   */
  written?: { run: ScriptRun; superseded: Set<string> };
}

/** Writes of ours not yet seen in the view, per run. */
export class Expectations {
  #byRun = new Map<string, Expectation>();
  #clock: () => number;

  /** `clock`: milliseconds, monotonic (default performance.now). */
  constructor(clock: () => number = () => performance.now()) {
    this.#clock = clock;
  }

  /** Runs with something remembered (for tests and metrics). */
  get size(): number {
    return this.#byRun.size;
  }

  /** Runs whose latest status patch the view has not shown yet (each holds a ScriptRun). */
  get statusCopies(): number {
    let n = 0;
    for (const e of this.#byRun.values()) if (e.written) n++;
    return n;
  }

  /** Records a create or delete before it is sent (a create that times out may have happened). */
  remember(key: string, action: Action, now: string): void {
    if (action.type === "createConfigMap" || action.type === "createJob") {
      const e = this.#entry(key);
      const object = action.type === "createJob"
        ? compactJob(action.object)
        : compactConfigMap(action.object);
      object.metadata.creationTimestamp = now;
      e.created.set(action.object.metadata.name, object);
    } else if (action.type === "deleteJob") {
      this.#entry(key).deleted.add(action.name);
    }
  }

  /** Drops what `remember` recorded for a write the API server refused. */
  forget(key: string, action: Action): void {
    const e = this.#byRun.get(key);
    if (!e) return;
    if (action.type === "createConfigMap" || action.type === "createJob") {
      e.created.delete(action.object.metadata.name);
    } else if (action.type === "deleteJob") e.deleted.delete(action.name);
    this.#dropIfEmpty(key, e);
  }

  /** Records a status patch of `from` that the API server answered with `updated`. */
  wrote(key: string, from: ScriptRun, updated: ScriptRun): void {
    const e = this.#entry(key, false);
    const previous = e.written;
    const chain =
      previous && previous.run.metadata.resourceVersion === from.metadata.resourceVersion
        ? previous.superseded
        : new Set<string>();
    chain.add(from.metadata.resourceVersion ?? "");
    e.written = { run: updated, superseded: chain };
  }

  /** The run as our status patches left it, while the view still shows an older version. */
  latest(key: string, run: ScriptRun): ScriptRun {
    const e = this.#byRun.get(key);
    if (!e?.written) return run;
    if (e.written.superseded.has(run.metadata.resourceVersion ?? "")) return e.written.run;
    // The view shows our last write, or someone else's newer one: it is the truth again.
    e.written = undefined;
    this.#dropIfEmpty(key, e);
    return run;
  }

  /** Adds our creates and deletes that the view does not show yet to what was observed. */
  applyTo(key: string, observed: Observed, now: string): void {
    const e = this.#byRun.get(key);
    if (!e) return;
    if (this.#clock() - e.at >= EXPECT_MS) {
      e.created.clear();
      e.deleted.clear();
    }
    for (const [name, object] of e.created) {
      const list: (ConfigMap | Job)[] = object.kind === "Job" ? observed.jobs : observed.configMaps;
      if (list.some((o) => o.metadata.name === name)) e.created.delete(name);
      else list.push(object);
    }
    for (const name of e.deleted) {
      const i = observed.jobs.findIndex((j) => j.metadata.name === name);
      const job = observed.jobs[i];
      if (!job || job.metadata.deletionTimestamp) {
        e.deleted.delete(name);
      } else {
        // A copy: the view's object stays as the watch delivered it.
        observed.jobs[i] = { ...job, metadata: { ...job.metadata, deletionTimestamp: now } };
      }
    }
    this.#dropIfEmpty(key, e);
  }

  /** Whether writes of ours for this run are not yet seen in the view. */
  pending(key: string): boolean {
    return this.#byRun.has(key);
  }

  /** Keeps only the runs `keep` accepts; creates and deletes older than EXPECT_MS go too. */
  retain(keep: (key: string) => boolean): void {
    const now = this.#clock();
    for (const [key, e] of this.#byRun) {
      if (!keep(key)) {
        this.#byRun.delete(key);
        continue;
      }
      if (now - e.at >= EXPECT_MS) {
        e.created.clear();
        e.deleted.clear();
        this.#dropIfEmpty(key, e);
      }
    }
  }

  /** Forgets everything (leadership changed hands). */
  clear(): void {
    this.#byRun.clear();
  }

  #entry(key: string, touch = true): Expectation {
    let e = this.#byRun.get(key);
    if (!e) {
      this.#byRun.set(key, e = { at: this.#clock(), created: new Map(), deleted: new Set() });
    }
    if (touch) e.at = this.#clock();
    return e;
  }

  #dropIfEmpty(key: string, e: Expectation): void {
    if (e.created.size === 0 && e.deleted.size === 0 && !e.written) this.#byRun.delete(key);
  }
}
