/**
 * A TCP proxy in front of the test API server that can be paused: while paused it accepts
 * connections but forwards nothing in either direction, as a stopped (SIGSTOP) or black-holed
 * API server behaves; resumed, the held bytes flow again. Only the processes given its
 * kubeconfig go through it, so the rest of the control plane keeps working.
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
  /** Closes the listener and every connection, and removes the kubeconfig. */
  close(): Promise<void>;
}

/** Starts a proxy to the admin kubeconfig's API server. */
export async function startPauseProxy(): Promise<PauseProxy> {
  const view = await kubectlJson<{ clusters: { cluster: { server: string } }[] }>([
    "config",
    "view",
    "--raw",
    "--minify",
  ]);
  const upstream = new URL(view.clusters[0].cluster.server);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  let gate: { promise: Promise<void>; resolve: () => void } | undefined;
  const open = new Set<Deno.Conn>();
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
        let written = 0;
        while (written < n) written += await to.write(buffer.subarray(written, n));
      }
    } catch { /* a side closed */ }
    for (const c of [from, to]) {
      closeQuietly(c);
      open.delete(c);
    }
  };
  const serve = async () => {
    try {
      for await (const client of listener) {
        open.add(client);
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
  const serving = serve();
  const dir = await Deno.makeTempDir({ prefix: "script-operator-proxy-" });
  const full = await kubectlJson<Record<string, unknown>>(["config", "view", "--raw", "--minify"]);
  const text = JSON.stringify(full).replace(upstream.origin, `https://127.0.0.1:${port}`);
  await Deno.writeTextFile(`${dir}/proxy.kubeconfig`, text);
  const close = async () => {
    if (closed) return;
    closed = true;
    listener.close();
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
    close,
    [Symbol.asyncDispose]: close,
  };
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
