import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { ApiException } from "@kubernetes/client-node";
import { classify } from "./errors.ts";

function api(code: number, body: unknown, headers: Record<string, string> = {}) {
  return new ApiException(code, "message", JSON.stringify(body), headers);
}

Deno.test("classify() sorts API errors into what the reconciler does with them", () => {
  assertEquals(
    classify(api(409, { reason: "AlreadyExists", message: "x exists" }), "create").kind,
    "alreadyExists",
  );
  assertEquals(classify(api(409, { reason: "Conflict" }), "patch").kind, "transient");
  assertEquals(classify(api(404, {}), "delete").kind, "notFound");
  assertEquals(classify(api(422, { reason: "Invalid" }), "create").kind, "invalid");
  assertEquals(classify(api(500, {}), "list").kind, "transient");
  const forbidden = classify(
    api(403, {
      reason: "Forbidden",
      message: 'jobs is forbidden: User "u" cannot list resource "jobs"',
    }),
    "list jobs in all namespaces",
  );
  assertEquals(forbidden.kind, "forbidden");
  assert(forbidden.message.includes('cannot list resource "jobs"'), forbidden.message);
});

Deno.test("classify() honours Retry-After on 429", () => {
  const e = classify(api(429, { reason: "TooManyRequests" }, { "retry-after": "7" }), "list");
  assertEquals([e.kind, e.retryAfterSeconds], ["transient", 7]);
});

Deno.test("classify() calls a missing response unreachable", () => {
  const e = classify(
    new TypeError("fetch failed", { cause: { code: "ECONNREFUSED" } }),
    "list scriptruns",
  );
  assertEquals([e.kind, e.code], ["transient", 0]);
  assert(
    e.message.includes("cannot reach the API server") && e.message.includes("ECONNREFUSED"),
    e.message,
  );
});
