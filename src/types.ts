/**
 * The ScriptRun resource and the Kubernetes shapes the operator reads and writes.
 * Pure type declarations and constants; no I/O.
 * @module
 */

/** API group of the ScriptRun custom resource. */
export const GROUP = "script-operator.dev";
/** Served version of the ScriptRun custom resource. */
export const VERSION = "v1alpha1";
/** Kind of the custom resource. */
export const KIND = "ScriptRun";
/** Plural resource name of the custom resource. */
export const PLURAL = "scriptruns";
/** Name written in `app.kubernetes.io/managed-by` and used as field manager. */
export const MANAGER = "script-operator";

/** Label keys put on every object the operator creates. */
export const LABELS = {
  managedBy: "app.kubernetes.io/managed-by",
  name: "app.kubernetes.io/name",
  instance: "app.kubernetes.io/instance",
  scriptRun: "script-operator.dev/scriptrun",
  scriptRunUid: "script-operator.dev/scriptrun-uid",
  hash: "script-operator.dev/hash",
} as const;

/** Annotation keys put on the objects the operator creates. */
export const ANNOTATIONS = {
  script: "script-operator.dev/script",
  scriptSha256: "script-operator.dev/script-sha256",
} as const;

/** Label selector matching every ConfigMap and Job the operator manages. */
export const MANAGED_SELECTOR = `${LABELS.managedBy}=${MANAGER}`;

/** A key of a Secret or ConfigMap in the ScriptRun's own namespace. */
export interface KeyRef {
  name: string;
  key: string;
  optional?: boolean;
}

/** An environment variable of the script's container: a value, or a key of a Secret/ConfigMap. */
export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: KeyRef; configMapKeyRef?: KeyRef };
}

/** CPU and memory quantities (`100m`, `500M`). */
export interface ResourceList {
  cpu?: string;
  memory?: string;
}

/** Requests and limits of the script's container. */
export interface Resources {
  requests?: ResourceList;
  limits?: ResourceList;
}

/** The container security context the operator sets (a subset of the core/v1 type). */
export interface SecurityContext {
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot?: boolean;
  allowPrivilegeEscalation?: boolean;
  privileged?: boolean;
  readOnlyRootFilesystem?: boolean;
  capabilities?: { add?: string[]; drop?: string[] };
  seccompProfile?: { type: string; localhostProfile?: string };
}

/** `spec` of a ScriptRun, after the API server applied the CRD's defaults. */
export interface ScriptRunSpec {
  script: string;
  image?: string;
  args?: string[];
  env?: EnvVar[];
  resources?: Resources;
  backoffLimit?: number;
  activeDeadlineSeconds?: number;
  ttlSecondsAfterFinished?: number;
  serviceAccountName?: string;
  securityContext?: SecurityContext;
  /** What a finished run does when its spec or script changes (default `Never`). */
  rerunPolicy?: RerunPolicy;
  /** False: a failure's script output stays out of status.message and Events (default true). */
  reportOutput?: boolean;
}

/**
 * `Never`: a run that finished (its Job succeeded or failed) keeps its outcome; a later change of
 * spec or script is reported, not run. `OnChange`: a new spec or script version runs again.
 */
export type RerunPolicy = "Never" | "OnChange";

/** Phase of a ScriptRun. */
export type Phase = "Pending" | "Running" | "Succeeded" | "Failed";

/** A status condition in the standard Kubernetes shape. */
export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** `status` of a ScriptRun. */
export interface ScriptRunStatus {
  phase?: Phase;
  reason?: string;
  message?: string;
  scriptHash?: string;
  runHash?: string;
  configMapName?: string;
  jobName?: string;
  startTime?: string;
  completionTime?: string;
  observedGeneration?: number;
  conditions?: Condition[];
}

/** Minimal object metadata shared by every object the operator reads. */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
}

/** An ownerReference. */
export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** A ScriptRun as read from the API server. */
export interface ScriptRun {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: ScriptRunSpec;
  status?: ScriptRunStatus;
}

/** A ConfigMap as the operator reads and writes it. */
export interface ConfigMap {
  apiVersion: "v1";
  kind: "ConfigMap";
  metadata: ObjectMeta;
  data?: Record<string, string>;
  immutable?: boolean;
}

/** A Job condition. */
export interface JobCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

/** The parts of a batch/v1 Job the operator reads. */
export interface Job {
  apiVersion: "batch/v1";
  kind: "Job";
  metadata: ObjectMeta;
  // deno-lint-ignore no-explicit-any -- the Job spec is written whole and only compared by hash
  spec?: Record<string, any>;
  status?: {
    active?: number;
    ready?: number;
    succeeded?: number;
    failed?: number;
    startTime?: string;
    completionTime?: string;
    conditions?: JobCondition[];
  };
}

/** What the operator keeps of one pod of a run: enough to explain a wait or a failure. */
export interface PodSummary {
  name: string;
  namespace?: string;
  /** The run hash label: which Job generation of the ScriptRun the pod belongs to. */
  hash?: string;
  /** The `batch.kubernetes.io/job-name` label. */
  jobName?: string;
  /** Pending, Running, Succeeded, Failed or Unknown. */
  phase?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  /** Message of the PodScheduled=False condition with reason Unschedulable. */
  unschedulable?: string;
  /** The script container's waiting state (ErrImagePull, CreateContainerConfigError…). */
  waiting?: { reason?: string; message?: string };
  /** When the script container started running (its `state.running.startedAt`). */
  runningSince?: string;
  /** The script container's terminated state. */
  terminated?: { exitCode?: number; reason?: string; message?: string };
}

/** A Warning Event of a Job (FailedCreate: the Job controller could not create its pod). */
export interface JobEvent {
  reason: string;
  message: string;
}

/** One script embedded in the operator. */
export interface Script {
  name: string;
  content: string;
  sha256: string;
  size: number;
}
