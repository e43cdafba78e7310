/**
 * docs/operations.md, "Uninstall", run as written: its first command removes everything
 * `kubectl apply -k deploy/` created, every ScriptRun included (the CRD goes); its second removes
 * the operator and keeps the CRD and the ScriptRuns. On a control plane of its own, since deleting
 * the CRD would disturb every other test.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import type { ControlPlane } from "./harness/control_plane.ts";
import { ownClusterSkip, startOwnControlPlane } from "./harness/own_cluster.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const CRD = "scriptruns.script-operator.dev";

/** The shell commands of the fenced blocks under "## Uninstall" in docs/operations.md. */
function uninstallCommands(): string[] {
  const text = Deno.readTextFileSync(`${ROOT}docs/operations.md`);
  const start = text.indexOf("\n## Uninstall\n");
  assert(start >= 0, "docs/operations.md has no '## Uninstall' section");
  const end = text.indexOf("\n## ", start + 1);
  const section = text.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) =>
    m[1].replace(/\\\n\s*/g, "").trim()
  );
}

async function kubectl(cp: ControlPlane, args: string[]) {
  const out = await new Deno.Command(`${cp.binDir}/kubectl`, {
    args: [`--kubeconfig=${cp.kubeconfigPath}`, ...args],
    cwd: ROOT,
    stdin: "null",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** Runs one documented `kubectl ...` command line against `cp`. */
async function runDocumented(cp: ControlPlane, line: string): Promise<void> {
  const words = line.split(/\s+/);
  assertEquals(words[0], "kubectl", `not a kubectl command: ${line}`);
  const r = await kubectl(cp, words.slice(1));
  assertEquals(r.code, 0, `${line}\n${r.stdout}${r.stderr}`);
}

/** Whether `kubectl get ARGS` finds the object (false on NotFound, fails on anything else). */
async function found(cp: ControlPlane, args: string[]): Promise<boolean> {
  const r = await kubectl(cp, ["get", ...args]);
  if (r.code === 0) return true;
  assert(/NotFound|the server doesn't have a resource type/.test(r.stderr), r.stderr);
  return false;
}

const skip = ownClusterSkip();
if (skip) console.log(`SKIP uninstall: ${skip}`);
Deno.test({
  name:
    "uninstall: docs/operations.md's commands remove everything (ScriptRuns with the CRD), or everything but the CRD and ScriptRuns",
  ignore: skip !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const [removeAll, keepRuns, ...rest] = uninstallCommands();
    assertEquals(removeAll, "kubectl delete -k deploy/");
    assert(keepRuns?.startsWith("kubectl delete "), `second command: ${keepRuns}`);
    assertEquals(rest, []);
    const cp = await startOwnControlPlane();
    try {
      const install = async () => {
        await runDocumented(cp, "kubectl apply -k deploy/");
        await runDocumented(cp, `kubectl wait --for=condition=Established crd/${CRD}`);
        await runDocumented(cp, "kubectl apply -f deploy/sample.yaml");
      };
      const installed = [
        ["namespace", "script-operator"],
        ["-n", "script-operator", "deployment", "script-operator"],
        ["-n", "default", "role", "script-operator"],
        ["-n", "default", "rolebinding", "script-operator"],
        ["validatingadmissionpolicy", CRD],
        ["validatingadmissionpolicybinding", CRD],
        ["-n", "script-operator", "service", "script-operator-metrics"],
        ["clusterrole", "script-operator-edit"],
        ["clusterrole", "script-operator-view"],
      ];

      await install();
      await runDocumented(cp, keepRuns);
      for (const what of installed) {
        assertEquals(await found(cp, what), false, `${what.join(" ")} left by: ${keepRuns}`);
      }
      assert(await found(cp, ["crd", CRD]), "the CRD was removed");
      assert(
        await found(cp, ["-n", "default", "scriptrun", "sample"]),
        "the ScriptRun was removed",
      );

      await install();
      await runDocumented(cp, removeAll);
      for (const what of [...installed, ["crd", CRD]]) {
        assertEquals(await found(cp, what), false, `${what.join(" ")} left by: ${removeAll}`);
      }
    } finally {
      await cp.stop();
    }
  },
});
