/**
 * `deno task test`: static checks, then `deno test` against a fresh local control plane.
 *
 * 1. `deno fmt --check`, `deno lint`, `deno check` (one result line each);
 * 2. unless `SCRIPT_OPERATOR_TEST_KUBECONFIG` is set (then one `deno test` runs against that
 *    cluster and `SCRIPT_OPERATOR_TEST_JOBS` defaults to `real`), builds the binaries if needed
 *    (or uses `KUBEBUILDER_ASSETS`) and runs two suites, one after the other, each on a fresh
 *    control plane with the test_env.ts variables exported:
 *    - the kwok suite: `deno test -A --no-check=remote tests/ src/ deploy/ bench/` except
 *      `tests/real_node/`, on a control plane whose node is kwok;
 *    - the real-node suite: `tests/real_node/`, on a control plane with a real node (containerd +
 *      kubelet). When the real node cannot run here, its tests are reported skipped with the
 *      reason, after one line saying how to get it; `SCRIPT_OPERATOR_TEST_NODE=kwok` skips them,
 *      `SCRIPT_OPERATOR_TEST_NODE=real` makes "cannot run" a failure.
 *    Extra arguments are passed through; arguments naming existing files or folders replace the
 *    default paths and go to the suite they belong to;
 * 3. prints `N passed, N failed, N skipped` (both suites and the checks) as the last line and
 *    exits non-zero if anything failed.
 *
 * `--skip-checks` (consumed here) skips step 1.
 *
 * @module
 */
import {
  type ControlPlane,
  ensureBinaries,
  exists,
  startControlPlane,
  withParentDeathSignal,
} from "./harness/control_plane.ts";
import { chooseNode, type NodeChoice } from "./harness/real_node.ts";

const root = new URL("..", import.meta.url).pathname;
const totals = { passed: 0, failed: 0, skipped: 0 };

async function runCheck(name: string, args: string[]): Promise<void> {
  const t0 = performance.now();
  const [cmd, cmdArgs] = withParentDeathSignal(Deno.execPath(), args);
  const out = await new Deno.Command(cmd, { args: cmdArgs, cwd: root, stdin: "null" }).output();
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  if (out.success) {
    totals.passed++;
    console.log(`check ${name} ... ok (${secs}s)`);
  } else {
    totals.failed++;
    const decoder = new TextDecoder();
    console.log(decoder.decode(out.stdout) + decoder.decode(out.stderr));
    console.log(`check ${name} ... FAILED (${secs}s): deno ${args.join(" ")}`);
  }
}

/** Parses Deno's summary line, e.g. `ok | 12 passed (3 steps) | 0 failed | 2 ignored (3s)`. */
function parseSummary(output: string): { passed: number; failed: number; ignored: number } | null {
  // deno-lint-ignore no-control-regex
  const plain = output.replace(/\x1b\[[0-9;]*m/g, "");
  const line = plain.split("\n").reverse().find((l) => /^(ok|FAILED) \| /.test(l));
  if (!line) return null;
  const count = (word: string) => Number(line.match(new RegExp(`(\\d+) ${word}`))?.[1] ?? 0);
  return { passed: count("passed"), failed: count("failed"), ignored: count("ignored") };
}

async function runTests(args: string[], env: Record<string, string>): Promise<void> {
  const paths = args.filter((a) => !a.startsWith("-") && exists(a));
  const here = `${Deno.cwd()}/` === root ? "" : root;
  const defaults = paths.length > 0
    ? []
    : ["tests/", "src/", "deploy/", "bench/"].map((p) => `${here}${p}`).filter(exists);
  const testArgs = [
    "test",
    "-A",
    "--no-check=remote",
    "--permit-no-files",
    ...defaults,
    ...args,
  ];
  console.log(`deno ${testArgs.join(" ")}`);
  const [cmd, cmdArgs] = withParentDeathSignal(Deno.execPath(), testArgs);
  const child = new Deno.Command(cmd, {
    args: cmdArgs,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const killChild = () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
  };
  Deno.addSignalListener("SIGINT", killChild);
  Deno.addSignalListener("SIGTERM", killChild);
  let output = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    await Deno.stdout.write(chunk);
    output += decoder.decode(chunk, { stream: true });
  }
  const status = await child.status;
  Deno.removeSignalListener("SIGINT", killChild);
  Deno.removeSignalListener("SIGTERM", killChild);
  const summary = parseSummary(output);
  if (summary) {
    totals.passed += summary.passed;
    totals.failed += summary.failed;
    totals.skipped += summary.ignored;
  }
  if (!status.success && (!summary || summary.failed === 0)) {
    totals.failed++;
    console.log(`deno test exited with code ${status.code} without reporting a failed test`);
  }
}

/** The real-node suite's folder: run on a control plane whose node really runs containers. */
const REAL_NODE_SUITE = `${root}tests/real_node/`;

/** Which paths go to the kwok suite and which to the real-node suite. */
export function splitSuites(paths: string[], cwd: string): { kwok: string[]; real: string[] } {
  const kwok: string[] = [];
  const real: string[] = [];
  for (const p of paths) {
    const abs = p.startsWith("/") ? p : `${cwd.replace(/\/+$/, "")}/${p}`;
    const dir = abs.endsWith("/") ? abs : `${abs}/`;
    if (dir.startsWith(REAL_NODE_SUITE)) {
      real.push(p);
    } else if (REAL_NODE_SUITE.startsWith(dir)) {
      kwok.push(p); // a folder holding the real-node suite: the rest of it is the kwok suite's
      real.push(REAL_NODE_SUITE);
    } else {
      kwok.push(p);
    }
  }
  return { kwok, real };
}

function describe(cp: ControlPlane): string {
  const t = cp.timings;
  return `control plane ready in ${(t.total / 1000).toFixed(1)}s (API ${
    (t.apiReady / 1000).toFixed(1)
  }s${t.nodeReady ? `, node ${(t.nodeReady / 1000).toFixed(1)}s` : ""}; Jobs: ${cp.node})`;
}

/** Env of the tests for a control plane (see tests/harness/test_env.ts). */
function testEnv(cp: ControlPlane): Record<string, string> {
  const env: Record<string, string> = {
    SCRIPT_OPERATOR_TEST_KUBECONFIG: cp.kubeconfigPath,
    SCRIPT_OPERATOR_TEST_JOBS: cp.node,
    SCRIPT_OPERATOR_TEST_BIN: cp.binDir,
  };
  if (cp.realNode) {
    env.SCRIPT_OPERATOR_TEST_NODE_IP = cp.realNode.ip;
    env.SCRIPT_OPERATOR_TEST_NODE_CGROUP_ROOT = cp.realNode.cgroupRoot;
  }
  return env;
}

/** Starts a control plane, runs `deno test` against it, stops it. */
async function runSuite(
  name: string,
  start: () => Promise<ControlPlane>,
  testArgs: string[],
): Promise<void> {
  let cp: ControlPlane | undefined;
  const env: Record<string, string> = {};
  try {
    try {
      cp = await start();
    } catch (e) {
      totals.failed++;
      console.log(`${name}: control plane failed to start: ${e instanceof Error ? e.message : e}`);
      env.SCRIPT_OPERATOR_TEST_NO_CLUSTER = "the control plane failed to start (see above)";
    }
    if (cp) {
      console.log(`${name}: ${describe(cp)}`);
      Object.assign(env, testEnv(cp));
    }
    await runTests(testArgs, env); // without a cluster, cluster tests report SKIP
    const failure = cp?.failure();
    if (failure) {
      totals.failed++;
      console.log(`${name}: control plane process died during the tests: ${failure}`);
    }
  } finally {
    if (cp) {
      const t0 = performance.now();
      await cp.stop();
      console.log(
        `${name}: control plane stopped in ${((performance.now() - t0) / 1000).toFixed(1)}s`,
      );
    }
  }
}

async function main(): Promise<void> {
  let args = [...Deno.args];
  const skipChecks = args.includes("--skip-checks");
  args = args.filter((a) => a !== "--skip-checks");

  if (!skipChecks) {
    await runCheck("fmt", ["fmt", "--check"]);
    await runCheck("lint", ["lint"]);
    const targets = ["main.ts", "src", "tests", "bench", "deploy"].filter((p) =>
      exists(`${root}${p}`)
    );
    await runCheck("types", ["check", ...targets]);
  }

  if (Deno.env.get("SCRIPT_OPERATOR_TEST_KUBECONFIG")) {
    const jobs = Deno.env.get("SCRIPT_OPERATOR_TEST_JOBS") || "real";
    console.log(`using the cluster of SCRIPT_OPERATOR_TEST_KUBECONFIG (Jobs: ${jobs})`);
    await runTests(args, { SCRIPT_OPERATOR_TEST_JOBS: jobs });
  } else {
    // Two suites, one after the other (one control plane at a time): the kwok suite on a
    // control plane whose node is kwok, the real-node suite on one with a real node.
    const paths = args.filter((a) => !a.startsWith("-") && exists(a));
    const flags = args.filter((a) => !paths.includes(a));
    const here = `${Deno.cwd()}/` === root ? "" : root;
    const suites = paths.length > 0 ? splitSuites(paths, Deno.cwd()) : {
      kwok: ["tests/", "src/", "deploy/", "bench/"].map((p) => `${here}${p}`),
      real: [REAL_NODE_SUITE],
    };
    const envtest = Deno.env.get("KUBEBUILDER_ASSETS");
    const binDir = envtest || await ensureBinaries();
    if (suites.kwok.length > 0) {
      await runSuite("kwok suite", () => startControlPlane({ binDir, node: "kwok" }), [
        ...suites.kwok,
        `--ignore=${REAL_NODE_SUITE}`,
        ...flags,
      ]);
    }
    if (suites.real.length > 0) {
      let choice: NodeChoice;
      try {
        choice = chooseNode(binDir);
      } catch (e) {
        // A forced real node that cannot run is an error, not a fallback.
        const reason = e instanceof Error ? e.message : String(e);
        choice = { kind: "kwok", reason };
        totals.failed++;
        console.log(`real-node suite: FAILED: ${reason}`);
      }
      if (choice.kind === "real") {
        await runSuite(
          "real-node suite",
          () => startControlPlane({ binDir, node: "real" }),
          [...suites.real, ...flags],
        );
      } else {
        if (choice.fallbackLine) console.log(choice.fallbackLine);
        await runTests([...suites.real, ...flags], {
          SCRIPT_OPERATOR_TEST_NO_CLUSTER: `no real node (${choice.reason})`,
        });
      }
    }
  }
  console.log(`${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
  Deno.exit(totals.failed > 0 ? 1 : 0);
}

if (import.meta.main) await main();
