/**
 * Command line parsing with node:util parseArgs. Pure: returns options or a UsageError.
 * @module
 */
import { parseArgs } from "node:util";
import type { LogLevel } from "@logtape/logtape";
import { DEFAULTS, quantityValue } from "./desired.ts";
import { type LogFormat, parseLevel } from "./log.ts";
import {
  DEFAULT_POLICY,
  imagePatternProblem,
  OPERATOR_SERVICE_ACCOUNT,
  type Policy,
} from "./policy.ts";

/** Version printed by --version. */
export const OPERATOR_VERSION = "0.1.0";

/** A command line the operator cannot act on; exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Subcommands. */
export type Command = "run" | "scripts" | "crd" | "help" | "version";

/** Everything the command line says. */
export interface CliOptions {
  command: Command;
  kubeconfig?: string;
  context?: string;
  namespaces: string[];
  intervalMs: number;
  once: boolean;
  dryRun: boolean;
  logFormat?: LogFormat;
  logLevel: LogLevel;
  concurrency: number;
  leaderElect: boolean;
  leaderElectionNamespace?: string;
  leaderElectionId: string;
  healthProbeBindAddress: string;
  metricsBindAddress: string;
  /** What ScriptRuns may ask for (images, ServiceAccounts, privileges). */
  policy: Policy;
}

/** --help text. */
export const HELP =
  `script-operator ${OPERATOR_VERSION}: runs scripts embedded in this binary as Kubernetes Jobs,
one per ScriptRun resource (scriptruns.script-operator.dev).

Usage:
  script-operator [run] [flags]   reconcile ScriptRuns until stopped (or once with --once)
  script-operator scripts         list the embedded scripts with size and SHA-256
  script-operator crd             print the ScriptRun CRD as YAML (pipe to kubectl apply -f -)

Flags:
  --kubeconfig PATH            kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)
  --context NAME               kubeconfig context to use (default: its current-context)
  --namespace NS               watch only this namespace; repeat for more (default: all namespaces)
  --interval DURATION          time between reconcile cycles, e.g. 15s, 1m (default 15s)
  --once                       run one reconcile cycle and exit (1 if it failed)
  --dry-run                    log what would be written, write nothing
  --concurrency N              ScriptRuns reconciled at once (default 8)
  --log-format json|text       default: text on a terminal, json otherwise
  --log-level LEVEL            trace, debug, info, warning, error (default info)
  --leader-elect               hold a Lease so only one replica writes (default off)
  --leader-election-namespace  namespace of the Lease (default: in-cluster namespace or default)
  --leader-election-id NAME    name of the Lease (default script-operator-leader)
  --health-probe-bind-address  address of /healthz and /readyz (default :8081; 0 = off)
  --metrics-bind-address       address of /metrics (default :8080; 0 = off)

Policy (what a ScriptRun may ask for; refused runs fail with reason PolicyViolation):
  --allowed-image PATTERN      image a ScriptRun may use: exact, or a prefix ending in '/*' or
                               ':*' ('*' alone: any); repeat or separate with commas
                               (default: busybox:1.36 only)
  --allowed-service-account SA ServiceAccount a ScriptRun may set ('*': any but
                               ${OPERATOR_SERVICE_ACCOUNT}, which must be named); repeat or
                               separate with commas (default: none)
  --allowed-secret NAME        Secret whose keys env valueFrom.secretKeyRef may name: exact, or
                               a prefix ending in '*'; repeat or separate with commas
                               (default: none)
  --max-cpu QUANTITY           largest CPU request or limit a ScriptRun may ask for, e.g. 2
                               (default: none; at least the default limit 100m)
  --max-memory QUANTITY        largest memory request or limit, e.g. 4Gi (default: none; at
                               least the default limit 500M)
  --allow-privileged-scripts   allow root user or group, privileged, added capabilities,
                               Unconfined seccomp, privilege escalation, and env names such as
                               PATH, LD_PRELOAD, BASH_ENV, PYTHON* (default off)
  -h, --help                   show this help
  --version                    print the version

Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error.`;

/** Parses "15s", "1m", "500ms", "2h" or a number of seconds into milliseconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? "s";
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit]!;
  return Math.round(n * factor);
}

const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Parses the operator's arguments. Throws UsageError with the fix for anything wrong. */
export function parseCli(args: string[]): CliOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: booleanValues(args, ["allow-privileged-scripts"]),
      allowPositionals: true,
      strict: true,
      options: {
        kubeconfig: { type: "string" },
        context: { type: "string" },
        namespace: { type: "string", multiple: true, short: "n" },
        interval: { type: "string", default: "15s" },
        once: { type: "boolean", default: false },
        "dry-run": { type: "boolean", default: false },
        concurrency: { type: "string", default: "8" },
        "log-format": { type: "string" },
        "log-level": { type: "string", default: "info" },
        "leader-elect": { type: "boolean", default: false },
        "leader-election-namespace": { type: "string" },
        "leader-election-id": { type: "string", default: "script-operator-leader" },
        "health-probe-bind-address": { type: "string", default: ":8081" },
        "metrics-bind-address": { type: "string", default: ":8080" },
        "allowed-image": { type: "string", multiple: true },
        "allowed-service-account": { type: "string", multiple: true },
        "allowed-secret": { type: "string", multiple: true },
        "max-cpu": { type: "string", default: "" },
        "max-memory": { type: "string", default: "" },
        "allow-privileged-scripts": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
        version: { type: "boolean", default: false },
      },
    });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}; see --help`);
  }
  const v = parsed.values;
  const [first, ...rest] = parsed.positionals;
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"; see --help`);
  let command: Command = "run";
  if (first !== undefined) {
    if (!["run", "scripts", "crd", "help", "version"].includes(first)) {
      throw new UsageError(`unknown command "${first}": use run, scripts or crd; see --help`);
    }
    command = first as Command;
  }
  if (v.help) command = "help";
  else if (v.version) command = "version";

  const intervalMs = parseDuration(v.interval!);
  if (intervalMs === undefined || intervalMs < 100) {
    throw new UsageError(
      `--interval "${v.interval}" is not a duration of at least 100ms; use e.g. 15s or 1m`,
    );
  }
  const concurrency = Number(v.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 100) {
    throw new UsageError(`--concurrency "${v.concurrency}" must be a whole number from 1 to 100`);
  }
  const logLevel = parseLevel(v["log-level"]!);
  if (!logLevel) {
    throw new UsageError(
      `--log-level "${v["log-level"]}" is not one of trace, debug, info, warning, error`,
    );
  }
  const logFormat = v["log-format"];
  if (logFormat !== undefined && logFormat !== "json" && logFormat !== "text") {
    throw new UsageError(`--log-format "${logFormat}" must be json or text`);
  }
  const namespaces = [...new Set(v.namespace ?? [])];
  for (const ns of namespaces) {
    if (!NAMESPACE.test(ns) || ns.length > 63) {
      throw new UsageError(
        `--namespace "${ns}" is not a valid namespace name (lowercase letters, digits and '-')`,
      );
    }
  }
  if (v.once && v["leader-elect"]) {
    throw new UsageError(
      "--once and --leader-elect cannot be combined: one cycle does not wait for a Lease; drop --leader-elect (and make sure no other replica writes) or drop --once",
    );
  }
  for (const flag of ["health-probe-bind-address", "metrics-bind-address"] as const) {
    if (parseBindAddress(v[flag]!) === null) {
      throw new UsageError(`--${flag} "${v[flag]}" must be HOST:PORT, :PORT or 0 to turn it off`);
    }
  }
  const policy: Policy = {
    allowedImages: v["allowed-image"]
      ? list(v["allowed-image"])
      : [...DEFAULT_POLICY.allowedImages],
    allowedServiceAccounts: list(v["allowed-service-account"] ?? []),
    allowedSecrets: list(v["allowed-secret"] ?? []),
    allowPrivileged: v["allow-privileged-scripts"]!,
    maxCpu: v["max-cpu"]!.trim(),
    maxMemory: v["max-memory"]!.trim(),
  };
  if (policy.allowedImages.length === 0) {
    throw new UsageError("--allowed-image is empty: name at least one image, e.g. busybox:1.36");
  }
  for (const image of policy.allowedImages) {
    const problem = imagePatternProblem(image);
    if (problem) {
      throw new UsageError(
        `--allowed-image "${image}" ${problem}; give an exact image or a prefix ending in '/*' or ':*' (e.g. registry.example/tools/*, busybox:*)`,
      );
    }
  }
  for (const k of ["cpu", "memory"] as const) {
    const max = k === "cpu" ? policy.maxCpu : policy.maxMemory;
    const least = DEFAULTS.resources.limits[k];
    if (max && !(quantityValue(max) >= quantityValue(least))) {
      throw new UsageError(
        `--max-${k} "${max}" must be a quantity of at least the default limit ${least} (e.g. ${
          k === "cpu" ? "2 or 1500m" : "4Gi or 1G"
        }), or empty for no maximum`,
      );
    }
  }
  for (const secret of policy.allowedSecrets) {
    if (!SERVICE_ACCOUNT.test(secret.endsWith("*") ? `${secret.slice(0, -1)}a` : secret)) {
      throw new UsageError(
        `--allowed-secret "${secret}" is not a Secret name (lowercase letters, digits, '-', '.') or such a prefix ending in '*'`,
      );
    }
  }
  for (const sa of policy.allowedServiceAccounts) {
    if (sa !== "*" && !SERVICE_ACCOUNT.test(sa)) {
      throw new UsageError(
        `--allowed-service-account "${sa}" is not a ServiceAccount name (lowercase letters, digits, '-', '.') or '*'`,
      );
    }
  }
  return {
    command,
    kubeconfig: v.kubeconfig,
    context: v.context,
    namespaces,
    intervalMs,
    once: v.once!,
    dryRun: v["dry-run"]!,
    logFormat,
    logLevel,
    concurrency,
    leaderElect: v["leader-elect"]!,
    leaderElectionNamespace: v["leader-election-namespace"],
    leaderElectionId: v["leader-election-id"]!,
    healthProbeBindAddress: v["health-probe-bind-address"]!,
    metricsBindAddress: v["metrics-bind-address"]!,
    policy,
  };
}

const SERVICE_ACCOUNT = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Repeated flag values, each possibly comma-separated, without blanks and duplicates. */
function list(values: string[]): string[] {
  return [...new Set(values.flatMap((v) => v.split(",")).map((v) => v.trim()).filter(Boolean))];
}

/**
 * `--flag=true` / `--flag=false` for boolean flags, so a Deployment can pass a value from a
 * ConfigMap (`--allow-privileged-scripts=$(ALLOW_PRIVILEGED_SCRIPTS)`).
 */
function booleanValues(args: string[], flags: string[]): string[] {
  return args.flatMap((arg) => {
    const m = /^--([-a-z]+)=(.*)$/.exec(arg);
    if (!m || !flags.includes(m[1])) return [arg];
    if (m[2] === "true") return [`--${m[1]}`];
    if (m[2] === "false") return [];
    throw new UsageError(`--${m[1]}="${m[2]}" must be true or false`);
  });
}

/** ":8081" → {hostname "0.0.0.0", port 8081}; "0" or "" → undefined (off); invalid → null. */
export function parseBindAddress(
  text: string,
): { hostname: string; port: number } | undefined | null {
  if (text === "0" || text === "") return undefined;
  const m = /^(.*):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[2]);
  if (port > 65535) return null;
  const host = m[1].replace(/^\[(.*)\]$/, "$1");
  return { hostname: host === "" ? "0.0.0.0" : host, port };
}
