/**
 * A real node for the test control plane: containerd (Debian's package) and a kubelet built from
 * the same Kubernetes module as the control plane, so Jobs' pods really run. Everything lives under
 * the control plane's temp folder (`<dir>/node/`): containerd's root, state, socket and runc root,
 * the kubelet's root and pod logs, the CNI config and IPAM data, and the two images the node
 * needs, built locally because no registry is reachable.
 *
 * Host state the node changes, all undone by {@linkcode teardownRealNode}:
 * - a bridge `so-br<n>` with the gateway address of the node's pod subnet `10.217.<n>.0/24`;
 * - cgroups under `/<temp folder name>` in every cgroup hierarchy (the kubelet's `cgroupRoot`);
 * - mounts under the temp folder (kubelet root bind mount, pod volumes, rootfs, netns);
 * - shim sockets in `/run/containerd/s` (containerd 1.6 puts them there whatever its state dir);
 * - the sysctls the kubelet and the bridge plugin set, restored when the last node of this host
 *   stops (several control planes can run nodes at once; they share one record of the values).
 *
 * Why the settings are what they are: tests/control_plane/README.md, "The real node". In short,
 * containerd's CRI needs `restrict_oom_score_adj = true` on machines without CAP_SYS_RESOURCE, and
 * the kubelet `failCgroupV1: false` with `cgroupDriver: cgroupfs` on cgroup v1.
 *
 * @module
 */

/** Name of the real Node (also its `kubernetes.io/hostname`). */
export const REAL_NODE_NAME = "script-operator-node";

/** Environment variable that forces the node: `real` or `kwok`. */
export const NODE_ENV = "SCRIPT_OPERATOR_TEST_NODE";

/** The command that installs what the real node needs on Debian/Ubuntu (as root). */
export const INSTALL_COMMAND =
  "apt-get update && apt-get install -y containerd runc containernetworking-plugins busybox-static";

/** Where Debian's containernetworking-plugins installs the CNI plugins. */
export const CNI_BIN_DIR = "/usr/lib/cni";

/** The images the node imports at start (both built locally). */
export const NODE_IMAGES = {
  /** The ScriptRun default image, from Debian's static busybox. */
  busybox: "docker.io/library/busybox:1.36",
  /** The sandbox image containerd's CRI plugin uses (`sandbox_image`). */
  pause: "registry.k8s.io/pause:3.10",
} as const;

/** Sysctls the kubelet (`protectKernelDefaults: false`) and the bridge plugin may change. */
export const TOUCHED_SYSCTLS = [
  "vm.overcommit_memory",
  "vm.panic_on_oom",
  "kernel.panic",
  "kernel.panic_on_oops",
  "kernel.keys.root_maxkeys",
  "kernel.keys.root_maxbytes",
  "net.ipv4.ip_forward",
];

const CGROUP_FS = "/sys/fs/cgroup";
const SHIM_SOCKET_DIR = "/run/containerd/s";

/** Which node a control plane runs. */
export type NodeKind = "real" | "kwok";

/** The node to run and, when it is kwok though a real node was wanted, why. */
export interface NodeChoice {
  /** The node to run. */
  kind: NodeKind;
  /** Why the real node cannot run here (only when `kind` is kwok and it was not forced). */
  reason?: string;
  /** The one line to print when falling back to kwok. */
  fallbackLine?: string;
}

/** Whether a file or folder exists. */
function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Path of `name` on PATH (plus the sbin folders, where root's tools live), or undefined. */
export function findCommand(name: string): string | undefined {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin", "/usr/bin"];
  for (const dir of dirs) {
    if (dir && exists(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return undefined;
}

/** The path of a static busybox, or undefined (a dynamically linked one cannot go in an image). */
function staticBusybox(): string | undefined {
  for (const path of ["/bin/busybox", "/usr/bin/busybox"]) {
    try {
      const head = Deno.readFileSync(path).subarray(0, 8192);
      // A dynamically linked ELF names its loader (PT_INTERP) near the start of the file.
      if (!new TextDecoder("latin1").decode(head).includes("/ld-linux")) return path;
    } catch { /* not there */ }
  }
  return undefined;
}

/**
 * Why a real node cannot run on this machine with the binaries in `binDir`: one entry per
 * problem, empty when it can run. Checks the OS, root, the Debian packages, the kubelet and pause
 * builds and usable cgroups; it starts nothing.
 */
export function realNodeProblems(binDir: string): string[] {
  const problems: string[] = [];
  if (Deno.build.os !== "linux") return [`the real node needs Linux (this is ${Deno.build.os})`];
  if (Deno.uid() !== 0) problems.push("not root (containerd and the kubelet need root)");
  const missing: string[] = [];
  for (const cmd of ["containerd", "containerd-shim-runc-v2", "ctr"]) {
    if (!findCommand(cmd)) missing.push(`${cmd} (containerd)`);
  }
  if (!findCommand("runc")) missing.push("runc (runc)");
  for (const plugin of ["bridge", "host-local", "loopback"]) {
    if (!exists(`${CNI_BIN_DIR}/${plugin}`)) {
      missing.push(`${CNI_BIN_DIR}/${plugin} (containernetworking-plugins)`);
    }
  }
  if (!staticBusybox()) missing.push("a static /bin/busybox (busybox-static)");
  if (!findCommand("ip")) missing.push("ip (iproute2)");
  if (missing.length > 0) problems.push(`missing ${missing.join(", ")}`);
  for (const bin of ["kubelet", "pause"]) {
    if (!exists(`${binDir}/${bin}`)) {
      problems.push(`${binDir}/${bin} not built (tests/control_plane/build.sh builds it)`);
    }
  }
  const v2 = exists(`${CGROUP_FS}/cgroup.controllers`);
  if (!v2) {
    const needed = ["cpu", "cpuacct", "cpuset", "memory", "pids"];
    const absent = needed.filter((c) => !exists(`${CGROUP_FS}/${c}/cgroup.procs`));
    if (absent.length > 0) {
      problems.push(`no usable cgroups (missing hierarchies: ${absent.join(", ")})`);
    }
  }
  return problems;
}

/**
 * Chooses the node from `SCRIPT_OPERATOR_TEST_NODE` (`real`, `kwok` or unset = real where it can
 * run). A forced `real` that cannot run throws with every problem and the install command.
 */
export function chooseNode(binDir: string, wanted = Deno.env.get(NODE_ENV) ?? ""): NodeChoice {
  if (wanted === "kwok") return { kind: "kwok", reason: `${NODE_ENV}=kwok` };
  if (wanted !== "" && wanted !== "real") {
    throw new Error(
      `${NODE_ENV}=${wanted}: expected real or kwok (or unset: real where it can run)`,
    );
  }
  const problems = realNodeProblems(binDir);
  if (problems.length === 0) return { kind: "real" };
  const reason = problems.join("; ");
  if (wanted === "real") {
    throw new Error(
      `${NODE_ENV}=real but the real node cannot run here: ${reason}. As root: ${INSTALL_COMMAND}`,
    );
  }
  return {
    kind: "kwok",
    reason,
    fallbackLine:
      `node: kwok (simulated), since the real node cannot run here: ${reason}. For the real node, as root: ${INSTALL_COMMAND}`,
  };
}

// ---------------------------------------------------------------------------------------------
// Host-wide bookkeeping shared by every node on this machine, under one file lock.

function tmpRoot(): string {
  return Deno.env.get("TMPDIR") || "/tmp";
}

/** Runs `fn` holding the host-wide node lock (a file lock in the temp folder). */
function withHostLock<T>(fn: () => T): T {
  const file = Deno.openSync(`${tmpRoot()}/script-operator-node.lock`, {
    read: true,
    write: true,
    create: true,
  });
  try {
    file.lockSync(true);
    return fn();
  } finally {
    file.close(); // releases the lock
  }
}

/**
 * Host state from before the first of the running nodes started, restored by the last one out.
 */
interface HostRecord {
  /** Sysctl values. */
  original: Record<string, string>;
  /** Host folders the kubelet or containerd create whatever their configuration, absent before. */
  absentPaths?: string[];
  /** The kubelet's iptables chains (KUBE-KUBELET-CANARY, KUBE-FIREWALL...) were absent. */
  iptablesAbsent?: boolean;
  /** Temp folders of the control planes whose node is running. */
  owners: string[];
}

/**
 * Host folders created whatever the configuration: the kubelet's device-plugin socket folder
 * (`/var/lib/kubelet/device-plugins`, fixed) and the CNI result cache of containerd's CNI library.
 */
const HOST_PATHS = ["/var/lib/kubelet", "/var/lib/cni"];
const IPTABLES_CHAINS: [table: string, chain: string][] = [
  ["filter", "KUBE-FIREWALL"],
  ["filter", "KUBE-KUBELET-CANARY"],
  ["mangle", "KUBE-KUBELET-CANARY"],
  ["mangle", "KUBE-IPTABLES-HINT"],
  ["nat", "KUBE-KUBELET-CANARY"],
];

function iptablesChainsExist(): boolean {
  const iptables = findCommand("iptables");
  return iptables !== undefined &&
    run(iptables, ["-t", "mangle", "-S", "KUBE-KUBELET-CANARY"]).ok;
}

/** Removes the chains the kubelet adds to iptables and ip6tables. */
function removeIptablesChains(): void {
  for (const name of ["iptables", "ip6tables"]) {
    const cmd = findCommand(name);
    if (!cmd) continue;
    for (const hook of ["INPUT", "OUTPUT"]) {
      for (let i = 0; i < 5; i++) {
        if (!run(cmd, ["-t", "filter", "-D", hook, "-j", "KUBE-FIREWALL"]).ok) break;
      }
    }
    for (const [table, chain] of IPTABLES_CHAINS) {
      run(cmd, ["-t", table, "-F", chain]);
      run(cmd, ["-t", table, "-X", chain]);
    }
  }
}

const hostRecordPath = () => `${tmpRoot()}/script-operator-node-host.json`;
const sysctlPath = (key: string) => `/proc/sys/${key.replaceAll(".", "/")}`;

/** Whether the control plane owning `dir` still runs (its folder and owner process exist). */
function ownerAlive(dir: string): boolean {
  try {
    const pid = Deno.readTextFileSync(`${dir}/owner.pid`).trim();
    return pid !== "" && exists(`/proc/${pid}`);
  } catch {
    return false;
  }
}

function readHostRecord(): HostRecord | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(hostRecordPath()));
  } catch {
    return undefined;
  }
}

/** Records the host's state (when no other node runs) and adds `dir` as an owner. */
function registerHostState(dir: string): void {
  const record = readHostRecord();
  const owners = (record?.owners ?? []).filter((o) => o !== dir && ownerAlive(o));
  let next: HostRecord;
  if (record) {
    // Owners that died without a teardown left their changes: the record still holds the values
    // from before them.
    next = { ...record, owners: [...owners, dir] };
  } else {
    const original: Record<string, string> = {};
    for (const key of TOUCHED_SYSCTLS) {
      try {
        original[key] = Deno.readTextFileSync(sysctlPath(key)).trim();
      } catch { /* not on this kernel */ }
    }
    next = {
      original,
      absentPaths: HOST_PATHS.filter((p) => !exists(p)),
      iptablesAbsent: !iptablesChainsExist(),
      owners: [dir],
    };
  }
  Deno.writeTextFileSync(hostRecordPath(), JSON.stringify(next, null, 2));
}

/** Removes `dir` as an owner; the last owner out restores the recorded host state. */
function releaseHostState(dir: string): string[] {
  const record = readHostRecord();
  if (!record) return [];
  const owners = record.owners.filter((o) => o !== dir && ownerAlive(o));
  if (owners.length > 0) {
    Deno.writeTextFileSync(hostRecordPath(), JSON.stringify({ ...record, owners }, null, 2));
    return [];
  }
  const problems: string[] = [];
  for (const [key, value] of Object.entries(record.original)) {
    try {
      if (Deno.readTextFileSync(sysctlPath(key)).trim() !== value) {
        Deno.writeTextFileSync(sysctlPath(key), value);
      }
    } catch (e) {
      problems.push(`sysctl ${key}=${value}: ${e instanceof Error ? e.message : e}`);
    }
  }
  if (record.iptablesAbsent) removeIptablesChains();
  for (const path of record.absentPaths ?? []) {
    try {
      Deno.removeSync(path, { recursive: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) problems.push(`${path}: ${e}`);
    }
  }
  Deno.removeSync(hostRecordPath());
  return problems;
}

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  // Root's tools (ip, umount) may be in sbin folders that PATH lacks.
  const path = cmd.includes("/") ? cmd : findCommand(cmd) ?? cmd;
  let out: Deno.CommandOutput;
  try {
    out = new Deno.Command(path, { args, stdin: "null" }).outputSync();
  } catch (e) {
    return { ok: false, out: `${cmd}: ${e instanceof Error ? e.message : e}` };
  }
  const decoder = new TextDecoder();
  return { ok: out.success, out: (decoder.decode(out.stdout) + decoder.decode(out.stderr)).trim() };
}

function mustRun(cmd: string, args: string[]): string {
  const res = run(cmd, args);
  if (!res.ok) throw new Error(`${cmd} ${args.join(" ")} failed: ${res.out}`);
  return res.out;
}

/** Picks a free pod subnet `10.217.<n>.0/24` and creates its bridge with the gateway address. */
function createBridge(): { bridge: string; subnet: string; gateway: string } {
  const addrs = run("ip", ["-4", "-o", "addr", "show"]).out;
  const routes = run("ip", ["-4", "route", "show", "table", "all"]).out;
  const links = run("ip", ["-o", "link", "show"]).out;
  for (let n = 1; n < 255; n++) {
    const prefix = `10.217.${n}.`;
    const bridge = `so-br${n}`;
    if (addrs.includes(prefix) || routes.includes(prefix) || links.includes(`${bridge}:`)) {
      continue;
    }
    mustRun("ip", ["link", "add", "name", bridge, "type", "bridge"]);
    try {
      mustRun("ip", ["addr", "add", `${prefix}1/24`, "dev", bridge]);
      mustRun("ip", ["link", "set", bridge, "up"]);
    } catch (e) {
      run("ip", ["link", "del", bridge]);
      throw e;
    }
    return { bridge, subnet: `${prefix}0/24`, gateway: `${prefix}1` };
  }
  throw new Error("no free pod subnet in 10.217.1.0/24-10.217.254.0/24");
}

/** Cgroup hierarchies to create the node's cgroup root in (v1: one per mount; v2: one). */
function cgroupHierarchies(): string[] {
  if (exists(`${CGROUP_FS}/cgroup.controllers`)) return [CGROUP_FS];
  const out: string[] = [];
  for (const entry of Deno.readDirSync(CGROUP_FS)) {
    const path = `${CGROUP_FS}/${entry.name}`;
    if (entry.isDirectory && exists(`${path}/cgroup.procs`)) out.push(path);
  }
  return out;
}

/** Creates `/<name>` in every hierarchy (cpuset gets its parent's CPUs and memory nodes). */
function createCgroupRoot(name: string): void {
  for (const hierarchy of cgroupHierarchies()) {
    const path = `${hierarchy}/${name}`;
    Deno.mkdirSync(path, { recursive: true });
    for (const file of ["cpuset.cpus", "cpuset.mems"]) {
      // cgroup v1 cpuset: a new cgroup starts empty and takes no task until these are set.
      if (
        exists(`${path}/${file}`) && exists(`${hierarchy}/${file}`) &&
        Deno.readTextFileSync(`${path}/${file}`).trim() === ""
      ) {
        Deno.writeTextFileSync(`${path}/${file}`, Deno.readTextFileSync(`${hierarchy}/${file}`));
      }
    }
  }
}

/** Every cgroup folder under `/<name>`, deepest first. */
function cgroupTree(name: string): string[] {
  const out: string[] = [];
  const walk = (path: string) => {
    try {
      for (const entry of Deno.readDirSync(path)) {
        if (entry.isDirectory) walk(`${path}/${entry.name}`);
      }
      out.push(path);
    } catch { /* gone */ }
  };
  for (const hierarchy of cgroupHierarchies()) walk(`${hierarchy}/${name}`);
  return out.sort((a, b) => b.split("/").length - a.split("/").length);
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function kill(pid: number): void {
  try {
    Deno.kill(pid, "SIGKILL");
  } catch { /* gone */ }
}

/** Pids of containerd shims started by the containerd listening on `socket`. */
function shimPids(socket: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const args = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
      if (args[0].includes("containerd-shim") && args.includes(socket)) {
        pids.push(Number(entry.name));
      }
    } catch { /* exited */ }
  }
  return pids;
}

/** Mount points at or under `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  const unescape = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  return Deno.readTextFileSync("/proc/self/mountinfo").split("\n")
    .map((line) => unescape(line.split(" ")[4] ?? ""))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** What {@linkcode setupRealNode} recorded in `<dir>/node/node.json` for the teardown. */
interface NodeRecord {
  bridge?: string;
  cgroupName: string;
  socket: string;
  stateDir: string;
  /** Registered in the host record (sysctls, iptables, host folders). */
  hostState: boolean;
  /** CNI network name (its cached results are `/var/lib/cni/results/<name>-*`). */
  network: string;
}

/**
 * Undoes everything a real node did to the host, for the control plane in `dir` (after its
 * kubelet and containerd stopped, or were killed): kills the shims and every process in the
 * node's cgroups, unmounts everything under `dir`, removes the shim sockets, the bridge and the
 * cgroups, and restores the sysctls when no other node runs. Synchronous, so it also works from
 * an `unload` handler. Returns what could not be undone (empty when clean). Safe to call twice.
 */
export function teardownRealNode(dir: string): string[] {
  let record: NodeRecord;
  try {
    record = JSON.parse(Deno.readTextFileSync(`${dir}/node/node.json`));
  } catch {
    return [];
  }
  const problems: string[] = [];
  // Shim sockets, named in each task's bundle, before the bundles go away.
  const sockets: string[] = [];
  const tasks = `${record.stateDir}/io.containerd.runtime.v2.task/k8s.io`;
  try {
    for (const entry of Deno.readDirSync(tasks)) {
      try {
        const address = Deno.readTextFileSync(`${tasks}/${entry.name}/address`).trim();
        sockets.push(address.replace(/^unix:\/\//, ""));
      } catch { /* no address */ }
    }
  } catch { /* no tasks */ }

  // Shims first (so nothing restarts a container), then every process left in the cgroups.
  for (const pid of shimPids(record.socket)) kill(pid);
  for (let i = 0; i < 50; i++) {
    const pids = new Set<number>();
    for (const cg of cgroupTree(record.cgroupName)) {
      try {
        for (const p of Deno.readTextFileSync(`${cg}/cgroup.procs`).split("\n")) {
          if (p.trim()) pids.add(Number(p));
        }
      } catch { /* gone */ }
    }
    for (const pid of shimPids(record.socket)) pids.add(pid);
    if (pids.size === 0) break;
    pids.forEach(kill);
    sleepSync(100);
  }

  for (let i = 0; i < 3; i++) {
    const mounts = mountsUnder(dir);
    if (mounts.length === 0) break;
    for (const m of mounts) run("umount", ["-l", m]);
  }
  const leftMounts = mountsUnder(dir);
  if (leftMounts.length > 0) problems.push(`still mounted: ${leftMounts.join(", ")}`);

  for (const socket of sockets) {
    if (socket.startsWith(`${SHIM_SOCKET_DIR}/`)) {
      try {
        Deno.removeSync(socket);
      } catch { /* gone */ }
    }
  }
  for (const d of [SHIM_SOCKET_DIR, "/run/containerd"]) {
    try {
      Deno.removeSync(d); // only when empty: another node may be using it
    } catch { /* not empty or gone */ }
  }

  try {
    for (const entry of Deno.readDirSync("/var/lib/cni/results")) {
      if (entry.name.startsWith(`${record.network}-`)) {
        Deno.removeSync(`/var/lib/cni/results/${entry.name}`);
      }
    }
  } catch { /* none */ }

  if (record.bridge && run("ip", ["link", "show", record.bridge]).ok) {
    const res = run("ip", ["link", "del", record.bridge]);
    if (!res.ok) problems.push(`ip link del ${record.bridge}: ${res.out}`);
  }

  for (const cg of cgroupTree(record.cgroupName)) {
    for (let i = 0; i < 20; i++) {
      try {
        Deno.removeSync(cg);
        break;
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) break;
        if (i === 19) problems.push(`cgroup ${cg}: ${e instanceof Error ? e.message : e}`);
        sleepSync(50);
      }
    }
  }

  if (record.hostState) {
    withHostLock(() => problems.push(...releaseHostState(dir)));
    record.hostState = false;
  }
  record.bridge = undefined;
  try {
    Deno.writeTextFileSync(`${dir}/node/node.json`, JSON.stringify(record));
  } catch { /* dir removed */ }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Images: docker-save tarballs built here and imported with `ctr images import`.

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Writes a `docker save`-style tarball of a one-layer image whose root file system is the
 * folder `rootfs` (owner root, numeric ids) to `out`.
 */
async function buildImage(
  work: string,
  rootfs: string,
  ref: string,
  config: Record<string, unknown>,
  out: string,
): Promise<void> {
  const image = `${work}/image`;
  await Deno.remove(image, { recursive: true }).catch(() => {});
  await Deno.mkdir(image, { recursive: true });
  mustRun("tar", [
    ...["--numeric-owner", "--owner=0", "--group=0", "--sort=name", "--mtime=@0"],
    ...["-C", rootfs, "-cf", `${image}/layer.tar`, "."],
  ]);
  const layerSha = await sha256(await Deno.readFile(`${image}/layer.tar`));
  await Deno.mkdir(`${image}/${layerSha}`);
  await Deno.rename(`${image}/layer.tar`, `${image}/${layerSha}/layer.tar`);
  const configJson = new TextEncoder().encode(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    created: "1970-01-01T00:00:00Z",
    config,
    rootfs: { type: "layers", diff_ids: [`sha256:${layerSha}`] },
  }));
  const configSha = await sha256(configJson);
  await Deno.writeFile(`${image}/${configSha}.json`, configJson);
  await Deno.writeTextFile(
    `${image}/manifest.json`,
    JSON.stringify([{
      Config: `${configSha}.json`,
      RepoTags: [ref],
      Layers: [`${layerSha}/layer.tar`],
    }]),
  );
  mustRun("tar", ["--numeric-owner", "--owner=0", "--group=0", "-C", image, "-cf", out, "."]);
  await Deno.remove(image, { recursive: true });
}

/** Builds the busybox and pause image tarballs into `nodeDir/images`; returns their paths. */
async function buildImages(nodeDir: string, binDir: string): Promise<string[]> {
  const images = `${nodeDir}/images`;
  const busybox = staticBusybox()!;
  // busybox:1.36 like the Docker Hub image: /bin/busybox and its applets, root and nobody.
  const bb = `${images}/busybox-rootfs`;
  for (const d of ["bin", "etc", "tmp", "root", "home", "var", "dev", "proc", "sys"]) {
    await Deno.mkdir(`${bb}/${d}`, { recursive: true });
  }
  await Deno.chmod(`${bb}/tmp`, 0o1777);
  await Deno.copyFile(busybox, `${bb}/bin/busybox`);
  await Deno.chmod(`${bb}/bin/busybox`, 0o755);
  for (const applet of mustRun(busybox, ["--list"]).split("\n")) {
    if (applet && applet !== "busybox") await Deno.symlink("busybox", `${bb}/bin/${applet}`);
  }
  await Deno.writeTextFile(
    `${bb}/etc/passwd`,
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
  );
  await Deno.writeTextFile(`${bb}/etc/group`, "root:x:0:\nnobody:x:65534:\n");
  const env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"];
  await buildImage(
    images,
    bb,
    NODE_IMAGES.busybox,
    { Env: env, Cmd: ["sh"] },
    `${images}/busybox.tar`,
  );

  const pause = `${images}/pause-rootfs`;
  await Deno.mkdir(pause, { recursive: true });
  await Deno.copyFile(`${binDir}/pause`, `${pause}/pause`);
  await Deno.chmod(`${pause}/pause`, 0o755);
  await buildImage(
    images,
    pause,
    NODE_IMAGES.pause,
    { Entrypoint: ["/pause"], User: "65535:65535" },
    `${images}/pause.tar`,
  );
  await Deno.remove(bb, { recursive: true });
  await Deno.remove(pause, { recursive: true });
  return [`${images}/busybox.tar`, `${images}/pause.tar`];
}

// ---------------------------------------------------------------------------------------------
// Set-up.

/** What the control plane needs to start the node's processes. */
export interface RealNodeSetup {
  /** Node name. */
  name: string;
  /** The node's InternalIP: the bridge's gateway address, where the kubelet listens. */
  ip: string;
  /** Pod subnet on the node's bridge. */
  podSubnet: string;
  /** Bridge name. */
  bridge: string;
  /** The kubelet's cgroup root (`/<temp folder name>`). */
  cgroupRoot: string;
  /** containerd's socket. */
  socket: string;
  /** containerd command line. */
  containerd: { bin: string; args: string[] };
  /** kubelet arguments (the binary is `<binDir>/kubelet`). */
  kubeletArgs: string[];
  /** Image tarballs to import once containerd answers. */
  images: string[];
}

/** Options for {@linkcode setupRealNode}. */
export interface RealNodeOptions {
  /** The control plane's temp folder (has `ca.crt` and `kubelet.kubeconfig`). */
  dir: string;
  /** Folder with `kubelet` and `pause`. */
  binDir: string;
  /** A free TCP port for the kubelet's API. */
  kubeletPort: number;
}

/**
 * Prepares a real node under `<dir>/node`: creates the bridge and the cgroup root, records the
 * sysctls, builds the images and writes containerd's, the CNI and the kubelet's configuration.
 * Starts no process. On failure, undoes what it did.
 */
export async function setupRealNode(options: RealNodeOptions): Promise<RealNodeSetup> {
  const { dir, binDir } = options;
  const nodeDir = `${dir}/node`;
  await Deno.mkdir(nodeDir, { recursive: true });
  const socket = `${nodeDir}/containerd.sock`;
  const stateDir = `${nodeDir}/containerd-state`;
  const cgroupName = dir.split("/").pop()!;
  const record: NodeRecord = {
    cgroupName,
    socket,
    stateDir,
    hostState: false,
    network: cgroupName,
  };
  const save = () => Deno.writeTextFileSync(`${nodeDir}/node.json`, JSON.stringify(record));
  save();
  try {
    const net = withHostLock(() => {
      registerHostState(dir);
      record.hostState = true;
      save();
      const net = createBridge();
      record.bridge = net.bridge;
      save();
      return net;
    });
    createCgroupRoot(cgroupName);
    const images = await buildImages(nodeDir, binDir);

    const cniConf = `${nodeDir}/cni/net.d`;
    await Deno.mkdir(cniConf, { recursive: true });
    await Deno.writeTextFile(
      `${cniConf}/10-script-operator.conflist`,
      JSON.stringify(
        {
          cniVersion: "0.4.0",
          name: record.network,
          plugins: [{
            type: "bridge",
            bridge: net.bridge,
            isGateway: true,
            ipMasq: false,
            hairpinMode: true,
            ipam: {
              type: "host-local",
              ranges: [[{ subnet: net.subnet, gateway: net.gateway }]],
              dataDir: `${nodeDir}/cni/ipam`,
            },
          }],
        },
        null,
        2,
      ),
    );

    const containerdConfig = `${nodeDir}/containerd.toml`;
    await Deno.writeTextFile(
      containerdConfig,
      `version = 2
root = "${nodeDir}/containerd-root"
state = "${stateDir}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "${socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "${nodeDir}/containerd-opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${NODE_IMAGES.pause}"
  # The kubelet asks for oom_score_adj -998 on sandboxes; without CAP_SYS_RESOURCE runc cannot
  # set it ("can't get final child's PID from pipe: EOF"). This clamps it instead.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_unprivileged_ports = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "${CNI_BIN_DIR}"
  conf_dir = "${cniConf}"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  Root = "${nodeDir}/runc"
  SystemdCgroup = false
`,
    );

    const kubeletRoot = `${nodeDir}/kubelet`;
    const kubeletConfig = `${nodeDir}/kubelet.yaml`;
    await Deno.writeTextFile(
      kubeletConfig,
      JSON.stringify(
        {
          apiVersion: "kubelet.config.k8s.io/v1beta1",
          kind: "KubeletConfiguration",
          address: net.gateway,
          port: options.kubeletPort,
          readOnlyPort: 0,
          healthzPort: 0,
          // Only the API server (client certificate from the cluster CA) may call the kubelet,
          // and it is authorized by the API server (SubjectAccessReview).
          authentication: {
            anonymous: { enabled: false },
            webhook: { enabled: true },
            x509: { clientCAFile: `${dir}/ca.crt` },
          },
          authorization: { mode: "Webhook" },
          // Kubelet 1.35 refuses cgroup v1 unless told otherwise; containerd runs without systemd.
          failCgroupV1: false,
          cgroupDriver: "cgroupfs",
          cgroupRoot: `/${cgroupName}`,
          containerRuntimeEndpoint: `unix://${socket}`,
          podLogsDir: `${nodeDir}/pod-logs`,
          volumePluginDir: `${nodeDir}/volume-plugins`,
          // The images cannot be pulled again: never collect them, never evict for disk.
          imageGCHighThresholdPercent: 100,
          imageGCLowThresholdPercent: 99,
          evictionHard: {
            "memory.available": "0%",
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
          },
          failSwapOn: false,
          resolvConf: "",
          serializeImagePulls: false,
          registerNode: true,
        },
        null,
        2,
      ),
    );

    return {
      name: REAL_NODE_NAME,
      ip: net.gateway,
      podSubnet: net.subnet,
      bridge: net.bridge,
      cgroupRoot: `/${cgroupName}`,
      socket,
      containerd: {
        bin: findCommand("containerd")!,
        args: [`--config=${containerdConfig}`],
      },
      kubeletArgs: [
        `--config=${kubeletConfig}`,
        `--kubeconfig=${dir}/kubelet.kubeconfig`,
        `--root-dir=${kubeletRoot}`,
        `--cert-dir=${kubeletRoot}/pki`,
        `--hostname-override=${REAL_NODE_NAME}`,
        `--node-ip=${net.gateway}`,
      ],
      images,
    };
  } catch (e) {
    teardownRealNode(dir);
    throw e;
  }
}

/** Imports the image tarballs into containerd's `k8s.io` namespace (where the CRI looks). */
export async function importImages(setup: RealNodeSetup): Promise<void> {
  const ctr = findCommand("ctr")!;
  for (const image of setup.images) {
    const out = await new Deno.Command(ctr, {
      args: ["--address", setup.socket, "-n", "k8s.io", "images", "import", image],
      stdin: "null",
    }).output();
    if (!out.success) {
      const text = new TextDecoder().decode(out.stderr).trim();
      throw new Error(`ctr images import ${image} failed: ${text}`);
    }
  }
}
