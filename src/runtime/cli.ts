/**
 * Command line parsing, with the conventions of Go's pflag that controller-runtime operators use:
 * `--flag value` or `--flag=value`, booleans as `--flag` or `--flag=false`, lists repeated or
 * comma-separated, Go durations (`1m30s`). Pure: returns options or a UsageError.
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import { DEFAULTS, quantityValue } from "../desired/desired.ts";
import { type LogFormat, parseLevel } from "./log.ts";
import {
  DEFAULT_POLICY,
  imagePatternProblem,
  OPERATOR_SERVICE_ACCOUNT,
  type Policy,
} from "../desired/policy.ts";
import { OPERATOR_VERSION } from "../version.ts";

/** A command line the operator cannot act on; exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Subcommands. */
export type Command = "run" | "scripts" | "crd" | "help" | "version";

const COMMANDS: readonly Command[] = ["run", "scripts", "crd", "help", "version"];

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
  /** Job pods name no UID or GID: the platform assigns them (OpenShift's restricted-v2). */
  platformAssignsUid: boolean;
}

/** --help text. */
export const HELP =
  `script-operator ${OPERATOR_VERSION}: runs scripts embedded in this binary as Kubernetes Jobs,
one per ScriptRun resource (scriptruns.script-operator.dev).

Usage:
  script-operator [run] [flags]   reconcile ScriptRuns until stopped (or once with --once)
  script-operator scripts         list the embedded scripts with size and SHA-256
  script-operator crd             print the ScriptRun CRD as YAML (pipe to kubectl apply -f -)

Flags take a value as --flag VALUE or --flag=VALUE. Boolean flags are on with --flag and take
--flag=true or --flag=false. A flag marked "list" may be repeated, or take a comma-separated list.
A DURATION is a number with a unit, as in Go: 500ms, 15s, 1m30s, 1h.

Flags:
  --kubeconfig PATH            kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)
  --context NAME               kubeconfig context to use (default: its current-context)
  -n, --namespace NS           list: watch only these namespaces (default: all namespaces)
  --interval DURATION          time between reconcile cycles, 100ms to 24h (default 15s)
  --once                       run one reconcile cycle and exit (1 if it failed)
  --dry-run                    log what would be written, write nothing
  --concurrency N              ScriptRuns reconciled at once (default 8)
  --log-format json|text       default: text on a terminal, json otherwise
  --log-level LEVEL            trace, debug, info, warn, error (default info)
  --leader-elect               hold a Lease so only one replica writes (default off)
  --leader-election-namespace NS
                               namespace of the Lease (default: in-cluster namespace or default)
  --leader-election-id NAME    name of the Lease (default script-operator-leader)
  --health-probe-bind-address ADDR
                               address of /healthz and /readyz (default :8081; 0 = off)
  --metrics-bind-address ADDR  address of /metrics (default :8080; 0 = off)
  --platform-assigns-uid       Job pods name no runAsUser or runAsGroup: the platform assigns
                               them (OpenShift restricted-v2); they stay runAsNonRoot, without
                               capabilities or privilege escalation, RuntimeDefault seccomp
                               (default off: UID and GID 65532)

Policy (what a ScriptRun may ask for; refused runs fail with reason PolicyViolation):
  --allowed-image PATTERN      list: image a ScriptRun may use: exact, or a prefix ending in
                               '/*' or ':*' ('*' alone: any) (default: busybox:1.36 only)
  --allowed-service-account SA list: ServiceAccount a ScriptRun may set ('*': any but
                               ${OPERATOR_SERVICE_ACCOUNT}, which must be named) (default: none)
  --allowed-secret NAME        list: Secret whose keys env valueFrom.secretKeyRef may name:
                               exact, or a prefix ending in '*' (default: none)
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

type FlagKind = "boolean" | "string" | "list";

/** Every flag: its kind, and its value when not given. */
const FLAGS = {
  kubeconfig: { kind: "string" },
  context: { kind: "string" },
  namespace: { kind: "list" },
  interval: { kind: "string", default: "15s" },
  once: { kind: "boolean" },
  "dry-run": { kind: "boolean" },
  concurrency: { kind: "string", default: "8" },
  "log-format": { kind: "string" },
  "log-level": { kind: "string", default: "info" },
  "leader-elect": { kind: "boolean" },
  "leader-election-namespace": { kind: "string" },
  "leader-election-id": { kind: "string", default: "script-operator-leader" },
  "health-probe-bind-address": { kind: "string", default: ":8081" },
  "metrics-bind-address": { kind: "string", default: ":8080" },
  "allowed-image": { kind: "list" },
  "allowed-service-account": { kind: "list" },
  "allowed-secret": { kind: "list" },
  "max-cpu": { kind: "string", default: "" },
  "max-memory": { kind: "string", default: "" },
  "allow-privileged-scripts": { kind: "boolean" },
  "platform-assigns-uid": { kind: "boolean" },
  help: { kind: "boolean" },
  version: { kind: "boolean" },
} satisfies Record<string, { kind: FlagKind; default?: string }>;

type FlagName = keyof typeof FLAGS;

/** Names of every flag, without the leading `--`. */
export const FLAG_NAMES: readonly string[] = Object.keys(FLAGS);

const SHORT: Record<string, FlagName> = { n: "namespace", h: "help" };

/** Flags of other operators and tools, with the one of ours that does the same (hints only). */
const SIMILAR: Record<string, FlagName> = {
  "metrics-addr": "metrics-bind-address",
  "health-addr": "health-probe-bind-address",
  "enable-leader-election": "leader-elect",
  "zap-log-level": "log-level",
  v: "log-level",
  namespaces: "namespace",
  "watch-namespace": "namespace",
};

/**
 * Parses a boolean as Go's strconv.ParseBool does: 1, t, T, TRUE, true, True, 0, f, F, FALSE,
 * false, False; undefined otherwise.
 */
export function parseBool(text: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(text)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(text)) return false;
  return undefined;
}

const DURATION_PART = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a Go duration ("500ms", "1m30s", "1h2m3.5s") or a plain number of seconds ("10") into
 * whole milliseconds; undefined when it is neither.
 */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (/^(\d+\.?\d*|\.\d+)$/.test(t)) return Math.round(Number(t) * 1000);
  if (t === "") return undefined;
  let ms = 0;
  for (let at = 0; at < t.length; at = DURATION_PART.lastIndex) {
    DURATION_PART.lastIndex = at;
    const m = DURATION_PART.exec(t);
    if (!m) return undefined;
    ms += Number(m[1]) * UNIT_MS[m[2]];
  }
  return Math.round(ms);
}

/** The flags as given: booleans as "true"/"false", every value of a repeated flag in order. */
interface GivenFlags {
  values: Map<FlagName, string[]>;
  positionals: string[];
}

/** Splits the arguments into flags and positionals; unknown flags and missing values throw. */
function readFlags(args: string[]): GivenFlags {
  const values = new Map<FlagName, string[]>();
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const m = /^(--?)([^=]*)(?:=(.*))?$/s.exec(arg)!;
    const dashes = m[1];
    let [key, inline]: [string, string | undefined] = [m[2], m[3]];
    if (dashes === "-" && key.length > 1 && inline === undefined && attachedValue(key)) {
      // `-nteam-a`, as pflag reads it: a shorthand with its value attached.
      [key, inline] = [key[0], key.slice(1)];
    }
    const name = flagName(dashes, key);
    let value = inline;
    if (FLAGS[name].kind === "boolean") {
      if (inline === undefined && parseBool(args[i + 1] ?? "") !== undefined) {
        throw new UsageError(
          `${arg} ${args[i + 1]}: a boolean flag takes its value after '=', as in --${name}=${
            args[i + 1]
          }`,
        );
      }
      value = booleanValue(name, inline);
    } else if (value === undefined) {
      value = args[++i];
      if (value === undefined || value.startsWith("--")) {
        throw new UsageError(`${arg} needs a value, as in --${name}=VALUE; see --help`);
      }
    }
    values.set(name, [...values.get(name) ?? [], value]);
  }
  return { values, positionals };
}

/** `-nteam-a` is `-n team-a`; `-namespace` is a long flag with one dash too few. */
function attachedValue(key: string): boolean {
  return Object.hasOwn(SHORT, key[0]) && FLAGS[SHORT[key[0]]].kind !== "boolean" &&
    !Object.hasOwn(FLAGS, key);
}

function flagName(dashes: string, key: string): FlagName {
  if (dashes === "--" && Object.hasOwn(FLAGS, key)) return key as FlagName;
  if (dashes === "-" && Object.hasOwn(SHORT, key)) return SHORT[key];
  if (dashes === "-" && key.length > 1 && Object.hasOwn(FLAGS, key)) {
    throw new UsageError(`unknown flag -${key}: long flags take two dashes, as in --${key}`);
  }
  const known = closestFlag(key);
  const hint = known ? ` (did you mean --${known}?)` : "";
  const what = dashes === "-" ? "shorthand flag" : "flag";
  throw new UsageError(`unknown ${what} ${dashes}${key}${hint}; see --help for the flags`);
}

function booleanValue(name: FlagName, inline: string | undefined): string {
  if (inline === undefined) return "true";
  const b = parseBool(inline);
  if (b === undefined) {
    throw new UsageError(
      `--${name}="${inline}" must be true or false (or 1, 0, t, f): --${name}=true, --${name}=false, or --${name} alone for true`,
    );
  }
  return String(b);
}

/** The known flag nearest to a mistyped one (at most 2 edits, or a known alias), if any. */
export function closestFlag(name: string): string | undefined {
  if (Object.hasOwn(SIMILAR, name)) return SIMILAR[name];
  let best: string | undefined;
  let bestDistance = 3;
  for (const known of FLAG_NAMES) {
    const d = editDistance(name, known);
    if (d < bestDistance) [best, bestDistance] = [known, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length];
}

/** Typed access to the given flags, with defaults. */
class Flags {
  constructor(readonly given: GivenFlags) {}
  has(name: FlagName): boolean {
    return this.given.values.has(name);
  }
  string(name: FlagName): string | undefined {
    const v = this.given.values.get(name);
    // As in pflag, the last of a repeated single-valued flag wins.
    return v ? v[v.length - 1] : (FLAGS[name] as { default?: string }).default;
  }
  boolean(name: FlagName): boolean {
    return this.string(name) === "true";
  }
  /** A list flag's items, repeated or comma-separated; `--flag=` alone means none. */
  list(name: FlagName): string[] {
    const items: string[] = [];
    for (const value of this.given.values.get(name) ?? []) {
      if (value.trim() === "") continue;
      for (const item of value.split(",")) {
        if (item.trim() === "") {
          throw new UsageError(
            `--${name} "${value}" has an empty item: separate items with single commas, as in --${name}=a,b`,
          );
        }
        items.push(item.trim());
      }
    }
    return [...new Set(items)];
  }
}

/** Parses the operator's arguments. Throws UsageError with the fix for anything wrong. */
export function parseCli(args: string[]): CliOptions {
  const flags = new Flags(readFlags(args));
  const command = commandOf(flags);
  if (flags.boolean("once") && flags.boolean("leader-elect")) {
    throw new UsageError(
      "--once and --leader-elect cannot be combined: one cycle does not wait for a Lease; drop --leader-elect (and make sure no other replica writes) or drop --once",
    );
  }
  const bind = (name: FlagName) => {
    const text = flags.string(name)!;
    if (parseBindAddress(text) === null) {
      throw new UsageError(`--${name} "${text}" must be HOST:PORT, :PORT or 0 to turn it off`);
    }
    return text;
  };
  return {
    command,
    kubeconfig: flags.string("kubeconfig"),
    context: flags.string("context"),
    namespaces: namespacesOf(flags),
    intervalMs: intervalOf(flags.string("interval")!),
    once: flags.boolean("once"),
    dryRun: flags.boolean("dry-run"),
    logFormat: logFormatOf(flags.string("log-format")),
    logLevel: logLevelOf(flags.string("log-level")!),
    concurrency: concurrencyOf(flags.string("concurrency")!),
    leaderElect: flags.boolean("leader-elect"),
    leaderElectionNamespace: flags.string("leader-election-namespace"),
    leaderElectionId: flags.string("leader-election-id")!,
    healthProbeBindAddress: bind("health-probe-bind-address"),
    metricsBindAddress: bind("metrics-bind-address"),
    policy: policyOf(flags),
    platformAssignsUid: flags.boolean("platform-assigns-uid"),
  };
}

function commandOf(flags: Flags): Command {
  const [first, ...rest] = flags.given.positionals;
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"; see --help`);
  if (first !== undefined && !COMMANDS.includes(first as Command)) {
    throw new UsageError(`unknown command "${first}": use run, scripts or crd; see --help`);
  }
  if (flags.boolean("help")) return "help";
  if (flags.boolean("version")) return "version";
  return (first ?? "run") as Command;
}

const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function namespacesOf(flags: Flags): string[] {
  const namespaces = flags.list("namespace");
  if (flags.has("namespace") && namespaces.length === 0) {
    throw new UsageError(
      "--namespace is empty: name a namespace (e.g. --namespace=default), or leave the flag out to watch all namespaces",
    );
  }
  for (const ns of namespaces) {
    if (!NAMESPACE.test(ns) || ns.length > 63) {
      throw new UsageError(
        `--namespace "${ns}" is not a valid namespace name (lowercase letters, digits and '-')`,
      );
    }
  }
  return namespaces;
}

/** setTimeout fires at once for delays above 2^31-1 ms (24.8 days); a day is plenty. */
const MAX_INTERVAL_MS = 24 * 3_600_000;

function intervalOf(text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) {
    throw new UsageError(
      `--interval "${text}" is not a duration: use a number and a unit (h, m, s, ms), e.g. 15s, 1m30s or 500ms`,
    );
  }
  if (ms < 100 || ms > MAX_INTERVAL_MS) {
    throw new UsageError(`--interval "${text}" must be from 100ms to 24h, e.g. 15s or 1m30s`);
  }
  return ms;
}

function concurrencyOf(text: string): number {
  const concurrency = Number(text);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 100) {
    throw new UsageError(`--concurrency "${text}" must be a whole number from 1 to 100`);
  }
  return concurrency;
}

function logLevelOf(text: string): LogLevel {
  const level = parseLevel(text);
  if (!level) {
    throw new UsageError(`--log-level "${text}" is not one of trace, debug, info, warn, error`);
  }
  return level;
}

function logFormatOf(text: string | undefined): LogFormat | undefined {
  if (text !== undefined && text !== "json" && text !== "text") {
    throw new UsageError(`--log-format "${text}" must be json or text`);
  }
  return text;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function policyOf(flags: Flags): Policy {
  const policy: Policy = {
    allowedImages: flags.has("allowed-image")
      ? flags.list("allowed-image")
      : [...DEFAULT_POLICY.allowedImages],
    allowedServiceAccounts: flags.list("allowed-service-account"),
    allowedSecrets: flags.list("allowed-secret"),
    allowPrivileged: flags.boolean("allow-privileged-scripts"),
    maxCpu: flags.string("max-cpu")!.trim(),
    maxMemory: flags.string("max-memory")!.trim(),
  };
  checkImages(policy.allowedImages);
  checkMaxima(policy);
  for (const secret of policy.allowedSecrets) {
    if (!DNS_SUBDOMAIN.test(secret.endsWith("*") ? `${secret.slice(0, -1)}a` : secret)) {
      throw new UsageError(
        `--allowed-secret "${secret}" is not a Secret name (lowercase letters, digits, '-', '.') or such a prefix ending in '*'`,
      );
    }
  }
  for (const sa of policy.allowedServiceAccounts) {
    if (sa !== "*" && !DNS_SUBDOMAIN.test(sa)) {
      throw new UsageError(
        `--allowed-service-account "${sa}" is not a ServiceAccount name (lowercase letters, digits, '-', '.') or '*'`,
      );
    }
  }
  return policy;
}

function checkImages(images: string[]): void {
  if (images.length === 0) {
    throw new UsageError("--allowed-image is empty: name at least one image, e.g. busybox:1.36");
  }
  for (const image of images) {
    const problem = imagePatternProblem(image);
    if (problem) {
      throw new UsageError(
        `--allowed-image "${image}" ${problem}; give an exact image or a prefix ending in '/*' or ':*' (e.g. registry.example/tools/*, busybox:*)`,
      );
    }
  }
}

function checkMaxima(policy: Policy): void {
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
