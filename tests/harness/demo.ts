/**
 * `deno task demo`: the newcomer's first command.
 *
 * Without flags it starts the local control plane (building it on first use; with a real node where
 * it can run), installs the CRD, starts the operator, applies deploy/sample.yaml, streams the
 * operator's step logs until the run finishes, prints `kubectl get scriptruns`, the status and
 * (real node) the script's own output from `kubectl logs`, then stops everything.
 *
 * With `--kubeconfig PATH [--context NAME] [--namespace NS]` it uses that cluster instead
 * (tests/harness/demo_cluster.ts): nothing is built and no control plane starts.
 *
 * Exits 0 when the sample run succeeded, 1 with the reason otherwise, 2 on a usage error.
 * @module
 */
import { parseArgs } from "node:util";
import { type ControlPlane, startControlPlane } from "./control_plane.ts";
import { startTaskFlags } from "./operator.ts";
import { DemoError, runOnCluster } from "./demo_cluster.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const say = (text: string) => console.log(`\n==> ${text}`);

/** `deno task demo --help`. */
export const DEMO_HELP =
  `Usage: deno task demo [--kubeconfig PATH [--context NAME] [--namespace NS]]

Without flags: a local control plane (built from Go modules on first use), the operator and the
sample ScriptRun, start to finish, then everything stops.

  --kubeconfig PATH   use this cluster instead: no build, no local control plane. Installs the
                      ScriptRun CRD if it is missing, runs the operator locally for one namespace,
                      applies deploy/sample.yaml there, then removes exactly what it created
  --context NAME      context of that kubeconfig (default: its current-context)
  --namespace NS      namespace for the sample (default: a new script-operator-demo-<random>,
                      removed at the end; an existing one is kept, only the sample is removed)
  -h, --help          show this help

Exit codes: 0 the sample succeeded, 1 it did not or a step failed, 2 usage error.`;

/** What the command line asks for. */
export interface DemoArgs {
  /** Use this kubeconfig's cluster instead of a local control plane. */
  kubeconfig?: string;
  /** Context of that kubeconfig. */
  context?: string;
  /** Namespace for the sample. */
  namespace?: string;
  /** Print the help and exit. */
  help: boolean;
}

/** Parses the demo's flags; throws DemoError (exit 2) with one line on a usage error. Pure. */
export function parseDemoArgs(args: string[]): DemoArgs {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args,
      options: {
        kubeconfig: { type: "string" },
        context: { type: "string" },
        namespace: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    const message = (error as Error).message.replace(/\. To specify .*$/s, "").replace(/'/g, "");
    throw new DemoError(`${message}; see deno task demo --help`, 2);
  }
  const text = (name: string) => {
    const v = values[name];
    if (v === "") throw new DemoError(`--${name} needs a value; see deno task demo --help`, 2);
    return v as string | undefined;
  };
  const parsed: DemoArgs = {
    kubeconfig: text("kubeconfig"),
    context: text("context"),
    namespace: text("namespace"),
    help: values.help === true,
  };
  for (const flag of ["context", "namespace"] as const) {
    if (parsed[flag] !== undefined && parsed.kubeconfig === undefined) {
      throw new DemoError(
        `--${flag} works with --kubeconfig PATH (the local control plane has one context and a fresh namespace)`,
        2,
      );
    }
  }
  if (
    parsed.namespace !== undefined && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(parsed.namespace)
  ) {
    throw new DemoError(
      `--namespace ${parsed.namespace}: not a namespace name (lower-case letters, digits and '-', at most 63)`,
      2,
    );
  }
  return parsed;
}

async function kubectl(
  cp: ControlPlane,
  args: string[],
  show = true,
): Promise<{ ok: boolean; out: string }> {
  const out = await new Deno.Command(`${cp.binDir}/kubectl`, {
    args: [`--kubeconfig=${cp.kubeconfigPath}`, ...args],
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (show) console.log(text.trimEnd());
  return { ok: out.success, out: text };
}

async function runLocal(): Promise<number> {
  say("Starting a local Kubernetes control plane (the first run builds it from Go modules)");
  // The real node where it can run, so the script's own output shows; else kwok (one line says why).
  const cp = await startControlPlane({ handleSignals: false, node: "auto" });
  let operator: Deno.ChildProcess | undefined;
  let code = 1;
  const cleanup = async () => {
    try {
      operator?.kill("SIGTERM");
      await operator?.status;
    } catch { /* already gone */ }
    await cp.stop();
  };
  const onSignal = () => cleanup().then(() => Deno.exit(130));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    console.log(`control plane ready in ${(cp.timings.total / 1000).toFixed(1)}s at ${cp.server}`);
    say("Installing the ScriptRun CRD (deploy/crd.yaml)");
    await kubectl(cp, ["apply", "-f", `${ROOT}deploy/crd.yaml`]);
    await kubectl(
      cp,
      ["wait", "--for=condition=Established", "crd/scriptruns.script-operator.dev"],
      false,
    );

    say("Starting script-operator (deno task start --kubeconfig ... --interval 1s)");
    operator = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...await startTaskFlags(),
        `${ROOT}main.ts`,
        `--kubeconfig=${cp.kubeconfigPath}`,
        "--interval=1s",
        "--log-format=text",
        "--health-probe-bind-address=0",
        "--metrics-bind-address=0",
      ],
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();

    say("Applying the sample ScriptRun (deploy/sample.yaml)");
    await kubectl(cp, ["apply", "-f", `${ROOT}deploy/sample.yaml`]);

    say("Waiting for the run to finish (operator logs above and below)");
    const deadline = Date.now() + 120_000;
    let phase = "";
    while (Date.now() < deadline) {
      const r = await kubectl(cp, [
        "get",
        "scriptrun",
        "sample",
        "-n",
        "default",
        "-o",
        "jsonpath={.status.phase}",
      ], false);
      phase = r.out.trim();
      if (phase === "Succeeded" || phase === "Failed") break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    // Let the operator log its last step before its output is interleaved with ours.
    await new Promise((r) => setTimeout(r, 500));
    say("kubectl get scriptruns -A");
    await kubectl(cp, ["get", "scriptruns", "-A", "-o", "wide"]);
    say("kubectl get scriptrun sample -o jsonpath='{.status}'");
    const status = await kubectl(cp, [
      "get",
      "scriptrun",
      "sample",
      "-n",
      "default",
      "-o",
      "jsonpath={.status}",
    ], false);
    const parsed = JSON.parse(status.out || "{}");
    console.log(JSON.stringify(parsed, null, 2));
    if (cp.node === "real" && parsed.jobName) {
      say(`kubectl logs job/${parsed.jobName} (the script's own output)`);
      await kubectl(cp, ["logs", "-n", "default", `job/${parsed.jobName}`]);
    } else if (cp.node === "kwok") {
      say("kwok simulated the node, so no script ran and there is no output to show");
    }
    if (phase === "Succeeded") {
      say("The sample ScriptRun succeeded. Next: README.md, 'Run it against your cluster'.");
      code = 0;
    } else {
      say(
        `The sample ScriptRun did not succeed (phase: ${
          phase || "none after 120s"
        }); see the status above.`,
      );
    }
  } catch (error) {
    console.error(`demo failed: ${error instanceof Error ? error.message : error}`);
  } finally {
    say("Stopping the operator and the control plane");
    await cleanup();
  }
  return code;
}

if (import.meta.main) {
  let code = 1;
  try {
    const args = parseDemoArgs(Deno.args);
    if (args.help) {
      console.log(DEMO_HELP);
      code = 0;
    } else if (args.kubeconfig !== undefined) {
      code = await runOnCluster({
        kubeconfig: args.kubeconfig,
        context: args.context,
        namespace: args.namespace,
      });
    } else {
      code = await runLocal();
    }
  } catch (error) {
    if (!(error instanceof DemoError)) throw error;
    console.error(`demo: ${error.message}`);
    code = error.code;
  }
  Deno.exit(code);
}
