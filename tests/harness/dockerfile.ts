/**
 * Reading the image's Dockerfile and .dockerignore as data: stages, COPY sources, ignore rules.
 * @module
 */
import { assert } from "./assert.ts";

/** One instruction of a Dockerfile stage. */
export interface Instruction {
  /** The instruction, upper case (COPY, RUN...). */
  op: string;
  /** Everything after it, continuations joined. */
  args: string;
}

/** One stage of a Dockerfile. */
export interface Stage {
  /** The base image. */
  from: string;
  /** FROM's --platform. */
  platform?: string;
  /** The name after AS. */
  name?: string;
  /** The instructions after FROM. */
  instructions: Instruction[];
  /** The last USER. */
  user?: string;
  /** The last ENTRYPOINT, exec form. */
  entrypoint?: string[];
}

/** Parses a Dockerfile into stages (line continuations, comments, FROM/USER/ENTRYPOINT). */
export function dockerfile(text: string): { stages: Stage[] } {
  const lines = text.replace(/\\\n/g, " ").split("\n").map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const stages: Stage[] = [];
  for (const line of lines) {
    const [, op, args] = /^(\w+)\s+(.*)$/.exec(line) ?? [];
    assert(op, `cannot parse Dockerfile line: ${line}`);
    const upper = op.toUpperCase();
    if (upper === "FROM") {
      const m = /^(?:--platform=(\S+)\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      assert(m, `FROM ${args}`);
      stages.push({ platform: m[1], from: m[2], name: m[3], instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    assert(stage, `${op} before FROM`);
    stage.instructions.push({ op: upper, args });
    if (upper === "USER") stage.user = args;
    if (upper === "ENTRYPOINT") stage.entrypoint = JSON.parse(args);
  }
  return { stages };
}

/** COPY/ADD of a stage: flags, sources, destination. */
export function copies(stage: Stage): { from?: string; sources: string[]; dest: string }[] {
  return stage.instructions.filter((i) => i.op === "COPY" || i.op === "ADD").map((i) => {
    const words = i.args.split(/\s+/);
    const flags = words.filter((w) => w.startsWith("--"));
    const paths = words.filter((w) => !w.startsWith("--"));
    const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
    return { from, sources: paths.slice(0, -1), dest: paths.at(-1)! };
  });
}

/** A .dockerignore as a predicate: is `path` (relative to the context) left out? */
export function dockerignore(text: string): (path: string) => boolean {
  const rules = text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const pattern = (negate ? l.slice(1) : l).replace(/^\.?\//, "").replace(/\/$/, "");
      // Glob tokens: "**/" any folders, "**" anything, "*" and "?" within one path segment.
      const source = pattern.split(/(\*\*\/|\*\*|\*|\?)/).map((token) =>
        ({ "**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]" })[token] ??
          token.replace(/[.+^${}()|[\]\\]/g, "\\$&")
      ).join("");
      return { negate, re: new RegExp(`^${source}$`) };
    });
  return (path: string) => {
    const parts = path.replace(/^\.?\//, "").replace(/\/$/, "").split("/");
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
    let excluded = false;
    for (const r of rules) {
      if (prefixes.some((p) => r.re.test(p))) excluded = !r.negate;
    }
    return excluded;
  };
}
