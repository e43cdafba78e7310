/**
 * A control plane of a test's own, beside the suite's, for tests that must change what every
 * other test relies on (remove the CRD, say). It uses the suite's binaries
 * (`SCRIPT_OPERATOR_TEST_BIN`) and a kwok node, and starts in a few seconds.
 * @module
 */
import { type ControlPlane, exists, startControlPlane } from "./control_plane.ts";

/** Why a control plane of its own cannot start here, or undefined if it can. */
export function ownClusterSkip(): string | undefined {
  const bin = Deno.env.get("SCRIPT_OPERATOR_TEST_BIN");
  if (!bin) return "SCRIPT_OPERATOR_TEST_BIN not set: run via `deno task test`";
  const missing = ["kube-controller-manager", "kube-scheduler", "kwok", "kubectl"]
    .filter((b) => !exists(`${bin}/${b}`));
  return missing.length ? `${bin} lacks ${missing.join(", ")}` : undefined;
}

/** Starts a quiet control plane with a kwok node from the suite's binaries; `stop()` it after. */
export function startOwnControlPlane(): Promise<ControlPlane> {
  return startControlPlane({
    binDir: Deno.env.get("SCRIPT_OPERATOR_TEST_BIN"),
    node: "kwok",
    quiet: true,
    handleSignals: false,
  });
}
