import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { type CliOptions, parseCli } from "./cli.ts";
import { closestFlag, parseBool, UsageError } from "./flags.ts";
import { HELP } from "./help.ts";

/** Asserts that parseCli(args) throws a UsageError whose message matches `pattern`. */
function refuses(args: string[], pattern: RegExp): void {
  throws(
    () => parseCli(args),
    (e: Error) => {
      if (!(e instanceof UsageError)) throw e;
      if (!pattern.test(e.message)) throw new Error(`${args.join(" ")}: ${e.message}`);
      return true;
    },
  );
}

Deno.test("parseCli() defaults: all namespaces, 15 s, info, probes on :8081 and metrics on :8080", () => {
  const o = parseCli([]);
  assertEquals(o.command, "run");
  assertEquals(o.namespaces, []);
  assertEquals(o.intervalMs, 15_000);
  assertEquals(o.logLevel, "info");
  assertEquals(o.healthProbeBindAddress, ":8081");
  assertEquals(o.metricsBindAddress, ":8080");
  assertEquals(o.once, false);
});

Deno.test("parseCli() reads repeated --namespace, --once, --dry-run and subcommands", () => {
  const o = parseCli([
    "--namespace",
    "a",
    "--namespace=b",
    "--once",
    "--dry-run",
    "--interval",
    "2m",
  ]);
  assertEquals([o.namespaces, o.once, o.dryRun, o.intervalMs], [["a", "b"], true, true, 120_000]);
  assertEquals(parseCli(["scripts"]).command, "scripts");
  assertEquals(parseCli(["--version"]).command, "version");
  assertEquals(parseCli(["-h"]).command, "help");
});

Deno.test("parseCli() rejects bad input with the fix in the message", () => {
  const cases: [string[], RegExp][] = [
    [["--interval", "soon"], /--interval "soon" is not a duration.*e\.g\. 15s, 1m30s or 500ms/],
    [["--namespace", "Bad_NS"], /not a valid namespace/],
    [["--log-level", "loud"], /--log-level "loud"/],
    [["--log-format", "xml"], /json or text/],
    [["--concurrency", "0"], /1 to 100/],
    [["frobnicate"], /unknown command "frobnicate"/],
    [["--nope"], /^unknown flag --nope; see --help for the flags$/],
    [["--metrics-bind-address", "8080"], /HOST:PORT/],
  ];
  for (const [args, pattern] of cases) {
    throws(() => parseCli(args), (e: Error) => e instanceof UsageError && pattern.test(e.message));
  }
});

Deno.test("parseCli(): --once --leader-elect is refused, not silently run without the election", () => {
  throws(
    () => parseCli(["--once", "--leader-elect"]),
    (e: Error) =>
      e instanceof UsageError &&
      e.message.includes("--once and --leader-elect cannot be combined"),
  );
  assertEquals(parseCli(["--leader-elect"]).leaderElect, true);
});

Deno.test("parseCli() policy: default image only, no ServiceAccount or Secret, nothing privileged", () => {
  assertEquals(parseCli([]).policy, {
    allowedImages: ["busybox:1.36"],
    allowedServiceAccounts: [],
    allowedSecrets: [],
    allowPrivileged: false,
    maxCpu: "",
    maxMemory: "",
  });
});

Deno.test("parseCli() policy flags: repeated or comma-separated, and =true/=false", () => {
  const o = parseCli([
    "--allowed-image=busybox:1.36,registry.example/tools/*",
    "--allowed-image",
    "alpine:3.20",
    "--allowed-service-account=runner, reader",
    "--allowed-service-account=",
    "--allowed-secret=creds,db-*",
    "--allowed-secret=api.token",
    "--allow-privileged-scripts",
    "--max-cpu=2",
    "--max-memory",
    "4Gi",
  ]);
  assertEquals(o.policy, {
    allowedImages: ["busybox:1.36", "registry.example/tools/*", "alpine:3.20"],
    allowedServiceAccounts: ["runner", "reader"],
    allowedSecrets: ["creds", "db-*", "api.token"],
    allowPrivileged: true,
    maxCpu: "2",
    maxMemory: "4Gi",
  });
  assertEquals(parseCli(["--allow-privileged-scripts=false"]).policy.allowPrivileged, false);
  assertEquals(parseCli(["--allow-privileged-scripts=true"]).policy.allowPrivileged, true);
  assertEquals(parseCli(["--allowed-service-account=*"]).policy.allowedServiceAccounts, ["*"]);
  for (const image of ["*", "busybox:*", "registry.example/tools/*", "busybox:1.36"]) {
    assertEquals(parseCli([`--allowed-image=${image}`]).policy.allowedImages, [image]);
  }
});

Deno.test("parseCli() rejects bad policy flags with the fix in the message", () => {
  const cases: [string[], RegExp][] = [
    [["--allowed-image="], /--allowed-image is empty/],
    [["--allowed-image=reg/*/x"], /has '\*' before its end/],
    // A prefix must end at a boundary: busybox* would match busybox.attacker.example/x.
    [["--allowed-image=busybox*"], /does not end in '\/\*' or ':\*'.*busybox\.attacker/],
    [["--allowed-image=registry.example/tools*"], /does not end in '\/\*' or ':\*'/],
    [["--allowed-image=a b"], /has blanks/],
    [["--allowed-secret=Bad_Secret"], /not a Secret name/],
    [["--allowed-secret=-*"], /not a Secret name/],
    [["--max-cpu=lots"], /--max-cpu "lots" must be a quantity of at least the default limit 100m/],
    [["--max-cpu=50m"], /at least the default limit 100m/],
    [["--max-memory=100M"], /--max-memory "100M" must be a quantity of at least .* 500M/],
    [["--allowed-service-account=Bad_SA"], /not a ServiceAccount name/],
    [["--allow-privileged-scripts=yes"], /must be true or false/],
  ];
  for (const [args, pattern] of cases) {
    throws(() => parseCli(args), (e: Error) => e instanceof UsageError && pattern.test(e.message));
  }
});

Deno.test("parseCli(): every boolean flag takes --flag, --flag=true|false and Go's ParseBool forms", () => {
  const booleans = {
    once: "once",
    "dry-run": "dryRun",
    "leader-elect": "leaderElect",
    help: "command",
    version: "command",
  } as const;
  for (const [flag, key] of Object.entries(booleans)) {
    const on = key === "command" ? flag : true;
    const off = key === "command" ? "run" : false;
    assertEquals(parseCli([`--${flag}`])[key], on, `--${flag}`);
    for (const t of ["true", "True", "TRUE", "t", "T", "1"]) {
      assertEquals(parseCli([`--${flag}=${t}`])[key], on, `--${flag}=${t}`);
    }
    for (const f of ["false", "False", "FALSE", "f", "F", "0"]) {
      assertEquals(parseCli([`--${flag}=${f}`])[key], off, `--${flag}=${f}`);
    }
  }
  const more: [string, (o: CliOptions) => boolean][] = [
    ["allow-privileged-scripts", (o) => o.policy.allowPrivileged],
    ["platform-assigns-uid", (o) => o.platformAssignsUid],
  ];
  for (const [flag, value] of more) {
    assertEquals(value(parseCli([])), false);
    assertEquals(value(parseCli([`--${flag}`])), true);
    assertEquals(value(parseCli([`--${flag}=true`])), true);
    assertEquals(value(parseCli([`--${flag}=0`])), false);
    // The last one wins, as in pflag: a Deployment's default can be overridden by a later arg.
    assertEquals(value(parseCli([`--${flag}`, `--${flag}=false`])), false);
  }
  // --leader-elect=true is the controller-runtime spelling; it combines with the rest.
  assertEquals(parseCli(["--leader-elect=true", "--interval=1m"]).leaderElect, true);
  assertEquals(parseCli(["--once", "--leader-elect=false"]).once, true);
  assertEquals(parseBool("yes"), undefined);
  assertEquals(parseBool(""), undefined);
});

Deno.test("parseCli(): a boolean given a bad value, or its value as the next argument, is refused with the fix", () => {
  refuses(
    ["--leader-elect=yes"],
    /^--leader-elect="yes" must be true or false.*--leader-elect=false/,
  );
  refuses(["--once=on"], /--once="on" must be true or false/);
  refuses(["--leader-elect", "true"], /takes its value after '=', as in --leader-elect=true/);
  refuses(["--dry-run", "false"], /as in --dry-run=false/);
});

Deno.test("parseCli(): --namespace takes comma lists like the policy flags; repeats add up", () => {
  assertEquals(parseCli(["--namespace", "a,b"]).namespaces, ["a", "b"]);
  assertEquals(parseCli(["--namespace=a,b"]).namespaces, ["a", "b"]);
  assertEquals(parseCli(["--namespace=a, b", "-n", "c", "-n=d", "-ne"]).namespaces, [
    "a",
    "b",
    "c",
    "d",
    "e",
  ]);
  assertEquals(parseCli(["--namespace=a,b", "--namespace=b,a"]).namespaces, ["a", "b"]);
  assertEquals(parseCli(["--allowed-secret=a", "--allowed-secret=b,c"]).policy.allowedSecrets, [
    "a",
    "b",
    "c",
  ]);
});

Deno.test("parseCli(): an empty item in a list is an error naming the flag and the value", () => {
  refuses(["--namespace", "a,,b"], /^--namespace "a,,b" has an empty item.*--namespace=a,b/);
  refuses(["--namespace=a,"], /--namespace "a," has an empty item/);
  refuses(["--allowed-image=busybox:1.36,"], /--allowed-image "busybox:1.36," has an empty item/);
  refuses(["--allowed-secret=,x"], /--allowed-secret ",x" has an empty item/);
  refuses(["--allowed-service-account=a, ,b"], /--allowed-service-account "a, ,b" has an empty/);
  // An empty namespace would silently widen the operator to every namespace.
  refuses(["--namespace="], /^--namespace is empty: .*leave the flag out to watch all namespaces/);
  // `--allowed-service-account=` alone means none (deploy/deployment.yaml writes it so).
  assertEquals(parseCli(["--allowed-service-account="]).policy.allowedServiceAccounts, []);
});

Deno.test("parseCli(): --interval takes Go durations from 100ms to 24h; a bad one says why with examples", () => {
  assertEquals(parseCli(["--interval", "1m30s"]).intervalMs, 90_000);
  assertEquals(parseCli(["--interval=1h2m3.5s"]).intervalMs, 3_723_500);
  assertEquals(parseCli(["--interval", "500ms"]).intervalMs, 500);
  assertEquals(parseCli(["--interval", "20"]).intervalMs, 20_000);
  refuses(["--interval=1m30"], /--interval "1m30" is not a duration: use a number and a unit/);
  refuses(["--interval=50ms"], /--interval "50ms" must be from 100ms to 24h, e\.g\. 15s/);
  refuses(["--interval=25h"], /must be from 100ms to 24h/);
});

Deno.test("parseCli(): unknown flags are one clean line with the nearest flag and --help", () => {
  const cases: [string[], string][] = [
    [["--foo"], "unknown flag --foo; see --help for the flags"],
    [["--foo=bar"], "unknown flag --foo; see --help for the flags"],
    [
      ["--namespaces=a"],
      "unknown flag --namespaces (did you mean --namespace?); see --help for the flags",
    ],
    [
      ["--leader-elec"],
      "unknown flag --leader-elec (did you mean --leader-elect?); see --help for the flags",
    ],
    [
      ["--metrics-addr=:8080"],
      "unknown flag --metrics-addr (did you mean --metrics-bind-address?); see --help for the flags",
    ],
    [
      ["--enable-leader-election"],
      "unknown flag --enable-leader-election (did you mean --leader-elect?); see --help for the flags",
    ],
    [["-x"], "unknown shorthand flag -x; see --help for the flags"],
    [["-v=2"], "unknown shorthand flag -v (did you mean --log-level?); see --help for the flags"],
    [["-once"], "unknown flag -once: long flags take two dashes, as in --once"],
    [["--interval"], "--interval needs a value, as in --interval=VALUE; see --help"],
    [["--namespace", "--once"], "--namespace needs a value, as in --namespace=VALUE; see --help"],
  ];
  for (const [args, message] of cases) {
    throws(() => parseCli(args), (e: Error) => {
      assertEquals([e instanceof UsageError, e.message], [true, message]);
      return true;
    });
  }
  assertEquals(closestFlag("dryrun"), "dry-run");
  assertEquals(closestFlag("completely-different"), undefined);
  // After `--` everything is an argument, not a flag.
  refuses(["--", "--once"], /unknown command "--once"/);
});

Deno.test("parseCli(): --log-level warn, and warning as a synonym; messages and --help say warn", () => {
  assertEquals(parseCli(["--log-level", "warn"]).logLevel, "warning");
  assertEquals(parseCli(["--log-level=warning"]).logLevel, "warning");
  assertEquals(parseCli(["--log-level=WARN"]).logLevel, "warning");
  refuses(
    ["--log-level=loud"],
    /^--log-level "loud" is not one of trace, debug, info, warn, error$/,
  );
  assert(HELP.includes("trace, debug, info, warn, error (default info)"));
});
