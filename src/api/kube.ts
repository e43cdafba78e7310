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
  type HttpLibrary,
  IsomorphicFetchHttpLibrary,
  type KubeConfig,
  Observable,
  PatchStrategy,
  type RequestContext,
  type ResponseContext,
  ServerConfiguration,
  setHeaderOptions,
  type V1ConfigMap,
  type V1Job,
} from "@kubernetes/client-node";
import { AsyncLocalStorage } from "node:async_hooks";
import type { Logger } from "@logtape/logtape";
import { OPERATOR_VERSION } from "../version.ts";
import { KubeHttp, KubeHttpLibrary, type SendHook, unsupportedReason } from "./kube_http.ts";
import {
  compactConfigMap,
  compactJob,
  compactScriptRun,
  type PodLike,
  podSummary,
} from "./compact.ts";
import { classify, KubeError } from "./errors.ts";
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

const PAGE = 500;

/**
 * Timeouts by kind of request, the one place that says why each is as long as it is
 * (`SCRIPT_OPERATOR_CONNECT_TIMEOUT` and `SCRIPT_OPERATOR_REQUEST_TIMEOUT` override the first two):
 * - `connectMs`: the readiness ping's time to first byte (`GET /readyz` of the API server, which
 *   the default API Priority and Fairness configuration never queues), the watched view's probe
 *   while the server does not answer, and the TCP and TLS connect of client-node's transport. A
 *   stopped or black-holed API server is noticed this fast.
 * - `requestMs`: LIST pages and writes, time to first byte and whole request, and a watch's first
 *   byte. API Priority and Fairness may hold a request in its queue for seconds (up to a quarter
 *   of the server's 60 s request timeout) before serving it: a busy server, not an unreachable
 *   one, so these must not fail, abort the cycle or turn /readyz 503 after a few seconds.
 * - `watchIdleMs`: a watch has no time limit of its own (the server ends it after its
 *   `timeoutSeconds`); one that delivers nothing, not even the bookmark the API server sends
 *   about once a minute, for this long is dead and is opened again.
 */
export const TIMEOUTS = { connectMs: 5_000, requestMs: 30_000, watchIdleMs: 90_000 } as const;

/** Longest a LIST page or write may take (see {@linkcode TIMEOUTS}). */
export const REQUEST_TIMEOUT_MS: number = TIMEOUTS.requestMs;

/** Longest the readiness ping may wait for its first byte (see {@linkcode TIMEOUTS}). */
export const CONNECT_TIMEOUT_MS: number = TIMEOUTS.connectMs;

/** Options of {@linkcode makeClient}; timeouts in milliseconds. */
export interface ClientOptions {
  /** Whole request (default {@linkcode REQUEST_TIMEOUT_MS}). */
  requestMs?: number;
  /** Connection and TLS handshake (default {@linkcode CONNECT_TIMEOUT_MS}, capped at requestMs). */
  connectMs?: number;
  /**
   * Asked for each write (any method but GET) as the last step before it is handed to the
   * network, after the request's credentials and middleware (see {@linkcode SendHook});
   * `allowed: false` refuses it with a {@linkcode NotLeaderError}. This is what keeps a leader
   * that was frozen between deciding a write and sending it from sending it once deposed.
   */
  writeGate?: () => WriteGate;
  /**
   * Logs "Sending request" (debug) for every request handed to the network, a write with what its
   * gate read.
   */
  log?: Logger;
  /**
   * "client-node" (default): client-node's own transport, a new undici Agent and TLS connection
   * per request, with the connect timeout. "fetch": one keep-alive pool over Deno's fetch per
   * KubeConfig ({@linkcode KubeHttpLibrary}; about 3-5x the request rate and half the peak memory,
   * see bench/http_transport.ts and bench/converge_compare.ts); Deno's HttpClient has no connect
   * timeout, so a stopped API server is noticed after `requestMs`. Kubeconfigs Deno's fetch cannot
   * serve (insecure-skip-tls-verify, tls-server-name, proxy-url) stay on client-node.
   */
  transport?: "client-node" | "fetch";
}

/** What the write gate decided, and what it read (logged with the request). */
export interface WriteGate {
  allowed: boolean;
  fields?: Record<string, unknown>;
}

const sharedHttp = new WeakMap<KubeConfig, KubeHttp>();

/** The keep-alive pool of `kc` (HTTP/1.1: it beat HTTP/2 at every concurrency measured here). */
function sharedKubeHttp(kc: KubeConfig): KubeHttp {
  let http = sharedHttp.get(kc);
  if (!http) sharedHttp.set(kc, http = new KubeHttp(kc, { http2: false }));
  return http;
}

/** A write refused because this process may not write now (no longer the leader). */
export class NotLeaderError extends KubeError {
  override name = "NotLeaderError";
  /** `action` names the refused request. */
  constructor(action: string) {
    super(`not the leader: ${action} not sent`, { code: 0, kind: "transient", action });
  }
}

/** The HTTP status codes of the responses received inside {@linkcode recordStatuses}. */
const statuses = new AsyncLocalStorage<number[]>();

/** What {@linkcode recordStatuses} saw. */
export interface RecordedCall<T> {
  /** Status codes of every response received (several for a paged LIST, none without one). */
  codes: number[];
  ok: boolean;
  result?: T;
  error?: unknown;
}

/**
 * Runs `fn` and returns the HTTP status codes of every response a {@linkcode makeClient} client
 * received during it, with its result or error.
 */
export async function recordStatuses<T>(fn: () => Promise<T>): Promise<RecordedCall<T>> {
  const codes: number[] = [];
  try {
    const result = await statuses.run(codes, fn);
    return { codes, result, ok: true };
  } catch (error) {
    return { codes, error, ok: false };
  }
}

/**
 * The kubeconfig with a connect timeout on its dispatcher: client-node builds an undici Agent
 * from `createDispatcherOptions` for every request, and undici's `connect.timeout` covers the
 * TCP connection and the TLS handshake. `kc` itself is left unchanged.
 */
function withConnectTimeout(kc: KubeConfig, connectMs: number): KubeConfig {
  const wrapped = Object.create(kc) as KubeConfig;
  wrapped.createDispatcherOptions = (cluster, agentOptions) => {
    const options = kc.createDispatcherOptions.call(wrapped, cluster, agentOptions);
    if (options.type === "agent" || options.type === "proxy") {
      return { ...options, connect: { ...options.connect, timeout: connectMs } };
    }
    if (options.type === "none") return { type: "agent", connect: { timeout: connectMs } };
    return options;
  };
  return wrapped;
}

/**
 * `kc.makeApiClient(Api)`, plus a timeout on every request and a shorter one on connecting: a
 * hung connection must neither stall a cycle for minutes nor keep the process from shutting
 * down. Response status codes are available through {@linkcode recordStatuses}.
 */
export function makeClient<T>(
  kc: KubeConfig,
  Api: new (config: ReturnType<typeof createConfiguration>) => T,
  options: number | ClientOptions = {},
): T {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  const t = typeof options === "number" ? { requestMs: options } as ClientOptions : options;
  const requestMs = t.requestMs ?? REQUEST_TIMEOUT_MS;
  // Deno's fetch has no connect timeout: there the limit is on the time to first byte, which for a
  // LIST page or a write is the request's own (see TIMEOUTS).
  const connectMs = t.transport === "fetch" && !unsupportedReason(kc)
    ? requestMs
    : Math.min(t.connectMs ?? CONNECT_TIMEOUT_MS, requestMs);
  const fetch = t.transport === "fetch" && !unsupportedReason(kc);
  const onSend: SendHook = (method, url) => {
    const gate = method === "GET" ? undefined : t.writeGate?.();
    if (gate && !gate.allowed) throw new NotLeaderError(`${method} ${url}`);
    return () => t.log?.debug("Sending request", { method, url, ...gate?.fields });
  };
  return new Api(createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    // KubeHttp authenticates each request itself.
    ...fetch
      ? { httpApi: new KubeHttpLibrary(sharedKubeHttp(kc), { answerMs: connectMs, onSend }) }
      : {
        authMethods: { default: withConnectTimeout(kc, connectMs) },
        httpApi: new GatedHttpLibrary(new IsomorphicFetchHttpLibrary(), onSend),
      },
    promiseMiddleware: [{
      pre: (request: RequestContext) => {
        request.setSignal(AbortSignal.timeout(requestMs));
        request.setHeaderParam("User-Agent", `${MANAGER}/${OPERATOR_VERSION}`);
        return Promise.resolve(request);
      },
      post: (response: ResponseContext) => {
        statuses.getStore()?.push(response.httpStatusCode);
        return Promise.resolve(response);
      },
    }],
  }));
}

/**
 * client-node's own transport with a {@linkcode SendHook}: client-node authenticates in the API
 * class before `send()`, and its library calls `fetch` synchronously in `send()`, so the hook runs
 * right before the hand-over here too.
 */
class GatedHttpLibrary implements HttpLibrary {
  #inner: HttpLibrary;
  #onSend: SendHook;

  constructor(inner: HttpLibrary, onSend: SendHook) {
    this.#inner = inner;
    this.#onSend = onSend;
  }

  send(request: RequestContext): Observable<ResponseContext> {
    let sent: (() => void) | void;
    try {
      sent = this.#onSend(String(request.getHttpMethod()), request.getUrl());
    } catch (error) {
      return new Observable(Promise.reject(error));
    }
    const response = this.#inner.send(request);
    sent?.();
    return response;
  }
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

/** Who hears about each request's outcome. */
export interface RequestHooks {
  observe?: RequestObserver;
  onReachability?: (reachable: boolean) => void;
}

/**
 * Runs one client-node call: tells `observe` each response's real HTTP status code ("<error>"
 * when none arrived) and `onReachability` whether the server answered; errors become KubeErrors
 * naming `action`.
 */
export async function observed<T>(
  hooks: RequestHooks,
  verb: string,
  resource: string,
  action: string,
  fn: () => Promise<T>,
): Promise<T> {
  const outcome = await recordStatuses(fn);
  // Refused before it was sent: not a request, and says nothing about the server.
  if (outcome.error instanceof NotLeaderError) throw outcome.error;
  const codes = [...outcome.codes];
  if (!outcome.ok && codes.length === 0) {
    // An ApiException carries the status even if the middleware did not see the response.
    const code = (outcome.error as { code?: unknown } | undefined)?.code;
    if (typeof code === "number" && code >= 100) codes.push(code);
  }
  for (const code of codes) hooks.observe?.(verb, resource, String(code));
  if (codes.length === 0) hooks.observe?.(verb, resource, "<error>");
  hooks.onReachability?.(codes.length > 0);
  if (!outcome.ok) throw classify(outcome.error, action);
  return outcome.result as T;
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
