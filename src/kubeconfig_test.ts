import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { KubeConfigError, loadKubeConfig } from "./kubeconfig.ts";

const KUBECONFIG = JSON.stringify({
  apiVersion: "v1",
  kind: "Config",
  clusters: [
    { name: "a", cluster: { server: "https://a.example:6443" } },
    { name: "b", cluster: { server: "https://b.example:6443" } },
  ],
  users: [{ name: "u", user: { token: "t" } }],
  contexts: [
    { name: "ctx-a", context: { cluster: "a", user: "u" } },
    { name: "ctx-b", context: { cluster: "b", user: "u" } },
  ],
  "current-context": "ctx-a",
});

Deno.test("loadKubeConfig(): --kubeconfig and --context pick the cluster", async () => {
  const path = await Deno.makeTempFile({ suffix: ".kubeconfig" });
  try {
    await Deno.writeTextFile(path, KUBECONFIG);
    assertEquals(
      loadKubeConfig({ kubeconfig: path }).kc.getCurrentCluster()?.server,
      "https://a.example:6443",
    );
    const b = loadKubeConfig({ kubeconfig: path, context: "ctx-b" });
    assertEquals([b.kc.getCurrentCluster()?.server, b.source], ["https://b.example:6443", path]);
    throws(
      () => loadKubeConfig({ kubeconfig: path, context: "nope" }),
      (e: Error) => e instanceof KubeConfigError && e.message.includes("contexts: ctx-a, ctx-b"),
    );
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("loadKubeConfig(): a missing --kubeconfig file is a clear error", () => {
  throws(
    () => loadKubeConfig({ kubeconfig: "/nonexistent/kubeconfig" }),
    (e: Error) => e instanceof KubeConfigError && e.message.includes("no such file"),
  );
});
