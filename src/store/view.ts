/**
 * A watched view of the ScriptRuns, our Jobs, our ConfigMaps (metadata only) and our pods: what
 * client-go's informers do, built for memory. It runs one stream (`stream.ts`: LIST, then WATCH,
 * retried forever) for every scope (namespace, or all namespaces) and kind, and owns what the
 * streams have in common: when a namespace is served, when `start()` resolves, and the probe of a
 * server that does not answer. What is kept of each kind is `kinds.ts`'s, and the objects, their
 * indexes and the change listeners are `store.ts`'s, so the reads the reconciles make do not
 * depend on how the objects arrive.
 *
 * A failure never clears the view: it keeps serving what it last knew, and `failing()` says which
 * streams have been failing for how long. While a stream gets no answer at all, one `GET /readyz`
 * a second finds out when the server is back, and every such stream resumes then, not at the end
 * of its backoff.
 * @module
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "@logtape/logtape";
import { OPERATOR_VERSION } from "../version.ts";
import { Backoff, type BackoffPolicy } from "../api/backoff.ts";
import { type RequestObserver, TIMEOUTS } from "../api/client.ts";
import { KubeHttp, unsupportedReason } from "../api/kube_http.ts";
import { type ConfigMap, type Job, MANAGER, type ScriptRun } from "../types.ts";
import { type KindName, KINDS, type WatchedPod } from "./kinds.ts";
import { type ViewChange, type ViewKey, ViewStore } from "./store.ts";
import {
  Interrupted,
  sleep,
  Stream,
  STREAM_BACKOFF,
  type StreamContext,
  type StreamSettings,
} from "./stream.ts";
import type { ViewTransport } from "./list_watch.ts";

/** Options of {@linkcode WatchedView}. */
export interface WatchedViewOptions {
  /** Namespaces to watch; empty: all namespaces. */
  namespaces: string[];
  log: Logger;
  /**
   * Sees every request: ("LIST" | "WATCH" | "GET", resource, HTTP code or "<error>"); one per
   * page; "GET" is the probe of `/readyz` while the server does not answer.
   */
  observe?: RequestObserver;
  /** Sees every watch event: (kind, "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR"). */
  observeEvent?: (kind: string, type: string) => void;
  /** Items per LIST page (default {@linkcode PAGE_SIZE}). */
  pageSize?: number;
  /** Re-LIST everything this often as a safety net (default {@linkcode RESYNC_MS}). */
  resyncMs?: number;
  /** Server-side watch timeout (default 5 minutes, capped by the time to the next resync). */
  watchTimeoutSeconds?: number;
  /**
   * A watch that delivers nothing (not even a bookmark, which the API server sends about once a
   * minute) for this long is abandoned and opened again from the last resourceVersion (default
   * `TIMEOUTS.watchIdleMs`). Without it a connection that went silent would hold a stream until
   * its timeout.
   */
  watchIdleMs?: number;
  /** A LIST page's whole time, and a watch's first byte (default `TIMEOUTS.requestMs`). */
  listTimeoutMs?: number;
  /** The `/readyz` probe's time to first byte (default `TIMEOUTS.connectMs`). */
  probeTimeoutMs?: number;
  /** Retry backoff of each stream (default: 0.8 s doubling, jittered, at most 30 s). */
  backoff?: BackoffPolicy;
  /** Jitter source in [0, 1) (default Math.random). */
  random?: () => number;
  /** Sends the view's requests (default: Deno's fetch with the kubeconfig's credentials). */
  transport?: ViewTransport;
}

/** A stream failing for longer than `failingForMs` (see {@linkcode WatchedView.failing}). */
export interface FailingStream {
  kind: string;
  /** "*" for all namespaces. */
  namespace: string;
  error: string;
  failingForMs: number;
}

/**
 * How often every stream LISTs again: a safety net only. A watch resumed from its resourceVersion
 * misses nothing (or gets 410 and lists again), so this guards against what should not happen; at
 * 10,000 runs each re-LIST parses 40,000 objects, about 1.5 s of CPU, which every 10 minutes was a
 * third of the operator's CPU at rest.
 */
export const RESYNC_MS = 30 * 60_000;

/**
 * Items per LIST page. A page is parsed whole and its objects stay live until it is stored, so
 * with more items they outgrow V8's young generation and are collected only by full GCs: at
 * 10,000 runs a re-LIST in pages of 500 grew the heap by 48 MiB and took 1.4 s of CPU; in pages of
 * 100, by 15 MiB and 0.8 s (`bench/steady_cpu.ts`). client-go's 500 assumes a Go heap.
 */
export const PAGE_SIZE = 100;

/** While a stream waits after a failure without an answer, the server is probed this often. */
const PROBE_MS = 1_000;

/**
 * A LIST+WATCH view of ScriptRuns and their children. Its reads are its {@linkcode ViewStore}'s
 * (live, shared objects: see there), limited to the namespaces it serves.
 */
export class WatchedView {
  #kc: KubeConfig;
  #fetch: ViewTransport | undefined;
  #http: KubeHttp | undefined;
  #namespaces: string[];
  #settings: StreamSettings;
  #probeTimeoutMs: number;
  #streams: Stream[] = [];
  #abort = new AbortController();
  #done: Promise<void> = Promise.resolve();
  #started = false;
  #stopped = false;
  #startWaiters: (() => void)[] = [];
  #probing = false;
  #hold: Promise<void> | undefined;
  #resumeFrom: string | undefined;
  /** Scopes ("" for all namespaces) whose four streams have all listed: the view serves them. */
  #served = new Set<string>();
  /** What the streams have seen; the queries below read it. */
  #store: ViewStore;

  /** See {@linkcode WatchedViewOptions}. Does no I/O until `start()`. */
  constructor(kc: KubeConfig, options: WatchedViewOptions) {
    this.#kc = kc;
    this.#fetch = options.transport;
    this.#namespaces = options.namespaces;
    this.#settings = {
      log: options.log,
      observe: options.observe ?? (() => {}),
      observeEvent: options.observeEvent ?? (() => {}),
      pageSize: options.pageSize ?? PAGE_SIZE,
      resyncMs: options.resyncMs ?? RESYNC_MS,
      watchTimeoutSeconds: options.watchTimeoutSeconds ?? 300,
      watchIdleMs: options.watchIdleMs ?? TIMEOUTS.watchIdleMs,
      listTimeoutMs: options.listTimeoutMs ?? TIMEOUTS.requestMs,
      backoff: new Backoff(options.backoff ?? STREAM_BACKOFF, options.random),
    };
    this.#probeTimeoutMs = options.probeTimeoutMs ?? TIMEOUTS.connectMs;
    this.#store = new ViewStore(options.log);
  }

  /**
   * Starts listing and watching until `signal` aborts. Resolves once every stream's first LIST
   * has ended, listed or failed (a failed stream keeps retrying; see `scriptRuns()`). Rejects if
   * Deno's fetch cannot use the kubeconfig (see `unsupportedReason()`).
   */
  start(signal: AbortSignal): Promise<void> {
    if (!this.#fetch) {
      const reason = unsupportedReason(this.#kc);
      if (reason) {
        return Promise.reject(new Error(`Deno's fetch cannot use this kubeconfig: ${reason}`));
      }
      // HTTP/1.1 like the clients of client.ts: sequential requests (LIST pages) were several times
      // slower over Deno's HTTP/2 here (bench/http_transport.ts); each watch holds one connection.
      const http = new KubeHttp(this.#kc, {
        userAgent: `${MANAGER}/${OPERATOR_VERSION}`,
        http2: false,
      });
      this.#http = http;
      this.#fetch = (path, init) => http.fetch(path, init);
    }
    if (signal.aborted) return Promise.resolve();
    signal.addEventListener("abort", () => this.#stop(), { once: true });
    const started = new Promise<void>((resolve) => this.#startWaiters.push(resolve));
    const scopes = this.#namespaces.length > 0 ? this.#namespaces : [""];
    const context: StreamContext = {
      ...this.#settings,
      fetch: this.#fetch,
      store: this.#store,
      signal: this.#abort.signal,
      listed: (stream) => this.#listed(stream),
      tried: (stream) => this.#tried(stream),
      answered: () => this.#answered(),
      probe: (signal) => this.#probe(signal),
      hold: () => this.#hold,
      resumeFrom: () => this.#resumeFrom,
    };
    this.#streams = scopes.flatMap((namespace) =>
      KINDS.map((spec) => new Stream(spec, namespace, context))
    );
    this.#started = true;
    this.#done = Promise.all(this.#streams.map((s) => s.run())).then(() => {});
    return started;
  }

  /**
   * Whether the view serves reads: started and not stopped. It serves each namespace once its
   * streams have listed (see `scriptRuns()`); a stream that fails afterwards leaves its last known
   * objects in place while it retries.
   */
  synced(): boolean {
    return this.#started && !this.#stopped;
  }

  /**
   * Streams that have been failing for at least `failingForMs`, with their last error: the
   * view's objects of that kind and namespace may be that old.
   */
  failing(failingForMs: number): FailingStream[] {
    const now = performance.now();
    return this.#streams.filter((s) =>
      s.failingSince !== undefined && now - s.failingSince >= failingForMs
    ).map((s) => ({
      kind: s.spec.kind,
      namespace: s.namespace || "*",
      error: s.lastError ?? "",
      failingForMs: Math.round(now - s.failingSince!),
    }));
  }

  /**
   * The ScriptRuns in `namespace`, or in every watched namespace. A namespace whose ScriptRuns,
   * Jobs, ConfigMaps and pods have not all been listed yet shows none: planning from a partial
   * view (runs without their Jobs) would recreate what exists.
   */
  scriptRuns(namespace?: string): ScriptRun[] {
    if (namespace !== undefined) {
      if (!this.#serves(namespace)) return [];
      return this.#store.scriptRuns(namespace);
    }
    const all = this.#store.scriptRuns();
    const every = this.#namespaces.length > 0 && this.#served.size === this.#namespaces.length;
    if (every || this.#served.has("")) return all;
    return all.filter((r) => this.#serves(r.metadata.namespace ?? ""));
  }

  /** One ScriptRun, if the view holds it (and serves its namespace, see `scriptRuns()`). */
  scriptRun(namespace: string, name: string): ScriptRun | undefined {
    return this.#serves(namespace) ? this.#store.scriptRun(namespace, name) : undefined;
  }

  /** See {@linkcode ViewStore.version}. */
  version(namespace: string, runUid: string): string {
    return this.#store.version(namespace, runUid);
  }

  /** See {@linkcode ViewStore.children}. */
  children(
    namespace: string,
    runUid: string,
  ): { configMaps: ConfigMap[]; jobs: Job[]; pods: WatchedPod[] } {
    return this.#store.children(namespace, runUid);
  }

  /** See {@linkcode ViewStore.names}. */
  names(
    namespace: string,
  ): { configMaps: ReadonlyMap<string, string>; jobs: ReadonlyMap<string, string> } {
    return this.#store.names(namespace);
  }

  /** See {@linkcode ViewStore.onChange}. */
  onChange(fn: (key: ViewKey, change: ViewChange) => void): void {
    this.#store.onChange(fn);
  }

  /** See {@linkcode ViewStore.counts}. */
  counts(): Record<KindName, number> {
    return this.#store.counts();
  }

  /**
   * For tests: aborts every open request as a dropped connection would. The streams wait for
   * `hold` (if given) and then resume from their last resourceVersion, or from `resumeFrom` (an
   * old resourceVersion makes the server answer 410 Gone).
   */
  interruptWatches(options: { hold?: Promise<void>; resumeFrom?: string } = {}): void {
    this.#hold = options.hold;
    this.#resumeFrom = options.resumeFrom;
    for (const s of this.#streams) s.current?.abort(new Interrupted("test"));
  }

  // ---- lifecycle ----

  #stop(): void {
    this.#stopped = true;
    this.#abort.abort();
    void this.#done.finally(() => this.#http?.close());
    this.#resolveStart();
  }

  #resolveStart(): void {
    const waiters = this.#startWaiters;
    this.#startWaiters = [];
    for (const w of waiters) w();
  }

  /** Whether the scope holding `namespace` has listed every kind. */
  #serves(namespace: string): boolean {
    return this.#served.has("") || this.#served.has(namespace);
  }

  /** The stream's first LIST ended (listed or failed). */
  #tried(stream: Stream): void {
    if (stream.tried) return;
    stream.tried = true;
    if (this.#streams.every((s) => s.tried)) this.#resolveStart();
  }

  #listed(stream: Stream): void {
    stream.lastList = Date.now();
    if (!stream.synced) {
      stream.synced = true;
      const scope = stream.namespace;
      if (this.#streams.every((s) => s.namespace !== scope || s.synced)) {
        this.#served.add(scope);
        // Its runs were not served until now, whatever woke them: wake each once more.
        this.#store.notifyRuns(scope);
      }
    }
    this.#tried(stream);
  }

  /**
   * While a stream waits after a failure without an answer, asks the server's `/readyz` (open to
   * every identity) once a second and wakes the waiting streams when it answers. A refused or
   * silent port costs the server nothing; without it a stream would resume up to its whole
   * backoff (30 s) after the server is back.
   */
  async #probe(signal: AbortSignal): Promise<void> {
    if (this.#probing) return;
    this.#probing = true;
    try {
      while (!signal.aborted && this.#streams.some((s) => s.wake && s.noAnswer)) {
        await sleep(PROBE_MS, signal);
        if (signal.aborted) return;
        try {
          const response = await this.#fetch!("/readyz", {
            signal: AbortSignal.any([signal, AbortSignal.timeout(this.#probeTimeoutMs)]),
          });
          await response.body?.cancel().catch(() => {});
          this.#settings.observe("GET", "readyz", String(response.status));
          this.#answered();
        } catch {
          this.#settings.observe("GET", "readyz", "<error>");
        }
      }
    } finally {
      this.#probing = false;
    }
  }

  /** The API server answered: streams that wait after getting no answer retry now. */
  #answered(): void {
    for (const s of this.#streams) if (s.noAnswer) s.wake?.();
  }
}
