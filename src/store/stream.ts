/**
 * One stream of the watched view: one kind in one namespace (or all namespaces), LISTed in pages,
 * then WATCHed from the list's resourceVersion with bookmarks, resumed from the last
 * resourceVersion seen when a watch drops, LISTed again on 410 Gone and every `resyncMs`. It is
 * its own module so that this state machine can be read without the set of streams around it:
 * the view (view.ts) decides which namespaces are served, when the view is ready, and probes the
 * server; a stream only reaches it through its {@linkcode StreamContext}.
 *
 * A stream retries forever, with client-go's reflector rules: exponential backoff with jitter
 * (0.8 s doubling to 30 s), Retry-After honoured, a watch that ends within a second without an
 * event counted as a failure, 410 Gone answered by a re-LIST after the backoff. A failure never
 * clears what the stream wrote; the log says so once per run of failures (and once when it
 * recovers), and a 401/403 is logged again at most once a minute while it lasts.
 * @module
 */
import type { Backoff } from "../api/backoff.ts";
import type { KindSpec } from "./kinds.ts";
import {
  type Cursor,
  listStream,
  type ListWatchContext,
  type ListWatchSettings,
  SHORT_WATCH_MS,
  Silent,
  StatusError,
  watchStream,
} from "./list_watch.ts";

/** How every stream of a view lists, watches, retries and logs (the view's options). */
export interface StreamSettings extends ListWatchSettings {
  /** Retry delays of every stream, keyed "kind/namespace". */
  backoff: Backoff;
}

/** What the streams of one view share, and how a stream tells its view what happened. */
export interface StreamContext extends StreamSettings, ListWatchContext {
  /** Aborted when the view stops: every stream ends. */
  signal: AbortSignal;
  /** A LIST of `stream` completed. */
  listed(stream: Stream): void;
  /** A LIST or watch of `stream` failed (so its first LIST has ended). */
  tried(stream: Stream): void;
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
/** A 401/403 of one stream is logged again at most this often while it lasts. */
const FORBIDDEN_LOG_MS = 60_000;

/** Thrown into a watch by `interruptWatches()`. */
export class Interrupted extends Error {}

/** LIST, then WATCH, of one kind in one namespace ("" for all), retried until the view stops. */
export class Stream implements Cursor {
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
          await listStream(this, this.#ctx, signal);
          if (signal.aborted) return;
          this.#ctx.listed(this);
        }
        const opened = performance.now();
        const events = await watchStream(this, this.#ctx, signal, () => this.#healthy(key));
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
