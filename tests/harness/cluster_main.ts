/**
 * `deno task cluster`: builds the control plane if needed, runs it in the foreground (with a real
 * node where it can run, else kwok) and writes its admin kubeconfig to `.cluster/kubeconfig`
 * until Ctrl-C / SIGTERM.
 *
 * @module
 */
import { startControlPlane } from "./control_plane.ts";

const root = new URL("../..", import.meta.url).pathname;
const kubeconfigPath = `${root}.cluster/kubeconfig`;

// The real node where it can run (else kwok, with one line saying why); SCRIPT_OPERATOR_TEST_NODE
// forces either.
const cp = await startControlPlane({ handleSignals: false, node: "auto" });
let stopping = false;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    console.error("stopping the control plane...");
    await Deno.remove(kubeconfigPath).catch(() => {});
    await cp.stop();
  }
  Deno.exit(code);
}
Deno.addSignalListener("SIGINT", () => shutdown(0));
Deno.addSignalListener("SIGTERM", () => shutdown(0));

await Deno.mkdir(`${root}.cluster`, { recursive: true });
await Deno.copyFile(cp.kubeconfigPath, kubeconfigPath);
const t = cp.timings;
console.log(`control plane ready in ${(t.total / 1000).toFixed(1)}s: ${cp.server}
  Jobs progress: ${
  cp.node === "real"
    ? `yes: containers really run on node ${cp.realNode?.name} (containerd + kubelet, pods on ${cp.realNode?.podSubnet})`
    : cp.node === "kwok"
    ? `yes, simulated by kwok (KWOK_EXIT_CODE=<n> env fails a container)`
    : "no"
}
  logs: ${cp.logDir}

export KUBECONFIG=$PWD/.cluster/kubeconfig
export PATH=${cp.binDir}:$PATH

Ctrl-C stops it.`);

const reason = await cp.died;
console.error(`control plane failed: ${reason}`);
await shutdown(1);
