/**
 * What the operator's periodic work costs at N finished runs, measured in one process without a
 * cluster, so a change to it can be judged in a minute instead of a 50-minute bench. The parts are
 * the real ones: `ViewStore`, `listStream` (fed LIST pages of realistic JSON through a fake
 * transport), `Reconciler` (over the recording fake `Kube`); the process runs with the start
 * task's V8 flags, as the operator does.
 *
 * - **pass**: one periodic cycle over N settled runs (it runs every `--interval`, 15 s);
 * - **re-plan**: one reconcile of a settled run whose mark expired (a finished run's mark lasts
 *   `SETTLED_FINISHED_MS` and up to `SETTLED_JITTER` more: on average half of that more);
 * - **re-LIST**: every kind listed again with nothing changed (every `resyncMs`).
 *
 * The CPU column adds them up as CPU seconds per minute at rest. The last two say what stays live
 * per run (after a full GC): in the view (its four kinds), and in the reconciler once every run
 * has been planned (settled marks and the like); and how far a re-LIST grows the heap above that
 * (pages of JSON and their parsed objects, until collected: it adds to the process's peak). `deno task bench` measures the
 * real process; this says which part of it is what.
 *
 * `deno run -A bench/steady_cpu.ts [--sizes=1000,10000] [--page-size=N] [--cpu-profile=DIR]`
 * (`--page-size`: items per LIST page, default the view's)
 * (`--cpu-profile`: one V8 CPU profile per part and size, for `bench/profile.ts summary`)
 * @module
 */
import { flagValues } from "./flags.ts";
import { startTaskRunFlags } from "../tests/harness/operator.ts";
import { FakeKube, recordingLogger } from "../tests/fakes/fake_kube.ts";
import { script, scriptRun, scripts } from "../tests/fakes/fixtures.ts";
import { Reconciler } from "../src/controller/reconciler.ts";
import { ViewStore } from "../src/store/store.ts";
import { KINDS } from "../src/store/kinds.ts";
import { PAGE_SIZE, RESYNC_MS } from "../src/store/view.ts";
import { type Cursor, listStream } from "../src/store/list_watch.ts";
import { SETTLED_FINISHED_MS, SETTLED_JITTER } from "../src/reconcile/settled.ts";
import type { RunView } from "../src/reconcile/observe.ts";
import { FLAGS, parseDuration } from "../src/runtime/flags.ts";
import type { Job } from "../src/types.ts";
import process from "node:process";
import { Session } from "node:inspector/promises";

const NS = "ns";
/** How long a finished run's settled mark lasts on average. */
const REPLAN_MS = SETTLED_FINISHED_MS * (1 + SETTLED_JITTER / 2);
/** The operator's default `--interval` (src/runtime/flags.ts). */
const INTERVAL_MS = parseDuration(FLAGS.interval.default)!;

const cpuMs = (from: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
};

/** N runs, finished, with their children and pods as the API server would send them. */
async function finishedRuns(n: number) {
  const kube = new FakeKube();
  const { log } = recordingLogger();
  for (let i = 0; i < n; i++) {
    const base = scriptRun({}, `run-${i}`);
    kube.addRun({ ...base, metadata: { ...base.metadata, uid: `uid-${i}` } });
  }
  // Plain-LIST cycles create the children and record the outcome, as the operator would.
  const lists = new Reconciler({ kube, scripts: scripts(), log, namespaces: [NS] });
  await lists.cycle();
  const t = new Date().toISOString();
  let rv = 1_000_000;
  for (const j of kube.jobs.values()) {
    const cond = (type: string) => ({
      type,
      status: "True",
      reason: "CompletionsReached",
      message: "Reached expected number of succeeded pods",
      lastProbeTime: t,
      lastTransitionTime: t,
    });
    (j as Job).status = {
      succeeded: 1,
      startTime: t,
      completionTime: t,
      conditions: [cond("SuccessCriteriaMet"), cond("Complete")],
    } as Job["status"];
    j.metadata.resourceVersion = String(rv++);
  }
  kube.pods = [];
  await lists.cycle();
  const runs = [...kube.runs.values()];
  if (runs.some((r) => r.status?.phase !== "Succeeded")) throw new Error("runs did not finish");
  const jobs = [...kube.jobs.values()].map((j) => ({
    ...j,
    metadata: { ...j.metadata, managedFields: managedFields(t) },
  }));
  const configMaps = [...kube.configMaps.values()].map((c) => ({
    kind: "PartialObjectMetadata",
    apiVersion: "meta.k8s.io/v1",
    metadata: { ...c.metadata, resourceVersion: String(rv++) },
  }));
  const pods = jobs.map((j, i) => pod(j as Job, i, t, String(rv++)));
  return { runs, jobs, configMaps, pods };
}

function managedFields(t: string) {
  return [{
    manager: "kube-controller-manager",
    operation: "Update",
    apiVersion: "batch/v1",
    time: t,
    fieldsType: "FieldsV1",
    fieldsV1: { "f:status": { "f:conditions": {}, "f:succeeded": {}, "f:ready": {} } },
    subresource: "status",
  }];
}

/** The pod a Job ran, finished (its spec is the Job's template, as the Job controller makes). */
function pod(job: Job, i: number, t: string, rv: string) {
  const template = (job as Job & { spec: { template: { metadata: unknown; spec: unknown } } }).spec
    .template as { metadata: { labels: Record<string, string> }; spec: Record<string, unknown> };
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: `${job.metadata.name}-${i.toString(36).padStart(5, "x")}`,
      namespace: NS,
      uid: `pod-uid-${i}`,
      resourceVersion: rv,
      creationTimestamp: t,
      labels: { ...template.metadata.labels, "batch.kubernetes.io/job-name": job.metadata.name },
      ownerReferences: [{
        apiVersion: "batch/v1",
        kind: "Job",
        name: job.metadata.name,
        uid: job.metadata.uid,
        controller: true,
        blockOwnerDeletion: true,
      }],
      managedFields: managedFields(t),
    },
    spec: { ...template.spec, nodeName: "kwok-node-0", serviceAccountName: "default" },
    status: {
      phase: "Succeeded",
      conditions: ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"].map(
        (type) => ({ type, status: "False", lastTransitionTime: t, reason: "PodCompleted" }),
      ),
      hostIP: "10.0.0.1",
      podIP: "10.244.0.9",
      startTime: t,
      containerStatuses: [{
        name: "script",
        state: {
          terminated: { exitCode: 0, reason: "Completed", startedAt: t, finishedAt: t },
        },
        ready: false,
        restartCount: 0,
        image: "busybox:1.36",
        imageID: "docker.io/library/busybox@sha256:0123456789abcdef",
        containerID: "containerd://0123456789abcdef",
        started: false,
      }],
      qosClass: "Burstable",
    },
  };
}

/** LIST pages of `items` as a transport answers them (`limit`, `continue`). */
function pagedTransport(byPath: Map<string, unknown[]>) {
  return (url: string): Promise<Response> => {
    const [path, query] = url.split("?");
    const q = new URLSearchParams(query);
    const items = byPath.get(path) ?? [];
    const limit = Number(q.get("limit") ?? items.length);
    const from = Number(q.get("continue") ?? 0);
    const next = from + limit < items.length ? String(from + limit) : undefined;
    const body = JSON.stringify({
      metadata: { resourceVersion: "9999999", continue: next },
      items: items.slice(from, from + limit),
    });
    return Promise.resolve(new Response(body, { status: 200 }));
  };
}

/** Profiles `fn` into `dir/<name>.cpuprofile` when `dir` is set. */
async function profiled<T>(dir: string | undefined, name: string, fn: () => Promise<T>) {
  if (!dir) return await fn();
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 100 });
  await session.post("Profiler.start");
  try {
    return await fn();
  } finally {
    const { profile } = await session.post("Profiler.stop");
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(`${dir}/${name}.cpuprofile`, JSON.stringify(profile));
    session.disconnect();
  }
}

async function child(n: number, pageSize: number, profileDir?: string): Promise<void> {
  const { log } = recordingLogger();
  const { runs, jobs, configMaps, pods } = await finishedRuns(n);
  const store = new ViewStore(log);
  const byKind = { ScriptRun: runs, Job: jobs, ConfigMap: configMaps, Pod: pods };
  const byPath = new Map(KINDS.map((k) => [k.path(""), byKind[k.kind]]));
  const transport = pagedTransport(byPath);
  let heapHigh = 0;
  const ctx = {
    log,
    observe: () => {},
    observeEvent: () => {},
    pageSize,
    resyncMs: RESYNC_MS,
    watchTimeoutSeconds: 300,
    watchIdleMs: 90_000,
    listTimeoutMs: 60_000,
    fetch: (url: string) => {
      // The heap's high-water mark while listing, read as each page is asked for.
      heapHigh = Math.max(heapHigh, Deno.memoryUsage().heapTotal);
      return transport(url);
    },
    store,
    answered: () => {},
  };
  const cursors: Cursor[] = KINDS.map((spec) => ({
    spec,
    namespace: "",
    rv: undefined,
    lastList: 0,
  }));
  const signal = new AbortController().signal;
  const listAll = async () => {
    for (const c of cursors) await listStream(c, ctx, signal);
  };
  const heap = () => {
    (globalThis as { gc?: () => void }).gc?.();
    return Deno.memoryUsage().heapUsed;
  };
  const heap0 = heap();
  await listAll();
  const viewBytes = (heap() - heap0) / n;
  const view: RunView = {
    synced: () => true,
    scriptRuns: (ns) => store.scriptRuns(ns),
    scriptRun: (ns, name) => store.scriptRun(ns, name),
    children: (ns, uid) => store.children(ns, uid),
    names: (ns) => store.names(ns),
    version: (ns, uid) => store.version(ns, uid),
  };
  const kube = new FakeKube();
  const reconciler = new Reconciler({
    kube,
    scripts: scripts(script()),
    log,
    namespaces: [],
    view,
    schedule: () => {},
  });
  // Re-plan: a reconcile of each run with no mark (what an expired mark costs).
  let c0 = process.cpuUsage();
  await profiled(profileDir, `replan-${n}`, async () => {
    for (const r of runs) await reconciler.reconcileKey(NS, r.metadata.name);
  });
  const replanMs = cpuMs(c0) / n;
  const reconcilerBytes = (heap() - heap0) / n - viewBytes;
  const writes = kube.writes().length;
  if (writes > 0) throw new Error(`finished runs were written to: ${kube.writes().slice(0, 3)}`);
  // Passes over settled runs (the median of 9).
  const passes: number[] = [];
  for (let i = 0; i < 9; i++) {
    c0 = process.cpuUsage();
    await profiled(i === 4 ? profileDir : undefined, `pass-${n}`, () => reconciler.cycle());
    passes.push(cpuMs(c0));
  }
  const passMs = passes.sort((a, b) => a - b)[4];
  // Re-LIST with nothing changed (the median of 3).
  const relists: number[] = [];
  for (let i = 0; i < 3; i++) {
    c0 = process.cpuUsage();
    await profiled(i === 1 ? profileDir : undefined, `relist-${n}`, listAll);
    relists.push(cpuMs(c0));
  }
  const relistMs = relists.sort((a, b) => a - b)[1];
  // How far one more re-LIST grows the heap above what stays live: what a page's JSON and its
  // parsed objects cost until collected.
  heap(); // a full GC first: the growth is measured from what stays live
  const settledHeap = Deno.memoryUsage().heapTotal;
  heapHigh = settledHeap;
  await listAll();
  const relistHeapBytes = Math.max(heapHigh, Deno.memoryUsage().heapTotal) - settledHeap;
  const perMinute = (passMs * 60_000 / INTERVAL_MS + replanMs * n * 60_000 / REPLAN_MS +
    relistMs * 60_000 / RESYNC_MS) / 1000;
  console.log(
    JSON.stringify({
      n,
      pageSize,
      passMs,
      replanMs,
      relistMs,
      perMinute,
      viewBytes,
      reconcilerBytes,
      relistHeapBytes,
    }),
  );
}

const args = flagValues(Deno.args);
if (args.child) {
  await child(Number(args.child), Number(args["page-size"] ?? PAGE_SIZE), args["cpu-profile"]);
  Deno.exit(0);
}
const sizes = (args.sizes ?? "1000,10000").split(",").map(Number);
const flags = await startTaskRunFlags();
console.log(`steady CPU at rest, in one process (deno run ${flags.join(" ")})`);
console.log(
  `| runs | pass, ms (every ${INTERVAL_MS / 1000} s) | re-plan, µs (each run every ${
    (REPLAN_MS / 60_000).toFixed(0)
  } min on average) | re-LIST, ms (every ${
    RESYNC_MS / 60_000
  } min) | CPU s/min | view, KiB per run | reconciler, KiB per run | heap growth in a re-LIST, MiB |`,
);
console.log("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const n of sizes) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      // The start task's V8 flags, and gc() to read what stays live.
      ...flags.filter((f) => f.startsWith("--v8-flags")).map((f) => `${f},--expose-gc`),
      new URL(import.meta.url).pathname,
      `--child=${n}`,
      `--page-size=${args["page-size"] ?? PAGE_SIZE}`,
      ...(args["cpu-profile"] ? [`--cpu-profile=${args["cpu-profile"]}`] : []),
    ],
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`size ${n} failed`);
  const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
  console.log(
    `| ${n} | ${r.passMs.toFixed(1)} | ${(r.replanMs * 1000).toFixed(0)} | ${
      r.relistMs.toFixed(0)
    } | ${r.perMinute.toFixed(2)} | ${(r.viewBytes / 1024).toFixed(1)} | ${
      (r.reconcilerBytes / 1024).toFixed(1)
    } | ${(r.relistHeapBytes / 2 ** 20).toFixed(0)} |`,
  );
}
