/**
 * Issue 10, before/after: a real operator process (`deno run` with the start task's flags) from
 * each given source tree, 1,000 ScriptRuns applied at once, and the seconds until all their Jobs
 * exist, the process's peak resident memory (VmHWM) and the CPU seconds it used meanwhile. Trees
 * run alternately on one fresh local control plane (kwok node), `--repeat` times each.
 *
 * `deno run -A bench/converge_compare.ts --roots=/path/a,/path/b [--n=1000] [--repeat=2]`
 * (e.g. a `git archive main | tar -x -C /tmp/before` copy and this tree).
 * @module
 */
import { startControlPlane } from "../tests/harness/control_plane.ts";
import { flagValues } from "./flags.ts";

const args = flagValues(Deno.args);
const ROOTS = (args.roots ?? new URL("..", import.meta.url).pathname).split(",");
const N = Number(args.n ?? 1000);
const REPEAT = Number(args.repeat ?? 2);

const cp = await startControlPlane({ quiet: true });
async function kubectl(argv: string[], stdin?: string): Promise<string> {
  const c = new Deno.Command(`${cp.binDir}/kubectl`, {
    args: [`--kubeconfig=${cp.kubeconfigPath}`, ...argv],
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const w = c.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const o = await c.output();
  if (!o.success) throw new Error(new TextDecoder().decode(o.stderr));
  return new TextDecoder().decode(o.stdout);
}

function procStats(pid: number) {
  const s = Deno.readTextFileSync(`/proc/${pid}/status`);
  const mib = (k: string) => Number(s.match(new RegExp(`${k}:\\s+(\\d+)`))?.[1] ?? 0) / 1024;
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return {
    rss: mib("VmRSS"),
    peak: mib("VmHWM"),
    cpu: (Number(stat[11]) + Number(stat[12])) / 100,
  };
}

async function once(root: string, k: number) {
  const ns = `converge-${k}-${crypto.randomUUID().slice(0, 6)}`;
  await kubectl(["create", "namespace", ns]);
  const flags = JSON.parse(await Deno.readTextFile(`${root}/deno.json`)).tasks.start.split(/\s+/)
    .filter((w: string) => w.startsWith("--allow-"));
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...flags,
      `${root}/main.ts`,
      `--kubeconfig=${cp.kubeconfigPath}`,
      `--namespace=${ns}`,
      "--log-format=json",
      "--health-probe-bind-address=0",
      "--metrics-bind-address=0",
    ],
    cwd: root,
    stdout: "null",
    stderr: "null",
    stdin: "null",
  }).spawn();
  try {
    await new Promise((r) => setTimeout(r, 4000));
    const before = procStats(child.pid);
    const items = Array.from({ length: N }, (_, i) => ({
      apiVersion: "script-operator.dev/v1alpha1",
      kind: "ScriptRun",
      metadata: { name: `run-${i}`, namespace: ns },
      spec: { script: "task.sh" },
    }));
    const t0 = performance.now();
    await kubectl(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items }));
    while (true) {
      const jobs = (await kubectl(["-n", ns, "get", "jobs", "-o", "name"])).split("\n")
        .filter(Boolean).length;
      if (jobs >= N) break;
      if (performance.now() - t0 > 600_000) throw new Error(`${root}: ${jobs} Jobs after 600 s`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const seconds = (performance.now() - t0) / 1000;
    const after = procStats(child.pid);
    return { seconds, idle: before.rss, peak: after.peak, cpu: after.cpu - before.cpu };
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await kubectl(["delete", "namespace", ns, "--wait=false"]);
  }
}

try {
  await kubectl(["apply", "-f", new URL("../deploy/crd.yaml", import.meta.url).pathname]);
  await kubectl(["wait", "--for=condition=Established", "crd/scriptruns.script-operator.dev"]);
  console.log(
    `| tree | run | all ${N} Jobs exist (s) | idle RSS (MiB) | peak RSS (MiB) | operator CPU (s) |`,
  );
  console.log("|---|---|---|---|---|---|");
  let k = 0;
  for (let r = 0; r < REPEAT; r++) {
    for (const root of ROOTS) {
      const m = await once(root, k++);
      console.log(
        `| ${root} | ${r + 1} | ${m.seconds.toFixed(1)} | ${m.idle.toFixed(0)} | ${
          m.peak.toFixed(0)
        } | ${m.cpu.toFixed(1)} |`,
      );
    }
  }
} finally {
  await cp.stop();
}
