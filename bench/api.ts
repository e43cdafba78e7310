/**
 * The benchmark's own client of the API server: plain `fetch` with the admin client certificate
 * (HTTP/2 when the server offers it), parallel creates, paged LISTs and a LIST+WATCH that
 * timestamps every event on arrival. Independent of the operator's code, so the bench measures
 * the operator from outside.
 * @module
 */
import { parse } from "yaml";

/** A Kubernetes object as the bench reads it (only the fields it looks at are typed). */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { kind: string; name: string; uid: string }[];
  };
  spec?: Record<string, unknown>;
  status?: {
    phase?: string;
    conditions?: { type: string; status: string; lastTransitionTime?: string }[];
    [key: string]: unknown;
  };
}

/** A failed API call: method, path, HTTP status and the server's message. */
export class ApiError extends Error {
  override name = "ApiError";
  /** HTTP status (0 when there was no response). */
  readonly status: number;
  constructor(method: string, path: string, status: number, text: string) {
    let message = text;
    try {
      message = JSON.parse(text).message ?? text;
    } catch { /* not JSON */ }
    super(`${method} ${path}: ${status} ${message.slice(0, 500)}`);
    this.status = status;
  }
}

interface KubeconfigFile {
  clusters: { cluster: { server: string; "certificate-authority-data": string } }[];
  users: { user: { "client-certificate-data": string; "client-key-data": string } }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client of one API server. */
export class Api {
  /** `https://host:port`. */
  readonly server: string;
  #client: Deno.HttpClient;
  #closed = false;

  private constructor(server: string, client: Deno.HttpClient) {
    this.server = server;
    this.#client = client;
  }

  /** Reads server, CA and client certificate from a kubeconfig with embedded data. */
  static async fromKubeconfig(path: string): Promise<Api> {
    const config = parse(await Deno.readTextFile(path)) as KubeconfigFile;
    const cluster = config.clusters?.[0]?.cluster;
    const user = config.users?.[0]?.user;
    if (!cluster?.server || !user?.["client-certificate-data"]) {
      throw new Error(`${path}: expected a kubeconfig with embedded CA and client certificate`);
    }
    const client = Deno.createHttpClient({
      caCerts: [atob(cluster["certificate-authority-data"])],
      cert: atob(user["client-certificate-data"]),
      key: atob(user["client-key-data"]),
    });
    return new Api(cluster.server, client);
  }

  /** Closes the HTTP client; watches end. */
  close(): void {
    this.#closed = true;
    this.#client.close();
  }

  /** Whether {@linkcode close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** One request; the parsed JSON body. Throws ApiError on a non-2xx status. */
  async request<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    options: { accept?: string; contentType?: string; timeoutMs?: number } = {},
  ): Promise<T> {
    const res = await fetch(`${this.server}${path}`, {
      method,
      client: this.#client,
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: {
        "content-type": options.contentType ?? "application/json",
        accept: options.accept ?? "application/json",
      },
      signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
    });
    const text = await res.text();
    if (!res.ok) throw new ApiError(method, path, res.status, text);
    return JSON.parse(text) as T;
  }

  /**
   * POSTs every object to `pathOf(object)`, `concurrency` at a time; retries 429 and 5xx a few
   * times. Throws the first other error.
   */
  async createAll(
    objects: readonly KubeObject[],
    pathOf: (o: KubeObject) => string,
    concurrency = 32,
  ): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < objects.length) {
        const o = objects[next++];
        for (let attempt = 1;; attempt++) {
          try {
            await this.request("POST", pathOf(o), o);
            break;
          } catch (e) {
            const status = e instanceof ApiError ? e.status : 0;
            if (attempt >= 5 || (status !== 429 && status < 500 && status !== 0)) throw e;
            await sleep(200 * attempt);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, objects.length) }, worker));
  }

  /** A full LIST, paged by `limit`; the items and the list's resourceVersion. */
  async list(
    path: string,
    options: { limit?: number; accept?: string; labelSelector?: string } = {},
  ): Promise<{ items: KubeObject[]; resourceVersion: string }> {
    const items: KubeObject[] = [];
    let cont = "";
    while (true) {
      const q = new URLSearchParams({ limit: String(options.limit ?? 500) });
      if (cont) q.set("continue", cont);
      if (options.labelSelector) q.set("labelSelector", options.labelSelector);
      const page = await this.request<
        { items: KubeObject[]; metadata: { resourceVersion: string; continue?: string } }
      >("GET", `${path}?${q}`, undefined, { accept: options.accept });
      items.push(...page.items);
      if (!page.metadata.continue) return { items, resourceVersion: page.metadata.resourceVersion };
      cont = page.metadata.continue;
    }
  }

  /**
   * LIST then WATCH `path` (a collection), calling `onEvent` with each object and the
   * `performance.now()` at which its event arrived. The LIST's items arrive as `ADDED`. A watch
   * that ends is resumed from the last resourceVersion; a 410 Gone re-LISTs. Runs until
   * {@linkcode Watcher.stop}.
   */
  watch(
    path: string,
    onEvent: (type: string, object: KubeObject, at: number) => void,
  ): Watcher {
    const abort = new AbortController();
    let resolveSynced: () => void = () => {};
    const synced = new Promise<void>((r) => (resolveSynced = r));
    let failure: unknown;
    let reader: ReadableStreamDefaultReader<string> | undefined;
    const loop = async () => {
      let rv = "";
      while (!abort.signal.aborted && !this.#closed) {
        try {
          if (!rv) {
            const listed = await this.list(path);
            const at = performance.now();
            for (const item of listed.items) onEvent("ADDED", item, at);
            rv = listed.resourceVersion;
            resolveSynced();
          }
          const q = new URLSearchParams({
            watch: "1",
            resourceVersion: rv,
            allowWatchBookmarks: "true",
            timeoutSeconds: "1800",
          });
          const res = await fetch(`${this.server}${path}?${q}`, {
            client: this.#client,
            signal: abort.signal,
          });
          if (!res.ok || !res.body) {
            const text = await res.text();
            if (res.status === 410) {
              rv = "";
              continue;
            }
            throw new ApiError("WATCH", path, res.status, text);
          }
          let buffer = "";
          reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          while (true) {
            const { value: chunk, done } = await reader.read();
            if (done) break;
            const at = performance.now();
            buffer += chunk;
            let i;
            while ((i = buffer.indexOf("\n")) >= 0) {
              const line = buffer.slice(0, i);
              buffer = buffer.slice(i + 1);
              if (!line.trim()) continue;
              const event = JSON.parse(line) as { type: string; object: KubeObject };
              if (event.type === "ERROR") {
                rv = ""; // 410 Gone (or another error): start over with a LIST
                break;
              }
              rv = event.object.metadata.resourceVersion ?? rv;
              if (event.type !== "BOOKMARK") onEvent(event.type, event.object, at);
            }
          }
        } catch (e) {
          if (abort.signal.aborted || this.#closed) return;
          failure = e;
          await sleep(500);
        }
      }
    };
    const done = loop();
    return {
      synced,
      lastError: () => failure,
      stop: async () => {
        abort.abort();
        reader?.cancel().catch(() => {});
        // Never hang the bench on a stream that ignores the abort.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          done.catch(() => {}),
          new Promise((r) => (timer = setTimeout(r, 5000))),
        ]);
        clearTimeout(timer);
      },
    };
  }
}

/** A running LIST+WATCH. */
export interface Watcher {
  /** Resolves after the first LIST was delivered. */
  synced: Promise<void>;
  /** The last error that interrupted the watch (it retries), if any. */
  lastError(): unknown;
  /** Ends the watch. */
  stop(): Promise<void>;
}
