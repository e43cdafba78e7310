/**
 * A TCP proxy in front of the test API server that can misbehave on demand, as API servers do:
 * - paused, it accepts connections but forwards nothing in either direction, as a stopped
 *   (SIGSTOP) or black-holed API server behaves; resumed, the held bytes flow again;
 * - refusing, nothing listens on its port (connections are refused) and every open connection is
 *   closed, as while an API server restarts;
 * - slowed, every chunk a client sends on a connection that was open when `slow()` was called is
 *   held for a while before it is forwarded, as a server that queues requests (API Priority and
 *   Fairness) answers late. Connections opened later are not slowed.
 * Only the processes given its kubeconfig go through it, so the rest of the control plane keeps
 * working.
 * @module
 */
import { kubectlJson } from "./test_env.ts";

/** A running proxy. */
export interface PauseProxy extends AsyncDisposable {
  /** Kubeconfig (admin credentials) whose server is the proxy. */
  kubeconfig: string;
  /** Stops forwarding; new connections are accepted and held. */
  pause(): void;
  /** Forwards again, held bytes included. */
  resume(): void;
  /** Closes every connection and stops listening: connections are refused until `answer()`. */
  refuse(): void;
  /** Listens again on the same port. */
  answer(): void;
  /** Holds what clients send on the connections open now for `ms` before forwarding it. */
  slow(ms: number): void;
  /** Closes the listener and every connection, and removes the kubeconfig. */
  close(): Promise<void>;
}

/**
 * Starts a proxy to the API server of `kubeconfig` (default: the test cluster's admin kubeconfig);
 * its kubeconfig has the same credentials.
 */
export async function startPauseProxy(options: { kubeconfig?: string } = {}): Promise<PauseProxy> {
  const view = await kubectlJson<{ clusters: { cluster: { server: string } }[] }>(
    ["config", "view", "--raw", "--minify"],
    options,
  );
  const upstream = new URL(view.clusters[0].cluster.server);
  let listener: Deno.Listener | undefined = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  let gate: { promise: Promise<void>; resolve: () => void } | undefined;
  const open = new Set<Deno.Conn>();
  const clients = new Set<Deno.Conn>();
  /** Client connections that `slow()` holds, with how long. */
  const slowed = new Map<Deno.Conn, number>();
  let closed = false;
  const passGate = async () => {
    while (gate) await gate.promise;
  };
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        await passGate();
        const n = await from.read(buffer);
        if (n === null) break;
        await passGate();
        const hold = slowed.get(from);
        if (hold) await new Promise((r) => setTimeout(r, hold));
        let written = 0;
        while (written < n) written += await to.write(buffer.subarray(written, n));
      }
    } catch { /* a side closed */ }
    for (const c of [from, to]) {
      closeQuietly(c);
      open.delete(c);
      clients.delete(c);
      slowed.delete(c);
    }
  };
  const serve = async (l: Deno.Listener) => {
    try {
      for await (const client of l) {
        open.add(client);
        clients.add(client);
        (async () => {
          await passGate();
          const server = await Deno.connect({
            hostname: upstream.hostname,
            port: Number(upstream.port),
          }).catch(() => undefined);
          if (!server || closed) {
            closeQuietly(client);
            if (server) closeQuietly(server);
            open.delete(client);
            return;
          }
          open.add(server);
          await Promise.all([pipe(client, server), pipe(server, client)]);
        })();
      }
    } catch { /* listener closed */ }
  };
  let serving = serve(listener);
  const dir = await Deno.makeTempDir({ prefix: "script-operator-proxy-" });
  const full = await kubectlJson<Record<string, unknown>>(
    ["config", "view", "--raw", "--minify"],
    options,
  );
  const text = JSON.stringify(full).replace(upstream.origin, `https://127.0.0.1:${port}`);
  await Deno.writeTextFile(`${dir}/proxy.kubeconfig`, text);
  const close = async () => {
    if (closed) return;
    closed = true;
    listener?.close();
    listener = undefined;
    gate?.resolve();
    gate = undefined;
    for (const c of open) closeQuietly(c);
    await serving;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  return {
    kubeconfig: `${dir}/proxy.kubeconfig`,
    pause: () => {
      if (gate) return;
      let resolve!: () => void;
      const promise = new Promise<void>((r) => resolve = r);
      gate = { promise, resolve };
    },
    resume: () => {
      const g = gate;
      gate = undefined;
      g?.resolve();
    },
    refuse: () => {
      listener?.close();
      listener = undefined;
      for (const c of open) closeQuietly(c);
      open.clear();
      clients.clear();
    },
    answer: () => {
      if (listener || closed) return;
      listener = Deno.listen({ hostname: "127.0.0.1", port });
      serving = serve(listener);
    },
    slow: (ms: number) => {
      for (const c of clients) slowed.set(c, ms);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
