/**
 * `deno task compile`: builds the operator into one executable with `deno compile`, the scripts
 * embedded (`--include scripts`) and the permission flags of deploy/permissions.ts baked in.
 *
 * ```sh
 * deno task compile                                   # dist/script-operator (this machine)
 * deno task compile --target aarch64-apple-darwin     # dist/script-operator-aarch64-apple-darwin
 * deno task compile --in-cluster --target x86_64-unknown-linux-gnu   # the image's binary
 * ```
 *
 * `deno compile` appends the program to Deno's `denort` runtime, which it downloads from
 * dl.deno.land (or takes from `$DENORT_BIN`). When that download is impossible this prints one
 * line saying so and exits with {@linkcode EXIT_CODES}.noDenort (3), so callers can tell "cannot
 * compile here" from a failed build (1).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { IN_CLUSTER_FLAGS, LAPTOP_FLAGS, V8_FLAGS } from "./permissions.ts";

/** Targets `deno compile --target` accepts that the operator is released for. */
export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
] as const;

/** A release target. */
export type Target = typeof TARGETS[number];

/** Exit codes of this script. */
export const EXIT_CODES = { ok: 0, failed: 1, usage: 2, noDenort: 3 } as const;

/** The one line printed when `deno compile` cannot get its runtime. */
export const NO_DENORT_MESSAGE =
  "deno compile needs Deno's denort runtime, downloaded from dl.deno.land (unreachable here); set DENORT_BIN to a denort binary for this Deno version or run where that download works";

/** Project root (the folder holding deno.json and main.ts). */
export const ROOT: string = new URL("..", import.meta.url).pathname;

/** What to build. */
export interface CompileOptions {
  /** Cross-compile for this target (default: the machine's own). */
  target?: Target;
  /** Build the image's binary: the narrow in-cluster permissions instead of the laptop ones. */
  inCluster?: boolean;
  /** Output path, relative to the project root (default: {@linkcode defaultOutput}). */
  output?: string;
}

/**
 * `dist/script-operator`, plus `-in-cluster` for the image's binary and `-<target>` when
 * cross-compiling, so the flavours and targets never overwrite each other.
 */
export function defaultOutput(options: Pick<CompileOptions, "target" | "inCluster">): string {
  return `dist/script-operator${options.inCluster ? "-in-cluster" : ""}${
    options.target ? `-${options.target}` : ""
  }`;
}

/** The `deno` arguments that build `options`, run from the project root. Pure. */
export function compileArgs(options: CompileOptions = {}): string[] {
  return [
    "compile",
    // Build exactly what deno.lock pins; a stale lockfile is an error, not a silent update.
    "--frozen-lockfile",
    ...(options.inCluster ? IN_CLUSTER_FLAGS : LAPTOP_FLAGS),
    ...V8_FLAGS,
    "--include",
    "scripts",
    ...(options.target ? ["--target", options.target] : []),
    "--output",
    options.output ?? defaultOutput(options),
    "main.ts",
  ];
}

/**
 * Whether `deno compile` failed because it could not download its denort runtime (and
 * `DENORT_BIN` was not set). Pure: looks at the error text only.
 */
export function isDenortUnavailable(stderr: string, denortBin: string | undefined): boolean {
  if (denortBin) return false;
  // deno_cli reports "Setting up base binary." with the failed download of denort-<target>.zip.
  return /Setting up base binary/.test(stderr) && /denort|dl\.deno\.land/.test(stderr);
}

/** Result of {@linkcode compile}. */
export interface CompileResult {
  /** One of {@linkcode EXIT_CODES}. */
  code: number;
  /** The binary's path (absolute), when built. */
  output: string;
  /** What `deno compile` printed (stdout then stderr), colours removed. */
  log: string;
}

/** Runs `deno compile` for `options` in the project root. */
export async function compile(options: CompileOptions = {}): Promise<CompileResult> {
  const output = options.output ?? defaultOutput(options);
  const out = await new Deno.Command(Deno.execPath(), {
    args: compileArgs({ ...options, output }),
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  const stderr = decoder.decode(out.stderr);
  const log = decoder.decode(out.stdout) + stderr;
  const absolute = output.startsWith("/") ? output : `${ROOT}${output}`;
  if (out.success) return { code: EXIT_CODES.ok, output: absolute, log };
  if (isDenortUnavailable(stderr, Deno.env.get("DENORT_BIN"))) {
    return { code: EXIT_CODES.noDenort, output: absolute, log };
  }
  return { code: EXIT_CODES.failed, output: absolute, log };
}

const USAGE = `Usage: deno task compile [--target TARGET] [--in-cluster] [--output PATH]

  --target TARGET  one of ${TARGETS.join(", ")}
  --in-cluster     the container image's binary: in-cluster credentials only, no subprocesses
  --output PATH    default ${defaultOutput({})}[-in-cluster][-TARGET]

Exit codes: 0 built, 1 deno compile failed, 2 usage error, 3 denort runtime unavailable.`;

/** Parses `args`, compiles, prints the outcome; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        target: { type: "string" },
        "in-cluster": { type: "boolean", default: false },
        output: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (error) {
    console.error(`compile: ${(error as Error).message}\n${USAGE}`);
    return EXIT_CODES.usage;
  }
  if (values.help) {
    console.log(USAGE);
    return EXIT_CODES.ok;
  }
  const target = values.target;
  if (target !== undefined && !(TARGETS as readonly string[]).includes(target)) {
    console.error(`compile: unknown --target "${target}"; use one of ${TARGETS.join(", ")}`);
    return EXIT_CODES.usage;
  }
  const inCluster = values["in-cluster"]!;
  if (inCluster && target !== undefined && !target.endsWith("-linux-gnu")) {
    console.error(`compile: --in-cluster builds the Linux image's binary; use a linux target`);
    return EXIT_CODES.usage;
  }
  const options: CompileOptions = {
    target: target as Target | undefined,
    inCluster,
    output: values.output,
  };
  const result = await compile(options);
  if (result.code === EXIT_CODES.noDenort) {
    console.error(NO_DENORT_MESSAGE);
  } else if (result.code !== EXIT_CODES.ok) {
    console.error(result.log.trimEnd());
    console.error(`compile: deno ${compileArgs(options).join(" ")} failed`);
  } else {
    console.log(result.log.trimEnd());
    const size = (await Deno.stat(result.output)).size;
    console.log(`built ${result.output} (${(size / 1024 / 1024).toFixed(1)} MiB)`);
  }
  return result.code;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
