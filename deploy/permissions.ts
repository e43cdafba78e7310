/**
 * The Deno permission flags of the operator: the single source of truth for `deno task start`
 * (checked by deploy/permissions_test.ts), `deno task compile` (deploy/compile.ts) and the
 * container image (Dockerfile, via `deno task compile --in-cluster`).
 *
 * Found by running every command (`--help`, `--version`, `crd`, `scripts`, `--once`, a long
 * run with `--leader-elect`, probes and metrics) under `DENO_AUDIT_PERMISSIONS` with `-A`, then
 * again with these flags and `--no-prompt` against a real API server: with a kubeconfig
 * (`--kubeconfig`, `$KUBECONFIG`, an exec credential plugin) and in-cluster (ServiceAccount
 * token). Nothing writes files, loads native code or needs more than the system calls listed.
 *
 * @module
 */

/** One permission flag and why the operator needs it. */
export interface PermissionFlag {
  /** The flag exactly as passed to `deno run` / `deno compile`. */
  flag: string;
  /** One line: the code that needs it. */
  reason: string;
}

/** The ServiceAccount folder Kubernetes mounts into every pod that automounts its token. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/**
 * Environment variables the in-cluster binary may read; every other variable reads as unset
 * (`--ignore-env`). client-node's `loadFromCluster` finds the API server through these two.
 */
export const IN_CLUSTER_ENV = ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"] as const;

/**
 * System information the operator asks for: `hostname` (`Deno.hostname()`, the leader-election
 * identity and the Events' reportingInstance, src/runtime/operator.ts) and `uid` (Deno's `node:fs`
 * `accessSync` compares the file owner with `Deno.uid()`; client-node's `fileExists` uses it for
 * the in-cluster namespace file and its home-folder lookup).
 */
export const SYS_APIS = ["hostname", "uid"] as const;

/**
 * Flags of the laptop binary (`deno task start`, `deno task compile`): talks to whatever cluster
 * a kubeconfig names, with whatever credentials it uses.
 */
export const LAPTOP_PERMISSIONS: readonly PermissionFlag[] = [
  {
    flag: "--allow-net",
    reason:
      "the API server is any host:port a kubeconfig names; /healthz, /readyz and /metrics listen on any --*-bind-address",
  },
  {
    flag: "--allow-read",
    reason:
      "no path list: --kubeconfig, every $KUBECONFIG entry, ~/.kube/config and the certificate, key and token files they name can be anywhere",
  },
  {
    flag: "--allow-env",
    reason:
      "no name list: client-node gives kubeconfig exec credential plugins (aws, gcloud, kubelogin...) the operator's environment, and what they read is open-ended",
  },
  {
    flag: "--allow-run",
    reason:
      "client-node runs the kubeconfig's exec credential plugin, any program the kubeconfig names",
  },
  {
    flag: `--allow-sys=${SYS_APIS.join(",")}`,
    reason:
      "Deno.hostname() for the leader identity; Deno.uid() inside node:fs accessSync (client-node's fileExists)",
  },
];

/**
 * Flags of the image binary (`deno task compile --in-cluster`, Dockerfile): in-cluster
 * credentials only, no subprocesses. The embedded scripts need no flag: a compiled binary may
 * always read its own embedded file system.
 */
export const IN_CLUSTER_PERMISSIONS: readonly PermissionFlag[] = [
  {
    flag: "--allow-net",
    reason:
      "the API server address ($KUBERNETES_SERVICE_HOST) is only known at run time; probes and metrics listen on :8081 and :8080",
  },
  {
    flag: `--allow-read=${SERVICE_ACCOUNT_DIR}`,
    reason: "token (re-read as it rotates), ca.crt and namespace of the pod's ServiceAccount",
  },
  {
    flag: `--allow-env=${IN_CLUSTER_ENV.join(",")}`,
    reason: "client-node's loadFromCluster builds the API server URL from these",
  },
  {
    flag: "--ignore-env",
    reason:
      "every other variable reads as unset instead of failing: libraries probe DEBUG, UNDICI_*, WS_NO_BUFFER_UTIL and `debug` lists them all at import",
  },
  {
    flag: `--allow-sys=${SYS_APIS.join(",")}`,
    reason:
      "Deno.hostname() for the leader identity (the pod name); Deno.uid() inside node:fs accessSync (client-node's fileExists)",
  },
];

/**
 * V8 flags of every way the operator runs: the start task, both compiled binaries and the image.
 * The operator allocates fast and keeps little, and resident memory never gives back what V8's
 * heap once took, so both flags keep the heap close to what is live:
 *
 * - `--max-semi-space-size=2` (MiB): the young generation stays at 3 x 2 MiB instead of growing
 *   to 3 x 32 MiB while ScriptRuns converge;
 * - `--heap-growing-percent=20`: after a full GC the old generation may grow by 20% of what is
 *   live before the next one, instead of up to 4x.
 *
 * Measured by `deno task bench` at 1,000 ScriptRuns on 2 cores: peak 291 MiB with neither, 176
 * with the first, 160 with both; idle 133 -> 123 MiB (with YAML and prom-client gone); operator
 * CPU within the run-to-run noise (docs/benchmarks.md).
 */
export const V8_FLAGS: readonly string[] = [
  "--v8-flags=--max-semi-space-size=2,--heap-growing-percent=20",
];

/** The laptop flags, in order, as `deno run` / `deno compile` take them. */
export const LAPTOP_FLAGS: readonly string[] = LAPTOP_PERMISSIONS.map((p) => p.flag);

/** The in-cluster flags, in order, as `deno compile` takes them. */
export const IN_CLUSTER_FLAGS: readonly string[] = IN_CLUSTER_PERMISSIONS.map((p) => p.flag);

/** The `start` task of deno.json: `deno run` with the laptop flags and the V8 flags. */
export const START_TASK = `deno run ${[...LAPTOP_FLAGS, ...V8_FLAGS].join(" ")} main.ts`;

/**
 * Flags that must never be granted: everything, writes, native code, and the permission prompt's
 * escape hatches. Tests assert that neither flag set contains one of these (or its short form).
 */
export const FORBIDDEN_FLAGS: readonly string[] = [
  "-A",
  "--allow-all",
  "-W",
  "--allow-write",
  "--allow-ffi",
  "--allow-import",
  "-P",
  "--permission-set",
];
