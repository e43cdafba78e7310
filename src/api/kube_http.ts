/**
 * HTTP requests to the API server over Deno's own `fetch`, authenticated from a client-node
 * `KubeConfig` (client certificates, bearer tokens, token files, exec and auth-provider plugins:
 * whatever `kc.applyToHTTPSOptions()` yields).
 *
 * Why not client-node's transport: under Deno, client-node 2.0.1 sends every request through
 * undici's `fetch` on Node's `net`/`tls` compatibility layer, and `applySecurityAuthentication()`
 * builds a new undici `Agent` for every request, so no connection is ever reused (one TLS
 * handshake per request, HTTP/1.1 only). One `Deno.HttpClient` keeps a pool of keep-alive
 * connections and speaks HTTP/2 (ALPN) to the API server, so all requests and watches share one
 * connection.
 * @module
 */
import {
  type HttpLibrary,
  type KubeConfig,
  Observable,
  type RequestContext,
  ResponseContext,
} from "@kubernetes/client-node";
import { Buffer } from "node:buffer";

/** What `kc.applyToHTTPSOptions()` fills in (a subset of Node's https.RequestOptions). */
interface HttpsOptions {
  ca?: Uint8Array | string;
  cert?: Uint8Array | string;
  key?: Uint8Array | string;
  pfx?: unknown;
  passphrase?: string;
  rejectUnauthorized?: boolean;
  servername?: string;
  auth?: string;
  headers?: Record<string, string | string[] | number | undefined>;
}

const decoder = new TextDecoder();

function text(value: Uint8Array | string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return typeof value === "string" ? value : decoder.decode(value);
}

/**
 * Why Deno's fetch cannot talk to this kubeconfig's cluster, or undefined if it can.
 * Deno's `HttpClient` cannot skip TLS verification, override the TLS server name, load PKCS#12
 * (`pfx`) or go through the kubeconfig's `proxy-url`; callers fall back to client-node then.
 */
export function unsupportedReason(kc: KubeConfig): string | undefined {
  const cluster = kc.getCurrentCluster();
  if (!cluster) return "the kubeconfig has no current cluster";
  if (cluster.skipTLSVerify) return "insecure-skip-tls-verify is set";
  if (cluster.tlsServerName) return "tls-server-name is set";
  if (cluster.proxyUrl) return "proxy-url is set";
  if (!/^https?:\/\//.test(cluster.server)) return `server ${cluster.server} is not an http(s) URL`;
  return undefined;
}

/**
 * Called synchronously right before a request is handed to `fetch`, after every await of its
 * preparation (credentials, exec plugins, the client's middleware), so nothing the process does
 * afterwards can delay the request past the check. Throws to refuse the request; may return a
 * function that is called right after the request was handed over (to log it).
 */
export type SendHook = (method: string, url: string) => (() => void) | void;

/** Options of {@linkcode KubeHttp}. */
export interface KubeHttpOptions {
  /** `User-Agent` header. */
  userAgent?: string;
  /** Allow HTTP/2 (default true). */
  http2?: boolean;
}

/** Requests to the API server of a kubeconfig's current context, over one pooled `HttpClient`. */
export class KubeHttp {
  #kc: KubeConfig;
  #server: string;
  #userAgent: string | undefined;
  #http2: boolean;
  #client: Deno.HttpClient | undefined;
  #clientKey = "";
  #old: Deno.HttpClient[] = [];

  /** Throws if {@linkcode unsupportedReason} names a reason. */
  constructor(kc: KubeConfig, options: KubeHttpOptions = {}) {
    const reason = unsupportedReason(kc);
    if (reason) throw new Error(`cannot use Deno's fetch for this kubeconfig: ${reason}`);
    this.#kc = kc;
    this.#server = kc.getCurrentCluster()!.server.replace(/\/+$/, "");
    this.#userAgent = options.userAgent;
    this.#http2 = options.http2 ?? true;
  }

  /** The API server's base URL. */
  get server(): string {
    return this.#server;
  }

  /**
   * `fetch(server + path, init)` with the kubeconfig's TLS material and auth headers (asked
   * for on every request, so rotating tokens and exec plugins keep working).
   */
  fetch(path: string, init: RequestInit = {}): Promise<Response> {
    return this.fetchUrl(`${this.#server}${path}`, init);
  }

  /** Like `fetch()`, with a full URL (on this kubeconfig's server); `onSend` as in {@linkcode SendHook}. */
  async fetchUrl(url: string, init: RequestInit = {}, onSend?: SendHook): Promise<Response> {
    const opts: HttpsOptions = {};
    // deno-lint-ignore no-explicit-any -- client-node types this as Node's https.RequestOptions
    await this.#kc.applyToHTTPSOptions(opts as any);
    if (opts.pfx !== undefined) {
      throw new Error("cannot use Deno's fetch for this kubeconfig: PKCS#12 (pfx) credentials");
    }
    const headers = new Headers(init.headers);
    for (const [k, v] of Object.entries(opts.headers ?? {})) {
      if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(", ") : String(v));
    }
    if (opts.auth) headers.set("Authorization", `Basic ${btoa(opts.auth)}`);
    if (this.#userAgent) headers.set("User-Agent", this.#userAgent);
    const client = this.#clientFor(opts);
    // No await between the hook and fetch(): the check and the hand-over are one synchronous step.
    const sent = onSend?.(init.method ?? "GET", url);
    const pending = fetch(url, { ...init, headers, client });
    sent?.();
    return await pending;
  }

  /** Closes the connection pool (requests in flight fail). */
  close(): void {
    for (const c of [...this.#old, ...this.#client ? [this.#client] : []]) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
    this.#old = [];
    this.#client = undefined;
  }

  #clientFor(opts: HttpsOptions): Deno.HttpClient {
    const ca = text(opts.ca);
    const cert = text(opts.cert);
    const key = text(opts.key);
    const cacheKey = `${ca}\u0000${cert}\u0000${key}`;
    if (this.#client && cacheKey === this.#clientKey) return this.#client;
    // New credentials (e.g. an exec plugin issued a new client certificate): new pool. The old one
    // still carries open watches; it is closed with the view.
    if (this.#client) this.#old.push(this.#client);
    const base = {
      caCerts: ca ? [ca] : undefined,
      http2: this.#http2,
    };
    this.#client = cert && key
      ? Deno.createHttpClient({ ...base, cert, key })
      : Deno.createHttpClient(base);
    this.#clientKey = cacheKey;
    return this.#client;
  }
}

/**
 * client-node's `HttpLibrary` (what its generated API classes send requests through) over
 * {@linkcode KubeHttp}: keep-alive connections instead of a new TLS connection per request. Pass
 * it as `httpApi` to `createConfiguration`, without `authMethods` (KubeHttp authenticates).
 */
export class KubeHttpLibrary implements HttpLibrary {
  #http: KubeHttp;
  #answerMs: number | undefined;
  #onSend: SendHook | undefined;

  /**
   * Sends through `http`. Deno's HttpClient has no connect timeout, so `answerMs` bounds the time
   * until the response starts (connection, TLS and the server's first byte): a silent API server
   * is noticed that fast, while a long response body still has the whole request timeout.
   * `onSend` is called right before each request goes out ({@linkcode SendHook}).
   */
  constructor(http: KubeHttp, options: { answerMs?: number; onSend?: SendHook } = {}) {
    this.#http = http;
    this.#answerMs = options.answerMs;
    this.#onSend = options.onSend;
  }

  /** Sends one request. */
  send(request: RequestContext): Observable<ResponseContext> {
    return new Observable(this.#send(request));
  }

  async #send(request: RequestContext): Promise<ResponseContext> {
    const answer = new AbortController();
    const timer = this.#answerMs === undefined ? undefined : setTimeout(() => {
      answer.abort(
        new DOMException(`no answer within ${this.#answerMs} ms`, "TimeoutError"),
      );
    }, this.#answerMs);
    const signals = [request.getSignal(), answer.signal].filter((s): s is AbortSignal => !!s);
    let response: Response;
    try {
      response = await this.#http.fetchUrl(request.getUrl(), {
        method: request.getHttpMethod().toString(),
        headers: request.getHeaders(),
        body: request.getBody(),
        signal: AbortSignal.any(signals),
      }, this.#onSend);
    } finally {
      clearTimeout(timer);
    }
    const headers: Record<string, string> = {};
    response.headers.forEach((value, name) => headers[name] = value);
    return new ResponseContext(response.status, headers, {
      text: () => response.text(),
      binary: async () => Buffer.from(await response.arrayBuffer()),
      stream: () => response.body,
    });
  }
}
