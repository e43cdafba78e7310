import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { KubeConfig } from "@kubernetes/client-node";
import { podSummary } from "./compact.ts";
import { NotLeaderError } from "./client.ts";
import { ClientNodeKube, toPlain } from "./kube.ts";
import type { Lease } from "./lease.ts";
import { LeaderElector, type Leadership } from "../runtime/leader.ts";
import { logger } from "../runtime/log.ts";
import { scriptRun } from "../../tests/fakes/fixtures.ts";
import { lastTermination } from "../desired/job_status.ts";
import type { PodSummary } from "../types.ts";

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
  // When the script started: a run that ends within seconds is not shown Running.
  const running = podSummary({
    metadata: { name: "p", labels: { "batch.kubernetes.io/job-name": "j" } },
    status: {
      phase: "Running",
      containerStatuses: [{
        name: "script",
        state: { running: { startedAt: "2026-01-01T00:00:03Z" } },
      }],
    },
  });
  assertEquals(running.runningSince, "2026-01-01T00:00:03Z");
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

Deno.test({
  name:
    "ClientNodeKube: a server that never completes the handshake is unreachable after the connect timeout, not the request timeout",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    // The kernel completes the TCP handshake for a listening socket nobody accepts on; the TLS
    // handshake then hangs, as with a stopped (SIGSTOP) API server.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [{
          name: "c",
          server: `https://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
          skipTLSVerify: true,
        }],
        users: [{ name: "u", token: "t" }],
        contexts: [{ name: "x", cluster: "c", user: "u" }],
        currentContext: "x",
      });
      const seen: string[] = [];
      const kube = new ClientNodeKube(kc, {
        observe: (verb, resource, code) => seen.push(`${verb} ${resource} ${code}`),
        onReachability: (reachable) => seen.push(`reachable=${reachable}`),
        client: { requestMs: 10_000, connectMs: 500 },
      });
      const started = performance.now();
      const error = await kube.listJobs("default").then(() => undefined, (e) => e);
      const seconds = (performance.now() - started) / 1000;
      ok(error?.code === 0 && /cannot reach the API server/.test(error.message), String(error));
      ok(seconds < 3, `took ${seconds.toFixed(1)}s: the 10 s request timeout, not 0.5 s connect`);
      assertEquals(seen, ["LIST jobs <error>", "reachable=false"]);
    } finally {
      listener.close();
    }
  },
});

/** A leader of a fresh Lease on a monotonic clock that moves only when told. */
async function leaderOnFakeClock(): Promise<{ elector: LeaderElector; clock: { t: number } }> {
  const clock = { t: 1_000 };
  let lease: Lease | undefined;
  const elector = new LeaderElector({
    leases: {
      get: () => Promise.resolve(lease),
      create: (l) => Promise.resolve(void (lease = l)),
      replace: (l) => Promise.resolve(void (lease = l)),
    },
    namespace: "ns",
    name: "l",
    identity: "me",
    log: logger("test"),
    clock: { now: () => clock.t, wallNow: () => new Date() },
  });
  await elector.tick();
  ok(elector.isLeader());
  return { elector, clock };
}

/**
 * A loopback HTTP server standing in for the API server's answer to an Event POST (201), and a
 * kubeconfig for it whose credential step runs `onCredentials`: where a request awaits its
 * credentials (an exec plugin can take seconds), the process may also be frozen.
 */
function eventSink(onCredentials: () => void) {
  const received: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    received.push(`${req.method} ${new URL(req.url).pathname}`);
    return Response.json({ metadata: { name: "e" } }, { status: 201 });
  });
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server: `http://127.0.0.1:${server.addr.port}` }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  // client-node's own credential step refuses plain http; this one stands in for it.
  kc.applyToHTTPSOptions = async (opts) => {
    await Promise.resolve();
    opts.headers = { Authorization: "Bearer t" };
    onCredentials();
  };
  return { kc, received, [Symbol.asyncDispose]: () => server.shutdown() };
}

for (const frozen of [false, true]) {
  Deno.test(
    `write gate: a leader ${
      frozen
        ? "frozen past its renew deadline after a write was built refuses it"
        : "sends its write"
    }, checked on the monotonic clock before any timer runs`,
    async () => {
      const { elector, clock } = await leaderOnFakeClock();
      // The freeze: the clock jumps past the renew deadline while the request awaits credentials,
      // after every earlier check; no timer of the elector runs in between.
      await using sink = eventSink(() => {
        if (frozen) clock.t += 20_000;
      });
      const logged: Record<string, unknown>[] = [];
      const kube = new ClientNodeKube(sink.kc, {
        client: {
          transport: "fetch",
          writeGate: () => {
            const leader = elector.leadership();
            return { allowed: leader.leading, fields: { leader } };
          },
          log: { debug: (_m: string, f: Record<string, unknown>) => logged.push(f) } as never,
        },
      });
      const error = await kube.createEvent(scriptRun(), {
        type: "Normal",
        reason: "Test",
        message: "m",
      }).then(() => undefined, (e) => e);
      if (frozen) {
        ok(error instanceof NotLeaderError, String(error));
        assertEquals(sink.received, []);
        assertEquals(logged, []);
      } else {
        assertEquals(error, undefined);
        assertEquals(sink.received, ["POST /api/v1/namespaces/ns/events"]);
        assertEquals(logged.length, 1);
        const leader = logged[0].leader as Leadership;
        ok(leader.leading && leader.nowMs < leader.deadlineMs, JSON.stringify(leader));
      }
    },
  );
}
