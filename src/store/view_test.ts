import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { KubeConfig } from "@kubernetes/client-node";
import { compactConfigMap, compactJob, compactScriptRun } from "../api/compact.ts";
import { recordingLogger } from "../../tests/fakes/fake_kube.ts";
import { compactPod } from "./kinds.ts";
import type { ViewTransport } from "./list_watch.ts";
import { WatchedView, type WatchedViewOptions } from "./view.ts";

const managedFields = [{ manager: "kubectl", operation: "Update", fieldsV1: { "f:data": {} } }];
const owner = {
  apiVersion: "script-operator.dev/v1alpha1",
  kind: "ScriptRun",
  name: "demo",
  uid: "u1",
  controller: true,
  blockOwnerDeletion: true,
};

Deno.test("compactScriptRun() keeps metadata, spec and status; drops managedFields and last-applied", () => {
  const raw = {
    apiVersion: "script-operator.dev/v1alpha1",
    kind: "ScriptRun",
    metadata: {
      name: "demo",
      namespace: "ns",
      uid: "u1",
      generation: 2,
      resourceVersion: "9",
      creationTimestamp: "2026-01-01T00:00:00Z",
      labels: { a: "b" },
      annotations: { "kubectl.kubernetes.io/last-applied-configuration": "{...}", keep: "me" },
      managedFields,
      finalizers: ["x"],
    },
    spec: { script: "task.sh" },
    status: { phase: "Running" },
  };
  assertEquals(compactScriptRun(raw), {
    apiVersion: "script-operator.dev/v1alpha1",
    kind: "ScriptRun",
    metadata: {
      name: "demo",
      namespace: "ns",
      uid: "u1",
      generation: 2,
      resourceVersion: "9",
      creationTimestamp: "2026-01-01T00:00:00Z",
      labels: { a: "b" },
      annotations: { keep: "me" },
    },
    spec: { script: "task.sh" },
    status: { phase: "Running" },
  });
});

Deno.test("compactJob() drops the spec and managedFields, keeps the status the plan reads", () => {
  const raw = {
    metadata: {
      name: "demo-abc",
      namespace: "ns",
      uid: "j1",
      resourceVersion: "5",
      labels: { l: "v" },
      ownerReferences: [owner],
      managedFields,
    },
    spec: { template: { spec: { containers: [{ name: "script" }] } } },
    status: { active: 1, ready: 0, startTime: "2026-01-01T00:00:00Z", uncountedTerminatedPods: {} },
  };
  assertEquals(compactJob(raw), {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: "demo-abc",
      namespace: "ns",
      uid: "j1",
      resourceVersion: "5",
      labels: { l: "v" },
      ownerReferences: [{
        apiVersion: "script-operator.dev/v1alpha1",
        kind: "ScriptRun",
        name: "demo",
        uid: "u1",
        controller: true,
      }],
    },
    status: { active: 1, ready: 0, startTime: "2026-01-01T00:00:00Z" },
  });
});

Deno.test("compactConfigMap() keeps metadata only, even from a full object", () => {
  const cm = compactConfigMap({
    kind: "ConfigMap",
    metadata: { name: "c", namespace: "ns", resourceVersion: "3", managedFields },
    data: { "task.sh": "echo" },
  });
  assertEquals(cm, {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "c", namespace: "ns", resourceVersion: "3" },
  });
});

Deno.test("compactPod() summarises scheduling and the script container's state", () => {
  const pod = compactPod({
    metadata: {
      name: "demo-abc-x",
      namespace: "ns",
      uid: "p1",
      resourceVersion: "11",
      creationTimestamp: "2026-01-01T00:00:00Z",
      labels: {
        "script-operator.dev/scriptrun-uid": "u1",
        "script-operator.dev/hash": "abc",
        "batch.kubernetes.io/job-name": "demo-abc",
      },
      managedFields,
    },
    spec: { containers: [{ name: "script" }] },
    status: {
      phase: "Pending",
      conditions: [{
        type: "PodScheduled",
        status: "False",
        reason: "Unschedulable",
        message: "0/1",
      }],
      containerStatuses: [
        { name: "sidecar", state: { running: {} } },
        { name: "script", state: { waiting: { reason: "ImagePullBackOff", message: "no" } } },
      ],
    },
  });
  assertEquals(pod, {
    name: "demo-abc-x",
    namespace: "ns",
    uid: "p1",
    resourceVersion: "11",
    runUid: "u1",
    hash: "abc",
    jobName: "demo-abc",
    phase: "Pending",
    creationTimestamp: "2026-01-01T00:00:00Z",
    unschedulable: "0/1",
    waiting: { reason: "ImagePullBackOff", message: "no" },
  });
});

// ---- the view's streams against a fake transport (what the API server answers is scripted) ----

interface FakeRequest {
  verb: "LIST" | "WATCH" | "GET";
  /** Last path segment: scriptruns, jobs, configmaps, pods or readyz. */
  resource: string;
  namespace: string;
  query: URLSearchParams;
  signal: AbortSignal;
  at: number;
}

type Handler = (req: FakeRequest) => Response | Promise<Response>;

const encoder = new TextEncoder();

/** A LIST answer. */
function listOf(items: unknown[] = [], resourceVersion = "10"): Response {
  return Response.json({ metadata: { resourceVersion }, items });
}

/** A watch answer: `events`, then open until the request is aborted (or closed at once). */
function watchOf(req: FakeRequest, events: unknown[] = [], options: { close?: boolean } = {}) {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const e of events) controller.enqueue(encoder.encode(JSON.stringify(e) + "\n"));
      if (options.close) return controller.close();
      req.signal.addEventListener("abort", () => {
        try {
          controller.error(req.signal.reason);
        } catch { /* closed */ }
      }, { once: true });
    },
  });
  return new Response(body, { status: 200 });
}

/** Answers LISTs with nothing, keeps watches open and /readyz answers. */
const healthyServer: Handler = (req) =>
  req.verb === "LIST" ? listOf() : req.verb === "WATCH" ? watchOf(req) : new Response("ok");

function runItem(namespace: string, name: string) {
  return {
    apiVersion: "script-operator.dev/v1alpha1",
    kind: "ScriptRun",
    metadata: { name, namespace, uid: `uid-${namespace}-${name}`, resourceVersion: "3" },
    spec: { script: "task.sh" },
  };
}

/** Starts a view on `handler`; dispose to stop it. */
async function fakeView(handler: Handler, options: Partial<WatchedViewOptions> = {}) {
  const requests: FakeRequest[] = [];
  const transport: ViewTransport = async (path, init) => {
    const url = new URL(path, "http://fake");
    const segments = url.pathname.split("/");
    const ns = segments.indexOf("namespaces");
    const req: FakeRequest = {
      verb: url.pathname === "/readyz" ? "GET" : url.searchParams.get("watch") ? "WATCH" : "LIST",
      resource: segments[segments.length - 1],
      namespace: ns >= 0 ? segments[ns + 1] : "",
      query: url.searchParams,
      signal: init.signal!,
      at: performance.now(),
    };
    requests.push(req);
    return await handler(req);
  };
  const { log, lines } = recordingLogger();
  const view = new WatchedView(new KubeConfig(), {
    namespaces: ["ns"],
    log,
    transport,
    random: () => 0.5,
    ...options,
  });
  const abort = new AbortController();
  await view.start(abort.signal);
  const of = (verb: FakeRequest["verb"], resource: string) =>
    requests.filter((r) => r.verb === verb && r.resource === resource);
  return { view, requests, of, lines, [Symbol.dispose]: () => abort.abort() };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const gaps = (reqs: FakeRequest[]) => reqs.slice(1).map((r, i) => Math.round(r.at - reqs[i].at));
const NO_SANITIZE = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "WatchedView backs off a watch that the server ends at once without an event",
  NO_SANITIZE,
  async () => {
    using v = await fakeView((req) =>
      req.verb === "WATCH" ? watchOf(req, [], { close: true }) : healthyServer(req)
    );
    await sleep(2_600);
    // Jitter 0.5 makes the backoff exactly 0.8 s, then 1.6 s: at most three watches in 2.6 s.
    const watches = v.of("WATCH", "scriptruns");
    assert(watches.length >= 2 && watches.length <= 3, `watches at ${gaps(watches)} ms gaps`);
    assert(gaps(watches).every((g) => g >= 750), `gaps ${gaps(watches)}`);
    assertEquals(v.of("LIST", "scriptruns").length, 1, "resumed from the resourceVersion");
    const warnings = v.lines.filter((l) => l.level === "warn" && l.properties.kind === "ScriptRun");
    assertEquals(warnings.map((l) => l.message), ["Watch stream failing, retrying"]);
  },
);

Deno.test(
  "WatchedView answers 410 Gone with a re-LIST after the backoff",
  NO_SANITIZE,
  async () => {
    const gone = { type: "ERROR", object: { kind: "Status", code: 410, message: "too old" } };
    using v = await fakeView((req) =>
      req.verb === "WATCH" ? watchOf(req, [gone], { close: true }) : healthyServer(req)
    );
    await sleep(2_600);
    const lists = v.of("LIST", "jobs");
    assert(lists.length >= 2 && lists.length <= 3, `LISTs at ${gaps(lists)} ms gaps`);
    assert(gaps(lists).every((g) => g >= 750), `gaps ${gaps(lists)}`);
    assertEquals(v.lines.filter((l) => l.level === "warn"), [], "an expired watch is routine");
  },
);

Deno.test("WatchedView honours Retry-After", NO_SANITIZE, async () => {
  let refused = 0;
  using v = await fakeView((req) => {
    if (req.verb === "LIST" && req.resource === "pods" && refused++ === 0) {
      return new Response('{"message":"slow down"}', {
        status: 429,
        headers: { "Retry-After": "1" },
      });
    }
    return healthyServer(req);
  }, { backoff: { baseMs: 10, maxMs: 20 } });
  await sleep(1_300);
  const lists = v.of("LIST", "pods");
  assertEquals(lists.length, 2);
  assert(gaps(lists)[0] >= 950, `listed again after ${gaps(lists)[0]} ms`);
});

Deno.test(
  "WatchedView keeps what it knew while a stream fails, says so once, and once when it recovers",
  NO_SANITIZE,
  async () => {
    let down = false;
    using v = await fakeView((req) => {
      if (req.verb === "LIST" && req.resource === "scriptruns") return listOf([runItem("ns", "a")]);
      if (req.verb === "WATCH" && down) throw new TypeError("connection refused");
      if (req.verb === "WATCH") {
        return watchOf(
          req,
          down ? [] : [{ type: "BOOKMARK", object: { metadata: { resourceVersion: "11" } } }],
        );
      }
      return healthyServer(req);
    }, { backoff: { baseMs: 20, maxMs: 40 } });
    assertEquals(v.view.scriptRuns("ns").map((r) => r.metadata.name), ["a"]);
    down = true;
    v.view.interruptWatches();
    await sleep(600);
    const failed = v.of("WATCH", "scriptruns").length;
    assert(failed >= 5, `${failed} watches`);
    assert(v.view.synced());
    assertEquals(v.view.scriptRuns("ns").map((r) => r.metadata.name), ["a"], "still served");
    assertEquals(v.view.scriptRun("ns", "a")?.metadata.name, "a");
    const failing = v.view.failing(0).map((f) => `${f.kind} ${f.namespace} ${f.error}`).sort();
    assertEquals(failing, [
      "ConfigMap ns connection refused",
      "Job ns connection refused",
      "Pod ns connection refused",
      "ScriptRun ns connection refused",
    ]);
    assertEquals(v.view.failing(60_000), [], "not failing for a minute yet");
    const warn = (m: string) => v.lines.filter((l) => l.message === m && l.level !== "debug");
    assertEquals(warn("Watch stream failing, retrying").length, 4, "once per stream");
    down = false;
    await sleep(400);
    assertEquals(v.view.failing(0), []);
    assertEquals(warn("Watch stream recovered").length, 4, "once per stream");
    assertEquals(
      v.of("LIST", "scriptruns").length,
      1,
      "no re-LIST: resumed from the resourceVersion",
    );
  },
);

Deno.test(
  "WatchedView: a 403 in one namespace is that namespace's error; the others are served",
  NO_SANITIZE,
  async () => {
    using v = await fakeView((req) => {
      if (req.namespace === "b" && req.verb !== "GET") {
        return Response.json({ kind: "Status", code: 403, message: "forbidden" }, { status: 403 });
      }
      if (req.verb === "LIST" && req.resource === "scriptruns") {
        return listOf([runItem(req.namespace, "a")]);
      }
      return healthyServer(req);
    }, { namespaces: ["a", "b"], backoff: { baseMs: 10, maxMs: 20 } });
    await sleep(500);
    assert(v.of("LIST", "jobs").filter((r) => r.namespace === "b").length >= 5, "b retried");
    assert(v.view.synced());
    assertEquals(v.view.scriptRuns("a").map((r) => r.metadata.name), ["a"]);
    assertEquals(v.view.scriptRuns().map((r) => r.metadata.namespace), ["a"]);
    assertEquals(v.view.scriptRuns("b"), [], "nothing of b is served");
    const errors = v.lines.filter((l) => l.level === "error");
    assertEquals(errors.length, 4, "one per stream of b, not once per retry");
    assert(errors.every((e) => e.properties.namespace === "b" && e.properties.status === 403));
    assertEquals(v.view.failing(0).map((f) => f.namespace), ["b", "b", "b", "b"]);
  },
);

Deno.test(
  "WatchedView resumes within about a second of the server answering again, whatever its backoff",
  NO_SANITIZE,
  async () => {
    let down = true;
    using v = await fakeView((req) => {
      if (down) throw new TypeError("connection refused");
      if (req.verb === "LIST" && req.resource === "scriptruns") return listOf([runItem("ns", "a")]);
      return healthyServer(req);
    }, { backoff: { baseMs: 20_000, maxMs: 30_000 } });
    assertEquals(v.view.scriptRuns("ns"), [], "nothing listed yet");
    await sleep(300);
    down = false;
    const upAt = performance.now();
    while (v.view.scriptRuns("ns").length === 0 && performance.now() - upAt < 5_000) {
      await sleep(50);
    }
    const seconds = (performance.now() - upAt) / 1000;
    assert(seconds < 2, `served ${seconds.toFixed(1)} s after the server answered`);
    assert(v.of("GET", "readyz").length >= 1, "the probe found it");
  },
);

Deno.test(
  "WatchedView serves a namespace once all four kinds listed, and wakes its runs then",
  NO_SANITIZE,
  async () => {
    let jobsDown = true;
    const woken: string[] = [];
    using v = await fakeView((req) => {
      if (req.verb === "LIST" && req.resource === "jobs" && jobsDown) {
        return Response.json({ message: "etcd leader changed" }, { status: 500 });
      }
      if (req.verb === "LIST" && req.resource === "scriptruns") return listOf([runItem("ns", "a")]);
      return healthyServer(req);
    }, { backoff: { baseMs: 50, maxMs: 100 } });
    v.view.onChange((key) => woken.push(`${key.namespace}/${key.name}`));
    // Runs without their Jobs would be planned as if their Jobs were missing.
    assertEquals(v.view.scriptRuns("ns"), []);
    assertEquals(v.view.scriptRun("ns", "a"), undefined);
    jobsDown = false;
    await sleep(400);
    assertEquals(v.view.scriptRuns("ns").map((r) => r.metadata.name), ["a"]);
    assertEquals(woken, ["ns/a"]);
  },
);
