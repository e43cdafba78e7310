/**
 * What the command line means: the subcommand and the options each flag sets, every value checked
 * so that a bad one stops the operator before it starts, with the fix in the message. The flags'
 * syntax is read by src/runtime/flags.ts. Pure: returns options or a UsageError.
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import { DEFAULTS, quantityValue } from "../desired/desired.ts";
import { type LogFormat, parseLevel } from "./log.ts";
import { DEFAULT_POLICY, imagePatternProblem, type Policy } from "../desired/policy.ts";
import {
  type FlagName,
  Flags,
  parseBindAddress,
  parseDuration,
  readFlags,
  UsageError,
} from "./flags.ts";

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
