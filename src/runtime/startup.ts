/**
 * What the operator checks before it starts work: the client timeouts the environment may set,
 * and one LIST of ScriptRuns that proves credentials, reachability, the CRD and RBAC at once. A
 * failure becomes one line saying what is wrong and how to fix it, with the exit code it deserves,
 * rather than a stream of errors from every reconcile.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { CliOptions } from "./cli.ts";
import { parseDuration, UsageError } from "./flags.ts";
import { EXIT, sleep } from "./shutdown.ts";
import { KubeError } from "../api/errors.ts";
import type { ClientOptions } from "../api/client.ts";
import type { ClientNodeKube } from "../api/kube.ts";
import { GROUP, PLURAL } from "../types.ts";

/**
 * Request and connect timeouts from the environment (`SCRIPT_OPERATOR_REQUEST_TIMEOUT`,
 * `SCRIPT_OPERATOR_CONNECT_TIMEOUT`, durations such as `5s`), for tests that must not wait
 * 30 s; unset, the defaults of src/api/client.ts apply. A bad value is a UsageError.
 */
export function timeoutsFromEnv(env: (name: string) => string | undefined): ClientOptions {
  const out: ClientOptions = {};
  for (
    const [name, key] of [
      ["SCRIPT_OPERATOR_REQUEST_TIMEOUT", "requestMs"],
      ["SCRIPT_OPERATOR_CONNECT_TIMEOUT", "connectMs"],
    ] as const
  ) {
    const text = env(name);
    if (text === undefined || text === "") continue;
    const ms = parseDuration(text);
    if (ms === undefined || ms < 100) {
      throw new UsageError(`${name}="${text}" is not a duration of at least 100ms, e.g. 5s`);
    }
    out[key] = ms;
  }
  return out;
}

/** A start-up check that failed, with the exit code it deserves. */
interface Preflight {
  ok: boolean;
  exitCode?: number;
  message?: string;
}

/** Turns the first LIST's error into one line saying what is wrong and how to fix it. Pure. */
export function explainStartError(error: KubeError, server: string): Preflight {
  if (error.kind === "notFound") {
    return {
      ok: false,
      exitCode: EXIT.usage,
      message:
        `the ScriptRun CRD (${PLURAL}.${GROUP}) is not installed in ${server}: run 'kubectl apply -f deploy/crd.yaml' (or 'script-operator crd | kubectl apply -f -')`,
    };
  }
  if (error.kind === "forbidden") {
    return {
      ok: false,
      exitCode: EXIT.usage,
      message:
        `permission denied: ${error.message}. Grant it with deploy/rbac.yaml (kubectl apply -f deploy/rbac.yaml) or use an identity that has it`,
    };
  }
  if (error.code === 0) {
    return {
      ok: false,
      exitCode: EXIT.runtime,
      message:
        `API server ${server} unreachable: ${error.message}. Check the kubeconfig's server and your network`,
    };
  }
  return { ok: false, exitCode: EXIT.runtime, message: error.message };
}

/**
 * Runs the start-up check until it passes: with --once, a failure ends the run with its exit code;
 * otherwise it is logged and retried (doubling from 2 s, capped at the interval). Returns the exit
 * code to end with, or undefined to go on; EXIT.ok when `signal` aborts while waiting.
 */
export async function awaitStartCheck(
  kube: ClientNodeKube,
  cli: Pick<CliOptions, "namespaces" | "once" | "intervalMs">,
  server: string,
  log: Logger,
  signal: AbortSignal,
): Promise<number | undefined> {
  for (let attempt = 1;; attempt++) {
    const check = await preflight(kube, cli.namespaces[0], server);
    if (check.ok) return undefined;
    if (cli.once) {
      // The message holds server text: pass it as a value, never as a log template.
      log.error("{error}", { error: check.message });
      return check.exitCode!;
    }
    const wait = Math.min(cli.intervalMs, 1000 * 2 ** Math.min(attempt, 5));
    log.error("{error}", { error: check.message, retryInMs: wait });
    if (await sleep(wait, signal)) return EXIT.ok;
  }
}

async function preflight(
  kube: ClientNodeKube,
  namespace: string | undefined,
  server: string,
): Promise<Preflight> {
  try {
    await kube.listScriptRuns(namespace);
    return { ok: true };
  } catch (error) {
    if (error instanceof KubeError) return explainStartError(error, server);
    return { ok: false, exitCode: EXIT.runtime, message: String(error) };
  }
}
