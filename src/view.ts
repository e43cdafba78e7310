/**
 * A watched view of the ScriptRuns, our Jobs, our ConfigMaps (metadata only) and our pods: what
 * client-go's informers do, built for memory. For every scope (namespace, or all namespaces) and
 * kind it LISTs in pages, then WATCHes from the list's resourceVersion with bookmarks, resumes a
 * dropped watch from the last resourceVersion seen, re-LISTs on 410 Gone and every `resyncMs`.
 * Objects are kept as small plain-JSON records holding only what the reconciler reads.
 *
 * Transport: Deno's `fetch` through {@linkcode KubeHttp} (see there), not client-node's `Watch`,
 * `ListWatch` or `makeInformer`: client-node 2.0.1's `Watch` runs undici's fetch on Node streams
 * with a new undici Agent (new TLS connection) per request, and `ListWatch` LISTs through the
 * generated API classes, which turn every object into model class instances with `Date`s and
 * cannot ask for `PartialObjectMetadata` (so every script body would be downloaded and held), and
 * neither pages its LIST nor exposes the bookmarks' resourceVersion to resume from. The watch
 * protocol is small (newline-delimited JSON events), so it is done here.
 *
 * When watching is not possible (a 401/403 on LIST or WATCH, or repeated failures) the view
 * switches to `mode === "list"` with one log line, drops its content, and tries again every
 * `resyncMs`; the reconciler uses plain LISTs meanwhile.
 * @module
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "@logtape/logtape";
import { OPERATOR_VERSION } from "./cli.ts";
import { compactConfigMap, compactJob, compactScriptRun, podSummary } from "./compact.ts";
import type { RequestObserver } from "./kube.ts";
import { KubeHttp, unsupportedReason } from "./kube_http.ts";
import { controllerRef, controllerUid, runKey } from "./owner.ts";
import { jobOutcome } from "./plan.ts";
import {
  type ConfigMap,
  GROUP,
  type Job,
  LABELS,
  MANAGED_SELECTOR,
  MANAGER,
  PLURAL,
  type PodSummary,
  type ScriptRun,
  VERSION,
} from "./types.ts";

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

/** A ScriptRun to reconcile. */
export interface ViewKey {
  namespace: string;
  name: string;
}

/** What changed, as far as the order of reconciles cares. */
export interface ViewChange {
  /** One of the run's Jobs has just reached an outcome (`jobOutcome()`): its status is due. */
  finished: boolean;
}

/** Options of {@linkcode WatchedView}. */
export interface WatchedViewOptions {
  /** Namespaces to watch; empty: all namespaces. */
  namespaces: string[];
  log: Logger;
  /** Sees every request: ("LIST" | "WATCH", resource, HTTP code or "<error>"); one per page. */
  observe?: RequestObserver;
  /** Sees every watch event: (kind, "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR"). */
  observeEvent?: (kind: string, type: string) => void;
  /** Items per LIST page (default 500). */
  pageSize?: number;
  /** Re-LIST everything this often as a safety net (default 10 minutes). */
  resyncMs?: number;
  /** Server-side watch timeout (default 5 minutes, capped by the time to the next resync). */
  watchTimeoutSeconds?: number;
  /**
   * A watch that delivers nothing (not even a bookmark, which the API server sends about once a
   * minute) for this long is abandoned and opened again from the last resourceVersion (default
   * 90 s). Without it a connection that went silent would hold a stream until its timeout.
   */
  watchIdleMs?: number;
  /** Consecutive failures of one stream after which the view falls back to LISTs (default 5). */
  maxFailures?: number;
}

/** Accept header for metadata-only lists. */
export const METADATA_LIST_ACCEPT =
  "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
/** Accept header for metadata-only watches. */
export const METADATA_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

const REQUEST_TIMEOUT_MS = 30_000;

type KindName = "ScriptRun" | "Job" | "ConfigMap" | "Pod";
type Stored = ScriptRun | Job | ConfigMap | WatchedPod;

// deno-lint-ignore no-explicit-any -- raw API JSON, narrowed by the compact functions below
type Raw = any;

interface KindSpec {
  kind: KindName;
  resource: string;
  path(namespace: string): string;
  labelSelector: string;
  listAccept: string;
  watchAccept: string;
  compact(raw: Raw): Stored;
}

const KINDS: KindSpec[] = [
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
  return {
    ...podSummary(raw),
    namespace: m.namespace ?? "",
    uid: m.uid ?? "",
    resourceVersion: m.resourceVersion ?? "",
    runUid: m.labels?.[LABELS.scriptRunUid] ?? "",
  };
}

function metaOf(obj: Stored): { namespace: string; name: string; resourceVersion: string } {
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
function jobFinished(job: Job): boolean {
  const { phase } = jobOutcome(job);
  return phase === "Succeeded" || phase === "Failed";
}

/** An HTTP status from the API server (response code, or a watch ERROR event's Status). */
class StatusError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** Thrown into a watch by `interruptWatches()`. */
class Interrupted extends Error {}

/** A watch that stayed silent longer than `watchIdleMs`. */
class Silent extends Error {}

interface Stream {
  spec: KindSpec;
  namespace: string;
  rv: string | undefined;
  synced: boolean;
  failures: number;
  lastList: number;
  /** Aborts the current request of this stream (interruptWatches). */
  current?: AbortController;
}

interface Generation {
  abort: AbortController;
  streams: Stream[];
  done: Promise<void>;
}

/**
 * A LIST+WATCH view of ScriptRuns and their children. Readers get live, shared objects: do not
 * mutate them. Every lookup is O(1) or O(k) in what it returns.
 */
export class WatchedView {
  #kc: KubeConfig;
  #http: KubeHttp | undefined;
  #namespaces: string[];
  #log: Logger;
  #observe: RequestObserver;
  #observeEvent: (kind: string, type: string) => void;
  #pageSize: number;
  #resyncMs: number;
  #watchTimeoutSeconds: number;
  #watchIdleMs: number;
  #maxFailures: number;
  #listeners: ((key: ViewKey, change: ViewChange) => void)[] = [];
  #mode: "watch" | "list" = "watch";
  #generation: Generation | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #signal: AbortSignal | undefined;
  #startWaiters: (() => void)[] = [];
  #hold: Promise<void> | undefined;
  #resumeFrom: string | undefined;

  // Stores, keyed "namespace/name".
  #runs = new Map<string, ScriptRun>();
  #jobs = new Map<string, Job>();
  #configMaps = new Map<string, ConfigMap>();
  #pods = new Map<string, WatchedPod>();
  // Indexes.
  #runsByNs = new Map<string, Map<string, ScriptRun>>();
  // The three below are keyed by runKey(namespace, uid): a child or pod matches a run only in
  // the run's own namespace.
  #runKeyByUid = new Map<string, string>();
  #childrenByUid = new Map<string, { configMaps: Set<string>; jobs: Set<string> }>();
  #podsByRunUid = new Map<string, Set<string>>();
  #namesByNs = new Map<string, { configMaps: Map<string, string>; jobs: Map<string, string> }>();

  /** See {@linkcode WatchedViewOptions}. Does no I/O until `start()`. */
  constructor(kc: KubeConfig, options: WatchedViewOptions) {
    this.#kc = kc;
    this.#namespaces = options.namespaces;
    this.#log = options.log;
    this.#observe = options.observe ?? (() => {});
    this.#observeEvent = options.observeEvent ?? (() => {});
    this.#pageSize = options.pageSize ?? 500;
    this.#resyncMs = options.resyncMs ?? 10 * 60_000;
    this.#watchTimeoutSeconds = options.watchTimeoutSeconds ?? 300;
    this.#watchIdleMs = options.watchIdleMs ?? 90_000;
    this.#maxFailures = options.maxFailures ?? 5;
  }

  /** "watch": the view is (being) kept current; "list": use plain LISTs instead. */
  get mode(): "watch" | "list" {
    return this.#mode;
  }

  /**
   * Starts listing and watching until `signal` aborts. Resolves once every stream has completed
   * its first LIST, or once the view fell back to `mode === "list"`.
   */
  start(signal: AbortSignal): Promise<void> {
    this.#signal = signal;
    signal.addEventListener("abort", () => this.#stop(), { once: true });
    const reason = unsupportedReason(this.#kc);
    if (reason) {
      this.#fallBack(`Deno's fetch cannot use this kubeconfig: ${reason}`, { retry: false });
      return Promise.resolve();
    }
    // HTTP/1.1 like the clients of kube.ts: sequential requests (LIST pages) were several times slower
    // over Deno's HTTP/2 here (bench/http_transport.ts); each watch holds one connection.
    this.#http = new KubeHttp(this.#kc, {
      userAgent: `${MANAGER}/${OPERATOR_VERSION}`,
      http2: false,
    });
    const started = new Promise<void>((resolve) => this.#startWaiters.push(resolve));
    this.#startGeneration();
    return started;
  }

  /** Whether the view is watching and every stream has completed a LIST. */
  synced(): boolean {
    return this.#mode === "watch" && !!this.#generation &&
      this.#generation.streams.every((s) => s.synced);
  }

  /** The ScriptRuns in `namespace`, or in every watched namespace. */
  scriptRuns(namespace?: string): ScriptRun[] {
    if (namespace !== undefined) return [...this.#runsByNs.get(namespace)?.values() ?? []];
    return [...this.#runs.values()];
  }

  /** One ScriptRun, if the view holds it. */
  scriptRun(namespace: string, name: string): ScriptRun | undefined {
    return this.#runs.get(`${namespace}/${name}`);
  }

  /**
   * The ConfigMaps and Jobs of `namespace` whose controller is the ScriptRun `runUid`, and the
   * pods of `namespace` labelled with that uid.
   */
  children(
    namespace: string,
    runUid: string,
  ): { configMaps: ConfigMap[]; jobs: Job[]; pods: WatchedPod[] } {
    const c = this.#childrenByUid.get(runKey(namespace, runUid));
    const podKeys = this.#podsByRunUid.get(runKey(namespace, runUid));
    return {
      configMaps: c ? [...c.configMaps].map((k) => this.#configMaps.get(k)!) : [],
      jobs: c ? [...c.jobs].map((k) => this.#jobs.get(k)!) : [],
      pods: podKeys ? [...podKeys].map((k) => this.#pods.get(k)!) : [],
    };
  }

  /**
   * Name -> controller ScriptRun uid ("" if none) of every managed ConfigMap and Job in
   * `namespace` (live maps: read only).
   */
  names(
    namespace: string,
  ): { configMaps: ReadonlyMap<string, string>; jobs: ReadonlyMap<string, string> } {
    return this.#namesByNs.get(namespace) ?? { configMaps: new Map(), jobs: new Map() };
  }

  /**
   * Calls `fn` with the ScriptRun to reconcile whenever something changes: the ScriptRun itself,
   * or the owner of a changed Job, ConfigMap or pod (also for deletions and objects that a re-LIST
   * found changed or gone). Called synchronously from the watch loop: keep it cheap (queue it).
   */
  onChange(fn: (key: ViewKey, change: ViewChange) => void): void {
    this.#listeners.push(fn);
  }

  /** Object counts per kind (for metrics and tests). */
  counts(): Record<KindName, number> {
    return {
      ScriptRun: this.#runs.size,
      Job: this.#jobs.size,
      ConfigMap: this.#configMaps.size,
      Pod: this.#pods.size,
    };
  }

  /**
   * For tests: aborts every open request as a dropped connection would. The streams wait for
   * `hold` (if given) and then resume from their last resourceVersion, or from `resumeFrom` (an
   * old resourceVersion makes the server answer 410 Gone).
   */
  interruptWatches(options: { hold?: Promise<void>; resumeFrom?: string } = {}): void {
    this.#hold = options.hold;
    this.#resumeFrom = options.resumeFrom;
    for (const s of this.#generation?.streams ?? []) s.current?.abort(new Interrupted("test"));
  }

  // ---- lifecycle ----

  #startGeneration(): void {
    const abort = new AbortController();
    const scopes = this.#namespaces.length > 0 ? this.#namespaces : [""];
    const streams: Stream[] = scopes.flatMap((namespace) =>
      KINDS.map((spec) => ({
        spec,
        namespace,
        rv: undefined,
        synced: false,
        failures: 0,
        lastList: 0,
      }))
    );
    const generation: Generation = { abort, streams, done: Promise.resolve() };
    this.#generation = generation;
    generation.done = Promise.all(streams.map((s) => this.#run(s, generation))).then(() => {});
  }

  #stop(): void {
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#generation?.abort.abort();
    const generation = this.#generation;
    void generation?.done.finally(() => this.#http?.close());
    if (!generation) this.#http?.close();
    this.#resolveStart();
  }

  #resolveStart(): void {
    const waiters = this.#startWaiters;
    this.#startWaiters = [];
    for (const w of waiters) w();
  }

  #checkSynced(): void {
    if (!this.synced()) return;
    this.#resolveStart();
  }

  #fallBack(reason: string, options: { retry: boolean; stream?: Stream; status?: number }): void {
    // One log line when switching; a retry that fails again stays quiet.
    if (this.#mode === "watch") {
      this.#log.warn("Watch unavailable, using plain LISTs", {
        reason,
        kind: options.stream?.spec.kind,
        namespace: options.stream?.namespace || "*",
        status: options.status,
        retryInMs: options.retry ? this.#resyncMs : undefined,
      });
    }
    this.#mode = "list";
    this.#generation?.abort.abort();
    this.#generation = undefined;
    this.#clear();
    this.#resolveStart();
    if (options.retry && !this.#signal?.aborted && this.#retryTimer === undefined) {
      this.#retryTimer = setTimeout(() => this.#retry(), this.#resyncMs);
    }
  }

  #retry(): void {
    this.#retryTimer = undefined;
    if (this.#signal?.aborted) return;
    // Stays in "list" mode until every stream has listed again (#run switches it back).
    this.#startGeneration();
  }

  #clear(): void {
    for (const m of [this.#runs, this.#jobs, this.#configMaps, this.#pods]) m.clear();
    this.#runsByNs.clear();
    this.#runKeyByUid.clear();
    this.#childrenByUid.clear();
    this.#podsByRunUid.clear();
    this.#namesByNs.clear();
  }

  // ---- one stream: LIST, then WATCH, forever ----

  async #run(stream: Stream, generation: Generation): Promise<void> {
    const signal = generation.abort.signal;
    while (!signal.aborted) {
      try {
        if (stream.rv === undefined || Date.now() - stream.lastList >= this.#resyncMs) {
          await this.#list(stream, signal);
          if (signal.aborted) return;
          if (!stream.synced) {
            stream.synced = true;
            if (this.#mode === "list" && generation.streams.every((s) => s.synced)) {
              this.#mode = "watch";
              this.#log.info("Watching again", { namespaces: this.#namespaces.join(",") || "*" });
            }
            this.#checkSynced();
          }
        }
        await this.#watch(stream, signal);
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof Silent) {
          this.#log.debug("Watch silent, watching again", {
            kind: stream.spec.kind,
            namespace: stream.namespace || "*",
            silentMs: this.#watchIdleMs,
          });
          continue;
        }
        if (error instanceof Interrupted) {
          if (this.#hold) await this.#hold;
          if (this.#resumeFrom) stream.rv = this.#resumeFrom;
          continue;
        }
        const status = error instanceof StatusError ? error.status : 0;
        const message = error instanceof Error ? error.message : String(error);
        if (status === 410) {
          this.#log.debug("Watch expired, listing again", {
            kind: stream.spec.kind,
            namespace: stream.namespace || "*",
          });
          stream.rv = undefined;
          continue;
        }
        if (status === 401 || status === 403) {
          this.#fallBack(message, { retry: true, stream, status });
          return;
        }
        stream.failures++;
        if (stream.failures >= this.#maxFailures) {
          this.#fallBack(message, { retry: true, stream, status: status || undefined });
          return;
        }
        this.#log.debug("Watch failed, retrying", {
          kind: stream.spec.kind,
          namespace: stream.namespace || "*",
          error: message,
          failures: stream.failures,
        });
        await sleep(Math.min(30_000, 250 * 2 ** stream.failures), signal);
      }
    }
  }

  async #request(
    stream: Stream,
    signal: AbortSignal,
    verb: "LIST" | "WATCH",
    query: URLSearchParams,
    accept: string,
    timeoutMs: number,
  ): Promise<Response> {
    const current = new AbortController();
    stream.current = current;
    const combined = AbortSignal.any([signal, current.signal, AbortSignal.timeout(timeoutMs)]);
    let response: Response;
    try {
      response = await this.#http!.fetch(`${stream.spec.path(stream.namespace)}?${query}`, {
        headers: { Accept: accept },
        signal: combined,
      });
    } catch (error) {
      this.#observe(verb, stream.spec.resource, "<error>");
      if (current.signal.aborted) throw current.signal.reason;
      throw error;
    }
    this.#observe(verb, stream.spec.resource, String(response.status));
    if (!response.ok) {
      const body = await response.text().catch(() => "");
      let message = body.slice(0, 500);
      try {
        message = JSON.parse(body).message ?? message;
      } catch { /* not a Status */ }
      throw new StatusError(
        response.status,
        `${verb.toLowerCase()} ${stream.spec.resource}: ${response.status} ${message}`,
      );
    }
    return response;
  }

  async #list(stream: Stream, signal: AbortSignal): Promise<void> {
    const seen = new Set<string>();
    let cont: string | undefined;
    let rv = "";
    do {
      const query = new URLSearchParams({ limit: String(this.#pageSize) });
      if (stream.spec.labelSelector) query.set("labelSelector", stream.spec.labelSelector);
      if (cont) query.set("continue", cont);
      const response = await this.#request(
        stream,
        signal,
        "LIST",
        query,
        stream.spec.listAccept,
        REQUEST_TIMEOUT_MS,
      );
      const page = await response.json() as {
        metadata?: { continue?: string; resourceVersion?: string };
        items?: Raw[];
      };
      if (signal.aborted) return;
      for (const item of page.items ?? []) {
        const obj = stream.spec.compact(item);
        const m = metaOf(obj);
        seen.add(`${m.namespace}/${m.name}`);
        this.#upsert(stream.spec.kind, obj);
      }
      cont = page.metadata?.continue || undefined;
      rv = page.metadata?.resourceVersion ?? rv;
    } while (cont);
    // Objects gone while we were not watching.
    for (const [key, obj] of this.#store(stream.spec.kind)) {
      if (seen.has(key)) continue;
      if (stream.namespace && metaOf(obj).namespace !== stream.namespace) continue;
      this.#remove(stream.spec.kind, obj);
    }
    stream.rv = rv;
    stream.lastList = Date.now();
    stream.failures = 0;
  }

  async #watch(stream: Stream, signal: AbortSignal): Promise<void> {
    const untilResync = Math.ceil((stream.lastList + this.#resyncMs - Date.now()) / 1000);
    const timeoutSeconds = Math.max(1, Math.min(this.#watchTimeoutSeconds, untilResync));
    const query = new URLSearchParams({
      watch: "1",
      allowWatchBookmarks: "true",
      resourceVersion: stream.rv ?? "",
      timeoutSeconds: String(timeoutSeconds),
    });
    if (stream.spec.labelSelector) query.set("labelSelector", stream.spec.labelSelector);
    // The server ends the watch after timeoutSeconds; a connection silent for 30 s longer is dead.
    const response = await this.#request(
      stream,
      signal,
      "WATCH",
      query,
      stream.spec.watchAccept,
      (timeoutSeconds + 30) * 1000,
    );
    stream.failures = 0;
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    const current = stream.current;
    let idle: ReturnType<typeof setTimeout> | undefined;
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(() => current?.abort(new Silent()), this.#watchIdleMs);
    };
    try {
      while (true) {
        let chunk: ReadableStreamReadResult<string>;
        armIdle();
        try {
          chunk = await reader.read();
        } catch (error) {
          if (stream.current?.signal.aborted) throw stream.current.signal.reason;
          throw error;
        }
        if (chunk.done) break;
        buffer += chunk.value;
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          if (line.trim()) this.#event(stream, JSON.parse(line));
        }
      }
    } finally {
      clearTimeout(idle);
      reader.releaseLock();
      await response.body?.cancel().catch(() => {});
    }
  }

  #event(stream: Stream, event: { type: string; object: Raw }): void {
    const object = event.object ?? {};
    this.#observeEvent(stream.spec.kind, event.type);
    if (event.type === "ERROR") {
      throw new StatusError(Number(object.code) || 500, object.message ?? "watch error event");
    }
    const rv = object.metadata?.resourceVersion;
    if (event.type === "ADDED" || event.type === "MODIFIED") {
      this.#upsert(stream.spec.kind, stream.spec.compact(object));
    } else if (event.type === "DELETED") {
      const obj = stream.spec.compact(object);
      const existing = this.#store(stream.spec.kind).get(
        `${metaOf(obj).namespace}/${metaOf(obj).name}`,
      );
      if (existing) this.#remove(stream.spec.kind, existing);
    }
    if (rv) stream.rv = rv;
  }

  // ---- stores and indexes ----

  #store(kind: KindName): Map<string, Stored> {
    switch (kind) {
      case "ScriptRun":
        return this.#runs;
      case "Job":
        return this.#jobs;
      case "ConfigMap":
        return this.#configMaps;
      case "Pod":
        return this.#pods;
    }
  }

  #upsert(kind: KindName, obj: Stored): void {
    const m = metaOf(obj);
    const key = `${m.namespace}/${m.name}`;
    const store = this.#store(kind);
    const old = store.get(key);
    if (old && metaOf(old).resourceVersion === m.resourceVersion) return;
    if (old) this.#unindex(kind, key, old);
    store.set(key, obj);
    this.#index(kind, key, obj);
    const finished = kind === "Job" && jobFinished(obj as Job) &&
      !(old && jobFinished(old as Job));
    this.#notify(kind, obj, { finished });
  }

  #remove(kind: KindName, obj: Stored): void {
    const m = metaOf(obj);
    const key = `${m.namespace}/${m.name}`;
    this.#store(kind).delete(key);
    this.#unindex(kind, key, obj);
    this.#notify(kind, obj, { finished: false });
  }

  #index(kind: KindName, key: string, obj: Stored): void {
    const ns = metaOf(obj).namespace;
    if (kind === "ScriptRun") {
      const run = obj as ScriptRun;
      let byName = this.#runsByNs.get(ns);
      if (!byName) this.#runsByNs.set(ns, byName = new Map());
      byName.set(run.metadata.name, run);
      if (run.metadata.uid) this.#runKeyByUid.set(runKey(ns, run.metadata.uid), key);
    } else if (kind === "Job" || kind === "ConfigMap") {
      const child = obj as Job | ConfigMap;
      const uid = controllerUid(child) ?? "";
      let names = this.#namesByNs.get(ns);
      if (!names) this.#namesByNs.set(ns, names = { configMaps: new Map(), jobs: new Map() });
      (kind === "Job" ? names.jobs : names.configMaps).set(child.metadata.name, uid);
      if (uid) {
        const owner = runKey(ns, uid);
        let c = this.#childrenByUid.get(owner);
        if (!c) this.#childrenByUid.set(owner, c = { configMaps: new Set(), jobs: new Set() });
        (kind === "Job" ? c.jobs : c.configMaps).add(key);
      }
    } else {
      const pod = obj as WatchedPod;
      const owner = runKey(ns, pod.runUid);
      let keys = this.#podsByRunUid.get(owner);
      if (!keys) this.#podsByRunUid.set(owner, keys = new Set());
      keys.add(key);
    }
  }

  #unindex(kind: KindName, key: string, obj: Stored): void {
    const ns = metaOf(obj).namespace;
    if (kind === "ScriptRun") {
      const run = obj as ScriptRun;
      const byName = this.#runsByNs.get(ns);
      byName?.delete(run.metadata.name);
      if (byName?.size === 0) this.#runsByNs.delete(ns);
      const byUid = runKey(ns, run.metadata.uid ?? "");
      if (run.metadata.uid && this.#runKeyByUid.get(byUid) === key) this.#runKeyByUid.delete(byUid);
    } else if (kind === "Job" || kind === "ConfigMap") {
      const child = obj as Job | ConfigMap;
      const uid = controllerUid(child);
      const owner = runKey(ns, uid ?? "");
      const names = this.#namesByNs.get(ns);
      if (names) {
        (kind === "Job" ? names.jobs : names.configMaps).delete(child.metadata.name);
        if (names.jobs.size === 0 && names.configMaps.size === 0) this.#namesByNs.delete(ns);
      }
      const c = uid ? this.#childrenByUid.get(owner) : undefined;
      if (c) {
        (kind === "Job" ? c.jobs : c.configMaps).delete(key);
        if (c.jobs.size === 0 && c.configMaps.size === 0) this.#childrenByUid.delete(owner);
      }
    } else {
      const pod = obj as WatchedPod;
      const owner = runKey(ns, pod.runUid);
      const keys = this.#podsByRunUid.get(owner);
      keys?.delete(key);
      if (keys?.size === 0) this.#podsByRunUid.delete(owner);
    }
  }

  /** The ScriptRun a change of `obj` concerns, if known. */
  #ownerOf(kind: KindName, obj: Stored): ViewKey | undefined {
    if (kind === "ScriptRun") {
      const m = metaOf(obj);
      return { namespace: m.namespace, name: m.name };
    }
    if (kind === "Pod") {
      const pod = obj as WatchedPod;
      const key = this.#runKeyByUid.get(runKey(pod.namespace, pod.runUid));
      if (key) {
        const run = this.#runs.get(key)!;
        return { namespace: run.metadata.namespace ?? "", name: run.metadata.name };
      }
      return undefined;
    }
    const child = obj as Job | ConfigMap;
    const name = controllerRef(child)?.name ?? child.metadata.labels?.[LABELS.scriptRun];
    return name ? { namespace: child.metadata.namespace ?? "", name } : undefined;
  }

  #notify(kind: KindName, obj: Stored, change: ViewChange): void {
    if (this.#listeners.length === 0) return;
    const key = this.#ownerOf(kind, obj);
    if (!key) return;
    for (const fn of this.#listeners) {
      try {
        fn(key, change);
      } catch (error) {
        this.#log.error("Change listener failed", { ...key, error: (error as Error).message });
      }
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
