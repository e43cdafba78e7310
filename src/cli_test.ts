import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { parseBindAddress, parseCli, parseDuration, UsageError } from "./cli.ts";

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
    [["--interval", "soon"], /--interval "soon".*15s/],
    [["--namespace", "Bad_NS"], /not a valid namespace/],
    [["--log-level", "loud"], /--log-level "loud"/],
    [["--log-format", "xml"], /json or text/],
    [["--concurrency", "0"], /1 to 100/],
    [["frobnicate"], /unknown command "frobnicate"/],
    [["--nope"], /see --help/],
    [["--metrics-bind-address", "8080"], /HOST:PORT/],
  ];
  for (const [args, pattern] of cases) {
    throws(() => parseCli(args), (e: Error) => e instanceof UsageError && pattern.test(e.message));
  }
});

Deno.test("parseDuration() and parseBindAddress()", () => {
  assertEquals(parseDuration("500ms"), 500);
  assertEquals(parseDuration("1.5s"), 1500);
  assertEquals(parseDuration("10"), 10_000);
  assertEquals(parseDuration("1h"), 3_600_000);
  assertEquals(parseDuration("x"), undefined);
  assertEquals(parseBindAddress(":8081"), { hostname: "0.0.0.0", port: 8081 });
  assertEquals(parseBindAddress("127.0.0.1:9"), { hostname: "127.0.0.1", port: 9 });
  assertEquals(parseBindAddress("0"), undefined);
  assertEquals(parseBindAddress("nope"), null);
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
