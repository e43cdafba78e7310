/**
 * `deno task bench`: the operator's steady-state cost against a real local control plane, for a
 * few ScriptRun counts. For each count it prints the cycle time (median of 10 steady cycles),
 * requests and writes per steady cycle, and the resident memory of a real operator process
 * (`deno run` with the start task's flags) after it has reconciled them. Prints a table; no
 * assertion (targets live here, not in tests).
 * @module
 */
import { KubeConfig } from "@kubernetes/client-node";
import { stringify } from "yaml";
import { startControlPlane } from "../tests/harness/control_plane.ts";
import { ClientNodeKube } from "../src/kube.ts";
import { logger } from "../src/log.ts";
import { Reconciler } from "../src/reconciler.ts";
import { loadScripts } from "../src/scripts.ts";

const COUNTS = (Deno.args[0] ?? "1,50,200").split(",").map(Number);
const ROOT = new URL("../", import.meta.url).pathname;

const cp = await startControlPlane({ quiet: true });
const kubectl = async (args: string[], stdin?: string) => {
  const child = new Deno.Command(`${cp.binDir}/kubectl`, {
    args: [`--kubeconfig=${cp.kubeconfigPath}`, ...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  if (!out.success) {
    throw new Error(`kubectl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
};

function rssMiB(pid: number): { rss: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (key: string) => Number(status.match(new RegExp(`${key}:\\s+(\\d+)`))?.[1] ?? 0);
  return { rss: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows: string[][] = [];
try {
  await kubectl(["apply", "-f", `${ROOT}deploy/crd.yaml`]);
  await kubectl(["wait", "--for=condition=Established", "crd/scriptruns.script-operator.dev"]);
  const scripts = await loadScripts();
  const flags = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks.start.split(/\s+/)
    .filter((w: string) => w.startsWith("--allow-"));
  for (const n of COUNTS) {
    const ns = `bench-${n}`;
    await kubectl(["create", "namespace", ns]);
    const docs = Array.from({ length: n }, (_, i) =>
      stringify({
        apiVersion: "script-operator.dev/v1alpha1",
        kind: "ScriptRun",
        metadata: { name: `run-${i}`, namespace: ns },
        spec: { script: "task.sh" },
      }));
    await kubectl(["apply", "-f", "-"], docs.join("---\n"));
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    let requests = 0;
    const kube = new ClientNodeKube(kc, { observe: () => requests++ });
    const reconciler = new Reconciler({ kube, scripts, log: logger("bench"), namespaces: [ns] });
    const t0 = performance.now();
    while (true) {
      await reconciler.cycle();
      // Converged: every run Succeeded with its completion time (the Job's final Complete seen).
      const statuses = await kubectl([
        "-n",
        ns,
        "get",
        "scriptruns",
        "-o",
        'jsonpath={range .items[*]}{.status.phase}/{.status.completionTime}{"\\n"}{end}',
      ]);
      const done = statuses.split("\n").filter((r) => /^Succeeded\/\S+/.test(r)).length;
      if (done === n) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const converge = (performance.now() - t0) / 1000;
    const times: number[] = [];
    let writes = 0;
    requests = 0;
    for (let i = 0; i < 10; i++) {
      const s = performance.now();
      writes += (await reconciler.cycle()).writes;
      times.push(performance.now() - s);
    }
    // The real process: start it, let it reconcile the converged runs for a few cycles.
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...flags,
        `${ROOT}main.ts`,
        `--kubeconfig=${cp.kubeconfigPath}`,
        `--namespace=${ns}`,
        "--interval=1s",
        "--log-format=json",
        "--health-probe-bind-address=0",
        "--metrics-bind-address=0",
      ],
      stdout: "null",
      stderr: "null",
      stdin: "null",
    }).spawn();
    await new Promise((r) => setTimeout(r, 8000));
    const mem = rssMiB(child.pid);
    child.kill("SIGTERM");
    await child.status;
    rows.push([
      String(n),
      converge.toFixed(1),
      median(times).toFixed(1),
      (requests / 10).toFixed(1),
      String(writes / 10),
      mem.rss.toFixed(0),
      mem.peak.toFixed(0),
    ]);
    await kubectl(["delete", "namespace", ns, "--wait=false"]);
  }
} finally {
  await cp.stop();
}

const header = [
  "ScriptRuns",
  "converge s",
  "steady cycle ms (median)",
  "requests/cycle",
  "writes/cycle",
  "process RSS MiB",
  "peak RSS MiB",
];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells: string[]) =>
  "| " + cells.map((c, i) => c.padStart(widths[i])).join(" | ") + " |";
console.log(line(header));
console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
for (const r of rows) console.log(line(r));
console.log(
  `(Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores; one namespace scope; kwok node)`,
);
