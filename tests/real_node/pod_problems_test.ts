/**
 * Pod-level problems that only a real kubelet reports: an image that cannot be pulled leaves the
 * run Pending with the kubelet's own reason (ErrImagePull / ImagePullBackOff) and message.
 * @module
 */
import { assert } from "../harness/assert.ts";
import { installCrd, startOperator } from "../harness/operator.ts";
import { uniqueNamespace, waitFor } from "../harness/test_env.ts";
import { applyRun, getRun, operatorTree, realNodeTest } from "./helpers.ts";

realNodeTest(
  "real node: an image that cannot be pulled shows ErrImagePull or ImagePullBackOff, in the kubelet's words",
  {},
  async () => {
    await installCrd();
    await using tree = await operatorTree();
    await using ns = await uniqueNamespace("rn-pull");
    // No registry is reachable here: the pull fails at once, as a missing image does anywhere.
    await using _op = await startOperator([
      `--namespace=${ns.name}`,
      "--interval=1s",
      "--allowed-image=registry.invalid/*",
    ], { root: tree.root });
    await applyRun(ns.name, "pull", { script: "task.sh", image: "registry.invalid/none/tool:1" });
    const run = await waitFor(async () => {
      const r = await getRun(ns.name, "pull");
      return ["ErrImagePull", "ImagePullBackOff"].includes(r.status?.reason ?? "") ? r : undefined;
    }, { what: "ErrImagePull or ImagePullBackOff in the status", timeoutMs: 60_000 });
    assert(run.status?.phase === "Pending", JSON.stringify(run.status));
    assert(
      /registry\.invalid\/none\/tool:1/.test(run.status?.message ?? ""),
      `the message should carry the kubelet's words: ${run.status?.message}`,
    );
  },
);
