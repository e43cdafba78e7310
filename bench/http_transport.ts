/**
 * Issue 10 item 3: how fast can we write? POSTs small ConfigMaps (500 sequential, then 500 each
 * at concurrency 8, 16 and 32) through (a) client-node's generated API (`makeClient`, today's
 * path), (b) {@linkcode KubeHttp} over Deno's fetch with HTTP/1.1 only, (c) KubeHttp with HTTP/2,
 * and prints a markdown table: ms per request, requests per second, and the TCP connections to the
 * API server this process opened (sockets in /proc/net/tcp towards the server's port, any state).
 *
 * `deno run -A bench/http_transport.ts [--kubeconfig=PATH] [--n=500] [--repeat=3]` (median of
 * `repeat` runs); without a kubeconfig it
 * starts a local control plane (API server only).
 * @module
 */
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { makeClient } from "../src/api/client.ts";
import { KubeHttp } from "../src/api/kube_http.ts";
import { startControlPlane } from "../tests/harness/control_plane.ts";
import { flagValues } from "./flags.ts";

const args = flagValues(Deno.args);
const N = Number(args.n ?? 500);
const REPEAT = Number(args.repeat ?? 3);

let stop = async () => {};
let kubeconfigPath = args.kubeconfig as string | undefined;
if (!kubeconfigPath) {
  const cp = await startControlPlane({ withJobs: false, quiet: true });
  kubeconfigPath = cp.kubeconfigPath;
  stop = () => cp.stop();
}
const kc = new KubeConfig();
kc.loadFromFile(kubeconfigPath);
const port = Number(new URL(kc.getCurrentCluster()!.server).port);

/** Local ports of the sockets towards the API server's port (any TCP state, this netns). */
async function socketsToServer(): Promise<Set<string>> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  const out = new Set<string>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const text = await Deno.readTextFile(file).catch(() => "");
    for (const line of text.split("\n").slice(1)) {
      const [, local, remote] = line.trim().split(/\s+/);
      if (remote?.endsWith(`:${hexPort}`)) out.add(local);
    }
  }
  return out;
}

type Post = (ns: string, name: string) => Promise<void>;

function body(ns: string, name: string) {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name, namespace: ns },
    data: { a: "b" },
  };
}

function apiPost(core: CoreV1Api): Post {
  return async (ns, name) => {
    await core.createNamespacedConfigMap({ namespace: ns, body: body(ns, name) });
  };
}

function kubeHttpPost(http: KubeHttp): Post {
  return async (ns, name) => {
    const res = await http.fetch(`/api/v1/namespaces/${ns}/configmaps`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body(ns, name)),
    });
    await res.body?.cancel();
    if (res.status !== 201) throw new Error(`POST: ${res.status}`);
  };
}

const admin = new KubeHttp(kc);
async function namespace(name: string): Promise<void> {
  const res = await admin.fetch(`/api/v1/namespaces`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name } }),
  });
  await res.body?.cancel();
  if (res.status !== 201) throw new Error(`namespace ${name}: ${res.status}`);
}

async function run(post: Post, concurrency: number, tag: string) {
  const ns = `bench-http-${tag}-${concurrency}-${crypto.randomUUID().slice(0, 6)}`;
  await namespace(ns);
  const before = await socketsToServer();
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < N) {
        const i = next++;
        await post(ns, `cm-${i}`);
      }
    }),
  );
  const ms = performance.now() - t0;
  const after = await socketsToServer();
  const sockets = [...after].filter((p) => !before.has(p)).length;
  return { ms, perRequest: ms / N, rps: N / (ms / 1000), sockets };
}

const transports: [string, () => Post, () => void][] = [
  [
    "client-node's transport (kc.makeApiClient)",
    () => apiPost(kc.makeApiClient(CoreV1Api)),
    () => {},
  ],
  [
    "makeClient(transport: fetch)",
    () => apiPost(makeClient(kc, CoreV1Api, { transport: "fetch" })),
    () => {},
  ],
  ...(["http1", "http2"] as const).map((v): [string, () => Post, () => void] => {
    let http: KubeHttp | undefined;
    return [
      `Deno fetch ${v === "http1" ? "HTTP/1.1" : "HTTP/2"}`,
      () => kubeHttpPost(http = new KubeHttp(kc, { http2: v === "http2" })),
      () => http?.close(),
    ];
  }),
];

function peakRssMiB(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(status.match(/VmHWM:\s+(\d+)/)?.[1] ?? 0) / 1024;
}

if (args.child !== undefined) {
  // One transport per process, so the peak resident memory is its own.
  const [name, make, close] = transports[Number(args.child)];
  const post = make();
  let i = 0;
  for (const concurrency of [1, 8, 16, 32]) {
    const tag = `${name.replace(/[^a-z0-9]/gi, "").toLowerCase().slice(0, 12)}${i++}`;
    // Median of REPEAT runs (the machine is shared; single runs are noisy).
    const runs = [];
    for (let k = 0; k < REPEAT; k++) runs.push(await run(post, concurrency, `${tag}-${k}`));
    const r = runs.sort((a, b) => a.ms - b.ms)[Math.floor(REPEAT / 2)];
    console.log(
      `| ${name} | ${concurrency} | ${r.perRequest.toFixed(2)} | ${
        r.rps.toFixed(0)
      } | ${r.sockets} | ${peakRssMiB().toFixed(0)} |`,
    );
  }
  close();
  admin.close();
  Deno.exit(0);
}

console.log(
  `| transport | concurrency | ms/request | requests/s | sockets opened (seen at the end) | peak RSS so far (MiB) |`,
);
console.log(`|---|---|---|---|---|---|`);
try {
  for (let t = 0; t < transports.length; t++) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL(import.meta.url).pathname,
        `--child=${t}`,
        `--kubeconfig=${kubeconfigPath}`,
        `--n=${N}`,
        `--repeat=${REPEAT}`,
      ],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (!out.success) throw new Error(`transport ${transports[t][0]} failed`);
  }
} finally {
  admin.close();
  await stop();
}
