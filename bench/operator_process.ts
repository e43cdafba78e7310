/**
 * A real operator process for the benchmark, started exactly as `deno task start` starts it
 * (every flag of the start task in deno.json, so permission or V8 flags added there are
 * measured too), observed from outside: /proc for memory and CPU, its `/metrics` for requests,
 * its `/readyz` for readiness.
 * @module
 */
import { withParentDeathSignal } from "../tests/harness/control_plane.ts";
import {
  type Memory,
  parseProcStatTicks,
  parseProcStatus,
  parsePrometheus,
  type RequestCounts,
  requestsByMethod,
} from "./stats.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/**
 * The `deno run` flags of deno.json's start task in the checkout `root` (default: this one):
 * every word between `run` and `main.ts`.
 */
export async function startTaskFlags(root: string = ROOT): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${root}deno.json`));
  const words: string[] = String(config.tasks?.start ?? "").trim().split(/\s+/);
  const run = words.indexOf("run");
  const main = words.findIndex((w) => /(^|\/)main\.ts$/.test(w));
  if (words[0] !== "deno" || run < 0 || main < run) {
    throw new Error(`deno.json tasks.start is not "deno run <flags> main.ts": ${words.join(" ")}`);
  }
  return words.slice(run + 1, main);
}

let clockTicks: number | undefined;
/** Clock ticks per second (`getconf CLK_TCK`; 100 if getconf is missing). */
export async function clockTicksPerSecond(): Promise<number> {
  if (clockTicks === undefined) {
    try {
      const out = await new Deno.Command("getconf", { args: ["CLK_TCK"], stdin: "null" }).output();
      clockTicks = Number(new TextDecoder().decode(out.stdout).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** `n` distinct free loopback ports (bind to port 0, then release). */
function freePorts(n: number): number[] {
  const listeners = Array.from(
    { length: n },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

/** A running operator process. */
export class OperatorProcess {
  /** Process id of the operator itself (`setpriv` and `sh` exec into it). */
  readonly pid: number;
  /** File receiving its stderr and stdout (JSON logs). */
  readonly logPath: string;
  /** The `deno` command line, for the record. */
  readonly commandLine: string[];
  #child: Deno.ChildProcess;
  #metricsUrl: string;
  #readyUrl: string;
  #status: Deno.CommandStatus | undefined;
  #exited: Promise<Deno.CommandStatus>;

  private constructor(
    child: Deno.ChildProcess,
    logPath: string,
    commandLine: string[],
    ports: number[],
  ) {
    this.#child = child;
    this.pid = child.pid;
    this.logPath = logPath;
    this.commandLine = commandLine;
    this.#readyUrl = `http://127.0.0.1:${ports[0]}/readyz`;
    this.#metricsUrl = `http://127.0.0.1:${ports[1]}/metrics`;
    this.#exited = child.status.then((s) => (this.#status = s));
  }

  /**
   * Starts `<root>main.ts` (`root` ends with `/`) with the start task's flags against `kubeconfig`, all namespaces, default
   * interval and concurrency, JSON logs to `logPath`, probes and metrics on free loopback ports.
   */
  static async start(
    kubeconfig: string,
    logPath: string,
    root: string = ROOT,
    extraFlags: string[] = [],
    extraArgs: string[] = [],
  ): Promise<OperatorProcess> {
    const ports = freePorts(2);
    const commandLine = [
      Deno.execPath(),
      "run",
      ...(await startTaskFlags(root)),
      ...extraFlags,
      `${root}main.ts`,
      `--kubeconfig=${kubeconfig}`,
      "--log-format=json",
      `--health-probe-bind-address=127.0.0.1:${ports[0]}`,
      `--metrics-bind-address=127.0.0.1:${ports[1]}`,
      ...extraArgs,
    ];
    // The shell sends both streams to the log file; `exec` keeps the pid; setpriv kills the
    // operator if the bench dies.
    const [cmd, args] = withParentDeathSignal("sh", [
      "-c",
      'exec "$0" "$@" >>"$BENCH_LOG_FILE" 2>&1',
      ...commandLine,
    ]);
    const child = new Deno.Command(cmd, {
      args,
      cwd: root,
      env: { BENCH_LOG_FILE: logPath },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    return new OperatorProcess(child, logPath, commandLine, ports);
  }

  /** The exit status once it exited, else undefined. */
  get exitStatus(): Deno.CommandStatus | undefined {
    return this.#status;
  }

  /** Throws (with the log's tail) if the process has exited. */
  async assertAlive(): Promise<void> {
    if (this.#status) {
      throw new Error(
        `operator exited with code ${this.#status.code}${
          this.#status.signal ? ` (signal ${this.#status.signal})` : ""
        }; last lines of ${this.logPath}:\n${await this.logTail()}`,
      );
    }
  }

  /** The last `n` lines of its log. */
  async logTail(n = 20): Promise<string> {
    const text = await Deno.readTextFile(this.logPath).catch(() => "");
    return text.trimEnd().split("\n").slice(-n).join("\n");
  }

  /** Waits until `/readyz` answers 200 (a cycle could list), or throws after `timeoutMs`. */
  async waitReady(timeoutMs = 60_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (true) {
      await this.assertAlive();
      try {
        const res = await fetch(this.#readyUrl, { signal: AbortSignal.timeout(2000) });
        await res.body?.cancel();
        if (res.status === 200) return;
      } catch { /* not listening yet */ }
      if (performance.now() > deadline) {
        throw new Error(
          `operator not ready after ${timeoutMs} ms; last lines of ${this.logPath}:\n${await this
            .logTail()}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** VmRSS and VmHWM now. */
  memory(): Memory {
    return parseProcStatus(Deno.readTextFileSync(`/proc/${this.pid}/status`));
  }

  /** User plus system CPU seconds used so far (all threads). */
  async cpuSeconds(): Promise<number> {
    const ticks = parseProcStatTicks(Deno.readTextFileSync(`/proc/${this.pid}/stat`));
    return ticks / (await clockTicksPerSecond());
  }

  /** `rest_client_requests_total` by method, scraped from its `/metrics`. */
  async requests(): Promise<RequestCounts> {
    const res = await fetch(this.#metricsUrl, { signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    if (!res.ok) throw new Error(`GET ${this.#metricsUrl}: ${res.status} ${text.slice(0, 200)}`);
    return requestsByMethod(parsePrometheus(text));
  }

  /**
   * The poll interval the operator announced in its `Starting` log line (`intervalMs`), or
   * undefined if no such line is found.
   */
  async intervalMs(): Promise<number | undefined> {
    const text = await Deno.readTextFile(this.logPath).catch(() => "");
    for (const line of text.split("\n")) {
      if (!line.includes('"Starting"')) continue;
      try {
        const parsed = JSON.parse(line);
        if (typeof parsed.intervalMs === "number") return parsed.intervalMs;
      } catch { /* not JSON */ }
    }
    return undefined;
  }

  /** SIGTERM, then SIGKILL after 15 s; resolves when it has exited. */
  async stop(): Promise<void> {
    if (this.#status) return;
    try {
      this.#child.kill("SIGTERM");
    } catch { /* already exited */ }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* already exited */ }
    }, 15_000);
    await this.#exited;
    clearTimeout(timer);
  }
}
