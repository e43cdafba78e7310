/**
 * `deno task demo --kubeconfig PATH [--context NAME] [--namespace NS]`: the demo on a cluster the
 * user already has. Nothing is built and no control plane starts. It checks that the cluster
 * answers and that the user may do what the demo and the operator need, installs the CRD if it is
 * missing, runs the operator locally (the `start` task's flags) for one namespace, applies
 * deploy/sample.yaml there, shows the operator's logs and the script's output, then removes
 * exactly what it created (the namespace or the sample ScriptRun, and the CRD only if it installed
 * it) and says so, on Ctrl-C too. It talks to the API server through the operator's own client,
 * so it needs no kubectl.
 * @module
 */
import {
  AuthorizationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  VersionApi,
} from "@kubernetes/client-node";
import { parse, parseAllDocuments } from "yaml";
import { classify, type KubeError } from "../../src/api/errors.ts";
import { makeClient } from "../../src/api/client.ts";
import { KubeConfigError, loadKubeConfig } from "../../src/api/kubeconfig.ts";
import { scriptRunCrd } from "../../src/desired/crd.ts";
import { GROUP, PLURAL, VERSION } from "../../src/types.ts";
import { startTaskFlags } from "./operator.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const CRD_NAME = `${PLURAL}.${GROUP}`;
const SAMPLE = "sample";
const CRD_API = {
  group: "apiextensions.k8s.io",
  version: "v1",
  plural: "customresourcedefinitions",
};

interface Condition {
  type: string;
  status: string;
}

function readCrd(c: Clients): Promise<unknown> {
  return c.custom.getClusterCustomObject({ ...CRD_API, name: CRD_NAME });
}

/** What the user asked for. */
export interface ClusterDemoOptions {
  /** Kubeconfig file. */
  kubeconfig: string;
  /** Context in it (default: its current-context). */
  context?: string;
  /** Namespace for the sample (default: a fresh `script-operator-demo-<random>`). */
  namespace?: string;
  /** Seconds to wait for the sample to finish (default 300: a real node may pull an image). */
  timeoutSeconds?: number;
}

/** A failure the demo explains in one line; `code` is the exit code. */
export class DemoError extends Error {
  override name = "DemoError";
  /** 1: the cluster or a step failed; 2: the command line or the kubeconfig is wrong. */
  readonly code: 1 | 2;
  constructor(message: string, code: 1 | 2 = 1) {
    super(message);
    this.code = code;
  }
}

const say = (text: string) => console.log(`\n==> ${text}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Clients {
  core: CoreV1Api;
  custom: CustomObjectsApi;
  authz: AuthorizationV1Api;
  version: VersionApi;
}

/** What the demo created, so cleanup removes exactly that. */
interface Created {
  /** A namespace the demo created (removed with everything in it). */
  namespace?: string;
  /** The sample ScriptRun, when it lives in a namespace the user had. */
  sample?: { namespace: string; name: string };
  /** The demo installed the CRD. */
  crd?: boolean;
}

/** One `verb group/resource[/sub]` the demo or the operator needs in the sample's namespace or cluster-wide. */
interface Need {
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  /** Cluster-scoped (no namespace attribute). */
  cluster?: boolean;
}

/**
 * The operator's rights in a namespace: the rules of deploy/rbac-namespaced.yaml's Role, the same
 * the shipped install grants (tests/rbac_test.ts keeps those equal to what src/ calls).
 */
function operatorNeeds(): Need[] {
  const text = Deno.readTextFileSync(`${ROOT}deploy/rbac-namespaced.yaml`);
  const role = parseAllDocuments(text).map((d) => d.toJS()).find((o) =>
    o?.kind === "Role" && o.metadata.name === "script-operator"
  );
  const needs: Need[] = [];
  for (
    const rule of role.rules as { apiGroups: string[]; resources: string[]; verbs: string[] }[]
  ) {
    for (const group of rule.apiGroups) {
      for (const res of rule.resources) {
        const [resource, subresource] = res.split("/");
        for (const verb of rule.verbs) needs.push({ verb, group, resource, subresource });
      }
    }
  }
  return needs;
}

/** The demo's own calls, beyond the operator's. */
function demoNeeds(createNamespace: boolean, installCrd: boolean): Need[] {
  const crd = {
    group: "apiextensions.k8s.io",
    resource: "customresourcedefinitions",
    cluster: true,
  };
  return [
    { verb: "get", ...crd },
    ...installCrd ? [{ verb: "create", ...crd }, { verb: "delete", ...crd }] : [],
    ...createNamespace
      ? [
        { verb: "create", group: "", resource: "namespaces", cluster: true },
        { verb: "delete", group: "", resource: "namespaces", cluster: true },
      ]
      : [],
    { verb: "create", group: GROUP, resource: PLURAL },
    { verb: "get", group: GROUP, resource: PLURAL },
    { verb: "delete", group: GROUP, resource: PLURAL },
    { verb: "get", group: "", resource: "pods", subresource: "log" },
  ];
}

function describeNeed(n: Need): string {
  const res = `${n.resource}${n.subresource ? `/${n.subresource}` : ""}${
    n.group ? `.${n.group}` : ""
  }`;
  return `${n.verb} ${res}`;
}

/** The needs the user's credentials lack, asked of the API server one SelfSubjectAccessReview each. */
async function missingRights(c: Clients, namespace: string, needs: Need[]): Promise<Need[]> {
  const missing: Need[] = [];
  for (const n of needs) {
    const review = await c.authz.createSelfSubjectAccessReview({
      body: {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SelfSubjectAccessReview",
        spec: {
          resourceAttributes: {
            verb: n.verb,
            group: n.group,
            resource: n.resource,
            subresource: n.subresource,
            namespace: n.cluster ? undefined : namespace,
          },
        },
      },
    });
    if (!review.status?.allowed) missing.push(n);
  }
  return missing;
}

async function exists(read: () => Promise<unknown>, action: string): Promise<boolean> {
  try {
    await read();
    return true;
  } catch (error) {
    const e = classify(error, action);
    if (e.kind === "notFound") return false;
    throw e;
  }
}

/** Thrown between steps once the user pressed Ctrl-C (or the demo got SIGTERM). */
class Interrupted extends Error {
  override name = "Interrupted";
}

/**
 * Waits until `done` holds, polling each second; throws DemoError after `seconds`, and whatever
 * `check` throws (an interruption) between polls.
 */
async function until(
  done: () => Promise<boolean>,
  what: string,
  seconds: number,
  check: () => void = () => {},
): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (!await done()) {
    check();
    if (Date.now() > deadline) throw new DemoError(`${what} did not happen within ${seconds} s`);
    await sleep(1000);
  }
}

function connect(options: ClusterDemoOptions): { kc: KubeConfig; server: string; context: string } {
  let kc: KubeConfig;
  try {
    kc = loadKubeConfig({ kubeconfig: options.kubeconfig, context: options.context }).kc;
  } catch (error) {
    if (error instanceof KubeConfigError) throw new DemoError(error.message, 2);
    throw error;
  }
  return { kc, server: kc.getCurrentCluster()!.server, context: kc.getCurrentContext() };
}

function clients(kc: KubeConfig): Clients {
  return {
    core: makeClient(kc, CoreV1Api),
    custom: makeClient(kc, CustomObjectsApi),
    authz: makeClient(kc, AuthorizationV1Api),
    version: makeClient(kc, VersionApi, { requestMs: 10_000 }),
  };
}

/** The sample ScriptRun of deploy/sample.yaml, in `namespace`. */
function sample(namespace: string): Record<string, unknown> {
  const run = parse(Deno.readTextFileSync(`${ROOT}deploy/sample.yaml`));
  run.metadata.namespace = namespace;
  return run;
}

/** The demo on the user's cluster. Resolves with the exit code; throws DemoError with one line. */
export async function runOnCluster(options: ClusterDemoOptions): Promise<number> {
  const progress = { step: "read the cluster's version" };
  try {
    return await demoOnCluster(options, progress);
  } catch (error) {
    if (error instanceof DemoError) throw error;
    // An API error or a dropped connection: one line naming the step, never a stack trace.
    throw new DemoError(classify(error, progress.step).message);
  }
}

async function demoOnCluster(
  options: ClusterDemoOptions,
  progress: { step: string },
): Promise<number> {
  const { kc, server, context } = connect(options);
  const c = clients(kc);
  say(`Using the cluster of context ${context} at ${server} (${options.kubeconfig})`);
  try {
    const v = await c.version.getCode();
    console.log(`Kubernetes ${v.gitVersion}`);
  } catch (error) {
    const e = classify(error, "read its version");
    if (e.code === 0) {
      throw new DemoError(
        `cannot reach the API server of context ${context} at ${server}: ${
          e.message.replace(/^cannot reach the API server to read its version: /, "")
        }; is the cluster running, and is this the right kubeconfig?`,
      );
    }
    if (e.kind !== "forbidden") throw new DemoError(`the API server at ${server}: ${e.message}`);
  }

  const namespace = options.namespace ?? `script-operator-demo-${crypto.randomUUID().slice(0, 8)}`;
  const crdInstalled = await exists(
    () => readCrd(c),
    `get customresourcedefinition ${CRD_NAME}`,
  ).catch((error: KubeError) => {
    if (error.kind === "forbidden") return true; // reported with every other missing right below
    throw new DemoError(error.message);
  });
  const namespaceExists = options.namespace !== undefined &&
    await exists(() => c.core.readNamespace({ name: namespace }), `get namespace ${namespace}`)
      .catch((error: KubeError) => {
        if (error.kind === "forbidden") return true;
        throw new DemoError(error.message);
      });
  progress.step = `check the rights of context ${context} (SelfSubjectAccessReview)`;
  const missing = await missingRights(c, namespace, [
    ...demoNeeds(!namespaceExists, !crdInstalled),
    ...operatorNeeds(),
  ]);
  if (missing.length > 0) {
    throw new DemoError(
      `missing RBAC: context ${context} may not ${
        missing.map(describeNeed).join(", ")
      } (in namespace ${namespace} or cluster-wide); use a context with these rights, or ask a cluster admin to grant them`,
    );
  }
  if (namespaceExists) {
    const taken = await exists(
      () =>
        c.custom.getNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace,
          plural: PLURAL,
          name: SAMPLE,
        }),
      `get scriptrun ${namespace}/${SAMPLE}`,
    ).catch(() => false);
    if (taken) {
      throw new DemoError(
        `namespace ${namespace} already has a ScriptRun "${SAMPLE}"; the demo would not remove what it did not create: pick another --namespace`,
        2,
      );
    }
  }

  const created: Created = {};
  let operator: Deno.ChildProcess | undefined;
  // Ctrl-C stops the steps at the next check, so what an in-flight call creates is recorded
  // before the cleanup (in `finally`) removes it.
  let interrupted = false;
  const check = () => {
    if (interrupted) throw new Interrupted();
  };
  const onSignal = () => {
    if (!interrupted) console.log("\n==> Interrupted: removing what the demo created");
    interrupted = true;
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let phase = "";
  try {
    if (crdInstalled) {
      say(`The ScriptRun CRD (${CRD_NAME}) is installed already; the demo keeps it`);
    } else {
      say(`Installing the ScriptRun CRD (${CRD_NAME}); the demo removes it at the end`);
      progress.step = `install the CRD ${CRD_NAME}`;
      // Through the generic client: the typed one would drop the schema's x-kubernetes-* keys.
      await c.custom.createClusterCustomObject({ ...CRD_API, body: scriptRunCrd() });
      created.crd = true;
      check();
      await until(
        async () => {
          const crd = await readCrd(c) as { status?: { conditions?: Condition[] } };
          return crd.status?.conditions?.some((x) =>
            x.type === "Established" && x.status === "True"
          ) ??
            false;
        },
        "the CRD becoming Established",
        60,
        check,
      );
    }
    if (namespaceExists) {
      say(`Using namespace ${namespace} (it exists; the demo keeps it)`);
    } else {
      say(`Creating namespace ${namespace}; the demo removes it at the end`);
      progress.step = `create namespace ${namespace}`;
      await c.core.createNamespace({
        body: {
          metadata: {
            name: namespace,
            labels: { "app.kubernetes.io/created-by": "script-operator-demo" },
          },
        },
      });
      created.namespace = namespace;
    }

    say(
      `Starting script-operator locally (deno task start --namespace ${namespace} --interval 1s)`,
    );
    check();
    operator = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...await startTaskFlags(),
        `${ROOT}main.ts`,
        `--kubeconfig=${options.kubeconfig}`,
        `--context=${context}`,
        `--namespace=${namespace}`,
        "--interval=1s",
        "--log-format=text",
        "--health-probe-bind-address=0",
        "--metrics-bind-address=0",
      ],
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();

    say(`Applying the sample ScriptRun (deploy/sample.yaml) in namespace ${namespace}`);
    progress.step = `create ScriptRun ${namespace}/${SAMPLE}`;
    await c.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL,
      body: sample(namespace),
    });
    if (namespaceExists) created.sample = { namespace, name: SAMPLE };

    say("Waiting for the run to finish (the operator's logs follow)");
    progress.step = `read ScriptRun ${namespace}/${SAMPLE}`;
    const seconds = options.timeoutSeconds ?? 300;
    let status: Record<string, unknown> = {};
    const read = async () => {
      const run = await c.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: PLURAL,
        name: SAMPLE,
      }) as { status?: Record<string, unknown> };
      status = run.status ?? {};
      phase = String(status.phase ?? "");
      return phase === "Succeeded" || phase === "Failed";
    };
    check();
    await until(
      read,
      `the sample ScriptRun finishing (phase now: ${phase || "none"})`,
      seconds,
      check,
    )
      .catch((error) => {
        if (error instanceof DemoError) console.log(`demo: ${error.message}`);
        else throw error;
      });
    // Let the operator log its last step before our output follows it.
    await sleep(500);
    say(`ScriptRun ${namespace}/${SAMPLE}: phase ${phase || "none"}`);
    console.log(JSON.stringify(status, null, 2));
    await showOutput(c, namespace, String(status.jobName ?? ""));
    check();
    if (phase === "Succeeded") say("The sample ScriptRun succeeded.");
    else {say(
        `The sample ScriptRun did not succeed (phase: ${phase || "none"}); see the status above.`,
      );}
  } catch (error) {
    if (!(error instanceof Interrupted)) throw error;
  } finally {
    await removeCreated(c, created, operator);
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  if (interrupted) return 130;
  return phase === "Succeeded" ? 0 : 1;
}

/** `kubectl logs job/NAME`, through the API: the script's own output, or why there is none. */
async function showOutput(c: Clients, namespace: string, jobName: string): Promise<void> {
  if (!jobName) return;
  say(`kubectl logs -n ${namespace} job/${jobName} (the script's own output)`);
  try {
    const pods = await c.core.listNamespacedPod({
      namespace,
      labelSelector: `job-name=${jobName}`,
    });
    const pod = pods.items[0]?.metadata?.name;
    if (!pod) {
      console.log("(no pod left to read the output from)");
      return;
    }
    const log = await c.core.readNamespacedPodLog({ name: pod, namespace });
    await Deno.stdout.write(new TextEncoder().encode(log.endsWith("\n") ? log : `${log}\n`));
  } catch (error) {
    // A simulated node (kwok) runs no container and serves no log.
    const why = classify(error, `read the log of job ${jobName}`).message;
    console.log(
      `(no output: the node serves no log for it; a simulated node runs no container: ${why})`,
    );
  }
}

/** Stops the operator, then removes exactly what `created` records, and says what it removed. */
async function removeCreated(
  c: Clients,
  created: Created,
  operator: Deno.ChildProcess | undefined,
): Promise<void> {
  say("Stopping the operator and removing what the demo created");
  try {
    operator?.kill("SIGTERM");
    await operator?.status;
  } catch { /* already gone */ }
  const removed: string[] = [];
  const failed: string[] = [];
  const attempt = async (what: string, step: () => Promise<void>) => {
    try {
      await step();
      removed.push(what);
    } catch (error) {
      failed.push(`${what}: ${error instanceof Error ? error.message : error}`);
    }
  };
  const { namespace, sample, crd } = created;
  if (namespace) {
    await attempt(`namespace ${namespace}`, async () => {
      await c.core.deleteNamespace({ name: namespace }).catch(ignoreNotFound);
      await until(
        () =>
          exists(() => c.core.readNamespace({ name: namespace }), "get namespace").then((e) => !e),
        `namespace ${namespace} going away`,
        180,
      );
    });
  }
  if (sample) {
    // The sample lives in a namespace the user had: remove the run, and with it (foreground
    // deletion waits for the garbage collector) its ConfigMap and Job.
    const { namespace: where, name } = sample;
    await attempt(`ScriptRun ${where}/${name} (and its ConfigMap and Job)`, async () => {
      await c.custom.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: where,
        plural: PLURAL,
        name,
        propagationPolicy: "Foreground",
      }).catch(ignoreNotFound);
      await until(
        () =>
          exists(() =>
            c.custom.getNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              namespace: where,
              plural: PLURAL,
              name,
            }), "get scriptrun").then((e) => !e),
        `ScriptRun ${where}/${name} going away`,
        180,
      );
    });
  }
  if (crd) {
    await attempt(`the ScriptRun CRD (${CRD_NAME})`, async () => {
      await c.custom.deleteClusterCustomObject({ ...CRD_API, name: CRD_NAME }).catch(
        ignoreNotFound,
      );
      await until(
        () =>
          exists(() => readCrd(c), "get crd").then((
            e,
          ) => !e),
        "the CRD going away",
        120,
      );
    });
  }
  if (removed.length > 0) console.log(`Removed: ${removed.join("; ")}.`);
  const kept = [
    ...sample ? [`namespace ${sample.namespace}`] : [],
    ...crd ? [] : [`the ScriptRun CRD (${CRD_NAME})`],
  ];
  if (kept.length > 0) console.log(`Kept, as they were there before the demo: ${kept.join("; ")}.`);
  for (const f of failed) console.log(`NOT removed: ${f}`);
  if (failed.length > 0) {
    throw new DemoError("cleanup incomplete: remove the objects above by hand");
  }
}

function ignoreNotFound(error: unknown): void {
  if (classify(error, "delete").kind !== "notFound") throw error;
}
