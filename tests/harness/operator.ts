/**
 * Runs the operator for tests as users run it: `deno run` with the exact permission flags of
 * `deno task start` (so a missing permission fails a test, not a user), JSON logs captured.
 * @module
 */
import { stringify } from "yaml";
import type { ScriptRun, ScriptRunSpec } from "../../src/types.ts";
import { kubectlJson, kubectlOk, testKubeconfig } from "./test_env.ts";

const ROOT = new URL("../../", import.meta.url);

/**
 * Every `deno run` flag of deno.json's start task in the checkout `root` (default: this one):
 * the words between `run` and `main.ts`, permission and V8 flags alike.
 */
export async function startTaskRunFlags(root: string | URL = ROOT): Promise<string[]> {
  const file = typeof root === "string" ? `${root}deno.json` : new URL("deno.json", root);
  const config = JSON.parse(await Deno.readTextFile(file));
  const words: string[] = String(config.tasks?.start ?? "").trim().split(/\s+/);
  const run = words.indexOf("run");
  const main = words.findIndex((w) => /(^|\/)main\.ts$/.test(w));
  if (words[0] !== "deno" || run < 0 || main < run) {
    throw new Error(`deno.json tasks.start is not "deno run <flags> main.ts": ${words.join(" ")}`);
  }
  return words.slice(run + 1, main);
}

/** The permission flags (`--allow-*`, `--deny-*`) of the start task in deno.json. */
export async function startTaskFlags(): Promise<string[]> {
  return (await startTaskRunFlags()).filter((w) =>
    w.startsWith("--allow-") || w.startsWith("--deny-")
  );
}

let denoDir: Promise<string> | undefined;
/** Deno's cache folder; passed on when a test clears the environment, so nothing is fetched again. */
export function denoCacheDir(): Promise<string> {
  denoDir ??= new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdin: "null" })
    .output().then((o) => JSON.parse(new TextDecoder().decode(o.stdout)).denoDir as string);
  return denoDir;
}

/** One parsed JSON log line of the operator. */
export interface LogLine {
  msg: string;
  level: string;
  [key: string]: unknown;
}

/** A running operator process. */
export interface OperatorProcess extends AsyncDisposable {
  /** Every JSON log line so far. */
  logs: LogLine[];
  /** Non-JSON stderr lines (should stay empty). */
  otherOutput: string[];
  /** Process id. */
  pid: number;
  /** Resolves with the exit code. */
  exited: Promise<number>;
  /** Sends SIGTERM and returns the exit code. */
  stop(): Promise<number>;
  /** Waits until a log line matches. */
  waitForLog(match: (line: LogLine) => boolean, what: string, timeoutMs?: number): Promise<LogLine>;
  /**
   * Stops reading the process's stderr until the returned function is called: once the pipe is
   * full, the process blocks in its next log write (as a process whose log reader lags does).
   */
  pauseLogs(): () => void;
}

/** Starts `main.ts` with the start task's flags and `args`; logs in JSON on stderr. */
export async function startOperator(
  args: string[],
  options: {
    env?: Record<string, string>;
    clearEnv?: boolean;
    kubeconfig?: string | null;
    /** Permission flags instead of the start task's (e.g. the in-cluster binary's). */
    flags?: readonly string[];
    /** Another build of the operator (see {@linkcode copyBuild}) instead of this checkout. */
    root?: URL;
  } = {},
): Promise<OperatorProcess> {
  const root = options.root ?? ROOT;
  const flags = options.flags ?? await startTaskFlags();
  const kubeconfigArgs = options.kubeconfig === null
    ? []
    : [`--kubeconfig=${options.kubeconfig ?? testKubeconfig}`];
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...flags,
      new URL("main.ts", root).pathname,
      ...kubeconfigArgs,
      "--log-format=json",
      "--health-probe-bind-address=0",
      "--metrics-bind-address=0",
      ...args,
    ],
    env: options.clearEnv ? { DENO_DIR: await denoCacheDir(), ...options.env } : options.env,
    clearEnv: options.clearEnv,
    cwd: new URL(".", root).pathname,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs: LogLine[] = [];
  const otherOutput: string[] = [];
  let logsPaused: Promise<void> | undefined;
  const readLines = async (stream: ReadableStream<Uint8Array>, parse: boolean) => {
    let buffer = "";
    const decoder = new TextDecoder();
    // A bare reader, not a pipe chain: while logs are paused nothing reads ahead into queues, so
    // the OS pipe fills as it would behind a lagging reader.
    const reader = stream.getReader();
    while (true) {
      if (parse) await logsPaused;
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let i;
      while ((i = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 1);
        if (Deno.env.get("SCRIPT_OPERATOR_TEST_VERBOSE")) console.error(line);
        if (!parse) {
          if (line.trim()) otherOutput.push(line);
          continue;
        }
        try {
          logs.push(JSON.parse(line));
        } catch {
          if (line.trim()) otherOutput.push(line);
        }
      }
    }
    if (buffer.trim()) otherOutput.push(buffer);
  };
  const readers = Promise.all([readLines(child.stderr, true), readLines(child.stdout, false)]);
  const exited = child.status.then(async (s) => {
    await readers;
    return s.code;
  });
  let stopped: Promise<number> | undefined;
  const stop = () => {
    if (!stopped) {
      try {
        child.kill("SIGTERM");
      } catch { /* already exited */ }
      stopped = exited;
    }
    return stopped;
  };
  const waitForLog = async (match: (l: LogLine) => boolean, what: string, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    let done = false;
    exited.then(() => done = true);
    while (Date.now() < deadline) {
      const found = logs.find(match);
      if (found) return found;
      if (done) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(
      `operator never logged ${what}; last lines:\n${
        [...logs.slice(-15).map((l) => JSON.stringify(l)), ...otherOutput.slice(-10)].join("\n")
      }`,
    );
  };
  const pauseLogs = () => {
    let resume = () => {};
    logsPaused = new Promise<void>((r) => resume = r);
    return () => {
      logsPaused = undefined;
      resume();
    };
  };
  return {
    pid: child.pid,
    logs,
    otherOutput,
    exited,
    stop,
    waitForLog,
    pauseLogs,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}

/** Installs deploy/crd.yaml (server-side apply, idempotent) and waits until it is served. */
export async function installCrd(): Promise<void> {
  await kubectlOk(["apply", "--server-side", "-f", new URL("deploy/crd.yaml", ROOT).pathname]);
  await kubectlOk([
    "wait",
    "--for=condition=Established",
    "crd/scriptruns.script-operator.dev",
    "--timeout=30s",
  ]);
}

/** A kubeconfig like the admin one but pointing at a port where nothing listens; removed on dispose. */
export async function unreachableKubeconfig(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "script-operator-down-" });
  const config = await kubectlJson<Record<string, unknown>>([
    "config",
    "view",
    "--raw",
    "--minify",
  ]);
  const text = JSON.stringify(config).replace(/https:\/\/127\.0\.0\.1:\d+/, "https://127.0.0.1:1");
  await Deno.writeTextFile(`${dir}/down.kubeconfig`, text);
  return {
    path: `${dir}/down.kubeconfig`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** A copy of this checkout's operator sources; removed on dispose. */
export interface BuildCopy extends AsyncDisposable {
  /** Pass as `startOperator(..., { root })`. */
  root: URL;
}

/**
 * Copies main.ts, src/, scripts/, deno.json and deno.lock to a temp folder and applies script
 * changes (content, or null to remove the script): the operator rebuilt with other scripts.
 */
export async function copyBuild(scripts: Record<string, string | null>): Promise<BuildCopy> {
  const dir = await Deno.makeTempDir({ prefix: "script-operator-build-" });
  const copy = async (from: string, to: string) => {
    const info = await Deno.stat(from);
    if (info.isDirectory) {
      await Deno.mkdir(to, { recursive: true });
      for await (const e of Deno.readDir(from)) await copy(`${from}/${e.name}`, `${to}/${e.name}`);
    } else {
      await Deno.copyFile(from, to);
      await Deno.chmod(to, info.mode ?? 0o644);
    }
  };
  for (const part of ["main.ts", "src", "scripts", "deno.json", "deno.lock"]) {
    await copy(new URL(part, ROOT).pathname, `${dir}/${part}`);
  }
  for (const [name, content] of Object.entries(scripts)) {
    if (content === null) await Deno.remove(`${dir}/scripts/${name}`);
    else await Deno.writeTextFile(`${dir}/scripts/${name}`, content, { mode: 0o755 });
  }
  return {
    root: new URL(`file://${dir}/`),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** The YAML of the ScriptRun `ns/name` with `spec`, for `kubectl apply -f -`. */
export function runManifest(ns: string, name: string, spec: ScriptRunSpec): string {
  return stringify({
    apiVersion: "script-operator.dev/v1alpha1",
    kind: "ScriptRun",
    metadata: { name, namespace: ns },
    spec,
  });
}

/** Applies ScriptRuns named `names` with one spec in namespace `ns` (one kubectl apply). */
export async function applyRuns(ns: string, names: string[], spec: ScriptRunSpec): Promise<void> {
  const docs = names.map((name) => runManifest(ns, name, spec));
  await kubectlOk(["apply", "-f", "-"], { stdin: docs.join("---\n") });
}

/** Applies one ScriptRun. */
export function applyRun(ns: string, name: string, spec: ScriptRunSpec): Promise<void> {
  return applyRuns(ns, [name], spec);
}

/** The ScriptRun `ns/name`, as the API server has it. */
export function getRun(ns: string, name: string): Promise<ScriptRun> {
  return kubectlJson<ScriptRun>(["-n", ns, "get", "scriptrun", name]);
}
