import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { podSummary, toPlain } from "./kube.ts";
import { lastTermination } from "./plan.ts";
import type { PodSummary } from "./types.ts";

Deno.test("toPlain() turns client-node Dates into RFC 3339 strings without milliseconds", () => {
  const plain = toPlain<{ t: string; n: { u: string } }>({
    t: new Date(Date.UTC(2026, 0, 1, 0, 0, 5)),
    n: { u: new Date(Date.UTC(2026, 0, 1)) },
  });
  assertEquals(plain, { t: "2026-01-01T00:00:05Z", n: { u: "2026-01-01T00:00:00Z" } });
});

Deno.test("podSummary() keeps what explains a wait or a failure, and drops the rest", () => {
  const summary = podSummary({
    metadata: {
      name: "p",
      namespace: "ns",
      creationTimestamp: "2026-01-01T00:00:00Z",
      labels: { "script-operator.dev/hash": "abc", "batch.kubernetes.io/job-name": "j" },
    },
    status: {
      phase: "Pending",
      conditions: [{
        type: "PodScheduled",
        status: "False",
        reason: "Unschedulable",
        message: "0/1 nodes are available: 1 Insufficient memory.",
      }],
      containerStatuses: [{
        name: "script",
        state: { waiting: { reason: "ErrImagePull", message: "not found" } },
      }],
    },
  });
  assertEquals(summary, {
    name: "p",
    namespace: "ns",
    hash: "abc",
    jobName: "j",
    phase: "Pending",
    creationTimestamp: "2026-01-01T00:00:00Z",
    unschedulable: "0/1 nodes are available: 1 Insufficient memory.",
    waiting: { reason: "ErrImagePull", message: "not found" },
  });
});

Deno.test("lastTermination() reads the script container of the newest terminated pod", () => {
  const pod = (name: string, created: string, exitCode?: number): PodSummary => ({
    name,
    creationTimestamp: created,
    ...(exitCode === undefined
      ? {}
      : { terminated: { exitCode, reason: "Error", message: `boom ${name}` } }),
  });
  assertEquals(
    lastTermination([
      pod("a", "2026-01-01T00:00:00Z", 1),
      pod("b", "2026-01-01T00:01:00Z", 2),
      pod("c", "2026-01-01T00:02:00Z"),
    ]),
    { podName: "b", exitCode: 2, reason: "Error", message: "boom b" },
  );
  assertEquals(lastTermination([]), undefined);
});
