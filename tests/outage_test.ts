/**
 * The operator under API server faults, as a whole process behind a misbehaving proxy: an outage
 * (connections refused for 20 s) neither switches it to another way of observing nor makes it
 * LIST everything again; a server that answers every request 6 s late is busy, not unreachable;
 * SIGTERM with reconciles in flight stops taking work, drains, releases the Lease and exits 0.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import { applyRuns, installCrd, type LogLine, startOperator } from "./harness/operator.ts";
import { startPauseProxy } from "./harness/pause_proxy.ts";
import { clusterTest, kubectl, kubectlJson, uniqueNamespace, waitFor } from "./harness/test_env.ts";
import type { ScriptRun } from "../src/types.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };
const SPEC_1S = { script: "task.sh", env: [{ name: "KWOK_DURATION", value: "1s" }] };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const names = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

/** The LISTs the operator sent (its debug "Sending request" lines: GETs of a collection). */
function lists(lines: LogLine[]): string[] {
  return lines.filter((l) =>
    l.msg === "Sending request" && l.method === "GET" &&
    /\/(scriptruns|jobs|configmaps|pods|events)(\?|$)/.test(String(l.url)) &&
    !/[?&]watch=/.test(String(l.url))
  ).map((l) => String(l.url));
}

/** Names of the Jobs in `ns` that belong to ScriptRun `run`. */
async function jobsOf(ns: string, run: string): Promise<string[]> {
  const jobs = await kubectlJson<{ items: { metadata: { name: string } }[] }>([
    "-n",
    ns,
    "get",
    "jobs",
    "-l",
    `script-operator.dev/scriptrun=${run}`,
  ]);
  return jobs.items.map((j) => j.metadata.name);
}

async function allPhases(ns: string): Promise<string[]> {
  const runs = await kubectlJson<{ items: ScriptRun[] }>(["-n", ns, "get", "scriptruns"]);
  return runs.items.map((r) => r.status?.phase ?? "");
}

clusterTest(
  "after 20 s of refused connections: no second mode, a new run gets its Job at once, no re-LIST",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("outage");
    await using proxy = await startPauseProxy();
    await using op = await startOperator([`--namespace=${ns.name}`, "--log-level=debug"], {
      kubeconfig: proxy.kubeconfig,
    });
    await op.waitForLog((l) => l.msg === "Starting", "Starting");
    // Finished runs, watched.
    await applyRuns(ns.name, names("done", 50), SPEC_1S);
    await waitFor(async () => {
      const phases = await allPhases(ns.name);
      return phases.length === 50 && phases.every((p) => p === "Succeeded");
    }, { what: "50 runs Succeeded", timeoutMs: 120_000, intervalMs: 1000 });

    proxy.refuse();
    await sleep(20_000);
    proxy.answer();
    const answeredAt = performance.now();
    const logsAt = op.logs.length;
    await applyRuns(ns.name, ["after"], SPEC_1S);
    await waitFor(async () => (await jobsOf(ns.name, "after")).length === 1, {
      what: "the new run's Job",
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    const seconds = (performance.now() - answeredAt) / 1000;
    console.log(`new run -> Job ${seconds.toFixed(1)} s after the API server answered again`);
    assert(seconds <= 5, `the new run's Job came ${seconds.toFixed(1)} s after the outage`);

    await sleep(Math.max(0, 60_000 - (performance.now() - answeredAt)));
    const after = op.logs.slice(logsAt);
    const listed = lists(after);
    console.log(`LISTs in the minute after the outage: ${listed.length}`);
    // Four streams (ScriptRuns, Jobs, ConfigMaps, pods); each resumes its watch where it was.
    assert(listed.length <= 4, `LISTs in the minute after: ${listed.join("\n")}`);
    const messages = op.logs.map((l) => l.msg);
    assert(!messages.some((m) => m.includes("plain LISTs")), "no switch to plain LISTs");
    const failing = op.logs.filter((l) => l.msg === "Watch stream failing, retrying");
    assert(
      failing.filter((l) => l.level === "warn").length <= 4,
      `one warning per stream: ${JSON.stringify(failing.filter((l) => l.level === "warn"))}`,
    );
    assert(failing.length >= 4, "every stream retried during the outage");
  },
);

clusterTest(
  "an API server that answers every request 6 s late is busy, not unreachable: runs get their Jobs",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("slow-server");
    await using proxy = await startPauseProxy();
    await using op = await startOperator([`--namespace=${ns.name}`, "--log-level=debug"], {
      kubeconfig: proxy.kubeconfig,
    });
    // Warm up: the operator's connection pool holds a connection per concurrent request.
    await applyRuns(ns.name, names("warm", 8), SPEC_1S);
    await waitFor(async () => (await jobsOf(ns.name, "warm-7")).length === 1, {
      what: "the warm-up runs' Jobs",
    });
    await sleep(2_000);
    proxy.slow(6_000);
    const logsAt = op.logs.length;
    await applyRuns(ns.name, names("late", 8), SPEC_1S);
    await waitFor(async () => {
      for (const run of names("late", 8)) if ((await jobsOf(ns.name, run)).length !== 1) return;
      return true;
    }, { what: "every late run's Job", timeoutMs: 120_000, intervalMs: 1000 });
    const after = op.logs.slice(logsAt);
    const unanswered = after.filter((l) =>
      l.msg.startsWith("Reconcile failed") && (l.code === 0 || /no answer|timed? ?out/i.test(
        String(l.error),
      ))
    );
    assertEquals(unanswered, [], "no request counted as unanswered");
    assertEquals(after.filter((l) => l.msg === "Listing failed"), []);
  },
);

clusterTest(
  "SIGTERM with reconciles in flight: no new reconcile starts, exit 0, the Lease released at once",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("shutdown");
    await using proxy = await startPauseProxy();
    const args = [
      `--namespace=${ns.name}`,
      "--log-level=debug",
      "--concurrency=4",
      "--leader-elect",
      `--leader-election-namespace=${ns.name}`,
    ];
    const a = await startOperator(args, { kubeconfig: proxy.kubeconfig });
    try {
      await a.waitForLog((l) => l.msg === "Became leader", "A to become leader");
      await applyRuns(ns.name, names("warm", 4), SPEC_1S);
      await waitFor(async () => (await jobsOf(ns.name, "warm-3")).length === 1, {
        what: "the warm-up runs' Jobs",
      });
      await sleep(2_000);
      // Every write on the connections A holds now takes 4 s: reconciles are in flight for longer
      // than the shutdown deadline (a run's ConfigMap, Job, status and Events go one by one).
      proxy.slow(4_000);
      await applyRuns(ns.name, names("busy", 30), SPEC_1S);
      await a.waitForLog(
        (l) => l.msg === "Creating Job" && String(l.name).startsWith("busy-"),
        "a busy run's Job being created",
      );
      const termAt = performance.now();
      const code = await a.stop();
      const seconds = (performance.now() - termAt) / 1000;
      const shutdownAt = a.logs.findIndex((l) => l.msg === "Shutting down");
      assert(shutdownAt >= 0, "Shutting down logged");
      assertEquals(code, 0, JSON.stringify(a.logs.slice(-5)));
      assert(seconds < 9, `exited ${seconds.toFixed(1)} s after SIGTERM`);
      assert(a.logs.some((l) => l.msg === "Released leader lease"), "the Lease released");
      // Stop taking work first: only runs already in flight may still write.
      const acting = (l: LogLine) => /^(Creating|Deleting|Updating status)/.test(l.msg);
      const before = new Set(a.logs.slice(0, shutdownAt).filter(acting).map((l) => l.name));
      const started = a.logs.slice(shutdownAt).filter((l) => acting(l) && !before.has(l.name));
      assertEquals(
        started.map((l) => `${l.msg} ${l.name}`),
        [],
        "reconciles started after SIGTERM",
      );
    } finally {
      await a.stop();
    }
    // The next replica takes over without waiting out the 15 s lease.
    const startedAt = performance.now();
    await using b = await startOperator(args);
    await b.waitForLog((l) => l.msg === "Became leader", "B to become leader", 30_000);
    const took = (performance.now() - startedAt) / 1000;
    console.log(`B led ${took.toFixed(1)} s after it started`);
    assert(took < 10, `B became leader ${took.toFixed(1)} s after it started`);
    const lease = await kubectl(["-n", ns.name, "get", "lease", "script-operator-leader"]);
    assertEquals(lease.code, 0);
  },
);
