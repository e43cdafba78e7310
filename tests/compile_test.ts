/**
 * The compiled binary (`deno task compile`): it starts, lists the scripts embedded in it (run
 * from another folder, so nothing is read from the checkout) and runs a `--once` pass against
 * the test cluster with the permissions baked in.
 *
 * The binary is built once, when this module loads. Where `deno compile` cannot get its denort
 * runtime (no download from dl.deno.land, no `DENORT_BIN`) every test here is reported as
 * ignored, with one `SKIP <name>: <reason>` line each; any other compile failure fails a test.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import {
  kubectlJson,
  kubectlOk,
  skipReason,
  testKubeconfig,
  uniqueNamespace,
} from "./harness/test_env.ts";
import { EXIT_CODES, NO_DENORT_MESSAGE } from "../deploy/compile.ts";
import { loadScripts } from "../src/runtime/scripts.ts";
import { OPERATOR_VERSION } from "../src/version.ts";
import { installCrd } from "./harness/operator.ts";

const ROOT = new URL("..", import.meta.url).pathname;
/** A real build type-checks and embeds ~75 MB of npm packages; allow for a slow first run. */
const COMPILE_TIMEOUT_MS = 600_000;

interface Build {
  /** The binary, when built. */
  binary?: string;
  /** Why the tests cannot run here (denort unavailable), if so. */
  skip?: string;
  /** Why the build failed, if it did (a real failure, not a skip). */
  failure?: string;
}

/** Runs `deno task compile --output <temp>/script-operator` once. */
async function build(): Promise<Build> {
  const dir = await Deno.makeTempDir({ prefix: "script-operator-compile-" });
  const binary = `${dir}/script-operator`;
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "compile", "--output", binary],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(COMPILE_TIMEOUT_MS),
    }).output();
    const d = new TextDecoder();
    const log = d.decode(out.stdout) + d.decode(out.stderr);
    if (out.code === EXIT_CODES.ok) return { binary };
    await Deno.remove(dir, { recursive: true });
    if (out.code === EXIT_CODES.noDenort && log.includes(NO_DENORT_MESSAGE)) {
      return { skip: `denort unavailable: ${NO_DENORT_MESSAGE}` };
    }
    return { failure: `deno task compile exited with ${out.code}:\n${log}` };
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    return { failure: `deno task compile did not finish: ${(error as Error).message}` };
  }
}

const built = await build();
if (built.binary) {
  // Removed when the test process ends, however the tests end.
  globalThis.addEventListener("unload", () => {
    try {
      Deno.removeSync(built.binary!.slice(0, built.binary!.lastIndexOf("/")), { recursive: true });
    } catch { /* already gone */ }
  });
}

/** Registers a test of the compiled binary; skipped (with a SKIP line) where it cannot run. */
function compiledTest(
  name: string,
  options: { cluster?: boolean },
  fn: (binary: string) => Promise<void>,
): void {
  const reason = built.skip ?? (options.cluster ? skipReason({}) : undefined);
  if (reason) console.log(`SKIP ${name}: ${reason}`);
  Deno.test({
    name,
    ignore: reason !== undefined,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      if (built.failure) throw new Error(built.failure);
      await fn(built.binary!);
    },
  });
}

/** Runs the binary from `/` with a clean environment. */
async function run(binary: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(binary, {
    args,
    cwd: "/",
    clearEnv: true,
    env: { HOME: "/nonexistent", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

compiledTest("compiled binary: --version names the operator, not a Deno REPL", {}, async (bin) => {
  const res = await run(bin, ["--version"]);
  assertEquals(res.code, 0, res.stderr);
  assertEquals(
    res.stdout.trim(),
    `script-operator ${OPERATOR_VERSION} (deno ${Deno.version.deno})`,
  );
});

compiledTest("compiled binary: scripts lists the embedded scripts", {}, async (bin) => {
  const res = await run(bin, ["scripts"]);
  assertEquals(res.code, 0, res.stderr);
  const rows = res.stdout.trim().split("\n").slice(1).map((l) => l.split(/\s+/));
  const expected = [...(await loadScripts()).values()].map((s) => [
    s.name,
    String(s.size),
    s.sha256,
  ]);
  assertEquals(rows, expected);
});

compiledTest("compiled binary: --once against the test cluster", { cluster: true }, async (bin) => {
  await installCrd();
  await using ns = await uniqueNamespace("compiled");
  await kubectlOk(["apply", "-f", "-"], {
    stdin:
      `apiVersion: script-operator.dev/v1alpha1\nkind: ScriptRun\nmetadata: {name: compiled, namespace: ${ns.name}}\nspec: {script: task.sh}\n`,
  });
  const res = await run(bin, [
    `--kubeconfig=${testKubeconfig}`,
    `--namespace=${ns.name}`,
    "--once",
    "--log-format=json",
  ]);
  assertEquals(res.code, 0, res.stderr);
  assert(!res.stderr.includes("NotCapable"), res.stderr);
  const scriptRun = await kubectlJson<{ status?: { jobName?: string } }>([
    "-n",
    ns.name,
    "get",
    "scriptrun",
    "compiled",
  ]);
  assert(scriptRun.status?.jobName, `no Job recorded after --once: ${res.stderr}`);
  await kubectlOk(["-n", ns.name, "get", "job", scriptRun.status.jobName]);
});
