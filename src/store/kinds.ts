/**
 * What the watched view keeps of each kind it watches, and where it finds it: the API path, label
 * selector and Accept headers of each kind's LIST and WATCH, and the compact record an object is
 * reduced to. Records hold only what the reconciler reads, so the view's memory follows the
 * number of objects, not their size: ConfigMaps are asked for as metadata only (the script body is
 * never downloaded nor held), Jobs and ScriptRuns lose what the plan does not read, pods become a
 * {@linkcode WatchedPod}. Only managed Jobs and ConfigMaps, and only pods labelled with a
 * ScriptRun's uid, are asked for. Pure. No I/O.
 * @module
 */
import { compactConfigMap, compactJob, compactScriptRun, podSummary } from "../api/compact.ts";
import { internAll } from "../api/intern.ts";
import { jobOutcome } from "../desired/job_status.ts";
import {
  type ConfigMap,
  GROUP,
  type Job,
  LABELS,
  MANAGED_SELECTOR,
  PLURAL,
  type PodSummary,
  type ScriptRun,
  VERSION,
} from "../types.ts";

/**
 * What the view keeps of a pod of a ScriptRun's Job: the reconciler's {@linkcode PodSummary}
 * (from `podSummary()`, as `Kube.listRunPods` returns it) plus what the view indexes by.
 */
export interface WatchedPod extends PodSummary {
  namespace: string;
  uid: string;
  resourceVersion: string;
  /** `script-operator.dev/scriptrun-uid` label. */
  runUid: string;
}

/** Accept header for metadata-only lists. */
export const METADATA_LIST_ACCEPT =
  "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
/** Accept header for metadata-only watches. */
export const METADATA_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/** A kind the view watches. */
export type KindName = "ScriptRun" | "Job" | "ConfigMap" | "Pod";
/** An object as the view keeps it, of any kind it watches. */
export type Stored = ScriptRun | Job | ConfigMap | WatchedPod;

/** An object as the API server sends it, before {@linkcode KindSpec.compact}. */
// deno-lint-ignore no-explicit-any -- raw API JSON, narrowed by the compact functions
export type Raw = any;

/** How one kind is listed, watched and kept. */
export interface KindSpec {
  kind: KindName;
  /** The resource's plural name, as requests and logs name it. */
  resource: string;
  /** The collection's path in `namespace` ("" for all namespaces). */
  path(namespace: string): string;
  labelSelector: string;
  listAccept: string;
  watchAccept: string;
  /** The record kept of an object the API server sent. */
  compact(raw: Raw): Stored;
}

/** Every kind the view watches, one stream each per namespace. */
export const KINDS: KindSpec[] = [
  {
    kind: "ScriptRun",
    resource: PLURAL,
    path: (ns) => `/apis/${GROUP}/${VERSION}/${ns ? `namespaces/${ns}/` : ""}${PLURAL}`,
    labelSelector: "",
    listAccept: "application/json",
    watchAccept: "application/json",
    compact: compactScriptRun,
  },
  {
    kind: "Job",
    resource: "jobs",
    path: (ns) => `/apis/batch/v1/${ns ? `namespaces/${ns}/` : ""}jobs`,
    labelSelector: MANAGED_SELECTOR,
    listAccept: "application/json",
    watchAccept: "application/json",
    compact: compactJob,
  },
  {
    kind: "ConfigMap",
    resource: "configmaps",
    path: (ns) => `/api/v1/${ns ? `namespaces/${ns}/` : ""}configmaps`,
    labelSelector: MANAGED_SELECTOR,
    listAccept: METADATA_LIST_ACCEPT,
    watchAccept: METADATA_ACCEPT,
    compact: compactConfigMap,
  },
  {
    kind: "Pod",
    resource: "pods",
    path: (ns) => `/api/v1/${ns ? `namespaces/${ns}/` : ""}pods`,
    labelSelector: LABELS.scriptRunUid,
    listAccept: "application/json",
    watchAccept: "application/json",
    compact: compactPod,
  },
];

/** A pod as a {@linkcode WatchedPod}. Pure. */
export function compactPod(raw: Raw): WatchedPod {
  const m = raw.metadata ?? {};
  return internAll({
    ...podSummary(raw),
    namespace: m.namespace ?? "",
    uid: m.uid ?? "",
    resourceVersion: m.resourceVersion ?? "",
    runUid: m.labels?.[LABELS.scriptRunUid] ?? "",
  });
}

/** Namespace, name and resourceVersion of a kept object, whatever its kind. Pure. */
export function metaOf(obj: Stored): { namespace: string; name: string; resourceVersion: string } {
  if ("metadata" in obj) {
    return {
      namespace: obj.metadata.namespace ?? "",
      name: obj.metadata.name,
      resourceVersion: obj.metadata.resourceVersion ?? "",
    };
  }
  return obj;
}

/** Whether the plan reads an outcome (Succeeded or Failed) from the Job. */
export function jobFinished(job: Job): boolean {
  const { phase } = jobOutcome(job);
  return phase === "Succeeded" || phase === "Failed";
}
