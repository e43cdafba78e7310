/**
 * The GitHub workflows: every action pinned, one Deno version everywhere, CI runs .ci/run, and the
 * release compiles every target of deploy/compile.ts and pushes the image for both arches.
 * @module
 */
import { assert, assertEquals } from "./harness/assert.ts";
import { defaultOutput, TARGETS } from "../deploy/compile.ts";
import { pinnedDenoVersion, type Step, stepsOf, workflow } from "./harness/workflows.ts";

Deno.test("workflows: actions pinned to exact versions, one Deno version everywhere", async () => {
  const version = await pinnedDenoVersion();
  assert(/^\d+\.\d+\.\d+$/.test(version), `deno-version ${version} must be exact`);
  for (const name of ["ci.yml", "release.yml"]) {
    for (const step of stepsOf(await workflow(name))) {
      if (!step.uses) continue;
      assert(
        /@(v\d+\.\d+\.\d+|[0-9a-f]{40})$/.test(step.uses),
        `${name}: ${step.uses} is not pinned to an exact version`,
      );
      if (step.uses.startsWith("denoland/setup-deno@")) {
        assertEquals(String(step.with?.["deno-version"]), version, `${name} deno-version`);
      }
    }
  }
});

Deno.test("workflows: CI runs .ci/run; release compiles every target and pushes both arches", async () => {
  const ci = await workflow("ci.yml");
  assert("push" in ci.on && "pull_request" in ci.on, "CI runs on push and pull requests");
  const ciSteps = stepsOf(ci);
  assert(ciSteps.some((s) => s.uses?.startsWith("actions/setup-go@")), "CI installs Go");
  assert(ciSteps.some((s) => s.run?.trim() === "bash .ci/run"), "CI runs bash .ci/run");

  const release = await workflow("release.yml");
  assertEquals(release.on.push.tags, ["v*"]);
  const binaries = Object.values(
    release.jobs as Record<string, {
      strategy?: { matrix: { target: string[] } };
      steps: Step[];
    }>,
  ).find((j) => j.strategy?.matrix.target);
  assert(binaries, "no job with a target matrix");
  assertEquals([...binaries.strategy!.matrix.target].sort(), [...TARGETS].sort());
  const run = binaries.steps.map((s) => s.run ?? "").join("\n");
  assert(run.includes("deno task compile --target ${{ matrix.target }}"), run);
  const output = defaultOutput({ target: "x86_64-unknown-linux-gnu" }).replace(
    "x86_64-unknown-linux-gnu",
    "${{ matrix.target }}",
  );
  assert(run.includes(output.split("/").at(-1)!), `uploads ${output}: ${run}`);
  const push = stepsOf(release).find((s) => s.uses?.startsWith("docker/build-push-action@"));
  assert(push, "no image build");
  assertEquals(push.with?.platforms, "linux/amd64,linux/arm64");
  assertEquals(push.with?.push, true);
  const meta = stepsOf(release).find((s) => s.uses?.startsWith("docker/metadata-action@"));
  assert(String(meta?.with?.images).startsWith("ghcr.io/"), "image goes to ghcr.io");
});
