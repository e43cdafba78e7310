/**
 * The polling reconciler: per cycle and per namespace scope, one LIST each of ScriptRuns, our
 * ConfigMaps and our Jobs; a plan per ScriptRun; writes only where the cluster differs.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { Backoff, mapLimit } from "./backoff.ts";
import { KubeError } from "./errors.ts";
import type { EventNote, Kube } from "./kube.ts";
import { type Action, needsPodDetails, type Observed, plan, statusEqual } from "./plan.ts";
import { DEFAULT_POLICY, type Policy, POLICY_VIOLATION } from "./policy.ts";
import {
  type ConfigMap,
  GROUP,
  type Job,
  KIND,
  type Phase,
  type Script,
  type ScriptRun,
} from "./types.ts";

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
  /** Namespaces to watch; empty means all namespaces. */
  namespaces: string[];
  dryRun?: boolean;
  /** ScriptRuns reconciled at once (and so writes in flight). */
  concurrency?: number;
  backoff?: Backoff;
  now?: () => Date;
  observer?: ReconcileObserver;
  /** When aborted, ScriptRuns not yet started in this cycle are left for later. */
  signal?: AbortSignal;
  /** Asked before every write: false once this process lost the leader Lease. */
  canWrite?: () => boolean;
  /** What ScriptRuns may ask for (default: DEFAULT_POLICY). */
  policy?: Policy;
}

/** Totals of one cycle. */
export interface CycleResult {
  ok: boolean;
  scriptRuns: number;
  writes: number;
  errors: number;
  /** Errors that stopped a whole scope (listing failed), with their messages. */
  scopeErrors: KubeError[];
}

interface Fields {
  group: string;
  kind: string;
  namespace: string;
  name: string;
  [key: string]: unknown;
}

/** Reconciles every ScriptRun in its scopes, once per `cycle()` call. */
export class Reconciler {
  #o: Required<Omit<ReconcilerOptions, "observer">> & { observer: ReconcileObserver };

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
      ...options,
    };
  }

  /** One pass over every scope. Never throws: failures are logged and counted. */
  async cycle(): Promise<CycleResult> {
    const started = performance.now();
    const result: CycleResult = { ok: true, scriptRuns: 0, writes: 0, errors: 0, scopeErrors: [] };
    const scopes = this.#o.namespaces.length > 0 ? this.#o.namespaces : [undefined];
    const phases: Record<Phase, number> = { Pending: 0, Running: 0, Succeeded: 0, Failed: 0 };
    const alive = new Set<string>();
    for (const namespace of scopes) {
      if (this.#o.signal.aborted) break;
      let runs: ScriptRun[], configMaps: ConfigMap[], jobs: Job[];
      try {
        [runs, configMaps, jobs] = await Promise.all([
          this.#o.kube.listScriptRuns(namespace),
          this.#o.kube.listConfigMaps(namespace),
          this.#o.kube.listJobs(namespace),
        ]);
      } catch (error) {
        const e = error instanceof KubeError ? error : new KubeError(String(error), {
          code: 0,
          kind: "transient",
          action: "list",
        });
        this.#o.log.error("Listing failed", { namespace: namespace ?? "*", error: e.message });
        result.ok = false;
        result.scopeErrors.push(e);
        continue;
      }
      result.scriptRuns += runs.length;
      for (const run of runs) alive.add(run.metadata.uid ?? "");
      const byOwner = groupByController(configMaps, jobs);
      const names = namesByNamespace(configMaps, jobs);
      await mapLimit(runs, this.#o.concurrency, async (run) => {
        if (this.#o.signal.aborted || !this.#o.canWrite()) return;
        const t0 = performance.now();
        const outcome = await this.#reconcileRun(run, byOwner, names);
        if (outcome.phase) phases[outcome.phase]++;
        result.writes += outcome.writes;
        if (outcome.result === "error") {
          result.errors++;
          result.ok = false;
        }
        this.#o.observer.reconciled?.(outcome.result, (performance.now() - t0) / 1000);
      });
    }
    this.#o.backoff.retain(alive);
    this.#o.observer.phases?.(phases);
    this.#o.observer.cycle?.((performance.now() - started) / 1000, result.ok);
    return result;
  }

  async #reconcileRun(
    run: ScriptRun,
    byOwner: Map<string, { configMaps: ConfigMap[]; jobs: Job[] }>,
    names: Map<string, { configMaps: Map<string, string>; jobs: Map<string, string> }>,
  ): Promise<{ result: "success" | "error" | "requeue"; writes: number; phase?: Phase }> {
    const { kube, log, backoff, scripts, policy } = this.#o;
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
    const mine = byOwner.get(run.metadata.uid ?? "") ?? { configMaps: [], jobs: [] };
    const inNs = names.get(namespace);
    const foreignConfigMaps = new ForeignNames(inNs?.configMaps, run.metadata.uid);
    const foreignJobs = new ForeignNames(inNs?.jobs, run.metadata.uid);
    const observed: Observed = {
      configMaps: mine.configMaps,
      jobs: mine.jobs,
      foreignConfigMaps,
      foreignJobs,
    };
    const now = () => this.#o.now().toISOString().replace(/\.\d{3}Z$/, "Z");
    let writes = 0;
    try {
      let p = plan(run, { scripts, observed, now: now(), policy });
      const current = mine.jobs.find((j) => j.metadata.name === p.childName);
      if (current && needsPodDetails(run, current)) {
        try {
          observed.podTermination = await kube.podTermination(namespace, current.metadata.name);
        } catch (error) {
          // The exit code is a detail: without it the failure is still recorded.
          log.warn("Pod lookup failed", { ...fields, error: (error as Error).message });
        }
        p = plan(run, { scripts, observed, now: now(), policy });
      }
      if (p.needsOldPods && p.hash) {
        observed.oldPodsActive = await kube.otherPodsActive(
          namespace,
          run.metadata.uid ?? "",
          p.hash,
        );
        if (observed.oldPodsActive) {
          log.info("Waiting for pods of the replaced Job to stop", { ...fields, hash: p.hash });
        }
        p = plan(run, { scripts, observed, now: now(), policy });
      }
      const childFields = { ...fields, child: p.childName, hash: p.hash };
      for (const action of p.actions) {
        const target = action.type === "createConfigMap" || action.type === "createJob"
          ? action.object.metadata.name
          : action.name;
        const what = action.type.endsWith("ConfigMap") ? "configMap" : "job";
        log.info(action.message, {
          ...childFields,
          [what]: target,
          dryRun: this.#o.dryRun || undefined,
        });
        if (this.#o.dryRun) continue;
        if (!this.#o.canWrite()) return { result: "requeue", writes, phase: run.status?.phase };
        try {
          await this.#execute(run, action);
          writes++;
        } catch (error) {
          if (error instanceof KubeError && error.kind === "alreadyExists") {
            // A ConfigMap or Job with our name that we do not control, and without our labels.
            if (action.type === "createConfigMap") foreignConfigMaps.add(target);
            else foreignJobs.add(target);
            p = plan(run, { scripts, observed, now: now(), policy });
            break;
          }
          if (
            error instanceof KubeError && error.kind === "invalid" && action.type !== "deleteJob" &&
            action.type !== "deleteConfigMap"
          ) {
            p.status = {
              ...p.status,
              phase: "Failed",
              reason: "InvalidSpec",
              message: `the API server refused the ${
                what === "job" ? "Job" : "ConfigMap"
              } built from this spec: ${error.message}. Fix the ScriptRun's spec.`,
              conditions: [{
                type: "Failed",
                status: "True",
                reason: "InvalidSpec",
                message: "the API server refused the objects built from this spec",
                lastTransitionTime: now(),
                observedGeneration: generation,
              }],
            };
            backoff.untilChanged(key, generation);
            break;
          }
          throw error;
        }
        await this.#event(run, {
          type: "Normal",
          reason: action.reason,
          message: `${action.message} ${target}`,
        }, fields);
      }
      if (p.waiting && p.actions.length === 0) {
        log.info("Waiting for Job to complete", {
          ...childFields,
          job: p.childName,
          phase: p.status.phase,
        });
      }
      if (!statusEqual(run.status, p.status)) {
        const before = run.status?.phase;
        const after = p.status.phase;
        const reasonChanged = run.status?.reason !== p.status.reason;
        if (after !== before || reasonChanged) {
          this.#logTransition(p.status.phase, p.status.reason, p.status.message, childFields);
        }
        log.debug("Updating status", { ...childFields, phase: after, reason: p.status.reason });
        if (!this.#o.dryRun && this.#o.canWrite()) {
          await kube.patchStatus(run, p.status);
          writes++;
          if (after !== before || reasonChanged) {
            const warning = after === "Failed" || p.status.reason === "NameConflict";
            await this.#event(run, {
              type: warning ? "Warning" : "Normal",
              reason: p.status.reason ?? after ?? "Updated",
              message: p.status.message ?? `phase ${after}`,
            }, fields);
          }
        }
      }
      if (p.status.reason === "NameConflict") {
        // Retry slowly: the foreign object may go away, but creating again every cycle is noise.
        backoff.failure(key, nowMs, { generation });
        return { result: "requeue", writes, phase: p.status.phase };
      }
      if (p.status.reason !== "InvalidSpec") backoff.success(key);
      return { result: "success", writes, phase: p.status.phase };
    } catch (error) {
      const e = error instanceof KubeError ? error : new KubeError(String(error), {
        code: 0,
        kind: "transient",
        action: "reconcile",
      });
      const delay = backoff.failure(key, nowMs, {
        generation,
        retryAfterMs: e.retryAfterSeconds !== undefined ? e.retryAfterSeconds * 1000 : undefined,
      });
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
      return { result: "error", writes, phase: run.status?.phase };
    }
  }

  #logTransition(
    phase: Phase | undefined,
    reason: string | undefined,
    message: string | undefined,
    fields: Record<string, unknown>,
  ): void {
    const log = this.#o.log;
    if (phase === "Succeeded") log.info("Job succeeded", { ...fields, reason });
    else if (phase === "Failed" && reason === "ScriptNotFound") {
      log.warn("Script not found", { ...fields, reason, message });
    } else if (phase === "Failed" && reason === POLICY_VIOLATION) {
      log.warn("Refused by policy", { ...fields, reason, message });
    } else if (phase === "Failed") log.warn("Job failed", { ...fields, reason, message });
    else if (reason === "NameConflict") log.warn("Name conflict", { ...fields, reason, message });
    else if (phase === "Running") log.info("Job running", { ...fields, reason });
  }

  async #execute(run: ScriptRun, action: Action): Promise<void> {
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
      }
    } catch (error) {
      // Already gone is what a delete wanted.
      if (
        error instanceof KubeError && error.kind === "notFound" && action.type.startsWith("delete")
      ) return;
      throw error;
    }
  }

  async #event(run: ScriptRun, note: EventNote, fields: Fields): Promise<void> {
    try {
      await this.#o.kube.createEvent(run, note);
    } catch (error) {
      // Events are best effort: a refused Event never fails the reconcile.
      this.#o.log.debug("Event not recorded", { ...fields, error: (error as Error).message });
    }
  }
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

function controllerUid(
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
  #owners: Map<string, string> | undefined;
  #uid: string | undefined;
  #added = new Set<string>();

  constructor(owners: Map<string, string> | undefined, uid: string | undefined) {
    this.#owners = owners;
    this.#uid = uid;
  }

  has(name: string): boolean {
    const owner = this.#owners?.get(name);
    return (owner !== undefined && owner !== this.#uid) || this.#added.has(name);
  }

  /** A create answered AlreadyExists: the name is held by an object we did not list. */
  add(name: string): void {
    this.#added.add(name);
  }
}
