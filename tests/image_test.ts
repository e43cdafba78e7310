/**
 * The image: the Dockerfile compiles on the Deno version CI pins into a distroless nonroot
 * runtime, and its build context holds everything the build needs (a "dry" Docker build: the COPY
 * steps replayed into a temp folder, then the same `deno install` and compile).
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import { exists } from "./harness/control_plane.ts";
import { EXIT_CODES, NO_DENORT_MESSAGE, TARGETS } from "../deploy/compile.ts";
import { readText, ROOT } from "./harness/manifests.ts";
import { copies, dockerfile, dockerignore } from "./harness/dockerfile.ts";
import { pinnedDenoVersion } from "./harness/workflows.ts";

const NO_SANITIZE = { sanitizeResources: false, sanitizeOps: false };

/** The local files of a module graph, relative to the project root. */
async function localGraph(entry: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier: string }[];
  };
  return info.modules.map((m) => m.specifier).filter((s) => s.startsWith("file://"))
    .map((s) => new URL(s).pathname.slice(ROOT.length));
}

const REQUIRED_IGNORES = [".git", "tests", "bench", ".cluster", "dist", "node_modules", "docs"];

Deno.test("Dockerfile: compile stage on Deno, distroless nonroot runtime, binary as entrypoint", async () => {
  const { stages } = dockerfile(await readText("Dockerfile"));
  assertEquals(stages.length, 2, "two stages");
  const [build, runtime] = stages;
  assertEquals(build.from, `denoland/deno:${await pinnedDenoVersion()}`);
  assertEquals(build.platform, "$BUILDPLATFORM", "compile natively, cross-compile by --target");
  assertEquals(runtime.from, "gcr.io/distroless/cc-debian12:nonroot");
  assertEquals(runtime.user, "65532:65532");
  const compileRun = build.instructions.find((i) => i.op === "RUN" && i.args.includes("compile"));
  assert(compileRun, "no RUN that compiles");
  const m = /deno task compile --in-cluster --target "\$target" --output (\S+)/.exec(
    compileRun.args,
  );
  assert(m, `the compile step must be the in-cluster flavour: ${compileRun.args}`);
  // Every TARGETARCH the release builds maps to a linux target of deploy/compile.ts.
  for (const [, arch, target] of [...compileRun.args.matchAll(/(\w+)\) target=(\S+) ;;/g)]) {
    assert((TARGETS as readonly string[]).includes(target), `${arch} → ${target}`);
  }
  const [fromBuild] = copies(runtime).filter((c) => c.from === build.name);
  assert(fromBuild, "runtime stage copies nothing from the build stage");
  assertEquals(fromBuild.sources, [m[1]], "copies the compiled binary");
  assertEquals(runtime.entrypoint, [fromBuild.dest]);
  assertEquals(runtime.instructions.filter((i) => i.op === "RUN"), [], "no RUN in distroless");
});

Deno.test("Dockerfile: every COPY source is in the build context; .dockerignore keeps it small", async () => {
  const ignored = dockerignore(await readText(".dockerignore"));
  const { stages } = dockerfile(await readText("Dockerfile"));
  const sources = copies(stages[0]).filter((c) => !c.from).flatMap((c) => c.sources);
  for (const source of sources) {
    assert(exists(`${ROOT}${source}`), `COPY ${source}: no such file`);
    assert(!ignored(source), `COPY ${source}: excluded by .dockerignore`);
  }
  // The module graphs the build stage compiles and runs must be inside what is copied.
  const copied = (file: string) =>
    sources.some((s) => file === s.replace(/\/$/, "") || file.startsWith(s.replace(/\/?$/, "/")));
  for (const file of [...await localGraph("main.ts"), ...await localGraph("deploy/compile.ts")]) {
    assert(copied(file), `${file} is imported but the Dockerfile does not copy it`);
    assert(!ignored(file), `${file} is imported but .dockerignore excludes it`);
  }
  for (const entry of Deno.readDirSync(`${ROOT}scripts`)) {
    assert(copied(`scripts/${entry.name}`) && !ignored(`scripts/${entry.name}`), entry.name);
  }
  for (const path of REQUIRED_IGNORES) assert(ignored(path), `.dockerignore must exclude ${path}`);
  assert(ignored("src/runtime/cli_test.ts"), "tests stay out of the context");
});

Deno.test({
  name: "Dockerfile: the build stage's steps succeed on its build context (dry build)",
  ...NO_SANITIZE,
  fn: async () => {
    const ignored = dockerignore(await readText(".dockerignore"));
    const { stages } = dockerfile(await readText("Dockerfile"));
    const [build] = stages;
    const work = await Deno.makeTempDir({ prefix: "script-operator-docker-" });
    try {
      // Replay WORKDIR + COPY into a temp folder, leaving out what .dockerignore excludes.
      const copyTree = async (from: string, to: string) => {
        if (ignored(from)) return;
        const info = await Deno.stat(`${ROOT}${from}`);
        if (info.isDirectory) {
          await Deno.mkdir(to, { recursive: true });
          for await (const e of Deno.readDir(`${ROOT}${from}`)) {
            await copyTree(`${from.replace(/\/$/, "")}/${e.name}`, `${to}/${e.name}`);
          }
        } else {
          await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
          await Deno.copyFile(`${ROOT}${from}`, to);
        }
      };
      for (const c of copies(build).filter((c) => !c.from)) {
        const dest = `${work}/${c.dest === "./" ? "" : c.dest}`;
        for (const s of c.sources) {
          const target = c.dest.endsWith("/") && !s.endsWith("/")
            ? `${dest}${s.split("/").at(-1)}`
            : dest.replace(/\/$/, "");
          await copyTree(s, target);
        }
      }
      const run = async (args: string[]) => {
        const out = await new Deno.Command(Deno.execPath(), {
          args,
          cwd: work,
          env: { NO_COLOR: "1" },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        const d = new TextDecoder();
        return { code: out.code, log: d.decode(out.stdout) + d.decode(out.stderr) };
      };
      const install = await run(["install", "--frozen-lockfile"]);
      assertEquals(install.code, 0, install.log);
      const compiled = await run([
        "task",
        "compile",
        "--in-cluster",
        "--target",
        "x86_64-unknown-linux-gnu",
        "--output",
        `${work}/out/script-operator`,
      ]);
      if (compiled.code === EXIT_CODES.noDenort) {
        assert(compiled.log.includes(NO_DENORT_MESSAGE), compiled.log);
        console.log(
          "note: dry build checked up to deno compile's denort download (unavailable here)",
        );
      } else {
        assertEquals(compiled.code, 0, compiled.log);
        assert(exists(`${work}/out/script-operator`), "no binary");
      }
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  },
});
