/**
 * What one ScriptRun costs the API server in writes, counted by the operator's own client
 * (`rest_client_requests_total` on /metrics) while it runs one run that goes well.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import {
  clusterTest,
  freePort,
  kubectlJson,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";
import { applyRun, getRun, installCrd, startOperator } from "./harness/operator.ts";
import { scrapeRequests, WRITE_METHODS, writes } from "./harness/request_metrics.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };
/** The budget of a run that goes well: writes of every kind, Events included. */
const WRITES_PER_RUN = 5;

clusterTest(
  `a run that goes well costs at most ${WRITES_PER_RUN} writes, Events included, and keeps its outcome Event`,
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("writes");
    const metrics = freePort();
    await using op = await startOperator([
      `--namespace=${ns.name}`,
      "--interval=5s",
      "--log-level=debug",
      `--metrics-bind-address=127.0.0.1:${metrics}`,
    ]);
    // Counted from a watching operator at rest: the start-up cycle is over.
    await waitFor(async () => (await scrapeRequests(metrics)).WATCH >= 4, {
      what: "the view watching its four kinds",
    });
    const before = await scrapeRequests(metrics);
    const sentBefore = op.logs.length;

    await applyRun(ns.name, "once", { script: "task.sh" });
    await waitFor(async () => {
      const r = await getRun(ns.name, "once");
      return r.status?.phase === "Succeeded" && r.status.completionTime ? r : undefined;
    }, { what: "once: Succeeded", timeoutMs: 60_000 });
    // The outcome's Event follows its status patch; then nothing more is due for a day (TTL).
    const events = await waitFor(async () => {
      const list = await kubectlJson<{ items: { reason: string; type: string }[] }>([
        "-n",
        ns.name,
        "get",
        "events",
        "--field-selector=involvedObject.kind=ScriptRun,involvedObject.name=once",
      ]);
      return list.items.length > 0 ? list.items : undefined;
    }, { what: "the run's outcome Event" });
    await new Promise((r) => setTimeout(r, 3_000));
    const after = await scrapeRequests(metrics);

    const sent = op.logs.slice(sentBefore).filter((l) =>
      l.msg === "Sending request" && WRITE_METHODS.includes(String(l.method))
    ).map((l) => `${l.method} ${String(l.url).replace(/^https?:\/\/[^/]+/, "")}`);
    const statuses = op.logs.filter((l) => l.msg === "Updating status" && l.name === "once")
      .map((l) => `${l.phase} ${l.reason}`);
    const count = writes(after) - writes(before);
    const report = `${count} writes for one run:\n  ${sent.join("\n  ")}\n` +
      `statuses written: ${statuses.join(", ")}`;
    console.log(report);
    assert(count <= WRITES_PER_RUN, report);
    // The log names the same writes as the counters count.
    assertEquals(sent.length, count, sent.join("\n"));
    // What `kubectl describe` shows of a run that went well: its outcome.
    assertEquals(events.map((e) => [e.type, e.reason]), [["Normal", "CompletionsReached"]]);
  },
);
