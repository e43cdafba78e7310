/**
 * The permission flags of deploy/permissions.ts: the `start` task uses exactly the laptop flags,
 * neither set grants too much, and both are enough to run the operator's commands (`deno run
 * --no-prompt`, so a missing permission fails instead of prompting).
 * @module
 */
import { deepStrictEqual, ok } from "node:assert/strict";
import {
  FORBIDDEN_FLAGS,
  IN_CLUSTER_ENV,
  IN_CLUSTER_FLAGS,
  IN_CLUSTER_PERMISSIONS,
  LAPTOP_FLAGS,
  LAPTOP_PERMISSIONS,
  SERVICE_ACCOUNT_DIR,
  START_TASK,
  V8_FLAGS,
} from "./permissions.ts";
import { SERVICE_ACCOUNT_DIR as SOURCE_SERVICE_ACCOUNT_DIR } from "../src/api/kubeconfig.ts";
import { denoCacheDir } from "../tests/harness/operator.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const SCRIPTS = `${ROOT}scripts`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `deno run --no-prompt FLAGS main.ts ARGS` with exactly `env` (plus Deno's cache folder). */
async function runMain(flags: readonly string[], args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...flags, `${ROOT}main.ts`, ...args],
    cwd: "/",
    clearEnv: true,
    env: { NO_COLOR: "1", DENO_DIR: await denoCacheDir(), ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  } satisfies Run;
}

/** The in-cluster flags for `deno run`: a compiled binary reads its embedded scripts freely. */
function inClusterRunFlags(extraRead: string[] = []): string[] {
  return IN_CLUSTER_FLAGS.map((f) =>
    f.startsWith("--allow-read=") ? [f, SCRIPTS, ...extraRead].join(",") : f
  );
}

function describe(run: Run): string {
  return `exit ${run.code}\nstdout: ${run.stdout.slice(0, 500)}\nstderr: ${
    run.stderr.slice(0, 2000)
  }`;
}

Deno.test("permissions: the start task of deno.json runs main.ts with exactly the laptop flags", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  deepStrictEqual(config.tasks?.start, START_TASK);
  const words = START_TASK.split(" ");
  deepStrictEqual(words.filter((w) => w.startsWith("-")), [...LAPTOP_FLAGS, ...V8_FLAGS]);
});

Deno.test("permissions: the V8 flags take effect (a young generation of 3 x 2 MiB)", async () => {
  const limit = async (flags: readonly string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        ...flags,
        'import v8 from "node:v8"; console.log(v8.getHeapStatistics().heap_size_limit)',
      ],
      stdin: "null",
    }).output();
    deepStrictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
    return Number(new TextDecoder().decode(out.stdout).trim()) / 2 ** 20;
  };
  // heap_size_limit is the old generation's limit plus the young generation's (3 semi-spaces);
  // pin the old generation to read the young one.
  deepStrictEqual(V8_FLAGS.length, 1);
  deepStrictEqual(await limit([`${V8_FLAGS[0]},--max-old-space-size=1024`]), 1024 + 3 * 2);
  ok((await limit([])) > (await limit(V8_FLAGS)), "the default young generation is larger");
});

Deno.test("permissions: no flag set grants everything, writes, FFI or imports", () => {
  for (
    const [name, flags] of [["laptop", LAPTOP_FLAGS], ["in-cluster", IN_CLUSTER_FLAGS]] as const
  ) {
    for (const flag of flags) {
      const bare = flag.split("=")[0];
      ok(!FORBIDDEN_FLAGS.includes(bare), `${name}: ${flag} must not be granted`);
      ok(/^--(allow|ignore)-[a-z]+(=.+)?$/.test(flag), `${name}: unexpected flag ${flag}`);
    }
    deepStrictEqual(new Set(flags).size, flags.length, `${name}: duplicate flags`);
  }
});

Deno.test("permissions: every flag has a one-line reason", () => {
  for (const p of [...LAPTOP_PERMISSIONS, ...IN_CLUSTER_PERMISSIONS]) {
    ok(p.reason.trim().length > 20, `${p.flag}: reason too short`);
    ok(!p.reason.includes("\n"), `${p.flag}: reason must be one line`);
  }
});

Deno.test("permissions: the in-cluster set runs nothing and reads only the ServiceAccount folder", () => {
  deepStrictEqual(SERVICE_ACCOUNT_DIR, SOURCE_SERVICE_ACCOUNT_DIR);
  ok(
    !IN_CLUSTER_FLAGS.some((f) => f.startsWith("--allow-run")),
    "in-cluster must not run programs",
  );
  const reads = IN_CLUSTER_FLAGS.filter((f) => f.startsWith("--allow-read"));
  deepStrictEqual(reads, [`--allow-read=${SERVICE_ACCOUNT_DIR}`]);
  const envs = IN_CLUSTER_FLAGS.filter((f) => f.startsWith("--allow-env"));
  deepStrictEqual(envs, [`--allow-env=${IN_CLUSTER_ENV.join(",")}`]);
  ok(IN_CLUSTER_FLAGS.includes("--ignore-env"), "unlisted variables must read as unset");
});

Deno.test("permissions: laptop flags run --version, crd and scripts without prompting", async () => {
  for (const args of [["--version"], ["crd"], ["scripts"], ["--help"]]) {
    const run = await runMain(LAPTOP_FLAGS, args, { HOME: "/nonexistent" });
    deepStrictEqual(run.code, 0, `${args.join(" ")}: ${describe(run)}`);
    ok(!run.stderr.includes("NotCapable"), describe(run));
  }
});

Deno.test("permissions: laptop flags report a missing kubeconfig, not a permission error", async () => {
  const run = await runMain(LAPTOP_FLAGS, ["--kubeconfig", "/nonexistent/kubeconfig", "--once"]);
  deepStrictEqual(run.code, 2, describe(run));
  ok(run.stderr.includes("--kubeconfig /nonexistent/kubeconfig: no such file"), describe(run));
});

Deno.test("permissions: in-cluster flags load every module and list the scripts", async () => {
  const run = await runMain(inClusterRunFlags(), ["scripts"], { DEBUG: "*", HOME: "/root" });
  deepStrictEqual(run.code, 0, describe(run));
  ok(run.stdout.includes("task.sh"), describe(run));
});

Deno.test("permissions: in-cluster flags ignore KUBECONFIG and HOME and need the ServiceAccount", async () => {
  const kubeconfig = await Deno.makeTempFile({ suffix: ".kubeconfig" });
  try {
    await Deno.writeTextFile(
      kubeconfig,
      "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n" +
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {}}]\ncurrent-context: c\n",
    );
    // Outside a cluster: KUBECONFIG reads as unset, so there are no credentials at all.
    const outside = await runMain(inClusterRunFlags(), ["--once"], { KUBECONFIG: kubeconfig });
    deepStrictEqual(outside.code, 2, describe(outside));
    ok(outside.stderr.includes("no kubeconfig"), describe(outside));
    // "In" a cluster without a mounted token: the in-cluster path is taken and explains itself.
    const inside = await runMain(inClusterRunFlags(), ["--once"], {
      KUBECONFIG: kubeconfig,
      KUBERNETES_SERVICE_HOST: "127.0.0.1",
      KUBERNETES_SERVICE_PORT: "1",
    });
    deepStrictEqual(inside.code, 2, describe(inside));
    ok(inside.stderr.includes(`${SERVICE_ACCOUNT_DIR}/token is missing`), describe(inside));
  } finally {
    await Deno.remove(kubeconfig);
  }
});

Deno.test("permissions: both compiled binaries get their permission flags and the V8 flags", async () => {
  const { compileArgs } = await import("./compile.ts");
  for (const [inCluster, flags] of [[false, LAPTOP_FLAGS], [true, IN_CLUSTER_FLAGS]] as const) {
    const args = compileArgs({ inCluster });
    for (const flag of [...flags, ...V8_FLAGS]) ok(args.includes(flag), `${flag} in ${args}`);
  }
});
