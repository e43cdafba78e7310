/**
 * What a run's Job says about the run: its outcome read from the Job's conditions, the status it
 * shows (why it fails, why its pod does not start, when it is worth showing Running). Pure: the
 * plan passes the objects and the time.
 * @module
 */
import { outcomeConditions } from "./conditions.ts";
import { REASON, STUCK_WAITING_REASONS } from "./reasons.ts";
import type { Need, PlanOptions } from "./plan.ts";
import type { Job, JobEvent, Phase, PodSummary, ScriptRun, ScriptRunStatus } from "../types.ts";

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

/** Whether a Job has reached its outcome (Succeeded or Failed). */
export function terminal(job: Job): boolean {
  const phase = jobOutcome(job).phase;
  return phase === "Succeeded" || phase === "Failed";
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
export function runningShownAt(
  job: Job,
  pods: PodSummary[] | undefined,
  now: string,
): number | undefined {
  const mine = pods?.filter((p) => p.jobName === job.metadata.name) ?? [];
  if (mine.length > 0) {
    const since = mine.filter((p) => p.phase === "Running")
      .map((p) => Date.parse(p.runningSince ?? p.creationTimestamp ?? now));
    return since.length > 0 ? Math.max(...since) + RUNNING_SHOWN_AFTER_MS : undefined;
  }
  const started = job.status?.startTime ?? job.metadata.creationTimestamp ?? now;
  return Date.parse(started) + RUNNING_SHOWN_AFTER_MS;
}

/** The status a Job of this run shows. Adds to `needs` what would explain it better. */
export function jobStatus(
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
