/**
 * The poll loop fed by the watched view, as docs/design.md describes it, with the operator
 * as a process: a change wakes its run long before the interval; a steady operator sends one
 * request per interval and no write; without `watch` rights it says so once and LISTs every cycle.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import type { ScriptRun } from "../src/types.ts";
import {
  clusterTest,
  freePort,
  kubectlJson,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";
import { applyRuns, installCrd, startOperator } from "./harness/operator.ts";
import { scrapeRequests } from "./harness/request_metrics.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };

async function allSucceeded(ns: string, count: number): Promise<boolean> {
  const runs = (await kubectlJson<{ items: ScriptRun[] }>(["-n", ns, "get", "scriptruns"])).items;
  return runs.length === count && runs.every((r) => r.status?.phase === "Succeeded");
}

clusterTest(
  "watched view: a new run is reconciled on its change, not at the next interval; steady state sends one GET per interval and no write",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("view-loop");
    const metrics = freePort();
    await using op = await startOperator([
      `--namespace=${ns.name}`,
      "--interval=60s",
      `--metrics-bind-address=127.0.0.1:${metrics}`,
    ]);
    await op.waitForLog((l) => l.msg === "Starting", "Starting");
    // Let the first cycle (a LIST cycle, before the view has listed) pass.
    await new Promise((r) => setTimeout(r, 2_000));
    const t0 = Date.now();
    await applyRuns(ns.name, ["a", "b", "c"], { script: "task.sh" });
    // With a 60 s interval, only the watch can have woken these runs this soon.
    await waitFor(() => allSucceeded(ns.name, 3), { what: "3 runs Succeeded", timeoutMs: 40_000 });
    assert(Date.now() - t0 < 40_000, "reconciled by the interval, not by the watch");
    assertEquals(op.logs.filter((l) => l.level === "error"), []);
    await op.stop();

    // Steady state at 1 s intervals: one GET /readyz per cycle, nothing else but watches.
    await using steady = await startOperator([
      `--namespace=${ns.name}`,
      "--interval=1s",
      `--metrics-bind-address=127.0.0.1:${metrics}`,
    ]);
    await waitFor(async () => (await scrapeRequests(metrics)).WATCH >= 4, {
      what: "the view watching its four kinds",
    });
    await new Promise((r) => setTimeout(r, 3_000));
    const before = await scrapeRequests(metrics);
    const windowMs = 6_000;
    await new Promise((r) => setTimeout(r, windowMs));
    const after = await scrapeRequests(metrics);
    const delta = (m: string) => (after[m] ?? 0) - (before[m] ?? 0);
    for (const write of ["POST", "PUT", "PATCH", "DELETE"]) {
      assertEquals(delta(write), 0, `${write} requests in the steady state`);
    }
    assertEquals(delta("LIST"), 0, "LIST requests in the steady state (the view serves)");
    const gets = delta("GET");
    assert(gets >= 3 && gets <= windowMs / 1000 + 2, `${gets} GETs in ${windowMs} ms at 1 s`);
    assertEquals(steady.logs.filter((l) => l.level === "error"), []);
  },
);
