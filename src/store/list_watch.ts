/**
 * What one stream of the watched view says to the API server: a LIST in pages, then a WATCH read
 * as newline-delimited JSON events, with the timeouts that tell a slow server from a dead
 * connection. The objects go into the store as they arrive. Whether and when to list, watch or
 * retry is the stream's (`stream.ts`); this module only turns requests into objects and errors.
 *
 * Transport: Deno's `fetch` through `KubeHttp` (see there), not client-node's `Watch`,
 * `ListWatch` or `makeInformer`: client-node 2.0.1's `Watch` runs undici's fetch on Node streams
 * with a new undici Agent (new TLS connection) per request, and `ListWatch` LISTs through the
 * generated API classes, which turn every object into model class instances with `Date`s and
 * cannot ask for `PartialObjectMetadata` (so every script body would be downloaded and held), and
 * neither pages its LIST nor exposes the bookmarks' resourceVersion to resume from. The watch
 * protocol is small (newline-delimited JSON events), so it is done here.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { RequestObserver } from "../api/client.ts";
import { type KindSpec, metaOf, type Raw } from "./kinds.ts";
import type { ViewStore } from "./store.ts";

/** Sends one request to the API server: `path` with its query, `init` as for `fetch`. */
export type ViewTransport = (path: string, init: RequestInit) => Promise<Response>;

/** How the streams of a view list and watch (the view's options). */
export interface ListWatchSettings {
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

/** What {@linkcode listStream} and {@linkcode watchStream} send through and write into. */
export interface ListWatchContext extends ListWatchSettings {
  /** Sends the stream's requests. */
  fetch: ViewTransport;
  /** Where listed and watched objects are written. */
  store: ViewStore;
  /** The API server answered a request of some stream. */
  answered(): void;
}

/** What of a stream a LIST or WATCH reads and moves on (see `Stream`). */
export interface Cursor {
  /** The kind listed and watched. */
  readonly spec: KindSpec;
  /** Its namespace; "" for all namespaces. */
  readonly namespace: string;
  /** Where the next watch resumes; a LIST sets it. */
  rv: string | undefined;
  /** When its last LIST completed (Date.now()); the watch timeout ends by the next resync. */
  lastList: number;
  /** Aborts the current request (interruptWatches, idle timer); each request sets it. */
  current?: AbortController;
}

/** A watch that ends sooner than this without an event counts as a failure (as in client-go). */
export const SHORT_WATCH_MS = 1_000;

/** An HTTP status from the API server (response code, or a watch ERROR event's Status). */
export class StatusError extends Error {
  /** `status`: the HTTP code (0: none); `retryAfterMs`: the server's Retry-After, if any. */
  constructor(readonly status: number, message: string, readonly retryAfterMs?: number) {
    super(message);
  }
}

/** A watch that stayed silent longer than `watchIdleMs`. */
export class Silent extends Error {}

/** One LIST page or WATCH of `stream`; an answer that is not 2xx is thrown as a StatusError. */
async function request(
  stream: Cursor,
  ctx: ListWatchContext,
  signal: AbortSignal,
  verb: "LIST" | "WATCH",
  query: URLSearchParams,
  accept: string,
  totalMs: number,
): Promise<Response> {
  const current = new AbortController();
  stream.current = current;
  // The first byte must come within the list timeout (a queued request is not a dead one);
  // a watch's body then has its own rules (see watchStream).
  const answer = new AbortController();
  const answerTimer = setTimeout(
    () =>
      answer.abort(
        new DOMException(`no answer within ${ctx.listTimeoutMs} ms`, "TimeoutError"),
      ),
    ctx.listTimeoutMs,
  );
  const combined = AbortSignal.any([
    signal,
    current.signal,
    answer.signal,
    AbortSignal.timeout(totalMs),
  ]);
  const url = `${stream.spec.path(stream.namespace)}?${query}`;
  ctx.log.debug("Sending request", { method: "GET", url });
  let response: Response;
  try {
    response = await ctx.fetch(url, {
      headers: { Accept: accept },
      signal: combined,
    });
  } catch (error) {
    ctx.observe(verb, stream.spec.resource, "<error>");
    if (current.signal.aborted) throw current.signal.reason;
    throw error;
  } finally {
    clearTimeout(answerTimer);
  }
  ctx.observe(verb, stream.spec.resource, String(response.status));
  ctx.answered();
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

/** LISTs every page into the store, removes what is gone, and moves `stream.rv` to the list. */
export async function listStream(
  stream: Cursor,
  ctx: ListWatchContext,
  signal: AbortSignal,
): Promise<void> {
  const seen = new Set<string>();
  let cont: string | undefined;
  let rv = "";
  do {
    const query = new URLSearchParams({ limit: String(ctx.pageSize) });
    if (stream.spec.labelSelector) query.set("labelSelector", stream.spec.labelSelector);
    if (cont) query.set("continue", cont);
    const response = await request(
      stream,
      ctx,
      signal,
      "LIST",
      query,
      stream.spec.listAccept,
      ctx.listTimeoutMs,
    );
    const page = await response.json() as {
      metadata?: { continue?: string; resourceVersion?: string };
      items?: Raw[];
    };
    if (signal.aborted) return;
    const held = ctx.store.objects(stream.spec.kind);
    for (const item of page.items ?? []) {
      const key = `${item.metadata?.namespace ?? ""}/${item.metadata?.name}`;
      seen.add(key);
      // Unchanged since the last LIST or event (a re-LIST of a quiet cluster is all such): the
      // object is not compacted again only to be dropped.
      const old = held.get(key);
      if (old && metaOf(old).resourceVersion === item.metadata?.resourceVersion) continue;
      ctx.store.upsert(stream.spec.kind, stream.spec.compact(item));
    }
    cont = page.metadata?.continue || undefined;
    rv = page.metadata?.resourceVersion ?? rv;
  } while (cont);
  // Objects gone while we were not watching.
  for (const [key, obj] of ctx.store.objects(stream.spec.kind)) {
    if (seen.has(key)) continue;
    if (stream.namespace && metaOf(obj).namespace !== stream.namespace) continue;
    ctx.store.remove(stream.spec.kind, obj);
  }
  stream.rv = rv;
}

/**
 * One watch from `stream.rv` until the server ends it; returns the number of events. Calls
 * `healthy` at the first event or once the watch has been open for a second.
 */
export async function watchStream(
  stream: Cursor,
  ctx: ListWatchContext,
  signal: AbortSignal,
  healthy: () => void,
): Promise<number> {
  const untilResync = Math.ceil((stream.lastList + ctx.resyncMs - Date.now()) / 1000);
  const timeoutSeconds = Math.max(1, Math.min(ctx.watchTimeoutSeconds, untilResync));
  const query = new URLSearchParams({
    watch: "1",
    allowWatchBookmarks: "true",
    resourceVersion: stream.rv ?? "",
    timeoutSeconds: String(timeoutSeconds),
  });
  if (stream.spec.labelSelector) query.set("labelSelector", stream.spec.labelSelector);
  // The server ends the watch after timeoutSeconds; a connection silent for 30 s longer is dead.
  const response = await request(
    stream,
    ctx,
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
    idle = setTimeout(() => current?.abort(new Silent()), ctx.watchIdleMs);
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
        applyEvent(stream, ctx, JSON.parse(line));
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

function applyEvent(
  stream: Cursor,
  ctx: ListWatchContext,
  event: { type: string; object: Raw },
): void {
  const object = event.object ?? {};
  ctx.observeEvent(stream.spec.kind, event.type);
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
    ctx.store.upsert(stream.spec.kind, stream.spec.compact(object));
  } else if (event.type === "DELETED") {
    const obj = stream.spec.compact(object);
    const existing = ctx.store.objects(stream.spec.kind).get(
      `${metaOf(obj).namespace}/${metaOf(obj).name}`,
    );
    if (existing) ctx.store.remove(stream.spec.kind, existing);
  }
  if (rv) stream.rv = rv;
}
