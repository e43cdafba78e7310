/**
 * The real Helm CLI (built from Go modules by tests/tools/build.sh helm) run on the chart of
 * deploy/helm/script-operator, with Helm's own folders in a temporary directory so tests never
 * read or write the user's Helm configuration.
 * @module
 */
import { toolPath } from "./tools.ts";
import { type K8sObject, parseManifests, ROOT } from "./manifests.ts";

/** The chart's folder. */
export const CHART: string = `${ROOT}deploy/helm/script-operator`;

/** Result of one helm run. */
export interface HelmResult {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

let helmHome: string | undefined;

/** Runs helm with `args`; Helm's cache, config and data folders live in one temp folder. */
export async function helm(args: string[]): Promise<HelmResult> {
  helmHome ??= Deno.makeTempDirSync({ prefix: "script-operator-helm-" });
  const out = await new Deno.Command(await toolPath("helm"), {
    args,
    env: {
      HELM_CACHE_HOME: `${helmHome}/cache`,
      HELM_CONFIG_HOME: `${helmHome}/config`,
      HELM_DATA_HOME: `${helmHome}/data`,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** Runs helm and returns its stdout; throws with its stderr if it fails. */
export async function helmOk(args: string[]): Promise<string> {
  const res = await helm(args);
  if (res.code !== 0) {
    throw new Error(`helm ${args.join(" ")} failed (exit ${res.code}): ${res.stderr.trim()}`);
  }
  return res.stdout;
}

/** A values file for `helm -f` (JSON is YAML); removed on dispose. */
export async function valuesFile(
  values: Record<string, unknown>,
): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempFile({ prefix: "script-operator-values-", suffix: ".yaml" });
  await Deno.writeTextFile(path, JSON.stringify(values));
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path).catch(() => {}) };
}

/** Options of {@linkcode helmTemplate}. */
export interface TemplateOptions {
  /** Release name (default "script-operator", which names every object "script-operator"). */
  release?: string;
  /** Release namespace (default "script-operator"). */
  namespace?: string;
  /** Values over the chart's values.yaml. */
  values?: Record<string, unknown>;
  /** The chart folder (default {@linkcode CHART}). */
  chart?: string;
}

/** `helm template --include-crds` of the chart, parsed. */
export async function helmTemplate(options: TemplateOptions = {}): Promise<K8sObject[]> {
  await using values = await valuesFile(options.values ?? {});
  const text = await helmOk([
    "template",
    options.release ?? "script-operator",
    options.chart ?? CHART,
    "--namespace",
    options.namespace ?? "script-operator",
    "--include-crds",
    "-f",
    values.path,
  ]);
  return parseManifests(text);
}

/** Labels only Helm sets: release bookkeeping, not what an object is or does. */
export const HELM_ONLY_LABELS: readonly string[] = [
  "app.kubernetes.io/instance",
  "app.kubernetes.io/managed-by",
  "app.kubernetes.io/version",
  "helm.sh/chart",
];

/**
 * A copy of `value` without {@linkcode HELM_ONLY_LABELS} anywhere (labels, selectors,
 * matchLabels), so a Helm render compares with the same objects applied another way. Pure.
 */
export function withoutHelmLabels<T>(value: T): T {
  if (Array.isArray(value)) return value.map(withoutHelmLabels) as T;
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).filter(([k]) => !HELM_ONLY_LABELS.includes(k))
        .map(([k, v]) => [k, withoutHelmLabels(v)]),
    ) as T;
  }
  return value;
}
