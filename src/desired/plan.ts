/**
 * The plan: what to write so the cluster matches a ScriptRun, and the status it should show.
 * Pure. No I/O, no clock (the caller passes `now`). Level-triggered: the phase is derived from
 * the objects that exist, never from what the operator did last time. Every status the operator
 * writes is decided here; the reconciler builds none.
 * @module
 */
import { canonicalJson } from "./hash.ts";
import {
  childName,
  DEFAULTS,
  desiredConfigMap,
  desiredJob,
  type PodOptions,
  runHash,
} from "./desired.ts";
import { checkPolicy, type Policy } from "./policy.ts";
import {
  CONDITION,
  NOT_RUN_REASONS,
  REASON,
  STALLED_REASONS,
  STUCK_WAITING_REASONS,
} from "./reasons.ts";
import {
  type Condition,
  type ConfigMap,
  type Job,
  type JobEvent,
  LABELS,
  MANAGER,
  type Phase,
  type PodSummary,
  type Script,
  type ScriptRun,
  type ScriptRunStatus,
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

/** A pod that has not started this long after its Job was created is looked at (ms). */
export const POD_CHECK_AFTER_MS = 10_000;

/**
 * A run whose script runs shows phase Running only once it has run this long (ms).
 *
 * Writes per run: a run that goes well costs five writes, Events included: the ConfigMap, the Job,
 * the status when the Job is created (Pending, with Reconciling=True: kstatus tools see a run in
 * progress at once, where an empty status would read as done), the
 * outcome's status (Ready, Complete), and the outcome's Event (what `kubectl describe` shows: the
 * Job's reason, and for a failure the exit code and output). Two writes earn less than they cost:
 * - a Running status for a script that ends within seconds: nothing reads it before the outcome
 *   replaces it, and Reconciling already says the run is in progress. A run that lasts longer shows
 *   Running from this delay on;
 * - an Event for creating the Job: status.jobName names it, and the Job's own Events tell how its
 *   pod was created. Events stay for what a user looks for: outcomes, problems, a Job recreated
 *   or replaced.
 */
export const RUNNING_SHOWN_AFTER_MS = 5_000;

/** Longest script output copied into status.message and Events. */
export const MAX_OUTPUT = 512;

/** Outcome of a Job read from its status conditions (never from `spec.completions`). */
export interface JobOutcome {
  phase: Phase;
  reason?: string;
  message?: string;
  completionTime?: string;
  /** SuccessCriteriaMet without Complete yet: the Job is about to complete. */
  finishing?: boolean;
}

/**
 * Reads a Job's phase from its conditions: Complete, Failed/FailureTarget; SuccessCriteriaMet
 * alone is a Running Job about to complete.
 * Running needs a ready pod: `active` also counts pods that are still pending.
 */
export function jobOutcome(job: Job): JobOutcome {
  const conditions = job.status?.conditions ?? [];
  const isTrue = (type: string) => conditions.find((c) => c.type === type && c.status === "True");
  const done = isTrue("Complete");
  if (done) {
    return {
      phase: "Succeeded",
      reason: done.reason,
      message: done.message,
      completionTime: job.status?.completionTime ?? done.lastTransitionTime,
    };
  }
  // SuccessCriteriaMet comes a moment before Complete (once the pods have stopped), which brings
  // the completion time: Succeeded is written once, then.
  if (isTrue("SuccessCriteriaMet")) return { phase: "Running", finishing: true };
  const failed = isTrue("Failed") ?? isTrue("FailureTarget");
  if (failed) {
    return {
      phase: "Failed",
      reason: failed.reason,
      message: failed.message,
      completionTime: failed.type === "Failed" ? failed.lastTransitionTime : undefined,
    };
  }
  if ((job.status?.ready ?? 0) > 0) return { phase: "Running" };
  return { phase: "Pending" };
}

/** Whether a pod may still run: not finished, whatever its deletion state. */
export function podActive(pod: PodSummary): boolean {
  return pod.phase !== "Succeeded" && pod.phase !== "Failed";
}

function terminal(job: Job): boolean {
  const phase = jobOutcome(job).phase;
  return phase === "Succeeded" || phase === "Failed";
}

function finishedReason(status: ScriptRunStatus): boolean {
  return (status.phase === "Succeeded" || status.phase === "Failed") && !!status.jobName &&
    !NOT_RUN_REASONS.has(status.reason ?? "");
}

/** The script container's termination in the newest of `pods` that reports one. */
export function lastTermination(
  pods: PodSummary[],
): (PodSummary["terminated"] & { podName: string }) | undefined {
  const sorted = [...pods].sort((a, b) =>
    (b.creationTimestamp ?? "").localeCompare(a.creationTimestamp ?? "")
  );
  for (const pod of sorted) {
    if (pod.terminated) return { ...pod.terminated, podName: pod.name };
  }
  return undefined;
}

function failureMessage(
  jobName: string,
  outcome: JobOutcome,
  pods: PodSummary[] | undefined,
  reportOutput: boolean,
): string {
  const parts = [`Job ${jobName} failed`];
  if (outcome.reason) parts[0] += `: ${outcome.reason}`;
  if (outcome.message) parts[0] += ` (${outcome.message})`;
  const t = pods ? lastTermination(pods.filter((p) => p.jobName === jobName)) : undefined;
  if (t && (t.exitCode !== undefined || t.message)) {
    let text = `container in pod ${t.podName}`;
    if (t.exitCode !== undefined) text += ` exited with code ${t.exitCode}`;
    if (t.reason && t.reason !== "Error") text += ` (${t.reason})`;
    const output = t.message?.trim();
    if (output && !reportOutput) text += "; script output not reported (spec.reportOutput: false)";
    else if (output && output.length > MAX_OUTPUT) {
      // The end of the output says most about a failure; the label says whose words these are.
      text += `; script output (last ${MAX_OUTPUT} characters): ${output.slice(-MAX_OUTPUT)}`;
    } else if (output) text += `; script output: ${output}`;
    parts.push(text);
  }
  return parts.join("; ");
}

/** Why a pod that should have started has not, in Kubernetes' words; undefined: no problem seen. */
function podProblem(
  jobName: string,
  pods: PodSummary[] | undefined,
  events: JobEvent[] | undefined,
): { reason: string; message: string } | undefined {
  const mine = (pods ?? []).filter((p) => p.jobName === jobName && podActive(p));
  for (const pod of mine) {
    if (pod.unschedulable !== undefined) {
      return {
        reason: REASON.Unschedulable,
        message: `pod ${pod.name} cannot be scheduled: ${pod.unschedulable}`,
      };
    }
    const w = pod.waiting;
    if (w?.reason && STUCK_WAITING_REASONS.has(w.reason)) {
      return {
        reason: w.reason,
        message: `pod ${pod.name} cannot start: ${w.reason}${w.message ? `: ${w.message}` : ""}`,
      };
    }
  }
  if (mine.length === 0 && events && events.length > 0) {
    const e = events[events.length - 1];
    return {
      reason: REASON.FailedCreate,
      message: `Job ${jobName} cannot create its pod: ${e.message}`,
    };
  }
  return undefined;
}

/**
 * When a Job that reads running is worth a Running status (ms since the epoch): RUNNING_SHOWN_AFTER_MS
 * after its script started. Undefined: not by the clock, as its pods have all stopped and the
 * outcome comes next (the Job's status lags its pod's). Without its pods, the Job's start stands
 * in for the script's.
 */
function runningShownAt(job: Job, pods: PodSummary[] | undefined, now: string): number | undefined {
  const mine = pods?.filter((p) => p.jobName === job.metadata.name) ?? [];
  if (mine.length > 0) {
    const since = mine.filter((p) => p.phase === "Running")
      .map((p) => Date.parse(p.runningSince ?? p.creationTimestamp ?? now));
    return since.length > 0 ? Math.max(...since) + RUNNING_SHOWN_AFTER_MS : undefined;
  }
  const started = job.status?.startTime ?? job.metadata.creationTimestamp ?? now;
  return Date.parse(started) + RUNNING_SHOWN_AFTER_MS;
}

function condition(
  previous: Condition[] | undefined,
  wanted: Omit<Condition, "lastTransitionTime">,
  now: string,
): Condition {
  const before = previous?.find((c) => c.type === wanted.type);
  const lastTransitionTime = before && before.status === wanted.status
    ? before.lastTransitionTime
    : now;
  return { ...wanted, lastTransitionTime };
}

/** Conditions that {@linkcode readiness} decides; every other type the sub-plans set. */
const KSTATUS_TYPES: ReadonlySet<string> = new Set([
  CONDITION.Ready,
  CONDITION.Reconciling,
  CONDITION.Stalled,
]);

/** Whether the run cannot go on without a change: it failed, or it is stuck (STALLED_REASONS). */
function stalled(status: ScriptRunStatus): boolean {
  return status.phase === "Failed" || STALLED_REASONS.has(status.reason ?? "");
}

/**
 * The status' conditions with the kstatus ones in front: Ready (True once succeeded, else False),
 * then Reconciling (True while in progress) or Stalled (True while it cannot progress). kstatus
 * reads Reconciling and Stalled as "abnormal-true": they are present only while True, so a
 * succeeded run carries neither. Each keeps its lastTransitionTime while its status stays.
 */
function readiness(
  status: ScriptRunStatus,
  previous: Condition[] | undefined,
  generation: number | undefined,
  now: string,
): Condition[] {
  const why = {
    reason: status.reason ?? status.phase ?? "",
    message: status.message ?? "",
    observedGeneration: generation,
  };
  const ready = status.phase === "Succeeded";
  const out = [
    condition(previous, { type: CONDITION.Ready, status: ready ? "True" : "False", ...why }, now),
  ];
  if (stalled(status)) {
    out.push(condition(previous, { type: CONDITION.Stalled, status: "True", ...why }, now));
  } else if (!ready) {
    out.push(condition(previous, { type: CONDITION.Reconciling, status: "True", ...why }, now));
  }
  // One condition per type: the last one set wins, in the place of the first.
  const others = new Map<string, Condition>();
  for (const c of status.conditions ?? []) if (!KSTATUS_TYPES.has(c.type)) others.set(c.type, c);
  return [...out, ...others.values()];
}

/** The outcome condition (Complete or Failed) of a finished phase, none otherwise. */
function outcomeConditions(
  status: ScriptRunStatus,
  previous: Condition[] | undefined,
  generation: number | undefined,
  now: string,
): Condition[] {
  const type = status.phase === "Succeeded"
    ? CONDITION.Complete
    : status.phase === "Failed"
    ? CONDITION.Failed
    : undefined;
  if (!type) return [];
  return [condition(previous, {
    type,
    status: "True",
    reason: status.reason ?? "",
    message: status.message ?? "",
    observedGeneration: generation,
  }, now)];
}

function deleteJob(name: string, reason: string, message: string): Action {
  return { type: "deleteJob", name, reason, message, event: true };
}

function deleteConfigMap(name: string): Action {
  return {
    type: "deleteConfigMap",
    name,
    reason: "DeletingConfigMap",
    message: "Deleting outdated ConfigMap",
    event: false,
  };
}

/** Our children that lost the managed-by label (so the label-selected lists miss them). */
function relabels(observed: Observed): Action[] {
  const out: Action[] = [];
  const check = (kind: "ConfigMap" | "Job", o: ConfigMap | Job) => {
    if (o.metadata.labels?.[LABELS.managedBy] === MANAGER || o.metadata.deletionTimestamp) return;
    out.push({
      type: "relabel",
      kind,
      name: o.metadata.name,
      labels: { [LABELS.managedBy]: MANAGER },
      reason: "RepairingLabels",
      message: `Repairing the labels of ${kind}`,
      event: false,
    });
  };
  for (const c of observed.configMaps) check("ConfigMap", c);
  for (const j of observed.jobs) check("Job", j);
  return out;
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

/** The run is over: keep (or read) its outcome, apply the TTL, never start it again. */
function planFinished(
  run: ScriptRun,
  options: PlanOptions,
  jobName: string,
  script: Script | undefined,
  currentName: string | undefined,
): Plan {
  const { observed, now } = options;
  const previous = run.status ?? {};
  const generation = run.metadata.generation;
  const job = observed.jobs.find((j) => j.metadata.name === jobName);
  const actions: Action[] = [];
  const needs: Need[] = [];
  let status: ScriptRunStatus;
  if (job && terminal(job)) {
    status = jobStatus(run, options, job, jobName, job.metadata.labels?.[LABELS.hash], needs);
  } else {
    status = { ...previous };
  }
  status.observedGeneration = generation;
  // Other Jobs can only be leftovers of a race: the run is over, so they go.
  for (const other of observed.jobs) {
    if (other.metadata.name === jobName || other.metadata.deletionTimestamp) continue;
    actions.push(deleteJob(other.metadata.name, "DeletingJob", "Deleting Job of a finished run"));
  }
  for (const cm of observed.configMaps) {
    if (cm.metadata.name !== jobName && !cm.metadata.deletionTimestamp) {
      actions.push(deleteConfigMap(cm.metadata.name));
    }
  }
  let recheckAt: string | undefined;
  if (job && terminal(job) && !job.metadata.deletionTimestamp) {
    const due = ttl(run, previous, job, jobName, now);
    actions.push(...due.actions);
    recheckAt = due.at;
  }
  const conditions = [...(status.conditions ?? [])].filter((c) =>
    c.type === CONDITION.Complete || c.type === CONDITION.Failed
  );
  if (!script) {
    conditions.push(scriptMissing(run, options.scripts, previous, now));
  } else if (currentName !== jobName) {
    conditions.push(condition(previous.conditions, {
      type: CONDITION.Outdated,
      status: "True",
      reason: "RerunPolicyNever",
      message: `spec or script changed after the run finished; rerunPolicy Never keeps this ` +
        `outcome. Create a new ScriptRun, or set spec.rerunPolicy: OnChange, to run it again`,
      observedGeneration: generation,
    }, now));
  }
  status.conditions = conditions;
  return { hash: status.runHash, childName: jobName, actions, status, needs, recheckAt };
}

/** Condition ScriptAvailable=False: the run's script is not in this build. */
function scriptMissing(
  run: ScriptRun,
  scripts: Map<string, Script>,
  previous: ScriptRunStatus,
  now: string,
): Condition {
  return condition(previous.conditions, {
    type: CONDITION.ScriptAvailable,
    status: "False",
    reason: REASON.ScriptNotFound,
    message: `script "${run.spec.script}" is not embedded in this operator (embedded scripts: ` +
      `${[...scripts.keys()].join(", ")}); what already ran for this ScriptRun keeps its outcome`,
    observedGeneration: run.metadata.generation,
  }, now);
}

/** spec.script names no embedded script and the run has not finished. */
function planScriptNotFound(run: ScriptRun, options: PlanOptions): Plan {
  const { scripts, observed, now } = options;
  const previous = run.status ?? {};
  const generation = run.metadata.generation;
  const message = `script "${run.spec.script}" is not embedded in this operator; ` +
    `embedded scripts: ${[...scripts.keys()].join(", ")}. Set spec.script to one of them.`;
  const actions: Action[] = [];
  // A spec changed to an unknown script makes what ran for the old spec outdated. A script that
  // left the build with the spec unchanged leaves the running Job alone, and it is still followed.
  const specChanged = previous.observedGeneration !== undefined &&
    previous.observedGeneration !== generation;
  const running = observed.jobs.find((j) =>
    !j.metadata.deletionTimestamp && !terminal(j) &&
    (previous.jobName === undefined || j.metadata.name === previous.jobName)
  );
  if (!specChanged && running) {
    const needs: Need[] = [];
    const name = running.metadata.name;
    const status = jobStatus(
      run,
      options,
      running,
      name,
      running.metadata.labels?.[LABELS.hash],
      needs,
    );
    status.conditions = [
      ...(status.conditions ?? []),
      scriptMissing(run, scripts, previous, now),
    ];
    return { hash: status.runHash, childName: name, actions, status, needs };
  }
  if (specChanged || observed.jobs.length === 0) actions.push(...removeChildren(observed));
  return {
    actions,
    status: failedBeforeRunning(run, REASON.ScriptNotFound, message, now),
    needs: [],
  };
}

/** The operator's policy refuses the spec: nothing is created, what ran for an earlier spec goes. */
function planRefused(run: ScriptRun, options: PlanOptions, message: string): Plan {
  const { observed, now } = options;
  return {
    actions: removeChildren(observed),
    status: failedBeforeRunning(run, REASON.PolicyViolation, message, now),
    needs: [],
  };
}

/** Deletes of every child not already on its way out: what ran for an earlier spec. */
function removeChildren(observed: Observed): Action[] {
  return [
    ...observed.jobs.filter((j) => !j.metadata.deletionTimestamp).map((j) =>
      deleteJob(j.metadata.name, "DeletingJob", "Deleting Job of a previous spec")
    ),
    ...observed.configMaps.filter((c) => !c.metadata.deletionTimestamp).map((c) =>
      deleteConfigMap(c.metadata.name)
    ),
  ];
}

/** Status Failed, with its condition, of a run that ended before a Job could run. */
function failedBeforeRunning(
  run: ScriptRun,
  reason: string,
  message: string,
  now: string,
): ScriptRunStatus {
  const generation = run.metadata.generation;
  const status: ScriptRunStatus = {
    phase: "Failed",
    reason,
    message,
    observedGeneration: generation,
  };
  status.conditions = outcomeConditions(status, run.status?.conditions, generation, now);
  return status;
}

/**
 * ttlSecondsAfterFinished of a finished Job, once the status has recorded its outcome: the delete
 * when it is due, and when to look again.
 */
function ttl(
  run: ScriptRun,
  previous: ScriptRunStatus,
  job: Job,
  jobName: string,
  now: string,
): { actions: Action[]; at?: string } {
  const outcome = jobOutcome(job);
  const recorded = previous.jobName === jobName && previous.phase === outcome.phase &&
    previous.completionTime;
  if (!recorded) return { actions: [] };
  const ttlMs = (run.spec.ttlSecondsAfterFinished ?? DEFAULTS.ttlSecondsAfterFinished) * 1000;
  const atMs = Date.parse(previous.completionTime!) + ttlMs;
  const due = Date.parse(now) >= atMs;
  return {
    actions: due
      ? [
        deleteJob(
          jobName,
          "DeletingFinishedJob",
          "Deleting finished Job (ttlSecondsAfterFinished)",
        ),
      ]
      : [],
    at: new Date(atMs).toISOString(),
  };
}

/** The status a Job of this run shows. Adds to `needs` what would explain it better. */
function jobStatus(
  run: ScriptRun,
  options: PlanOptions,
  job: Job,
  name: string,
  hash: string | undefined,
  needs: Need[],
): ScriptRunStatus {
  const { observed, now } = options;
  const previous = run.status ?? {};
  const generation = run.metadata.generation;
  const outcome = jobOutcome(job);
  const sameRun = previous.jobName === name;
  const sameSpec = sameRun && previous.observedGeneration === generation;
  if (
    outcome.finishing && sameSpec && (previous.phase === "Pending" || previous.phase === "Running")
  ) {
    // Complete follows within moments: one status write then, not one now and one then.
    return { ...previous };
  }
  const shownAt = runningShownAt(job, observed.pods, now);
  if (
    outcome.phase === "Running" && !outcome.finishing && sameSpec && previous.phase === "Pending" &&
    previous.reason === REASON.JobPending && (shownAt === undefined || Date.parse(now) < shownAt)
  ) {
    // Most scripts end within seconds: Pending goes straight to the outcome (see
    // RUNNING_SHOWN_AFTER_MS).
    return { ...previous };
  }
  const reportOutput = run.spec.reportOutput !== false;
  let reason: string;
  let message: string;
  switch (outcome.phase) {
    case "Succeeded":
      reason = outcome.reason ?? REASON.Completed;
      message = `Job ${name} completed`;
      break;
    case "Failed": {
      reason = outcome.reason ?? REASON.Failed;
      // The exit code is read once when the failure is first seen, and once more when the final
      // Failed condition arrives after FailureTarget (a deadline's pods report only then).
      const recorded = sameRun && previous.phase === "Failed" &&
        (previous.completionTime !== undefined || outcome.completionTime === undefined);
      if (recorded && previous.message) {
        message = previous.message;
      } else if (observed.pods === undefined) {
        needs.push("pods");
        message = failureMessage(name, outcome, undefined, reportOutput);
      } else {
        message = failureMessage(name, outcome, observed.pods, reportOutput);
      }
      break;
    }
    case "Running":
      reason = REASON.JobRunning;
      message = `Job ${name} is running`;
      break;
    default: {
      reason = REASON.JobPending;
      message = `Job ${name} is waiting for its pod to start`;
      const created = Date.parse(job.metadata.creationTimestamp ?? now);
      if (Date.parse(now) - created >= POD_CHECK_AFTER_MS) {
        // Waited longer than a pod takes to start: ask the pods, then the Job's events, why.
        if (observed.pods === undefined) needs.push("pods");
        const hasPod = (observed.pods ?? []).some((p) => p.jobName === name && podActive(p));
        if (observed.pods !== undefined && !hasPod && observed.jobEvents === undefined) {
          needs.push("jobEvents");
        }
        const problem = podProblem(name, observed.pods, observed.jobEvents);
        if (problem) ({ reason, message } = problem);
      }
    }
  }
  const terminalPhase = outcome.phase === "Succeeded" || outcome.phase === "Failed";
  const status: ScriptRunStatus = {
    phase: outcome.phase,
    reason,
    message,
    scriptHash: job.metadata.annotations?.["script-operator.dev/script-sha256"] ??
      (sameRun ? previous.scriptHash : undefined),
    runHash: hash ?? (sameRun ? previous.runHash : undefined),
    configMapName: name,
    jobName: name,
    // Recorded when the operator created the Job: the Job's own startTime follows a moment later
    // and is not worth a status write of its own.
    startTime: (sameRun ? previous.startTime : undefined) ?? job.status?.startTime,
    completionTime: terminalPhase ? outcome.completionTime : undefined,
    observedGeneration: generation,
  };
  status.conditions = outcomeConditions(status, previous.conditions, generation, now);
  return status;
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

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** True when two statuses are the same, so writing `next` would change nothing. */
export function statusEqual(a: ScriptRunStatus | undefined, b: ScriptRunStatus): boolean {
  return canonicalJson(dropUndefined(a ?? {})) === canonicalJson(dropUndefined(b));
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
