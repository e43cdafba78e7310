/**
 * `deno task bench`: the operator measured from outside, as a black box, on fresh local control
 * planes (kwok node): a real operator process started with the start task's flags, ScriptRuns
 * created through the API, Jobs and ScriptRuns timestamped by the bench's own LIST+WATCH,
 * memory and CPU read from /proc, requests scraped from the operator's /metrics.
 *
 * Scenarios (see docs/benchmarks.md):
 * 1. idle resident memory;
 * 2. N ScriptRuns created at once (N = 100, 1000; with `--full` also 5000);
 * 3. one new ScriptRun on an idle operator → its Job exists;
 * 4. steady state at N finished runs (after scenario 2 converged);
 * 5. noise: other ConfigMaps and Jobs in the cluster, then 10 new runs.
 *
 * Prints a markdown table (min/median/max over runs, target, pass/FAIL) and writes all samples as
 * JSON to `bench/results/<time>.json`. The targets live here, never in tests.
 * @module
 */
import { parse as parseYaml } from "yaml";
import {
  type ControlPlane,
  type ControlPlaneOptions,
  ensureBinaries,
  KWOK_NODE_ANNOTATION,
  startControlPlane,
} from "../tests/harness/control_plane.ts";
import { Api, type KubeObject, type Watcher } from "./api.ts";
import { OperatorProcess } from "./operator_process.ts";
import { startTaskRunFlags } from "../tests/harness/operator.ts";
import { outageMain } from "./outage.ts";
import {
  diffCounts,
  markdownTable,
  nonWatchRequests,
  percentile,
  type RequestCounts,
  type Row,
  summarize,
  type Target,
  writes,
} from "./stats.ts";

const ROOT = new URL("../", import.meta.url).pathname;
/** The checkout whose operator is measured (`--operator=DIR`; default this one), ending in `/`. */
let OPERATOR_ROOT = ROOT;
/** Extra `deno run` flags for the operator (`--deno-flag`). */
let EXTRA_FLAGS: string[] = [];
/** Extra operator arguments (`--operator-arg`). */
let EXTRA_ARGS: string[] = [];
const MiB = 1024;
const GROUP_PATH = "/apis/script-operator.dev/v1alpha1";

const USAGE = `deno task bench [--full] [--sizes=100,1000] [--runs=N] [--steady-seconds=60]
                 [--steady-settle-seconds=60] [--settle-seconds=10] [--single-samples=10]
                 [--noise=10000,5000] [--out=FILE] [--keep-logs] [--operator=DIR] [--deno-flag=F]...
                 [--no-single] [--operator-arg=A]...
       deno task bench --table=FILE
       deno task bench --outage [--runs=N] [--outage-seconds=S] [--keep-logs] (see bench/outage.ts)

  --full              sizes 100, 1000 and 5000 (default: 100 and 1000)
  --sizes=LIST        ScriptRun counts of scenario 2 (overrides --full)
  --runs=N            runs per size (default 3; 1 from 1000 on, or with --full from 5000 on)
  --steady-seconds=S  steady-state window after the last run of sizes ≥ 1000 (or of the largest
                      size), rounded to whole poll intervals (scenario 4, default 60; 0 = skip)
  --steady-settle-seconds=S
                      wait after all runs finished before that window, so the convergence's
                      tail is not counted as steady state; its CPU is reported on its own row
                      (default 60)
  --settle-seconds=S  wait after the operator is ready before the idle sample (default 10)
  --single-samples=N  sequential single runs of scenario 3 (default 10)
  --noise=C,J         other ConfigMaps and Jobs of scenario 5 (default 10000,5000)
  --out=FILE          JSON results (default bench/results/<time>.json)
  --keep-logs         keep the operator and control-plane logs next to the JSON
  --operator=DIR      measure the operator of another checkout (its main.ts, start task, CRD
                      and deploy/deployment.yaml), e.g. a worktree of the previous version
  --deno-flag=F       one more \`deno run\` flag for the operator after the start task's, for
                      experiments (e.g. --deno-flag=--v8-flags=--max-semi-space-size=2);
                      recorded in the JSON
  --operator-arg=A    one more argument for the operator, for diagnosis (e.g.
                      --operator-arg=--log-level=debug); recorded in the JSON
  --no-single         skip the idle sample, single runs and noise (scenarios 1, 3, 5 on their
                      own control plane); batches still record their idle samples
  --table=FILE        print the table of an earlier run's JSON, run nothing`;

/** Command-line options of the bench. */
interface Options {
  sizes: number[];
  runs?: number;
  steadySeconds: number;
  /** Wait between "all finished" and the steady window; its CPU is reported apart. */
  steadySettleSeconds: number;
  settleSeconds: number;
  singleSamples: number;
  noiseConfigMaps: number;
  noiseJobs: number;
  out?: string;
  keepLogs: boolean;
  full: boolean;
  /** Print the report of this JSON results file instead of running. */
  table?: string;
  /** Checkout whose operator is measured. */
  operator?: string;
  /** Extra `deno run` flags for the operator (experiments). */
  denoFlags: string[];
  /** Skip scenarios 1, 3 and 5 on their own control plane. */
  noSingle: boolean;
  /** Extra operator arguments (diagnosis, e.g. --log-level=debug). */
  operatorArgs: string[];
}

function parseOptions(args: string[]): Options {
  const o: Options = {
    sizes: [100, 1000],
    steadySeconds: 60,
    steadySettleSeconds: 60,
    settleSeconds: 10,
    singleSamples: 10,
    noiseConfigMaps: 10_000,
    noiseJobs: 5_000,
    keepLogs: false,
    full: false,
    denoFlags: [],
    noSingle: false,
    operatorArgs: [],
  };
  let sizes: number[] | undefined;
  const positive = (flag: string, v: string, min = 1) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) {
      throw new Error(`${flag}=${v}: expected a whole number ≥ ${min}\n\n${USAGE}`);
    }
    return n;
  };
  for (const arg of args) {
    const [flag, value = ""] = arg.split(/=(.*)/s, 2);
    switch (flag) {
      case "--full":
        o.full = true;
        break;
      case "--keep-logs":
        o.keepLogs = true;
        break;
      case "--sizes":
        sizes = value.split(",").map((v) => positive(flag, v));
        break;
      case "--runs":
        o.runs = positive(flag, value);
        break;
      case "--steady-seconds":
        o.steadySeconds = positive(flag, value, 0);
        break;
      case "--steady-settle-seconds":
        o.steadySettleSeconds = positive(flag, value, 0);
        break;
      case "--settle-seconds":
        o.settleSeconds = positive(flag, value, 0);
        break;
      case "--single-samples":
        o.singleSamples = positive(flag, value, 0);
        break;
      case "--noise": {
        const [c, j] = value.split(",");
        o.noiseConfigMaps = positive(flag, c ?? "", 0);
        o.noiseJobs = positive(flag, j ?? "", 0);
        break;
      }
      case "--table":
        if (!value) throw new Error(`--table needs a JSON results file\n\n${USAGE}`);
        o.table = value;
        break;
      case "--operator":
        if (!value) throw new Error(`--operator needs a checkout folder\n\n${USAGE}`);
        o.operator = value.endsWith("/") ? value : `${value}/`;
        break;
      case "--deno-flag":
        if (!value) throw new Error(`--deno-flag needs a flag\n\n${USAGE}`);
        o.denoFlags.push(value);
        break;
      case "--operator-arg":
        if (!value) throw new Error(`--operator-arg needs an argument\n\n${USAGE}`);
        o.operatorArgs.push(value);
        break;
      case "--no-single":
        o.noSingle = true;
        break;
      case "--out":
        if (!value) throw new Error(`--out needs a file name\n\n${USAGE}`);
        o.out = value;
        break;
      case "-h":
      case "--help":
        console.log(USAGE);
        Deno.exit(0);
        break;
      default:
        throw new Error(`unknown argument "${arg}"\n\n${USAGE}`);
    }
  }
  o.sizes = sizes ?? (o.full ? [100, 1000, 5000] : [100, 1000]);
  return o;
}

/**
 * Runs of scenario 2 for `n` ScriptRuns: 3 where cheap, 1 where expensive (from 1000 in the quick
 * run, which must stay under ~15 min on 2 cores; from 5000 with `--full`).
 */
function runsFor(o: Options, n: number): number {
  return o.runs ?? (n >= (o.full ? 5000 : 1000) ? 1 : 3);
}

/** Sizes whose last run is followed by the steady-state window (scenario 4). */
const STEADY_FROM = 1000;

// ---------------------------------------------------------------------------------------------
// Targets (this machine kind, kwok node). Only here, never in tests.

const le = (value: number, text = `≤ ${value}`): Target => ({ op: "<=", value, text });
const TARGETS = {
  idleMiB: le(125),
  jobsExistSeconds: { 1000: le(25) } as Record<number, Target>,
  peakMiB: { 1000: le(180), 5000: le(300), 10000: le(300) } as Record<number, Target>,
  cpuSeconds: { 1000: le(20) } as Record<number, Target>,
  completeToSucceededP50: le(1),
  completeToSucceededP99: le(3),
  singleJobSeconds: le(1),
  steadyCpuPerMinute: { 1000: le(0.2), 10000: le(0.5) } as Record<number, Target>,
  steadyRequestsPerInterval: { 1000: le(3) } as Record<number, Target>,
  noiseAboveIdleMiB: le(10),
};
/** Sizes at which the peak must also fit under the shipped Deployment's memory limit. */
const DEPLOYMENT_LIMIT_SIZES = [5000, 10000];

/** The memory limit of the operator container in deploy/deployment.yaml, in MiB. */
async function deploymentMemoryLimitMiB(): Promise<number | undefined> {
  const doc = parseYaml(await Deno.readTextFile(`${OPERATOR_ROOT}deploy/deployment.yaml`)) as {
    spec?: {
      template?: { spec?: { containers?: { resources?: { limits?: { memory?: string } } }[] } };
    };
  };
  const text = doc.spec?.template?.spec?.containers?.[0]?.resources?.limits?.memory;
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?$/.exec(text ?? "");
  if (!m) return undefined;
  const factor: Record<string, number> = {
    "": 1 / 2 ** 20,
    Ki: 1 / 1024,
    Mi: 1,
    Gi: 1024,
    K: 1e3 / 2 ** 20,
    M: 1e6 / 2 ** 20,
    G: 1e9 / 2 ** 20,
  };
  return Number(m[1]) * factor[m[2] ?? ""];
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (msg: string) => console.error(`bench: ${msg}`);
const secs = (ms: number) => ms / 1000;

function loadAverage(): number[] {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).map(Number);
}

async function git(args: string[]): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("git", { args, cwd: OPERATOR_ROOT, stdin: "null" }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

/** Polls `done` every 50 ms; throws `what` after `timeoutMs`, or at once if `check` throws. */
async function until(
  what: string,
  timeoutMs: number,
  done: () => boolean,
  check: () => Promise<void> = async () => {},
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!done()) {
    await check();
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(50);
  }
}

function scriptRun(namespace: string, name: string): KubeObject {
  return {
    apiVersion: "script-operator.dev/v1alpha1",
    kind: "ScriptRun",
    metadata: { name, namespace },
    spec: { script: "task.sh" },
  };
}

const runsPath = (o: KubeObject) => `${GROUP_PATH}/namespaces/${o.metadata.namespace}/scriptruns`;

/** Jobs of one namespace as the bench's watch saw them, with arrival times. */
class JobView {
  /** name → first seen, Complete seen, owning ScriptRun's uid. */
  readonly jobs = new Map<string, { added: number; complete?: number; owner?: string }>();
  completeCount = 0;
  readonly byOwner = new Map<string, string>();

  onEvent = (type: string, job: KubeObject, at: number) => {
    if (type === "DELETED") return;
    const name = job.metadata.name;
    let entry = this.jobs.get(name);
    if (!entry) {
      const owner = job.metadata.ownerReferences?.find((r) => r.kind === "ScriptRun")?.uid;
      entry = { added: at, owner };
      this.jobs.set(name, entry);
      if (owner) this.byOwner.set(owner, name);
    }
    const complete = job.status?.conditions?.some((c) =>
      c.type === "Complete" && c.status === "True"
    );
    if (complete && entry.complete === undefined) {
      entry.complete = at;
      this.completeCount++;
    }
  };
}

/** ScriptRuns of one namespace as the bench's watch saw them, with arrival times. */
class RunView {
  /** uid → name, phase, when a final phase was first seen. */
  readonly runs = new Map<string, { name: string; phase?: string; finished?: number }>();
  finishedCount = 0;
  failedCount = 0;

  onEvent = (type: string, run: KubeObject, at: number) => {
    if (type === "DELETED" || !run.metadata.uid) return;
    let entry = this.runs.get(run.metadata.uid);
    if (!entry) {
      entry = { name: run.metadata.name };
      this.runs.set(run.metadata.uid, entry);
    }
    entry.phase = run.status?.phase;
    if ((entry.phase === "Succeeded" || entry.phase === "Failed") && entry.finished === undefined) {
      entry.finished = at;
      this.finishedCount++;
      if (entry.phase === "Failed") this.failedCount++;
    }
  };
}

/** A fresh control plane (kwok node only), its API and the CRD installed. */
interface Cluster {
  cp: ControlPlane;
  api: Api;
  watchers: Watcher[];
  /** Starts watching Jobs and ScriptRuns of `namespace`; resolves once both LISTs arrived. */
  watch(namespace: string): Promise<{ jobs: JobView; runs: RunView }>;
  /** Creates a namespace and waits for its `default` ServiceAccount (pods need it). */
  namespace(name: string): Promise<void>;
}

async function kubectl(cp: ControlPlane, args: string[]): Promise<void> {
  const out = await new Deno.Command(`${cp.binDir}/kubectl`, {
    args: [`--kubeconfig=${cp.kubeconfigPath}`, ...args],
    stdin: "null",
  }).output();
  if (!out.success) {
    throw new Error(`kubectl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

async function withCluster<T>(
  binDir: string,
  logDir: string | undefined,
  fn: (c: Cluster) => Promise<T>,
): Promise<T> {
  // Always the kwok node (`node: "kwok"` for harnesses that can also start a real node): the bench
  // times the operator, and a real node would add container start-up to every Job.
  const options: ControlPlaneOptions & { node: "kwok" } = {
    binDir,
    quiet: true,
    withJobs: true,
    logDir,
    node: "kwok",
  };
  const cp = await startControlPlane(options);
  const api = await Api.fromKubeconfig(cp.kubeconfigPath);
  const watchers: Watcher[] = [];
  try {
    // kwok only: a real node would make Job timings the node's, not the operator's.
    const nodes = await api.request<{ items: KubeObject[] }>("GET", "/api/v1/nodes");
    const [key, value] = KWOK_NODE_ANNOTATION.split("=");
    const other = nodes.items.filter((n) => n.metadata.annotations?.[key] !== value);
    if (other.length > 0 || nodes.items.length === 0) {
      throw new Error(
        `the bench needs a control plane whose only nodes are kwok nodes; found ${
          other.map((n) => n.metadata.name).join(", ") || "no node"
        }`,
      );
    }
    await kubectl(cp, ["apply", "--server-side", "-f", `${OPERATOR_ROOT}deploy/crd.yaml`]);
    await kubectl(cp, [
      "wait",
      "--for=condition=Established",
      "crd/scriptruns.script-operator.dev",
      "--timeout=60s",
    ]);
    const cluster: Cluster = {
      cp,
      api,
      watchers,
      async watch(namespace) {
        const jobs = new JobView();
        const runs = new RunView();
        const w1 = api.watch(`/apis/batch/v1/namespaces/${namespace}/jobs`, jobs.onEvent);
        const w2 = api.watch(`${GROUP_PATH}/namespaces/${namespace}/scriptruns`, runs.onEvent);
        watchers.push(w1, w2);
        await Promise.all([w1.synced, w2.synced]);
        return { jobs, runs };
      },
      async namespace(name) {
        await api.request("POST", "/api/v1/namespaces", {
          apiVersion: "v1",
          kind: "Namespace",
          metadata: { name },
        });
        const deadline = performance.now() + 60_000;
        while (true) {
          try {
            await api.request("GET", `/api/v1/namespaces/${name}/serviceaccounts/default`);
            return;
          } catch (e) {
            if (performance.now() > deadline) throw e;
          }
          await sleep(100);
        }
      },
    };
    return await fn(cluster);
  } finally {
    await Promise.all(watchers.map((w) => w.stop()));
    api.close();
    await cp.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Results.

/** One run of scenario 2 (and 4 when measured after it). */
interface BatchRun {
  n: number;
  run: number;
  idleRssMiB?: number;
  createSeconds?: number;
  jobsExistSeconds?: number;
  allSucceededSeconds?: number;
  jobsCompleteSeconds?: number;
  peakRssMiB?: number;
  rssAfterMiB?: number;
  cpuSeconds?: number;
  requests?: RequestCounts;
  writes?: number;
  writesPerRun?: number;
  failedRuns?: number;
  completeToSucceeded?: {
    p50: number;
    p99: number;
    max: number;
    samples: number;
    /** Runs whose Succeeded arrived before their Job's Complete on the bench's watches (→ 0). */
    negative: number;
  };
  steady?: Steady;
  error?: string;
}

/** Scenario 4: the operator at rest with N finished runs. */
interface Steady {
  /** Seconds waited after all runs finished, before the window (absent in older results). */
  settleSeconds?: number;
  /** Operator CPU per minute during that wait: the convergence's tail. */
  settleCpuPerMinute?: number;
  seconds: number;
  sampleEverySeconds: number;
  intervalMs: number;
  intervalSource: string;
  cpuSeconds: number;
  cpuPerMinute: number;
  requests: RequestCounts;
  nonWatchRequests: number;
  requestsPerInterval: number;
  /** Non-watch requests in each sample window (one poll interval since the settle wait). */
  requestsPerSample: number[];
  writes: number;
}

interface Results {
  meta: Record<string, unknown>;
  idleRssMiB: number[];
  batches: BatchRun[];
  single?: { samplesSeconds: number[]; intervalMs: number; error?: string };
  noise?: {
    configMaps: number;
    jobs: number;
    createSeconds?: number;
    idleRssMiB?: number;
    allSucceededSeconds?: number;
    rssAfterMiB?: number;
    peakRssMiB?: number;
    error?: string;
  };
}

const DEFAULT_INTERVAL_MS = 15_000;

async function operatorInterval(op: OperatorProcess): Promise<{ ms: number; source: string }> {
  const ms = await op.intervalMs();
  return ms === undefined
    ? { ms: DEFAULT_INTERVAL_MS, source: "no Starting log line: assumed the 15 s default" }
    : { ms, source: "the operator's Starting log line" };
}

/** Starts an operator, waits until ready and `settle` seconds more; returns it and its VmRSS. */
async function startSettled(
  c: Cluster,
  logPath: string,
  settleSeconds: number,
): Promise<{ op: OperatorProcess; idleMiB: number }> {
  const op = await OperatorProcess.start(
    c.cp.kubeconfigPath,
    logPath,
    OPERATOR_ROOT,
    EXTRA_FLAGS,
    EXTRA_ARGS,
  );
  try {
    await op.waitReady();
    await sleep(settleSeconds * 1000);
    await op.assertAlive();
    return { op, idleMiB: op.memory().rssKiB / MiB };
  } catch (e) {
    await op.stop();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Scenario 2 (+ 1 and 4).

async function batch(
  c: Cluster,
  o: Options,
  n: number,
  run: number,
  logDir: string,
  steady: boolean,
): Promise<BatchRun> {
  const result: BatchRun = { n, run };
  const ns = `bench-${n}`;
  await c.namespace(ns);
  const { jobs, runs } = await c.watch(ns);
  const { op, idleMiB } = await startSettled(
    c,
    `${logDir}/operator-${n}-${run}.log`,
    o.settleSeconds,
  );
  result.idleRssMiB = idleMiB;
  const alive = () => op.assertAlive();
  try {
    const objects = Array.from(
      { length: n },
      (_, i) => scriptRun(ns, `run-${String(i).padStart(5, "0")}`),
    );
    const cpu0 = await op.cpuSeconds();
    const req0 = await op.requests();
    const t0 = performance.now();
    await c.api.createAll(objects, runsPath, 32);
    result.createSeconds = secs(performance.now() - t0);
    say(`[${n} #${run}] created ${n} ScriptRuns in ${result.createSeconds.toFixed(1)} s`);

    await until(`${n} Jobs exist`, 60_000 + 300 * n, () => jobs.jobs.size >= n, alive);
    const added = [...jobs.jobs.values()].map((j) => j.added).sort((a, b) => a - b);
    result.jobsExistSeconds = secs(added[n - 1] - t0);
    say(`[${n} #${run}] all Jobs exist after ${result.jobsExistSeconds.toFixed(1)} s`);

    await until(
      `${n} ScriptRuns finished`,
      120_000 + 600 * n,
      () => runs.finishedCount >= n,
      alive,
    );
    const cpu1 = await op.cpuSeconds();
    const req1 = await op.requests();
    const mem = op.memory();
    const finished = [...runs.runs.values()].map((r) => r.finished ?? 0);
    result.allSucceededSeconds = secs(Math.max(...finished) - t0);
    result.failedRuns = runs.failedCount;
    result.cpuSeconds = cpu1 - cpu0;
    result.requests = diffCounts(req0, req1);
    result.writes = writes(result.requests);
    result.writesPerRun = result.writes / n;
    result.peakRssMiB = mem.hwmKiB / MiB;
    result.rssAfterMiB = mem.rssKiB / MiB;
    say(
      `[${n} #${run}] all ScriptRuns finished after ${
        result.allSucceededSeconds.toFixed(1)
      } s (${runs.failedCount} Failed); CPU ${result.cpuSeconds.toFixed(1)} s, peak ${
        result.peakRssMiB.toFixed(0)
      } MiB, ${result.writes} writes`,
    );

    await until(`${n} Jobs Complete`, 60_000, () => jobs.completeCount >= n - runs.failedCount);
    const completes = [...jobs.jobs.values()].map((j) => j.complete ?? 0);
    result.jobsCompleteSeconds = secs(Math.max(...completes) - t0);

    const latencies: number[] = [];
    let negative = 0;
    for (const [uid, r] of runs.runs) {
      const job = jobs.jobs.get(jobs.byOwner.get(uid) ?? "");
      if (r.phase !== "Succeeded" || r.finished === undefined || job?.complete === undefined) {
        continue;
      }
      const d = secs(r.finished - job.complete);
      if (d < 0) negative++;
      latencies.push(Math.max(0, d));
    }
    result.completeToSucceeded = {
      p50: percentile(latencies, 50)!,
      p99: percentile(latencies, 99)!,
      max: Math.max(...latencies),
      samples: latencies.length,
      negative,
    };

    if (steady && o.steadySeconds > 0) {
      // The convergence's tail is not steady state: with 1,000 runs, the first three 15 s
      // windows after the last one finished cost 0.85, 0.18 and 0.11 CPU s/min with no reconcile
      // step logged, the next ones 0.04-0.07. Wait it out, and report its CPU on its own row.
      const settle0 = await op.cpuSeconds();
      const settleT0 = performance.now();
      await sleep(o.steadySettleSeconds * 1000);
      await op.assertAlive();
      const settleCpuPerMinute = ((await op.cpuSeconds() - settle0) * 60_000) /
        (performance.now() - settleT0);
      result.steady = {
        settleSeconds: o.steadySettleSeconds,
        settleCpuPerMinute,
        ...await measureSteady(op, o.steadySeconds),
      };
      say(
        `[${n} #${run}] ${o.steadySettleSeconds} s after all finished: ${
          settleCpuPerMinute.toFixed(2)
        } CPU s/min; then steady: ${result.steady.cpuPerMinute.toFixed(2)} CPU s/min, ${
          result.steady.requestsPerInterval.toFixed(1)
        } requests per ${result.steady.intervalMs / 1000} s interval`,
      );
    }
  } catch (e) {
    result.error = e instanceof Error ? e.message : String(e);
    say(`[${n} #${run}] FAILED: ${result.error}`);
  } finally {
    await op.stop();
  }
  return result;
}

/** How often the steady window checks that the operator is alive (a /proc read, no request). */
const ALIVE_EVERY_MS = 2000;

/**
 * Scenario 4: CPU and requests over about `seconds`, rounded to whole poll intervals (so a window
 * does not catch one cycle more or less by its phase alone). /metrics is scraped once per poll
 * interval, as often as a Prometheus would (15-60 s); a scrape costs the operator about 1 ms of
 * CPU, so the earlier scrape every 2 s added about 0.03 s per minute to what it measured.
 */
async function measureSteady(op: OperatorProcess, about: number): Promise<Steady> {
  const interval = await operatorInterval(op);
  const seconds = (Math.max(1, Math.round((about * 1000) / interval.ms)) * interval.ms) / 1000;
  const t0 = performance.now();
  const cpu0 = await op.cpuSeconds();
  const req0 = await op.requests();
  let last = req0;
  const perSample: number[] = [];
  for (let i = 1; performance.now() - t0 < seconds * 1000; i++) {
    const scrapeAt = Math.min(i * interval.ms, seconds * 1000);
    while (performance.now() - t0 < scrapeAt) {
      await sleep(Math.min(ALIVE_EVERY_MS, scrapeAt - (performance.now() - t0)));
      await op.assertAlive();
    }
    const now = await op.requests();
    perSample.push(nonWatchRequests(diffCounts(last, now)));
    last = now;
  }
  const cpu1 = await op.cpuSeconds();
  const elapsed = performance.now() - t0;
  const requests = diffCounts(req0, last);
  const total = nonWatchRequests(requests);
  return {
    seconds: secs(elapsed),
    sampleEverySeconds: interval.ms / 1000,
    intervalMs: interval.ms,
    intervalSource: interval.source,
    cpuSeconds: cpu1 - cpu0,
    cpuPerMinute: ((cpu1 - cpu0) * 60_000) / elapsed,
    requests,
    nonWatchRequests: total,
    requestsPerInterval: (total * interval.ms) / elapsed,
    requestsPerSample: perSample,
    writes: writes(requests),
  };
}

// ---------------------------------------------------------------------------------------------
// Scenarios 3 and 5, on one control plane.

async function singleAndNoise(
  c: Cluster,
  o: Options,
  logDir: string,
  results: Results,
): Promise<void> {
  // Scenario 1 sample and scenario 3.
  {
    const ns = "single";
    await c.namespace(ns);
    const { jobs } = await c.watch(ns);
    const { op, idleMiB } = await startSettled(c, `${logDir}/operator-single.log`, o.settleSeconds);
    results.idleRssMiB.push(idleMiB);
    say(`idle resident memory ${idleMiB.toFixed(0)} MiB`);
    const interval = await operatorInterval(op);
    const single: NonNullable<Results["single"]> = { samplesSeconds: [], intervalMs: interval.ms };
    results.single = single;
    try {
      for (let i = 0; i < o.singleSamples; i++) {
        // A random moment within one poll interval, so a poll loop is not caught at one phase.
        await sleep(Math.random() * interval.ms);
        const t0 = performance.now();
        const created = await c.api.request<KubeObject>(
          "POST",
          runsPath(scriptRun(ns, `single-${i}`)),
          scriptRun(ns, `single-${i}`),
        );
        const uid = created.metadata.uid!;
        await until(
          `the Job of single-${i}`,
          120_000,
          () => jobs.byOwner.has(uid),
          () => op.assertAlive(),
        );
        const job = jobs.jobs.get(jobs.byOwner.get(uid)!)!;
        single.samplesSeconds.push(secs(job.added - t0));
        say(
          `single run ${i + 1}/${o.singleSamples}: Job after ${secs(job.added - t0).toFixed(2)} s`,
        );
      }
    } catch (e) {
      single.error = e instanceof Error ? e.message : String(e);
      say(`single runs FAILED: ${single.error}`);
    } finally {
      await op.stop();
    }
  }

  // Scenario 5.
  const noise: NonNullable<Results["noise"]> = {
    configMaps: o.noiseConfigMaps,
    jobs: o.noiseJobs,
  };
  results.noise = noise;
  let op: OperatorProcess | undefined;
  try {
    await c.namespace("noise");
    const t0 = performance.now();
    const filler = "x".repeat(1024);
    await c.api.createAll(
      Array.from({ length: o.noiseConfigMaps }, (_, i) => ({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: `noise-${i}`, namespace: "noise", labels: { app: "noise" } },
        data: { "payload.txt": filler },
      })),
      () => "/api/v1/namespaces/noise/configmaps",
      64,
    );
    // Suspended (no pods) and managed by someone else (the job controller leaves them alone).
    await c.api.createAll(
      Array.from({ length: o.noiseJobs }, (_, i) => ({
        apiVersion: "batch/v1",
        kind: "Job",
        metadata: { name: `noise-${i}`, namespace: "noise", labels: { app: "noise" } },
        spec: {
          suspend: true,
          managedBy: "bench.script-operator.dev/noise",
          template: {
            spec: {
              restartPolicy: "Never",
              containers: [{ name: "main", image: "busybox:1.36", command: ["true"] }],
            },
          },
        },
      })),
      () => "/apis/batch/v1/namespaces/noise/jobs",
      64,
    );
    noise.createSeconds = secs(performance.now() - t0);
    say(
      `noise: ${o.noiseConfigMaps} ConfigMaps and ${o.noiseJobs} Jobs created in ${
        noise.createSeconds.toFixed(1)
      } s`,
    );
    const ns = "noise-runs";
    await c.namespace(ns);
    const { runs } = await c.watch(ns);
    const started = await startSettled(c, `${logDir}/operator-noise.log`, o.settleSeconds);
    op = started.op;
    noise.idleRssMiB = started.idleMiB;
    const t1 = performance.now();
    await c.api.createAll(
      Array.from({ length: 10 }, (_, i) => scriptRun(ns, `noisy-${i}`)),
      runsPath,
    );
    const alive = op.assertAlive.bind(op);
    await until(
      "10 ScriptRuns finished among the noise",
      300_000,
      () => runs.finishedCount >= 10,
      alive,
    );
    const finished = [...runs.runs.values()].map((r) => r.finished ?? 0);
    noise.allSucceededSeconds = secs(Math.max(...finished) - t1);
    const mem = op.memory();
    noise.rssAfterMiB = mem.rssKiB / MiB;
    noise.peakRssMiB = mem.hwmKiB / MiB;
    say(
      `noise: 10 runs finished after ${noise.allSucceededSeconds.toFixed(1)} s; resident ${
        noise.rssAfterMiB.toFixed(0)
      } MiB`,
    );
  } catch (e) {
    noise.error = e instanceof Error ? e.message : String(e);
    say(`noise FAILED: ${noise.error}`);
  } finally {
    await op?.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// The table.

function rowsOf(results: Results, o: Options, limitMiB: number | undefined): Row[] {
  const rows: Row[] = [];
  const idle = summarize(results.idleRssMiB);
  rows.push({
    measure: `idle resident memory (VmRSS ${o.settleSeconds} s after ready), MiB`,
    runs: `${results.idleRssMiB.length} processes`,
    summary: idle,
    digits: 0,
    target: TARGETS.idleMiB,
  });
  for (const n of o.sizes) {
    const bs = results.batches.filter((b) => b.n === n);
    const runs = `${bs.length} run${bs.length === 1 ? "" : "s"}`;
    const errors = bs.filter((b) => b.error).length;
    const note = errors ? `${errors} run(s) failed, see JSON` : undefined;
    const row = (
      measure: string,
      pick: (b: BatchRun) => number | undefined,
      digits: number,
      target?: Target,
    ) => rows.push({ measure, runs, summary: summarize(bs.map(pick)), digits, target, note });
    const N = n.toLocaleString("en-US");
    row(`${N} at once: the bench's POSTs done (32 parallel), s`, (b) => b.createSeconds, 1);
    row(
      `${N} at once: all Jobs exist after the first POST, s`,
      (b) => b.jobsExistSeconds,
      1,
      TARGETS.jobsExistSeconds[n],
    );
    row(
      `${N} at once: peak resident memory (VmHWM), MiB`,
      (b) => b.peakRssMiB,
      0,
      TARGETS.peakMiB[n],
    );
    if (DEPLOYMENT_LIMIT_SIZES.includes(n) && limitMiB !== undefined) {
      row(
        `${N} at once: peak resident memory vs the Deployment's limit, MiB`,
        (b) => b.peakRssMiB,
        0,
        le(limitMiB, `≤ ${limitMiB.toFixed(0)} (deploy/)`),
      );
    }
    row(
      `${N} at once: operator CPU until all finished, s`,
      (b) => b.cpuSeconds,
      1,
      TARGETS.cpuSeconds[n],
    );
    row(`${N} at once: operator writes per ScriptRun`, (b) => b.writesPerRun, 1);
    row(
      `${N} at once: all ScriptRuns Succeeded after the first POST, s`,
      (b) => b.allSucceededSeconds,
      1,
    );
    row(
      `${N} at once: all Jobs Complete (kube-controller-manager's pace), s`,
      (b) => b.jobsCompleteSeconds,
      1,
    );
    row(
      `${N} at once: Job Complete → ScriptRun Succeeded p50, s`,
      (b) => b.completeToSucceeded?.p50,
      2,
      TARGETS.completeToSucceededP50,
    );
    row(
      `${N} at once: Job Complete → ScriptRun Succeeded p99, s`,
      (b) => b.completeToSucceeded?.p99,
      2,
      TARGETS.completeToSucceededP99,
    );
    const steady = bs.filter((b) => b.steady);
    if (steady.length > 0) {
      const s = steady[0].steady!;
      const sruns = `${steady.length} × ${s.seconds.toFixed(0)} s`;
      if (s.settleSeconds !== undefined) {
        rows.push({
          measure: `first ${s.settleSeconds} s after all ${N} finished: operator CPU per minute, s`,
          runs: `${steady.length} × ${s.settleSeconds} s`,
          summary: summarize(steady.map((b) => b.steady!.settleCpuPerMinute)),
          digits: 2,
        });
      }
      rows.push({
        measure: `steady at ${N} finished: operator CPU per minute, s`,
        runs: sruns,
        summary: summarize(steady.map((b) => b.steady!.cpuPerMinute)),
        digits: 2,
        target: TARGETS.steadyCpuPerMinute[n],
      });
      rows.push({
        measure: `steady at ${N} finished: requests per ${
          s.intervalMs / 1000
        } s interval, watches excluded`,
        runs: sruns,
        summary: summarize(steady.map((b) => b.steady!.requestsPerInterval)),
        digits: 1,
        target: TARGETS.steadyRequestsPerInterval[n],
      });
    }
  }
  const single = results.single;
  if (single) {
    rows.push({
      measure: "one new ScriptRun on an idle operator → its Job exists, s",
      runs: `${single.samplesSeconds.length} sequential runs`,
      summary: summarize(single.samplesSeconds),
      digits: 2,
      target: TARGETS.singleJobSeconds,
      note: single.error ? "failed, see JSON" : undefined,
    });
  }
  const noise = results.noise;
  if (noise) {
    const what = `${noise.configMaps.toLocaleString("en-US")} other ConfigMaps, ${
      noise.jobs.toLocaleString("en-US")
    } other Jobs`;
    const note = noise.error ? "failed, see JSON" : undefined;
    rows.push({
      measure: `${what}: 10 new runs → all Succeeded, s`,
      runs: "1 run",
      summary: summarize([noise.allSucceededSeconds]),
      digits: 1,
      note,
    });
    rows.push({
      measure: `${what}: resident memory after them, MiB`,
      runs: "1 run",
      summary: summarize([noise.rssAfterMiB]),
      digits: 0,
      note,
    });
    rows.push({
      measure: `${what}: resident memory above the idle median, MiB`,
      runs: "1 run",
      summary: summarize([
        noise.rssAfterMiB !== undefined && idle ? noise.rssAfterMiB - idle.median : undefined,
      ]),
      digits: 0,
      target: TARGETS.noiseAboveIdleMiB,
      note,
    });
  }
  return rows;
}

/** One line: the operator's requests by method until all finished, for the median run of each size. */
function writesByMethod(results: Results, o: Options): string {
  const parts = o.sizes.flatMap((n) => {
    const bs = results.batches.filter((b) => b.n === n && b.requests)
      .sort((a, b) => a.writes! - b.writes!);
    const mid = bs[Math.floor((bs.length - 1) / 2)];
    if (!mid) return [];
    const counts = Object.entries(mid.requests!).sort(([a], [b]) => a.localeCompare(b))
      .map(([m, c]) => `${m} ${c}`).join(", ");
    return [`${n.toLocaleString("en-US")}: ${counts}`];
  });
  return `Requests until all finished, by method (median run): ${parts.join("; ") || "-"}`;
}

/** The printed report of some results: header lines, the table, requests by method. */
function report(results: Results): string {
  const m = results.meta as {
    started: string;
    commit?: string;
    dirty?: boolean;
    deno: string;
    nproc: number;
    loadAverageStart: number[];
    loadAverageEnd: number[];
    minutes: number;
    operatorFlags: string[];
    options: Options;
    deploymentMemoryLimitMiB?: number;
  };
  const o = m.options;
  const steady = results.batches.find((b) => b.steady)?.steady;
  const header = [
    `script-operator bench, ${m.started.slice(0, 16)}Z, commit ${
      String(m.commit ?? "?").slice(0, 10)
    }${m.dirty ? " (dirty)" : ""}; Deno ${m.deno}; kwok node`,
    `${m.nproc} cores; load average (1, 5, 15 min) at start ${
      m.loadAverageStart.join(" ")
    }, at end ${m.loadAverageEnd.join(" ")}; took ${m.minutes.toFixed(1)} min`,
    `operator: deno run ${m.operatorFlags.join(" ")} main.ts` +
    (steady ? ` (poll interval ${steady.intervalMs / 1000} s, from ${steady.intervalSource})` : ""),
    `runs per size: ${o.sizes.map((n) => `${n}: ${runsFor(o, n)}`).join(", ")}; steady state ` +
    (steady?.settleSeconds !== undefined
      ? `from ${steady.settleSeconds} s after all finished, `
      : "") +
    `/metrics scraped every ${steady?.sampleEverySeconds ?? "-"} s; latencies from the bench's ` +
    `own watch timestamps`,
  ];
  return [
    header.map((l) => `> ${l}`).join("\n"),
    "",
    markdownTable(rowsOf(results, o, m.deploymentMemoryLimitMiB)),
    "",
    writesByMethod(results, o),
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// Main.

async function main(): Promise<number> {
  const o = parseOptions(Deno.args);
  EXTRA_FLAGS = o.denoFlags;
  EXTRA_ARGS = o.operatorArgs;
  if (o.operator) {
    OPERATOR_ROOT = await Deno.realPath(o.operator).then((p) => `${p}/`).catch(() => {
      throw new Error(`--operator=${o.operator}: no such folder`);
    });
    if (!(await Deno.stat(`${OPERATOR_ROOT}main.ts`).catch(() => undefined))) {
      throw new Error(
        `--operator=${o.operator}: no main.ts there; give a script-operator checkout`,
      );
    }
  }
  if (o.table) {
    console.log(report(JSON.parse(await Deno.readTextFile(o.table)) as Results));
    return 0;
  }
  // Whatever the test harness learns from the environment (another cluster, a real node), the
  // bench always starts its own control planes with the kwok node only.
  for (const name of Object.keys(Deno.env.toObject())) {
    if (name.startsWith("SCRIPT_OPERATOR_TEST_")) Deno.env.delete(name);
  }
  const stamp = new Date().toISOString().replace(/\..*/, "").replaceAll(":", "-");
  const out = o.out ?? `${ROOT}bench/results/${stamp}.json`;
  const keptLogs = o.keepLogs ? out.replace(/\.json$/, "") + "-logs" : undefined;
  const logDir = keptLogs ?? (await Deno.makeTempDir({ prefix: "script-operator-bench-" }));
  await Deno.mkdir(logDir, { recursive: true });
  const started = new Date();
  const loadStart = loadAverage();
  const results: Results = {
    meta: {
      started: started.toISOString(),
      nproc: navigator.hardwareConcurrency,
      loadAverageStart: loadStart,
      deno: Deno.version.deno,
      commit: await git(["rev-parse", "HEAD"]),
      dirty: ((await git(["status", "--porcelain"])) ?? "") !== "",
      operatorFlags: [...(await startTaskRunFlags(OPERATOR_ROOT)), ...o.denoFlags],
      operatorArgs: o.operatorArgs,
      operatorRoot: OPERATOR_ROOT,
      options: o,
      node: "kwok",
    },
    idleRssMiB: [],
    batches: [],
  };
  say(
    `${navigator.hardwareConcurrency} cores, load average ${loadStart.join(" ")}; sizes ${
      o.sizes.join(", ")
    }; logs in ${logDir}`,
  );
  const binDir = await ensureBinaries();
  const cpLogs = (name: string) => keptLogs ? `${keptLogs}/control-plane-${name}` : undefined;

  if (!o.noSingle) {
    await withCluster(binDir, cpLogs("single"), (c) => singleAndNoise(c, o, logDir, results))
      .catch((e) => {
        const error = message(e);
        say(`single runs and noise FAILED: ${error}`);
        results.single ??= { samplesSeconds: [], intervalMs: 0, error };
        results.noise ??= { configMaps: o.noiseConfigMaps, jobs: o.noiseJobs, error };
      });
  }
  for (const n of o.sizes) {
    const runs = runsFor(o, n);
    for (let run = 1; run <= runs; run++) {
      say(`${n} ScriptRuns, run ${run}/${runs}`);
      const result: BatchRun = await withCluster(
        binDir,
        cpLogs(`${n}-${run}`),
        (c) =>
          batch(
            c,
            o,
            n,
            run,
            logDir,
            run === runs && n >= Math.min(STEADY_FROM, Math.max(...o.sizes)),
          ),
      ).catch((e) => {
        say(`[${n} #${run}] FAILED: ${message(e)}`);
        return { n, run, error: message(e) };
      });
      results.batches.push(result);
      if (result.idleRssMiB !== undefined) results.idleRssMiB.push(result.idleRssMiB);
    }
  }

  const loadEnd = loadAverage();
  results.meta.loadAverageEnd = loadEnd;
  results.meta.finished = new Date().toISOString();
  results.meta.minutes = (Date.now() - started.getTime()) / 60_000;
  results.meta.deploymentMemoryLimitMiB = await deploymentMemoryLimitMiB();
  await Deno.mkdir(out.replace(/\/[^/]*$/, ""), { recursive: true });
  await Deno.writeTextFile(out, JSON.stringify(results, null, 2) + "\n");
  if (!keptLogs) await Deno.remove(logDir, { recursive: true }).catch(() => {});
  console.log(report(results));
  console.log(`JSON: ${out}${keptLogs ? `; logs: ${keptLogs}` : ""}`);
  const failed = results.batches.some((b) => b.error) || results.single?.error ||
    results.noise?.error;
  return failed ? 1 : 0;
}

if (import.meta.main) {
  try {
    Deno.exit(Deno.args.includes("--outage") ? await outageMain(Deno.args) : await main());
  } catch (e) {
    console.error(`bench: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
