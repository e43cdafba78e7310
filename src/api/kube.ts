/**
 * The `Kube` port (port.ts) implemented over `@kubernetes/client-node`, with clients built by
 * client.ts. Objects come back as plain JSON (dates as strings).
 * @module
 */
import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1ConfigMap,
  type V1Job,
} from "@kubernetes/client-node";
import { type KubeHttp, unsupportedReason } from "./kube_http.ts";
import {
  type ClientOptions,
  CONNECT_TIMEOUT_MS,
  makeClient,
  observed,
  REQUEST_TIMEOUT_MS,
  type RequestHooks,
  type RequestObserver,
  sharedKubeHttp,
} from "./client.ts";
import {
  compactConfigMap,
  compactJob,
  compactScriptRun,
  type PodLike,
  podSummary,
} from "./compact.ts";
import { classify, KubeError } from "./errors.ts";
import type { EventNote, Kube } from "./port.ts";
import {
  type ConfigMap,
  GROUP,
  type Job,
  type JobEvent,
  KIND,
  LABELS,
  MANAGED_SELECTOR,
  MANAGER,
  PLURAL,
  type PodSummary,
  type ScriptRun,
  type ScriptRunStatus,
  VERSION,
} from "../types.ts";

const PAGE = 500;

/** Converts client-node's model objects to plain JSON, dates as RFC 3339 strings without ms. */
export function toPlain<T>(value: unknown): T {
  return JSON.parse(
    JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown) {
      const original = this[key];
      if (original instanceof Date) return original.toISOString().replace(/\.\d{3}Z$/, "Z");
      return v;
    }),
  ) as T;
}

async function allPages<T>(
  fetchPage: (
    cont: string | undefined,
  ) => Promise<{ items: unknown[]; metadata?: { _continue?: string; continue?: string } }>,
): Promise<T[]> {
  const items: T[] = [];
  let cont: string | undefined;
  do {
    const page = await fetchPage(cont);
    items.push(...toPlain<T[]>(page.items));
    cont = page.metadata?._continue ?? page.metadata?.continue;
  } while (cont);
  return items;
}

/** Options of {@linkcode ClientNodeKube}. */
export interface ClientNodeKubeOptions {
  /** Sees every request (for metrics and request counting in tests). */
  observe?: RequestObserver;
  /** `reportingInstance` of the Events. */
  instance?: string;
  /**
   * Told the outcome of every request: false when no response arrived (connection error or
   * timeout), true on any HTTP response, error statuses included.
   */
  onReachability?: (reachable: boolean) => void;
  /** Request and connect timeouts, write gate and request log of every client. */
  client?: ClientOptions;
}

/** The Kube implementation over client-node. */
export class ClientNodeKube implements Kube {
  #core: CoreV1Api;
  #batch: BatchV1Api;
  #custom: CustomObjectsApi;
  #hooks: RequestHooks;
  #reportingInstance: string;

  #http: KubeHttp | undefined;
  #answerMs: number;

  /** A client of `kc`'s current context. */
  constructor(kc: KubeConfig, options: ClientNodeKubeOptions = {}) {
    this.#core = makeClient(kc, CoreV1Api, options.client);
    this.#batch = makeClient(kc, BatchV1Api, options.client);
    this.#custom = makeClient(kc, CustomObjectsApi, options.client);
    this.#hooks = { observe: options.observe, onReachability: options.onReachability };
    this.#reportingInstance = options.instance ?? MANAGER;
    this.#http = unsupportedReason(kc) ? undefined : sharedKubeHttp(kc);
    this.#answerMs = Math.min(
      options.client?.connectMs ?? CONNECT_TIMEOUT_MS,
      options.client?.requestMs ?? REQUEST_TIMEOUT_MS,
    );
  }

  /**
   * `GET /readyz` of the API server (open to every identity): whether it answers at all. An
   * operator fed by the watched view sends no other request while idle; this keeps /readyz true.
   * A no-op for kubeconfigs Deno's fetch cannot serve.
   */
  async ping(): Promise<void> {
    if (!this.#http) return;
    try {
      const response = await this.#http.fetch("/readyz", {
        signal: AbortSignal.timeout(this.#answerMs),
      });
      await response.body?.cancel();
      this.#hooks.observe?.("GET", "readyz", String(response.status));
      this.#hooks.onReachability?.(true);
    } catch (error) {
      this.#hooks.observe?.("GET", "readyz", "<error>");
      this.#hooks.onReachability?.(false);
      throw classify(error, "get /readyz");
    }
  }

  #call<T>(verb: string, resource: string, where: string, fn: () => Promise<T>): Promise<T> {
    return observed(this.#hooks, verb, resource, `${verb.toLowerCase()} ${resource}${where}`, fn);
  }

  listScriptRuns(namespace?: string): Promise<ScriptRun[]> {
    return this.#call(
      "LIST",
      PLURAL,
      inNs(namespace),
      () =>
        allPages<ScriptRun>((cont) =>
          namespace
            ? this.#custom.listNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              plural: PLURAL,
              namespace,
              limit: PAGE,
              _continue: cont,
            })
            : this.#custom.listClusterCustomObject({
              group: GROUP,
              version: VERSION,
              plural: PLURAL,
              limit: PAGE,
              _continue: cont,
            })
        ),
    );
  }

  listConfigMaps(namespace?: string): Promise<ConfigMap[]> {
    return this.#call(
      "LIST",
      "configmaps",
      inNs(namespace),
      () =>
        allPages<ConfigMap>((cont) =>
          namespace
            ? this.#core.listNamespacedConfigMap({
              namespace,
              labelSelector: MANAGED_SELECTOR,
              limit: PAGE,
              _continue: cont,
            })
            : this.#core.listConfigMapForAllNamespaces({
              labelSelector: MANAGED_SELECTOR,
              limit: PAGE,
              _continue: cont,
            })
        ),
    );
  }

  listJobs(namespace?: string): Promise<Job[]> {
    return this.#call(
      "LIST",
      "jobs",
      inNs(namespace),
      () =>
        allPages<Job>((cont) =>
          namespace
            ? this.#batch.listNamespacedJob({
              namespace,
              labelSelector: MANAGED_SELECTOR,
              limit: PAGE,
              _continue: cont,
            })
            : this.#batch.listJobForAllNamespaces({
              labelSelector: MANAGED_SELECTOR,
              limit: PAGE,
              _continue: cont,
            })
        ),
    );
  }

  async listRunPods(namespace: string, runUid: string): Promise<PodSummary[]> {
    const pods = await this.#call(
      "LIST",
      "pods",
      inNs(namespace),
      () =>
        allPages<PodLike>((cont) =>
          this.#core.listNamespacedPod({
            namespace,
            labelSelector: `${LABELS.scriptRunUid}=${runUid}`,
            limit: PAGE,
            _continue: cont,
          })
        ),
    );
    return pods.map(podSummary);
  }

  async listJobWarnings(namespace: string): Promise<Map<string, JobEvent[]>> {
    const events = await this.#call(
      "LIST",
      "events",
      inNs(namespace),
      () =>
        allPages<{
          involvedObject?: { name?: string };
          reason?: string;
          message?: string;
          lastTimestamp?: string;
        }>((cont) =>
          this.#core.listNamespacedEvent({
            namespace,
            fieldSelector: "involvedObject.kind=Job,type=Warning",
            limit: PAGE,
            _continue: cont,
          })
        ),
    );
    events.sort((a, b) => (a.lastTimestamp ?? "").localeCompare(b.lastTimestamp ?? ""));
    const byJob = new Map<string, JobEvent[]>();
    for (const e of events) {
      const job = e.involvedObject?.name ?? "";
      let list = byJob.get(job);
      if (!list) byJob.set(job, list = []);
      list.push({ reason: e.reason ?? "", message: e.message ?? "" });
    }
    return byJob;
  }

  async getScriptRun(namespace: string, name: string): Promise<ScriptRun | undefined> {
    // A LIST of one name rather than a GET: as fresh (no resourceVersion: read from etcd), and
    // the `list` the operator's RBAC already grants.
    const list = await this.#call(
      "LIST",
      PLURAL,
      inNs(namespace),
      () =>
        this.#custom.listNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace,
          fieldSelector: `metadata.name=${name}`,
        }),
    ) as { items?: unknown[] };
    const run = list.items?.[0];
    return run ? compactScriptRun(run) : undefined;
  }

  async getConfigMap(namespace: string, name: string): Promise<ConfigMap | undefined> {
    try {
      const cm = await this.#call(
        "GET",
        "configmaps",
        inNs(namespace),
        () => this.#core.readNamespacedConfigMap({ namespace, name }),
      );
      return compactConfigMap(toPlain(cm));
    } catch (error) {
      if (error instanceof KubeError && error.kind === "notFound") return undefined;
      throw error;
    }
  }

  async getJob(namespace: string, name: string): Promise<Job | undefined> {
    try {
      const job = await this.#call(
        "GET",
        "jobs",
        inNs(namespace),
        () => this.#batch.readNamespacedJob({ namespace, name }),
      );
      return compactJob(toPlain(job));
    } catch (error) {
      if (error instanceof KubeError && error.kind === "notFound") return undefined;
      throw error;
    }
  }

  async relabel(
    kind: "ConfigMap" | "Job",
    namespace: string,
    name: string,
    labels: Record<string, string>,
  ): Promise<void> {
    const body = { metadata: { labels } };
    const options = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
    if (kind === "ConfigMap") {
      await this.#call(
        "PATCH",
        "configmaps",
        inNs(namespace),
        () => this.#core.patchNamespacedConfigMap({ namespace, name, body }, options),
      );
    } else {
      await this.#call(
        "PATCH",
        "jobs",
        inNs(namespace),
        () => this.#batch.patchNamespacedJob({ namespace, name, body }, options),
      );
    }
  }

  async createConfigMap(object: ConfigMap): Promise<void> {
    const namespace = object.metadata.namespace ?? "default";
    await this.#call(
      "POST",
      "configmaps",
      inNs(namespace),
      () =>
        this.#core.createNamespacedConfigMap({
          namespace,
          body: asModel<V1ConfigMap>(object),
          fieldManager: MANAGER,
        }),
    );
  }

  async createJob(object: Job): Promise<void> {
    const namespace = object.metadata.namespace ?? "default";
    await this.#call(
      "POST",
      "jobs",
      inNs(namespace),
      () =>
        this.#batch.createNamespacedJob({
          namespace,
          body: asModel<V1Job>(object),
          fieldManager: MANAGER,
        }),
    );
  }

  async deleteJob(namespace: string, name: string): Promise<void> {
    await this.#call("DELETE", "jobs", inNs(namespace), () =>
      // Foreground: the Job stays (terminating) until the garbage collector has removed its pods,
      // so a replacement can wait for it to be gone; no pod is orphaned.
      this.#batch.deleteNamespacedJob({ namespace, name, propagationPolicy: "Foreground" }));
  }

  async deleteConfigMap(namespace: string, name: string): Promise<void> {
    await this.#call(
      "DELETE",
      "configmaps",
      inNs(namespace),
      () => this.#core.deleteNamespacedConfigMap({ namespace, name }),
    );
  }

  async patchStatus(run: ScriptRun, status: ScriptRunStatus): Promise<ScriptRun> {
    const namespace = run.metadata.namespace ?? "default";
    // A merge patch of the whole status, guarded by the resourceVersion we planned from: if the
    // ScriptRun changed meanwhile the server answers 409 and the next cycle plans again.
    const body = {
      metadata: { resourceVersion: run.metadata.resourceVersion },
      status: { ...nullsForMissing(run.status, status), ...status },
    };
    const updated = await this.#call(
      "PATCH",
      `${PLURAL}/status`,
      inNs(namespace),
      () =>
        this.#custom.patchNamespacedCustomObjectStatus(
          {
            group: GROUP,
            version: VERSION,
            plural: PLURAL,
            namespace,
            name: run.metadata.name,
            body,
          },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        ),
    );
    return compactScriptRun(updated);
  }

  async createEvent(run: ScriptRun, note: EventNote): Promise<void> {
    const namespace = run.metadata.namespace ?? "default";
    const now = new Date();
    await this.#call("POST", "events", inNs(namespace), () =>
      this.#core.createNamespacedEvent({
        namespace,
        body: {
          metadata: { generateName: `${run.metadata.name.slice(0, 200)}.`, namespace },
          involvedObject: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: KIND,
            name: run.metadata.name,
            namespace,
            uid: run.metadata.uid,
            resourceVersion: run.metadata.resourceVersion,
          },
          type: note.type,
          reason: note.reason,
          message: note.message,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
          source: { component: MANAGER },
          reportingComponent: `${GROUP}/${MANAGER}`,
          reportingInstance: this.#reportingInstance,
        },
      }));
  }
}

/** Our desired objects carry no timestamps, the only fields whose types differ from the models'. */
function asModel<T>(object: ConfigMap | Job): T {
  return object as unknown as T;
}

function inNs(namespace: string | undefined): string {
  return namespace ? ` in namespace ${namespace}` : " in all namespaces";
}

/** Fields present before and absent now must be sent as null in a merge patch to be removed. */
function nullsForMissing(
  before: ScriptRunStatus | undefined,
  after: ScriptRunStatus,
): Record<string, null> {
  const out: Record<string, null> = {};
  for (const key of Object.keys(before ?? {})) {
    if (!(key in after)) out[key] = null;
  }
  return out;
}
