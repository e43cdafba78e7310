/**
 * Helpers of the real-node suite: tests that need pods to really run (containerd + kubelet), run
 * by `deno task test` on a control plane with a real node (see tests/harness/real_node.ts).
 * @module
 */
import type { ScriptRun } from "../../src/types.ts";
import { applyRun, getRun, type OperatorProcess, startOperator } from "../harness/operator.ts";
import {
  clusterTest,
  jobsMode,
  kubectl,
  kubectlJson,
  NotYet,
  testKubeconfig,
  waitFor,
} from "../harness/test_env.ts";

const ROOT = new URL("../../", import.meta.url);
const FIXTURE_SCRIPTS = new URL("scripts/", import.meta.url);

/** The real node's IP (its bridge's gateway: pods reach the host there), when the runner set it. */
export const nodeIp: string | undefined = Deno.env.get("SCRIPT_OPERATOR_TEST_NODE_IP") ||
  undefined;

/** The kubelet's cgroup root on this host, when the runner started the real node. */
export const nodeCgroupRoot: string | undefined =
  Deno.env.get("SCRIPT_OPERATOR_TEST_NODE_CGROUP_ROOT") || undefined;

/** Options of {@linkcode realNodeTest}. */
export interface RealNodeTestOptions {
  /** The test reads the node's host (cgroups, bridge): only on the runner's own real node. */
  needsLocalNode?: boolean;
}

/**
 * Registers a test that needs containers to really run. Skipped, with one `SKIP <name>: <reason>`
 * line, when the cluster's Jobs are not run by a real node (kwok, none) or, with
 * `needsLocalNode`, when the node is not the runner's own.
 */
export function realNodeTest(
  name: string,
  options: RealNodeTestOptions,
  fn: () => Promise<void>,
): void {
  let reason: string | undefined;
  if (testKubeconfig && jobsMode !== "real") {
    reason = `SCRIPT_OPERATOR_TEST_JOBS=${jobsMode}: no real node runs the containers`;
  } else if (testKubeconfig && options.needsLocalNode && (!nodeIp || !nodeCgroupRoot)) {
    reason = "needs the real node started by `deno task test` (it reads the node's host)";
  }
  if (reason) {
    console.log(`SKIP ${name}: ${reason}`);
    Deno.test({ name, ignore: true, fn });
    return;
  }
  // Without a cluster clusterTest prints the SKIP line (with the runner's reason).
  clusterTest(name, { needsJobs: true, sanitizeResources: false, sanitizeOps: false }, fn);
}

/** A copy of the repository's operator (main.ts, src/, deno.json) with its own scripts/. */
export interface OperatorTree extends AsyncDisposable {
  /** Root folder of the copy. */
  root: URL;
  /** Writes (or replaces) `scripts/<name>` in the copy. */
  writeScript(name: string, content: string): Promise<void>;
  /** Reads `scripts/<name>` of the copy. */
  readScript(name: string): Promise<string>;
  /** Starts this copy's operator for one namespace (reconcile every second). */
  start(namespace: string): Promise<OperatorProcess>;
}

async function copyDir(from: URL, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) {
      await copyDir(new URL(`${entry.name}/`, from), `${to}/${entry.name}`);
    } else if (entry.isFile) {
      await Deno.copyFile(new URL(entry.name, from), `${to}/${entry.name}`);
    }
  }
}

/**
 * Copies the operator's code with the repository's scripts plus the real-node suite's fixtures
 * (tests/real_node/scripts/), so a test can add or change a script the way a user does (edit
 * scripts/, restart the operator) without touching the repository.
 */
export async function operatorTree(): Promise<OperatorTree> {
  const dir = await Deno.makeTempDir({ prefix: "script-operator-tree-" });
  for (const file of ["main.ts", "deno.json", "deno.lock"]) {
    await Deno.copyFile(new URL(file, ROOT), `${dir}/${file}`);
  }
  await copyDir(new URL("src/", ROOT), `${dir}/src`);
  await copyDir(new URL("scripts/", ROOT), `${dir}/scripts`);
  await copyDir(FIXTURE_SCRIPTS, `${dir}/scripts`);
  const root = new URL(`file://${dir}/`);
  const operators: OperatorProcess[] = [];
  return {
    root,
    writeScript: (name, content) => Deno.writeTextFile(`${dir}/scripts/${name}`, content),
    readScript: (name) => Deno.readTextFile(`${dir}/scripts/${name}`),
    async start(namespace) {
      const op = await startOperator([`--namespace=${namespace}`, "--interval=1s"], { root });
      operators.push(op);
      return op;
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(operators.map((op) => op.stop()));
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Applying and reading ScriptRuns, as every suite does. */
export { applyRun, getRun };

/** Waits until the run is Succeeded or Failed (optionally: with another runHash than `notHash`). */
export function waitFinished(
  ns: string,
  name: string,
  timeoutMs = 90_000,
  notHash?: string,
): Promise<ScriptRun> {
  return waitFor(async () => {
    const run = await getRun(ns, name);
    const phase = run.status?.phase;
    if (notHash !== undefined && run.status?.runHash === notHash) return undefined;
    return phase === "Succeeded" || phase === "Failed" ? run : undefined;
  }, { what: `ScriptRun ${ns}/${name} to finish`, timeoutMs, intervalMs: 500 });
}

/** The script container's log of the run's current Job (`kubectl logs job/<name>`). */
export async function runLogs(ns: string, run: ScriptRun): Promise<string> {
  const job = run.status?.jobName;
  if (!job) throw new Error(`ScriptRun ${ns}/${run.metadata.name} has no jobName in its status`);
  const res = await kubectl(["-n", ns, "logs", `job/${job}`]);
  if (res.code !== 0) {
    const text = `kubectl logs job/${job} failed: ${res.stderr.trim()}`;
    // The pod or its container may not exist or run yet: worth waiting for.
    if (/waiting to start|ContainerCreating|PodInitializing|NotFound|not found/.test(res.stderr)) {
      throw new NotYet(text);
    }
    throw new Error(text);
  }
  return res.stdout;
}

/** A pod of the cluster, as far as these tests read it. */
export interface PodInfo {
  metadata: { name: string; uid: string };
  spec: { nodeName?: string };
  status: {
    phase: string;
    podIP?: string;
    containerStatuses?: {
      containerID?: string;
      state?: { running?: unknown; terminated?: { exitCode: number; message?: string } };
    }[];
  };
}

/** The pods of a Job. */
export async function jobPods(ns: string, job: string): Promise<PodInfo[]> {
  return (await kubectlJson<{ items: PodInfo[] }>([
    "-n",
    ns,
    "get",
    "pods",
    "-l",
    `batch.kubernetes.io/job-name=${job}`,
  ])).items;
}
