/**
 * A real operator process for the benchmark, started exactly as `deno task start` starts it
 * (every flag of the start task in deno.json, so permission or V8 flags added there are
 * measured too), observed from outside: /proc for memory and CPU, its `/metrics` for requests,
 * its `/readyz` for readiness.
 * @module
 */
import { freePorts, withParentDeathSignal } from "../tests/harness/control_plane.ts";
import { startTaskRunFlags } from "../tests/harness/operator.ts";
import { scrapeRequests } from "../tests/harness/request_metrics.ts";
import { type Memory, parseProcStatTicks, parseProcStatus, type RequestCounts } from "./stats.ts";

const ROOT = new URL("../", import.meta.url).pathname;

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

/** A running operator process. */
export class OperatorProcess {
  /** Process id of the operator itself (`setpriv` and `sh` exec into it). */
  readonly pid: number;
  /** File receiving its stderr and stdout (JSON logs). */
  readonly logPath: string;
  /** The `deno` command line, for the record. */
  readonly commandLine: string[];
  #child: Deno.ChildProcess;
  #metricsPort: number;
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
    this.#metricsPort = ports[1];
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
      ...(await startTaskRunFlags(root)),
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
  requests(): Promise<RequestCounts> {
    return scrapeRequests(this.#metricsPort);
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
