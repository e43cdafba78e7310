/**
 * The plan: what to write so the cluster matches a ScriptRun, and the status it should show.
 * Pure. No I/O, no clock (the caller passes `now`). Level-triggered: the phase is derived from
 * the objects that exist, never from what the operator did last time. Every status the operator
 * writes is decided here, with what a Job says (job_status.ts), the conditions (conditions.ts) and
 * the plans of runs that start no Job (plan_no_start.ts); the reconciler builds none.
 * @module
 */
import {
  childName,
  DEFAULTS,
  desiredConfigMap,
  desiredJob,
  type PodOptions,
  runHash,
} from "./desired.ts";
import { deleteConfigMap, deleteJob, relabels, ttl } from "./actions.ts";
import { dropUndefined, outcomeConditions, readiness } from "./conditions.ts";
import {
  jobOutcome,
  jobStatus,
  POD_CHECK_AFTER_MS,
  podActive,
  runningShownAt,
  terminal,
} from "./job_status.ts";
import { planFinished, planRefused, planScriptNotFound } from "./plan_no_start.ts";
import { checkPolicy, type Policy } from "./policy.ts";
import { NOT_RUN_REASONS, REASON } from "./reasons.ts";
import type {
  ConfigMap,
  Job,
  JobEvent,
  PodSummary,
  Script,
  ScriptRun,
  ScriptRunStatus,
} from "../types.ts";

/** One write the reconciler performs; `message` is the log line, `event` the Event it earns. */
export type Action =
  & { message: string; reason: string; event: boolean }
  & (
    | { type: "createConfigMap"; object: ConfigMap }
    | { type: "createJob"; object: Job }
    | { type: "deleteJob"; name: string }
    | { type: "deleteConfigMap"; name: string }
    /** Puts back the managed-by label that someone removed from one of our children. */
    | { type: "relabel"; kind: "ConfigMap" | "Job"; name: string; labels: Record<string, string> }
  );

/** What the cluster holds that concerns one ScriptRun. */
export interface Observed {
  /** ConfigMaps and Jobs whose controller ownerReference is this ScriptRun (terminating too). */
  configMaps: ConfigMap[];
  jobs: Job[];
  /** Whether a ConfigMap or Job of that name exists that this ScriptRun does not control. */
  foreignConfigMaps: NameLookup;
  foreignJobs: NameLookup;
  /** The run's pods, of every Job it had; undefined when not looked up (the plan may ask). */
  pods?: PodSummary[];
  /** Warning Events of the current Job; undefined when not looked up (the plan may ask). */
  jobEvents?: JobEvent[];
  /** The pods came from the watched view (a cache), not a request just now. */
  podsCached?: boolean;
  /** Jobs named by the run's pods but missing from the lists were looked up by name. */
  jobLookedUp?: boolean;
  /** Names held by children of a deleted ScriptRun of the same name, on their way out. */
  predecessors?: NameLookup;
}

/** A set of names, as far as the plan needs one. */
export interface NameLookup {
  has(name: string): boolean;
}

/** What the plan needs looked up before it can decide: look it up and plan again. */
export type Need = "pods" | "jobEvents" | "job";

/** The result of planning one ScriptRun. */
export interface Plan {
  hash?: string;
  childName?: string;
  actions: Action[];
  status: ScriptRunStatus;
  /** Look these up and plan again (only asked while undefined in Observed). */
  needs: Need[];
  /** Plan again at this time (RFC 3339) even if nothing changes: a TTL or a wait is due. */
  recheckAt?: string;
}

/** Options of {@linkcode plan}. */
export interface PlanOptions {
  scripts: Map<string, Script>;
  observed: Observed;
  /** RFC 3339 time of this plan. */
  now: string;
  /** What ScriptRuns may ask for; none: no policy check. */
  policy?: Policy;
  /** How Job pods are built beyond the spec (e.g. without a UID). */
  pod?: PodOptions;
}

function finishedReason(status: ScriptRunStatus): boolean {
  return (status.phase === "Succeeded" || status.phase === "Failed") && !!status.jobName &&
    !NOT_RUN_REASONS.has(status.reason ?? "");
}

/** Builds the plan for one ScriptRun from what the cluster holds. */
export function plan(run: ScriptRun, options: PlanOptions): Plan {
  const { scripts, observed } = options;
  const previous = run.status ?? {};
  const script = scripts.get(run.spec.script);
  const policy = run.spec.rerunPolicy ?? DEFAULTS.rerunPolicy;
  const hash = script ? runHash(run, script, options.pod) : undefined;
  const name = hash ? childName(run.metadata.name, hash) : undefined;

  // A finished run keeps its outcome: under rerunPolicy Never whatever changed, and always when its
  // script is gone from this build. Without a status (lost), a finished Job still says so.
  // A script that left the build with the spec unchanged is the operator's change, not the
  // user's: what ran stays. A spec changed to an unknown script is the user's: ScriptNotFound.
  const specChanged = previous.observedGeneration !== undefined &&
    previous.observedGeneration !== run.metadata.generation;
  const keep = policy === "Never" || (!script && !specChanged);
  let over: string | undefined;
  if (finishedReason(previous) && (keep || previous.jobName === name)) {
    over = previous.jobName;
  } else if (keep) {
    over = observed.jobs.find((j) => !j.metadata.deletionTimestamp && terminal(j))?.metadata.name;
  }
  const refusal = options.policy && checkPolicy(run, options.policy);
  const p = over !== undefined
    ? planFinished(run, options, over, script, name)
    : !script || !hash || !name
    ? planScriptNotFound(run, options)
    : refusal
    ? planRefused(run, options, refusal.message)
    : planRun(run, options, script, hash, name);
  p.actions.unshift(...relabels(observed));
  p.status = dropUndefined(p.status);
  p.status.conditions = readiness(
    p.status,
    previous.conditions,
    run.metadata.generation,
    options.now,
  );
  return p;
}

/** The run's current spec and script: roll out, create, repair or track its Job. */
function planRun(
  run: ScriptRun,
  options: PlanOptions,
  script: Script,
  hash: string,
  name: string,
): Plan {
  const { observed, now } = options;
  const previous = run.status ?? {};
  const generation = run.metadata.generation;
  const actions: Action[] = [];
  const needs: Need[] = [];
  const job = observed.jobs.find((j) => j.metadata.name === name);
  const configMap = observed.configMaps.find((c) => c.metadata.name === name);
  const base: ScriptRunStatus = {
    scriptHash: script.sha256,
    runHash: hash,
    configMapName: name,
    jobName: name,
    observedGeneration: generation,
  };
  /** The plan of a run whose Job is not running yet: why, and what to look up first. */
  const pending = (reason: string, message: string, asks: Need[] = needs): Plan => ({
    hash,
    childName: name,
    actions,
    status: { ...base, phase: "Pending", reason, message, conditions: [] },
    needs: asks,
  });
  const startsSoon = `Job ${name} is waiting for its pod to start`;

  // Jobs of another spec or script go first. Foreground deletion keeps a Job visible until its
  // pods are gone, so "no other Job" and "no other pod still running" guard the new Job's start.
  const others = observed.jobs.filter((j) => j.metadata.name !== name);
  for (const old of others) {
    if (old.metadata.deletionTimestamp) continue;
    actions.push(deleteJob(old.metadata.name, REASON.ReplacingJob, "Replacing outdated Job"));
  }
  for (const old of observed.configMaps) {
    if (old.metadata.name !== name && !old.metadata.deletionTimestamp) {
      actions.push(deleteConfigMap(old.metadata.name));
    }
  }

  if (!job) {
    if (observed.predecessors?.has(name)) {
      // A ScriptRun of this name was deleted and created again: its children are being
      // garbage-collected. Not a conflict; wait for them to go.
      return pending(
        REASON.ReplacingJob,
        `${name} of a deleted ScriptRun of the same name is being removed; ` +
          `Job ${name} starts when it is gone`,
      );
    }
    const conflict = observed.foreignConfigMaps.has(name)
      ? `ConfigMap ${name}`
      : observed.foreignJobs.has(name)
      ? `Job ${name}`
      : undefined;
    if (conflict) {
      const message = `${conflict} already exists and is not controlled by this ScriptRun; ` +
        `the operator leaves it alone. Delete or rename it, or rename the ScriptRun.`;
      return pending(REASON.NameConflict, message);
    }
    // One Job of a ScriptRun at a time, whatever the status says: no other Job may exist and no
    // pod of the run may be pending or running (our Job does not exist, so any such pod belongs to
    // another Job: of another run hash, or an earlier Job of this one deleted by someone).
    const otherPods = observed.pods?.filter(podActive) ?? [];
    const known = new Set(observed.jobs.map((j) => j.metadata.name));
    if (!observed.jobLookedUp && otherPods.some((p) => p.jobName && !known.has(p.jobName))) {
      // Pods of a Job that is not in the lists: it may be ours with its labels removed (then it
      // is relabelled, and deleted if outdated). Look it up by name before deciding anything.
      return pending(REASON.JobPending, startsSoon, ["job"]);
    }
    if (others.length > 0 || otherPods.length > 0) {
      const waitingFor = others.length > 0
        ? `Job ${others.map((j) => j.metadata.name).join(", ")}`
        : `pod ${otherPods.map((p) => p.name).join(", ")}`;
      return pending(
        REASON.ReplacingJob,
        `replacing ${waitingFor}; Job ${name} starts when the replaced pods have stopped`,
      );
    }
    if (observed.pods === undefined) {
      // Not known yet whether an old pod still runs: look before creating anything.
      return pending(REASON.JobPending, startsSoon, ["pods"]);
    }
    const again = previous.jobName === name && previous.reason !== REASON.ReplacingJob &&
      previous.phase !== undefined;
    if (!configMap) {
      actions.push({
        type: "createConfigMap",
        object: desiredConfigMap(run, script, hash),
        reason: again ? "RecreatingConfigMap" : "CreatingConfigMap",
        message: again ? "Recreating missing ConfigMap" : "Creating ConfigMap",
        event: false,
      });
    }
    actions.push({
      type: "createJob",
      object: desiredJob(run, script, hash, options.pod),
      reason: again ? "RecreatingJob" : "CreatingJob",
      message: again ? "Recreating missing Job" : "Creating Job",
      // A first Job is in status.jobName; one recreated after someone deleted it is news.
      event: again,
    });
    const created = pending(REASON.JobPending, startsSoon);
    created.status.startTime = again && previous.startTime ? previous.startTime : now;
    return created;
  }

  if (job.metadata.deletionTimestamp) {
    // Our Job of this very spec is being deleted (by a previous spec change, or by someone):
    // a new one starts once it is gone.
    return pending(
      REASON.ReplacingJob,
      `Job ${name} is being deleted; it starts again when its pods have stopped`,
    );
  }

  const status = { ...jobStatus(run, options, job, name, hash, needs), scriptHash: script.sha256 };
  const isTerminal = status.phase === "Succeeded" || status.phase === "Failed";
  if (!configMap && !isTerminal) {
    actions.push({
      type: "createConfigMap",
      object: desiredConfigMap(run, script, hash),
      reason: "RecreatingConfigMap",
      message: "Recreating missing ConfigMap",
      event: true,
    });
  }
  let recheckAt: string | undefined;
  if (isTerminal) {
    const due = ttl(run, previous, job, name, now);
    actions.push(...due.actions);
    recheckAt = due.at;
  } else if (status.phase === "Pending" && jobOutcome(job).phase === "Running") {
    // Shown as Pending while its pod runs: Running is written when due, unless the outcome comes.
    const at = runningShownAt(job, observed.pods, now);
    if (at !== undefined && Date.parse(now) < at) recheckAt = new Date(at).toISOString();
  } else if (status.phase === "Pending") {
    const created = Date.parse(job.metadata.creationTimestamp ?? now);
    if (Date.parse(now) - created < POD_CHECK_AFTER_MS) {
      recheckAt = new Date(created + POD_CHECK_AFTER_MS).toISOString();
    }
  }
  return { hash, childName: name, actions, status, needs, recheckAt };
}

/** The status of a run whose objects the API server refused: the spec must change. */
export function invalidSpecStatus(
  run: ScriptRun,
  planned: ScriptRunStatus,
  detail: string,
  now: string,
): ScriptRunStatus {
  const generation = run.metadata.generation;
  const status: ScriptRunStatus = {
    ...planned,
    phase: "Failed",
    reason: REASON.InvalidSpec,
    message: `the API server refused the objects built from this spec: ${detail}. ` +
      `Fix the ScriptRun's spec.`,
    observedGeneration: generation,
  };
  status.conditions = readiness(
    { ...status, conditions: outcomeConditions(status, run.status?.conditions, generation, now) },
    run.status?.conditions,
    generation,
    now,
  );
  return dropUndefined(status);
}
