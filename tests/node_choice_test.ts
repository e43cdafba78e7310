/**
 * Choosing the test control plane's node (tests/harness/real_node.ts) and splitting paths between
 * the kwok and real-node suites (tests/run.ts). No cluster needed.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import { chooseNode, INSTALL_COMMAND } from "./harness/real_node.ts";
import { splitSuites } from "./run.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("node choice: SCRIPT_OPERATOR_TEST_NODE=kwok picks kwok without a fallback line", () => {
  const choice = chooseNode("/nonexistent-bin", "kwok");
  assertEquals([choice.kind, choice.fallbackLine], ["kwok", undefined]);
});

Deno.test("node choice: a real node that cannot run falls back to kwok with one line saying why", () => {
  const choice = chooseNode("/nonexistent-bin", "");
  assertEquals(choice.kind, "kwok");
  const line = choice.fallbackLine ?? "";
  assert(!line.includes("\n"), line);
  assert(line.includes("/nonexistent-bin/kubelet not built"), line);
  assert(line.includes(INSTALL_COMMAND), line);
});

Deno.test("node choice: a forced real node that cannot run is an error naming the problems", () => {
  let message = "";
  try {
    chooseNode("/nonexistent-bin", "real");
  } catch (e) {
    message = e instanceof Error ? e.message : String(e);
  }
  assert(message.includes("SCRIPT_OPERATOR_TEST_NODE=real"), message);
  assert(message.includes("/nonexistent-bin/pause not built"), message);
  assert(message.includes(INSTALL_COMMAND), message);
});

Deno.test("node choice: an unknown SCRIPT_OPERATOR_TEST_NODE value is refused", () => {
  let message = "";
  try {
    chooseNode("/nonexistent-bin", "docker");
  } catch (e) {
    message = e instanceof Error ? e.message : String(e);
  }
  assertEquals(
    message,
    "SCRIPT_OPERATOR_TEST_NODE=docker: expected real or kwok (or unset: real where it can run)",
  );
});

Deno.test("test runner: paths go to the suite they belong to", () => {
  assertEquals(splitSuites(["tests/operator_test.ts", "src/"], ROOT.slice(0, -1)), {
    kwok: ["tests/operator_test.ts", "src/"],
    real: [],
  });
  assertEquals(splitSuites(["tests/real_node/", "tests/real_node/demo_test.ts"], ROOT), {
    kwok: [],
    real: ["tests/real_node/", "tests/real_node/demo_test.ts"],
  });
  // A folder holding the real-node suite: the real-node part goes to its suite.
  assertEquals(splitSuites([`${ROOT}tests`], "/"), {
    kwok: [`${ROOT}tests`],
    real: [`${ROOT}tests/real_node/`],
  });
});
