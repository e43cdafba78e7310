/**
 * `deno task test`: static checks, then `deno test` against a fresh local control plane.
 *
 * 1. `deno fmt --check`, `deno lint`, `deno check` (one result line each);
 * 2. unless `SCRIPT_OPERATOR_TEST_KUBECONFIG` is set (then that cluster is used and
 *    `SCRIPT_OPERATOR_TEST_JOBS` defaults to `real`), builds the binaries if needed (or uses
 *    `KUBEBUILDER_ASSETS`), starts a control plane and exports the test_env.ts variables;
 * 3. runs `deno test -A --no-check=remote tests/ src/ deploy/`; extra arguments are passed through
 *    (arguments naming existing files or folders replace `tests/ src/`);
 * 4. stops the control plane, prints `N passed, N failed, N skipped` as the last line and exits
 *    non-zero if anything failed.
 *
 * `--skip-checks` (consumed here) skips step 1.
 *
 * @module
 */
import {
  type ControlPlane,
  exists,
  startControlPlane,
  withParentDeathSignal,
} from "./harness/control_plane.ts";

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
    : ["tests/", "src/", "deploy/"].map((p) => `${here}${p}`).filter(exists);
  const testArgs = ["test", "-A", "--no-check=remote", "--permit-no-files", ...defaults, ...args];
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

  const env: Record<string, string> = {};
  let cp: ControlPlane | undefined;
  try {
    if (Deno.env.get("SCRIPT_OPERATOR_TEST_KUBECONFIG")) {
      env.SCRIPT_OPERATOR_TEST_JOBS = Deno.env.get("SCRIPT_OPERATOR_TEST_JOBS") || "real";
      console.log(
        `using the cluster of SCRIPT_OPERATOR_TEST_KUBECONFIG (Jobs: ${env.SCRIPT_OPERATOR_TEST_JOBS})`,
      );
    } else {
      try {
        cp = await startControlPlane();
      } catch (e) {
        totals.failed++;
        console.log(`control plane failed to start: ${e instanceof Error ? e.message : e}`);
        env.SCRIPT_OPERATOR_TEST_NO_CLUSTER = "the control plane failed to start (see above)";
      }
      if (cp) {
        const t = cp.timings;
        console.log(
          `control plane ready in ${(t.total / 1000).toFixed(1)}s (API ${
            (t.apiReady / 1000).toFixed(1)
          }s${t.nodeReady ? `, node ${(t.nodeReady / 1000).toFixed(1)}s` : ""}; Jobs: ${
            cp.jobsProgress ? "kwok" : "none"
          })`,
        );
        env.SCRIPT_OPERATOR_TEST_KUBECONFIG = cp.kubeconfigPath;
        env.SCRIPT_OPERATOR_TEST_JOBS = cp.jobsProgress ? "kwok" : "none";
        env.SCRIPT_OPERATOR_TEST_BIN = cp.binDir;
      }
    }
    await runTests(args, env); // without a cluster, cluster tests report SKIP
    const failure = cp?.failure();
    if (failure) {
      totals.failed++;
      console.log(`control plane process died during the tests: ${failure}`);
    }
  } finally {
    if (cp) {
      const t0 = performance.now();
      await cp.stop();
      console.log(`control plane stopped in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
    }
  }
  console.log(`${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
  Deno.exit(totals.failed > 0 ? 1 : 0);
}

await main();
