import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { type QueueTimers, WorkQueue } from "./queue.ts";

/** Fake clock: timers fire only in `advance()`, in due order. */
class FakeTimers implements QueueTimers {
  #now = 0;
  #next = 1;
  #timers = new Map<number, { at: number; fn: () => void }>();
  now(): number {
    return this.#now;
  }
  setTimeout(fn: () => void, ms: number): number {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }
  get pending(): number {
    return this.#timers.size;
  }
  /** Moves the clock forward, firing due timers in order and letting promises settle. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    while (true) {
      await settle();
      const due = [...this.#timers.entries()].filter(([, t]) => t.at <= end)
        .sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.#now = due[1].at;
      due[1].fn();
    }
    this.#now = end;
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

/** A processor whose runs end only when the test says so. */
function gatedProcessor() {
  const started: string[] = [];
  const gates = new Map<string, () => void>();
  let running = 0;
  let maxRunning = 0;
  const process = (key: string) => {
    started.push(key);
    running++;
    maxRunning = Math.max(maxRunning, running);
    return new Promise<void>((resolve) => {
      gates.set(key, () => {
        gates.delete(key);
        running--;
        resolve();
      });
    });
  };
  return {
    process,
    started,
    finish: (key: string) => gates.get(key)!(),
    get maxRunning() {
      return maxRunning;
    },
  };
}

Deno.test("WorkQueue.add() waits the debounce delay and coalesces repeated adds into one run", async () => {
  const timers = new FakeTimers();
  const runs: string[] = [];
  const q = new WorkQueue((k) => {
    runs.push(k);
    return Promise.resolve();
  }, { timers, debounceMs: 100 });
  q.add("ns/a");
  await timers.advance(50);
  q.add("ns/a");
  q.add("ns/b");
  await timers.advance(49);
  assertEquals(runs, []);
  await timers.advance(1);
  assertEquals(runs, ["ns/a"]);
  await timers.advance(50);
  assertEquals(runs, ["ns/a", "ns/b"]);
  await q.idle();
  assertEquals(q.size, 0);
});

Deno.test("WorkQueue runs a key added during its run once more after, never twice at once", async () => {
  const timers = new FakeTimers();
  const p = gatedProcessor();
  const q = new WorkQueue(p.process, { timers, debounceMs: 100 });
  q.add("k");
  await timers.advance(100);
  assertEquals(p.started, ["k"]);
  q.add("k");
  q.add("k");
  await timers.advance(500);
  assertEquals(p.started, ["k"], "not started again while running");
  assert(q.has("k"));
  p.finish("k");
  await timers.advance(0);
  assertEquals(p.started, ["k", "k"], "runs once more after");
  p.finish("k");
  await timers.advance(1000);
  assertEquals(p.started, ["k", "k"]);
  await q.idle();
});

Deno.test("WorkQueue never runs more than `concurrency` keys at once and runs the rest in order", async () => {
  const timers = new FakeTimers();
  const p = gatedProcessor();
  const q = new WorkQueue(p.process, { timers, concurrency: 2, debounceMs: 10 });
  for (const k of ["a", "b", "c", "d"]) q.add(k);
  await timers.advance(10);
  assertEquals(p.started, ["a", "b"]);
  p.finish("b");
  await timers.advance(0);
  assertEquals(p.started, ["a", "b", "c"]);
  p.finish("a");
  p.finish("c");
  await timers.advance(0);
  assertEquals(p.started, ["a", "b", "c", "d"]);
  p.finish("d");
  await q.idle();
  assertEquals(p.maxRunning, 2);
});

Deno.test("WorkQueue.addAfter() holds a key until its not-before time; add() brings it forward", async () => {
  const timers = new FakeTimers();
  const runs: string[] = [];
  const q = new WorkQueue((k) => {
    runs.push(`${k}@${timers.now()}`);
    return Promise.resolve();
  }, { timers, debounceMs: 100 });
  q.addAfter("x", 5000);
  q.addAfter("x", 8000); // later: ignored, the earlier time stands
  await timers.advance(4999);
  assertEquals(runs, []);
  await timers.advance(1);
  assertEquals(runs, ["x@5000"]);
  q.addAfter("y", 5000);
  q.add("y");
  await timers.advance(100);
  assertEquals(runs, ["x@5000", "y@5100"]);
  await timers.advance(10_000);
  assertEquals(runs, ["x@5000", "y@5100"], "the cancelled backoff timer does not run it again");
  assertEquals(timers.pending, 0);
});

Deno.test("WorkQueue reports a failed run to onError and keeps going", async () => {
  const timers = new FakeTimers();
  const errors: string[] = [];
  const runs: string[] = [];
  const q = new WorkQueue((k) => {
    runs.push(k);
    if (k === "bad") throw new Error("boom");
    return Promise.resolve();
  }, { timers, debounceMs: 0, onError: (k, e) => errors.push(`${k}: ${(e as Error).message}`) });
  q.add("bad");
  q.add("good");
  await timers.advance(0);
  await q.idle();
  assertEquals(runs, ["bad", "good"]);
  assertEquals(errors, ["bad: boom"]);
  q.add("bad");
  await timers.advance(0);
  await q.idle();
  assertEquals(runs, ["bad", "good", "bad"]);
});

Deno.test("WorkQueue.close() drops waiting keys, waits for runs in progress, ignores later adds", async () => {
  const timers = new FakeTimers();
  const p = gatedProcessor();
  const q = new WorkQueue(p.process, { timers, concurrency: 1, debounceMs: 10 });
  q.add("a");
  q.add("b");
  q.addAfter("c", 1000);
  await timers.advance(10);
  assertEquals(p.started, ["a"]);
  let closed = false;
  const closing = q.close().then(() => closed = true);
  await timers.advance(0);
  assert(!closed, "waits for the run in progress");
  p.finish("a");
  await closing;
  assertEquals(timers.pending, 0, "no timer left behind");
  q.add("d");
  await timers.advance(5000);
  assertEquals(p.started, ["a"]);
  assertEquals(q.size, 0);
});

Deno.test("WorkQueue with real timers runs an added key within about the debounce delay", async () => {
  const runs: number[] = [];
  const t0 = performance.now();
  const q = new WorkQueue(() => {
    runs.push(performance.now() - t0);
    return Promise.resolve();
  }, { debounceMs: 20 });
  q.add("a");
  q.add("a");
  await new Promise((r) => setTimeout(r, 30));
  await q.idle();
  assertEquals(runs.length, 1);
  assert(runs[0] >= 19, `ran after ${runs[0]} ms`);
  await q.close();
});

Deno.test("WorkQueue: keys of a periodic pass (low) wait behind changes; a change lifts a low key", async () => {
  const timers = new FakeTimers();
  const p = gatedProcessor();
  const q = new WorkQueue(p.process, { timers, debounceMs: 100, concurrency: 1 });
  for (const k of ["a", "b", "c", "d"]) q.add(k, { low: true });
  await timers.advance(100);
  assertEquals(p.started, ["a"]);
  // Changes to x and to c (already ready, low) arrive while a runs.
  q.add("x");
  q.add("c");
  q.add("d", { low: true }); // a second low add changes nothing
  await timers.advance(100);
  p.finish("a");
  await timers.advance(0);
  assertEquals(p.started, ["a", "x"]);
  p.finish("x");
  await timers.advance(0);
  assertEquals(p.started, ["a", "x", "c"]);
  p.finish("c");
  await timers.advance(0);
  p.finish("b");
  await timers.advance(0);
  p.finish("d");
  await q.idle();
  assertEquals(p.started, ["a", "x", "c", "b", "d"]);
  // A low add of a key already waiting as a change keeps it a change.
  q.add("w");
  await timers.advance(100);
  q.add("z", { low: true });
  q.add("y");
  q.add("y", { low: true });
  await timers.advance(100);
  p.finish("w");
  await timers.advance(0);
  assertEquals(p.started.slice(5), ["w", "y"]);
  p.finish("y");
  await timers.advance(0);
  assertEquals(p.started.slice(5), ["w", "y", "z"]);
  p.finish("z");
  await q.idle();
});

Deno.test("WorkQueue reports its depth and how long each key waited for a worker", async () => {
  const timers = new FakeTimers();
  const p = gatedProcessor();
  const waited: number[] = [];
  const q = new WorkQueue(p.process, {
    timers,
    concurrency: 1,
    debounceMs: 10,
    onStart: (ms) => waited.push(ms),
  });
  q.add("a");
  q.add("b");
  assertEquals(q.depth, 0, "waiting out the debounce is not depth");
  await timers.advance(10);
  assertEquals(p.started, ["a"]);
  assertEquals(q.depth, 1, "b is due and has no worker");
  await timers.advance(250);
  p.finish("a");
  await timers.advance(0);
  assertEquals(p.started, ["a", "b"]);
  assertEquals(q.depth, 0);
  assertEquals(waited, [0, 250], "b waited 250 ms for a's worker");
  p.finish("b");
  await q.idle();
});

Deno.test("WorkQueue: urgent keys start before changes and periodic keys; urgency lifts a ready or active key", async () => {
  const timers = new FakeTimers();
  const p = gatedProcessor();
  const q = new WorkQueue(p.process, { timers, concurrency: 1, debounceMs: 10 });
  q.add("a");
  await timers.advance(10);
  assertEquals(p.started, ["a"]);
  for (const k of ["b", "c", "d"]) q.add(k);
  q.add("low", { low: true });
  await timers.advance(10);
  q.add("u", { urgent: true });
  q.add("d", { urgent: true }); // ready as a change: lifted
  q.add("a", { urgent: true }); // running: runs again, urgently
  q.add("u", { low: true }); // a lower add never demotes
  await timers.advance(10);
  assertEquals(q.depth, 6);
  for (const k of ["a", "u", "d", "a", "b", "c"]) {
    p.finish(k);
    await timers.advance(0);
  }
  assertEquals(p.started, ["a", "u", "d", "a", "b", "c", "low"]);
  p.finish("low");
  await q.idle();
});

Deno.test("WorkQueue counts an add once per key that becomes due, not per add() call", async () => {
  const timers = new FakeTimers();
  const p = gatedProcessor();
  let adds = 0;
  const q = new WorkQueue(p.process, {
    timers,
    concurrency: 1,
    debounceMs: 10,
    onAdd: () => adds++,
  });
  q.add("a");
  q.add("a"); // coalesced by the debounce
  await timers.advance(10);
  assertEquals(adds, 1);
  q.add("a"); // while a runs: due once more after it
  q.add("a");
  await timers.advance(10);
  assertEquals(adds, 2);
  q.add("b");
  await timers.advance(10);
  assertEquals(adds, 3);
  p.finish("a");
  await timers.advance(0);
  p.finish("b");
  await timers.advance(0);
  p.finish("a");
  await q.idle();
  assertEquals(adds, 3);
});
