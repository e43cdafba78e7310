/**
 * The Go test tools of `tests/tools/<name>/` (real upstream programs such as Helm, built from Go
 * modules by `tests/tools/build.sh` into a cache folder outside the repository).
 * @module
 */
import { fileURLToPath } from "node:url";

const BUILD_SCRIPT = fileURLToPath(new URL("../tools/build.sh", import.meta.url));
const built = new Map<string, Promise<string>>();

/**
 * The path of test tool `name`, built on first use (a cached build returns at once). Throws with
 * the build's own output when Go cannot build it.
 */
export function toolPath(name: string): Promise<string> {
  let path = built.get(name);
  if (!path) {
    path = (async () => {
      const out = await new Deno.Command("bash", {
        args: [BUILD_SCRIPT, name],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const decoder = new TextDecoder();
      if (!out.success) {
        throw new Error(
          `building test tool ${name} failed (bash tests/tools/build.sh ${name}):\n${
            decoder.decode(out.stderr)
          }`,
        );
      }
      return decoder.decode(out.stdout).trim().split("\n").at(-1)!;
    })();
    built.set(name, path);
  }
  return path;
}
