/**
 * What tests import to reach the test cluster. `deno task test` (tests/run.ts) starts a control
 * plane and exports:
 *
 * - `SCRIPT_OPERATOR_TEST_KUBECONFIG`: path of an admin kubeconfig;
 * - `SCRIPT_OPERATOR_TEST_JOBS`: `kwok` (Jobs progress through kwok; a container env
 *   `KWOK_EXIT_CODE=<n>` makes its pod fail with exit code n), `real` (a real cluster runs the
 *   containers) or `none` (Jobs never progress, e.g. envtest binaries);
 * - `SCRIPT_OPERATOR_TEST_BIN`: folder with kubectl (may be empty: kubectl from PATH).
 *
 * @module
 */

/** How Jobs behave in the test cluster. */
export type JobsMode = "kwok" | "real" | "none";

/** Admin kubeconfig of the test cluster, or undefined when tests run without one. */
export const testKubeconfig: string | undefined = Deno.env.get("SCRIPT_OPERATOR_TEST_KUBECONFIG") ||
  undefined;

/** How Jobs behave in the test cluster (`none` without a cluster). */
export const jobsMode: JobsMode = parseJobsMode(Deno.env.get("SCRIPT_OPERATOR_TEST_JOBS"));

function parseJobsMode(value: string | undefined): JobsMode {
  if (!testKubeconfig) return "none";
  if (value === undefined || value === "") return "real";
  if (value === "kwok" || value === "real" || value === "none") return value;
  throw new Error(`SCRIPT_OPERATOR_TEST_JOBS=${value}: expected kwok, real or none`);
}

/** The kubectl to run: `$SCRIPT_OPERATOR_TEST_BIN/kubectl` if present, else from PATH. */
export const kubectlPath: string = findKubectl();

function findKubectl(): string {
  const bin = Deno.env.get("SCRIPT_OPERATOR_TEST_BIN");
  if (bin) {
    try {
      Deno.statSync(`${bin}/kubectl`);
      return `${bin}/kubectl`;
    } catch { /* fall back to PATH */ }
  }
  return "kubectl";
}

/** Options for {@linkcode clusterTest}. */
export interface ClusterTestOptions {
  /** The test needs Jobs to run to completion (job controller, scheduler, nodes). */
  needsJobs?: boolean;
  /** The test needs kube-controller-manager (garbage collector, namespace controller...). */
  needsControllers?: boolean;
  /** Deno's resource sanitizer (default true); turn off for clients that keep connections. */
  sanitizeResources?: boolean;
  /** Deno's async-ops sanitizer (default true). */
  sanitizeOps?: boolean;
}

/** Why a test with these needs cannot run here, or undefined if it can. */
export function skipReason(options: ClusterTestOptions = {}): string | undefined {
  if (!testKubeconfig) {
    return Deno.env.get("SCRIPT_OPERATOR_TEST_NO_CLUSTER") ||
      "SCRIPT_OPERATOR_TEST_KUBECONFIG not set: run via `deno task test`";
  }
  if ((options.needsJobs || options.needsControllers) && jobsMode === "none") {
    return "SCRIPT_OPERATOR_TEST_JOBS=none: this control plane (envtest) has no " +
      (options.needsJobs ? "job controller, scheduler or nodes" : "controller manager");
  }
  return undefined;
}

/**
 * Registers a test that needs the test cluster. Without a cluster (or without the Jobs or
 * controllers it needs) the test is registered as ignored and one line `SKIP <name>: <reason>`
 * is printed.
 */
export function clusterTest(
  name: string,
  options: ClusterTestOptions,
  fn: (t: Deno.TestContext) => Promise<void>,
): void {
  const reason = skipReason(options);
  if (reason) console.log(`SKIP ${name}: ${reason}`);
  Deno.test({
    name,
    ignore: reason !== undefined,
    sanitizeResources: options.sanitizeResources ?? true,
    sanitizeOps: options.sanitizeOps ?? true,
    fn,
  });
}

/** Result of a kubectl run. */
export interface KubectlResult {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/** Options for {@linkcode kubectl}. */
export interface KubectlOptions {
  /** Text written to kubectl's standard input (e.g. a manifest for `apply -f -`). */
  stdin?: string;
  /** Kubeconfig to use instead of the admin one. */
  kubeconfig?: string;
}

/** Runs kubectl against the test cluster (admin kubeconfig unless another is given). */
export async function kubectl(
  args: string[],
  options: KubectlOptions = {},
): Promise<KubectlResult> {
  const kubeconfig = options.kubeconfig ?? testKubeconfig;
  if (!kubeconfig) {
    throw new Error("SCRIPT_OPERATOR_TEST_KUBECONFIG not set: run via `deno task test`");
  }
  const child = new Deno.Command(kubectlPath, {
    args: [`--kubeconfig=${kubeconfig}`, ...args],
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const out = await child.output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** kubectl exited non-zero; `transient` when a retry may succeed (see {@linkcode waitFor}). */
export class KubectlError extends Error {
  override name = "KubectlError";
  /** kubectl's exit code. */
  readonly code: number;
  /** kubectl's standard error. */
  readonly stderr: string;
  /**
   * The object does not exist (yet), or the API server could not answer this time (connection
   * refused, timeout, 429/5xx): worth retrying while waiting for something.
   */
  readonly transient: boolean;

  /** Describes the failed run of kubectl `args`. */
  constructor(args: string[], res: KubectlResult) {
    super(`kubectl ${args.join(" ")} failed (exit ${res.code}): ${res.stderr.trim()}`);
    this.code = res.code;
    this.stderr = res.stderr;
    this.transient = TRANSIENT_KUBECTL.test(res.stderr);
  }
}

const TRANSIENT_KUBECTL =
  /\(NotFound\)|doesn't have a resource type|connection refused|i\/o timeout|TLS handshake timeout|Client\.Timeout|the server is currently unable|etcdserver: request timed out|\(TooManyRequests\)|\(InternalError\)|\(ServiceUnavailable\)/;

/** Runs kubectl and returns its stdout; throws a {@linkcode KubectlError} if it fails. */
export async function kubectlOk(args: string[], options: KubectlOptions = {}): Promise<string> {
  const res = await kubectl(args, options);
  if (res.code !== 0) throw new KubectlError(args, res);
  return res.stdout;
}

/** Runs `kubectl get ... -o json` and returns the parsed object. */
export async function kubectlJson<T = Record<string, unknown>>(
  args: string[],
  options: KubectlOptions = {},
): Promise<T> {
  return JSON.parse(await kubectlOk([...args, "-o", "json"], options)) as T;
}

/** A kubeconfig file and a function that removes it. */
export interface TempKubeconfig extends AsyncDisposable {
  /** Path of the kubeconfig. */
  path: string;
  /** Removes the file. */
  cleanup(): Promise<void>;
}

/**
 * Writes a kubeconfig that authenticates with a bearer token (e.g. from `kubectl create token`)
 * against the test cluster's server and CA, without the admin client certificate.
 */
export async function tokenKubeconfig(token: string): Promise<TempKubeconfig> {
  const view = await kubectlJson<{
    clusters: { cluster: { server: string; "certificate-authority-data": string } }[];
  }>(["config", "view", "--raw", "--minify"]);
  const cluster = view.clusters[0].cluster;
  const path = await Deno.makeTempFile({ prefix: "script-operator-token-", suffix: ".kubeconfig" });
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "test", cluster }],
      users: [{ name: "token", user: { token } }],
      contexts: [{ name: "test", context: { cluster: "test", user: "token" } }],
      "current-context": "test",
    }),
  );
  const cleanup = () => Deno.remove(path).catch(() => {});
  return { path, cleanup, [Symbol.asyncDispose]: cleanup };
}

/** A test namespace and a function that deletes it. */
export interface TestNamespace extends AsyncDisposable {
  /** Namespace name. */
  name: string;
  /** Deletes the namespace (without waiting for its contents to be gone). */
  cleanup(): Promise<void>;
}

/**
 * Creates a namespace `<prefix>-<random>` (labelled `script-operator.dev/test=true`). Delete it
 * with `cleanup()` or `await using ns = await uniqueNamespace("x")`.
 */
export async function uniqueNamespace(prefix: string): Promise<TestNamespace> {
  const clean = prefix.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "");
  const name = `${clean.slice(0, 50) || "test"}-${crypto.randomUUID().slice(0, 8)}`;
  const namespace = {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name, labels: { "script-operator.dev/test": "true" } },
  };
  await kubectlOk(["create", "-f", "-"], { stdin: JSON.stringify(namespace) });
  const cleanup = async () => {
    await kubectlOk(["delete", "namespace", name, "--wait=false", "--ignore-not-found"]);
  };
  return { name, cleanup, [Symbol.asyncDispose]: cleanup };
}

/**
 * Thrown inside a {@linkcode waitFor} callback to say "not yet, try again" (with a reason for
 * the timeout message). Any other error fails the wait at once.
 */
export class NotYet extends Error {
  override name = "NotYet";
}

/** Whether `error` means "not yet": a {@linkcode NotYet} or a transient {@linkcode KubectlError}. */
export function isNotYet(error: unknown): boolean {
  return error instanceof NotYet || (error instanceof KubectlError && error.transient);
}

/** Options for {@linkcode waitFor}. */
export interface WaitForOptions {
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
  /** Pause between attempts (default 200 ms). */
  intervalMs?: number;
  /** What is awaited, for the timeout message (e.g. "Job x to complete"). */
  what: string;
}

/**
 * Calls `fn` until it returns a value other than undefined, null or false, and returns that
 * value. Only "not yet" is retried: such a return value, a thrown {@linkcode NotYet}, or a
 * transient kubectl failure (e.g. NotFound, see {@linkcode KubectlError}). Any other error, an
 * assertion error above all, is rethrown at once. The timeout error names `what`, the last
 * value and the last "not yet" reason.
 */
export async function waitFor<T>(
  fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  options: WaitForOptions,
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  let lastError: unknown;
  while (true) {
    try {
      const value = await fn();
      if (value !== undefined && value !== null && value !== false) return value;
      last = value;
      lastError = undefined;
    } catch (e) {
      if (!isNotYet(e)) throw e;
      lastError = e;
    }
    if (Date.now() >= deadline) {
      const error = lastError instanceof Error ? lastError.message : lastError;
      const value = String(JSON.stringify(last)).slice(0, 300);
      throw new Error(
        `timed out after ${timeoutMs / 1000}s waiting for ${options.what}` +
          ` (last value: ${value}${error ? `, last error: ${error}` : ""})`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 200));
  }
}

/** A loopback TCP port that was free a moment ago (for an operator's probe or metrics server). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}
