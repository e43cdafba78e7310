/**
 * A watched view of the ScriptRuns, our Jobs, our ConfigMaps (metadata only) and our pods: what
 * client-go's informers do, built for memory. For every scope (namespace, or all namespaces) and
 * kind it LISTs in pages, then WATCHes from the list's resourceVersion with bookmarks, resumes a
 * dropped watch from the last resourceVersion seen, re-LISTs on 410 Gone and every `resyncMs`.
 * This module owns those streams and when a namespace is served; what is kept of each kind is
 * `kinds.ts`'s, and the objects, their indexes and the change listeners are `store.ts`'s, so the
 * reads the reconciles make do not depend on how the objects arrive.
 *
 * Transport: Deno's `fetch` through {@linkcode KubeHttp} (see there), not client-node's `Watch`,
 * `ListWatch` or `makeInformer`: client-node 2.0.1's `Watch` runs undici's fetch on Node streams
 * with a new undici Agent (new TLS connection) per request, and `ListWatch` LISTs through the
 * generated API classes, which turn every object into model class instances with `Date`s and
 * cannot ask for `PartialObjectMetadata` (so every script body would be downloaded and held), and
 * neither pages its LIST nor exposes the bookmarks' resourceVersion to resume from. The watch
 * protocol is small (newline-delimited JSON events), so it is done here.
 *
 * Every stream (one per kind and namespace) retries forever, with client-go's reflector rules:
 * exponential backoff with jitter (0.8 s doubling to 30 s), Retry-After honoured, a watch that ends
 * within a second without an event counted as a failure, 410 Gone answered by a re-LIST after the
 * backoff. A failure never clears the view: it keeps serving what it last knew, `failing()` says
 * which streams have been failing for how long, and the log says so once per stream (and once when
 * it recovers). A 401/403 is an error of that stream's namespace only, logged again at most once a
 * minute while it lasts. While a stream gets no answer at all, one `GET /readyz` a second finds
 * out when the server is back, and every such stream resumes then, not at the end of its backoff.
 * @module
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "@logtape/logtape";
import { OPERATOR_VERSION } from "../version.ts";
import { Backoff, type BackoffPolicy } from "../api/backoff.ts";
import { type RequestObserver, TIMEOUTS } from "../api/client.ts";
import { KubeHttp, unsupportedReason } from "../api/kube_http.ts";
import { type ConfigMap, type Job, MANAGER, type ScriptRun } from "../types.ts";
import { type KindName, KINDS, type KindSpec, metaOf, type Raw, type WatchedPod } from "./kinds.ts";
import { type ViewChange, type ViewKey, ViewStore } from "./store.ts";

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
  /** Items per LIST page (default 500). */
  pageSize?: number;
  /** Re-LIST everything this often as a safety net (default 10 minutes). */
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

/** Sends one request to the API server: `path` with its query, `init` as for `fetch`. */
export type ViewTransport = (path: string, init: RequestInit) => Promise<Response>;

/** An HTTP status from the API server (response code, or a watch ERROR event's Status). */
class StatusError extends Error {
  constructor(readonly status: number, message: string, readonly retryAfterMs?: number) {
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
  /** Where the next watch resumes; undefined: LIST first. */
  rv: string | undefined;
  /** Completed a LIST at least once (the view holds its objects). */
  synced: boolean;
  /** Its first LIST ended, listed or not (start() waits for this). */
  tried: boolean;
  lastList: number;
  /** Since when its requests fail without a healthy watch in between (performance.now()). */
  failingSince?: number;
  lastError?: string;
  /** The last failure got no HTTP answer (connection refused, reset, timed out). */
  noAnswer: boolean;
  /** "Watch stream failing" was logged for the current run of failures. */
  reported: boolean;
  /** When a 401/403 of this stream was last logged (performance.now()). */
  forbiddenLoggedAt?: number;
  /** Aborts the current request of this stream (interruptWatches, idle timer). */
  current?: AbortController;
  /** Ends the stream's backoff wait early (the API server answered another request). */
  wake?: () => void;
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
 * Retries of one stream, as client-go's reflector: 0.8 s doubling, jittered by 0.5x-1.5x
 * (`Backoff`), so no wait is longer than 30 s.
 */
const STREAM_BACKOFF = { baseMs: 800, maxMs: 20_000 };
/** A watch that ends sooner than this without an event counts as a failure (as in client-go). */
const SHORT_WATCH_MS = 1_000;
/** A 401/403 of one stream is logged again at most this often while it lasts. */
const FORBIDDEN_LOG_MS = 60_000;
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
  #log: Logger;
  #observe: RequestObserver;
  #observeEvent: (kind: string, type: string) => void;
  #pageSize: number;
  #resyncMs: number;
  #watchTimeoutSeconds: number;
  #watchIdleMs: number;
  #listTimeoutMs: number;
  #probeTimeoutMs: number;
  #backoff: Backoff;
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
    this.#log = options.log;
    this.#observe = options.observe ?? (() => {});
    this.#observeEvent = options.observeEvent ?? (() => {});
    this.#pageSize = options.pageSize ?? 500;
    this.#resyncMs = options.resyncMs ?? 10 * 60_000;
    this.#watchTimeoutSeconds = options.watchTimeoutSeconds ?? 300;
    this.#watchIdleMs = options.watchIdleMs ?? TIMEOUTS.watchIdleMs;
    this.#listTimeoutMs = options.listTimeoutMs ?? TIMEOUTS.requestMs;
    this.#probeTimeoutMs = options.probeTimeoutMs ?? TIMEOUTS.connectMs;
    this.#backoff = new Backoff(options.backoff ?? STREAM_BACKOFF, options.random);
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
    this.#streams = scopes.flatMap((namespace) =>
      KINDS.map((spec) => ({
        spec,
        namespace,
        rv: undefined,
        synced: false,
        tried: false,
        lastList: 0,
        noAnswer: false,
        reported: false,
      }))
    );
    this.#started = true;
    this.#done = Promise.all(this.#streams.map((s) => this.#run(s))).then(() => {});
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

  // ---- one stream: LIST, then WATCH, retried forever ----

  async #run(stream: Stream): Promise<void> {
    const signal = this.#abort.signal;
    const key = `${stream.spec.kind}/${stream.namespace}`;
    while (!signal.aborted) {
      try {
        if (stream.rv === undefined || Date.now() - stream.lastList >= this.#resyncMs) {
          await this.#list(stream, signal);
          if (signal.aborted) return;
          this.#listed(stream);
        }
        const opened = performance.now();
        const events = await this.#watch(stream, signal, () => this.#healthy(stream, key));
        const ms = performance.now() - opened;
        if (events === 0 && ms < SHORT_WATCH_MS) {
          // The server accepted the watch and ended it at once: retrying at once would loop.
          throw new StatusError(
            0,
            `watch ${stream.spec.resource}: ended after ${Math.round(ms)} ms`,
          );
        }
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
        this.#tried(stream);
        const delay = this.#failed(stream, key, error);
        await this.#wait(stream, delay, signal);
      }
    }
  }

  /** A watch is open and healthy (an event, or open for a second): the stream works again. */
  #healthy(stream: Stream, key: string): void {
    this.#backoff.success(key);
    if (stream.failingSince === undefined) return;
    if (stream.reported || stream.forbiddenLoggedAt !== undefined) {
      this.#log.info("Watch stream recovered", {
        kind: stream.spec.kind,
        namespace: stream.namespace || "*",
        failedForMs: Math.round(performance.now() - stream.failingSince),
      });
    }
    stream.failingSince = undefined;
    stream.lastError = undefined;
    stream.noAnswer = false;
    stream.reported = false;
    stream.forbiddenLoggedAt = undefined;
  }

  /** Records a failure of `stream`, logs it as due, and returns how long to wait (ms). */
  #failed(stream: Stream, key: string, error: unknown): number {
    const status = error instanceof StatusError ? error.status : 0;
    const message = error instanceof Error ? error.message : String(error);
    const fields = {
      kind: stream.spec.kind,
      namespace: stream.namespace || "*",
      status: status || undefined,
      error: message,
    };
    const delay = this.#backoff.failure(key, Date.now(), {
      retryAfterMs: error instanceof StatusError ? error.retryAfterMs : undefined,
    });
    // No HTTP answer at all (a server that is down or restarting): the probe wakes the stream as
    // soon as the server answers again. A short watch did get an answer.
    stream.noAnswer = status === 0 && !(error instanceof StatusError);
    if (status === 410) {
      // The resourceVersion is too old to resume from (compacted): list again, after the backoff.
      stream.rv = undefined;
      this.#log.debug("Watch expired, listing again", { ...fields, retryInMs: delay });
      return delay;
    }
    const now = performance.now();
    stream.failingSince ??= now;
    stream.lastError = message;
    if (status === 401 || status === 403) {
      // Only this stream's namespace is affected; repeated while it lasts, at most once a minute.
      if (
        stream.forbiddenLoggedAt === undefined || now - stream.forbiddenLoggedAt >= FORBIDDEN_LOG_MS
      ) {
        stream.forbiddenLoggedAt = now;
        this.#log.error("Not allowed to list or watch, retrying", {
          ...fields,
          retryInMs: delay,
          hint: `grant list and watch on ${stream.spec.resource} in ${
            stream.namespace ? `namespace ${stream.namespace}` : "all namespaces"
          } (deploy/rbac.yaml)`,
        });
      }
      return delay;
    }
    if (!stream.reported) {
      stream.reported = true;
      this.#log.warn("Watch stream failing, retrying", { ...fields, retryInMs: delay });
    } else {
      this.#log.debug("Watch stream failing, retrying", { ...fields, retryInMs: delay });
    }
    return delay;
  }

  /** Waits `ms`, or less if the API server answers another request meanwhile. */
  async #wait(stream: Stream, ms: number, signal: AbortSignal): Promise<void> {
    const woken = new Promise<void>((resolve) => stream.wake = resolve);
    if (stream.noAnswer) void this.#probe(signal);
    await Promise.race([sleep(ms, signal), woken]);
    stream.wake = undefined;
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
          this.#observe("GET", "readyz", String(response.status));
          this.#answered();
        } catch {
          this.#observe("GET", "readyz", "<error>");
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

  async #request(
    stream: Stream,
    signal: AbortSignal,
    verb: "LIST" | "WATCH",
    query: URLSearchParams,
    accept: string,
    totalMs: number,
  ): Promise<Response> {
    const current = new AbortController();
    stream.current = current;
    // The first byte must come within the list timeout (a queued request is not a dead one);
    // a watch's body then has its own rules (see #watch).
    const answer = new AbortController();
    const answerTimer = setTimeout(
      () =>
        answer.abort(
          new DOMException(`no answer within ${this.#listTimeoutMs} ms`, "TimeoutError"),
        ),
      this.#listTimeoutMs,
    );
    const combined = AbortSignal.any([
      signal,
      current.signal,
      answer.signal,
      AbortSignal.timeout(totalMs),
    ]);
    const url = `${stream.spec.path(stream.namespace)}?${query}`;
    this.#log.debug("Sending request", { method: "GET", url });
    let response: Response;
    try {
      response = await this.#fetch!(url, {
        headers: { Accept: accept },
        signal: combined,
      });
    } catch (error) {
      this.#observe(verb, stream.spec.resource, "<error>");
      if (current.signal.aborted) throw current.signal.reason;
      throw error;
    } finally {
      clearTimeout(answerTimer);
    }
    this.#observe(verb, stream.spec.resource, String(response.status));
    this.#answered();
    if (!response.ok) {
      const body = await response.text().catch(() => "");
      let message = body.slice(0, 500);
      try {
        message = JSON.parse(body).message ?? message;
      } catch { /* not a Status */ }
      const retryAfter = Number(response.headers.get("retry-after"));
      throw new StatusError(
        response.status,
        `${verb.toLowerCase()} ${stream.spec.resource}: ${response.status} ${message}`,
        retryAfter > 0 ? retryAfter * 1000 : undefined,
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
        this.#listTimeoutMs,
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
        this.#store.upsert(stream.spec.kind, obj);
      }
      cont = page.metadata?.continue || undefined;
      rv = page.metadata?.resourceVersion ?? rv;
    } while (cont);
    // Objects gone while we were not watching.
    for (const [key, obj] of this.#store.objects(stream.spec.kind)) {
      if (seen.has(key)) continue;
      if (stream.namespace && metaOf(obj).namespace !== stream.namespace) continue;
      this.#store.remove(stream.spec.kind, obj);
    }
    stream.rv = rv;
  }

  /**
   * One watch from `stream.rv` until the server ends it; returns the number of events. Calls
   * `healthy` at the first event or once the watch has been open for a second.
   */
  async #watch(stream: Stream, signal: AbortSignal, healthy: () => void): Promise<number> {
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
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let events = 0;
    const current = stream.current;
    let idle: ReturnType<typeof setTimeout> | undefined;
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(() => current?.abort(new Silent()), this.#watchIdleMs);
    };
    const open = setTimeout(healthy, Math.min(SHORT_WATCH_MS, timeoutSeconds * 1000));
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
          if (!line.trim()) continue;
          this.#event(stream, JSON.parse(line));
          if (events++ === 0) healthy();
        }
      }
    } finally {
      clearTimeout(idle);
      clearTimeout(open);
      reader.releaseLock();
      await response.body?.cancel().catch(() => {});
    }
    return events;
  }

  #event(stream: Stream, event: { type: string; object: Raw }): void {
    const object = event.object ?? {};
    this.#observeEvent(stream.spec.kind, event.type);
    if (event.type === "ERROR") {
      const retryAfterSeconds = Number(object.details?.retryAfterSeconds);
      throw new StatusError(
        Number(object.code) || 500,
        `watch ${stream.spec.resource}: ${object.message ?? "error event"}`,
        retryAfterSeconds > 0 ? retryAfterSeconds * 1000 : undefined,
      );
    }
    const rv = object.metadata?.resourceVersion;
    if (event.type === "ADDED" || event.type === "MODIFIED") {
      this.#store.upsert(stream.spec.kind, stream.spec.compact(object));
    } else if (event.type === "DELETED") {
      const obj = stream.spec.compact(object);
      const existing = this.#store.objects(stream.spec.kind).get(
        `${metaOf(obj).namespace}/${metaOf(obj).name}`,
      );
      if (existing) this.#store.remove(stream.spec.kind, existing);
    }
    if (rv) stream.rv = rv;
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
