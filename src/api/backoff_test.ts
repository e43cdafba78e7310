import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Backoff, mapLimit } from "./backoff.ts";

Deno.test("Backoff doubles with jitter, caps, honours Retry-After and clears on success", () => {
  const b = new Backoff({ baseMs: 1000, maxMs: 4000 }, () => 0.5); // jitter factor 1.0
  assertEquals(b.failure("a", 0), 1000);
  assert(!b.ready("a", 999));
  assert(b.ready("a", 1000));
  assertEquals(b.failure("a", 0), 2000);
  assertEquals(b.failure("a", 0), 4000);
  assertEquals(b.failure("a", 0), 4000);
  assertEquals(b.failure("b", 0, { retryAfterMs: 30_000 }), 30_000);
  b.success("a");
  assert(b.ready("a", 0));
  assert(b.ready("c", 0));
});

Deno.test("Backoff jitter spreads delays between 0.5x and 1.5x", () => {
  assertEquals(new Backoff({ baseMs: 1000, maxMs: 9000 }, () => 0).failure("k", 0), 500);
  assertEquals(new Backoff({ baseMs: 1000, maxMs: 9000 }, () => 0.999).failure("k", 0), 1499);
});

Deno.test("Backoff.untilChanged waits for a new generation", () => {
  const b = new Backoff();
  b.untilChanged("k", 3);
  assert(!b.ready("k", Number.MAX_SAFE_INTEGER, 3));
  assert(b.ready("k", 0, 4));
});

Deno.test("mapLimit() never runs more than the limit at once", async () => {
  let inFlight = 0;
  let most = 0;
  const done: number[] = [];
  await mapLimit([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
    inFlight++;
    most = Math.max(most, inFlight);
    await new Promise((r) => setTimeout(r, 5));
    done.push(n);
    inFlight--;
  });
  assertEquals(most, 3);
  assertEquals(done.sort(), [1, 2, 3, 4, 5, 6, 7]);
});
