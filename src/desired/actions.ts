/**
 * The writes the plan asks for, each built in one place: its reason, its log line, and whether it
 * earns an Event. Pure.
 * @module
 */
import { DEFAULTS } from "./desired.ts";
import { jobOutcome } from "./job_status.ts";
import type { Action, Observed } from "./plan.ts";
import {
  type ConfigMap,
  type Job,
  LABELS,
  MANAGER,
  type ScriptRun,
  type ScriptRunStatus,
} from "../types.ts";

/** Delete of a Job, with an Event. */
export function deleteJob(name: string, reason: string, message: string): Action {
  return { type: "deleteJob", name, reason, message, event: true };
}

/** Delete of a ConfigMap that is outdated, without an Event. */
export function deleteConfigMap(name: string): Action {
  return {
    type: "deleteConfigMap",
    name,
    reason: "DeletingConfigMap",
    message: "Deleting outdated ConfigMap",
    event: false,
  };
}

/** Our children that lost the managed-by label (so the label-selected lists miss them). */
export function relabels(observed: Observed): Action[] {
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

/** Deletes of every child not already on its way out: what ran for an earlier spec. */
export function removeChildren(observed: Observed): Action[] {
  return [
    ...observed.jobs.filter((j) => !j.metadata.deletionTimestamp).map((j) =>
      deleteJob(j.metadata.name, "DeletingJob", "Deleting Job of a previous spec")
    ),
    ...observed.configMaps.filter((c) => !c.metadata.deletionTimestamp).map((c) =>
      deleteConfigMap(c.metadata.name)
    ),
  ];
}

/**
 * ttlSecondsAfterFinished of a finished Job, once the status has recorded its outcome: the delete
 * when it is due, and when to look again.
 */
export function ttl(
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
