/**
 * The `Kube` port: what the reconciler needs from the API server, apart from how it is reached.
 * reconcile/, controller/ and the recording fake in tests/fakes/ depend on this, not on client-node;
 * kube.ts implements it over client-node.
 * @module
 */
import type { ConfigMap, Job, JobEvent, PodSummary, ScriptRun, ScriptRunStatus } from "../types.ts";

/** A Kubernetes Event about a ScriptRun. */
export interface EventNote {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

/** What the reconciler needs from the API server. */
export interface Kube {
  listScriptRuns(namespace?: string): Promise<ScriptRun[]>;
  /**
   * One ScriptRun as the API server holds it now (a consistent read, not a cache), or undefined
   * when there is none.
   */
  getScriptRun(namespace: string, name: string): Promise<ScriptRun | undefined>;
  listConfigMaps(namespace?: string): Promise<ConfigMap[]>;
  listJobs(namespace?: string): Promise<Job[]>;
  /** The pods of every Job a ScriptRun had (by the run-uid label), summarised. */
  listRunPods(namespace: string, runUid: string): Promise<PodSummary[]>;
  /**
   * Warning Events of the namespace's Jobs by Job name, oldest first (FailedCreate says why a Job
   * has no pod). One LIST for the namespace, not one per Job: the API server scans every Event of
   * the namespace for each such LIST, whatever its field selector.
   */
  listJobWarnings(namespace: string): Promise<Map<string, JobEvent[]>>;
  /** One ConfigMap's metadata, or undefined when there is none. */
  getConfigMap(namespace: string, name: string): Promise<ConfigMap | undefined>;
  /** One Job without its spec, or undefined when there is none. */
  getJob(namespace: string, name: string): Promise<Job | undefined>;
  createConfigMap(object: ConfigMap): Promise<void>;
  createJob(object: Job): Promise<void>;
  /** Foreground: the Job stays visible (terminating) until its pods are gone. */
  deleteJob(namespace: string, name: string): Promise<void>;
  deleteConfigMap(namespace: string, name: string): Promise<void>;
  /** Merge-patches labels onto one of our children. */
  relabel(
    kind: "ConfigMap" | "Job",
    namespace: string,
    name: string,
    labels: Record<string, string>,
  ): Promise<void>;
  /** Guarded by the run's resourceVersion (409 when it changed); returns the updated run. */
  patchStatus(run: ScriptRun, status: ScriptRunStatus): Promise<ScriptRun>;
  createEvent(run: ScriptRun, note: EventNote): Promise<void>;
}
