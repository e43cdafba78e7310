/**
 * The real-node suite: what only a node that really runs containers can show. Each test runs the
 * operator (as a process, from a copy of the repository whose scripts/ also holds the fixture
 * tests/real_node/scripts/probe.sh) for its own namespace, and reads the script's own output with
 * `kubectl logs`, its exit code and termination message from the status, and its cgroup from the
 * host. `deno task test` runs this folder on a control plane with a real node (containerd +
 * kubelet); where none can run, these tests are reported skipped.
 * @module
 */
import { assert, assertEquals } from "../harness/assert.ts";
import { installCrd } from "../harness/operator.ts";
import { REAL_NODE_NAME } from "../harness/real_node.ts";
import { uniqueNamespace, waitFor } from "../harness/test_env.ts";
import { DEFAULTS } from "../../src/desired/desired.ts";
import {
  applyRun,
  getRun,
  jobPods,
  nodeCgroupRoot,
  nodeIp,
  operatorTree,
  realNodeTest,
  runLogs,
  waitFinished,
} from "./helpers.ts";

realNodeTest(
  "real node: the script runs as 65532:65532 from /scripts (mode 0555, read-only), root fs read-only",
  {},
  async () => {
    await installCrd();
    await using tree = await operatorTree();
    await using ns = await uniqueNamespace("rn-sandbox");
    await tree.start(ns.name);
    await applyRun(ns.name, "sandbox", {
      script: "probe.sh",
      args: ["sandbox"],
      securityContext: { ...DEFAULTS.securityContext, readOnlyRootFilesystem: true },
    });
    const run = await waitFinished(ns.name, "sandbox");
    const logs = await runLogs(ns.name, run);
    assertEquals(
      logs,
      [
        "uid=65532 gid=65532",
        "script mode=555 path=/scripts/probe.sh",
        "/scripts read-only",
        "write to /scripts/probe.sh refused",
        "write to /scripts/new-file refused",
        "write to /new-file refused",
        "write to /tmp/new-file refused",
        "",
      ].join("\n"),
    );
    assertEquals(run.status?.phase, "Succeeded", run.status?.message);
  },
);

realNodeTest(
  "real node: args with $(HOME), quotes, spaces and a newline, and env values, arrive byte for byte",
  {},
  async () => {
    await installCrd();
    await using tree = await operatorTree();
    await using ns = await uniqueNamespace("rn-args");
    await tree.start(ns.name);
    const args = ["$(HOME)", `it's "quoted"`, "two  spaces ", "line one\nline two", "$$(HOME) $"];
    // HOME is set, so an unescaped $(HOME) would be expanded by the kubelet.
    const greeting = `hello $(HOME) \${HOME} 'single' "double"`;
    await applyRun(ns.name, "args", {
      script: "probe.sh",
      args: ["args", ...args],
      env: [{ name: "HOME", value: "/home/expanded" }, { name: "GREETING", value: greeting }],
    });
    const run = await waitFinished(ns.name, "args");
    assertEquals(run.status?.phase, "Succeeded", run.status?.message);
    const expected = `argc=${args.length}\n${args.map((a) => `[${a}]\n`).join("")}` +
      `GREETING=[${greeting}]\n`;
    assertEquals(await runLogs(ns.name, run), expected);
  },
);

realNodeTest(
  "real node: a reason in /dev/termination-log and exit 3 give status Failed with code 3 and the reason",
  {},
  async () => {
    await installCrd();
    await using tree = await operatorTree();
    await using ns = await uniqueNamespace("rn-fail");
    await tree.start(ns.name);
    const reason = "database unreachable: gave up after 3 tries";
    await applyRun(ns.name, "fail", { script: "probe.sh", args: ["fail", reason] });
    const run = await waitFinished(ns.name, "fail");
    assertEquals(run.status?.phase, "Failed");
    assertEquals(run.status?.reason, "BackoffLimitExceeded");
    const message = run.status?.message ?? "";
    assert(message.includes("exited with code 3"), message);
    assert(message.includes(reason), message);
    assert(!message.includes("giving up"), `log lines instead of the reason: ${message}`);
    assertEquals(await runLogs(ns.name, run), "giving up\n");
    const [pod] = await jobPods(ns.name, run.status!.jobName!);
    const terminated = pod.status.containerStatuses?.[0].state?.terminated;
    assertEquals([terminated?.exitCode, terminated?.message], [3, reason]);
  },
);

realNodeTest(
  "real node: a non-zero exit without termination message leaves the last output lines in the message",
  {},
  async () => {
    await installCrd();
    await using tree = await operatorTree();
    await using ns = await uniqueNamespace("rn-crash");
    await tree.start(ns.name);
    await applyRun(ns.name, "crash", { script: "probe.sh", args: ["crash"] });
    const run = await waitFinished(ns.name, "crash");
    assertEquals(run.status?.phase, "Failed");
    const message = run.status?.message ?? "";
    assert(message.includes("exited with code 7"), message);
    assert(message.includes("step 5 done"), message);
    assert(message.includes("fatal: disk on fire"), message);
  },
);

realNodeTest(
  "real node: activeDeadlineSeconds stops a script that runs too long (DeadlineExceeded), its pod is gone",
  {},
  async () => {
    await installCrd();
    await using tree = await operatorTree();
    await using ns = await uniqueNamespace("rn-deadline");
    await tree.start(ns.name);
    const t0 = Date.now();
    await applyRun(ns.name, "slow", {
      script: "probe.sh",
      args: ["sleep", "600"],
      activeDeadlineSeconds: 3,
    });
    // The pod really started: its script printed its first line.
    const running = await waitFor(async () => {
      const run = await getRun(ns.name, "slow");
      return run.status?.jobName && (await runLogs(ns.name, run)).includes("sleeping 600 s")
        ? run
        : undefined;
    }, { what: "the script to start sleeping", timeoutMs: 60_000, intervalMs: 500 });
    const run = await waitFinished(ns.name, "slow");
    assertEquals(run.status?.phase, "Failed");
    assertEquals(run.status?.reason, "DeadlineExceeded", run.status?.message);
    assert(Date.now() - t0 < 120_000, "the deadline did not stop the script early");
    const job = running.status!.jobName!;
    await waitFor(async () => (await jobPods(ns.name, job)).length === 0, {
      what: `the pods of Job ${job} to be gone after the deadline`,
      timeoutMs: 90_000,
      intervalMs: 1000,
    });
  },
);

realNodeTest(
  "real node: a script changed in scripts/ rolls out (rerunPolicy OnChange), the new pod prints the new text",
  {},
  async () => {
    await installCrd();
    await using tree = await operatorTree();
    await using ns = await uniqueNamespace("rn-rollout");
    const op = await tree.start(ns.name);
    // OnChange: a finished run runs again when its script changes (Never keeps the outcome).
    await applyRun(ns.name, "task", { script: "task.sh", rerunPolicy: "OnChange" });
    const first = await waitFinished(ns.name, "task");
    assertEquals(first.status?.phase, "Succeeded", first.status?.message);
    assertEquals(await runLogs(ns.name, first), "Starting task script.\nTask complete.\n");

    // What a user does: edit the script in scripts/, restart (rebuild) the operator.
    await op.stop();
    const original = await tree.readScript("task.sh");
    const changed = original.replace("Task complete.", "Task complete, now with version 2.");
    assert(changed !== original, "task.sh has no 'Task complete.' line to change");
    await tree.writeScript("task.sh", changed);
    await tree.start(ns.name);
    const second = await waitFinished(ns.name, "task", 90_000, first.status?.runHash);
    assertEquals(second.status?.phase, "Succeeded", second.status?.message);
    assert(second.status?.jobName !== first.status?.jobName, "the same Job ran again");
    assertEquals(
      await runLogs(ns.name, second),
      "Starting task script.\nTask complete, now with version 2.\n",
    );
  },
);

realNodeTest(
  "real node: wait-for-endpoint.sh succeeds against an endpoint the pod reaches, fails with its own message otherwise",
  { needsLocalNode: true },
  async () => {
    await installCrd();
    await using tree = await operatorTree();
    await using ns = await uniqueNamespace("rn-endpoint");
    await tree.start(ns.name);
    // The node's IP is its bridge's gateway: a host address that pods reach directly.
    const requests: string[] = [];
    await using server = Deno.serve(
      { hostname: nodeIp, port: 0, onListen() {} },
      (req, info) => {
        requests.push(
          `${req.method} ${new URL(req.url).pathname} from ${info.remoteAddr.hostname}`,
        );
        return new Response("ok");
      },
    );
    const up = `http://${nodeIp}:${server.addr.port}/healthz`;
    await applyRun(ns.name, "up", { script: "wait-for-endpoint.sh", args: [up] });
    const ok = await waitFinished(ns.name, "up");
    assertEquals(ok.status?.phase, "Succeeded", ok.status?.message);
    assertEquals(await runLogs(ns.name, ok), `${up} is up\nall endpoints answered\n`);
    const [pod] = await jobPods(ns.name, ok.status!.jobName!);
    assertEquals(requests, [`GET /healthz from ${pod.status.podIP}`]);

    // A port where nothing listens, on the same address.
    const closed = Deno.listen({ hostname: nodeIp, port: 0 });
    const down = `http://${nodeIp}:${(closed.addr as Deno.NetAddr).port}/healthz`;
    closed.close();
    await applyRun(ns.name, "down", {
      script: "wait-for-endpoint.sh",
      args: [down],
      env: [{ name: "ATTEMPTS", value: "2" }, { name: "DELAY", value: "1" }],
    });
    const failed = await waitFinished(ns.name, "down");
    assertEquals(failed.status?.phase, "Failed");
    const message = failed.status?.message ?? "";
    assert(message.includes("exited with code 1"), message);
    assert(message.includes(`${down} did not answer after 2 attempts`), message);
    assert(
      (await runLogs(ns.name, failed)).includes(`waiting for ${down} (attempt 1/2)`),
      "no attempt was logged",
    );
  },
);

/** The folder of a container's cgroup in `hierarchy` (e.g. `/sys/fs/cgroup/memory`), if any. */
function findCgroup(hierarchy: string, containerId: string): string | undefined {
  const walk = (path: string): string | undefined => {
    for (const entry of Deno.readDirSync(path)) {
      if (!entry.isDirectory) continue;
      if (entry.name.includes(containerId)) return `${path}/${entry.name}`;
      const found = walk(`${path}/${entry.name}`);
      if (found) return found;
    }
    return undefined;
  };
  try {
    return walk(`${hierarchy}${nodeCgroupRoot}`);
  } catch {
    return undefined;
  }
}

realNodeTest(
  "real node: the container's cgroup carries the CPU and memory limits of the spec",
  { needsLocalNode: true },
  async () => {
    await installCrd();
    await using tree = await operatorTree();
    await using ns = await uniqueNamespace("rn-cgroup");
    await tree.start(ns.name);
    await applyRun(ns.name, "limits", {
      script: "probe.sh",
      args: ["sleep", "300"],
      resources: {
        requests: { cpu: "100m", memory: "32Mi" },
        limits: { cpu: "250m", memory: "64Mi" },
      },
    });
    const pod = await waitFor(async () => {
      const run = await getRun(ns.name, "limits");
      if (!run.status?.jobName) return undefined;
      const [p] = await jobPods(ns.name, run.status.jobName);
      return p?.status.containerStatuses?.[0].state?.running ? p : undefined;
    }, { what: "the script's container to run", timeoutMs: 60_000, intervalMs: 500 });
    const id = pod.status.containerStatuses![0].containerID!.replace(/^containerd:\/\//, "");
    const read = (path: string) => Deno.readTextFileSync(path).trim();
    const v2 = (() => {
      try {
        Deno.statSync("/sys/fs/cgroup/cgroup.controllers");
        return true;
      } catch {
        return false;
      }
    })();
    if (v2) {
      const cg = findCgroup("/sys/fs/cgroup", id);
      assert(cg, `no cgroup for container ${id} under /sys/fs/cgroup${nodeCgroupRoot}`);
      assertEquals(read(`${cg}/memory.max`), String(64 * 1024 * 1024));
      assertEquals(read(`${cg}/cpu.max`), "25000 100000");
    } else {
      const memory = findCgroup("/sys/fs/cgroup/memory", id);
      const cpu = findCgroup("/sys/fs/cgroup/cpu", id);
      assert(memory && cpu, `no cgroup for container ${id} under <hierarchy>${nodeCgroupRoot}`);
      assertEquals(read(`${memory}/memory.limit_in_bytes`), String(64 * 1024 * 1024));
      assertEquals(read(`${cpu}/cpu.cfs_period_us`), "100000");
      assertEquals(read(`${cpu}/cpu.cfs_quota_us`), "25000");
      assertEquals(read(`${cpu}/cpu.shares`), "102"); // the request: 100m of 1024 shares
    }
    assertEquals(pod.spec.nodeName, REAL_NODE_NAME);
  },
);
