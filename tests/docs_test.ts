/**
 * The documentation's promises, checked against the files that define them: the README's two
 * commands are tasks, every relative link and anchor resolves, and the RBAC table, the
 * Deployment's resources, the minimum Kubernetes version, the flags, the ScriptRun fields and the
 * uninstall list agree with deploy/, src/runtime/help.ts and src/desired/crd.ts; design.md's Layout
 * names every folder of src/. No cluster needed.
 * @module
 */
import { parse, parseAllDocuments } from "yaml";
import { assert, assertEquals } from "./harness/assert.ts";
import { HELP } from "../src/runtime/help.ts";
import { scriptRunCrd } from "../src/desired/crd.ts";
import { CONDITION, REASON } from "../src/desired/reasons.ts";

const ROOT = new URL("..", import.meta.url).pathname;

function read(path: string): string {
  return Deno.readTextFileSync(`${ROOT}${path}`);
}

/** The markdown files users read: the README, docs/ and deploy/README.md. */
function markdownFiles(): string[] {
  const docs = [...Deno.readDirSync(`${ROOT}docs`)]
    .filter((e) => e.isFile && e.name.endsWith(".md"))
    .map((e) => `docs/${e.name}`)
    .sort();
  return ["README.md", "deploy/README.md", ...docs];
}

/** The lines of `text` with fenced code blocks blanked, so a `# comment` is no heading. */
function prose(text: string): string[] {
  let fenced = false;
  return text.split("\n").map((line) => {
    if (/^\s*```/.test(line)) {
      fenced = !fenced;
      return "";
    }
    return fenced ? "" : line;
  });
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes. */
function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, "").replace(/ /g, "-");
}

/** The anchors of every heading in `text`. */
function anchors(text: string): Set<string> {
  return new Set(
    prose(text).flatMap((l) => {
      const m = /^#{1,6} (.+)$/.exec(l);
      return m ? [slug(m[1])] : [];
    }),
  );
}

/** The lines of the section under `heading` (any level), up to the next heading of that level or higher. */
function section(text: string, heading: string): string[] {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => /^#+ /.test(l) && l.replace(/^#+ /, "") === heading);
  assert(start >= 0, `heading "${heading}" not found`);
  const level = lines[start].indexOf(" ");
  const end = lines.findIndex((l, i) =>
    i > start && /^#+ /.test(l) && l.indexOf(" ") <= level && !isFenced(lines, i)
  );
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

function isFenced(lines: string[], index: number): boolean {
  return lines.slice(0, index).filter((l) => /^\s*```/.test(l)).length % 2 === 1;
}

/** The body rows of the first table in `lines`, as trimmed cells. */
function tableRows(lines: string[]): string[][] {
  const start = lines.findIndex((l) => l.startsWith("|"));
  assert(start >= 0, "no table found");
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("|")) break;
    // An escaped pipe (`json\|text`) belongs to its cell.
    rows.push(line.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.replace(/\\\|/g, "|").trim()));
  }
  return rows;
}

/** The contents of the `code spans` in `text`. */
function codeSpans(text: string): string[] {
  return [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
}

/** The first fenced block of `lines`, its lines. */
function firstCodeBlock(lines: string[]): string[] {
  const start = lines.findIndex((l) => /^\s*```/.test(l));
  assert(start >= 0, "no code block found");
  const end = lines.findIndex((l, i) => i > start && /^\s*```/.test(l));
  return lines.slice(start + 1, end);
}

Deno.test("docs: the README's two commands are deno tasks, first thing under 'Try it'", () => {
  const commands = firstCodeBlock(section(read("README.md"), "Try it"))
    .map((l) => l.replace(/#.*$/, "").trim()).filter(Boolean);
  assertEquals(commands, ["deno task demo", "deno task test"]);
  const tasks = JSON.parse(read("deno.json")).tasks as Record<string, string>;
  for (const command of commands) {
    const task = command.split(" ")[2];
    assert(tasks[task], `deno.json has no task "${task}"`);
  }
});

Deno.test("docs: the README section the demo points to exists", () => {
  const demo = read("tests/harness/demo.ts");
  const pointers = [...demo.matchAll(/README\.md, '([^']+)'/g)].map((m) => m[1]);
  assert(pointers.length > 0, "tests/harness/demo.ts names no README section");
  for (const heading of pointers) {
    assert(anchors(read("README.md")).has(slug(heading)), `README.md has no heading "${heading}"`);
  }
});

Deno.test("docs: every relative link and anchor resolves, and the README indexes every doc", () => {
  const broken: string[] = [];
  for (const file of markdownFiles()) {
    const dir = file.includes("/") ? file.slice(0, file.lastIndexOf("/") + 1) : "";
    for (const line of prose(read(file))) {
      for (const m of line.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1];
        if (/^[a-z]+:/.test(target)) continue;
        const [path, anchor] = target.split("#");
        const resolved = path ? new URL(path, `file://${ROOT}${dir}`).pathname : `${ROOT}${file}`;
        let stat: Deno.FileInfo | undefined;
        try {
          stat = Deno.statSync(resolved);
        } catch {
          broken.push(`${file}: ${target} (no such file)`);
          continue;
        }
        if (anchor && stat.isFile && !anchors(Deno.readTextFileSync(resolved)).has(anchor)) {
          broken.push(`${file}: ${target} (no such heading)`);
        }
      }
    }
  }
  assertEquals(broken, []);
  const index = read("README.md");
  const missing = markdownFiles().filter((f) => f.startsWith("docs/"))
    .filter((f) => !index.includes(`](${f})`));
  assertEquals(missing, [], "docs/ files the README's documentation index does not link");
});

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

Deno.test("docs: the RBAC table of docs/security.md grants what deploy/rbac-namespaced.yaml grants", () => {
  interface RbacObject {
    kind: string;
    metadata: { name: string; namespace?: string };
    rules?: Rule[];
    roleRef?: { kind: string; name: string };
    subjects?: { kind: string; name: string }[];
  }
  const objects = parseAllDocuments(read("deploy/rbac-namespaced.yaml"))
    .map((d) => d.toJS() as RbacObject).filter(Boolean);
  // The operator's own rights: roles bound to its ServiceAccount (not, say, roles for users).
  const bound = objects.filter((o) =>
    o.kind.endsWith("Binding") &&
    o.subjects?.some((s) => s.kind === "ServiceAccount" && s.name === "script-operator")
  ).map((b) => `${b.roleRef!.kind}/${b.metadata.namespace ?? ""}/${b.roleRef!.name}`);
  const granted = new Set<string>();
  for (const obj of objects) {
    const key = `${obj.kind}/${
      obj.kind === "Role" ? obj.metadata.namespace : ""
    }/${obj.metadata.name}`;
    if (!bound.includes(key)) continue;
    for (const r of obj.rules ?? []) {
      for (const g of r.apiGroups) {
        for (const res of r.resources) for (const v of r.verbs) granted.add(`${g}/${res}:${v}`);
      }
    }
  }
  const documented = new Set<string>();
  const groups = new Map<string, string>();
  for (const [resourceCell, verbsCell] of tableRows(section(read("docs/security.md"), "RBAC"))) {
    const name = codeSpans(resourceCell)[0];
    assert(name, `RBAC row without a resource: ${resourceCell}`);
    // `jobs.batch`: resource and group; `scriptruns/status`: a subresource of a row above.
    const [base, sub] = name.split("/");
    const dot = base.indexOf(".");
    const resource = dot < 0 ? base : base.slice(0, dot);
    const group = dot < 0 ? groups.get(resource) ?? "" : base.slice(dot + 1);
    groups.set(resource, group);
    for (const verb of verbsCell.split(",").map((v) => v.trim())) {
      documented.add(`${group}/${resource}${sub ? `/${sub}` : ""}:${verb}`);
    }
  }
  assertEquals([...documented].sort(), [...granted].sort());
});

/** Mebibytes of a memory quantity such as `384Mi` or `1Gi`. */
function mebibytes(quantity: string): number {
  const m = /^(\d+)(Mi|Gi)$/.exec(quantity);
  assert(m, `unexpected memory quantity ${quantity}`);
  return Number(m[1]) * (m[2] === "Gi" ? 1024 : 1);
}

function deploymentResources(): {
  requests: Record<string, string>;
  limits: Record<string, string>;
} {
  const deployment = parse(read("deploy/deployment.yaml"));
  return deployment.spec.template.spec.containers[0].resources;
}

Deno.test("docs: the Deployment's resources are quoted as deploy/deployment.yaml sets them, in one place", () => {
  const { requests, limits } = deploymentResources();
  const text = section(read("docs/operations.md"), "The Deployment").join("\n").replace(
    /\s+/g,
    " ",
  );
  const m = /requests (\S+) \/ (\S+), limits (\S+) \/ (\S+?)\./.exec(text);
  assert(m, "docs/operations.md, 'The Deployment': no 'requests CPU / MEM, limits CPU / MEM.'");
  assertEquals(m.slice(1), [requests.cpu, requests.memory, limits.cpu, limits.memory]);
  const elsewhere = markdownFiles().filter((f) => f !== "docs/operations.md")
    .filter((f) => [requests.memory, limits.memory].some((q) => read(f).includes(q)));
  assertEquals(elsewhere, [], "the Deployment's memory figures belong in docs/operations.md only");
  // The bench reads the limit from deploy/deployment.yaml; its published table must match.
  const row = tableRows(section(read("docs/benchmarks.md"), "Figures"))
    .find((r) => r[0].includes("vs the Deployment's limit"));
  assert(row, "docs/benchmarks.md: no row 'peak resident memory vs the Deployment's limit'");
  assert(row.some((c) => c === `≤ ${mebibytes(limits.memory)} (deploy/)`), row.join(" | "));
});

/** The first Kubernetes minor version that serves each ValidatingAdmissionPolicy API version. */
const ADMISSION_POLICY_SINCE: Record<string, string> = {
  "admissionregistration.k8s.io/v1": "1.30",
  "admissionregistration.k8s.io/v1beta1": "1.28",
};

Deno.test("docs: the minimum Kubernetes version is the one deploy/policy.yaml's apiVersion needs", () => {
  const policy = parseAllDocuments(read("deploy/policy.yaml")).map((d) => d.toJS())
    .find((o) => o?.kind === "ValidatingAdmissionPolicy");
  assert(policy, "deploy/policy.yaml has no ValidatingAdmissionPolicy");
  const since = ADMISSION_POLICY_SINCE[policy.apiVersion];
  assert(since, `add ${policy.apiVersion} to ADMISSION_POLICY_SINCE`);
  const stated = markdownFiles().flatMap((f) =>
    [...read(f).matchAll(/Kubernetes (1\.\d+)/g)].map((m) => `${f}: ${m[1]}`)
  );
  assert(
    stated.some((s) => s.startsWith("docs/operations.md:")),
    "operations.md states no version",
  );
  assertEquals(stated.filter((s) => !s.endsWith(`: ${since}`)), []);
});

Deno.test("docs: docs/cli.md lists exactly the flags of --help", () => {
  const helpFlags = new Set(
    HELP.split("\n").flatMap((l) => [...l.matchAll(/^\s+(?:(-\w), )?(--[a-z][a-z-]*)/g)])
      .flatMap((m) => m[1] ? [m[1], m[2]] : [m[2]]),
  );
  const documented = new Set(
    tableRows(section(read("docs/cli.md"), "Flags")).flatMap(([cell]) =>
      codeSpans(cell).map((c) => c.split(/[ =]/)[0])
    ),
  );
  assertEquals([...documented].sort(), [...helpFlags].sort());
});

Deno.test("docs: docs/scriptrun.md documents every field, condition and reason", () => {
  const version = (scriptRunCrd() as {
    spec: { versions: { schema: { openAPIV3Schema: { properties: Record<string, unknown> } } }[] };
  }).spec.versions[0];
  const props = version.schema.openAPIV3Schema.properties as Record<
    string,
    { properties: Record<string, unknown> }
  >;
  const text = read("docs/scriptrun.md");
  const fields = (heading: string) =>
    tableRows(section(text, heading)).flatMap(([cell]) => codeSpans(cell)).sort();
  assertEquals(fields("Spec"), Object.keys(props.spec.properties).sort());
  assertEquals(fields("Status"), Object.keys(props.status.properties).sort());
  const conditions = fields("Conditions");
  assertEquals(Object.values(CONDITION).filter((c) => !conditions.includes(c)), []);
  const reasons = fields("Reasons");
  assertEquals(Object.values(REASON).filter((r) => !reasons.includes(r)), []);
});

Deno.test("docs: the uninstall table names every object that kubectl apply -k deploy/ creates", () => {
  const rows = tableRows(section(read("docs/operations.md"), "Uninstall")).map((r) => r.join(" "));
  const kustomization = parse(read("deploy/kustomization.yaml"));
  const component = parse(read("deploy/cluster-wide/kustomization.yaml"));
  const files = [
    ...kustomization.resources as string[],
    ...(component.resources as string[]).map((f) => `cluster-wide/${f}`),
  ];
  const missing: string[] = [];
  for (const file of files) {
    for (const doc of parseAllDocuments(read(`deploy/${file}`))) {
      const obj = doc.toJS() as { kind: string; metadata: { name: string; namespace?: string } };
      if (!obj) continue;
      const { kind, metadata: { name, namespace } } = obj;
      // Objects in the operator's namespace go with it: its row says so.
      const where = namespace === "script-operator" ? ["Namespace", "script-operator"] : [
        kind,
        name,
      ];
      const found = rows.some((r) =>
        new RegExp(`\\b${where[0]}\\b`).test(r) && r.includes(`\`${where[1]}\``)
      );
      if (!found) missing.push(`${file}: ${kind} ${namespace ?? ""}/${name}`);
    }
  }
  assertEquals(missing, []);
});

Deno.test("docs: LICENSE is the Apache License 2.0 and deno.json says so", () => {
  const license = read("LICENSE");
  assert(/^\s*Apache License\n\s*Version 2\.0, January 2004\n/.test(license), "LICENSE header");
  assert(license.includes("END OF TERMS AND CONDITIONS"), "LICENSE is not the full text");
  assertEquals(JSON.parse(read("deno.json")).license, "Apache-2.0");
});

Deno.test("docs: say why, not history: no commit hashes or issue numbers", () => {
  const found = markdownFiles().flatMap((f) =>
    prose(read(f)).flatMap((l, i) =>
      /\bcommit [0-9a-f]{7,40}\b|\bissue #?\d+|\bthis session\b/i.test(l)
        ? [`${f}:${i + 1}: ${l}`]
        : []
    )
  );
  assertEquals(found, []);
});

/** The repository paths (from the root) that `file`'s relative imports name. */
function localImports(file: string): string[] {
  const dir = file.slice(0, file.lastIndexOf("/") + 1);
  return [...read(file).matchAll(/(?:\bfrom|\bimport)\s*\(?\s*"(\.\.?\/[^"]+)"/g)]
    .map((m) => new URL(m[1], `file://${ROOT}${dir}`).pathname.slice(ROOT.length));
}

/** Every file under `dir` (a path from the root), recursively. */
function filesUnder(dir: string): string[] {
  return [...Deno.readDirSync(`${ROOT}${dir}`)].flatMap((e) =>
    e.isDirectory ? filesUnder(`${dir}/${e.name}`) : [`${dir}/${e.name}`]
  );
}

Deno.test("docs: design.md's Layout names every folder of src/, and the imports keep its rules", () => {
  const listed = tableRows(section(read("docs/design.md"), "Layout"))
    .map(([folder]) => folder.match(/`([^`]+)`/)?.[1]);
  const folders = [...Deno.readDirSync(`${ROOT}src`)].filter((e) => e.isDirectory)
    .map((e) => `src/${e.name}/`);
  assertEquals(folders.filter((f) => !listed.includes(f)), [], "folders of src/ not in Layout");
  // Imports point down this order; folders of one level (reconcile/, store/) never import each
  // other; the files at the root of src/ are shared by all and import no folder.
  const level: Record<string, number> = {
    desired: 0,
    api: 1,
    reconcile: 2,
    store: 2,
    controller: 3,
    runtime: 4,
  };
  const folderOf = (path: string) => path.match(/^src\/([^/]+)\//)?.[1];
  const modules = filesUnder("src").filter((f) => f.endsWith(".ts") && !f.endsWith("_test.ts"));
  const breaks = modules.flatMap((file) =>
    localImports(file).filter((target) => {
      if (!target.startsWith("src/")) return true;
      const from = folderOf(file);
      const to = folderOf(target);
      if (to === undefined || from === to) return false;
      return from === undefined || level[to] >= level[from];
    }).map((target) => `${file} imports ${target}`)
  );
  assertEquals(breaks, [], "an import that goes up, sideways or out of src/");
});
