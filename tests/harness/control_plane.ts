/**
 * A real, local Kubernetes control plane for tests: etcd + kube-apiserver, and by default
 * kube-controller-manager + kube-scheduler + kwok (fake nodes that run pods), with TLS and
 * client-certificate authentication everywhere. Every start gets a fresh temp folder and free
 * loopback ports, so several control planes can run at once.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import {
  chooseNode,
  importImages,
  type NodeKind,
  REAL_NODE_NAME,
  type RealNodeSetup,
  setupRealNode,
  teardownRealNode,
} from "./real_node.ts";

/** Annotation (key=value) that makes kwok manage a Node. */
export const KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node=fake";

/** Name of the fake Node the harness creates when Jobs are enabled. */
export const FAKE_NODE_NAME = "kwok-node-0";

/** Controllers kube-controller-manager runs (names as of Kubernetes v1.35). */
export const CONTROLLERS = [
  "job-controller",
  "garbage-collector-controller",
  "serviceaccount-controller",
  "serviceaccount-token-controller",
  "namespace-controller",
  "ttl-after-finished-controller",
  "root-ca-certificate-publisher-controller",
  // The shipping tests run deploy/deployment.yaml for real: Deployment -> ReplicaSet -> Pod.
  "deployment-controller",
  "replicaset-controller",
  // The Helm chart's ClusterRoles add ScriptRuns to the built-in edit and view roles.
  "clusterrole-aggregation-controller",
];

const BUILD_SCRIPT = fileURLToPath(new URL("../control_plane/build.sh", import.meta.url));
const KWOK_STAGES = fileURLToPath(new URL("../fixtures/kwok/stages.yaml", import.meta.url));
const SERVICE_CIDR = "10.0.0.0/24";
const ISSUER = "https://kubernetes.default.svc.cluster.local";

/** Options for {@linkcode startControlPlane}. */
export interface ControlPlaneOptions {
  /**
   * Folder with the binaries. Default: `$KUBEBUILDER_ASSETS` if set (envtest binaries: etcd and
   * kube-apiserver only, so no Jobs), otherwise {@linkcode ensureBinaries}.
   */
  binDir?: string;
  /** Run kube-controller-manager, kube-scheduler and a node so Jobs progress (default true). */
  withJobs?: boolean;
  /**
   * The node that runs pods when Jobs progress: `kwok` (default: simulated, no container runs),
   * `real` (containerd + kubelet, see `real_node.ts`; throws if it cannot run here) or `auto`
   * (`SCRIPT_OPERATOR_TEST_NODE` if set, else real where it can run, else kwok with one line on
   * stderr saying why).
   */
  node?: NodeKind | "auto";
  /** Folder for the processes' logs, kept after stop (default: `<dir>/logs`, removed on stop). */
  logDir?: string;
  /** Print no progress lines on stderr. */
  quiet?: boolean;
  /** Stop on SIGINT/SIGTERM and exit the process (default true). */
  handleSignals?: boolean;
  /** Give up starting after this long (default 90 s). */
  timeoutMs?: number;
}

/** Milliseconds since the start call at which each step finished. */
export interface ControlPlaneTimings {
  /** Certificates and keys written. */
  certs: number;
  /** `/readyz` answered ok. */
  apiReady: number;
  /** The Node (fake or real) is Ready (only with Jobs). */
  nodeReady?: number;
  /** The `default` ServiceAccount exists in `default` (only with Jobs). */
  serviceAccount?: number;
  /** Everything ready. */
  total: number;
}

/** A running control plane. */
export interface ControlPlane {
  /** Temp folder holding certificates, kubeconfigs, etcd data and (by default) logs. */
  dir: string;
  /** Folder with the processes' logs. */
  logDir: string;
  /** Folder with the binaries (has kubectl unless envtest assets lack it). */
  binDir: string;
  /** Admin kubeconfig (client certificate, group system:masters). */
  kubeconfigPath: string;
  /** API server URL, `https://127.0.0.1:<port>`. */
  server: string;
  /** PEM of the cluster CA. */
  caPem: string;
  /** Path of the cluster CA file. */
  caPath: string;
  /** Whether Jobs run to completion (job controller, scheduler and a node are running). */
  jobsProgress: boolean;
  /** The node that runs pods: `kwok` (simulated), `real` (containers run) or `none` (no Jobs). */
  node: NodeKind | "none";
  /** When `node` was `auto` and the real node could not run: why (the line printed). */
  nodeFallback?: string;
  /** The real node, when `node` is `real`. */
  realNode?: RealNodeInfo;
  /** Startup timings. */
  timings: ControlPlaneTimings;
  /** Description (with log tail) of a process that exited unexpectedly, if any. */
  failure(): string | undefined;
  /** Resolves with {@linkcode failure}'s text when a process exits unexpectedly. */
  died: Promise<string>;
  /** Stops all processes (SIGTERM, SIGKILL after 5 s) and removes the temp folder. */
  stop(): Promise<void>;
}

/** The real node of a control plane. */
export interface RealNodeInfo {
  /** Node name. */
  name: string;
  /** Its InternalIP: the gateway address of its pod bridge, reachable from pods and the host. */
  ip: string;
  /** Pod subnet (CIDR) on its bridge. */
  podSubnet: string;
  /** The bridge's name. */
  bridge: string;
  /** The kubelet's cgroup root: pods' cgroups are under `<hierarchy>/<cgroupRoot>/kubepods`. */
  cgroupRoot: string;
  /** containerd's socket (`ctr --address <socket> -n k8s.io ...`). */
  containerdSocket: string;
}

/** A spawned control-plane process. */
interface Proc {
  name: string;
  child: Deno.ChildProcess;
  logPath: string;
  status?: Deno.CommandStatus;
  done: Promise<void>;
}

/**
 * Builds the binaries if needed (`tests/control_plane/build.sh`, progress on stderr) and returns
 * the folder holding them.
 */
export async function ensureBinaries(): Promise<string> {
  const out = await new Deno.Command("bash", {
    args: [BUILD_SCRIPT],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  if (!out.success) {
    throw new Error(`${BUILD_SCRIPT} failed with exit code ${out.code}`);
  }
  return `${lines[lines.length - 1]}/bin`;
}

/** Path of `name` on PATH, or undefined. */
function which(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir && exists(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return undefined;
}

/** Whether a file or folder exists at `path`. */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

const setpriv = which("setpriv");

/**
 * Command and arguments that run `cmd` so it gets SIGKILL when this process dies (via
 * `setpriv --pdeathsig KILL` when available).
 */
export function withParentDeathSignal(cmd: string, args: string[]): [string, string[]] {
  return setpriv ? [setpriv, ["--pdeathsig", "KILL", "--", cmd, ...args]] : [cmd, args];
}

function spawn(
  name: string,
  bin: string,
  args: string[],
  logDir: string,
  env: Record<string, string> = {},
): Proc {
  const logPath = `${logDir}/${name}.log`;
  // The shell sends both streams straight to the log file; `exec` keeps the pid.
  const [cmd, cmdArgs] = withParentDeathSignal("sh", [
    "-c",
    'exec "$0" "$@" >>"$SO_LOG_FILE" 2>&1',
    bin,
    ...args,
  ]);
  const child = new Deno.Command(cmd, {
    args: cmdArgs,
    env: { ...env, SO_LOG_FILE: logPath },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const proc: Proc = { name, child, logPath, done: Promise.resolve() };
  proc.done = child.status.then((status) => {
    proc.status = status;
  });
  return proc;
}

/** The last `n` lines of a log file. */
async function tail(path: string, n = 30): Promise<string> {
  try {
    const lines = (await Deno.readTextFile(path)).trimEnd().split("\n");
    return lines.slice(-n).join("\n");
  } catch (e) {
    return `(no log: ${e instanceof Error ? e.message : e})`;
  }
}

/** Reserves `n` distinct free loopback ports (bind to port 0, then release). */
export function freePorts(n: number): number[] {
  const listeners = Array.from(
    { length: n },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

const OPENSSL_CNF = `[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, IP:10.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
`;

async function openssl(dir: string, args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdin: "null" }).output();
  if (!out.success) {
    throw new Error(
      `openssl ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
}

/** Creates `<name>.crt`/`<name>.key` in `dir`: an EC P-256 certificate signed by `ca`. */
function certificate(dir: string, name: string, subject: string, ext: string): Promise<void> {
  return openssl(dir, [
    ...["req", "-x509", "-new", "-noenc", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    ...["-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "30", "-subj", subject],
    ...["-config", "openssl.cnf", "-extensions", ext],
    ...(ext === "ca_ext" ? [] : ["-CA", "ca.crt", "-CAkey", "ca.key"]),
  ]);
}

/** Writes all certificates, keys and kubeconfigs for a control plane into `dir`. */
async function writeCredentials(dir: string, server: string, users: Record<string, string>) {
  await Deno.writeTextFile(`${dir}/openssl.cnf`, OPENSSL_CNF);
  await certificate(dir, "ca", "/CN=script-operator-test-ca", "ca_ext");
  await Promise.all([
    certificate(dir, "apiserver", "/CN=kube-apiserver", "server_ext"),
    ...Object.entries(users).map(([name, subject]) =>
      certificate(dir, name, subject, "client_ext")
    ),
    // ServiceAccount tokens are signed with ES256: an EC key is made in ms, RSA takes ~0.3 s.
    openssl(dir, [
      ...["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key"],
    ]).then(() => openssl(dir, ["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"])),
  ]);
  const caPem = await Deno.readTextFile(`${dir}/ca.crt`);
  const b64 = (s: string) => btoa(s);
  for (const name of Object.keys(users)) {
    const [cert, key] = await Promise.all([
      Deno.readTextFile(`${dir}/${name}.crt`),
      Deno.readTextFile(`${dir}/${name}.key`),
    ]);
    await Deno.writeTextFile(
      `${dir}/${name}.kubeconfig`,
      `apiVersion: v1
kind: Config
clusters:
- name: script-operator-test
  cluster:
    server: ${server}
    certificate-authority-data: ${b64(caPem)}
users:
- name: ${name}
  user:
    client-certificate-data: ${b64(cert)}
    client-key-data: ${b64(key)}
contexts:
- name: script-operator-test
  context:
    cluster: script-operator-test
    user: ${name}
current-context: script-operator-test
`,
    );
  }
  return caPem;
}

interface Running {
  stop(): Promise<void>;
  killNow(): void;
  handleSignals: boolean;
}

/** Control planes of this process that are not stopped yet. */
const running = new Set<Running>();

function onSignal(signal: "SIGINT" | "SIGTERM") {
  const planes = [...running].filter((cp) => cp.handleSignals);
  Promise.allSettled(planes.map((cp) => cp.stop())).finally(() =>
    Deno.exit(signal === "SIGINT" ? 130 : 143)
  );
}
const onSigint = () => onSignal("SIGINT");
const onSigterm = () => onSignal("SIGTERM");
/** Last resort when the process exits without stopping: kill synchronously, remove folders. */
const onUnload = () => {
  for (const cp of running) cp.killNow();
};

/** Adds or removes a control plane; (un)installs the signal and unload handlers. */
function track(cp: Running, add: boolean) {
  const signalsBefore = [...running].some((p) => p.handleSignals);
  const sizeBefore = running.size;
  if (add) running.add(cp);
  else running.delete(cp);
  const signalsAfter = [...running].some((p) => p.handleSignals);
  if (sizeBefore === 0 && running.size > 0) globalThis.addEventListener("unload", onUnload);
  if (sizeBefore > 0 && running.size === 0) globalThis.removeEventListener("unload", onUnload);
  if (!signalsBefore && signalsAfter) {
    Deno.addSignalListener("SIGINT", onSigint);
    Deno.addSignalListener("SIGTERM", onSigterm);
  }
  if (signalsBefore && !signalsAfter) {
    Deno.removeSignalListener("SIGINT", onSigint);
    Deno.removeSignalListener("SIGTERM", onSigterm);
  }
}

const DIR_PREFIX = "script-operator-cp-";

/**
 * Removes temp folders of control planes whose owning process is gone (killed hard, so its
 * cleanup never ran). Each folder names its owner in `owner.pid`; needs /proc (Linux).
 */
async function removeStaleDirs(): Promise<void> {
  if (!exists("/proc/self")) return;
  const tmp = Deno.env.get("TMPDIR") || "/tmp";
  for await (const entry of Deno.readDir(tmp)) {
    if (!entry.isDirectory || !entry.name.startsWith(DIR_PREFIX)) continue;
    const dir = `${tmp}/${entry.name}`;
    const pid = await Deno.readTextFile(`${dir}/owner.pid`).catch(() => "");
    if (pid.trim() && !exists(`/proc/${pid.trim()}`)) {
      // A real node killed hard leaves shims, mounts, a bridge and cgroups: undo them first, and
      // never remove a folder with something still mounted in it.
      const left = teardownRealNode(dir);
      if (left.some((p) => p.startsWith("still mounted"))) continue;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts a control plane and waits until it is usable: `/readyz` ok and, with Jobs, the fake
 * Node Ready and the `default` ServiceAccount present. Throws (after cleaning up) with the
 * failing process's log tail if a process dies or startup times out.
 */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const t0 = performance.now();
  const since = () => Math.round(performance.now() - t0);
  const say = (msg: string) => options.quiet || console.error(`control plane: ${msg}`);
  const envtest = options.binDir === undefined ? Deno.env.get("KUBEBUILDER_ASSETS") : undefined;
  const binDir = options.binDir ?? envtest ?? await ensureBinaries();
  const hasJobBinaries = ["kube-controller-manager", "kube-scheduler", "kwok"]
    .every((b) => exists(`${binDir}/${b}`));
  if (options.withJobs && !hasJobBinaries) {
    throw new Error(`withJobs: ${binDir} lacks kube-controller-manager, kube-scheduler or kwok`);
  }
  const withJobs = (options.withJobs ?? true) && hasJobBinaries;
  let nodeKind: NodeKind | "none" = "none";
  let nodeFallback: string | undefined;
  if (withJobs) {
    const wanted = options.node ?? "kwok";
    if (wanted === "kwok") {
      nodeKind = "kwok";
    } else {
      // Throws when the real node is forced (option or SCRIPT_OPERATOR_TEST_NODE) but cannot run.
      const choice = chooseNode(binDir, wanted === "real" ? "real" : undefined);
      nodeKind = choice.kind;
      nodeFallback = choice.fallbackLine;
      if (nodeFallback) console.error(nodeFallback);
    }
  }
  const real = nodeKind === "real";
  for (const b of ["etcd", "kube-apiserver"]) {
    if (!exists(`${binDir}/${b}`)) throw new Error(`${binDir}/${b} not found`);
  }

  await removeStaleDirs().catch(() => {});
  const dir = await Deno.makeTempDir({ prefix: DIR_PREFIX });
  await Deno.writeTextFile(`${dir}/owner.pid`, String(Deno.pid));
  const logDir = options.logDir ?? `${dir}/logs`;
  const procs: Proc[] = [];
  /** kubelet and containerd: stopped first, then the node's host state is undone. */
  const nodeProcs: Proc[] = [];
  let stopping = false;
  let stopped: Promise<void> | undefined;
  let httpClient: Deno.HttpClient | undefined;
  let resolveDied: (text: string) => void = () => {};
  const died = new Promise<string>((resolve) => resolveDied = resolve);
  let failureText: string | undefined;
  let realNode: RealNodeInfo | undefined;
  /** The real node's set-up while it runs: stop waits for it before undoing it. */
  let nodeSetupPending: Promise<unknown> | undefined;

  const handle: Running = {
    handleSignals: options.handleSignals ?? true,
    killNow() {
      for (const p of procs) {
        try {
          p.child.kill("SIGKILL");
        } catch { /* already exited */ }
      }
      if (teardownRealNode(dir).some((p) => p.startsWith("still mounted"))) return;
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch { /* already gone */ }
    },
    stop() {
      stopped ??= stopAll();
      return stopped;
    },
  };
  async function stopAll(): Promise<void> {
    stopping = true;
    let keepDir = false;
    await nodeSetupPending?.catch(() => {});
    httpClient?.close();
    const kill = (sig: Deno.Signal) => (p: Proc) => {
      if (p.status) return;
      try {
        p.child.kill(sig);
      } catch { /* already exited */ }
    };
    // The node first (kubelet, then containerd), then the other clients, then the API server,
    // then etcd: each gets 5 s before SIGKILL.
    const others = procs.slice(2).filter((p) => !nodeProcs.includes(p));
    const groups = [
      nodeProcs.filter((p) => p.name === "kubelet"),
      nodeProcs.filter((p) => p.name !== "kubelet"),
      others,
      procs.slice(1, 2),
      procs.slice(0, 1),
    ];
    for (const [i, group] of groups.entries()) {
      group.forEach(kill("SIGTERM"));
      const timer = setTimeout(() => group.forEach(kill("SIGKILL")), 5000);
      await Promise.all(group.map((p) => p.done));
      clearTimeout(timer);
      if (i === 1) {
        const left = teardownRealNode(dir);
        if (left.length > 0) {
          console.error(`control plane: the real node's teardown left: ${left.join("; ")}`);
        }
        if (left.some((p) => p.startsWith("still mounted"))) keepDir = true;
      }
    }
    if (!keepDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    track(handle, false);
  }
  track(handle, true);

  const describeDeath = async (p: Proc) =>
    `${p.name} exited with code ${p.status?.code}${
      p.status?.signal ? ` (signal ${p.status.signal})` : ""
    }; last lines of ${p.logPath}:\n${await tail(p.logPath)}`;
  const start = (name: string, bin: string, args: string[], env?: Record<string, string>) => {
    const p = spawn(name, bin.startsWith("/") ? bin : `${binDir}/${bin}`, args, logDir, env);
    procs.push(p);
    p.done.then(async () => {
      if (stopping) return;
      failureText ??= await describeDeath(p);
      resolveDied(failureText);
    });
    return p;
  };
  const checkAlive = async () => {
    const dead = procs.find((p) => p.status);
    if (dead) throw new Error(`control plane: ${await describeDeath(dead)}`);
  };
  const waitUntil = async (what: string, deadline: number, ok: () => Promise<boolean>) => {
    let last = "";
    while (true) {
      await checkAlive();
      try {
        if (await ok()) return;
      } catch (e) {
        last = e instanceof Error ? e.message : String(e);
      }
      if (performance.now() > deadline) {
        const tails = await Promise.all(
          procs.map(async (p) => `--- ${p.logPath}:\n${await tail(p.logPath)}`),
        );
        throw new Error(
          `control plane: timed out waiting for ${what}${last ? ` (last error: ${last})` : ""}\n${
            tails.join("\n")
          }`,
        );
      }
      await sleep(50);
    }
  };

  try {
    await Deno.mkdir(logDir, { recursive: true });
    const [etcdPort, peerPort, apiPort, kubeletPort] = freePorts(4);
    const server = `https://127.0.0.1:${apiPort}`;
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    start("etcd", "etcd", [
      `--data-dir=${dir}/etcd`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=default=${peerUrl}`,
      "--unsafe-no-fsync",
    ]);
    const caPem = await writeCredentials(dir, server, {
      admin: "/O=system:masters/CN=kubernetes-admin",
      ...withJobs
        ? {
          "kube-controller-manager": "/CN=system:kube-controller-manager",
          "kube-scheduler": "/CN=system:kube-scheduler",
          ...real
            ? {
              kubelet: `/O=system:nodes/CN=system:node:${REAL_NODE_NAME}`,
              "apiserver-kubelet-client": "/O=system:masters/CN=kube-apiserver-kubelet-client",
            }
            : { kwok: "/O=system:masters/CN=kwok" },
        }
        : {},
    });
    // Built while the API server starts (images, bridge, cgroups, configuration).
    const nodeSetup: Promise<RealNodeSetup> | undefined = real
      ? setupRealNode({ dir, binDir, kubeletPort })
      : undefined;
    nodeSetupPending = nodeSetup?.catch(() => {}); // awaited below; a failure is reported there
    const timings: ControlPlaneTimings = { certs: since(), apiReady: 0, total: 0 };

    start("kube-apiserver", "kube-apiserver", [
      `--etcd-servers=${etcdUrl}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${apiPort}`,
      `--cert-dir=${dir}/apiserver-certs`,
      `--tls-cert-file=${dir}/apiserver.crt`,
      `--tls-private-key-file=${dir}/apiserver.key`,
      `--client-ca-file=${dir}/ca.crt`,
      "--authorization-mode=Node,RBAC",
      `--service-account-issuer=${ISSUER}`,
      `--service-account-key-file=${dir}/sa.pub`,
      `--service-account-signing-key-file=${dir}/sa.key`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      "--endpoint-reconciler-type=none",
      // It taints new Nodes not-ready until node-lifecycle-controller (not run) removes it.
      "--disable-admission-plugins=TaintNodesByCondition",
      "--allow-privileged=true",
      "--profiling=false",
      // `kubectl logs` and `exec` reach the real node's kubelet at its InternalIP (its bridge's
      // gateway address), with a client certificate the kubelet checks against the cluster CA.
      ...real
        ? [
          `--kubelet-client-certificate=${dir}/apiserver-kubelet-client.crt`,
          `--kubelet-client-key=${dir}/apiserver-kubelet-client.key`,
          "--kubelet-preferred-address-types=InternalIP",
        ]
        : [],
    ]);

    const deadline = performance.now() + (options.timeoutMs ?? 90_000);
    const [adminCert, adminKey] = await Promise.all([
      Deno.readTextFile(`${dir}/admin.crt`),
      Deno.readTextFile(`${dir}/admin.key`),
    ]);
    httpClient = Deno.createHttpClient({ caCerts: [caPem], cert: adminCert, key: adminKey });
    const client = httpClient;
    const api = async (path: string, init: RequestInit = {}) => {
      const res = await fetch(`${server}${path}`, {
        ...init,
        client,
        signal: AbortSignal.timeout(5000),
        headers: { "content-type": "application/json" },
      });
      const text = await res.text();
      return { status: res.status, text };
    };
    await waitUntil("kube-apiserver /readyz", deadline, async () => {
      return (await api("/readyz")).status === 200;
    });
    timings.apiReady = since();
    say(`API ready after ${(timings.apiReady / 1000).toFixed(1)}s`);

    if (withJobs) {
      start("kube-controller-manager", "kube-controller-manager", [
        `--kubeconfig=${dir}/kube-controller-manager.kubeconfig`,
        `--controllers=${CONTROLLERS.join(",")}`,
        "--use-service-account-credentials=true",
        `--service-account-private-key-file=${dir}/sa.key`,
        `--root-ca-file=${dir}/ca.crt`,
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        "--secure-port=0",
      ]);
      start("kube-scheduler", "kube-scheduler", [
        `--kubeconfig=${dir}/kube-scheduler.kubeconfig`,
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        "--secure-port=0",
      ]);
      let nodeName = FAKE_NODE_NAME;
      if (nodeSetup) {
        const setup = await nodeSetup;
        nodeName = setup.name;
        realNode = {
          name: setup.name,
          ip: setup.ip,
          podSubnet: setup.podSubnet,
          bridge: setup.bridge,
          cgroupRoot: setup.cgroupRoot,
          containerdSocket: setup.socket,
        };
        nodeProcs.push(start("containerd", setup.containerd.bin, setup.containerd.args));
        await waitUntil(
          "containerd's socket",
          deadline,
          () => Promise.resolve(exists(setup.socket)),
        );
        await importImages(setup);
        nodeProcs.push(start("kubelet", "kubelet", setup.kubeletArgs));
      } else {
        start("kwok", "kwok", [
          `--kubeconfig=${dir}/kwok.kubeconfig`,
          `--config=${KWOK_STAGES}`,
          `--manage-nodes-with-annotation-selector=${KWOK_NODE_ANNOTATION}`,
          "--cidr=10.244.0.0/16",
          "--node-ip=10.240.0.1",
        ], { HOME: dir }); // so kwok ignores a user's ~/.kwok/kwok.yaml

        const [annotationKey, annotationValue] = KWOK_NODE_ANNOTATION.split("=");
        const node = {
          apiVersion: "v1",
          kind: "Node",
          metadata: {
            name: FAKE_NODE_NAME,
            annotations: { [annotationKey]: annotationValue },
            labels: {
              "kubernetes.io/hostname": FAKE_NODE_NAME,
              "kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64",
              type: "kwok",
            },
          },
          status: {
            allocatable: { cpu: "1000", memory: "1Ti", pods: "1000" },
            capacity: { cpu: "1000", memory: "1Ti", pods: "1000" },
          },
        };
        const created = await api("/api/v1/nodes", { method: "POST", body: JSON.stringify(node) });
        if (created.status !== 201) {
          throw new Error(
            `control plane: creating Node failed (${created.status}): ${created.text}`,
          );
        }
      }
      await Promise.all([
        waitUntil(`the Node to be Ready (${nodeKind})`, deadline, async () => {
          const res = await api(`/api/v1/nodes/${nodeName}`);
          const conditions: { type: string; status: string }[] =
            JSON.parse(res.text).status?.conditions ?? [];
          return conditions.some((c) => c.type === "Ready" && c.status === "True");
        }).then(() => timings.nodeReady = since()),
        waitUntil(
          "ServiceAccount default/default (kube-controller-manager)",
          deadline,
          async () => {
            return (await api("/api/v1/namespaces/default/serviceaccounts/default")).status === 200;
          },
        ).then(() => timings.serviceAccount = since()),
      ]);
    }
    timings.total = since();
    say(`ready in ${(timings.total / 1000).toFixed(1)}s (${server}, ${dir})`);
    return {
      dir,
      logDir,
      binDir,
      kubeconfigPath: `${dir}/admin.kubeconfig`,
      server,
      caPem,
      caPath: `${dir}/ca.crt`,
      jobsProgress: withJobs,
      node: nodeKind,
      nodeFallback,
      realNode,
      timings,
      failure: () => failureText,
      died,
      stop: handle.stop,
    };
  } catch (e) {
    await handle.stop();
    throw e;
  }
}
