/**
 * The one module that talks to the API server through `@kubernetes/client-node`. Everything
 * above it takes the small `Kube` interface. Objects come back as plain JSON (dates as strings).
 * @module
 */
import {
  BatchV1Api,
  CoreV1Api,
  createConfiguration,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  type RequestContext,
  type ResponseContext,
  ServerConfiguration,
  setHeaderOptions,
  type V1ConfigMap,
  type V1Job,
} from "@kubernetes/client-node";
import { OPERATOR_VERSION } from "./cli.ts";
import { classify } from "./errors.ts";
import {
  type ConfigMap,
  GROUP,
  type Job,
  KIND,
  LABELS,
  MANAGED_SELECTOR,
  MANAGER,
  PLURAL,
  type PodTermination,
  type ScriptRun,
  type ScriptRunStatus,
  VERSION,
} from "./types.ts";
import { CONTAINER_NAME } from "./desired.ts";

/** Called after every request: verb (GET, LIST, POST…), resource, HTTP code ("<error>" when none). */
export type RequestObserver = (verb: string, resource: string, code: string) => void;

/** A Kubernetes Event about a ScriptRun. */
export interface EventNote {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

/** What the reconciler needs from the API server. */
export interface Kube {
  listScriptRuns(namespace?: string): Promise<ScriptRun[]>;
  listConfigMaps(namespace?: string): Promise<ConfigMap[]>;
  listJobs(namespace?: string): Promise<Job[]>;
  podTermination(namespace: string, jobName: string): Promise<PodTermination | undefined>;
  /** Whether pods of a ScriptRun's other Jobs (not `hash`) are still pending or running. */
  otherPodsActive(namespace: string, runUid: string, hash: string): Promise<boolean>;
  createConfigMap(object: ConfigMap): Promise<void>;
  createJob(object: Job): Promise<void>;
  deleteJob(namespace: string, name: string): Promise<void>;
  deleteConfigMap(namespace: string, name: string): Promise<void>;
  patchStatus(run: ScriptRun, status: ScriptRunStatus): Promise<void>;
  createEvent(run: ScriptRun, note: EventNote): Promise<void>;
}

const PAGE = 500;

/** Longest a request to the API server may take (client-node sets no timeout of its own). */
export const REQUEST_TIMEOUT_MS = 30_000;

/**
 * `kc.makeApiClient(Api)`, plus a timeout on every request: a hung connection must neither stall
 * a cycle for minutes nor keep the process from shutting down.
 */
export function makeClient<T>(
  kc: KubeConfig,
  Api: new (config: ReturnType<typeof createConfiguration>) => T,
  timeoutMs: number = REQUEST_TIMEOUT_MS,
): T {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  return new Api(createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: kc },
    promiseMiddleware: [{
      pre: (request: RequestContext) => {
        request.setSignal(AbortSignal.timeout(timeoutMs));
        request.setHeaderParam("User-Agent", `${MANAGER}/${OPERATOR_VERSION}`);
        return Promise.resolve(request);
      },
      post: (response: ResponseContext) => Promise.resolve(response),
    }],
  }));
}

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

/** The Kube implementation over client-node. */
export class ClientNodeKube implements Kube {
  #core: CoreV1Api;
  #batch: BatchV1Api;
  #custom: CustomObjectsApi;
  #observe: RequestObserver;
  #reportingInstance: string;

  /** `observe` sees every request (for metrics and request counting in tests). */
  constructor(kc: KubeConfig, options: { observe?: RequestObserver; instance?: string } = {}) {
    this.#core = makeClient(kc, CoreV1Api);
    this.#batch = makeClient(kc, BatchV1Api);
    this.#custom = makeClient(kc, CustomObjectsApi);
    this.#observe = options.observe ?? (() => {});
    this.#reportingInstance = options.instance ?? MANAGER;
  }

  async #call<T>(verb: string, resource: string, where: string, fn: () => Promise<T>): Promise<T> {
    try {
      const result = await fn();
      this.#observe(verb, resource, verb === "POST" ? "201" : "200");
      return result;
    } catch (error) {
      const e = error as { code?: unknown };
      this.#observe(verb, resource, typeof e.code === "number" ? String(e.code) : "<error>");
      throw classify(error, `${verb.toLowerCase()} ${resource}${where}`);
    }
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

  async podTermination(namespace: string, jobName: string): Promise<PodTermination | undefined> {
    const pods = await this.#call(
      "LIST",
      "pods",
      inNs(namespace),
      () =>
        allPages<PodLike>((cont) =>
          this.#core.listNamespacedPod({
            namespace,
            labelSelector: `batch.kubernetes.io/job-name=${jobName}`,
            limit: PAGE,
            _continue: cont,
          })
        ),
    );
    return lastTermination(pods);
  }

  async otherPodsActive(namespace: string, runUid: string, hash: string): Promise<boolean> {
    const pods = await this.#call(
      "LIST",
      "pods",
      inNs(namespace),
      () =>
        allPages<{ status?: { phase?: string } }>((cont) =>
          this.#core.listNamespacedPod({
            namespace,
            labelSelector: `${LABELS.scriptRunUid}=${runUid},${LABELS.hash}!=${hash}`,
            limit: PAGE,
            _continue: cont,
          })
        ),
    );
    return pods.some((p) => p.status?.phase !== "Succeeded" && p.status?.phase !== "Failed");
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
      // Background: the Job goes now, the garbage collector removes its pods; none is orphaned.
      this.#batch.deleteNamespacedJob({ namespace, name, propagationPolicy: "Background" }));
  }

  async deleteConfigMap(namespace: string, name: string): Promise<void> {
    await this.#call(
      "DELETE",
      "configmaps",
      inNs(namespace),
      () => this.#core.deleteNamespacedConfigMap({ namespace, name }),
    );
  }

  async patchStatus(run: ScriptRun, status: ScriptRunStatus): Promise<void> {
    const namespace = run.metadata.namespace ?? "default";
    // A merge patch of the whole status, guarded by the resourceVersion we planned from: if the
    // ScriptRun changed meanwhile the server answers 409 and the next cycle plans again.
    const body = {
      metadata: { resourceVersion: run.metadata.resourceVersion },
      status: { ...nullsForMissing(run.status, status), ...status },
    };
    await this.#call(
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

interface PodLike {
  metadata: { name: string; creationTimestamp?: string };
  status?: {
    containerStatuses?: {
      name: string;
      state?: { terminated?: { exitCode?: number; reason?: string; message?: string } };
    }[];
  };
}

/** The script container's termination in the newest pod that reports one. Pure. */
export function lastTermination(pods: PodLike[]): PodTermination | undefined {
  const sorted = [...pods].sort((a, b) =>
    (b.metadata.creationTimestamp ?? "").localeCompare(a.metadata.creationTimestamp ?? "")
  );
  for (const pod of sorted) {
    const status = pod.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME);
    const t = status?.state?.terminated;
    if (t) {
      return {
        podName: pod.metadata.name,
        exitCode: t.exitCode,
        reason: t.reason,
        message: t.message,
      };
    }
  }
  return undefined;
}
