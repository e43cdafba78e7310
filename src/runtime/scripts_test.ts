import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { loadScripts, MAX_SCRIPT_BYTES, ScriptError, validateScript } from "./scripts.ts";
import { sha256Hex } from "../desired/hash.ts";

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("loadScripts() reads every embedded script with size and SHA-256", async () => {
  const scripts = await loadScripts();
  assert(scripts.has("task.sh"));
  const task = scripts.get("task.sh")!;
  const onDisk = await Deno.readTextFile(new URL("../../scripts/task.sh", import.meta.url));
  assertEquals(task.content, onDisk);
  assertEquals(task.sha256, sha256Hex(onDisk));
  assertEquals(task.size, enc(onDisk).length);
});

Deno.test("validateScript() names what is wrong and how to fix it", () => {
  assertEquals(validateScript("ok.sh", enc("#!/bin/sh\n")), []);
  const [badName] = validateScript("a b.sh", enc("#!/bin/sh\n"));
  assert(badName.includes("not a valid ConfigMap key"), badName);
  const [tooBig] = validateScript("big.sh", enc("#!/bin/sh\n" + "x".repeat(MAX_SCRIPT_BYTES)));
  assert(tooBig.includes("too large for a ConfigMap"), tooBig);
  const [noShebang] = validateScript("x.sh", enc("echo hi\n"));
  assert(noShebang.includes("'#!'"), noShebang);
  const [binary] = validateScript("bin", new Uint8Array([0x23, 0x21, 0xff, 0xfe]));
  assert(binary.includes("not UTF-8"), binary);
});

Deno.test("loadScripts() refuses a folder with an unusable script, listing every problem", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/good.sh`, "#!/bin/sh\n");
    await Deno.writeTextFile(`${dir}/bad name.sh`, "#!/bin/sh\n");
    await Deno.writeTextFile(`${dir}/plain.sh`, "echo\n");
    await rejects(loadScripts(new URL(`file://${dir}/`)), (e: Error) => {
      assert(e instanceof ScriptError);
      assert(e.message.includes("bad name.sh") && e.message.includes("plain.sh"), e.message);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
