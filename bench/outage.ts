/**
 * `deno task bench --outage`: the operator through an API server outage. On a fresh local control
 * plane (kwok node), N finished ScriptRuns are watched; then the API server's port refuses
 * connections for a while (a TCP proxy between operator and server stops listening, as during a
 * control-plane upgrade). Prints, before and after the outage: a new run → its Job (seconds), the
 * LISTs the operator sent in the minute after (its debug "Sending request" lines), and RSS.
 * @module
 */
import { startControlPlane } from "../tests/harness/control_plane.ts";
import { startPauseProxy } from "../tests/harness/pause_proxy.ts";
import { Api, type KubeObject } from "./api.ts";
import { OperatorProcess } from "./operator_process.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const GROUP_PATH = "/apis/script-operator.dev/v1alpha1";

const USAGE = `deno task bench --outage [--runs=N] [--outage-seconds=S] [--keep-logs]

  --runs=N            finished ScriptRuns watched during the outage (default 1000)
  --outage-seconds=S  how long connections are refused (default 20)
  --keep-logs         keep the operator's log (its path is printed)`;

interface OutageOptions {
  runs: number;
  outageSeconds: number;
  keepLogs: boolean;
}

function parse(args: string[]): OutageOptions {
  const o: OutageOptions = { runs: 1000, outageSeconds: 20, keepLogs: false };
  for (const arg of args) {
    const [name, value] = arg.split("=", 2);
    if (name === "--outage") continue;
    else if (name === "--runs" && Number(value) > 0) o.runs = Number(value);
    else if (name === "--outage-seconds" && Number(value) > 0) o.outageSeconds = Number(value);
    else if (name === "--keep-logs") o.keepLogs = true;
    else throw new Error(`unknown or bad argument ${arg}\n\n${USAGE}`);
  }
  return o;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function run(namespace: string, name: string): KubeObject {
  return {
    apiVersion: "script-operator.dev/v1alpha1",
    kind: "ScriptRun",
    metadata: { name, namespace },
    spec: { script: "task.sh", env: [{ name: "KWOK_DURATION", value: "1s" }] },
  };
}

/** Creates run `name` and returns the seconds until a Job of it exists. */
async function newRunToJob(api: Api, namespace: string, name: string): Promise<number> {
  const t0 = performance.now();
  await api.request(
    "POST",
    `${GROUP_PATH}/namespaces/${namespace}/scriptruns`,
    run(namespace, name),
  );
  const selector = encodeURIComponent(`script-operator.dev/scriptrun=${name}`);
  while (performance.now() - t0 < 120_000) {
    const jobs = await api.request<{ items: unknown[] }>(
      "GET",
      `/apis/batch/v1/namespaces/${namespace}/jobs?labelSelector=${selector}`,
    );
    if (jobs.items.length > 0) return (performance.now() - t0) / 1000;
    await sleep(20);
  }
  throw new Error(`no Job for ${namespace}/${name} after 120 s`);
}

/** LISTs in the operator's log lines from `from` on (GETs of a collection without watch). */
async function listsSince(logPath: string, from: number): Promise<{ lists: number; end: number }> {
  const lines = (await Deno.readTextFile(logPath)).split("\n");
  let lists = 0;
  for (const line of lines.slice(from)) {
    if (!line.includes('"Sending request"')) continue;
    try {
      const l = JSON.parse(line);
      const url = String(l.url);
      if (l.method !== "GET" || /[?&]watch=/.test(url)) continue;
      if (/\/(scriptruns|jobs|configmaps|pods|events)(\?|$)/.test(url)) lists++;
    } catch { /* not JSON */ }
  }
  return { lists, end: lines.length };
}

const mib = (kib: number) => Math.round(kib / 1024);

/** Runs the outage scenario; returns the exit code. */
export async function outageMain(args: string[]): Promise<number> {
  const o = parse(args);
  for (const name of Object.keys(Deno.env.toObject())) {
    if (name.startsWith("SCRIPT_OPERATOR_TEST_")) Deno.env.delete(name);
  }
  const logDir = await Deno.makeTempDir({ prefix: "script-operator-outage-" });
  const cp = await startControlPlane({ quiet: true, withJobs: true, node: "kwok", logDir });
  const api = await Api.fromKubeconfig(cp.kubeconfigPath);
  const proxy = await startPauseProxy({ kubeconfig: cp.kubeconfigPath });
  let op: OperatorProcess | undefined;
  try {
    const apply = new Deno.Command("kubectl", {
      args: [
        `--kubeconfig=${cp.kubeconfigPath}`,
        "apply",
        "--server-side",
        "-f",
        `${ROOT}deploy/crd.yaml`,
      ],
    });
    if (!(await apply.output()).success) throw new Error("kubectl apply deploy/crd.yaml failed");
    await sleep(2_000);
    const ns = "outage";
    await api.request("POST", "/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: ns },
    });
    while (true) {
      try {
        await api.request("GET", `/api/v1/namespaces/${ns}/serviceaccounts/default`);
        break;
      } catch {
        await sleep(200);
      }
    }
    op = await OperatorProcess.start(proxy.kubeconfig, `${logDir}/operator.log`, ROOT, [], [
      "--log-level=debug",
    ]);
    await op.waitReady(120_000);
    const names = Array.from({ length: o.runs }, (_, i) => `done-${i}`);
    for (let i = 0; i < names.length; i += 50) {
      await Promise.all(
        names.slice(i, i + 50).map((n) =>
          api.request("POST", `${GROUP_PATH}/namespaces/${ns}/scriptruns`, run(ns, n))
        ),
      );
    }
    while (true) {
      const list = await api.request<{ items: { status?: { phase?: string } }[] }>(
        "GET",
        `${GROUP_PATH}/namespaces/${ns}/scriptruns`,
      );
      const done = list.items.filter((r) => r.status?.phase === "Succeeded").length;
      if (done >= o.runs) break;
      await sleep(2_000);
    }
    await sleep(30_000);
    const before = {
      jobSeconds: await newRunToJob(api, ns, "before"),
      rssMiB: mib(op.memory().rssKiB),
    };
    await sleep(5_000);
    proxy.refuse();
    await sleep(o.outageSeconds * 1000);
    const logMark = (await Deno.readTextFile(op.logPath)).split("\n").length;
    proxy.answer();
    const after = { jobSeconds: await newRunToJob(api, ns, "after") };
    await sleep(60_000);
    const { lists } = await listsSince(op.logPath, logMark);
    const log = await Deno.readTextFile(op.logPath);
    const memory = op.memory();
    const rows = [
      ["finished runs watched", String(o.runs)],
      ["outage (connections refused)", `${o.outageSeconds} s`],
      ["new run → Job before the outage", `${before.jobSeconds.toFixed(2)} s`],
      ["new run → Job, created as the server answers again", `${after.jobSeconds.toFixed(2)} s`],
      ["LISTs in the minute after the outage", String(lists)],
      ['"Watch unavailable, using plain LISTs" logged', String(log.includes("plain LISTs"))],
      ["RSS before the outage", `${before.rssMiB} MiB`],
      ["RSS a minute after", `${mib(memory.rssKiB)} MiB`],
      ["peak RSS (VmHWM)", `${mib(memory.hwmKiB)} MiB`],
    ];
    console.log("| figure | value |\n| --- | --- |");
    for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
    if (o.keepLogs) console.log(`operator log: ${op.logPath}`);
    return 0;
  } finally {
    await op?.stop();
    await proxy.close();
    api.close();
    await cp.stop();
    if (!o.keepLogs) await Deno.remove(logDir, { recursive: true }).catch(() => {});
  }
}
