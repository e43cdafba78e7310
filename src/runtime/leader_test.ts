/**
 * The leader elector against a recording fake of its LeaseClient and a fake monotonic clock: the
 * exact Lease calls of each case, and when isLeader() turns false.
 * @module
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { KubeError } from "../api/errors.ts";
import type { Lease, LeaseClient } from "../api/lease.ts";
import { type Clock, LeaderElector } from "./leader.ts";
import { logger } from "./log.ts";

const TIMINGS = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

/** A Lease store with resourceVersion checks, recording every call. */
class FakeLeases implements LeaseClient {
  lease?: Lease;
  calls: string[] = [];
  failNext: KubeError[] = [];
  #rv = 0;

  #fail(): void {
    const e = this.failNext.shift();
    if (e) throw e;
  }
  get(_namespace: string, _name: string): Promise<Lease | undefined> {
    this.calls.push("get");
    this.#fail();
    return Promise.resolve(this.lease && structuredClone(this.lease));
  }
  create(lease: Lease): Promise<void> {
    this.calls.push(`create holder=${lease.spec?.holderIdentity}`);
    this.#fail();
    if (this.lease) throw conflict();
    this.lease = { ...lease, metadata: { ...lease.metadata, resourceVersion: String(++this.#rv) } };
    return Promise.resolve();
  }
  replace(lease: Lease): Promise<void> {
    const s = lease.spec ?? {};
    this.calls.push(`replace holder=${s.holderIdentity} transitions=${s.leaseTransitions}`);
    this.#fail();
    if (lease.metadata.resourceVersion !== this.lease?.metadata.resourceVersion) throw conflict();
    this.lease = { ...lease, metadata: { ...lease.metadata, resourceVersion: String(++this.#rv) } };
    return Promise.resolve();
  }
  /** Another replica writes the Lease. */
  setHolder(holder: string): void {
    this.lease = {
      metadata: { name: "l", namespace: "ns", resourceVersion: String(++this.#rv) },
      spec: {
        holderIdentity: holder,
        leaseDurationSeconds: 15,
        renewTime: new Date().toISOString(),
        leaseTransitions: (this.lease?.spec?.leaseTransitions ?? 0) + 1,
      },
    };
  }
}

function conflict(): KubeError {
  return new KubeError("conflict", { code: 409, kind: "transient", action: "x" });
}

function unavailable(): KubeError {
  return new KubeError("cannot reach", { code: 0, kind: "transient", action: "x" });
}

/** Monotonic time moves only when told; the wall clock runs backwards to prove it is unused. */
class FakeClock implements Clock {
  t = 1_000;
  #wall = Date.UTC(2026, 0, 1);
  now(): number {
    return this.t;
  }
  wallNow(): Date {
    this.#wall -= 3_600_000;
    return new Date(this.#wall);
  }
}

function elector(leases: FakeLeases, clock: FakeClock, changes: boolean[] = []) {
  return new LeaderElector({
    leases,
    namespace: "ns",
    name: "l",
    identity: "me",
    log: logger("test"),
    timings: TIMINGS,
    clock,
    onChange: (leading) => changes.push(leading),
  });
}

Deno.test("LeaderElector: creates a missing Lease, then renews it with the same transitions", async () => {
  const leases = new FakeLeases();
  const clock = new FakeClock();
  const changes: boolean[] = [];
  const e = elector(leases, clock, changes);
  assertEquals(e.isLeader(), false);
  await e.tick();
  assertEquals(leases.calls, ["get", "create holder=me"]);
  assertEquals([e.isLeader(), changes], [true, [true]]);
  clock.t += 2_000;
  leases.calls = [];
  await e.tick();
  assertEquals(leases.calls, ["get", "replace holder=me transitions=0"]);
  assertEquals([e.isLeader(), changes], [true, [true]]);
});

Deno.test("LeaderElector: waits while another holder renews; takes over once it stopped for the lease duration", async () => {
  const leases = new FakeLeases();
  const clock = new FakeClock();
  leases.setHolder("other");
  const e = elector(leases, clock);
  await e.tick();
  clock.t += 2_000;
  await e.tick();
  assertEquals(leases.calls, ["get", "get"]);
  assertEquals(e.isLeader(), false);
  // The other renews (a new record): the lease duration counts from when we saw that change.
  clock.t += 10_000;
  leases.setHolder("other");
  await e.tick(); // observed at t, holder fresh
  clock.t += 14_999;
  await e.tick();
  assertEquals(e.isLeader(), false);
  assertEquals(leases.calls, ["get", "get", "get", "get"]);
  clock.t += 1;
  await e.tick();
  assertEquals(leases.calls.slice(4), ["get", "replace holder=me transitions=3"]);
  assertEquals(e.isLeader(), true);
});

Deno.test("LeaderElector: renew failures step down once the renew deadline passed since the last renewal started", async () => {
  const leases = new FakeLeases();
  const clock = new FakeClock();
  const changes: boolean[] = [];
  const e = elector(leases, clock, changes);
  await e.tick(); // renewed at t0
  const t0 = clock.t;
  for (const dt of [2_000, 4_000, 6_000, 8_000]) {
    clock.t = t0 + dt;
    leases.failNext.push(unavailable());
    await e.tick();
    assertEquals(e.isLeader(), true, `at +${dt} ms`);
  }
  clock.t = t0 + 9_999;
  assertEquals(e.isLeader(), true);
  // No tick needed: isLeader() itself turns false at the deadline.
  clock.t = t0 + 10_000;
  assertEquals(e.isLeader(), false);
  leases.failNext.push(unavailable());
  await e.tick();
  assertEquals(changes, [true, false]);
  assertEquals(leases.calls, ["get", "create holder=me", "get", "get", "get", "get", "get"]);
});

Deno.test("LeaderElector: after a freeze longer than the lease, isLeader() is false before any request, and it does not write over the new holder", async () => {
  const leases = new FakeLeases();
  const clock = new FakeClock();
  const changes: boolean[] = [];
  const e = elector(leases, clock, changes);
  await e.tick();
  assertEquals(e.isLeader(), true);
  // Frozen (SIGSTOP) for 20 s: another replica took over meanwhile.
  clock.t += 20_000;
  leases.setHolder("other");
  leases.calls = [];
  assertEquals(e.isLeader(), false);
  await e.tick();
  assertEquals(leases.calls, ["get"]);
  assertEquals([e.isLeader(), changes], [false, [true, false]]);
});

Deno.test("LeaderElector: a renewal that started before a freeze does not count as fresh after it", async () => {
  const leases = new FakeLeases();
  const clock = new FakeClock();
  const e = elector(leases, clock);
  await e.tick();
  // The GET is answered only after the process was frozen for 12 s.
  const slow: LeaseClient = {
    get: async (ns, name) => {
      const lease = await leases.get(ns, name);
      clock.t += 12_000;
      return lease;
    },
    create: (l) => leases.create(l),
    replace: (l) => leases.replace(l),
  };
  const e2 = new LeaderElector({
    leases: slow,
    namespace: "ns",
    name: "l",
    identity: "me",
    log: logger("test"),
    timings: TIMINGS,
    clock,
  });
  await e2.tick();
  // The write succeeded, but it was decided 12 s ago: past the renew deadline, not leading.
  assertEquals(e2.isLeader(), false);
  assertEquals(e.isLeader(), false);
});

Deno.test("LeaderElector: stop() releases a held Lease (empty holder, 1 s)", async () => {
  const leases = new FakeLeases();
  const clock = new FakeClock();
  const e = elector(leases, clock);
  await e.tick();
  leases.calls = [];
  await e.stop();
  assertEquals(leases.calls, ["get", "replace holder= transitions=0"]);
  assertEquals(leases.lease?.spec?.leaseDurationSeconds, 1);
  assertEquals(e.isLeader(), false);
});

Deno.test("LeaderElector: stop() sends no release when the process was frozen past the deadline while reading the Lease", async () => {
  const leases = new FakeLeases();
  const clock = new FakeClock();
  const e = elector(leases, clock);
  await e.tick();
  const get = leases.get.bind(leases);
  // The release's GET is answered only after a 12 s freeze: the Lease may have a new holder soon.
  leases.get = async (ns, name) => {
    const lease = await get(ns, name);
    clock.t += 12_000;
    return lease;
  };
  leases.calls = [];
  await e.stop();
  assertEquals(leases.calls, ["get"]);
  assertEquals(e.isLeader(), false);
});

Deno.test("LeaderElector: leadership() reads the monotonic clock at each call, with the deadline it compares against", async () => {
  const leases = new FakeLeases();
  const clock = new FakeClock();
  const e = elector(leases, clock);
  await e.tick();
  assertEquals(e.leadership(), {
    leading: true,
    nowMs: 1_000,
    renewedAtMs: 1_000,
    deadlineMs: 11_000,
  });
  // No tick, no timer: the clock alone ends leadership.
  clock.t = 11_000;
  assertEquals(e.leadership(), {
    leading: false,
    nowMs: 11_000,
    renewedAtMs: 1_000,
    deadlineMs: 11_000,
  });
});
