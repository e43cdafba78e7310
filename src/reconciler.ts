/**
 * The reconciler: observe → plan → apply → record, for one ScriptRun at a time.
 *
 * - observe: what the cluster holds for the run, from the watched view when it is current, else
 *   from one LIST each of ScriptRuns, our ConfigMaps and our Jobs per cycle; pods and Job events
 *   only when the plan asks for them.
 * - plan: the pure `plan()` decides the writes and the status.
 * - apply: each write, checked against leadership just before it is sent.
 * - record: the status, guarded by the resourceVersion it was planned from, and an Event for each
 *   real step.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { Backoff, mapLimit } from "./backoff.ts";
import { KubeError } from "./errors.ts";
import type { EventNote, Kube } from "./kube.ts";
import { namespaceOfKey, runKey } from "./owner.ts";
import { type Action, invalidSpecStatus, type Observed, type Plan, statusEqual } from "./plan.ts";
import { DEFAULT_POLICY, type Policy } from "./policy.ts";
import { REASON } from "./reasons.ts";
import { errorPolicy } from "./reconcile/error_policy.ts";
import { execute } from "./reconcile/execute.ts";
import { planWithLookups } from "./reconcile/lookups.ts";
import { Expectations } from "./reconcile/expectations.ts";
import { JOB_EVENTS_MS, JobWarnings } from "./reconcile/job_warnings.ts";
import {
  applyToObserved,
  indexLists,
  mayHaveRun,
  observeFromLists,
  observeFromView,
  type RunView,
  viewLookup,
} from "./reconcile/observe.ts";
import { isTransition, logTransition, statusEvent } from "./reconcile/record.ts";
import { fingerprint, Reads, SETTLED_MS, SettledRuns } from "./reconcile/settled.ts";
import {
  GROUP,
  KIND,
  type Phase,
  type Script,
  type ScriptRun,
  type ScriptRunStatus,
} from "./types.ts";

export type { RunView } from "./reconcile/observe.ts";

/** Hooks for metrics; every one optional. */
export interface ReconcileObserver {
  reconciled?(result: "success" | "error" | "requeue", seconds: number): void;
  cycle?(seconds: number, ok: boolean): void;
  phases?(counts: Record<Phase, number>): void;
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
  observer?: ReconcileObserver;
  /** When aborted, ScriptRuns not yet started in this cycle are left for later. */
  signal?: AbortSignal;
  /** Asked before every write: false once this process lost (or may have lost) the Lease. */
  canWrite?: () => boolean;
  /** What ScriptRuns may ask for (default: DEFAULT_POLICY). */
  policy?: Policy;
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

/** What reconciling one ScriptRun came to. */
export interface RunResult {
  result: "success" | "error" | "requeue";
  writes: number;
  phase?: Phase;
  /** Reconcile this run again after this long, even if nothing changes (ms). */
  retryAfterMs?: number;
  /** The error was that the API server could not be reached. */
  unreachable?: boolean;
}

/** One scope's runs, and how each is observed. */
interface Scope {
  runs: ScriptRun[];
  observe: (run: ScriptRun) => Observed;
}

/** One reconcile of one run: what it started from and what it did so far. */
interface Attempt {
  /** The run as planned on; replaced by its latest state when that was read. */
  run: ScriptRun;
  observed: Observed;
  fields: Fields;
  /** runKey(namespace, uid). */
  key: string;
  generation?: number;
  nowMs: number;
  /** The leadership term it began in. */
  term: number;
  writes: number;
  /** The run's latest state was read from the API server. */
  verified: boolean;
}

interface Fields {
  group: string;
  kind: string;
  namespace: string;
  name: string;
  [key: string]: unknown;
}

/** A status patch refused with 409 (the run changed meanwhile) is planned again after this. */
const CONFLICT_BACKOFF = { baseMs: 200, maxMs: 10_000 };

/** Reconciles ScriptRuns: all of them per `cycle()`, or one per `reconcileKey()`. */
export class Reconciler {
  #o: Required<Omit<ReconcilerOptions, "observer" | "view" | "schedule">> & {
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
  /** Job warnings by namespace, read at most once per JOB_EVENTS_MS. */
  #jobWarnings: JobWarnings;
  /** Runs whose last reconcile from the view wrote nothing, by what it planned from. */
  #settled = new SettledRuns();
  /** Status patches refused with 409, per run. */
  #conflicts: Backoff;
  /** Leadership terms seen: state recorded in one term is not trusted in the next. */
  #term = 0;

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
      conflictBackoff: new Backoff(CONFLICT_BACKOFF),
      ...options,
    };
    this.#conflicts = this.#o.conflictBackoff;
    this.#jobWarnings = new JobWarnings((namespace) => this.#o.kube.listJobWarnings(namespace));
  }

  /**
   * Forgets what this process assumed while it led: the writes it expected to see and the runs it
   * found settled. Called when the Lease is lost or won; another leader may have acted meanwhile.
   */
  endTerm(): void {
    this.#term++;
    this.#expect.clear();
    this.#settled.clear();
    this.#conflicts.retain(new Set());
  }

  /** Asked before any work: false ends the term (see endTerm). */
  #leading(): boolean {
    if (this.#o.canWrite()) return true;
    if (this.#expect.size > 0 || this.#settled.size > 0) this.endTerm();
    return false;
  }

  /** Sizes of the per-run state, for tests that check it is bounded. */
  stateSizes(): { expectations: number; settled: number; jobWarnings: number; busy: number } {
    return {
      expectations: this.#expect.size,
      settled: this.#settled.size,
      jobWarnings: this.#jobWarnings.size,
      busy: this.#busy.size,
    };
  }

  /** Whether the watched view can serve this cycle. */
  #fromView(): RunView | undefined {
    const view = this.#o.view;
    return view && view.mode === "watch" && view.synced() ? view : undefined;
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
        for (const run of scope.runs) alive.add(keyOf(run));
        if (view && this.#o.schedule) this.#schedulePass(view, scope.runs, phases);
        else await this.#reconcileScope(scope, namespace, { result, phases, stop });
      }
    } finally {
      this.#o.signal.removeEventListener("abort", onAbort);
    }
    this.#prune(alive, listed);
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
  #schedulePass(view: RunView, runs: ScriptRun[], phases: Record<Phase, number>): void {
    const now = performance.now();
    for (const run of runs) {
      const phase = run.status?.phase;
      if (phase) phases[phase]++;
      if (this.#isSettled(view, run, now)) continue;
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
    this.#jobWarnings.prune();
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
    // 10 minutes and SETTLED_MS bound how long this is trusted).
    const key = keyOf(run);
    const now = performance.now();
    if (this.#isSettled(view, run, now)) {
      return { result: "success", writes: 0, phase: run.status?.phase };
    }
    this.#settled.delete(key);
    const planned = fingerprint(run, view.children(namespace, run.metadata.uid ?? ""));
    const reads = new Reads(viewLookup(view, namespace));
    const term = this.#term;
    const result = await this.#locked(run, () => this.#observeFromView(view, run, reads));
    if (
      result.result === "success" && result.writes === 0 && !this.#o.dryRun && term === this.#term
    ) {
      const until = now + Math.min(result.retryAfterMs ?? SETTLED_MS, SETTLED_MS);
      this.#settled.set(key, { fingerprint: planned, reads: reads.seen, until });
    }
    return result;
  }

  /** Whether the run was planned from this very input with nothing to do, and is not due. */
  #isSettled(view: RunView, run: ScriptRun, now: number): boolean {
    const namespace = run.metadata.namespace ?? "";
    const key = keyOf(run);
    const current = fingerprint(run, view.children(namespace, run.metadata.uid ?? ""));
    return !this.#expect.pending(key) &&
      this.#settled.has(key, current, viewLookup(view, namespace), now);
  }

  /** One reconcile per run at a time: a cycle and a wake-up never plan the same run at once. */
  async #locked(run: ScriptRun, observe: () => Observed): Promise<RunResult> {
    const key = keyOf(run);
    if (this.#busy.has(key)) return { result: "requeue", writes: 0, retryAfterMs: 100 };
    this.#busy.add(key);
    const t0 = performance.now();
    try {
      const current = this.#expect.latest(key, run);
      const outcome = await this.#reconcileRun(current, observe());
      this.#o.observer.reconciled?.(outcome.result, (performance.now() - t0) / 1000);
      return outcome;
    } finally {
      this.#busy.delete(key);
    }
  }

  /** The run as the view shows it, with our own writes the watch has not delivered yet. */
  #observeFromView(view: RunView, run: ScriptRun, reads?: Reads): Observed {
    const namespace = run.metadata.namespace ?? "";
    const observed = observeFromView(view, run, reads ?? new Reads(viewLookup(view, namespace)));
    this.#expect.applyTo(keyOf(run), observed, this.#now());
    return observed;
  }

  async #reconcileRun(viewed: ScriptRun, observed: Observed): Promise<RunResult> {
    const { log, backoff } = this.#o;
    const namespace = viewed.metadata.namespace ?? "default";
    const fields: Fields = { group: GROUP, kind: KIND, namespace, name: viewed.metadata.name };
    const a: Attempt = {
      run: viewed,
      observed,
      fields,
      key: keyOf(viewed),
      generation: viewed.metadata.generation,
      nowMs: this.#o.now().getTime(),
      term: this.#term,
      writes: 0,
      verified: false,
    };
    if (viewed.metadata.deletionTimestamp) {
      log.debug("Skipping ScriptRun being deleted", fields);
      return { result: "success", writes: 0 };
    }
    if (!backoff.ready(a.key, a.nowMs, a.generation)) {
      log.debug("Backing off", fields);
      return { result: "requeue", writes: 0, phase: viewed.status?.phase };
    }
    try {
      const planned = await this.#planVerified(a);
      if (!planned) {
        log.debug("ScriptRun gone or being deleted, nothing created", fields);
        return { result: "success", writes: 0 };
      }
      const applied = await this.#apply(a, planned);
      return "result" in applied ? applied : await this.#record(a, applied);
    } catch (error) {
      const failed = { ...a, phase: a.run.status?.phase };
      return errorPolicy(error, failed, { backoff, log });
    }
  }

  /**
   * plan(), with its lookups; and before a Job is created for a run that may have run before,
   * the run's latest state from the API server. Undefined when the run is gone meanwhile.
   */
  async #planVerified(a: Attempt): Promise<Plan | undefined> {
    const p = await this.#plan(a.run, a.observed, a.fields);
    if (a.verified || !p.actions.some((action) => action.type === "createJob")) return p;
    if (!mayHaveRun(a.run, a.observed, p.childName)) return p;
    // A view that lags (a new leader's, or ours right after a status patch) can show a run that
    // already ran as not yet run: its latest state decides, not the view.
    a.verified = true;
    const latest = await this.#o.kube.getScriptRun(a.fields.namespace, a.run.metadata.name);
    if (!latest || latest.metadata.uid !== a.run.metadata.uid) return undefined;
    if (latest.metadata.deletionTimestamp) return undefined;
    if (latest.metadata.resourceVersion === a.run.metadata.resourceVersion) return p;
    a.run = latest;
    return await this.#plan(a.run, a.observed, a.fields);
  }

  /** Whether writes of this attempt are remembered: for a view, within the term they began in. */
  #remembering(a: Attempt): boolean {
    return this.#o.view !== undefined && a.term === this.#term;
  }

  /**
   * Performs the plan's writes in order, planning again when the cluster turned out to differ.
   * Returns the plan whose status is to be recorded, or the result when the reconcile ends here.
   */
  async #apply(a: Attempt, planned: Plan): Promise<Plan | RunResult> {
    const { log } = this.#o;
    let p = planned;
    const childFields = { ...a.fields, child: p.childName, hash: p.hash };
    let replans = 0;
    for (let i = 0; i < p.actions.length; i++) {
      const action = p.actions[i];
      if (this.#o.dryRun) {
        log.info(action.message, { ...childFields, ...target(action), dryRun: true });
        continue;
      }
      if (!this.#o.canWrite()) {
        return { result: "requeue", writes: a.writes, phase: a.run.status?.phase };
      }
      log.info(action.message, { ...childFields, ...target(action) });
      // Remembered before it is sent: a create that times out may still have happened.
      if (this.#remembering(a)) this.#expect.remember(a.key, action, this.#now());
      const outcome = await execute(action, { kube: this.#o.kube, log: this.#o.log, ...a }).catch(
        (error) => {
          if (error instanceof KubeError && error.code >= 400) this.#expect.forget(a.key, action);
          throw error;
        },
      );
      if (outcome instanceof KubeError || outcome === "replan") this.#expect.forget(a.key, action);
      if (outcome === "replan") {
        if (++replans > 3) throw new Error("the cluster keeps changing under this ScriptRun");
        const again = await this.#planVerified(a);
        if (!again) return { result: "success", writes: a.writes };
        p = again;
        i = -1;
        continue;
      }
      if (outcome instanceof KubeError) {
        p.status = invalidSpecStatus(a.run, p.status, outcome.message, this.#now());
        this.#o.backoff.untilChanged(a.key, a.generation);
        log.warn("Spec refused by the API server", {
          ...childFields,
          reason: REASON.InvalidSpec,
          error: outcome.message,
        });
        break;
      }
      a.writes++;
      applyToObserved(a.observed, action, this.#now());
      if (action.event) {
        const message = `${action.message} ${targetName(action)}`;
        await this.#event(a.run, { type: "Normal", reason: action.reason, message }, a.fields);
      }
    }
    return p;
  }

  /** Records the plan's status (guarded by the version planned from) and when to look again. */
  async #record(a: Attempt, p: Plan): Promise<RunResult> {
    const { log, backoff } = this.#o;
    const { run, key } = a;
    const childFields = { ...a.fields, child: p.childName, hash: p.hash };
    const before = run.status ?? {};
    if (isTransition(p.status, before)) logTransition(log, p.status, childFields);
    else if (p.status.phase === "Pending" || p.status.phase === "Running") {
      log.debug("Waiting for Job to complete", { ...childFields, phase: p.status.phase });
    }
    if (!statusEqual(run.status, p.status)) {
      if (this.#o.dryRun) {
        const { phase, reason } = p.status;
        log.info("Updating status", { ...childFields, phase, reason, dryRun: true });
      } else {
        if (!this.#o.canWrite()) {
          return { result: "requeue", writes: a.writes, phase: before.phase };
        }
        const updated = await this.#patchStatus(run, p.status, childFields);
        if (!updated) {
          // The run changed since it was read: planned again soon, later each time it recurs.
          const delay = this.#conflicts.failure(key, a.nowMs);
          return { result: "requeue", writes: a.writes, phase: before.phase, retryAfterMs: delay };
        }
        this.#conflicts.success(key);
        if (this.#remembering(a)) this.#expect.wrote(key, run, updated);
        a.writes++;
        const note = statusEvent(p.status, before);
        if (note) await this.#event(run, note, a.fields);
      }
    }
    if (p.status.reason === REASON.NameConflict) {
      // Retry slowly: the foreign object may go away, but creating again every cycle is noise.
      const delay = backoff.failure(key, a.nowMs, { generation: a.generation });
      return { result: "requeue", writes: a.writes, phase: p.status.phase, retryAfterMs: delay };
    }
    if (p.status.reason !== REASON.InvalidSpec) backoff.success(key);
    return {
      result: "success",
      writes: a.writes,
      phase: p.status.phase,
      retryAfterMs: this.#recheck(a, p),
    };
  }

  /** When the run must be planned again even if nothing it watches changes (ms), if ever. */
  #recheck(a: Attempt, p: Plan): number | undefined {
    const at = p.recheckAt
      ? Math.max(0, Date.parse(p.recheckAt) - this.#o.now().getTime()) + 50
      : undefined;
    if (a.observed.jobEvents !== undefined && p.status.reason === REASON.JobPending) {
      // Events are not watched: one that explains the missing pod (FailedCreate) is found by
      // reading them again as soon as they may be read again.
      return Math.min(at ?? JOB_EVENTS_MS, JOB_EVENTS_MS);
    }
    return at;
  }

  #now(): string {
    return this.#o.now().toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  /** plan(), then the lookups it asks for (pods, Job events), then plan() again. */
  #plan(run: ScriptRun, observed: Observed, fields: Fields): Promise<Plan> {
    const { kube, log, scripts, policy } = this.#o;
    return planWithLookups(run, observed, {
      kube,
      log,
      fields,
      scripts,
      policy,
      now: () => this.#now(),
      jobWarnings: this.#jobWarnings,
    });
  }

  /**
   * Writes the status; returns the updated run, or undefined when the run changed since it was
   * read (409): plan again.
   */
  async #patchStatus(
    run: ScriptRun,
    status: ScriptRunStatus,
    fields: Fields,
  ): Promise<ScriptRun | undefined> {
    this.#o.log.debug("Updating status", { ...fields, phase: status.phase, reason: status.reason });
    try {
      return await this.#o.kube.patchStatus(run, status);
    } catch (error) {
      if (error instanceof KubeError && error.code === 409) {
        // A normal race: the ScriptRun changed after we read it. Read it again and plan again.
        this.#o.log.debug("Status changed meanwhile, planning again", fields);
        return undefined;
      }
      throw error;
    }
  }

  async #event(run: ScriptRun, note: EventNote, fields: Fields): Promise<void> {
    // A deposed leader records nothing, Events included.
    if (!this.#o.canWrite()) return;
    try {
      await this.#o.kube.createEvent(run, note);
    } catch (error) {
      // Events are best effort: a refused Event never fails the reconcile.
      this.#o.log.debug("Event not recorded", { ...fields, error: (error as Error).message });
    }
  }
}

function asKubeError(error: unknown, action: string): KubeError {
  return error instanceof KubeError
    ? error
    : new KubeError(String(error), { code: 0, kind: "transient", action });
}

function targetName(action: Action): string {
  return action.type === "createConfigMap" || action.type === "createJob"
    ? action.object.metadata.name
    : action.name;
}

function target(action: Action): Record<string, string> {
  const kind = action.type === "relabel"
    ? action.kind
    : action.type.endsWith("ConfigMap")
    ? "ConfigMap"
    : "Job";
  return { [kind === "ConfigMap" ? "configMap" : "job"]: targetName(action) };
}

/** The key of a run in every per-run map. */
function keyOf(run: ScriptRun): string {
  return runKey(run.metadata.namespace ?? "", run.metadata.uid ?? run.metadata.name);
}
