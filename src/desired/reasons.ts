/**
 * Every `status.reason` the operator writes, in one place, and what each one means. Reasons that
 * come from Kubernetes (a Job's condition reason such as `BackoffLimitExceeded`, a container's
 * waiting reason such as `ImagePullBackOff`) are passed through as they are.
 * Pure constants.
 * @module
 */

/** Status reasons written by the operator itself. */
export const REASON = {
  /** Pending: the Job exists (or is being created) and its pod has not started. */
  JobPending: "JobPending",
  /** Pending: a replaced Job of this ScriptRun still has pods; the new Job waits for them. */
  ReplacingJob: "ReplacingJob",
  /** Pending: a ConfigMap or Job with the child's name exists and is not ours. */
  NameConflict: "NameConflict",
  /** Pending: the scheduler cannot place the pod (PodScheduled=False, Unschedulable). */
  Unschedulable: "Unschedulable",
  /** Pending: the Job controller cannot create the pod (admission, quota, ServiceAccount…). */
  FailedCreate: "FailedCreate",
  /** Running: the script's pod is running. */
  JobRunning: "JobRunning",
  /** Succeeded, when the Job's condition carries no reason. */
  Completed: "Completed",
  /** Failed, when the Job's condition carries no reason. */
  Failed: "Failed",
  /** Failed: spec.script names no embedded script. */
  ScriptNotFound: "ScriptNotFound",
  /** Failed: the API server refused the objects built from the spec. */
  InvalidSpec: "InvalidSpec",
  /** Failed: the operator's policy refuses the spec. */
  PolicyViolation: "PolicyViolation",
} as const;

/** Reasons of a run that ended without its script running: a spec change plans it again. */
export const NOT_RUN_REASONS: ReadonlySet<string> = new Set([
  REASON.ScriptNotFound,
  REASON.InvalidSpec,
  REASON.PolicyViolation,
  REASON.NameConflict,
]);

/**
 * Condition types the operator writes. Ready, Reconciling and Stalled follow kstatus (the status
 * conventions of sigs.k8s.io/cli-utils that Flux, Argo CD and `kubectl wait` users rely on);
 * Complete and Failed are set as a Job sets them.
 */
export const CONDITION = {
  /** True once the run succeeded; False otherwise, with the status' reason. */
  Ready: "Ready",
  /** True while the run makes progress (Pending or Running with nothing stuck); else absent. */
  Reconciling: "Reconciling",
  /** True while the run cannot go on without a change (see STALLED_REASONS); else absent. */
  Stalled: "Stalled",
  Complete: "Complete",
  Failed: "Failed",
  /** False when the finished run's script is no longer embedded in this operator. */
  ScriptAvailable: "ScriptAvailable",
  /** True when spec or script changed after the run finished and rerunPolicy kept the outcome. */
  Outdated: "Outdated",
} as const;

/** Container waiting reasons that mean the pod is stuck, not merely starting. */
export const STUCK_WAITING_REASONS: ReadonlySet<string> = new Set([
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "ErrImageNeverPull",
  "CreateContainerConfigError",
  "CreateContainerError",
  "RunContainerError",
  "CrashLoopBackOff",
]);

/**
 * Reasons of an unfinished run that cannot go on by itself: someone must change the spec, the
 * cluster (a node, a quota, a ServiceAccount) or a foreign object. A Failed run is stalled too.
 */
export const STALLED_REASONS: ReadonlySet<string> = new Set([
  REASON.NameConflict,
  REASON.Unschedulable,
  REASON.FailedCreate,
  ...STUCK_WAITING_REASONS,
]);
