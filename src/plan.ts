/**
 * The plan: what to write so the cluster matches a ScriptRun, and the status it should show.
 * Pure. No I/O, no clock (the caller passes `now`). Level-triggered: the phase is derived from
 * the objects that exist, never from what the operator did last time.
 * @module
 */
import { canonicalJson } from "./hash.ts";
import { childName, DEFAULTS, desiredConfigMap, desiredJob, runHash } from "./desired.ts";
import { checkPolicy, type Policy, POLICY_VIOLATION } from "./policy.ts";
import type {
  Condition,
  ConfigMap,
  Job,
  Phase,
  PodTermination,
  Script,
  ScriptRun,
  ScriptRunStatus,
} from "./types.ts";

/** One write the reconciler performs; `message` is the log line and Event note. */
export type Action =
  | { type: "createConfigMap"; object: ConfigMap; message: string; reason: string }
  | { type: "createJob"; object: Job; message: string; reason: string }
  | { type: "deleteJob"; name: string; message: string; reason: string }
  | { type: "deleteConfigMap"; name: string; message: string; reason: string };

/** What the cluster holds that concerns one ScriptRun. */
export interface Observed {
  /** ConfigMaps and Jobs whose controller ownerReference is this ScriptRun. */
  configMaps: ConfigMap[];
  jobs: Job[];
  /** Whether a ConfigMap or Job of that name exists that this ScriptRun does not control. */
  foreignConfigMaps: NameLookup;
  foreignJobs: NameLookup;
  /** What the failed pod reported, when the reconciler looked it up. */
  podTermination?: PodTermination;
  /**
   * During a rollout, whether pods of the replaced Jobs are still running (undefined: not looked
   * up yet; the plan then asks for it with `needsOldPods`).
   */
  oldPodsActive?: boolean;
}

/** A set of names, as far as the plan needs one. */
export interface NameLookup {
  has(name: string): boolean;
}

/** The result of planning one ScriptRun. */
export interface Plan {
  hash?: string;
  childName?: string;
  actions: Action[];
  status: ScriptRunStatus;
  /** True when the current Job is running or waiting: the log says "Waiting for Job to complete". */
  waiting: boolean;
  /** The plan waits for the replaced Jobs' pods: look them up and plan again. */
  needsOldPods?: boolean;
}

/** Outcome of a Job read from its status conditions (never from `spec.completions`). */
export interface JobOutcome {
  phase: Phase;
  reason?: string;
  message?: string;
  completionTime?: string;
}

/** Reads a Job's phase from its conditions: Complete/SuccessCriteriaMet, Failed/FailureTarget. */
export function jobOutcome(job: Job): JobOutcome {
  const conditions = job.status?.conditions ?? [];
  const isTrue = (type: string) => conditions.find((c) => c.type === type && c.status === "True");
  const done = isTrue("Complete") ?? isTrue("SuccessCriteriaMet");
  if (done) {
    return {
      phase: "Succeeded",
      reason: done.reason,
      message: done.message,
      // SuccessCriteriaMet comes before the pods have stopped; the time is Complete's.
      completionTime: job.status?.completionTime ??
        (done.type === "Complete" ? done.lastTransitionTime : undefined),
    };
  }
  const failed = isTrue("Failed") ?? isTrue("FailureTarget");
  if (failed) {
    return {
      phase: "Failed",
      reason: failed.reason,
      message: failed.message,
      completionTime: failed.type === "Failed" ? failed.lastTransitionTime : undefined,
    };
  }
  if ((job.status?.active ?? 0) > 0 || (job.status?.ready ?? 0) > 0) return { phase: "Running" };
  return { phase: "Pending" };
}

/**
 * True when a Job failed and the run's status does not yet tell why: look at its pods. That is
 * once when the failure is first seen and once more when the final Failed condition arrives after
 * FailureTarget (pods stopped by a deadline report their exit code only then).
 */
export function needsPodDetails(run: ScriptRun, job: Job): boolean {
  const outcome = jobOutcome(job);
  if (outcome.phase !== "Failed") return false;
  const status = run.status ?? {};
  const recorded = status.jobName === job.metadata.name && status.phase === "Failed";
  return !recorded || (status.completionTime === undefined && outcome.completionTime !== undefined);
}

/** Longest script output copied into status.message and Events. */
export const MAX_OUTPUT = 512;

function failureMessage(
  jobName: string,
  outcome: JobOutcome,
  pod: PodTermination | undefined,
  reportOutput: boolean,
): string {
  const parts = [`Job ${jobName} failed`];
  if (outcome.reason) parts[0] += `: ${outcome.reason}`;
  if (outcome.message) parts[0] += ` (${outcome.message})`;
  if (pod && (pod.exitCode !== undefined || pod.message)) {
    let text = `container in pod ${pod.podName}`;
    if (pod.exitCode !== undefined) text += ` exited with code ${pod.exitCode}`;
    if (pod.reason && pod.reason !== "Error") text += ` (${pod.reason})`;
    const output = pod.message?.trim();
    if (output && !reportOutput) text += "; script output not reported (spec.reportOutput: false)";
    else if (output && output.length > MAX_OUTPUT) {
      // The end of the output says most about a failure; the label says whose words these are.
      text += `; script output (last ${MAX_OUTPUT} characters): ${output.slice(-MAX_OUTPUT)}`;
    } else if (output) text += `; script output: ${output}`;
    parts.push(text);
  }
  return parts.join("; ");
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

function conditionsFor(
  phase: Phase,
  reason: string,
  message: string,
  previous: Condition[] | undefined,
  generation: number | undefined,
  now: string,
): Condition[] {
  if (phase === "Succeeded") {
    return [condition(previous, {
      type: "Complete",
      status: "True",
      reason,
      message,
      observedGeneration: generation,
    }, now)];
  }
  if (phase === "Failed") {
    return [condition(previous, {
      type: "Failed",
      status: "True",
      reason,
      message,
      observedGeneration: generation,
    }, now)];
  }
  return [];
}

/** Builds the plan for one ScriptRun from what the cluster holds. */
export function plan(
  run: ScriptRun,
  options: { scripts: Map<string, Script>; observed: Observed; now: string; policy?: Policy },
): Plan {
  const { scripts, observed, now } = options;
  const previous = run.status ?? {};
  const generation = run.metadata.generation;
  const script = scripts.get(run.spec.script);
  if (!script) {
    const message = `script "${run.spec.script}" is not embedded in this operator; ` +
      `embedded scripts: ${[...scripts.keys()].join(", ")}. Set spec.script to one of them.`;
    // The spec asks for something that cannot run: what ran before for it is outdated.
    const actions: Action[] = [
      ...observed.jobs.map((j): Action => ({
        type: "deleteJob",
        name: j.metadata.name,
        reason: "DeletingJob",
        message: "Deleting Job of a previous spec",
      })),
      ...observed.configMaps.map((c): Action => ({
        type: "deleteConfigMap",
        name: c.metadata.name,
        reason: "DeletingConfigMap",
        message: "Deleting outdated ConfigMap",
      })),
    ];
    const status: ScriptRunStatus = {
      phase: "Failed",
      reason: "ScriptNotFound",
      message,
      observedGeneration: generation,
      conditions: conditionsFor(
        "Failed",
        "ScriptNotFound",
        message,
        previous.conditions,
        generation,
        now,
      ),
    };
    return { actions, status, waiting: false };
  }

  const refusal = options.policy && checkPolicy(run, options.policy);
  if (refusal) {
    // Refused by the operator's policy: nothing is created, and what ran for an earlier spec goes.
    const actions: Action[] = [
      ...observed.jobs.map((j): Action => ({
        type: "deleteJob",
        name: j.metadata.name,
        reason: "DeletingJob",
        message: "Deleting Job of a previous spec",
      })),
      ...observed.configMaps.map((c): Action => ({
        type: "deleteConfigMap",
        name: c.metadata.name,
        reason: "DeletingConfigMap",
        message: "Deleting outdated ConfigMap",
      })),
    ];
    const { message } = refusal;
    const conditions = conditionsFor(
      "Failed",
      POLICY_VIOLATION,
      message,
      previous.conditions,
      generation,
      now,
    );
    const status: ScriptRunStatus = {
      phase: "Failed",
      reason: POLICY_VIOLATION,
      message,
      observedGeneration: generation,
      conditions,
    };
    return { actions, status, waiting: false };
  }

  const hash = runHash(run, script);
  const name = childName(run.metadata.name, hash);
  const actions: Action[] = [];
  const job = observed.jobs.find((j) => j.metadata.name === name);
  const configMap = observed.configMaps.find((c) => c.metadata.name === name);
  const sameRun = previous.jobName === name;
  const finished = sameRun && (previous.phase === "Succeeded" || previous.phase === "Failed") &&
    previous.reason !== "ScriptNotFound";

  for (const old of observed.jobs.filter((j) => j.metadata.name !== name)) {
    actions.push({
      type: "deleteJob",
      name: old.metadata.name,
      reason: "ReplacingJob",
      message: "Replacing outdated Job",
    });
  }
  for (const old of observed.configMaps.filter((c) => c.metadata.name !== name)) {
    actions.push({
      type: "deleteConfigMap",
      name: old.metadata.name,
      reason: "DeletingConfigMap",
      message: "Deleting outdated ConfigMap",
    });
  }

  const base: ScriptRunStatus = {
    scriptHash: script.sha256,
    runHash: hash,
    configMapName: name,
    jobName: name,
    observedGeneration: generation,
  };

  const conflict = observed.foreignConfigMaps.has(name)
    ? `ConfigMap ${name}`
    : observed.foreignJobs.has(name)
    ? `Job ${name}`
    : undefined;
  if (conflict && !job) {
    const message = `${conflict} already exists and is not controlled by this ScriptRun; ` +
      `the operator leaves it alone. Delete or rename it, or rename the ScriptRun.`;
    return {
      hash,
      childName: name,
      actions,
      status: { ...base, phase: "Pending", reason: "NameConflict", message, conditions: [] },
      waiting: false,
    };
  }

  if (!job && finished) {
    // The Job was deleted, or the operator removed it after ttlSecondsAfterFinished: the run is
    // over and its status stays.
    return {
      hash,
      childName: name,
      actions,
      status: { ...previous, observedGeneration: generation },
      waiting: false,
    };
  }

  // A rollout: the replaced Jobs go first, and the new Job starts only once their pods stopped,
  // so two Jobs of one ScriptRun never run at once.
  const replaced = observed.jobs.filter((j) => j.metadata.name !== name).map((j) =>
    j.metadata.name
  );
  const rollingOut = !job && (replaced.length > 0 || previous.reason === "ReplacingJob");
  if (rollingOut && (replaced.length > 0 || observed.oldPodsActive !== false)) {
    const waitingStatus: ScriptRunStatus = {
      ...base,
      phase: "Pending",
      reason: "ReplacingJob",
      message: replaced.length > 0
        ? `replacing Job ${replaced.join(", ")}; Job ${name} starts when its pods have stopped`
        : previous.message ?? `Job ${name} starts when the replaced Job's pods have stopped`,
      conditions: [],
    };
    return {
      hash,
      childName: name,
      actions,
      status: waitingStatus,
      waiting: false,
      needsOldPods: replaced.length === 0 && observed.oldPodsActive === undefined,
    };
  }

  const outcome = job ? jobOutcome(job) : { phase: "Pending" as Phase };
  const terminal = outcome.phase === "Succeeded" || outcome.phase === "Failed";
  if (!configMap && !terminal) {
    const again = previous.configMapName === name;
    actions.push({
      type: "createConfigMap",
      object: desiredConfigMap(run, script, hash),
      reason: again ? "RecreatingConfigMap" : "CreatingConfigMap",
      message: again ? "Recreating missing ConfigMap" : "Creating ConfigMap",
    });
  }
  if (!job) {
    const again = sameRun;
    actions.push({
      type: "createJob",
      object: desiredJob(run, script, hash),
      reason: again ? "RecreatingJob" : "CreatingJob",
      message: again ? "Recreating missing Job" : "Creating Job",
    });
  }

  // ttlSecondsAfterFinished, applied by the operator once the status records the outcome.
  const recorded = sameRun && previous.phase === outcome.phase && previous.completionTime;
  if (job && terminal && recorded) {
    const ttl = (run.spec.ttlSecondsAfterFinished ?? DEFAULTS.ttlSecondsAfterFinished) * 1000;
    if (Date.parse(now) >= Date.parse(previous.completionTime!) + ttl) {
      actions.push({
        type: "deleteJob",
        name,
        reason: "DeletingFinishedJob",
        message: "Deleting finished Job (ttlSecondsAfterFinished)",
      });
    }
  }

  let reason: string;
  let message: string;
  switch (outcome.phase) {
    case "Succeeded":
      reason = outcome.reason ?? "Completed";
      message = `Job ${name} completed`;
      break;
    case "Failed":
      reason = outcome.reason ?? "Failed";
      message =
        sameRun && previous.phase === "Failed" && previous.message && !observed.podTermination
          ? previous.message
          : failureMessage(name, outcome, observed.podTermination, run.spec.reportOutput !== false);
      break;
    case "Running":
      reason = "JobRunning";
      message = `Job ${name} is running`;
      break;
    default:
      reason = job ? "JobPending" : "JobCreated";
      message = `Job ${name} is waiting for its pod to start`;
  }
  const status: ScriptRunStatus = {
    ...base,
    phase: outcome.phase,
    reason,
    message,
    startTime: job?.status?.startTime ?? (sameRun ? previous.startTime : undefined),
    completionTime: terminal ? outcome.completionTime : undefined,
    conditions: conditionsFor(outcome.phase, reason, message, previous.conditions, generation, now),
  };
  return { hash, childName: name, actions, status: dropUndefined(status), waiting: !terminal };
}

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** True when two statuses are the same, so writing `next` would change nothing. */
export function statusEqual(a: ScriptRunStatus | undefined, b: ScriptRunStatus): boolean {
  return canonicalJson(dropUndefined(a ?? {})) === canonicalJson(dropUndefined(b));
}
