/**
 * `deno task demo` on a real node shows the script's own output (README, "Try it"): without flags
 * it starts its own control plane, beside the suite's; with `--kubeconfig` it uses the suite's.
 * @module
 */
import { assert, assertEquals } from "../harness/assert.ts";
import { installCrd } from "../harness/operator.ts";
import { testKubeconfig } from "../harness/test_env.ts";
import { realNodeTest } from "./helpers.ts";

realNodeTest(
  "real node: deno task demo ends Succeeded and prints the script's own output",
  { needsLocalNode: true },
  async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../harness/demo.ts", import.meta.url).pathname],
      env: { SCRIPT_OPERATOR_TEST_NODE: "real" },
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, text);
    assert(
      /==> kubectl logs job\/sample-[0-9a-f]{10} \(the script's own output\)\nStarting task script\.\nTask complete\.\n/
        .test(text),
      text,
    );
  },
);

realNodeTest(
  "real node: deno task demo --kubeconfig on the suite's cluster prints the script's own output",
  {},
  async () => {
    await installCrd();
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../harness/demo.ts", import.meta.url).pathname,
        "--kubeconfig",
        testKubeconfig!,
      ],
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, text);
    assert(
      /==> kubectl logs -n script-operator-demo-[0-9a-f]{8} job\/sample-[0-9a-f]{10} \(the script's own output\)\nStarting task script\.\nTask complete\.\n/
        .test(text),
      text,
    );
  },
);
