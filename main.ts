/**
 * script-operator: runs the scripts embedded in this program as Kubernetes Jobs, one per
 * ScriptRun. Entry point; the only module with top-level effects.
 * @module
 */
import { parseCli } from "./src/runtime/cli.ts";
import { UsageError } from "./src/runtime/flags.ts";
import { HELP } from "./src/runtime/help.ts";
import { OPERATOR_VERSION } from "./src/version.ts";
import { scriptRunCrd } from "./src/desired/crd.ts";
import { KubeConfigError, loadKubeConfig } from "./src/api/kubeconfig.ts";
import { logger, setupLogging } from "./src/runtime/log.ts";
import { runOperator } from "./src/runtime/operator.ts";
import { EXIT } from "./src/runtime/shutdown.ts";
import { loadScripts, ScriptError } from "./src/runtime/scripts.ts";

/** Runs the command line `args`; returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    const cli = parseCli(args);
    switch (cli.command) {
      case "help":
        console.log(HELP);
        return EXIT.ok;
      case "version":
        console.log(`script-operator ${OPERATOR_VERSION} (deno ${Deno.version.deno})`);
        return EXIT.ok;
      case "crd": {
        console.log(
          `# ScriptRun CRD of script-operator ${OPERATOR_VERSION}, generated from src/desired/crd.ts`,
        );
        // Imported here only: the operator itself never loads the YAML library (less memory).
        const { stringify } = await import("yaml");
        console.log(stringify(scriptRunCrd(), { aliasDuplicateObjects: false }).trimEnd());
        return EXIT.ok;
      }
      case "scripts": {
        const scripts = await loadScripts();
        const width = Math.max(6, ...[...scripts.keys()].map((n) => n.length));
        console.log(`${"SCRIPT".padEnd(width)}  ${"BYTES".padStart(7)}  SHA-256`);
        for (const s of scripts.values()) {
          console.log(`${s.name.padEnd(width)}  ${String(s.size).padStart(7)}  ${s.sha256}`);
        }
        return EXIT.ok;
      }
    }
    setupLogging({
      format: cli.logFormat ?? (Deno.stderr.isTerminal() ? "text" : "json"),
      level: cli.logLevel,
    });
    const scripts = await loadScripts();
    const config = loadKubeConfig({ kubeconfig: cli.kubeconfig, context: cli.context });
    return await runOperator({ cli, config, scripts, log: logger() });
  } catch (error) {
    if (
      error instanceof UsageError || error instanceof KubeConfigError ||
      error instanceof ScriptError
    ) {
      console.error(`script-operator: ${error.message}`);
      return EXIT.usage;
    }
    console.error(`script-operator: ${error instanceof Error ? error.stack : String(error)}`);
    return EXIT.runtime;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
