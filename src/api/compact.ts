/**
 * The compact shapes the operator keeps of what the API server sends: only the fields the plan
 * reads (no managedFields, no kubectl last-applied annotation, Jobs without their pod template,
 * ConfigMaps as metadata). Used by the watched view and by single reads alike. Pure. No I/O.
 * @module
 */
import { CONTAINER_NAME } from "../desired/desired.ts";
import { internAll } from "./intern.ts";
import {
  type ConfigMap,
  GROUP,
  type Job,
  KIND,
  LABELS,
  type ObjectMeta,
  type OwnerReference,
  type PodSummary,
  type ScriptRun,
  VERSION,
} from "../types.ts";

// deno-lint-ignore no-explicit-any -- raw API JSON, narrowed by the compact functions below
type Raw = any;

const LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration";
/** One string for every run (a template literal per call would build a new one each time). */
const RUN_API_VERSION = `${GROUP}/${VERSION}`;

/** Copies the listed keys that are present. Pure. */
function pick(from: Raw, keys: readonly string[]): Raw {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (from?.[k] !== undefined && from[k] !== null) out[k] = from[k];
  return out;
}

function withoutLastApplied(annotations: Record<string, string> | undefined) {
  if (!annotations || !(LAST_APPLIED in annotations)) return annotations;
  const { [LAST_APPLIED]: _, ...rest } = annotations;
  return Object.keys(rest).length > 0 ? rest : undefined;
}

const RUN_META = [
  "name",
  "namespace",
  "uid",
  "generation",
  "resourceVersion",
  "creationTimestamp",
  "deletionTimestamp",
  "labels",
] as const;
const CHILD_META = [
  "name",
  "namespace",
  "uid",
  "resourceVersion",
  "creationTimestamp",
  "deletionTimestamp",
  "labels",
  "ownerReferences",
] as const;

function compactOwnerRefs(refs: Raw): OwnerReference[] | undefined {
  if (!Array.isArray(refs)) return undefined;
  return refs.map((r) => pick(r, ["apiVersion", "kind", "name", "uid", "controller"]) as Raw);
}

function childMeta(raw: Raw): ObjectMeta {
  const meta = pick(raw.metadata, CHILD_META) as ObjectMeta;
  const annotations = withoutLastApplied(raw.metadata?.annotations);
  if (annotations) meta.annotations = annotations;
  const refs = compactOwnerRefs(raw.metadata?.ownerReferences);
  if (refs) meta.ownerReferences = refs;
  return meta;
}

/** The parts of a ScriptRun the reconciler reads (no managedFields, no last-applied). Pure. */
export function compactScriptRun(raw: Raw): ScriptRun {
  const metadata = pick(raw.metadata, RUN_META) as ObjectMeta;
  const annotations = withoutLastApplied(raw.metadata?.annotations);
  if (annotations) metadata.annotations = annotations;
  const run: ScriptRun = {
    apiVersion: RUN_API_VERSION,
    kind: KIND,
    metadata,
    spec: raw.spec ?? {},
  };
  if (raw.status) run.status = raw.status;
  return internAll(run);
}

/** A Job's metadata and status, without its spec (the pod template). Pure. */
export function compactJob(raw: Raw): Job {
  const job: Job = { apiVersion: "batch/v1", kind: "Job", metadata: childMeta(raw) };
  const status = pick(raw.status, [
    "active",
    "ready",
    "succeeded",
    "failed",
    "startTime",
    "completionTime",
    "conditions",
  ]);
  if (Object.keys(status).length > 0) job.status = status as Job["status"];
  return internAll(job);
}

/** A ConfigMap's metadata (from a full object or a PartialObjectMetadata). Pure. */
export function compactConfigMap(raw: Raw): ConfigMap {
  return internAll({ apiVersion: "v1", kind: "ConfigMap", metadata: childMeta(raw) });
}

/** A pod as the API server sends it, as far as {@linkcode podSummary} reads it. */
export interface PodLike {
  metadata: {
    name: string;
    namespace?: string;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
  };
  status?: {
    phase?: string;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
    containerStatuses?: {
      name: string;
      state?: {
        waiting?: { reason?: string; message?: string };
        running?: { startedAt?: string };
        terminated?: { exitCode?: number; reason?: string; message?: string };
      };
    }[];
  };
}

/** What the operator keeps of a pod (plain JSON as the API server sends it). Pure. */
export function podSummary(pod: PodLike): PodSummary {
  const scheduled = pod.status?.conditions?.find((c) => c.type === "PodScheduled");
  const container = pod.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME);
  const summary: PodSummary = {
    name: pod.metadata.name,
    namespace: pod.metadata.namespace,
    hash: pod.metadata.labels?.[LABELS.hash],
    jobName: pod.metadata.labels?.["batch.kubernetes.io/job-name"] ??
      pod.metadata.labels?.["job-name"],
    phase: pod.status?.phase,
    creationTimestamp: pod.metadata.creationTimestamp,
    deletionTimestamp: pod.metadata.deletionTimestamp,
  };
  if (scheduled?.status === "False" && scheduled.reason === "Unschedulable") {
    summary.unschedulable = scheduled.message ?? "";
  }
  if (container?.state?.waiting) summary.waiting = { ...container.state.waiting };
  if (container?.state?.running?.startedAt) {
    summary.runningSince = container.state.running.startedAt;
  }
  if (container?.state?.terminated) {
    const t = container.state.terminated;
    summary.terminated = { exitCode: t.exitCode, reason: t.reason, message: t.message };
  }
  return JSON.parse(JSON.stringify(summary));
}
