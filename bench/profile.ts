/**
 * Where an operator process spends its CPU and memory, read through its V8 inspector (the Chrome
 * DevTools Protocol), so the figures in docs/benchmarks.md can be traced to functions:
 *
 * - `record`: attaches to the inspector of a process started with `--inspect` (e.g. the bench's
 *   operator, `deno task bench --deno-flag=--inspect=127.0.0.1:9229`) and saves a CPU profile
 *   every `--chunk-seconds`, named by the time it started, so a window (the burst, the steady
 *   minute) can be summed apart. It attaches again to each new process on that port (the bench
 *   starts one per batch) until stopped. A heap snapshot is taken when the process's RSS first
 *   reaches `--heap-at-mib`, and whenever the file `OUT/snapshot-now` appears.
 * - `summary`: sums profiles (all, or those started within `--from`/`--to`, epoch ms) by
 *   function (self and inclusive time) and by file.
 * - `heap`: a heap snapshot's self sizes by constructor (type, name).
 *
 * `deno run -A bench/profile.ts record [--inspect=127.0.0.1:9229] [--out=DIR]
 * [--chunk-seconds=15] [--interval-us=1000] [--heap-at-mib=N]`
 * `deno run -A bench/profile.ts summary [--from=MS] [--to=MS] [--top=40] FILE...`
 * `deno run -A bench/profile.ts heap [--top=40] FILE`
 *
 * A profiled run finds where the time goes; it never gives the figures themselves. Sampling
 * every millisecond costs a few per cent of CPU; with an inspector attached, Deno also reports
 * every fetch to it (frames of `inspector_network_bridge.js` and `op_inspector_emit_protocol_event`:
 * leave them out when reading the summary). A heap snapshot is built inside the process: at 10,000
 * runs it took the operator's RSS from about 270 MiB to 1.1 GiB, which glibc kept.
 * @module
 */
import { flagValues } from "./flags.ts";

/** One node of a V8 CPU profile (`Profiler.Profile`). */
export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/** A V8 CPU profile, as `Profiler.stop` returns it. */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Microseconds by function and by file, over some profiles. */
export interface ProfileSums {
  /** Microseconds sampled in all. */
  total: number;
  /** Time in the function itself, by "name file:line". */
  self: Map<string, number>;
  /** Time in the function and everything it called (each function once per stack). */
  inclusive: Map<string, number>;
  /** Self time by file (the module path from its package or `src/` on). */
  byFile: Map<string, number>;
}

/** A call frame's file, shortened to where it starts to say something (`src/…`, `npm/…`). */
export function shortFile(url: string): string {
  return url.replace(/^.*?\/((node_modules|npm|src|bench|tests)\/)/, "$1");
}

function frameKey(node: ProfileNode): string {
  const f = node.callFrame;
  const file = shortFile(f.url);
  return `${f.functionName || "(anonymous)"} ${file ? `${file}:${f.lineNumber + 1}` : ""}`.trim();
}

/** Adds `profile`'s samples to `sums` (a new one if none given). */
export function sumProfile(profile: CpuProfile, sums?: ProfileSums): ProfileSums {
  const s = sums ??
    { total: 0, self: new Map(), inclusive: new Map(), byFile: new Map() };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // A sample's time is the delta to the next sample (the last one's is not known: left out).
  const timeOf = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i + 1] ?? 0;
    timeOf.set(id, (timeOf.get(id) ?? 0) + dt);
  });
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  for (const [id, t] of timeOf) {
    const node = byId.get(id);
    if (!node) continue;
    s.total += t;
    add(s.self, frameKey(node), t);
    add(s.byFile, shortFile(node.callFrame.url) || `(${node.callFrame.functionName})`, t);
    const seen = new Set<string>();
    for (let n: ProfileNode | undefined = node; n; n = byId.get(parent.get(n.id) ?? -1)) {
      const k = frameKey(n);
      if (seen.has(k)) continue;
      seen.add(k);
      add(s.inclusive, k, t);
    }
  }
  return s;
}

/** The `top` largest entries of `m` as lines "seconds  share  key". */
export function topLines(m: Map<string, number>, total: number, top: number): string[] {
  return [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) =>
    `${(v / 1e6).toFixed(2).padStart(8)} s ${
      (100 * v / (total || 1)).toFixed(1).padStart(5)
    }%  ${k}`
  );
}

/** The time a profile file was started at, from its name `…-<epoch ms>.cpuprofile`. */
export function startedAt(path: string): number | undefined {
  const m = path.match(/-(\d{10,})\.cpuprofile$/);
  return m ? Number(m[1]) : undefined;
}

/** Self sizes of a heap snapshot, by (node type, constructor name), largest first. */
export function heapByConstructor(
  snapshot: {
    snapshot: { meta: { node_fields: string[]; node_types: unknown[] } };
    nodes: number[];
    strings: string[];
  },
): { total: number; rows: { type: string; name: string; bytes: number; count: number }[] } {
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0] as string[];
  const width = fields.length;
  const [ti, ni, si] = ["type", "name", "self_size"].map((f) => fields.indexOf(f));
  const rows = new Map<string, { type: string; name: string; bytes: number; count: number }>();
  let total = 0;
  const named = new Set(["object", "closure", "native", "hidden", "code", "synthetic"]);
  for (let i = 0; i < snapshot.nodes.length; i += width) {
    const type = types[snapshot.nodes[i + ti]];
    const name = named.has(type) ? snapshot.strings[snapshot.nodes[i + ni]] : "";
    const bytes = snapshot.nodes[i + si];
    const key = `${type}\u0000${name}`;
    const row = rows.get(key) ?? { type, name, bytes: 0, count: 0 };
    row.bytes += bytes;
    row.count++;
    rows.set(key, row);
    total += bytes;
  }
  return { total, rows: [...rows.values()].sort((a, b) => b.bytes - a.bytes) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A connection to one inspector target. */
class Inspector {
  #ws: WebSocket;
  #id = 0;
  #pending = new Map<number, (v: Record<string, unknown> | undefined) => void>();
  #chunks: string[] = [];
  readonly closed: Promise<void>;
  isClosed = false;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    this.closed = new Promise((resolve) => {
      ws.onclose = () => {
        this.isClosed = true;
        for (const p of this.#pending.values()) p(undefined);
        this.#pending.clear();
        resolve();
      };
    });
    ws.onerror = () => {};
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.method === "HeapProfiler.addHeapSnapshotChunk") this.#chunks.push(m.params.chunk);
      const p = m.id !== undefined ? this.#pending.get(m.id) : undefined;
      if (p) {
        this.#pending.delete(m.id);
        p(m.result);
      }
    };
  }

  /** Waits for a target on `hostPort` and connects to it. */
  static async connect(hostPort: string): Promise<Inspector> {
    for (;;) {
      try {
        const list = await (await fetch(`http://${hostPort}/json/list`)).json();
        if (list.length > 0) {
          const ws = new WebSocket(list[0].webSocketDebuggerUrl);
          const ok = await new Promise<boolean>((resolve) => {
            ws.onopen = () => resolve(true);
            ws.onclose = () => resolve(false);
          });
          if (ok) return new Inspector(ws);
        }
      } catch { /* no process on the port yet */ }
      await sleep(200);
    }
  }

  send(method: string, params: unknown = {}): Promise<Record<string, unknown> | undefined> {
    if (this.isClosed) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const id = ++this.#id;
      this.#pending.set(id, resolve);
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  async heapSnapshot(): Promise<string | undefined> {
    this.#chunks = [];
    await this.send("HeapProfiler.enable");
    const done = await this.send("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
    return done ? this.#chunks.join("") : undefined;
  }

  /** The pid of the process (Deno.pid, read through the inspector). */
  async pid(): Promise<number | undefined> {
    const r = await this.send("Runtime.evaluate", { expression: "Deno.pid", returnByValue: true });
    const value = (r?.result as { value?: unknown } | undefined)?.value;
    return typeof value === "number" ? value : undefined;
  }
}

function rssMiB(pid: number): number | undefined {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return Number(status.match(/VmRSS:\s+(\d+)/)?.[1]) / 1024;
  } catch {
    return undefined;
  }
}

async function record(flags: Record<string, string>): Promise<void> {
  const hostPort = flags.inspect ?? "127.0.0.1:9229";
  const out = flags.out ?? "profile";
  const chunkMs = Number(flags["chunk-seconds"] ?? 15) * 1000;
  const intervalUs = Number(flags["interval-us"] ?? 1000);
  const heapAt = flags["heap-at-mib"] ? Number(flags["heap-at-mib"]) : undefined;
  await Deno.mkdir(out, { recursive: true });
  const log = (...a: unknown[]) => console.log(new Date().toISOString(), ...a);
  for (let session = 1;; session++) {
    const inspector = await Inspector.connect(hostPort);
    const pid = await inspector.pid();
    log(`attached to pid ${pid} on ${hostPort}; profiles in ${out}`);
    let heapTaken = false;
    const snapshot = async (why: string) => {
      const text = await inspector.heapSnapshot();
      if (!text) return;
      const path = `${out}/p${pid}-${Date.now()}.heapsnapshot`;
      await Deno.writeTextFile(path, text);
      log(`heap snapshot (${why}): ${path}`);
    };
    await inspector.send("Profiler.enable");
    await inspector.send("Profiler.setSamplingInterval", { interval: intervalUs });
    await inspector.send("Runtime.runIfWaitingForDebugger");
    while (!inspector.isClosed) {
      const t0 = Date.now();
      await inspector.send("Profiler.start");
      while (Date.now() - t0 < chunkMs && !inspector.isClosed) {
        await Promise.race([sleep(500), inspector.closed]);
        const rss = pid ? rssMiB(pid) : undefined;
        if (heapAt !== undefined && !heapTaken && rss !== undefined && rss >= heapAt) {
          heapTaken = true;
          await snapshot(`RSS ${rss.toFixed(0)} MiB`);
        }
        try {
          await Deno.remove(`${out}/snapshot-now`);
          await snapshot("asked for");
        } catch { /* not asked for */ }
      }
      const stopped = await inspector.send("Profiler.stop");
      if (!stopped?.profile) break;
      const path = `${out}/p${pid}-${String(session)}-${t0}.cpuprofile`;
      await Deno.writeTextFile(path, JSON.stringify(stopped.profile));
    }
    log(`pid ${pid} detached`);
  }
}

async function summary(flags: Record<string, string>, files: string[]): Promise<void> {
  const from = Number(flags.from ?? 0);
  const to = Number(flags.to ?? Infinity);
  const top = Number(flags.top ?? 40);
  let sums: ProfileSums | undefined;
  let used = 0;
  for (const f of files) {
    const at = startedAt(f);
    if (at !== undefined && (at < from || at >= to)) continue;
    sums = sumProfile(JSON.parse(await Deno.readTextFile(f)), sums);
    used++;
  }
  if (!sums) throw new Error("no profile in the window given");
  console.log(`${used} profiles, ${(sums.total / 1e6).toFixed(2)} s sampled`);
  console.log("\n== self ==\n" + topLines(sums.self, sums.total, top).join("\n"));
  console.log("\n== by file ==\n" + topLines(sums.byFile, sums.total, 20).join("\n"));
  console.log("\n== inclusive ==\n" + topLines(sums.inclusive, sums.total, top).join("\n"));
}

async function heap(flags: Record<string, string>, file: string): Promise<void> {
  const { total, rows } = heapByConstructor(JSON.parse(await Deno.readTextFile(file)));
  console.log(`${(total / 2 ** 20).toFixed(1)} MiB live`);
  for (const r of rows.slice(0, Number(flags.top ?? 40))) {
    console.log(
      `${(r.bytes / 2 ** 20).toFixed(2).padStart(8)} MiB ${String(r.count).padStart(8)}  ${r.type}${
        r.name ? ` ${r.name.slice(0, 80)}` : ""
      }`,
    );
  }
}

if (import.meta.main) {
  const [command, ...rest] = Deno.args;
  const flags = flagValues(rest);
  const files = rest.filter((a) => !a.startsWith("--"));
  if (command === "record") await record(flags);
  else if (command === "summary") await summary(flags, files);
  else if (command === "heap" && files.length === 1) await heap(flags, files[0]);
  else {
    console.error(
      "usage: deno run -A bench/profile.ts record|summary|heap … (see the module doc)",
    );
    Deno.exit(2);
  }
}
