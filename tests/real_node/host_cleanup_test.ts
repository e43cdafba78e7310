/**
 * The real node leaves nothing behind on the host (tests/control_plane/README.md, "The real
 * node"): a second control plane with a real node runs beside the suite's, and its stop, or the
 * next start after it was killed hard, removes its processes, mounts, bridge, cgroups and folder,
 * while the suite's node keeps running pods and the shared sysctls stay as the running kubelet set
 * them.
 * @module
 */
import { assert, assertEquals } from "../harness/assert.ts";
import { startControlPlane } from "../harness/control_plane.ts";
import { kubectlJson, kubectlOk, uniqueNamespace, waitFor } from "../harness/test_env.ts";
import { realNodeTest } from "./helpers.ts";

const BIN = Deno.env.get("SCRIPT_OPERATOR_TEST_BIN") ?? "";

interface NodeTrace {
  dir: string;
  bridge: string;
  socket: string;
  cgroupRoot: string;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Pids of containerd shims serving the containerd at `socket`. */
function shims(socket: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const args = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
      if (args[0].includes("containerd-shim") && args.includes(socket)) pids.push(+entry.name);
    } catch { /* exited */ }
  }
  return pids;
}

/** What of a node is still on the host. */
function leftovers(node: NodeTrace): string[] {
  const left: string[] = [];
  if (exists(node.dir)) left.push(`folder ${node.dir}`);
  const mounts = Deno.readTextFileSync("/proc/self/mountinfo").split("\n")
    .filter((l) => l.split(" ")[4]?.startsWith(`${node.dir}/`));
  if (mounts.length > 0) left.push(`${mounts.length} mounts under ${node.dir}`);
  const ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].find(exists) ?? "ip";
  const link = new Deno.Command(ip, { args: ["link", "show", node.bridge] }).outputSync();
  if (link.success) left.push(`bridge ${node.bridge}`);
  for (const h of ["memory", "cpu", "pids", "cpuset", "systemd", "unified", ""]) {
    const path = `/sys/fs/cgroup${h ? `/${h}` : ""}${node.cgroupRoot}`;
    if (exists(path)) left.push(`cgroup ${path}`);
  }
  const pids = shims(node.socket);
  if (pids.length > 0) left.push(`shims ${pids.join(",")}`);
  return left;
}

/** Runs a pod that sleeps on the control plane of `kubeconfig` and waits until it runs. */
async function sleepingPod(kubeconfig: string): Promise<void> {
  await kubectlOk(
    ["run", "sleeper", "--image=busybox:1.36", "--restart=Never", "--", "sleep", "300"],
    { kubeconfig },
  );
  await waitFor(async () => {
    const pod = await kubectlJson<{ status: { phase: string } }>(["get", "pod", "sleeper"], {
      kubeconfig,
    });
    return pod.status.phase === "Running";
  }, { what: "the sleeping pod to run", timeoutMs: 60_000, intervalMs: 300 });
}

/** The suite's own node still runs a pod to completion. */
async function suiteNodeWorks(): Promise<void> {
  await using ns = await uniqueNamespace("rn-still");
  await kubectlOk([
    ...["-n", ns.name, "run", "still", "--image=busybox:1.36", "--restart=Never"],
    ...["--", "echo", "still here"],
  ]);
  await waitFor(async () => {
    const pod = await kubectlJson<{ status: { phase: string } }>(
      ["-n", ns.name, "get", "pod", "still"],
    );
    assert(pod.status.phase !== "Failed", "the pod on the suite's node failed");
    return pod.status.phase === "Succeeded";
  }, { what: "a pod on the suite's node to succeed", timeoutMs: 60_000, intervalMs: 300 });
}

realNodeTest(
  "real node: a second node beside the suite's stops without leaving anything on the host",
  { needsLocalNode: true },
  async () => {
    const cp = await startControlPlane({ binDir: BIN, node: "real", quiet: true });
    let node: NodeTrace | undefined;
    try {
      const real = cp.realNode!;
      node = {
        dir: cp.dir,
        bridge: real.bridge,
        socket: real.containerdSocket,
        cgroupRoot: real.cgroupRoot,
      };
      await sleepingPod(cp.kubeconfigPath);
      assert(shims(node.socket).length > 0, "no shim ran for the sleeping pod");
    } finally {
      await cp.stop();
    }
    assertEquals(leftovers(node!), []);
    // The suite's kubelet still runs: the sysctl it set is not restored under it.
    assertEquals(Deno.readTextFileSync("/proc/sys/vm/overcommit_memory").trim(), "1");
    await suiteNodeWorks();
  },
);

realNodeTest(
  "real node: after its owner is killed hard, the next start removes the node's leftovers",
  { needsLocalNode: true },
  async () => {
    const harness = new URL("../harness/control_plane.ts", import.meta.url).href;
    const code = `
      import { startControlPlane } from ${JSON.stringify(harness)};
      const cp = await startControlPlane({ binDir: ${
      JSON.stringify(BIN)
    }, node: "real", quiet: true, handleSignals: false });
      console.log(JSON.stringify({ dir: cp.dir, bridge: cp.realNode.bridge,
        socket: cp.realNode.containerdSocket, cgroupRoot: cp.realNode.cgroupRoot,
        kubeconfig: cp.kubeconfigPath }));
      await new Promise(() => {});`;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", "--ext=ts", code],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    let node: NodeTrace & { kubeconfig: string };
    try {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the control plane process exited: ${text}`);
        text += value;
      }
      reader.releaseLock();
      node = JSON.parse(text.split("\n")[0]);
      await sleepingPod(node.kubeconfig);
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
    await child.stdout.cancel().catch(() => {});
    // Killed hard: its kubelet and containerd died with it, its shim and pod did not.
    await waitFor(() => !exists(`/proc/${child.pid}`), { what: "the killed process to go" });
    assert(shims(node.socket).length > 0, "nothing was left to clean: the test proves nothing");

    const next = await startControlPlane({ binDir: BIN, node: "kwok", quiet: true });
    await next.stop();
    assertEquals(leftovers(node), []);
    await suiteNodeWorks();
  },
);
