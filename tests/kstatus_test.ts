/**
 * ScriptRuns as the tools that follow kstatus see them (Flux, Argo CD, kpt, `kubectl wait`): the
 * real library (sigs.k8s.io/cli-utils, built as tests/tools/kstatus) computes the status of runs
 * put in each phase on the test cluster.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import type { ScriptRun, ScriptRunSpec } from "../src/types.ts";
import {
  clusterTest,
  jobsMode,
  kubectl,
  kubectlOk,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";
import { applyRun, getRun, installCrd, startOperator } from "./harness/operator.ts";
import { toolPath } from "./harness/tools.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };

/** One line of the kstatus tool's output. */
interface KStatus {
  namespace: string;
  name: string;
  status: string;
  message: string;
}

/** kstatus of every ScriptRun of `ns`, by name, computed by cli-utils' `status.Compute`. */
async function kstatusOf(ns: string): Promise<Map<string, KStatus>> {
  const list = await kubectlOk(["-n", ns, "get", "scriptruns", "-o", "json"]);
  const child = new Deno.Command(await toolPath("kstatus"), {
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(list));
  await writer.close();
  const out = await child.output();
  const decoder = new TextDecoder();
  assert(out.success, `kstatus tool failed: ${decoder.decode(out.stderr)}`);
  const lines = decoder.decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l) as KStatus);
  return new Map(lines.map((l) => [l.name, l]));
}

/** A ScriptRun put in one phase, and what a kstatus tool must read. */
interface Row {
  spec: ScriptRunSpec;
  /** The status the run settles in. */
  reached: (run: ScriptRun) => boolean;
  kstatus: "InProgress" | "Current" | "Failed";
}

const kwok = jobsMode === "kwok";

const ROWS: Record<string, Row> = {
  // Runs for minutes: under kwok by its cue, on a real node by waiting for a port nobody opens.
  "in-progress": {
    spec: kwok ? { script: "task.sh", env: [{ name: "KWOK_DURATION", value: "600s" }] } : {
      script: "wait-for-endpoint.sh",
      args: ["http://127.0.0.1:1/"],
      env: [{ name: "ATTEMPTS", value: "200" }],
    },
    reached: (r) => r.status?.phase === "Running",
    kstatus: "InProgress",
  },
  succeeded: {
    spec: { script: "task.sh" },
    reached: (r) => r.status?.phase === "Succeeded" && !!r.status.completionTime,
    kstatus: "Current",
  },
  // Exits 2: under kwok by its cue, on a real node because no URL is given.
  "exit-code": {
    spec: {
      script: "wait-for-endpoint.sh",
      env: kwok ? [{ name: "KWOK_EXIT_CODE", value: "2" }] : [],
    },
    reached: (r) => r.status?.reason === "BackoffLimitExceeded",
    kstatus: "Failed",
  },
  "script-not-found": {
    spec: { script: "nope.sh" },
    reached: (r) => r.status?.reason === "ScriptNotFound",
    kstatus: "Failed",
  },
  "policy-violation": {
    spec: { script: "task.sh", securityContext: { runAsUser: 0 } },
    reached: (r) => r.status?.reason === "PolicyViolation",
    kstatus: "Failed",
  },
  // Accepted by the CRD and the policy, refused by the API server's Pod validation.
  "invalid-spec": {
    spec: { script: "task.sh", securityContext: { seccompProfile: { type: "Localhost" } } },
    reached: (r) => r.status?.reason === "InvalidSpec",
    kstatus: "Failed",
  },
  // No node has an exabyte of memory: the pod is never scheduled.
  unschedulable: {
    spec: {
      script: "task.sh",
      resources: { requests: { memory: "1E" }, limits: { memory: "1E" } },
    },
    reached: (r) => r.status?.reason === "Unschedulable",
    kstatus: "Failed",
  },
};

clusterTest(
  "kstatus (sigs.k8s.io/cli-utils) reads a run in progress as InProgress, a succeeded one as Current, a failed or stuck one as Failed",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("kstatus");
    await using op = await startOperator([`--namespace=${ns.name}`, "--interval=1s"]);
    await op.waitForLog((l) => l.msg === "Starting", "Starting");
    for (const [name, row] of Object.entries(ROWS)) await applyRun(ns.name, name, row.spec);
    for (const [name, row] of Object.entries(ROWS)) {
      await waitFor(async () => row.reached(await getRun(ns.name, name)), {
        what: `${name} to reach its phase`,
        timeoutMs: 60_000,
      });
    }
    const computed = await kstatusOf(ns.name);
    for (const [name, row] of Object.entries(ROWS)) {
      const run = await getRun(ns.name, name);
      const k = computed.get(name);
      assertEquals([name, k?.status], [name, row.kstatus], JSON.stringify(run.status));
      // kstatus shows the operator's own words (from Reconciling or Stalled, else Ready).
      if (row.kstatus !== "Current") assertEquals(k?.message, run.status?.message, name);
      assertEquals(run.status?.observedGeneration, run.metadata.generation, name);
    }

    // kubectl wait --for=condition=Ready returns for the run that succeeded, and only for it.
    const ready = await kubectl([
      "-n",
      ns.name,
      "wait",
      "--for=condition=Ready",
      "scriptrun/succeeded",
      "--timeout=30s",
    ]);
    assertEquals(ready.code, 0, ready.stderr);
    const failed = await kubectl([
      "-n",
      ns.name,
      "wait",
      "--for=condition=Ready",
      "scriptrun/exit-code",
      "--timeout=2s",
    ]);
    assert(failed.code !== 0, `kubectl wait Ready returned for a failed run: ${failed.stdout}`);
    // The Ready column of kubectl get.
    const table = await kubectlOk(["-n", ns.name, "get", "scriptrun", "succeeded", "exit-code"]);
    assert(/^NAME\s+SCRIPT\s+PHASE\s+READY\s/.test(table), table);
    assert(/^succeeded\s+task\.sh\s+Succeeded\s+True\s/m.test(table), table);
    assert(/^exit-code\s+wait-for-endpoint\.sh\s+Failed\s+False\s/m.test(table), table);
  },
);

clusterTest(
  "kstatus reads a spec change the operator has not seen yet as InProgress (observedGeneration)",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("kstatus-gen");
    await using op = await startOperator([`--namespace=${ns.name}`, "--interval=1s"]);
    await applyRun(ns.name, "gen", { script: "task.sh", rerunPolicy: "OnChange" });
    await waitFor(async () => (await getRun(ns.name, "gen")).status?.phase === "Succeeded", {
      what: "gen: Succeeded",
      timeoutMs: 60_000,
    });
    assertEquals((await kstatusOf(ns.name)).get("gen")?.status, "Current");
    // With the operator stopped, a new spec stays unobserved.
    assertEquals(await op.stop(), 0);
    await applyRun(ns.name, "gen", { script: "task.sh", rerunPolicy: "OnChange", args: ["v2"] });
    const k = (await kstatusOf(ns.name)).get("gen");
    assertEquals(k?.status, "InProgress", k?.message);
    // The operator back: the new spec runs, and is Current again once it succeeded.
    await using _again = await startOperator([`--namespace=${ns.name}`, "--interval=1s"]);
    await waitFor(async () => {
      const r = await getRun(ns.name, "gen");
      return r.status?.observedGeneration === 2 && r.status.phase === "Succeeded" &&
        !!r.status.completionTime;
    }, { what: "gen: generation 2 Succeeded", timeoutMs: 60_000 });
    assertEquals((await kstatusOf(ns.name)).get("gen")?.status, "Current");
  },
);
