/**
 * The reconciler: which ScriptRuns to reconcile, when, and with what they were last seen as.
 *
 * - `cycle()`: every run of every scope, from the watched view when it is current (through the
 *   work queue, settled runs left out), else from one LIST each of ScriptRuns, our ConfigMaps and
 *   our Jobs per scope, reconciled inline.
 * - `reconcileKey()`: one run a change woke, from the view.
 * - the per-run state (src/reconcile/): our writes the view has not shown yet, settled runs, Job
 *   warnings, backoffs; keyed by namespace and uid, pruned when the run is gone from a scope that
 *   could be listed, dropped when leadership changes hands.
 *
 * One reconcile itself (observe → plan → apply → record) is src/reconcile/run.ts.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { Backoff, mapLimit } from "../api/backoff.ts";
import { KubeError } from "../api/errors.ts";
import type { Kube } from "../api/port.ts";
import { namespaceOfKey, runKey } from "../api/owner.ts";
import type { Observed } from "../desired/plan.ts";
import type { PodOptions } from "../desired/desired.ts";
import { DEFAULT_POLICY, type Policy } from "../desired/policy.ts";
import { Expectations } from "../reconcile/expectations.ts";
import { JobWarnings } from "../reconcile/job_warnings.ts";
import {
  indexLists,
  observeFromLists,
  observeFromView,
  type RunView,
  viewLookup,
} from "../reconcile/observe.ts";
import { reconcileRun, type RunContext } from "../reconcile/run.ts";
import type { RunResult } from "../reconcile/result.ts";
import { type Lookup, Reads, settledFor, SettledRuns } from "../reconcile/settled.ts";
import type { Phase, Script, ScriptRun, ScriptRunStatus } from "../types.ts";

export type { RunView } from "../reconcile/observe.ts";

/** Hooks for metrics; every one optional. */
export interface ReconcileObserver {
  reconciled?(result: "success" | "error" | "requeue", seconds: number): void;
  cycle?(seconds: number, ok: boolean): void;
  phases?(counts: Record<Phase, number>): void;
  /** A reconcile began (+1) or ended (-1): how many workers are busy. */
  active?(delta: 1 | -1): void;
  /**
   * A status patch was accepted: `before` is the status it replaced. Each change of phase is
   * recorded once, by the one process whose write made it (the patch is guarded by the
   * resourceVersion it was planned from).
   */
  recorded?(run: ScriptRun, before: ScriptRunStatus, status: ScriptRunStatus): void;
}

/** What the reconciler needs. */
export interface ReconcilerOptions {
  kube: Kube;
  scripts: Map<string, Script>;
  log: Logger;
  /** Namespaces to serve; empty means all namespaces. */
  namespaces: string[];
  /** The watched view; without one (or while it is not current) every cycle LISTs. */
  view?: RunView;
  dryRun?: boolean;
  /** ScriptRuns reconciled at once by a cycle (and so writes in flight). */
  concurrency?: number;
  backoff?: Backoff;
  /** Backoff of a status patch refused with 409 (default: 200 ms doubling to 10 s, jittered). */
  conflictBackoff?: Backoff;
  now?: () => Date;
  /** Monotonic milliseconds, for how long reads and settled marks last (default: performance.now). */
  monotonic?: () => number;
  /** In [0, 1): spreads when settled runs are planned again (default: Math.random). */
  random?: () => number;
  observer?: ReconcileObserver;
  /** When aborted, ScriptRuns not yet started in this cycle are left for later. */
  signal?: AbortSignal;
  /** Asked before every write: false once this process lost (or may have lost) the Lease. */
  canWrite?: () => boolean;
  /** What ScriptRuns may ask for (default: DEFAULT_POLICY). */
  policy?: Policy;
  /** How Job pods are built beyond the spec (default: UID and GID 65532). */
  pod?: PodOptions;
  /**
   * With a current watched view, a cycle hands every ScriptRun to this (the work queue) instead of
   * reconciling it inline, so every reconcile of a run goes one way: debounced, one at a time.
   */
  schedule?: (namespace: string, name: string) => void;
}

/** Totals of one cycle. */
export interface CycleResult {
  ok: boolean;
  scriptRuns: number;
  writes: number;
  errors: number;
  /** Errors that stopped a whole scope (listing failed), with their messages. */
  scopeErrors: KubeError[];
  /** The API server did not answer (connection error or timeout): the cycle ended early. */
  unreachable: boolean;
  /** Where `source` came from: the watched view or plain LISTs. */
  source: "view" | "list";
}

/** One scope's runs, and how each is observed. */
interface Scope {
  runs: ScriptRun[];
  observe: (run: ScriptRun) => Observed;
}

/** A status patch refused with 409 (the run changed meanwhile) is planned again after this. */
const CONFLICT_BACKOFF = { baseMs: 200, maxMs: 10_000 };

/** Reconciles ScriptRuns: all of them per `cycle()`, or one per `reconcileKey()`. */
export class Reconciler {
  #o:
    & Required<
      Omit<ReconcilerOptions, "observer" | "view" | "schedule" | "monotonic" | "random">
    >
    & {
      observer: ReconcileObserver;
      view?: RunView;
      schedule?: (namespace: string, name: string) => void;
    };
  // Every per-run state below is keyed by runKey(namespace, uid) and pruned by cycle() when the
  // run is gone from a namespace it could list.
  /** Runs being reconciled: one reconcile per run at a time. */
  #busy = new Set<string>();
  /** Our writes the view has not shown yet. */
  #expect = new Expectations();
  /** Job warnings by namespace, read at most once per JOB_EVENTS_MS, and the runs waiting on them. */
  #jobWarnings: JobWarnings;
  /** Runs whose last reconcile from the view wrote nothing, by what it planned from. */
  #settled = new SettledRuns();
  /** Status patches refused with 409, per run. */
  #conflicts: Backoff;
  /** Leadership terms seen: state recorded in one term is not trusted in the next. */
  #term = 0;
  /** What each run's reconcile is handed. */
  #run: RunContext;
  #clock: () => number;
  #random: () => number;

  /** See ReconcilerOptions. */
  constructor(options: ReconcilerOptions) {
    this.#o = {
      signal: new AbortController().signal,
      canWrite: () => true,
      dryRun: false,
      concurrency: 8,
      backoff: new Backoff(),
      now: () => new Date(),
      observer: {},
      policy: DEFAULT_POLICY,
      pod: {},
      conflictBackoff: new Backoff(CONFLICT_BACKOFF),
      ...options,
    };
    this.#conflicts = this.#o.conflictBackoff;
    this.#clock = options.monotonic ?? (() => performance.now());
    this.#random = options.random ?? Math.random;
    this.#jobWarnings = new JobWarnings(
      (namespace) => this.#o.kube.listJobWarnings(namespace),
      options.monotonic,
    );
    const { kube, log, scripts, policy, pod, dryRun, now, canWrite, backoff, view } = this.#o;
    this.#run = {
      kube,
      log,
      scripts,
      policy,
      pod,
      dryRun,
      now,
      canWrite,
      backoff,
      conflicts: this.#conflicts,
      expect: this.#expect,
      jobWarnings: this.#jobWarnings,
      remembers: view !== undefined,
      term: () => this.#term,
      recorded: (run, before, status) => this.#o.observer.recorded?.(run, before, status),
      wake: view && ((namespace, name, key) => {
        this.#settled.delete(key);
        this.#o.schedule?.(namespace, name);
      }),
    };
  }

  /**
   * Forgets what this process assumed while it led: the writes it expected to see and the runs it
   * found settled. Called when the Lease is lost or won; another leader may have acted meanwhile.
   */
  endTerm(): void {
    this.#term++;
    this.#expect.clear();
    this.#settled.clear();
    this.#jobWarnings.clear();
    this.#conflicts.retain(new Set());
  }

  /** Asked before any work: false ends the term (see endTerm). */
  #leading(): boolean {
    if (this.#o.canWrite()) return true;
    if (this.#expect.size > 0 || this.#settled.size > 0) this.endTerm();
    return false;
  }

  /** Sizes of the per-run state, for tests that check it is bounded. */
  stateSizes(): {
    expectations: number;
    statusCopies: number;
    settled: number;
    jobWarnings: number;
    busy: number;
  } {
    return {
      expectations: this.#expect.size,
      statusCopies: this.#expect.statusCopies,
      settled: this.#settled.size,
      jobWarnings: this.#jobWarnings.size,
      busy: this.#busy.size,
    };
  }

  /** Whether the watched view can serve this cycle. */
  #fromView(): RunView | undefined {
    const view = this.#o.view;
    return view && view.synced() ? view : undefined;
  }

  /**
   * One pass over every ScriptRun. Never throws: failures are logged and counted. Ends early when
   * the API server cannot be reached: trying every run would only wait out every timeout.
   */
  async cycle(): Promise<CycleResult> {
    const started = performance.now();
    // Asked here for its side effect: a cycle run while not leading ends the term.
    this.#leading();
    const view = this.#fromView();
    const result: CycleResult = {
      ok: true,
      scriptRuns: 0,
      writes: 0,
      errors: 0,
      scopeErrors: [],
      unreachable: false,
      source: view ? "view" : "list",
    };
    const scopes = this.#o.namespaces.length > 0 ? this.#o.namespaces : [undefined];
    const phases: Record<Phase, number> = { Pending: 0, Running: 0, Succeeded: 0, Failed: 0 };
    const alive = new Set<string>();
    /** Scopes whose runs are known: their gone runs' state can be pruned. */
    const listed = new Set<string | undefined>();
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    this.#o.signal.addEventListener("abort", onAbort);
    try {
      for (const namespace of scopes) {
        if (stop.signal.aborted) break;
        const scope = view ? this.#scopeFromView(view, namespace) : await this.#list(namespace);
        if (scope instanceof KubeError) {
          result.ok = false;
          result.scopeErrors.push(scope);
          if (scope.code !== 0) continue;
          result.unreachable = true;
          break;
        }
        result.scriptRuns += scope.runs.length;
        listed.add(namespace);
        const keys = scope.runs.map(keyOf);
        for (const key of keys) alive.add(key);
        if (view && this.#o.schedule) this.#schedulePass(view, scope.runs, keys, phases);
        else await this.#reconcileScope(scope, namespace, { result, phases, stop });
      }
    } finally {
      this.#o.signal.removeEventListener("abort", onAbort);
    }
    this.#prune(alive, listed);
    // Runs whose pods are missing wait on their Jobs' warnings: one read per namespace wakes those
    // whose warnings changed.
    if (view && !result.unreachable) await this.#jobWarnings.poll();
    if (!result.unreachable && result.scopeErrors.length === 0) this.#o.observer.phases?.(phases);
    this.#o.observer.cycle?.((performance.now() - started) / 1000, result.ok);
    return result;
  }

  /** One scope's runs from the watched view. */
  #scopeFromView(view: RunView, namespace: string | undefined): Scope {
    return { runs: view.scriptRuns(namespace), observe: (run) => this.#observeFromView(view, run) };
  }

  /** One scope's runs from plain LISTs, or why it could not be listed. */
  async #list(namespace: string | undefined): Promise<Scope | KubeError> {
    try {
      const [runs, configMaps, jobs] = await Promise.all([
        this.#o.kube.listScriptRuns(namespace),
        this.#o.kube.listConfigMaps(namespace),
        this.#o.kube.listJobs(namespace),
      ]);
      const lists = indexLists(runs, configMaps, jobs);
      return { runs, observe: (run) => observeFromLists(run, lists) };
    } catch (error) {
      const e = asKubeError(error, "list");
      // The operator's loop logs the failure once, with when it retries.
      this.#o.log.debug("Listing failed", {
        namespace: namespace ?? "*",
        error: e.message,
        code: e.code,
      });
      return e;
    }
  }

  /**
   * The periodic pass over a current view: every run that is not settled goes through the work
   * queue. Settled runs are left out here rather than skipped by the queue, so 1,000 of them do
   * not queue ahead of a run that a change just woke.
   */
  #schedulePass(
    view: RunView,
    runs: ScriptRun[],
    keys: string[],
    phases: Record<Phase, number>,
  ): void {
    const now = this.#clock();
    const lookups = new Map<string, Lookup>();
    for (let i = 0; i < runs.length; i++) {
      const run = runs[i];
      const phase = run.status?.phase;
      if (phase) phases[phase]++;
      if (this.#isSettled(view, run, now, keys[i], lookups)) continue;
      this.#o.schedule?.(run.metadata.namespace ?? "", run.metadata.name);
    }
  }

  /** Reconciles a scope's runs inline, `concurrency` at a time, adding up to `totals`. */
  async #reconcileScope(
    scope: Scope,
    namespace: string | undefined,
    totals: { result: CycleResult; phases: Record<Phase, number>; stop: AbortController },
  ): Promise<void> {
    const { result, phases, stop } = totals;
    let throttled = 0;
    await mapLimit(scope.runs, this.#o.concurrency, async (run) => {
      if (stop.signal.aborted || !this.#o.canWrite()) return;
      const outcome = await this.#locked(run, () => scope.observe(run));
      if (outcome.phase) phases[outcome.phase]++;
      result.writes += outcome.writes;
      if (outcome.result === "error") {
        result.errors++;
        result.ok = false;
      }
      if (outcome.unreachable) {
        result.unreachable = true;
        stop.abort();
      }
      if (outcome.retryAfterMs !== undefined && outcome.result === "error") throttled++;
    });
    if (throttled > 0) {
      this.#o.log.warn("Some ScriptRuns are backing off after API errors", {
        namespace: namespace ?? "*",
        count: throttled,
      });
    }
  }

  /**
   * Drops the per-run state of runs gone from a scope that could be listed. A scope that failed
   * (no rights, API error) keeps its runs' state: whether they are gone is not known.
   */
  #prune(alive: ReadonlySet<string>, listed: ReadonlySet<string | undefined>): void {
    const all = listed.has(undefined);
    const keep = (key: string) => alive.has(key) || !(all || listed.has(namespaceOfKey(key)));
    this.#o.backoff.retain(keep);
    this.#conflicts.retain(keep);
    this.#expect.retain(keep);
    this.#settled.retain(keep);
    this.#jobWarnings.prune(keep);
  }

  /**
   * Reconciles one ScriptRun from the watched view (a change woke it). Returns undefined when the
   * view does not serve (the next cycle will) or the run is gone.
   */
  async reconcileKey(namespace: string, name: string): Promise<RunResult | undefined> {
    const view = this.#fromView();
    if (!view || !this.#leading()) return undefined;
    const run = view.scriptRun(namespace, name);
    if (!run) return undefined;
    // Settled: planned from exactly this input with nothing to do, and no time-bound step due.
    // The same input gives the same plan, so it is not planned again (the view's re-LIST every
    // 30 minutes and settledFor() bound how long this is trusted).
    const key = keyOf(run);
    const now = this.#clock();
    if (this.#isSettled(view, run, now, key)) {
      return { result: "success", writes: 0, phase: run.status?.phase };
    }
    this.#settled.delete(key);
    const planned = view.version(namespace, run.metadata.uid ?? "");
    const reads = new Reads(viewLookup(view, namespace));
    const term = this.#term;
    const result = await this.#locked(run, () => this.#observeFromView(view, run, reads));
    if (
      result.result === "success" && result.writes === 0 && !this.#o.dryRun && term === this.#term
    ) {
      const most = settledFor(result.phase, this.#random());
      const until = now + Math.min(result.retryAfterMs ?? most, most);
      this.#settled.set(key, { version: planned, reads: [...reads.seen], until });
    }
    return result;
  }

  /**
   * The view delivered a change of run `name` or one of its children. Once the view shows our
   * last status patch (or a newer write), the copy of it kept for the plan goes now rather than at
   * the run's next reconcile: while a burst keeps the queue thousands deep, those copies would
   * otherwise pile up (one ScriptRun each).
   */
  viewChanged(namespace: string, name: string): void {
    const run = this.#o.view?.scriptRun(namespace, name);
    if (run) this.#expect.latest(keyOf(run), run);
  }

  /** Whether the run was planned from this very input with nothing to do, and is not due. */
  #isSettled(
    view: RunView,
    run: ScriptRun,
    now: number,
    key: string,
    lookups?: Map<string, Lookup>,
  ): boolean {
    if (this.#expect.pending(key)) return false;
    const namespace = run.metadata.namespace ?? "";
    let lookup = lookups?.get(namespace);
    if (!lookup) {
      lookup = viewLookup(view, namespace);
      lookups?.set(namespace, lookup);
    }
    return this.#settled.has(key, view.version(namespace, run.metadata.uid ?? ""), lookup, now);
  }

  /** One reconcile per run at a time: a cycle and a wake-up never plan the same run at once. */
  async #locked(run: ScriptRun, observe: () => Observed): Promise<RunResult> {
    const key = keyOf(run);
    if (this.#busy.has(key)) return { result: "requeue", writes: 0, retryAfterMs: 100 };
    this.#busy.add(key);
    this.#o.observer.active?.(1);
    const t0 = performance.now();
    try {
      const current = this.#expect.latest(key, run);
      const outcome = await reconcileRun(current, observe(), this.#run);
      this.#o.observer.reconciled?.(outcome.result, (performance.now() - t0) / 1000);
      return outcome;
    } finally {
      this.#busy.delete(key);
      this.#o.observer.active?.(-1);
    }
  }

  /** The run as the view shows it, with our own writes the watch has not delivered yet. */
  #observeFromView(view: RunView, run: ScriptRun, reads?: Reads): Observed {
    const namespace = run.metadata.namespace ?? "";
    const observed = observeFromView(view, run, reads ?? new Reads(viewLookup(view, namespace)));
    this.#expect.applyTo(keyOf(run), observed, this.#now());
    return observed;
  }

  #now(): string {
    return this.#o.now().toISOString().replace(/\.\d{3}Z$/, "Z");
  }
}

function asKubeError(error: unknown, action: string): KubeError {
  return error instanceof KubeError
    ? error
    : new KubeError(String(error), { code: 0, kind: "transient", action });
}

/** The key of a run in every per-run map. */
function keyOf(run: ScriptRun): string {
  return runKey(run.metadata.namespace ?? "", run.metadata.uid ?? run.metadata.name);
}
