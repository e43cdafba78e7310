/**
 * Reading the GitHub workflows (.github/workflows/) that build, test and release the operator.
 * @module
 */
import { parse } from "yaml";
import { assert } from "./assert.ts";
import { readText } from "./manifests.ts";

/** The workflow file `name` in .github/workflows/, parsed. */
// deno-lint-ignore no-explicit-any -- parsed YAML whose shape each test asserts field by field
export async function workflow(name: string): Promise<any> {
  return parse(await readText(`.github/workflows/${name}`));
}

/** One step of a workflow job, as far as the tests look at it. */
export interface Step {
  /** The action, `owner/name@version`. */
  uses?: string;
  /** The shell commands. */
  run?: string;
  /** The action's inputs. */
  with?: Record<string, unknown>;
}

/** Every step of every job of a parsed workflow. */
export function stepsOf(wf: { jobs: Record<string, { steps: Step[] }> }): Step[] {
  return Object.values(wf.jobs).flatMap((j) => j.steps);
}

/** The Deno version CI installs; the Dockerfile and release must use the same. */
export async function pinnedDenoVersion(): Promise<string> {
  const step = stepsOf(await workflow("ci.yml")).find((s) =>
    s.uses?.startsWith("denoland/setup-deno@")
  );
  assert(step, "ci.yml does not install Deno with denoland/setup-deno");
  return String(step.with?.["deno-version"]);
}
