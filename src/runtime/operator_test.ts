import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { KubeError } from "../api/errors.ts";
import { Backoff } from "../api/backoff.ts";
import {
  EXIT,
  explainBindError,
  explainStartError,
  nextCycleDelay,
  timeoutsFromEnv,
} from "./operator.ts";
import { UsageError } from "./flags.ts";

const err = (code: number, kind: KubeError["kind"], message = "m") =>
  new KubeError(message, { code, kind, action: "list scriptruns in all namespaces" });

Deno.test("explainStartError(): a missing CRD says how to install it, exit 2", () => {
  const p = explainStartError(err(404, "notFound"), "https://k:6443");
  assertEquals(p.exitCode, EXIT.usage);
  assert(p.message!.includes("kubectl apply -f deploy/crd.yaml"), String(p.message));
  assert(p.message!.includes("scriptruns.script-operator.dev"), String(p.message));
});

Deno.test("explainStartError(): RBAC denial keeps the server's verb and resource, exit 2", () => {
  const p = explainStartError(
    err(403, "forbidden", 'User "u" cannot list resource "scriptruns"'),
    "https://k:6443",
  );
  assertEquals(p.exitCode, EXIT.usage);
  assert(p.message!.includes('cannot list resource "scriptruns"'), String(p.message));
  assert(p.message!.includes("deploy/rbac.yaml"), String(p.message));
});

Deno.test("explainStartError(): an unreachable server is a runtime error naming it, exit 1", () => {
  const p = explainStartError(err(0, "transient", "ECONNREFUSED"), "https://k:6443");
  assertEquals(p.exitCode, EXIT.runtime);
  assert(p.message!.includes("https://k:6443 unreachable"), String(p.message));
});

Deno.test("nextCycleDelay(): list failures back off (doubling, jittered) and honour Retry-After", () => {
  const backoff = new Backoff({ baseMs: 1_000, maxMs: 60_000 }, () => 0.5);
  const failed = { scopeErrors: [err(0, "transient")], unreachable: true };
  const delays = [0, 1, 2, 3].map(() => nextCycleDelay(failed, backoff, 2_000, 0));
  assertEquals(delays, [1_000, 2_000, 4_000, 8_000]);
  const throttled = new KubeError("slow down", {
    code: 429,
    kind: "transient",
    action: "list",
    retryAfterSeconds: 30,
  });
  assertEquals(
    nextCycleDelay({ scopeErrors: [throttled], unreachable: false }, backoff, 2_000, 0),
    30_000,
  );
  // A cycle that could list resets the backoff and waits the interval.
  assertEquals(nextCycleDelay({ scopeErrors: [], unreachable: false }, backoff, 2_000, 0), 2_000);
  assertEquals(nextCycleDelay(failed, backoff, 2_000, 0), 1_000);
});

Deno.test("timeoutsFromEnv(): request and connect timeouts as durations; a bad one is a usage error", () => {
  const env = (values: Record<string, string>) => (name: string) => values[name];
  assertEquals(timeoutsFromEnv(env({})), {});
  assertEquals(
    timeoutsFromEnv(env({
      SCRIPT_OPERATOR_REQUEST_TIMEOUT: "10s",
      SCRIPT_OPERATOR_CONNECT_TIMEOUT: "500ms",
    })),
    { requestMs: 10_000, connectMs: 500 },
  );
  let error: unknown;
  try {
    timeoutsFromEnv(env({ SCRIPT_OPERATOR_CONNECT_TIMEOUT: "soon" }));
  } catch (e) {
    error = e;
  }
  assert(error instanceof UsageError && error.message.includes("SCRIPT_OPERATOR_CONNECT_TIMEOUT"));
});

Deno.test("explainBindError(): a busy port is one line naming the port and the flag that sets it", () => {
  const address = { hostname: "0.0.0.0", port: 8080, flag: "metrics-bind-address", text: ":8080" };
  const e = explainBindError(new Deno.errors.AddrInUse("Address already in use"), address);
  assert(e instanceof UsageError);
  assertEquals(
    e.message,
    "port 8080 is already in use (--metrics-bind-address=:8080): stop what listens there, or pick another port with --metrics-bind-address=:PORT (0 turns it off)",
  );
  const other = explainBindError(
    new Deno.errors.AddrNotAvailable("Cannot assign requested address (os error 99)"),
    { hostname: "10.9.9.9", port: 8081, flag: "health-probe-bind-address", text: "10.9.9.9:8081" },
  );
  assertEquals(
    other.message,
    "cannot listen on 10.9.9.9:8081 (--health-probe-bind-address=10.9.9.9:8081): Cannot assign requested address (os error 99); use :PORT for every address of this machine, or 0 to turn it off",
  );
  for (const m of [e.message, other.message]) assert(!m.includes("\n"), m);
});
