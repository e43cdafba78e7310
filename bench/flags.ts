/**
 * The one-off benchmark scripts' command line: `--name=value` words, read as a plain record.
 * @module
 */

/**
 * The `--name=value` words of `argv` by name (`--name` alone reads as `"true"`); words without
 * a leading `--` are left out, and a value ends at its first `=` after the name.
 */
export function flagValues(argv: readonly string[]): Record<string, string> {
  return Object.fromEntries(
    argv.filter((a) => a.startsWith("--")).map((a) => {
      const [k, v] = a.slice(2).split("=");
      return [k, v ?? "true"];
    }),
  );
}
