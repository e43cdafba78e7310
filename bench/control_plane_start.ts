/**
 * Starts the test control plane N times (default 3; `deno run -A bench/control_plane_start.ts 5`)
 * with cached binaries and prints min/median/max of the time to "API ready" and "node Ready".
 *
 * @module
 */
import { ensureBinaries, startControlPlane } from "../tests/harness/control_plane.ts";

const runs = Number(Deno.args[0] ?? 3);
const binDir = Deno.env.get("KUBEBUILDER_ASSETS") ?? await ensureBinaries();
const samples: Record<string, number[]> = { "API ready": [], "node Ready": [], "stop": [] };

for (let i = 0; i < runs; i++) {
  const cp = await startControlPlane({ binDir, quiet: true });
  samples["API ready"].push(cp.timings.apiReady);
  if (cp.timings.nodeReady !== undefined) samples["node Ready"].push(cp.timings.nodeReady);
  const t0 = performance.now();
  await cp.stop();
  samples["stop"].push(performance.now() - t0);
  console.error(`run ${i + 1}/${runs}: ${JSON.stringify(cp.timings)}`);
}

const secs = (ms: number | undefined) => ms === undefined ? "-" : (ms / 1000).toFixed(2) + "s";
console.log(`control plane start, ${runs} runs`);
console.log(" ".repeat(10) + ["min", "median", "max"].map((s) => s.padStart(10)).join(""));
for (const [name, values] of Object.entries(samples)) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  console.log(
    name.padEnd(10) +
      [secs(sorted[0]), secs(median), secs(sorted[sorted.length - 1])]
        .map((s) => s.padStart(10)).join(""),
  );
}
