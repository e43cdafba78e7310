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
import { type EventNote, type Kube, NotLeaderError } from "./kube.ts";
import {
  type Action,
  invalidSpecStatus,
  type Observed,
  type Plan,
  plan,
  statusEqual,
} from "./plan.ts";
import { DEFAULT_POLICY, type Policy } from "./policy.ts";
import type { PodOptions } from "./desired.ts";
import { REASON } from "./reasons.ts";
import {
  type ConfigMap,
  GROUP,
  type Job,
  type JobEvent,
  KIND,
  type Phase,
  type PodSummary,
  type Script,
  type ScriptRun,
  type ScriptRunStatus,
} from "./types.ts";

/** Hooks for metrics; every one optional. */
export interface ReconcileObserver {
  reconciled?(result: "success" | "error" | "requeue", seconds: number): void;
  cycle?(seconds: number, ok: boolean): void;
  phases?(counts: Record<Phase, number>): void;
}

/** The watched view, as far as the reconciler reads it (see src/view.ts). */
export interface RunView {
  /** True while the view serves reads (started, not stopped); it then stays current by itself. */
  synced(): boolean;
  scriptRuns(namespace?: string): ScriptRun[];
  scriptRun(namespace: string, name: string): ScriptRun | undefined;
  /** Children by controller ownerReference uid; pods by the run-uid label. */
  children(runUid: string): { configMaps: ConfigMap[]; jobs: Job[]; pods: PodSummary[] };
  /** name → controller ScriptRun uid ("" for none) of every managed object in a namespace. */
  names(
    namespace: string,
  ): { configMaps: ReadonlyMap<string, string>; jobs: ReadonlyMap<string, string> };
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
  now?: () => Date;
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

interface Fields {
  group: string;
  kind: string;
  namespace: string;
  name: string;
  [key: string]: unknown;
}

/** How long a write of ours may take to show in the watched view before we stop assuming it. */
const EXPECT_MS = 30_000;
/** A Job's events are read again for a late pod at most this often. */
const JOB_EVENTS_MS = 10_000;
/** A settled run (nothing to do for the versions it was planned from) is planned again after this. */
const SETTLED_MS = 5 * 60_000;
/** A status patch refused with 409 (the run changed meanwhile) is planned again after this. */
const CONFLICT_RETRY_MS = 200;

/** Reasons worth an Event when the status takes them (others are Normal steps or none). */
const EVENT_REASONS: ReadonlySet<string> = new Set([
  REASON.NameConflict,
  REASON.Unschedulable,
  REASON.FailedCreate,
  REASON.ScriptNotFound,
  REASON.InvalidSpec,
  REASON.PolicyViolation,
]);

/** Our own writes not yet seen in the watched view, per run uid. */
interface Expectation {
  at: number;
  created: Map<string, ConfigMap | Job>;
  deleted: Set<string>;
  /** The status patch: the resourceVersion it was planned from and the run it returned. */
  written?: { from?: string; run: ScriptRun };
}

/** Reconciles ScriptRuns: all of them per `cycle()`, or one per `reconcileKey()`. */
export class Reconciler {
  #o: Required<Omit<ReconcilerOptions, "observer" | "view" | "schedule">> & {
    observer: ReconcileObserver;
    view?: RunView;
    schedule?: (namespace: string, name: string) => void;
  };
  #busy = new Set<string>();
  #expect = new Map<string, Expectation>();
  /** The last read of each namespace's Job warnings (in flight or done), with when it began. */
  #jobWarnings = new Map<string, { at: number; byJob: Promise<Map<string, JobEvent[]>> }>();
  /** Runs whose last reconcile from the view wrote nothing, by the versions it planned from. */
  #settled = new Map<string, { fingerprint: string; until: number }>();

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
      ...options,
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
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    this.#o.signal.addEventListener("abort", onAbort);
    try {
      for (const namespace of scopes) {
        if (stop.signal.aborted) break;
        let runs: ScriptRun[];
        let observe: (run: ScriptRun) => Observed;
        if (view) {
          runs = view.scriptRuns(namespace);
          observe = (run) => this.#observeFromView(view, run);
        } else {
          try {
            const [r, configMaps, jobs] = await Promise.all([
              this.#o.kube.listScriptRuns(namespace),
              this.#o.kube.listConfigMaps(namespace),
              this.#o.kube.listJobs(namespace),
            ]);
            runs = r;
            const byOwner = groupByController(configMaps, jobs);
            const names = namesByNamespace(configMaps, jobs);
            const uids = new Set(r.map((run) => run.metadata.uid ?? ""));
            observe = (run) => observeFromLists(run, byOwner, names, (uid) => uids.has(uid));
          } catch (error) {
            const e = asKubeError(error, "list");
            // The operator's loop logs the failure once, with when it retries.
            this.#o.log.debug("Listing failed", {
              namespace: namespace ?? "*",
              error: e.message,
              code: e.code,
            });
            result.ok = false;
            result.scopeErrors.push(e);
            if (e.code === 0) {
              result.unreachable = true;
              break;
            }
            continue;
          }
        }
        result.scriptRuns += runs.length;
        for (const run of runs) alive.add(run.metadata.uid ?? "");
        const schedule = this.#o.schedule;
        if (view && schedule) {
          // The periodic pass over a current view: every run that is not settled goes through
          // the work queue. Settled runs are left out here rather than skipped by the queue, so
          // 1,000 of them do not queue ahead of a run that a change just woke.
          const now = performance.now();
          for (const run of runs) {
            const phase = run.status?.phase;
            if (phase) phases[phase]++;
            const uid = run.metadata.uid ?? "";
            if (this.#isSettled(uid, versions(run, view.children(uid)), now)) continue;
            schedule(run.metadata.namespace ?? "", run.metadata.name);
          }
          continue;
        }
        let throttled = 0;
        await mapLimit(runs, this.#o.concurrency, async (run) => {
          if (stop.signal.aborted || !this.#o.canWrite()) return;
          const outcome = await this.#locked(run, () => observe(run));
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
    } finally {
      this.#o.signal.removeEventListener("abort", onAbort);
    }
    if (!result.unreachable && result.scopeErrors.length === 0) {
      this.#o.backoff.retain(alive);
      for (const uid of this.#expect.keys()) if (!alive.has(uid)) this.#expect.delete(uid);
      for (const uid of this.#settled.keys()) if (!alive.has(uid)) this.#settled.delete(uid);
      const now = performance.now();
      for (const [key, e] of this.#jobWarnings) {
        if (now - e.at >= JOB_EVENTS_MS) this.#jobWarnings.delete(key);
      }
      this.#o.observer.phases?.(phases);
    }
    this.#o.observer.cycle?.((performance.now() - started) / 1000, result.ok);
    return result;
  }

  /**
   * Reconciles one ScriptRun from the watched view (a change woke it). Returns undefined when the
   * view does not serve (the next cycle will) or the run is gone.
   */
  async reconcileKey(namespace: string, name: string): Promise<RunResult | undefined> {
    const view = this.#fromView();
    if (!view || !this.#o.canWrite()) return undefined;
    const run = view.scriptRun(namespace, name);
    if (!run) return undefined;
    // Settled: planned from exactly these object versions with nothing to do, and no time-bound
    // step due. The same input gives the same plan, so it is not planned again (the view's
    // re-LIST every 10 minutes and SETTLED_MS bound how long this is trusted).
    const uid = run.metadata.uid ?? "";
    const fingerprint = versions(run, view.children(uid));
    const now = performance.now();
    if (this.#isSettled(uid, fingerprint, now)) {
      return { result: "success", writes: 0, phase: run.status?.phase };
    }
    this.#settled.delete(uid);
    const result = await this.#locked(run, () => this.#observeFromView(view, run));
    if (result.result === "success" && result.writes === 0 && !this.#o.dryRun) {
      const until = now + Math.min(result.retryAfterMs ?? SETTLED_MS, SETTLED_MS);
      this.#settled.set(uid, { fingerprint, until });
    }
    return result;
  }

  /** Whether the run was planned from exactly these versions with nothing to do, and is not due. */
  #isSettled(uid: string, fingerprint: string, now: number): boolean {
    const settled = this.#settled.get(uid);
    return settled?.fingerprint === fingerprint && now < settled.until && !this.#pending(uid);
  }

  /** Whether writes of ours for this run are not yet seen in the view. */
  #pending(uid: string): boolean {
    const e = this.#expect.get(uid);
    return !!e && (e.created.size > 0 || e.deleted.size > 0 || e.written !== undefined);
  }

  /** One reconcile per run at a time: a cycle and a wake-up never plan the same run at once. */
  async #locked(run: ScriptRun, observe: () => Observed): Promise<RunResult> {
    const key = run.metadata.uid ?? `${run.metadata.namespace}/${run.metadata.name}`;
    if (this.#busy.has(key)) return { result: "requeue", writes: 0, retryAfterMs: 100 };
    this.#busy.add(key);
    const t0 = performance.now();
    try {
      const current = this.#written(run);
      const outcome = await this.#reconcileRun(current, observe());
      this.#o.observer.reconciled?.(outcome.result, (performance.now() - t0) / 1000);
      return outcome;
    } finally {
      this.#busy.delete(key);
    }
  }

  /** The run as our last status patch left it, while the view has not caught up with it. */
  #written(run: ScriptRun): ScriptRun {
    const e = this.#expect.get(run.metadata.uid ?? "");
    if (!e?.written) return run;
    if (e.written.from === run.metadata.resourceVersion) return e.written.run;
    e.written = undefined;
    return run;
  }

  #observeFromView(view: RunView, run: ScriptRun): Observed {
    const uid = run.metadata.uid ?? "";
    const children = view.children(uid);
    const namespace = run.metadata.namespace ?? "";
    const names = view.names(namespace);
    const alive = (owner: string) =>
      view.scriptRuns(namespace).some((r) => r.metadata.uid === owner);
    const observed: Observed = withPredecessors({
      configMaps: [...children.configMaps],
      jobs: [...children.jobs],
      foreignConfigMaps: new ForeignNames(names.configMaps, uid, alive),
      foreignJobs: new ForeignNames(names.jobs, uid, alive),
      pods: children.pods,
      podsCached: true,
    });
    // Our own writes that the watch has not delivered yet count as done.
    const e = this.#expect.get(uid);
    if (e && performance.now() - e.at < EXPECT_MS) {
      for (const [name, object] of e.created) {
        const list: (ConfigMap | Job)[] = object.kind === "Job"
          ? observed.jobs
          : observed.configMaps;
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
          const deletionTimestamp = this.#now();
          observed.jobs[i] = { ...job, metadata: { ...job.metadata, deletionTimestamp } };
        }
      }
    } else if (e) {
      e.created.clear();
      e.deleted.clear();
    }
    return observed;
  }

  #expectation(uid: string): Expectation {
    let e = this.#expect.get(uid);
    if (!e) {
      this.#expect.set(uid, e = { at: performance.now(), created: new Map(), deleted: new Set() });
    }
    e.at = performance.now();
    return e;
  }

  async #reconcileRun(run: ScriptRun, observed: Observed): Promise<RunResult> {
    const { log, backoff } = this.#o;
    const namespace = run.metadata.namespace ?? "default";
    const fields: Fields = { group: GROUP, kind: KIND, namespace, name: run.metadata.name };
    const key = run.metadata.uid ?? `${namespace}/${run.metadata.name}`;
    const generation = run.metadata.generation;
    if (run.metadata.deletionTimestamp) {
      log.debug("Skipping ScriptRun being deleted", fields);
      return { result: "success", writes: 0 };
    }
    const nowMs = this.#o.now().getTime();
    if (!backoff.ready(key, nowMs, generation)) {
      log.debug("Backing off", fields);
      return { result: "requeue", writes: 0, phase: run.status?.phase };
    }
    let writes = 0;
    try {
      // observe + plan: look up what the plan asks for, at most once each.
      let p = await this.#plan(run, observed, fields);
      const childFields = { ...fields, child: p.childName, hash: p.hash };

      // apply
      let applied = 0;
      let replans = 0;
      while (applied < p.actions.length) {
        const action = p.actions[applied++];
        if (this.#o.dryRun) {
          log.info(action.message, { ...childFields, ...target(action), dryRun: true });
          continue;
        }
        if (!this.#o.canWrite()) return { result: "requeue", writes, phase: run.status?.phase };
        log.info(action.message, { ...childFields, ...target(action) });
        // Remembered before it is sent: a create that times out may still have happened.
        this.#remember(run, action);
        const outcome = await this.#execute(run, action, observed, fields).catch((error) => {
          if (error instanceof KubeError && error.code >= 400) this.#forget(run, action);
          throw error;
        });
        if (outcome instanceof KubeError || outcome === "replan") this.#forget(run, action);
        if (outcome === "replan") {
          if (++replans > 3) throw new Error("the cluster keeps changing under this ScriptRun");
          p = await this.#plan(run, observed, fields);
          applied = 0;
          continue;
        }
        if (outcome instanceof KubeError) {
          p.status = invalidSpecStatus(run, p.status, outcome.message, this.#now());
          backoff.untilChanged(key, generation);
          log.warn("Spec refused by the API server", {
            ...childFields,
            reason: REASON.InvalidSpec,
            error: outcome.message,
          });
          break;
        }
        writes++;
        applyToObserved(observed, action, this.#now());
        if (action.event) {
          await this.#event(run, {
            type: "Normal",
            reason: action.reason,
            message: `${action.message} ${targetName(action)}`,
          }, fields);
        }
      }

      // record
      const before = run.status ?? {};
      const transition = before.phase !== p.status.phase || before.reason !== p.status.reason;
      if (transition) this.#logTransition(p.status, childFields);
      else if (p.status.phase === "Pending" || p.status.phase === "Running") {
        log.debug("Waiting for Job to complete", { ...childFields, phase: p.status.phase });
      }
      if (!statusEqual(run.status, p.status)) {
        if (this.#o.dryRun) {
          log.info("Updating status", {
            ...childFields,
            phase: p.status.phase,
            reason: p.status.reason,
            dryRun: true,
          });
        } else {
          if (!this.#o.canWrite()) return { result: "requeue", writes, phase: run.status?.phase };
          const recorded = await this.#patchStatus(run, p.status, childFields);
          if (!recorded) {
            return {
              result: "requeue",
              writes,
              phase: run.status?.phase,
              retryAfterMs: CONFLICT_RETRY_MS,
            };
          }
          writes++;
          if (transition && eventWorthy(p.status, before)) {
            const warning = p.status.phase === "Failed" || EVENT_REASONS.has(p.status.reason ?? "");
            await this.#event(run, {
              type: warning ? "Warning" : "Normal",
              reason: p.status.reason ?? p.status.phase ?? "Updated",
              message: p.status.message ?? `phase ${p.status.phase}`,
            }, fields);
          }
        }
      }
      const retryAfterMs = p.recheckAt
        ? Math.max(0, Date.parse(p.recheckAt) - this.#o.now().getTime()) + 50
        : undefined;
      if (p.status.reason === REASON.NameConflict) {
        // Retry slowly: the foreign object may go away, but creating again every cycle is noise.
        const delay = backoff.failure(key, nowMs, { generation });
        return { result: "requeue", writes, phase: p.status.phase, retryAfterMs: delay };
      }
      if (p.status.reason !== REASON.InvalidSpec) backoff.success(key);
      return { result: "success", writes, phase: p.status.phase, retryAfterMs };
    } catch (error) {
      if (error instanceof NotLeaderError) {
        // Leadership went while this run was being reconciled: nothing to retry here.
        log.debug("Not the leader any more, write not sent", fields);
        return { result: "requeue", writes, phase: run.status?.phase };
      }
      if (!(error instanceof KubeError)) {
        // A bug or an unexpected answer: this run backs off, the cycle goes on for the others.
        const delay = backoff.failure(key, nowMs, { generation });
        log.error("Reconcile failed", {
          ...fields,
          error: error instanceof Error ? error.message : String(error),
          retryInMs: delay,
        });
        return { result: "error", writes, phase: run.status?.phase, retryAfterMs: delay };
      }
      const e = error;
      if (e.kind === "forbidden" && /because it is being terminated/.test(e.message)) {
        // The namespace is being deleted, this ScriptRun with it: nothing to create any more.
        log.debug("Namespace is being deleted, nothing created", fields);
        return { result: "requeue", writes, phase: run.status?.phase };
      }
      const delay = backoff.failure(key, nowMs, {
        generation,
        retryAfterMs: e.retryAfterSeconds !== undefined ? e.retryAfterSeconds * 1000 : undefined,
      });
      const unreachable = e.code === 0;
      if (e.code === 429 || e.code >= 500 || unreachable) {
        // Throttling and outages are the cycle's news (one line), not one error line per run.
        log.debug("Reconcile failed, retrying", {
          ...fields,
          error: e.message,
          code: e.code,
          retryInMs: delay,
        });
      } else {
        const hint = e.kind === "forbidden"
          ? "the operator's identity lacks this permission; apply deploy/rbac.yaml or grant it"
          : undefined;
        log.error("Reconcile failed", {
          ...fields,
          error: e.message,
          code: e.code,
          retryInMs: delay,
          hint,
        });
      }
      return {
        result: "error",
        writes,
        phase: run.status?.phase,
        retryAfterMs: delay,
        unreachable,
      };
    }
  }

  #now(): string {
    return this.#o.now().toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  /** plan(), then the lookups it asks for (pods, Job events), then plan() again. */
  async #plan(run: ScriptRun, observed: Observed, fields: Fields): Promise<Plan> {
    const namespace = run.metadata.namespace ?? "default";
    const { scripts, policy, pod } = this.#o;
    let p = plan(run, { scripts, observed, now: this.#now(), policy, pod });
    for (let round = 0; round < 3 && p.needs.length > 0; round++) {
      for (const need of p.needs) {
        if (need === "job" && !observed.jobLookedUp) {
          observed.jobLookedUp = true;
          // Jobs that pods of this run name but the label-selected lists lack.
          const known = new Set(observed.jobs.map((j) => j.metadata.name));
          const missing = new Set(
            (observed.pods ?? []).map((pod) => pod.jobName).filter((n): n is string =>
              !!n && !known.has(n)
            ),
          );
          for (const name of missing) {
            const job = await this.#o.kube.getJob(namespace, name);
            if (job && controllerUid(job) === run.metadata.uid) observed.jobs.push(job);
            else if (job && name === p.childName) {
              if (predecessorOf(job, run)) {
                observed.predecessors = withName(observed.predecessors ?? NONE, name);
              } else observed.foreignJobs = withName(observed.foreignJobs, name);
            }
          }
        } else if (need === "pods" && observed.pods === undefined) {
          observed.pods = await this.#o.kube.listRunPods(namespace, run.metadata.uid ?? "");
        } else if (need === "jobEvents" && observed.jobEvents === undefined && p.childName) {
          try {
            observed.jobEvents = (await this.#warningsOf(namespace)).get(p.childName) ?? [];
          } catch (error) {
            // Events explain a wait; without them the status still says the pod has not started.
            this.#o.log.debug("Job events not readable", {
              ...fields,
              error: (error as Error).message,
            });
            observed.jobEvents = [];
          }
        }
      }
      p = plan(run, { scripts, observed, now: this.#now(), policy, pod });
    }
    if (
      observed.podsCached && p.actions.some((a) => a.type === "createJob") && !fresh(run, observed)
    ) {
      // The one-Job rule is checked against the cluster itself, not a cache that may lag: read
      // the run's pods before creating a Job for a run that had Jobs before.
      observed.pods = await this.#o.kube.listRunPods(namespace, run.metadata.uid ?? "");
      observed.podsCached = false;
      observed.jobLookedUp = false;
      return await this.#plan(run, observed, fields);
    }
    return p;
  }

  /**
   * The Warning Events of `namespace`'s Jobs, read at most once per JOB_EVENTS_MS for all runs
   * of the namespace (concurrent reconciles share one request): runs whose pods are late wake
   * often, and each such LIST costs the API server a scan of every Event in the namespace.
   */
  #warningsOf(namespace: string): Promise<Map<string, JobEvent[]>> {
    const cached = this.#jobWarnings.get(namespace);
    if (cached && performance.now() - cached.at < JOB_EVENTS_MS) return cached.byJob;
    const entry = { at: performance.now(), byJob: this.#o.kube.listJobWarnings(namespace) };
    this.#jobWarnings.set(namespace, entry);
    entry.byJob.catch(() => {
      if (this.#jobWarnings.get(namespace) === entry) this.#jobWarnings.delete(namespace);
    });
    return entry.byJob;
  }

  /**
   * Performs one write. Returns "replan" when the cluster turned out to differ from what was
   * observed (a create met an existing object), a KubeError when the API server refused the
   * object as invalid, and throws on anything else.
   */
  async #execute(
    run: ScriptRun,
    action: Action,
    observed: Observed,
    fields: Fields,
  ): Promise<void | "replan" | KubeError> {
    const kube = this.#o.kube;
    const namespace = run.metadata.namespace ?? "default";
    try {
      switch (action.type) {
        case "createConfigMap":
          return await kube.createConfigMap(action.object);
        case "createJob":
          return await kube.createJob(action.object);
        case "deleteJob":
          return await kube.deleteJob(namespace, action.name);
        case "deleteConfigMap":
          return await kube.deleteConfigMap(namespace, action.name);
        case "relabel":
          return await kube.relabel(action.kind, namespace, action.name, action.labels);
      }
    } catch (error) {
      if (!(error instanceof KubeError)) throw error;
      // Already gone is what a delete wanted.
      if (error.kind === "notFound" && action.type.startsWith("delete")) return;
      if (
        error.kind === "alreadyExists" &&
        (action.type === "createConfigMap" || action.type === "createJob")
      ) {
        // Ours with its labels removed (so our lists missed it), or someone else's.
        const name = action.object.metadata.name;
        const existing = action.type === "createJob"
          ? await kube.getJob(namespace, name)
          : await kube.getConfigMap(namespace, name);
        const ours = existing && controllerUid(existing) === run.metadata.uid;
        this.#o.log.debug("Create met an existing object", { ...fields, child: name, ours });
        if (!existing) return "replan"; // gone again meanwhile: plan from scratch
        if (action.type === "createJob") {
          if (ours) observed.jobs.push(existing as Job);
          else if (predecessorOf(existing, run)) {
            observed.predecessors = withName(observed.predecessors ?? NONE, name);
          } else observed.foreignJobs = withName(observed.foreignJobs, name);
        } else {
          if (ours) observed.configMaps.push(existing as ConfigMap);
          else if (predecessorOf(existing, run)) {
            observed.predecessors = withName(observed.predecessors ?? NONE, name);
          } else observed.foreignConfigMaps = withName(observed.foreignConfigMaps, name);
        }
        return "replan";
      }
      if (error.kind === "invalid" && action.type.startsWith("create")) return error;
      throw error;
    }
  }

  /** Records a write so a view that has not caught up does not make us repeat it. */
  #remember(run: ScriptRun, action: Action): void {
    if (!this.#o.view) return;
    const e = this.#expectation(run.metadata.uid ?? "");
    if (action.type === "createConfigMap" || action.type === "createJob") {
      const object = structuredClone(action.object);
      object.metadata.creationTimestamp = this.#now();
      e.created.set(action.object.metadata.name, object);
    } else if (action.type === "deleteJob") {
      e.deleted.add(action.name);
    }
  }

  /** Drops what #remember recorded for a write the API server refused. */
  #forget(run: ScriptRun, action: Action): void {
    const e = this.#expect.get(run.metadata.uid ?? "");
    if (!e) return;
    if (action.type === "createConfigMap" || action.type === "createJob") {
      e.created.delete(action.object.metadata.name);
    } else if (action.type === "deleteJob") e.deleted.delete(action.name);
  }

  /** Writes the status; false when the run changed since it was read (409): plan again. */
  async #patchStatus(run: ScriptRun, status: ScriptRunStatus, fields: Fields): Promise<boolean> {
    this.#o.log.debug("Updating status", { ...fields, phase: status.phase, reason: status.reason });
    const from = run.metadata.resourceVersion;
    try {
      const updated = await this.#o.kube.patchStatus(run, status);
      if (this.#o.view) this.#expectation(run.metadata.uid ?? "").written = { from, run: updated };
      return true;
    } catch (error) {
      if (error instanceof KubeError && error.code === 409) {
        // A normal race: the ScriptRun changed after we read it. Read it again and plan again.
        this.#o.log.debug("Status changed meanwhile, planning again", fields);
        return false;
      }
      throw error;
    }
  }

  #logTransition(status: ScriptRunStatus, fields: Record<string, unknown>): void {
    const log = this.#o.log;
    const { phase, reason, message } = status;
    if (phase === "Succeeded") log.info("Job succeeded", { ...fields, reason });
    else if (phase === "Failed" && reason === REASON.ScriptNotFound) {
      log.warn("Script not found", { ...fields, reason, message });
    } else if (phase === "Failed" && reason === REASON.PolicyViolation) {
      log.warn("Refused by policy", { ...fields, reason, message });
    } else if (phase === "Failed") log.warn("Job failed", { ...fields, reason, message });
    else if (reason === REASON.NameConflict) {
      log.warn("Name conflict", { ...fields, reason, message });
    } else if (reason === REASON.ReplacingJob) {
      log.info("Waiting for the replaced Job's pods to stop", { ...fields, reason, message });
    } else if (phase === "Pending" && reason !== REASON.JobPending) {
      log.warn("Pod not starting", { ...fields, reason, message });
    } else if (phase === "Running") log.info("Job running", { ...fields, reason });
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

/** The resourceVersions of a run and everything of it the view holds, as one string. */
function versions(
  run: ScriptRun,
  children: { configMaps: ConfigMap[]; jobs: Job[]; pods: PodSummary[] },
): string {
  const rv = (o: { metadata?: { name: string; resourceVersion?: string } }) =>
    `${o.metadata?.name}@${o.metadata?.resourceVersion}`;
  const podRv = (p: PodSummary & { resourceVersion?: string }) => `${p.name}@${p.resourceVersion}`;
  return [
    rv(run),
    ...children.jobs.map(rv),
    ...children.configMaps.map(rv),
    ...children.pods.map(podRv),
  ].join(" ");
}

/**
 * A run that can have had no Job yet: its spec never changed, no status recorded one, and nothing
 * of it is seen. Its first Job needs no live look at pods (there can be none of another Job).
 */
function fresh(run: ScriptRun, observed: Observed): boolean {
  return (run.metadata.generation ?? 1) <= 1 && !run.status?.runHash && !run.status?.jobName &&
    observed.jobs.length === 0 && (observed.pods?.length ?? 0) === 0;
}

/** A status change a user wants an Event for: an outcome or a problem, not every step. */
function eventWorthy(status: ScriptRunStatus, before: ScriptRunStatus): boolean {
  if (status.phase === "Succeeded" || status.phase === "Failed") {
    return before.phase !== status.phase || before.reason !== status.reason;
  }
  return EVENT_REASONS.has(status.reason ?? "");
}

/** What a successful write changed, so a replan in the same reconcile sees it. */
function applyToObserved(observed: Observed, action: Action, now: string): void {
  if (action.type === "createJob") {
    observed.jobs.push({
      ...action.object,
      metadata: { ...action.object.metadata, creationTimestamp: now },
    });
  } else if (action.type === "createConfigMap") {
    observed.configMaps.push(action.object);
  } else if (action.type === "deleteJob") {
    observed.jobs = observed.jobs.map((j) =>
      j.metadata.name === action.name
        ? {
          ...j,
          metadata: { ...j.metadata, deletionTimestamp: j.metadata.deletionTimestamp ?? now },
        }
        : j
    );
  } else if (action.type === "deleteConfigMap") {
    observed.configMaps = observed.configMaps.filter((c) => c.metadata.name !== action.name);
  } else {
    // Copies: the observed objects may be the watched view's own.
    const relabel = <T extends ConfigMap | Job>(o: T): T =>
      o.metadata.name === action.name
        ? { ...o, metadata: { ...o.metadata, labels: { ...o.metadata.labels, ...action.labels } } }
        : o;
    if (action.kind === "Job") observed.jobs = observed.jobs.map(relabel);
    else observed.configMaps = observed.configMaps.map(relabel);
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

function withName(lookup: { has(name: string): boolean }, name: string) {
  return { has: (n: string) => n === name || lookup.has(n) };
}

function observeFromLists(
  run: ScriptRun,
  byOwner: Map<string, { configMaps: ConfigMap[]; jobs: Job[] }>,
  names: Map<string, { configMaps: Map<string, string>; jobs: Map<string, string> }>,
  alive: (uid: string) => boolean,
): Observed {
  const uid = run.metadata.uid ?? "";
  const mine = byOwner.get(uid) ?? { configMaps: [], jobs: [] };
  const inNs = names.get(run.metadata.namespace ?? "");
  return withPredecessors({
    configMaps: [...mine.configMaps],
    jobs: [...mine.jobs],
    foreignConfigMaps: new ForeignNames(inNs?.configMaps, uid, alive),
    foreignJobs: new ForeignNames(inNs?.jobs, uid, alive),
  });
}

/** Names held by children of a deleted ScriptRun, read from the foreign-name lookups. */
function withPredecessors(observed: Observed): Observed {
  const configMaps = observed.foreignConfigMaps as ForeignNames;
  const jobs = observed.foreignJobs as ForeignNames;
  observed.predecessors = {
    has: (name: string) => configMaps.predecessor(name) || jobs.predecessor(name),
  };
  return observed;
}

function groupByController(
  configMaps: ConfigMap[],
  jobs: Job[],
): Map<string, { configMaps: ConfigMap[]; jobs: Job[] }> {
  const out = new Map<string, { configMaps: ConfigMap[]; jobs: Job[] }>();
  const slot = (uid: string) => {
    let s = out.get(uid);
    if (!s) out.set(uid, s = { configMaps: [], jobs: [] });
    return s;
  };
  for (const cm of configMaps) {
    const uid = controllerUid(cm);
    if (uid) slot(uid).configMaps.push(cm);
  }
  for (const job of jobs) {
    const uid = controllerUid(job);
    if (uid) slot(uid).jobs.push(job);
  }
  return out;
}

/**
 * Whether an object is controlled by an earlier ScriptRun of the same name (deleted and created
 * again): its children are on their way out, not someone else's.
 */
function predecessorOf(
  obj: {
    metadata: {
      ownerReferences?: { uid: string; controller?: boolean; kind: string; name: string }[];
    };
  },
  run: ScriptRun,
): boolean {
  const owner = obj.metadata.ownerReferences?.find((o) => o.controller && o.kind === KIND);
  return !!owner && owner.name === run.metadata.name && owner.uid !== run.metadata.uid;
}

/** The uid of the ScriptRun that controls an object, if one does. */
export function controllerUid(
  obj: { metadata: { ownerReferences?: { uid: string; controller?: boolean; kind: string }[] } },
): string | undefined {
  return obj.metadata.ownerReferences?.find((o) => o.controller && o.kind === KIND)?.uid;
}

/** namespace → (object name → controller uid or "") for conflict detection. */
function namesByNamespace(
  configMaps: ConfigMap[],
  jobs: Job[],
): Map<string, { configMaps: Map<string, string>; jobs: Map<string, string> }> {
  const out = new Map<string, { configMaps: Map<string, string>; jobs: Map<string, string> }>();
  const slot = (ns: string) => {
    let s = out.get(ns);
    if (!s) out.set(ns, s = { configMaps: new Map(), jobs: new Map() });
    return s;
  };
  for (const cm of configMaps) {
    slot(cm.metadata.namespace ?? "").configMaps.set(cm.metadata.name, controllerUid(cm) ?? "");
  }
  for (const job of jobs) {
    slot(job.metadata.namespace ?? "").jobs.set(job.metadata.name, controllerUid(job) ?? "");
  }
  return out;
}

/** Names in a namespace held by objects this ScriptRun does not control; O(1) per lookup. */
class ForeignNames {
  #owners: ReadonlyMap<string, string> | undefined;
  #uid: string | undefined;
  #ownerAlive: (uid: string) => boolean;

  /** `ownerAlive` is asked only for a name held by another ScriptRun's child (rare). */
  constructor(
    owners: ReadonlyMap<string, string> | undefined,
    uid: string | undefined,
    ownerAlive: (uid: string) => boolean,
  ) {
    this.#owners = owners;
    this.#uid = uid;
    this.#ownerAlive = ownerAlive;
  }

  /** Held by someone else: not ours, and not a child of a deleted ScriptRun on its way out. */
  has(name: string): boolean {
    const owner = this.#owners?.get(name);
    return owner !== undefined && owner !== this.#uid && (owner === "" || this.#ownerAlive(owner));
  }

  /** Held by a child of a ScriptRun that no longer exists: the garbage collector removes it. */
  predecessor(name: string): boolean {
    const owner = this.#owners?.get(name);
    return !!owner && owner !== this.#uid && !this.#ownerAlive(owner);
  }
}

const NONE = { has: (_name: string) => false };
