/**
 * One stream of the watched view: one kind in one namespace (or all namespaces), LISTed in pages,
 * then WATCHed from the list's resourceVersion with bookmarks, resumed from the last
 * resourceVersion seen when a watch drops, LISTed again on 410 Gone and every `resyncMs`. It is
 * its own module so that this state machine can be read without the set of streams around it:
 * the view (view.ts) decides which namespaces are served, when the view is ready, and probes the
 * server; a stream only reaches it through its {@linkcode StreamContext}.
 *
 * Transport: Deno's `fetch` through `KubeHttp` (see there), not client-node's `Watch`,
 * `ListWatch` or `makeInformer`: client-node 2.0.1's `Watch` runs undici's fetch on Node streams
 * with a new undici Agent (new TLS connection) per request, and `ListWatch` LISTs through the
 * generated API classes, which turn every object into model class instances with `Date`s and
 * cannot ask for `PartialObjectMetadata` (so every script body would be downloaded and held), and
 * neither pages its LIST nor exposes the bookmarks' resourceVersion to resume from. The watch
 * protocol is small (newline-delimited JSON events), so it is done here.
 *
 * A stream retries forever, with client-go's reflector rules: exponential backoff with jitter
 * (0.8 s doubling to 30 s), Retry-After honoured, a watch that ends within a second without an
 * event counted as a failure, 410 Gone answered by a re-LIST after the backoff. A failure never
 * clears what the stream wrote; the log says so once per run of failures (and once when it
 * recovers), and a 401/403 is logged again at most once a minute while it lasts.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Backoff } from "../api/backoff.ts";
import type { RequestObserver } from "../api/kube.ts";
import { type KindSpec, metaOf, type Raw } from "./kinds.ts";
import type { ViewStore } from "./store.ts";

/** Sends one request to the API server: `path` with its query, `init` as for `fetch`. */
export type ViewTransport = (path: string, init: RequestInit) => Promise<Response>;

/** How every stream of a view lists, watches, retries and logs (the view's options). */
export interface StreamSettings {
  /** Retry delays of every stream, keyed "kind/namespace". */
  backoff: Backoff;
  /** Where the streams log. */
  log: Logger;
  /** See `WatchedViewOptions.observe`. */
  observe: RequestObserver;
  /** See `WatchedViewOptions.observeEvent`. */
  observeEvent: (kind: string, type: string) => void;
  /** Items per LIST page. */
  pageSize: number;
  /** Re-LIST this often. */
  resyncMs: number;
  /** Server-side watch timeout (capped by the time to the next resync). */
  watchTimeoutSeconds: number;
  /** A watch silent this long is opened again. */
  watchIdleMs: number;
  /** A LIST page's whole time, and a watch's first byte. */
  listTimeoutMs: number;
}

/** What the streams of one view share, and how a stream tells its view what happened. */
export interface StreamContext extends StreamSettings {
  /** Sends the stream's requests. */
  fetch: ViewTransport;
  /** Where listed and watched objects are written. */
  store: ViewStore;
  /** Aborted when the view stops: every stream ends. */
  signal: AbortSignal;
  /** A LIST of `stream` completed. */
  listed(stream: Stream): void;
  /** A LIST or watch of `stream` failed (so its first LIST has ended). */
  tried(stream: Stream): void;
  /** The API server answered a request of some stream. */
  answered(): void;
  /** `/readyz` is asked until the server answers (a stream waits after getting no answer). */
  probe(signal: AbortSignal): Promise<void>;
  /** What an interrupted stream waits for before it resumes (see `interruptWatches()`). */
  hold(): Promise<void> | undefined;
  /** Where an interrupted stream resumes from, if not its last resourceVersion. */
  resumeFrom(): string | undefined;
}

/**
 * Retries of one stream, as client-go's reflector: 0.8 s doubling, jittered by 0.5x-1.5x
 * (`Backoff`), so no wait is longer than 30 s.
 */
export const STREAM_BACKOFF = { baseMs: 800, maxMs: 20_000 };
/** A watch that ends sooner than this without an event counts as a failure (as in client-go). */
const SHORT_WATCH_MS = 1_000;
/** A 401/403 of one stream is logged again at most this often while it lasts. */
const FORBIDDEN_LOG_MS = 60_000;

/** An HTTP status from the API server (response code, or a watch ERROR event's Status). */
class StatusError extends Error {
  constructor(readonly status: number, message: string, readonly retryAfterMs?: number) {
    super(message);
  }
}

/** Thrown into a watch by `interruptWatches()`. */
export class Interrupted extends Error {}

/** A watch that stayed silent longer than `watchIdleMs`. */
class Silent extends Error {}

/** LIST, then WATCH, of one kind in one namespace ("" for all), retried until the view stops. */
export class Stream {
  /** The kind this stream lists and watches. */
  readonly spec: KindSpec;
  /** Its namespace; "" for all namespaces. */
  readonly namespace: string;
  /** Where the next watch resumes; undefined: LIST first. */
  rv: string | undefined = undefined;
  /** Completed a LIST at least once (the view holds its objects). */
  synced = false;
  /** Its first LIST ended, listed or not (start() waits for this). */
  tried = false;
  /** When its last LIST completed (Date.now()). */
  lastList = 0;
  /** Since when its requests fail without a healthy watch in between (performance.now()). */
  failingSince?: number;
  /** The message of its last failure while failing. */
  lastError?: string;
  /** The last failure got no HTTP answer (connection refused, reset, timed out). */
  noAnswer = false;
  /** "Watch stream failing" was logged for the current run of failures. */
  reported = false;
  /** When a 401/403 of this stream was last logged (performance.now()). */
  forbiddenLoggedAt?: number;
  /** Aborts the current request of this stream (interruptWatches, idle timer). */
  current?: AbortController;
  /** Ends the stream's backoff wait early (the API server answered another request). */
  wake?: () => void;
  #ctx: StreamContext;

  /** A stream of `spec` in `namespace`; does no I/O until `run()`. */
  constructor(spec: KindSpec, namespace: string, ctx: StreamContext) {
    this.spec = spec;
    this.namespace = namespace;
    this.#ctx = ctx;
  }

  /** Lists and watches until the context's signal aborts, retrying every failure. */
  async run(): Promise<void> {
    const signal = this.#ctx.signal;
    const key = `${this.spec.kind}/${this.namespace}`;
    while (!signal.aborted) {
      try {
        if (this.rv === undefined || Date.now() - this.lastList >= this.#ctx.resyncMs) {
          await this.#list(signal);
          if (signal.aborted) return;
          this.#ctx.listed(this);
        }
        const opened = performance.now();
        const events = await this.#watch(signal, () => this.#healthy(key));
        const ms = performance.now() - opened;
        if (events === 0 && ms < SHORT_WATCH_MS) {
          // The server accepted the watch and ended it at once: retrying at once would loop.
          throw new StatusError(
            0,
            `watch ${this.spec.resource}: ended after ${Math.round(ms)} ms`,
          );
        }
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof Silent) {
          this.#ctx.log.debug("Watch silent, watching again", {
            kind: this.spec.kind,
            namespace: this.namespace || "*",
            silentMs: this.#ctx.watchIdleMs,
          });
          continue;
        }
        if (error instanceof Interrupted) {
          const hold = this.#ctx.hold();
          if (hold) await hold;
          const resumeFrom = this.#ctx.resumeFrom();
          if (resumeFrom) this.rv = resumeFrom;
          continue;
        }
        this.#ctx.tried(this);
        const delay = this.#failed(key, error);
        await this.#wait(delay, signal);
      }
    }
  }

  /** A watch is open and healthy (an event, or open for a second): the stream works again. */
  #healthy(key: string): void {
    this.#ctx.backoff.success(key);
    if (this.failingSince === undefined) return;
    if (this.reported || this.forbiddenLoggedAt !== undefined) {
      this.#ctx.log.info("Watch stream recovered", {
        kind: this.spec.kind,
        namespace: this.namespace || "*",
        failedForMs: Math.round(performance.now() - this.failingSince),
      });
    }
    this.failingSince = undefined;
    this.lastError = undefined;
    this.noAnswer = false;
    this.reported = false;
    this.forbiddenLoggedAt = undefined;
  }

  /** Records a failure of this stream, logs it as due, and returns how long to wait (ms). */
  #failed(key: string, error: unknown): number {
    const status = error instanceof StatusError ? error.status : 0;
    const message = error instanceof Error ? error.message : String(error);
    const fields = {
      kind: this.spec.kind,
      namespace: this.namespace || "*",
      status: status || undefined,
      error: message,
    };
    const delay = this.#ctx.backoff.failure(key, Date.now(), {
      retryAfterMs: error instanceof StatusError ? error.retryAfterMs : undefined,
    });
    // No HTTP answer at all (a server that is down or restarting): the probe wakes the stream as
    // soon as the server answers again. A short watch did get an answer.
    this.noAnswer = status === 0 && !(error instanceof StatusError);
    if (status === 410) {
      // The resourceVersion is too old to resume from (compacted): list again, after the backoff.
      this.rv = undefined;
      this.#ctx.log.debug("Watch expired, listing again", { ...fields, retryInMs: delay });
      return delay;
    }
    const now = performance.now();
    this.failingSince ??= now;
    this.lastError = message;
    if (status === 401 || status === 403) {
      // Only this stream's namespace is affected; repeated while it lasts, at most once a minute.
      if (
        this.forbiddenLoggedAt === undefined || now - this.forbiddenLoggedAt >= FORBIDDEN_LOG_MS
      ) {
        this.forbiddenLoggedAt = now;
        this.#ctx.log.error("Not allowed to list or watch, retrying", {
          ...fields,
          retryInMs: delay,
          hint: `grant list and watch on ${this.spec.resource} in ${
            this.namespace ? `namespace ${this.namespace}` : "all namespaces"
          } (deploy/rbac.yaml)`,
        });
      }
      return delay;
    }
    if (!this.reported) {
      this.reported = true;
      this.#ctx.log.warn("Watch stream failing, retrying", { ...fields, retryInMs: delay });
    } else {
      this.#ctx.log.debug("Watch stream failing, retrying", { ...fields, retryInMs: delay });
    }
    return delay;
  }

  /** Waits `ms`, or less if the API server answers another request meanwhile. */
  async #wait(ms: number, signal: AbortSignal): Promise<void> {
    const woken = new Promise<void>((resolve) => this.wake = resolve);
    if (this.noAnswer) void this.#ctx.probe(signal);
    await Promise.race([sleep(ms, signal), woken]);
    this.wake = undefined;
  }

  async #request(
    signal: AbortSignal,
    verb: "LIST" | "WATCH",
    query: URLSearchParams,
    accept: string,
    totalMs: number,
  ): Promise<Response> {
    const current = new AbortController();
    this.current = current;
    // The first byte must come within the list timeout (a queued request is not a dead one);
    // a watch's body then has its own rules (see #watch).
    const answer = new AbortController();
    const answerTimer = setTimeout(
      () =>
        answer.abort(
          new DOMException(`no answer within ${this.#ctx.listTimeoutMs} ms`, "TimeoutError"),
        ),
      this.#ctx.listTimeoutMs,
    );
    const combined = AbortSignal.any([
      signal,
      current.signal,
      answer.signal,
      AbortSignal.timeout(totalMs),
    ]);
    const url = `${this.spec.path(this.namespace)}?${query}`;
    this.#ctx.log.debug("Sending request", { method: "GET", url });
    let response: Response;
    try {
      response = await this.#ctx.fetch(url, {
        headers: { Accept: accept },
        signal: combined,
      });
    } catch (error) {
      this.#ctx.observe(verb, this.spec.resource, "<error>");
      if (current.signal.aborted) throw current.signal.reason;
      throw error;
    } finally {
      clearTimeout(answerTimer);
    }
    this.#ctx.observe(verb, this.spec.resource, String(response.status));
    this.#ctx.answered();
    if (!response.ok) {
      const body = await response.text().catch(() => "");
      let message = body.slice(0, 500);
      try {
        message = JSON.parse(body).message ?? message;
      } catch { /* not a Status */ }
      const retryAfter = Number(response.headers.get("retry-after"));
      throw new StatusError(
        response.status,
        `${verb.toLowerCase()} ${this.spec.resource}: ${response.status} ${message}`,
        retryAfter > 0 ? retryAfter * 1000 : undefined,
      );
    }
    return response;
  }

  async #list(signal: AbortSignal): Promise<void> {
    const seen = new Set<string>();
    let cont: string | undefined;
    let rv = "";
    do {
      const query = new URLSearchParams({ limit: String(this.#ctx.pageSize) });
      if (this.spec.labelSelector) query.set("labelSelector", this.spec.labelSelector);
      if (cont) query.set("continue", cont);
      const response = await this.#request(
        signal,
        "LIST",
        query,
        this.spec.listAccept,
        this.#ctx.listTimeoutMs,
      );
      const page = await response.json() as {
        metadata?: { continue?: string; resourceVersion?: string };
        items?: Raw[];
      };
      if (signal.aborted) return;
      for (const item of page.items ?? []) {
        const obj = this.spec.compact(item);
        const m = metaOf(obj);
        seen.add(`${m.namespace}/${m.name}`);
        this.#ctx.store.upsert(this.spec.kind, obj);
      }
      cont = page.metadata?.continue || undefined;
      rv = page.metadata?.resourceVersion ?? rv;
    } while (cont);
    // Objects gone while we were not watching.
    for (const [key, obj] of this.#ctx.store.objects(this.spec.kind)) {
      if (seen.has(key)) continue;
      if (this.namespace && metaOf(obj).namespace !== this.namespace) continue;
      this.#ctx.store.remove(this.spec.kind, obj);
    }
    this.rv = rv;
  }

  /**
   * One watch from `this.rv` until the server ends it; returns the number of events. Calls
   * `healthy` at the first event or once the watch has been open for a second.
   */
  async #watch(signal: AbortSignal, healthy: () => void): Promise<number> {
    const untilResync = Math.ceil((this.lastList + this.#ctx.resyncMs - Date.now()) / 1000);
    const timeoutSeconds = Math.max(1, Math.min(this.#ctx.watchTimeoutSeconds, untilResync));
    const query = new URLSearchParams({
      watch: "1",
      allowWatchBookmarks: "true",
      resourceVersion: this.rv ?? "",
      timeoutSeconds: String(timeoutSeconds),
    });
    if (this.spec.labelSelector) query.set("labelSelector", this.spec.labelSelector);
    // The server ends the watch after timeoutSeconds; a connection silent for 30 s longer is dead.
    const response = await this.#request(
      signal,
      "WATCH",
      query,
      this.spec.watchAccept,
      (timeoutSeconds + 30) * 1000,
    );
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let events = 0;
    const current = this.current;
    let idle: ReturnType<typeof setTimeout> | undefined;
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(() => current?.abort(new Silent()), this.#ctx.watchIdleMs);
    };
    const open = setTimeout(healthy, Math.min(SHORT_WATCH_MS, timeoutSeconds * 1000));
    try {
      while (true) {
        let chunk: ReadableStreamReadResult<string>;
        armIdle();
        try {
          chunk = await reader.read();
        } catch (error) {
          if (this.current?.signal.aborted) throw this.current.signal.reason;
          throw error;
        }
        if (chunk.done) break;
        buffer += chunk.value;
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          if (!line.trim()) continue;
          this.#event(JSON.parse(line));
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

  #event(event: { type: string; object: Raw }): void {
    const object = event.object ?? {};
    this.#ctx.observeEvent(this.spec.kind, event.type);
    if (event.type === "ERROR") {
      const retryAfterSeconds = Number(object.details?.retryAfterSeconds);
      throw new StatusError(
        Number(object.code) || 500,
        `watch ${this.spec.resource}: ${object.message ?? "error event"}`,
        retryAfterSeconds > 0 ? retryAfterSeconds * 1000 : undefined,
      );
    }
    const rv = object.metadata?.resourceVersion;
    if (event.type === "ADDED" || event.type === "MODIFIED") {
      this.#ctx.store.upsert(this.spec.kind, this.spec.compact(object));
    } else if (event.type === "DELETED") {
      const obj = this.spec.compact(object);
      const existing = this.#ctx.store.objects(this.spec.kind).get(
        `${metaOf(obj).namespace}/${metaOf(obj).name}`,
      );
      if (existing) this.#ctx.store.remove(this.spec.kind, existing);
    }
    if (rv) this.rv = rv;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
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
