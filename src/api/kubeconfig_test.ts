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

Deno.test("loadKubeConfig(): with several KUBECONFIG files the first current-context wins", async () => {
  const dir = await Deno.makeTempDir();
  const before = Deno.env.get("KUBECONFIG");
  try {
    const second = JSON.parse(KUBECONFIG);
    second.clusters = [{ name: "c", cluster: { server: "https://c.example:6443" } }];
    second.contexts = [{ name: "ctx-c", context: { cluster: "c", user: "u" } }];
    second.users = [];
    second["current-context"] = "ctx-c";
    await Deno.writeTextFile(`${dir}/a`, KUBECONFIG);
    await Deno.writeTextFile(`${dir}/b`, JSON.stringify(second));
    Deno.env.set("KUBECONFIG", `${dir}/a:${dir}/missing:${dir}/b`);
    const loaded = loadKubeConfig({});
    assertEquals(loaded.kc.getCurrentCluster()?.server, "https://a.example:6443");
    assertEquals(loaded.kc.getContexts().map((c) => c.name).sort(), ["ctx-a", "ctx-b", "ctx-c"]);
    assertEquals(loaded.kc.getCurrentContext(), "ctx-a");
  } finally {
    if (before === undefined) Deno.env.delete("KUBECONFIG");
    else Deno.env.set("KUBECONFIG", before);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadKubeConfig(): KUBECONFIG files sharing a cluster, user or context name: the first wins, as in kubectl", async () => {
  const dir = await Deno.makeTempDir();
  const before = Deno.env.get("KUBECONFIG");
  try {
    const second = {
      apiVersion: "v1",
      kind: "Config",
      clusters: [
        { name: "a", cluster: { server: "https://other-a.example:6443" } },
        { name: "d", cluster: { server: "https://d.example:6443" } },
      ],
      users: [{ name: "u", user: { token: "other" } }, { name: "v", user: { token: "v" } }],
      contexts: [
        { name: "ctx-a", context: { cluster: "d", user: "v" } },
        { name: "ctx-d", context: { cluster: "d", user: "v" } },
      ],
      "current-context": "ctx-d",
    };
    // The first file has no current-context: the second file's is used.
    const first = { ...JSON.parse(KUBECONFIG), "current-context": undefined };
    await Deno.writeTextFile(`${dir}/a`, JSON.stringify(first));
    await Deno.writeTextFile(`${dir}/b`, JSON.stringify(second));
    Deno.env.set("KUBECONFIG", `${dir}/a:${dir}/b`);
    const loaded = loadKubeConfig({ context: "ctx-a" });
    assertEquals(loaded.kc.getCurrentCluster()?.server, "https://a.example:6443");
    assertEquals(loaded.kc.getCurrentUser()?.token, "t");
    assertEquals(loaded.kc.getClusters().map((c) => c.name), ["a", "b", "d"]);
    assertEquals(loaded.kc.getUsers().map((u) => u.name), ["u", "v"]);
    assertEquals(loaded.kc.getContexts().map((c) => c.name), ["ctx-a", "ctx-b", "ctx-d"]);
    assertEquals(loadKubeConfig({}).kc.getCurrentContext(), "ctx-d");
  } finally {
    if (before === undefined) Deno.env.delete("KUBECONFIG");
    else Deno.env.set("KUBECONFIG", before);
    await Deno.remove(dir, { recursive: true });
  }
});
