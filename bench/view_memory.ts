/**
 * Issue 10 item 4: memory of the watched view vs today's plain LIST cycle, at N ScriptRuns, each
 * with its ConfigMap (the real embedded script), Job (the real desired Job) and a pod (the Job's
 * template as a pending pod). Every measurement runs in a fresh `deno run` child process, so they
 * do not share a heap:
 *
 * - `idle`: client-node imported and a kubeconfig loaded (the floor);
 * - `view`: `WatchedView.start()` over all namespaces until synced (holds all four kinds);
 * - `list`: three plain LIST cycles through `ClientNodeKube` (ScriptRuns, ConfigMaps, Jobs), each
 *   cycle's arrays held until the next one, as the reconciler does.
 *
 * Each child reports the time taken, `Deno.memoryUsage()` (after a forced GC: what stays) and
 * VmRSS / VmHWM (peak) from /proc/self/status. Run once per V8 flag set given.
 *
 * `deno run -A bench/view_memory.ts [--counts=1000,5000] [--flags=default,semi1,...] [--repeat=1]
 * [--modes=idle,view,list] [--page-size=500]`
 * (with --repeat: median (min–max) of the runs)
 * @module
 */
import { KubeConfig } from "@kubernetes/client-node";
import process from "node:process";
import { startControlPlane } from "../tests/harness/control_plane.ts";
import { desiredConfigMap, desiredJob, runHash } from "../src/desired/desired.ts";
import { ClientNodeKube } from "../src/api/kube.ts";
import { KubeHttp } from "../src/api/kube_http.ts";
import { loadScripts } from "../src/runtime/scripts.ts";
import type { ScriptRun } from "../src/types.ts";
import { WatchedView } from "../src/store/view.ts";
import { logger } from "../src/runtime/log.ts";
import { flagValues } from "./flags.ts";

const args = flagValues(Deno.args);

/** V8 flag sets to compare (`--v8-flags=` values). */
const FLAG_SETS: Record<string, string> = {
  default: "",
  semi1: "--max-semi-space-size=1",
  semi4: "--max-semi-space-size=4",
  old256: "--max-old-space-size=256",
  size: "--optimize-for-size",
  "semi1+size": "--max-semi-space-size=1,--optimize-for-size",
  // Not a V8 flag: glibc malloc with 2 arenas (Deno's Rust side allocates through malloc).
  "size+arena2": "--optimize-for-size MALLOC_ARENA_MAX=2",
  grow10: "--heap-growing-percent=10",
  "1thread-gc": "--single-threaded-gc",
  "semi2+grow10": "--max-semi-space-size=2,--heap-growing-percent=10",
  lazyfeedback: "--lazy-feedback-allocation,--max-lazy",
};

function procStatus(): { rss: number; peak: number } {
  const status = Deno.readTextFileSync("/proc/self/status");
  const kb = (key: string) => Number(status.match(new RegExp(`${key}:\\s+(\\d+)`))?.[1] ?? 0);
  return { rss: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
}

const MiB = (n: number) => n / 1024 / 1024;

async function child(mode: string, kubeconfig: string): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  let objects = 0;
  // deno-lint-ignore no-explicit-any -- keeps results reachable while measuring
  let held: any;
  const abort = new AbortController();
  if (mode === "view") {
    const view = new WatchedView(kc, {
      namespaces: [],
      log: logger("bench"),
      pageSize: Number(args["page-size"] ?? 500),
    });
    await view.start(abort.signal);
    const failing = view.failing(0);
    if (failing.length > 0) throw new Error(`view not listed: ${JSON.stringify(failing)}`);
    objects = Object.values(view.counts()).reduce((a, b) => a + b, 0);
    held = view;
  } else if (mode === "list") {
    const kube = new ClientNodeKube(kc);
    for (let i = 0; i < 3; i++) {
      held = undefined;
      held = await Promise.all([kube.listScriptRuns(), kube.listConfigMaps(), kube.listJobs()]);
    }
    objects = held.reduce((n: number, a: unknown[]) => n + a.length, 0);
  }
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  // deno-lint-ignore no-explicit-any -- gc() exists with --expose-gc
  (globalThis as any).gc?.();
  const mem = Deno.memoryUsage();
  const { rss, peak } = procStatus();
  console.log(JSON.stringify({
    mode,
    objects,
    ms: Math.round(ms),
    cpuMs: Math.round((cpu.user + cpu.system) / 1000),
    heapUsed: MiB(mem.heapUsed),
    heapTotal: MiB(mem.heapTotal),
    external: MiB(mem.external),
    rss,
    peak,
  }));
  void held;
  abort.abort();
  Deno.exit(0);
}

if (args.child) {
  await child(args.child, args.kubeconfig);
}

const COUNTS = (args.counts ?? "1000,5000").split(",").map(Number);
const REPEAT = Number(args.repeat ?? 1);
const PAGE_SIZE = Number(args["page-size"] ?? 500);
const MODES = (args.modes ?? "idle,view,list").split(",");
const FLAGS = (args.flags ?? Object.keys(FLAG_SETS).join(",")).split(",");

const cp = await startControlPlane({ withJobs: false, quiet: true });
const kc = new KubeConfig();
kc.loadFromFile(cp.kubeconfigPath);
const http = new KubeHttp(kc);

async function post(path: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await http.fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  if (res.status !== 201) throw new Error(`POST ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function mapLimit<T>(items: T[], limit: number, fn: (t: T) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

async function populate(ns: string, from: number, to: number): Promise<void> {
  const scripts = await loadScripts();
  const task = scripts.get("task.sh")!;
  const indexes = Array.from({ length: to - from }, (_, i) => from + i);
  await mapLimit(indexes, 16, async (i) => {
    const run = await post(`/apis/script-operator.dev/v1alpha1/namespaces/${ns}/scriptruns`, {
      apiVersion: "script-operator.dev/v1alpha1",
      kind: "ScriptRun",
      metadata: { name: `run-${i}`, namespace: ns },
      spec: { script: "task.sh" },
    }) as unknown as ScriptRun;
    const hash = runHash(run, task);
    await post(`/api/v1/namespaces/${ns}/configmaps`, desiredConfigMap(run, task, hash));
    const desired = desiredJob(run, task, hash);
    const job = await post(`/apis/batch/v1/namespaces/${ns}/jobs`, desired) as {
      metadata: { name: string; uid: string; labels: Record<string, string> };
      spec: { template: { metadata: { labels: Record<string, string> }; spec: unknown } };
    };
    await post(`/api/v1/namespaces/${ns}/pods`, {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name: `${job.metadata.name}-p${i}`,
        namespace: ns,
        labels: job.spec.template.metadata.labels,
        ownerReferences: [{
          apiVersion: "batch/v1",
          kind: "Job",
          name: job.metadata.name,
          uid: job.metadata.uid,
          controller: true,
        }],
      },
      spec: job.spec.template.spec,
    });
  });
}

async function measure(mode: string, flagSet: string) {
  const [flags, envPart] = flagSet.split(" ");
  const env = envPart ? Object.fromEntries([envPart.split("=")]) : {};
  const v8 = ["--expose-gc", ...flags ? flags.split(",") : []].join(",");
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `--v8-flags=${v8}`,
      new URL(import.meta.url).pathname,
      `--child=${mode}`,
      `--kubeconfig=${cp.kubeconfigPath}`,
      `--page-size=${PAGE_SIZE}`,
    ],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
  if (!out.success) throw new Error(`child ${mode}: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(text);
}

try {
  const ns = "bench-memory";
  await post("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
  await post(`/api/v1/namespaces/${ns}/serviceaccounts`, {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: { name: "default", namespace: ns },
  });
  const crd = await Deno.readTextFile(new URL("../deploy/crd.yaml", import.meta.url));
  const apply = new Deno.Command(`${cp.binDir}/kubectl`, {
    args: [`--kubeconfig=${cp.kubeconfigPath}`, "apply", "-f", "-"],
    stdin: "piped",
    stdout: "null",
  }).spawn();
  const w = apply.stdin.getWriter();
  await w.write(new TextEncoder().encode(crd));
  await w.close();
  await apply.status;
  await new Promise((r) => setTimeout(r, 2000)); // CRD established

  console.log(
    "| N runs | V8 flags | mode | objects | time (ms) | CPU (ms) | heap used after GC (MiB) | RSS after GC (MiB) | peak RSS (MiB) |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|");
  let have = 0;
  for (const n of COUNTS) {
    const t0 = performance.now();
    await populate(ns, have, n);
    have = n;
    console.error(
      `populated ${n} runs (x4 objects) in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
    );
    for (const flagName of FLAGS) {
      for (const mode of MODES) {
        const runs: Record<string, number>[] = [];
        for (let k = 0; k < REPEAT; k++) runs.push(await measure(mode, FLAG_SETS[flagName]));
        const col = (key: string, digits = 0) => {
          const xs = runs.map((r) => r[key] as number).sort((a, b) => a - b);
          const med = xs[Math.floor(xs.length / 2)].toFixed(digits);
          return xs.length > 1
            ? `${med} (${xs[0].toFixed(digits)}–${xs.at(-1)!.toFixed(digits)})`
            : med;
        };
        console.log(
          `| ${n} | ${flagName} | ${mode} | ${runs[0].objects} | ${col("ms")} | ${col("cpuMs")} | ${
            col("heapUsed", 1)
          } | ${col("rss")} | ${col("peak")} |`,
        );
      }
    }
  }
} finally {
  http.close();
  await cp.stop();
}
