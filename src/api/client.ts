/**
 * How a client-node client reaches the API server: timeouts and why each is as long as it is, the
 * transport (client-node's own, or one keep-alive pool per KubeConfig over Deno's fetch), the
 * write gate checked right before a request is handed to the network, and each request's outcome
 * (status codes, reachability) for metrics and /readyz. The Kube and Lease clients (kube.ts,
 * lease.ts) share it, so both get the same limits, gate and accounting.
 * @module
 */
import {
  createConfiguration,
  type HttpLibrary,
  IsomorphicFetchHttpLibrary,
  type KubeConfig,
  Observable,
  type RequestContext,
  type ResponseContext,
  ServerConfiguration,
} from "@kubernetes/client-node";
import { AsyncLocalStorage } from "node:async_hooks";
import type { Logger } from "@logtape/logtape";
import { OPERATOR_VERSION } from "../version.ts";
import { KubeHttp, KubeHttpLibrary, type SendHook, unsupportedReason } from "./kube_http.ts";
import { classify, KubeError } from "./errors.ts";
import { MANAGER } from "../types.ts";

/** Called after every request: verb (GET, LIST, POST…), resource, HTTP code ("<error>" when none). */
export type RequestObserver = (verb: string, resource: string, code: string) => void;

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
export function sharedKubeHttp(kc: KubeConfig): KubeHttp {
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
