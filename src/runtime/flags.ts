/**
 * The flags the operator takes and how a command line is read into them, with the conventions of
 * Go's pflag that controller-runtime operators use: `--flag value` or `--flag=value`, booleans as
 * `--flag` or `--flag=false`, lists repeated or comma-separated, Go durations (`1m30s`), bind
 * addresses (`:8080`), and a hint for a mistyped flag. Only the syntax lives here, so that what each
 * flag means (src/runtime/cli.ts) reads apart from how it is written. Pure.
 * @module
 */

/** A command line the operator cannot act on; exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

type FlagKind = "boolean" | "string" | "list";

/** Every flag: its kind, and its value when not given. */
export const FLAGS = {
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

/** The name of a flag the operator takes, without the leading `--`. */
export type FlagName = keyof typeof FLAGS;

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
export interface GivenFlags {
  values: Map<FlagName, string[]>;
  positionals: string[];
}

/** Splits the arguments into flags and positionals; unknown flags and missing values throw. */
export function readFlags(args: string[]): GivenFlags {
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
export class Flags {
  /** `given`: what readFlags read from the arguments. */
  constructor(readonly given: GivenFlags) {}
  /** Whether the flag was given at all (even as `--flag=`). */
  has(name: FlagName): boolean {
    return this.given.values.has(name);
  }
  /** A single-valued flag's value, or its default when not given. */
  string(name: FlagName): string | undefined {
    const v = this.given.values.get(name);
    // As in pflag, the last of a repeated single-valued flag wins.
    return v ? v[v.length - 1] : (FLAGS[name] as { default?: string }).default;
  }
  /** A boolean flag's value, false when not given. */
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
