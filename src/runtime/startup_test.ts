import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { KubeError } from "../api/errors.ts";
import { explainStartError, timeoutsFromEnv } from "./startup.ts";
import { EXIT } from "./shutdown.ts";
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
