/**
 * The shipped permissions against the test cluster: the in-cluster Deno permission flags
 * (deploy/permissions.ts) run the operator with only deploy/rbac.yaml, rbac-namespaced.yaml is
 * enough for `--namespace`, and the laptop flags give exec credential plugins the user's
 * environment.
 * @module
 */
import { parseAllDocuments } from "yaml";
import { assert, assertEquals } from "./harness/assert.ts";
import { installOperatorRbac } from "./harness/rbac.ts";
import { denoCacheDir, installCrd } from "./harness/operator.ts";
import {
  clusterTest,
  jobsMode,
  kubectlJson,
  kubectlOk,
  tokenKubeconfig,
  uniqueNamespace,
  waitFor,
} from "./harness/test_env.ts";
import { SERVICE_ACCOUNT_DIR } from "../src/api/kubeconfig.ts";
import { GROUP, KIND, VERSION } from "../src/types.ts";
import { IN_CLUSTER_FLAGS, LAPTOP_FLAGS } from "../deploy/permissions.ts";
import { type K8sObject, readText, ROOT } from "./harness/manifests.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };

/** A finished `deno run` of main.ts. */
interface Finished {
  code: number;
  log: string;
}

/** Runs main.ts with `flags` and `args` (exact environment `env`), up to `timeoutMs`. */
async function runMain(
  flags: readonly string[],
  args: string[],
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<Finished> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...flags, `${ROOT}main.ts`, "--log-format=json", ...args],
    clearEnv: true,
    env: { NO_COLOR: "1", DENO_DIR: await denoCacheDir(), ...env },
    cwd: "/",
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  const d = new TextDecoder();
  return { code: out.code, log: d.decode(out.stdout) + d.decode(out.stderr) };
}

async function clusterServer(): Promise<{ server: URL; ca: Uint8Array }> {
  const view = await kubectlJson<{
    clusters: { cluster: { server: string; "certificate-authority-data": string } }[];
  }>(["config", "view", "--raw", "--minify"]);
  const cluster = view.clusters[0].cluster;
  return {
    server: new URL(cluster.server),
    ca: Uint8Array.from(atob(cluster["certificate-authority-data"]), (c) => c.charCodeAt(0)),
  };
}

async function applyRun(ns: string, name: string, extra = ""): Promise<void> {
  await kubectlOk(["apply", "-f", "-"], {
    stdin:
      `apiVersion: ${GROUP}/${VERSION}\nkind: ${KIND}\nmetadata: {name: ${name}, namespace: ${ns}}\nspec:\n  script: task.sh\n${extra}`,
  });
}

async function runStatus(ns: string, name: string) {
  return (await kubectlJson<{ status?: { phase?: string; jobName?: string; message?: string } }>(
    ["-n", ns, "get", "scriptrun", name],
  )).status;
}

clusterTest(
  "deploy: the in-cluster permission flags run the operator with only deploy/rbac.yaml",
  { needsJobs: true, ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using opNs = await uniqueNamespace("operator");
    await using work = await uniqueNamespace("flags");
    await using identity = await installOperatorRbac(opNs.name);
    const { server, ca } = await clusterServer();
    const prefix = await Deno.makeTempDir({ prefix: "script-operator-sa-" });
    const dir = `${prefix}${SERVICE_ACCOUNT_DIR}`;
    let child: Deno.ChildProcess | undefined;
    try {
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeTextFile(`${dir}/token`, (await identity.token()).token);
      await Deno.writeFile(`${dir}/ca.crt`, ca);
      await Deno.writeTextFile(`${dir}/namespace`, opNs.name);
      // Test-only widening of the image's flags: a compiled binary reads its embedded scripts
      // without a flag, and the ServiceAccount folder lives under a prefix here.
      const flags = IN_CLUSTER_FLAGS.map((f) =>
        f.startsWith("--allow-read=")
          ? `${f},${dir},${ROOT}scripts`
          : f.startsWith("--allow-env=")
          ? `${f},SCRIPT_OPERATOR_SERVICEACCOUNT_PREFIX`
          : f
      );
      await applyRun(work.name, "ok");
      const failEnv = jobsMode === "kwok" ? "  env: [{name: KWOK_EXIT_CODE, value: '3'}]\n" : "";
      await applyRun(work.name, "broken", failEnv);
      const env = {
        KUBERNETES_SERVICE_HOST: server.hostname,
        KUBERNETES_SERVICE_PORT: server.port,
        SCRIPT_OPERATOR_SERVICEACCOUNT_PREFIX: prefix,
        // Must be ignored by the in-cluster flags: they would point elsewhere.
        KUBECONFIG: "/nonexistent/kubeconfig",
        HOME: prefix,
      };
      child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          ...flags,
          `${ROOT}main.ts`,
          "--log-format=json",
          "--interval=1s",
          "--leader-elect",
          "--health-probe-bind-address=0",
          "--metrics-bind-address=0",
        ],
        clearEnv: true,
        env: { NO_COLOR: "1", DENO_DIR: await denoCacheDir(), ...env },
        cwd: "/",
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      let log = "";
      const reading = (async () => {
        for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) log += chunk;
      })();
      await waitFor(async () => (await runStatus(work.name, "ok"))?.phase === "Succeeded", {
        what: "ScriptRun ok to succeed under the in-cluster flags",
        timeoutMs: 90_000,
      }).catch((e) => {
        throw new Error(`${e.message}\noperator log:\n${log.slice(-3000)}`);
      });
      const broken = await waitFor(async () => {
        const s = await runStatus(work.name, "broken");
        return s?.phase === "Failed" ? s : undefined;
      }, { what: "ScriptRun broken to fail", timeoutMs: 90_000 });
      assert(broken.message?.includes("exited with code"), broken.message);
      assert(log.includes("in-cluster ServiceAccount"), "did not use the ServiceAccount");
      assert(log.includes('"msg":"Became leader"'), `no leadership:\n${log.slice(-2000)}`);
      for (const bad of ["NotCapable", "forbidden", "PermissionDenied"]) {
        assert(!log.includes(bad), `${bad} in the operator log:\n${log.slice(-3000)}`);
      }
      child.kill("SIGKILL");
      await child.status;
      await reading;
      child = undefined;
    } finally {
      if (child) {
        child.kill("SIGKILL");
        await child.status;
      }
      await Deno.remove(prefix, { recursive: true });
    }
  },
);

clusterTest(
  "deploy: rbac-namespaced.yaml is enough for --namespace, and only for it",
  { ...NO_SANITIZE },
  async () => {
    await installCrd();
    await using opNs = await uniqueNamespace("operator");
    await using watched = await uniqueNamespace("watched");
    const docs = parseAllDocuments(await readText("deploy/rbac-namespaced.yaml"))
      .map((d) => d.toJS() as K8sObject).filter(Boolean).map((d) => {
        // The operator's own objects go to opNs, the watched-namespace Role to `watched`.
        if (d.metadata.namespace === "script-operator") d.metadata.namespace = opNs.name;
        else if (d.metadata.namespace) d.metadata.namespace = watched.name;
        for (const s of d.subjects ?? []) s.namespace = opNs.name;
        return d;
      });
    await kubectlOk(["apply", "-f", "-"], {
      stdin: JSON.stringify({ kind: "List", apiVersion: "v1", items: docs }),
    });
    const token = (await kubectlOk(["-n", opNs.name, "create", "token", "script-operator"])).trim();
    await using kc = await tokenKubeconfig(token);
    await applyRun(watched.name, "sample");
    const env = { HOME: "/nonexistent" };
    const ok = await runMain(
      LAPTOP_FLAGS,
      ["--kubeconfig", kc.path, "--namespace", watched.name, "--once"],
      env,
    );
    assertEquals(ok.code, 0, ok.log);
    assert(!/forbidden/i.test(ok.log), ok.log);
    const status = await runStatus(watched.name, "sample");
    assert(status?.jobName, `no Job recorded: ${JSON.stringify(status)}\n${ok.log}`);
    // Without --namespace the operator lists cluster-wide, which this RBAC does not allow.
    const all = await runMain(LAPTOP_FLAGS, ["--kubeconfig", kc.path, "--once"], env);
    assertEquals(all.code, 2, all.log);
    assert(all.log.includes("permission denied"), all.log);
  },
);

clusterTest(
  "deploy: laptop flags give a kubeconfig exec plugin the user's environment",
  { ...NO_SANITIZE },
  async () => {
    await using ns = await uniqueNamespace("exec");
    // A token of a ServiceAccount without RBAC: authenticated, then forbidden (403, exit 2).
    await kubectlOk(["-n", ns.name, "create", "serviceaccount", "plugin-user"]);
    const token = (await kubectlOk(["-n", ns.name, "create", "token", "plugin-user"])).trim();
    const { server, ca } = await clusterServer();
    const dir = await Deno.makeTempDir({ prefix: "script-operator-exec-" });
    try {
      const plugin = `${dir}/plugin.sh`;
      await Deno.writeTextFile(
        plugin,
        `#!/bin/sh\nprintf '%s\\n%s\\n' "$PATH" "$PLUGIN_MARKER" > '${dir}/seen'\n` +
          `printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' '${token}'\n`,
      );
      await Deno.chmod(plugin, 0o755);
      const kubeconfig = `${dir}/kubeconfig`;
      await Deno.writeTextFile(
        kubeconfig,
        JSON.stringify({
          apiVersion: "v1",
          kind: "Config",
          clusters: [{
            name: "c",
            cluster: {
              server: server.href.replace(/\/$/, ""),
              "certificate-authority-data": btoa(String.fromCharCode(...ca)),
            },
          }],
          users: [{
            name: "u",
            user: {
              exec: {
                apiVersion: "client.authentication.k8s.io/v1",
                command: plugin,
                interactiveMode: "Never",
                env: [{ name: "FROM_KUBECONFIG", value: "1" }],
              },
            },
          }],
          contexts: [{ name: "c", context: { cluster: "c", user: "u" } }],
          "current-context": "c",
        }),
      );
      const path = "/usr/local/bin:/usr/bin:/bin:/custom/plugin/dir";
      const run = await runMain(
        LAPTOP_FLAGS,
        ["--kubeconfig", kubeconfig, "--namespace", ns.name, "--once"],
        { PATH: path, PLUGIN_MARKER: "marker-42", HOME: dir },
      );
      // The plugin's token authenticated: the API server answered 403, not 401.
      assertEquals(run.code, 2, run.log);
      assert(run.log.includes("permission denied"), run.log);
      const [seenPath, seenMarker] = (await Deno.readTextFile(`${dir}/seen`)).split("\n");
      assertEquals(
        [seenPath, seenMarker],
        [path, "marker-42"],
        "the plugin must see the operator's PATH and variables",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
