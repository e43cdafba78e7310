/**
 * Finds the credentials: --kubeconfig, $KUBECONFIG, ~/.kube/config, or the in-cluster
 * ServiceAccount (token re-read as it rotates). Errors say what is missing and how to fix it.
 * @module
 */
import { KubeConfig } from "@kubernetes/client-node";

/** Default folder of the in-cluster ServiceAccount files. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** Credentials cannot be loaded; exit code 2. */
export class KubeConfigError extends Error {
  override name = "KubeConfigError";
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Loads one kubeconfig file; an unreadable or invalid file is a KubeConfigError naming it. */
function loadFile(kc: KubeConfig, path: string): void {
  try {
    kc.loadFromFile(path);
  } catch (error) {
    throw new KubeConfigError(`${path}: not a usable kubeconfig: ${(error as Error).message}`);
  }
}

/**
 * Adds `more`'s clusters, users and contexts to `kc` as kubectl merges KUBECONFIG files: a name
 * already defined by an earlier file keeps its first definition (client-node's own mergeConfig
 * throws "Duplicate …" instead), and the first current-context set wins.
 */
export function mergeFirstWins(kc: KubeConfig, more: KubeConfig): void {
  const has = (list: { name: string }[], name: string) => list.some((x) => x.name === name);
  for (const cluster of more.getClusters()) {
    if (!has(kc.getClusters(), cluster.name)) kc.addCluster(cluster);
  }
  for (const user of more.getUsers()) {
    if (!has(kc.getUsers(), user.name)) kc.addUser(user);
  }
  for (const context of more.getContexts()) {
    if (!has(kc.getContexts(), context.name)) kc.addContext(context);
  }
  if (!kc.getCurrentContext() && more.getCurrentContext()) {
    kc.setCurrentContext(more.getCurrentContext());
  }
}

/** How the operator authenticated, for the start-up log line. */
export interface LoadedConfig {
  kc: KubeConfig;
  source: string;
  /** Namespace of the in-cluster ServiceAccount, when in-cluster. */
  inClusterNamespace?: string;
}

/**
 * Loads credentials. In-cluster mode is used when no kubeconfig is given or found and
 * KUBERNETES_SERVICE_HOST is set; `pathPrefix` (env SCRIPT_OPERATOR_SERVICEACCOUNT_PREFIX)
 * relocates the ServiceAccount files, for tests.
 */
export function loadKubeConfig(options: { kubeconfig?: string; context?: string }): LoadedConfig {
  const env = (name: string) => Deno.env.get(name);
  const kc = new KubeConfig();
  let source: string;
  let inClusterNamespace: string | undefined;
  const home = env("HOME") ?? env("USERPROFILE");
  const defaultPath = home ? `${home}/.kube/config` : undefined;
  if (options.kubeconfig) {
    if (!exists(options.kubeconfig)) {
      throw new KubeConfigError(
        `--kubeconfig ${options.kubeconfig}: no such file; pass the path of a kubeconfig`,
      );
    }
    loadFile(kc, options.kubeconfig);
    source = options.kubeconfig;
  } else if (env("KUBECONFIG")) {
    const paths = env("KUBECONFIG")!.split(":").filter((p) => p !== "");
    const found = paths.filter(exists);
    if (found.length === 0) {
      throw new KubeConfigError(
        `KUBECONFIG=${env("KUBECONFIG")}: no such file; point it at a kubeconfig`,
      );
    }
    // As kubectl merges them: the first file that sets a value wins (current-context included).
    loadFile(kc, found[0]);
    for (const path of found.slice(1)) {
      const more = new KubeConfig();
      loadFile(more, path);
      mergeFirstWins(kc, more);
    }
    source = `KUBECONFIG=${found.join(":")}`;
  } else if (defaultPath && exists(defaultPath)) {
    loadFile(kc, defaultPath);
    source = defaultPath;
  } else if (env("KUBERNETES_SERVICE_HOST")) {
    const prefix = env("SCRIPT_OPERATOR_SERVICEACCOUNT_PREFIX") ?? "";
    const dir = `${prefix}${SERVICE_ACCOUNT_DIR}`;
    for (const file of ["token", "ca.crt"]) {
      if (!exists(`${dir}/${file}`)) {
        throw new KubeConfigError(
          `in-cluster mode: ${dir}/${file} is missing; mount the ServiceAccount token (automountServiceAccountToken: true)`,
        );
      }
    }
    kc.loadFromCluster(prefix);
    source = `in-cluster ServiceAccount (${dir})`;
    try {
      inClusterNamespace = Deno.readTextFileSync(`${dir}/namespace`).trim();
    } catch {
      inClusterNamespace = undefined;
    }
  } else {
    throw new KubeConfigError(
      "no kubeconfig: pass --kubeconfig PATH, set KUBECONFIG, or create ~/.kube/config (in a cluster, KUBERNETES_SERVICE_HOST must be set)",
    );
  }
  if (options.context) {
    if (!kc.getContexts().some((c) => c.name === options.context)) {
      const names = kc.getContexts().map((c) => c.name).join(", ") || "none";
      throw new KubeConfigError(
        `--context ${options.context}: not in ${source}; contexts: ${names}`,
      );
    }
    kc.setCurrentContext(options.context);
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new KubeConfigError(
      `${source}: no current context with a cluster; set current-context or pass --context`,
    );
  }
  return { kc, source, inClusterNamespace };
}
