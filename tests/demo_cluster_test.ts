/**
 * `deno task demo --kubeconfig PATH` (README, "Run it against your cluster"), run as a user runs
 * it, a subprocess, against a local control plane standing in for "a cluster you already have":
 * it runs the sample to Succeeded, shows the operator's steps, and afterwards nothing it created
 * remains, while what was there before (the CRD, a namespace) is kept. A cluster, a context or
 * rights that are not there each get one line and create nothing.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import { ownClusterSkip, startOwnControlPlane } from "./harness/own_cluster.ts";
import { installCrd, unreachableKubeconfig } from "./harness/operator.ts";
import {
  clusterTest,
  kubectl,
  kubectlOk,
  testKubeconfig,
  tokenKubeconfig,
  uniqueNamespace,
} from "./harness/test_env.ts";
import { parseDemoArgs } from "./harness/demo.ts";
import { DemoError } from "./harness/demo_cluster.ts";

const DEMO = new URL("./harness/demo.ts", import.meta.url).pathname;
const CRD = "scriptruns.script-operator.dev";
const NEEDS = { needsJobs: true, needsControllers: true };

interface DemoRun {
  code: number;
  stdout: string;
  stderr: string;
}

async function demo(args: string[]): Promise<DemoRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", DEMO, ...args],
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

function show(run: DemoRun): string {
  return `exit ${run.code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
}

/** The demo failed with exactly one line on stderr matching `line`, and created nothing. */
function assertOneLineError(run: DemoRun, code: number, line: RegExp): void {
  assertEquals(run.code, code, show(run));
  const lines = run.stderr.trimEnd().split("\n");
  assertEquals(lines.length, 1, show(run));
  assert(line.test(lines[0]), show(run));
  assert(!/==> (Installing|Creating namespace|Applying)/.test(run.stdout), show(run));
}

/** The output lines every successful run shows: the operator's steps, the outcome, the cleanup. */
function assertRanSample(run: DemoRun): void {
  assertEquals(run.code, 0, show(run));
  const out = run.stdout + run.stderr;
  for (const step of ["Creating ConfigMap", "Creating Job", "Job succeeded"]) {
    assert(out.includes(step), `operator step "${step}" not shown\n${show(run)}`);
  }
  assert(/==> ScriptRun \S+\/sample: phase Succeeded\n/.test(run.stdout), show(run));
  assert(
    /==> kubectl logs -n \S+ job\/sample-[0-9a-f]{10} \(the script's own output\)/.test(run.stdout),
    show(run),
  );
  assert(run.stdout.includes("\n==> The sample ScriptRun succeeded.\n"), show(run));
  assert(!run.stderr.includes("demo:"), show(run));
}

Deno.test("demo args: --kubeconfig, --context and --namespace; usage errors are one line, exit 2", () => {
  assertEquals(parseDemoArgs([]), {
    kubeconfig: undefined,
    context: undefined,
    namespace: undefined,
    help: false,
  });
  assertEquals(parseDemoArgs(["--kubeconfig", "k", "--context=c", "--namespace", "team-a"]), {
    kubeconfig: "k",
    context: "c",
    namespace: "team-a",
    help: false,
  });
  const refused = (args: string[], message: RegExp) => {
    try {
      parseDemoArgs(args);
    } catch (error) {
      assert(error instanceof DemoError, error);
      assertEquals(error.code, 2);
      assert(message.test(error.message) && !error.message.includes("\n"), error.message);
      return;
    }
    throw new Error(`${args.join(" ")} was accepted`);
  };
  refused(["--bogus"], /^Unknown option --bogus; see deno task demo --help$/);
  refused(["--kubeconfig"], /--kubeconfig .*missing; see deno task demo --help$/);
  refused(["--context", "c"], /^--context works with --kubeconfig PATH/);
  refused(["--kubeconfig", "k", "--namespace", "Team_A"], /^--namespace Team_A: not a namespace/);
  refused(["extra"], /extra/);
});

const ownSkip = ownClusterSkip();
if (ownSkip) console.log(`SKIP demo --kubeconfig on a cluster without the CRD: ${ownSkip}`);
Deno.test({
  name:
    "demo --kubeconfig: on a cluster without the CRD it installs it, runs the sample, then removes the CRD and its namespace",
  ignore: ownSkip !== undefined,
  // The control plane's processes and the demo's are children of this test.
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    // A cluster of its own, so removing the CRD disturbs no other test.
    const cp = await startOwnControlPlane();
    try {
      const run = await demo(["--kubeconfig", cp.kubeconfigPath]);
      assertRanSample(run);
      assert(
        run.stdout.includes(
          `\n==> Installing the ScriptRun CRD (${CRD}); the demo removes it at the end\n`,
        ),
        show(run),
      );
      const ns =
        /\n==> Creating namespace (script-operator-demo-[0-9a-f]{8}); the demo removes it at the end\n/
          .exec(run.stdout)?.[1];
      assert(ns, show(run));
      assert(
        run.stdout.includes(`\nRemoved: namespace ${ns}; the ScriptRun CRD (${CRD}).\n`),
        show(run),
      );
      const get = async (args: string[]) => {
        const out = await new Deno.Command(`${cp.binDir}/kubectl`, {
          args: [`--kubeconfig=${cp.kubeconfigPath}`, "get", ...args],
          stdin: "null",
        }).output();
        return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
      };
      for (const what of [["crd", CRD], ["namespace", ns]]) {
        const r = await get(what);
        assertEquals(r.code, 1, `${what.join(" ")} still there`);
        assert(r.stderr.includes("NotFound"), r.stderr);
      }
    } finally {
      await cp.stop();
    }
  },
});

clusterTest(
  "demo --kubeconfig: a CRD that was installed is kept; a --namespace it created is removed",
  { ...NEEDS, sanitizeResources: false, sanitizeOps: false },
  async () => {
    await installCrd();
    const ns = `demo-new-${crypto.randomUUID().slice(0, 8)}`;
    const run = await demo(["--kubeconfig", testKubeconfig!, "--namespace", ns]);
    assertRanSample(run);
    assert(
      run.stdout.includes(
        `\n==> The ScriptRun CRD (${CRD}) is installed already; the demo keeps it\n`,
      ),
      show(run),
    );
    assert(run.stdout.includes(`\nRemoved: namespace ${ns}.\n`), show(run));
    assert(
      run.stdout.includes(
        `\nKept, as they were there before the demo: the ScriptRun CRD (${CRD}).\n`,
      ),
      show(run),
    );
    await kubectlOk(["get", "crd", CRD]);
    const gone = await kubectl(["get", "namespace", ns]);
    assert(gone.code !== 0 && gone.stderr.includes("NotFound"), gone.stderr);
  },
);

clusterTest(
  "demo --kubeconfig: in an existing --namespace it removes only the sample and what it owns",
  { ...NEEDS, sanitizeResources: false, sanitizeOps: false },
  async () => {
    await installCrd();
    await using ns = await uniqueNamespace("demo-existing");
    await kubectlOk(["-n", ns.name, "create", "configmap", "before-the-demo"]);
    const run = await demo(["--kubeconfig", testKubeconfig!, "--namespace", ns.name]);
    assertRanSample(run);
    assert(
      run.stdout.includes(`\n==> Using namespace ${ns.name} (it exists; the demo keeps it)\n`),
      show(run),
    );
    assert(
      run.stdout.includes(`\nRemoved: ScriptRun ${ns.name}/sample (and its ConfigMap and Job).\n`),
      show(run),
    );
    assert(run.stdout.includes(`Kept, as they were there before the demo: namespace ${ns.name};`));
    const left = (await kubectlOk([
      "-n",
      ns.name,
      "get",
      "scriptruns,configmaps,jobs",
      "-o",
      "name",
    ])).split("\n").filter((l) => l && l !== "configmap/kube-root-ca.crt");
    assertEquals(left, ["configmap/before-the-demo"]);
  },
);

clusterTest(
  "demo --kubeconfig: Ctrl-C during the run removes what it created so far and exits 130",
  { ...NEEDS, sanitizeResources: false, sanitizeOps: false },
  async () => {
    await installCrd();
    const ns = `demo-int-${crypto.randomUUID().slice(0, 8)}`;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", DEMO, "--kubeconfig", testKubeconfig!, "--namespace", ns],
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    let stdout = "";
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let interrupted = false;
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      stdout += r.value;
      if (!interrupted && stdout.includes(`==> Applying the sample ScriptRun`)) {
        child.kill("SIGINT");
        interrupted = true;
      }
    }
    const run = { code: (await child.status).code, stdout, stderr: await stderr };
    assert(interrupted, show(run));
    assertEquals(run.code, 130, show(run));
    assert(run.stdout.includes("\n==> Interrupted: removing what the demo created\n"), show(run));
    assert(run.stdout.includes(`\nRemoved: namespace ${ns}.\n`), show(run));
    await kubectlOk(["get", "crd", CRD]);
    const gone = await kubectl(["get", "namespace", ns]);
    assert(gone.code !== 0 && gone.stderr.includes("NotFound"), gone.stderr);
  },
);

clusterTest(
  "demo --kubeconfig: an unreachable cluster, a missing context, missing rights: one line each, nothing created",
  { sanitizeResources: false, sanitizeOps: false },
  async () => {
    await using down = await unreachableKubeconfig();
    assertOneLineError(
      await demo(["--kubeconfig", down.path]),
      1,
      /^demo: cannot reach the API server of context \S+ at https:\/\/127\.0\.0\.1:1: .+; is the cluster running, and is this the right kubeconfig\?$/,
    );
    assertOneLineError(
      await demo(["--kubeconfig", testKubeconfig!, "--context", "no-such-context"]),
      2,
      /^demo: --context no-such-context: not in \S+; contexts: /,
    );
    await using ns = await uniqueNamespace("demo-norbac");
    await kubectlOk(["-n", ns.name, "create", "serviceaccount", "nobody"]);
    const token = (await kubectlOk(["-n", ns.name, "create", "token", "nobody"])).trim();
    await using kc = await tokenKubeconfig(token);
    assertOneLineError(
      await demo(["--kubeconfig", kc.path, "--namespace", ns.name]),
      1,
      /^demo: missing RBAC: context test may not .*create scriptruns\.script-operator\.dev.*list scriptruns\.script-operator\.dev.*; use a context with these rights, or ask a cluster admin to grant them$/,
    );
  },
);
