/**
 * Loads and validates the scripts embedded in the operator (`scripts/`). The folder is found
 * relative to this module, so the same code reads it from disk under `deno run` and from the
 * embedded file system after `deno compile --include scripts`.
 * @module
 */
import { sha256Hex } from "../desired/hash.ts";
import type { Script } from "../types.ts";

/** Where the scripts live, relative to this module. */
export const SCRIPTS_DIR: URL = new URL("../../scripts/", import.meta.url);

/** Largest script accepted: a ConfigMap holds at most 1 MiB, metadata included. */
export const MAX_SCRIPT_BYTES = 1024 * 1024 - 16 * 1024;

const CONFIG_MAP_KEY = /^[-._a-zA-Z0-9]+$/;

/** A script that cannot be shipped in a ConfigMap or cannot run. */
export class ScriptError extends Error {
  override name = "ScriptError";
}

/**
 * Checks one script's name and content; returns the problems found, each a sentence saying what
 * is wrong and how to fix it. Pure.
 */
export function validateScript(name: string, bytes: Uint8Array): string[] {
  const problems: string[] = [];
  if (!CONFIG_MAP_KEY.test(name) || name.length > 253 || name === "." || name === "..") {
    problems.push(
      `scripts/${name}: the file name is not a valid ConfigMap key; rename it using only letters, digits, '-', '_' and '.' (at most 253 characters)`,
    );
  }
  if (bytes.length > MAX_SCRIPT_BYTES) {
    problems.push(
      `scripts/${name}: ${bytes.length} bytes is too large for a ConfigMap (at most ${MAX_SCRIPT_BYTES} bytes); split it or ship it in the image`,
    );
  }
  let text: string | undefined;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    problems.push(`scripts/${name}: not UTF-8 text; a ConfigMap script must be text`);
  }
  if (text !== undefined && !text.startsWith("#!")) {
    problems.push(
      `scripts/${name}: does not start with a '#!' line (e.g. '#!/bin/sh'), so the container cannot execute it`,
    );
  }
  return problems;
}

/**
 * Reads every file in `dir`, validates it and hashes it. Throws one ScriptError listing every
 * problem when any script is unusable, so the operator refuses to start.
 */
export async function loadScripts(dir: URL = SCRIPTS_DIR): Promise<Map<string, Script>> {
  const scripts = new Map<string, Script>();
  const problems: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (error) {
    throw new ScriptError(
      `cannot read the embedded scripts folder ${dir.pathname}: ${
        (error as Error).message
      }; build with 'deno task compile' (it passes --include scripts)`,
    );
  }
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (!entry.isFile) continue;
    const bytes = await Deno.readFile(new URL(entry.name, dir));
    const found = validateScript(entry.name, bytes);
    if (found.length > 0) {
      problems.push(...found);
      continue;
    }
    const content = new TextDecoder().decode(bytes);
    scripts.set(entry.name, {
      name: entry.name,
      content,
      sha256: sha256Hex(content),
      size: bytes.length,
    });
  }
  if (problems.length > 0) {
    throw new ScriptError(`refusing to start, unusable scripts:\n  ${problems.join("\n  ")}`);
  }
  if (scripts.size === 0) {
    throw new ScriptError(
      `no scripts found in ${dir.pathname}; add at least one script to scripts/ and rebuild`,
    );
  }
  return scripts;
}
