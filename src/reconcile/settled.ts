/**
 * Runs whose last reconcile from the watched view wrote nothing: the same input gives the same
 * plan, so such a run is not planned again until something the plan read changes. No I/O.
 *
 * "What the plan read" is two things: the view's version of the run, its children and its pods
 * (which changes with any of them), and every lookup the plan made in the namespace's shared indexes (who holds a
 * name; whether that holder still exists), recorded with the answer it got. A Job of a deleted run
 * of the same name gates the plan without being the run's child: its deletion changes such an
 * answer. What the view does not hold (Job Events) is covered apart: a run whose plan read them
 * waits on them (src/reconcile/job_warnings.ts), and a change drops its mark and queues it.
 * @module
 */

/** A settled run is planned again after this, whatever its version says. */
export const SETTLED_MS = 5 * 60_000;

/**
 * The same for a finished run (Succeeded or Failed). Its plan reads only its children, its pods
 * and the clock (the TTL, whose due time ends the mark sooner), all of which wake it: the re-plan
 * is a safety net only. Finished runs pile up (one per deploy per app), and re-planning 10,000 of
 * them every 5 minutes cost more than everything else the operator does at rest.
 */
export const SETTLED_FINISHED_MS = 30 * 60_000;

/** Each mark lasts up to this fraction longer, so runs settled together are not due together. */
export const SETTLED_JITTER = 0.2;

/** How long a mark lasts at most: by phase, spread by `random` (in [0, 1)). Pure. */
export function settledFor(phase: string | undefined, random: number): number {
  const base = phase === "Succeeded" || phase === "Failed" ? SETTLED_FINISHED_MS : SETTLED_MS;
  return Math.round(base * (1 + SETTLED_JITTER * random));
}

/** Answers a lookup the plan makes, named like `job/NAME` (undefined: nothing there). */
export type Lookup = (what: string) => string | undefined;

/** The lookups one plan made, with their answers. */
export class Reads {
  /** Lookup → the answer the plan got. */
  readonly seen: Map<string, string | undefined> = new Map();
  #lookup: Lookup;

  /** Reads through `lookup`, recording each answer. */
  constructor(lookup: Lookup) {
    this.#lookup = lookup;
  }

  /** Looks up `what` and records the answer. */
  read(what: string): string | undefined {
    const answer = this.#lookup(what);
    this.seen.set(what, answer);
    return answer;
  }
}

/** Why a run is settled. */
export interface Mark {
  /** The view's version of the run, its children and its pods (`RunView.version`). */
  version: string;
  /** Each lookup the plan made, with its answer (pairs: one such mark per settled run). */
  reads: readonly (readonly [string, string | undefined])[];
  until: number;
}

/** Settled runs by `runKey(namespace, uid)`. */
export class SettledRuns {
  #byRun = new Map<string, Mark>();

  /** Runs marked (for tests and metrics). */
  get size(): number {
    return this.#byRun.size;
  }

  /**
   * Whether the run was planned from exactly this version with nothing to do, every lookup it
   * made still answers the same, and it is not due.
   */
  has(key: string, version: string, lookup: Lookup, now: number): boolean {
    const mark = this.#byRun.get(key);
    if (!mark || now >= mark.until || mark.version !== version) return false;
    for (const [what, answer] of mark.reads) if (lookup(what) !== answer) return false;
    return true;
  }

  /** Marks a run settled for what it was planned from, until `until` at the latest. */
  set(key: string, mark: Mark): void {
    this.#byRun.set(key, mark);
  }

  /** Drops a run's mark (it is being planned again). */
  delete(key: string): void {
    this.#byRun.delete(key);
  }

  /** Keeps only the runs `keep` accepts. */
  retain(keep: (key: string) => boolean): void {
    for (const key of this.#byRun.keys()) if (!keep(key)) this.#byRun.delete(key);
  }

  /** Forgets everything (leadership changed hands). */
  clear(): void {
    this.#byRun.clear();
  }
}
