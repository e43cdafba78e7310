/**
 * The watched view (issue 10) against the real control plane: its content equals a fresh plain
 * LIST after creates, updates and deletes of every kind, after a watch dropped mid-run (with
 * changes made while it was down), after a 410 Gone on resume; a stream RBAC forbids to watch is
 * an error of its own, not a fallback, and recovers once allowed.
 * @module
 */
import { KubeConfig } from "@kubernetes/client-node";
import { isDeepStrictEqual } from "node:util";
import { configure, getLogger, type LogRecord, reset } from "@logtape/logtape";
import { assert, assertEquals } from "./harness/assert.ts";
import { installCrd } from "./harness/operator.ts";
import { startPauseProxy } from "./harness/pause_proxy.ts";
import {
  clusterTest,
  kubectl,
  kubectlJson,
  kubectlOk,
  testKubeconfig,
  tokenKubeconfig,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";
import { ClientNodeKube } from "../src/api/kube.ts";
import { KubeHttp } from "../src/api/kube_http.ts";
import { desiredConfigMap, desiredJob, runHash } from "../src/desired/desired.ts";
import { loadScripts } from "../src/runtime/scripts.ts";
import { LABELS, type ScriptRun } from "../src/types.ts";
import { compactConfigMap, compactJob, compactScriptRun } from "../src/api/compact.ts";
import {
  compactPod,
  METADATA_ACCEPT,
  METADATA_LIST_ACCEPT,
  type WatchedPod,
} from "../src/store/kinds.ts";
import { WatchedView, type WatchedViewOptions } from "../src/store/view.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };
const SCRIPTS = await loadScripts();
const TASK = SCRIPTS.get("task.sh")!;

const records: LogRecord[] = [];
await configure({
  reset: true,
  sinks: { memory: (r: LogRecord) => records.push(r) },
  loggers: [
    { category: ["view-test"], lowestLevel: "debug", sinks: ["memory"] },
    { category: ["logtape", "meta"], lowestLevel: "error", sinks: ["memory"] },
  ],
});
globalThis.addEventListener("unload", () => void reset());

function adminConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(testKubeconfig!);
  return kc;
}

/** A started view plus counts of its requests and the ScriptRuns it reported as changed. */
async function startView(
  kc: KubeConfig,
  options: Partial<WatchedViewOptions> & { namespaces: string[] },
) {
  const requests: Record<string, number> = {};
  const changed: string[] = [];
  const finished: string[] = [];
  const view = new WatchedView(kc, {
    log: getLogger(["view-test"]),
    observe: (verb, resource, code) => {
      const k = `${verb} ${resource} ${code}`;
      requests[k] = (requests[k] ?? 0) + 1;
    },
    ...options,
  });
  view.onChange((k, change) => {
    changed.push(`${k.namespace}/${k.name}`);
    if (change.finished) finished.push(`${k.namespace}/${k.name}`);
  });
  const abort = new AbortController();
  await view.start(abort.signal);
  const count = (verb: string) =>
    Object.entries(requests).filter(([k]) => k.startsWith(`${verb} `)).reduce(
      (n, [, v]) => n + v,
      0,
    );
  return {
    view,
    requests,
    changed,
    finished,
    count,
    [Symbol.dispose]: () => abort.abort(),
  };
}

interface Content {
  scriptRuns: ScriptRun[];
  configMaps: unknown[];
  jobs: unknown[];
  pods: WatchedPod[];
}

const byName = <T>(items: T[], name: (t: T) => string) =>
  [...items].sort((a, b) => name(a).localeCompare(name(b)));
const metaName = (o: { metadata: { name: string } }) => o.metadata.name;

/** What the plain LIST cycle sees in `ns` (ClientNodeKube, kubectl for pods), compacted. */
async function plainList(ns: string): Promise<Content> {
  const kube = new ClientNodeKube(adminConfig());
  const [runs, configMaps, jobs] = await Promise.all([
    kube.listScriptRuns(ns),
    kube.listConfigMaps(ns),
    kube.listJobs(ns),
  ]);
  const pods = await kubectlJson<{ items: unknown[] }>([
    "-n",
    ns,
    "get",
    "pods",
    "-l",
    LABELS.scriptRunUid,
  ]);
  return {
    scriptRuns: byName(runs.map(compactScriptRun), metaName),
    configMaps: byName(configMaps.map(compactConfigMap), metaName),
    jobs: byName(jobs.map(compactJob), metaName),
    pods: byName(pods.items.map(compactPod), (p) => p.name),
  };
}

/** The view's content for `ns`, read through its public lookups only. */
function viewContent(view: WatchedView, ns: string): Content {
  const scriptRuns = view.scriptRuns(ns);
  const names = view.names(ns);
  const owners = new Set([
    ...names.configMaps.values(),
    ...names.jobs.values(),
    ...scriptRuns.map((r) => r.metadata.uid ?? ""),
  ]);
  const configMaps = [], jobs = [], pods: WatchedPod[] = [];
  for (const uid of owners) {
    const c = view.children(ns, uid);
    configMaps.push(...c.configMaps);
    jobs.push(...c.jobs);
    pods.push(...c.pods);
  }
  return {
    scriptRuns: byName(scriptRuns, metaName),
    configMaps: byName(configMaps, metaName),
    jobs: byName(jobs, metaName),
    pods: byName(pods, (p) => p.name),
  };
}

/**
 * Waits until `ready` holds for a fresh plain LIST and the view equals that LIST; on timeout
 * fails with the difference. Returns the LIST's content.
 */
async function assertSameAsList(
  view: WatchedView,
  ns: string,
  what: string,
  ready: (c: Content) => boolean = () => true,
  timeoutMs = 30_000,
): Promise<Content> {
  let last: { view: Content; list: Content } | undefined;
  try {
    return await waitFor(async () => {
      const list = await plainList(ns);
      const seen = viewContent(view, ns);
      last = { view: seen, list };
      return ready(list) && isDeepStrictEqual(seen, list) ? list : undefined;
    }, { what, timeoutMs, intervalMs: 300 });
  } catch (error) {
    if (last && ready(last.list)) {
      assertEquals(last.view, last.list, `${what}: the view differs from a plain LIST`);
    }
    const summary = last && {
      scriptRuns: last.list.scriptRuns.map(metaName),
      configMaps: last.list.configMaps.length,
      jobs: last.list.jobs.map((j) => JSON.stringify((j as { status?: unknown }).status)),
      pods: last.list.pods.map((p) => `${p.name} ${p.phase}`),
    };
    throw new Error(`${(error as Error).message}; last LIST: ${JSON.stringify(summary)}`);
  }
}

function manifest(ns: string, name: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    apiVersion: "script-operator.dev/v1alpha1",
    kind: "ScriptRun",
    metadata: { name, namespace: ns },
    spec: { script: "task.sh", env: [{ name: "KWOK_DURATION", value: "1s" }] },
    ...extra,
  });
}

/** Creates a ScriptRun and (as the operator would) its ConfigMap and Job; returns the run. */
async function createRunWithChildren(ns: string, name: string): Promise<ScriptRun> {
  // The Job controller's pod creation fails (and backs off for 10 s and more) until the
  // namespace's default ServiceAccount exists.
  await waitFor(
    async () => (await kubectl(["-n", ns, "get", "serviceaccount", "default"])).code === 0,
    { what: `the default ServiceAccount in ${ns}` },
  );
  await kubectlOk(["create", "-f", "-"], { stdin: manifest(ns, name) });
  const run = await kubectlJson<ScriptRun>(["-n", ns, "get", "scriptrun", name]);
  const hash = runHash(run, TASK);
  await kubectlOk(["create", "-f", "-"], {
    stdin: JSON.stringify({
      apiVersion: "v1",
      kind: "List",
      items: [desiredConfigMap(run, TASK, hash), desiredJob(run, TASK, hash)],
    }),
  });
  return run;
}

clusterTest("WatchedView equals a plain LIST after creates, updates and deletes of every kind", {
  needsJobs: true,
  ...NO_SANITIZE,
}, async () => {
  await installCrd();
  await using ns = await uniqueNamespace("view-content");
  // All namespaces: the cluster-wide paths; the comparison reads this namespace only.
  using v = await startView(adminConfig(), { namespaces: [] });
  assert(v.view.synced(), "synced after start()");
  assertEquals(v.view.failing(0), []);

  const a = await createRunWithChildren(ns.name, "a");
  const b = await createRunWithChildren(ns.name, "b");
  const content = await assertSameAsList(
    v.view,
    ns.name,
    "two runs with children, both pods Succeeded",
    (c) => c.pods.length >= 2 && c.pods.every((p) => p.phase === "Succeeded"),
    60_000,
  );
  assertEquals(content.scriptRuns.map(metaName), ["a", "b"]);
  assertEquals(content.jobs.length, 2);
  assertEquals(content.configMaps.length, 2);
  const cm = content.configMaps[0] as Record<string, unknown>;
  assert(!("data" in cm), "ConfigMaps are kept as metadata only");
  const job = v.view.children(a.metadata.namespace!, a.metadata.uid!).jobs[0];
  assert(!("spec" in job), "Jobs are kept without their spec");
  assert(!("managedFields" in job.metadata), "no managedFields");
  const pod = v.view.children(a.metadata.namespace!, a.metadata.uid!).pods[0];
  assertEquals(pod.terminated?.exitCode, 0);
  assertEquals(pod.runUid, a.metadata.uid);
  assertEquals(v.view.scriptRun(ns.name, "b")?.metadata.uid, b.metadata.uid);
  assertEquals(
    [...v.view.names(ns.name).jobs.values()].sort(),
    [a.metadata.uid, b.metadata.uid].sort(),
  );

  // Each Job's turn to Complete is reported as finished, once.
  // The view watches all namespaces, and other tests run at once: only this namespace counts.
  const finishedHere = () => v.finished.filter((k) => k.startsWith(`${ns.name}/`));
  await waitFor(() => finishedHere().length >= 2, { what: "both Jobs Complete in the view" });
  assertEquals(finishedHere().sort(), [`${ns.name}/a`, `${ns.name}/b`]);

  // Updates of a ScriptRun (label) and of a Job (annotation) wake the ScriptRun.
  v.changed.length = 0;
  await kubectlOk(["-n", ns.name, "label", "scriptrun", "a", "color=blue"]);
  await kubectlOk([
    "-n",
    ns.name,
    "annotate",
    "job",
    content.jobs.map((j) => (j as ScriptRun).metadata.name).find((n) => n.startsWith("b-"))!,
    "note=x",
  ]);
  await assertSameAsList(v.view, ns.name, "after a label and an annotation");
  await waitFor(() => v.changed.includes(`${ns.name}/a`) && v.changed.includes(`${ns.name}/b`), {
    what: "change events for a (its label) and b (its Job's annotation)",
  });
  assertEquals(v.view.scriptRun(ns.name, "a")?.metadata.labels?.color, "blue");
  assertEquals(finishedHere().length, 2, "a change to a finished Job is not a new finish");

  // Deletes: a ConfigMap, then a whole ScriptRun with its children (deleted here rather than by
  // the garbage collector, which learns about a new CRD only at its next discovery, up to 30 s).
  v.changed.length = 0;
  const bConfigMap =
    v.view.children(b.metadata.namespace!, b.metadata.uid!).configMaps[0].metadata.name;
  await kubectlOk(["-n", ns.name, "delete", "configmap", bConfigMap]);
  await kubectlOk(["-n", ns.name, "delete", "scriptrun", "a", "--wait=false"]);
  await kubectlOk([
    "-n",
    ns.name,
    "delete",
    "jobs,configmaps",
    "-l",
    `${LABELS.scriptRunUid}=${a.metadata.uid}`,
  ]);
  await assertSameAsList(
    v.view,
    ns.name,
    "a (with its children) and b's ConfigMap deleted",
    (c) => c.scriptRuns.length === 1 && c.jobs.length === 1 && c.configMaps.length === 0,
    60_000,
  );
  assert(v.changed.includes(`${ns.name}/b`), "deleting b's ConfigMap wakes b");
  assert(v.changed.includes(`${ns.name}/a`), "deleting a wakes a");
  assertEquals(v.view.children(a.metadata.namespace!, a.metadata.uid!).jobs, []);
  assertEquals(v.count("LIST"), 4, "one LIST per kind, then only watches");
});

clusterTest("WatchedView resumes a dropped watch and sees what changed while it was down", {
  needsJobs: true,
  ...NO_SANITIZE,
}, async () => {
  await installCrd();
  await using ns = await uniqueNamespace("view-drop");
  using v = await startView(adminConfig(), { namespaces: [ns.name] });
  const a = await createRunWithChildren(ns.name, "a");
  await assertSameAsList(v.view, ns.name, "before the drop");
  const lists = v.count("LIST");
  const watches = v.count("WATCH");

  let release = () => {};
  const hold = new Promise<void>((r) => release = r);
  v.view.interruptWatches({ hold });
  v.changed.length = 0;
  // While no watch is open: a new run, an update and a delete.
  await createRunWithChildren(ns.name, "b");
  await kubectlOk(["-n", ns.name, "label", "scriptrun", "a", "phase-of-test=down"]);
  const aConfigMap = desiredConfigMap(a, TASK, runHash(a, TASK)).metadata.name;
  await kubectlOk(["-n", ns.name, "delete", "configmap", aConfigMap]);
  assertEquals(v.view.scriptRun(ns.name, "b"), undefined, "the view does not see b while down");
  release();

  const content = await assertSameAsList(
    v.view,
    ns.name,
    "b, a's label and a's deleted ConfigMap, after the watches resumed",
    (c) => c.scriptRuns.length === 2 && c.configMaps.length === 1,
  );
  assertEquals(content.scriptRuns[0].metadata.labels?.["phase-of-test"], "down");
  assertEquals(v.count("LIST"), lists, "resumed from the resourceVersion: no re-LIST");
  assert(v.count("WATCH") >= watches + 4, "every stream opened a new watch");
  assert(v.changed.includes(`${ns.name}/b`) && v.changed.includes(`${ns.name}/a`));
  assertEquals(v.view.failing(0), []);
});

clusterTest("WatchedView abandons a watch that went silent and opens it again from where it was", {
  needsJobs: true,
  ...NO_SANITIZE,
}, async () => {
  await installCrd();
  await using ns = await uniqueNamespace("view-silent");
  await using proxy = await startPauseProxy();
  const kc = new KubeConfig();
  kc.loadFromFile(proxy.kubeconfig);
  using v = await startView(kc, { namespaces: [ns.name], watchIdleMs: 1500 });
  await createRunWithChildren(ns.name, "a");
  await assertSameAsList(v.view, ns.name, "before the silence");
  const lists = v.count("LIST");
  const watches = v.count("WATCH");
  // The connections go silent (no byte either way, no error): only the idle timer can tell.
  proxy.pause();
  await new Promise((r) => setTimeout(r, 2500));
  await createRunWithChildren(ns.name, "b");
  proxy.resume();
  await assertSameAsList(
    v.view,
    ns.name,
    "b, created while the watches were silent",
    (c) => c.scriptRuns.length === 2,
  );
  assert(
    v.count("WATCH") >= watches + 4,
    `every stream opened a new watch: ${JSON.stringify(v.requests)}`,
  );
  assertEquals(v.count("LIST"), lists, "resumed from the resourceVersion: no re-LIST");
  assertEquals(v.view.failing(0), []);
});

clusterTest("WatchedView re-LISTs on 410 Gone and drops what was deleted meanwhile", {
  needsJobs: true,
  ...NO_SANITIZE,
}, async () => {
  await installCrd();
  await using ns = await uniqueNamespace("view-gone");
  using v = await startView(adminConfig(), { namespaces: [ns.name] });
  const a = await createRunWithChildren(ns.name, "a");
  await createRunWithChildren(ns.name, "b");
  await assertSameAsList(v.view, ns.name, "before");
  const lists = v.count("LIST");

  let release = () => {};
  const hold = new Promise<void>((r) => release = r);
  // Resuming from resourceVersion 1 (long compacted out of the watch cache) gets 410 Gone.
  v.view.interruptWatches({ hold, resumeFrom: "1" });
  v.changed.length = 0;
  await kubectlOk(["-n", ns.name, "delete", "scriptrun", "a", "--wait=false"]);
  await kubectlOk([
    "-n",
    ns.name,
    "delete",
    "jobs,configmaps",
    "-l",
    `${LABELS.scriptRunUid}=${a.metadata.uid}`,
  ]);
  await createRunWithChildren(ns.name, "c");
  release();

  await assertSameAsList(
    v.view,
    ns.name,
    "a gone and c present, after the re-LIST",
    (c) => c.scriptRuns.map(metaName).join() === "b,c",
    60_000,
  );
  // The ScriptRun watch gets a real 410 ("too old resource version"): its watch cache starts when
  // the CRD is established, long after revision 1. The built-in kinds' caches on a young API
  // server start near revision 1 and still hold every event, so there rv 1 replays the history
  // instead (also a valid answer); the content must match either way.
  assertEquals(
    v.requests["LIST scriptruns 200"],
    2,
    `ScriptRuns listed again after the 410 (${JSON.stringify(v.requests)})`,
  );
  assert(v.count("LIST") >= lists + 1);
  assert(v.changed.includes(`${ns.name}/a`), "the re-LIST reports a's deletion");
  assert(v.changed.includes(`${ns.name}/c`), "and c's creation");
  assertEquals(v.view.scriptRun(ns.name, "a"), undefined);
  assertEquals(v.view.children(a.metadata.namespace!, a.metadata.uid!).configMaps.length, 0);
  assert(v.view.synced());
});

clusterTest(
  "WatchedView keeps what it listed when RBAC forbids watch, says so as an error, and recovers once allowed",
  {
    ...NO_SANITIZE,
  },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("view-forbidden");
    const sa = "lister";
    const rules = [
      { apiGroups: ["script-operator.dev"], resources: ["scriptruns"], verbs: ["get", "list"] },
      { apiGroups: ["batch"], resources: ["jobs"], verbs: ["get", "list"] },
      { apiGroups: [""], resources: ["configmaps", "pods"], verbs: ["get", "list"] },
    ];
    await kubectlOk(["apply", "-f", "-"], {
      stdin: JSON.stringify({
        apiVersion: "v1",
        kind: "List",
        items: [
          { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: sa, namespace: ns.name } },
          {
            apiVersion: "rbac.authorization.k8s.io/v1",
            kind: "Role",
            metadata: { name: sa, namespace: ns.name },
            rules,
          },
          {
            apiVersion: "rbac.authorization.k8s.io/v1",
            kind: "RoleBinding",
            metadata: { name: sa, namespace: ns.name },
            roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: sa },
            subjects: [{ kind: "ServiceAccount", name: sa, namespace: ns.name }],
          },
        ],
      }),
    });
    await kubectlOk(["create", "-f", "-"], { stdin: manifest(ns.name, "a") });
    const token = (await kubectlOk(["-n", ns.name, "create", "token", sa, "--duration=10m"]))
      .trim();
    await using kubeconfig = await tokenKubeconfig(token);
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig.path);

    records.length = 0;
    using v = await startView(kc, { namespaces: [ns.name] });
    // start() resolves after the first LISTs (allowed); the watches that follow are refused.
    await waitFor(() => v.view.failing(0).length === 4, { what: "every stream to fail to watch" });
    assert(v.view.synced());
    assertEquals(
      v.view.scriptRuns(ns.name).map(metaName),
      ["a"],
      "the view still serves what it listed",
    );
    assert(!records.some((r) => r.message.join("").includes("plain LISTs")), "no second mode");
    const errors = records.filter((r) => r.level === "error");
    assertEquals(
      errors.length,
      4,
      `one line per stream: ${JSON.stringify(errors.map((e) => e.properties))}`,
    );
    assert(errors.every((e) => e.properties.status === 403 && e.properties.namespace === ns.name));
    assert(String(errors[0].properties.hint).includes("grant list and watch"));
    assert(v.count("WATCH") >= 4);

    // Once watching is allowed, each stream's next retry (at most 30 s away) watches again.
    await kubectlOk([
      "-n",
      ns.name,
      "patch",
      "role",
      sa,
      "--type=json",
      `-p=${
        JSON.stringify(rules.map((_, i) => ({
          op: "add",
          path: `/rules/${i}/verbs/-`,
          value: "watch",
        })))
      }`,
    ]);
    await waitFor(() => v.view.failing(0).length === 0, {
      what: "the view to watch again",
      timeoutMs: 40_000,
    });
    await kubectlOk(["-n", ns.name, "label", "scriptrun", "a", "watched=yes"]);
    await assertSameAsList(
      v.view,
      ns.name,
      "after watching again",
      (c) => c.scriptRuns[0]?.metadata.labels?.watched === "yes",
    );
    assertEquals(
      records.filter((r) => r.level === "error").length,
      4,
      "still one error per stream",
    );
    assertEquals(
      records.filter((r) => r.message.join("") === "Watch stream recovered").length,
      4,
      "one recovery line per stream",
    );
  },
);

clusterTest("WatchedView re-LISTs every resyncMs and stays equal to a plain LIST", {
  ...NO_SANITIZE,
}, async () => {
  await installCrd();
  await using ns = await uniqueNamespace("view-resync");
  using v = await startView(adminConfig(), { namespaces: [ns.name], resyncMs: 1_500 });
  await kubectlOk(["create", "-f", "-"], { stdin: manifest(ns.name, "a") });
  await assertSameAsList(v.view, ns.name, "a in the view", (c) => c.scriptRuns.length === 1);
  const lists = v.requests["LIST scriptruns 200"];
  await waitFor(() => v.requests["LIST scriptruns 200"] >= lists + 2, {
    what: "two more ScriptRun LISTs (resyncs)",
    timeoutMs: 10_000,
  });
  await kubectlOk(["-n", ns.name, "label", "scriptrun", "a", "after=resync"]);
  const content = await assertSameAsList(
    v.view,
    ns.name,
    "the label after resyncs",
    (c) => c.scriptRuns[0]?.metadata.labels?.after === "resync",
  );
  assertEquals(content.scriptRuns.length, 1);
  assertEquals(v.view.failing(0), []);
});

clusterTest("the view's ConfigMap Accept headers get metadata only from the API server", {
  ...NO_SANITIZE,
}, async () => {
  await using ns = await uniqueNamespace("view-metadata");
  await kubectlOk(["-n", ns.name, "create", "configmap", "big", "--from-literal=body=0123456789"]);
  const http = new KubeHttp(adminConfig());
  try {
    const list = await http.fetch(`/api/v1/namespaces/${ns.name}/configmaps`, {
      headers: { Accept: METADATA_LIST_ACCEPT },
    });
    const body = await list.json();
    assertEquals(body.kind, "PartialObjectMetadataList");
    const item = body.items.find((i: { metadata: { name: string } }) => i.metadata.name === "big");
    assertEquals(item.kind, "PartialObjectMetadata");
    assert(!("data" in item), "no data in a PartialObjectMetadata");

    const watch = await http.fetch(
      `/api/v1/namespaces/${ns.name}/configmaps?watch=1&timeoutSeconds=1&resourceVersion=0`,
      { headers: { Accept: METADATA_ACCEPT } },
    );
    const events = (await watch.text()).trim().split("\n").map((l) => JSON.parse(l));
    const added = events.find((e) => e.object?.metadata?.name === "big");
    assertEquals(added?.object.kind, "PartialObjectMetadata");
    assert(!("data" in added.object));
  } finally {
    http.close();
  }
});

clusterTest(
  "makeClient transport fetch: ClientNodeKube lists and writes with client-cert and token kubeconfigs",
  {
    ...NO_SANITIZE,
  },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("fetch-transport");
    await kubectlOk(["-n", ns.name, "create", "serviceaccount", "writer"]);
    await kubectlOk([
      "-n",
      ns.name,
      "create",
      "role",
      "writer",
      "--verb=create,list",
      "--resource=configmaps",
    ]);
    await kubectlOk([
      "-n",
      ns.name,
      "create",
      "rolebinding",
      "writer",
      "--role=writer",
      `--serviceaccount=${ns.name}:writer`,
    ]);
    const token = (await kubectlOk(["-n", ns.name, "create", "token", "writer"])).trim();
    await using tokenConfig = await tokenKubeconfig(token);
    const tokenKc = new KubeConfig();
    tokenKc.loadFromFile(tokenConfig.path);
    for (const [who, kc] of [["client certificate", adminConfig()], ["token", tokenKc]] as const) {
      const codes: string[] = [];
      const kube = new ClientNodeKube(kc, {
        observe: (verb, resource, code) => codes.push(`${verb} ${resource} ${code}`),
        client: { transport: "fetch" },
      });
      const name = `cm-${who === "token" ? "token" : "cert"}`;
      await kube.createConfigMap({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: {
          name,
          namespace: ns.name,
          labels: { [LABELS.managedBy]: "script-operator" },
        },
        data: { a: "b" },
      });
      const listed = await kube.listConfigMaps(ns.name);
      assert(listed.some((c) => c.metadata.name === name), `${who}: the ConfigMap is listed`);
      assertEquals(codes, ["POST configmaps 201", "LIST configmaps 200"], who);
    }
  },
);
