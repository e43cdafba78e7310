/**
 * Unit tests of the harness's waitFor: only "not yet" is retried, anything else fails at once.
 * @module
 */
import { AssertionError } from "node:assert";
import { assert, assertEquals } from "./harness/assert.ts";
import { KubectlError, NotYet, waitFor } from "./harness/test_env.ts";

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

Deno.test("waitFor: an assertion error inside fails at once, not after the timeout", async () => {
  let calls = 0;
  const started = performance.now();
  const error = await rejection(waitFor(() => {
    calls++;
    assertEquals(1, 2, "one is not two");
    return true;
  }, { what: "never", timeoutMs: 5_000, intervalMs: 10 }));
  assert(error instanceof AssertionError, String(error));
  assert(String((error as Error).message).includes("one is not two"), String(error));
  assertEquals(calls, 1);
  assert(performance.now() - started < 1_000, "waited for the timeout");
});

Deno.test("waitFor: any error not marked 'not yet' fails at once", async () => {
  let calls = 0;
  const error = await rejection(waitFor(() => {
    calls++;
    throw new TypeError("boom");
  }, { what: "never", timeoutMs: 5_000, intervalMs: 10 }));
  assert(error instanceof TypeError);
  assertEquals(calls, 1);
  const forbidden = new KubectlError(["get", "secrets"], {
    code: 1,
    stdout: "",
    stderr: 'Error from server (Forbidden): secrets is forbidden: User "x" cannot list',
  });
  assertEquals(forbidden.transient, false);
  assertEquals(
    await rejection(waitFor(() => {
      throw forbidden;
    }, { what: "never", timeoutMs: 5_000 })),
    forbidden,
  );
});

Deno.test("waitFor: false/undefined/null, NotYet and transient kubectl errors are retried", async () => {
  const notFound = new KubectlError(["get", "job", "x"], {
    code: 1,
    stdout: "",
    stderr: 'Error from server (NotFound): jobs.batch "x" not found',
  });
  assert(notFound.transient);
  const answers: unknown[] = [false, undefined, null, new NotYet("pending"), notFound, "done"];
  let i = 0;
  const value = await waitFor(() => {
    const a = answers[i++];
    if (a instanceof Error) throw a;
    return a as string | false | undefined | null;
  }, { what: "done", timeoutMs: 5_000, intervalMs: 1 });
  assertEquals([value, i], ["done", 6]);
});

Deno.test("waitFor: the timeout names what, the last value and the last 'not yet' reason", async () => {
  const error = await rejection(waitFor(() => {
    throw new NotYet("phase is Pending");
  }, { what: "the run to succeed", timeoutMs: 50, intervalMs: 10 }));
  const message = (error as Error).message;
  assert(message.includes("timed out after 0.05s waiting for the run to succeed"), message);
  assert(message.includes("phase is Pending"), message);
});
