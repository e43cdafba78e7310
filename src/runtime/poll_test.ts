import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { KubeError } from "../api/errors.ts";
import { Backoff } from "../api/backoff.ts";
import { nextCycleDelay } from "./poll.ts";

const err = (code: number, kind: KubeError["kind"], message = "m") =>
  new KubeError(message, { code, kind, action: "list scriptruns in all namespaces" });

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
