/**
 * What a status change tells users: the log line of a transition and the Event it earns. Pure
 * decisions; the caller sends the Event and owns the logger.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { EventNote } from "../api/port.ts";
import { REASON } from "../desired/reasons.ts";
import type { ScriptRunStatus } from "../types.ts";

/** Reasons worth an Event when the status takes them (others are Normal steps or none). */
const EVENT_REASONS: ReadonlySet<string> = new Set([
  REASON.NameConflict,
  REASON.Unschedulable,
  REASON.FailedCreate,
  REASON.ScriptNotFound,
  REASON.InvalidSpec,
  REASON.PolicyViolation,
]);

/** Whether the status moves to another phase or reason. */
export function isTransition(status: ScriptRunStatus, before: ScriptRunStatus): boolean {
  return before.phase !== status.phase || before.reason !== status.reason;
}

/**
 * The Event a recorded status change earns: an outcome or a problem, not every step (undefined
 * for none).
 */
export function statusEvent(
  status: ScriptRunStatus,
  before: ScriptRunStatus,
): EventNote | undefined {
  if (!isTransition(status, before)) return undefined;
  const problem = EVENT_REASONS.has(status.reason ?? "");
  const outcome = status.phase === "Succeeded" || status.phase === "Failed";
  if (!problem && !outcome) return undefined;
  return {
    type: status.phase === "Failed" || problem ? "Warning" : "Normal",
    reason: status.reason ?? status.phase ?? "Updated",
    message: status.message ?? `phase ${status.phase}`,
  };
}

/** Logs a transition once, at the level a reader needs. */
export function logTransition(
  log: Logger,
  status: ScriptRunStatus,
  fields: Record<string, unknown>,
): void {
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
