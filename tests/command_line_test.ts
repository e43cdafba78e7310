/**
 * The command line as a user meets it: the operator runs as a process (`deno run` with the start
 * task's flags) and the test reads its exit code, its stderr and its first log lines. No cluster
 * is needed: everything here happens before the first request to the API server, so the
 * kubeconfig points at a port where nothing listens.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import { type OperatorProcess, startOperator } from "./harness/operator.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };

/** A kubeconfig whose server is a closed port (127.0.0.1:1); removed on dispose. */
async function closedPortKubeconfig(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "script-operator-cli-" });
  const path = `${dir}/kubeconfig`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "c", cluster: { server: "https://127.0.0.1:1" } }],
      users: [{ name: "u", user: { token: "t" } }],
      contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
      "current-context": "x",
    }),
  );
  return { path, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

/** Everything the process wrote that is not a JSON log line, once it exited. */
async function exitAndOutput(op: OperatorProcess): Promise<[number, string[]]> {
  return [await op.exited, op.otherOutput];
}

Deno.test({
  name: "a busy port is one line naming the port and its flag, exit 2, no stack trace",
  ...NO_SANITIZE,
  fn: async () => {
    await using kc = await closedPortKubeconfig();
    for (const flag of ["metrics-bind-address", "health-probe-bind-address"]) {
      // Taken first, as another program on a laptop would hold :8080 or :8081.
      using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (busy.addr as Deno.NetAddr).port;
      const op = await startOperator([`--${flag}=127.0.0.1:${port}`], { kubeconfig: kc.path });
      const [code, output] = await exitAndOutput(op);
      assertEquals(code, 2, `${flag}: ${output.join("\n")}`);
      assertEquals(output, [
        `script-operator: port ${port} is already in use (--${flag}=127.0.0.1:${port}): ` +
        `stop what listens there, or pick another port with --${flag}=:PORT (0 turns it off)`,
      ]);
      // Nothing else went wrong on the way out: no error or warning log line either.
      const loud = op.logs.filter((l) => l.level === "error" || l.level === "warning");
      assertEquals(loud, []);
    }
  },
});

Deno.test({
  name: "unknown flags and bad values are one clean line, exit 2",
  ...NO_SANITIZE,
  fn: async () => {
    const cases: [string[], string][] = [
      [["--foo"], "unknown flag --foo; see --help for the flags"],
      [
        ["--leader-elec=true"],
        "unknown flag --leader-elec (did you mean --leader-elect?); see --help for the flags",
      ],
      [
        ["--leader-elect", "true"],
        "--leader-elect true: a boolean flag takes its value after '=', as in --leader-elect=true",
      ],
      // A plain number is seconds: the interval is fine, the next flag is not.
      [["--interval", "90", "--nope"], "unknown flag --nope; see --help for the flags"],
      [
        ["--interval", "1m30"],
        '--interval "1m30" is not a duration: use a number and a unit (h, m, s, ms), e.g. 15s, 1m30s or 500ms',
      ],
      [
        ["--namespace", "a,,b"],
        '--namespace "a,,b" has an empty item: separate items with single commas, as in --namespace=a,b',
      ],
    ];
    for (const [args, message] of cases) {
      const op = await startOperator(args, { kubeconfig: null });
      const [code, output] = await exitAndOutput(op);
      assertEquals([code, output], [2, [`script-operator: ${message}`]], args.join(" "));
    }
  },
});

Deno.test({
  name: "--flag=true, comma lists, Go durations and --log-level warn reach the running operator",
  ...NO_SANITIZE,
  fn: async () => {
    await using kc = await closedPortKubeconfig();
    await using op = await startOperator([
      "--leader-elect=true",
      "--dry-run=false",
      "--namespace",
      "team-a,team-b",
      "-n=team-c",
      "--interval",
      "1m30s",
      "--platform-assigns-uid=true",
      "--allow-privileged-scripts=F",
    ], { kubeconfig: kc.path });
    const starting = await op.waitForLog((l) => l.msg === "Starting", "Starting");
    assertEquals(starting.namespaces, ["team-a", "team-b", "team-c"]);
    assertEquals([starting.intervalMs, starting.dryRun, starting.once], [90_000, false, false]);
    const policy = await op.waitForLog((l) => l.msg === "Policy in force", "the policy");
    assertEquals([policy.platformAssignsUid, policy.allowPrivilegedScripts], [true, false]);
    assertEquals(await op.stop(), 0);
    assertEquals(op.otherOutput, []);

    // At warn, info lines are gone and warnings stay ("warning" is the same level).
    for (const level of ["warn", "warning"]) {
      await using quiet = await startOperator([`--log-level=${level}`], { kubeconfig: kc.path });
      // The API server is unreachable: the start-up check logs an error and retries.
      await quiet.waitForLog((l) => l.level === "error", "the start-up check's error");
      assertEquals(quiet.logs.filter((l) => l.level === "info"), [], level);
      assertEquals(await quiet.stop(), 0);
    }
  },
});

Deno.test({
  name: "--help says how booleans, lists and durations are written, and names warn",
  ...NO_SANITIZE,
  fn: async () => {
    const op = await startOperator(["--leader-elect=true", "--help"], { kubeconfig: null });
    const [code, output] = await exitAndOutput(op);
    assertEquals(code, 0);
    const help = output.join("\n");
    for (
      const text of [
        "--flag=true or --flag=false",
        "comma-separated list",
        "500ms, 15s, 1m30s, 1h",
        "trace, debug, info, warn, error",
        "--platform-assigns-uid",
      ]
    ) {
      assert(help.includes(text), `--help lacks "${text}":\n${help}`);
    }
  },
});
