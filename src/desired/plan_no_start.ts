/**
 * The plans of a run that starts no Job: it is over, its script is not in this build, or the
 * operator's policy refuses its spec. They delete what is outdated and create nothing.
 * @module
 */
import { condition, outcomeConditions } from "./conditions.ts";
import { deleteConfigMap, deleteJob, removeChildren, ttl } from "./actions.ts";
import { jobStatus, terminal } from "./job_status.ts";
import type { Action, Need, Plan, PlanOptions } from "./plan.ts";
import { CONDITION, REASON } from "./reasons.ts";
import {
  type Condition,
  LABELS,
  type Script,
  type ScriptRun,
  type ScriptRunStatus,
} from "../types.ts";

/** The run is over: keep (or read) its outcome, apply the TTL, never start it again. */
export function planFinished(
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
export function planScriptNotFound(run: ScriptRun, options: PlanOptions): Plan {
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
export function planRefused(run: ScriptRun, options: PlanOptions, message: string): Plan {
  const { observed, now } = options;
  return {
    actions: removeChildren(observed),
    status: failedBeforeRunning(run, REASON.PolicyViolation, message, now),
    needs: [],
  };
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
