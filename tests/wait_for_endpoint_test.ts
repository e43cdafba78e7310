/**
 * scripts/wait-for-endpoint.sh checks its variables itself and never prints their values: one of
 * them could come from a Secret, and a failure's output reaches the ScriptRun's status.
 * @module
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";

const SCRIPT = new URL("../scripts/wait-for-endpoint.sh", import.meta.url).pathname;

/** The shells to run it with: /bin/sh, and busybox (the default image's) when installed. */
function shells(): string[][] {
  const list = [["sh"]];
  try {
    Deno.statSync("/usr/bin/busybox");
    list.push(["/usr/bin/busybox", "sh"]);
  } catch {
    // Not installed: /bin/sh alone.
  }
  return list;
}

async function run(shell: string[], env: Record<string, string>, args: string[]) {
  const out = await new Deno.Command(shell[0], {
    args: [...shell.slice(1), SCRIPT, ...args],
    env: { PATH: "/usr/bin:/bin", ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text };
}

Deno.test("wait-for-endpoint.sh: a variable that is not a number is named, its value never shown", async () => {
  const cases: [Record<string, string>, string][] = [
    [{ ATTEMPTS: "s3cr3t-token" }, "ATTEMPTS must be a whole number"],
    [{ ATTEMPTS: "0" }, "ATTEMPTS must be a whole number"],
    [{ DELAY: "s3cr3t-token" }, "DELAY must be a number of seconds"],
    [{ DELAY: "1.2.3" }, "DELAY must be a number of seconds"],
    [{ DELAY: "$(id)" }, "DELAY must be a number of seconds"],
    [{ TIMEOUT: "s3cr3t-token" }, "TIMEOUT must be a whole number"],
    [{ TIMEOUT: "-1" }, "TIMEOUT must be a whole number"],
  ];
  for (const shell of shells()) {
    for (const [env, message] of cases) {
      const { code, text } = await run(shell, env, ["http://127.0.0.1:9/"]);
      const what = `${shell.join(" ")} ${JSON.stringify(env)}`;
      assertEquals(code, 2, `${what}: ${text}`);
      assert(text.includes(message), `${what}: ${text}`);
      assert(text.includes("(value not shown)"), `${what}: ${text}`);
      for (const value of Object.values(env)) {
        assert(!text.includes(value), `${what}: the value is printed: ${text}`);
      }
    }
    // Valid numbers pass the check: without a URL the script stops at the usage line.
    const ok = await run(shell, { ATTEMPTS: "2", DELAY: "0.5", TIMEOUT: "1" }, []);
    assertEquals(ok.code, 2, ok.text);
    assert(ok.text.startsWith("usage: wait-for-endpoint.sh URL"), ok.text);
  }
});
