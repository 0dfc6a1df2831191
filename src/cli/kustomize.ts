// Renders deploy/ the way `kustomize build` would, for the few kustomize features deploy/ uses, so that
// `egressgw manifests` works without a kustomize binary and deploy/ stays the one source of truth.
// Anything outside that subset is an error rather than a silent difference from real kustomize.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseAllDocuments } from 'yaml';

export type Manifest = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
};

interface ImageRule {
  name: string;
  newName?: string;
  newTag?: string;
  digest?: string;
}

/** kustomize's `labels` entry: `pairs` on every object's metadata, and with includeTemplates on pod templates. */
interface LabelRule {
  pairs: Record<string, string>;
  includeSelectors?: boolean;
  includeTemplates?: boolean;
}

/** kustomize's `patches` entry, in the one form we render: an inline JSON 6902 patch on a kind + name. */
interface PatchRule {
  target?: { kind?: string; name?: string; group?: string; version?: string; namespace?: string };
  patch?: string;
  path?: string;
}

interface JsonPatchOp {
  op: string;
  path: string;
  value?: unknown;
}

interface Kustomization {
  resources?: string[];
  labels?: LabelRule[];
  patches?: PatchRule[];
  namespace?: string;
  images?: ImageRule[];
  replicas?: Array<{ name: string; count: number }>;
  configMapGenerator?: Array<{
    name: string;
    files?: string[];
    literals?: string[];
    options?: { disableNameSuffixHash?: boolean; labels?: Record<string, string>; annotations?: Record<string, string> };
  }>;
}

const SUPPORTED_KEYS = new Set(['apiVersion', 'kind', 'resources', 'namespace', 'images', 'replicas', 'configMapGenerator', 'labels', 'patches']);

/** Kinds that are not namespaced, among those an install can contain. */
const CLUSTER_SCOPED = new Set([
  'Namespace',
  'CustomResourceDefinition',
  'ClusterRole',
  'ClusterRoleBinding',
  'PriorityClass',
  'StorageClass',
  'ValidatingWebhookConfiguration',
  'MutatingWebhookConfiguration',
  'ValidatingAdmissionPolicy',
  'ValidatingAdmissionPolicyBinding',
  'APIService',
]);

export const isClusterScoped = (m: Manifest): boolean => CLUSTER_SCOPED.has(m.kind);

/** Reads YAML documents (skipping empty ones); parse errors name the file. */
export function readManifests(file: string, text = readFileSync(file, 'utf8')): Manifest[] {
  const out: Manifest[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    if (typeof value !== 'object' || Array.isArray(value)) throw new Error(`${file}: a document is not a mapping`);
    const m = value as Manifest;
    if (typeof m.kind !== 'string' || typeof m.apiVersion !== 'string' || typeof m.metadata?.name !== 'string') {
      throw new Error(`${file}: a document lacks apiVersion, kind or metadata.name`);
    }
    out.push(m);
  }
  return out;
}

/** The file names kustomize accepts for a kustomization, in its order. */
const KUSTOMIZATION_FILES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'];

function readKustomization(dir: string): Kustomization {
  const file = KUSTOMIZATION_FILES.map((f) => join(dir, f)).find((f) => existsSync(f));
  if (!file) throw new Error(`${dir}: a directory resource needs a kustomization.yaml`);
  const text = readFileSync(file, 'utf8');
  const docs = parseAllDocuments(text);
  const k = (docs[0]?.toJS() ?? {}) as Kustomization & Record<string, unknown>;
  const unknown = Object.keys(k).filter((key) => !SUPPORTED_KEYS.has(key));
  if (unknown.length > 0) throw new Error(`${file}: unsupported kustomize field(s) ${unknown.join(', ')} (src/cli/kustomize.ts renders a subset)`);
  return k;
}

type Workload = { spec?: { replicas?: number; template?: { spec?: { containers?: Array<{ image?: string }>; initContainers?: Array<{ image?: string }> } } } };

/** `name[:tag][@digest]` → the name part (a registry port's colon is not a tag). */
export function imageName(ref: string): string {
  const noDigest = ref.split('@')[0]!;
  const slash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  return colon > slash ? noDigest.slice(0, colon) : noDigest;
}

function applyImage(ref: string, rule: ImageRule): string {
  if (imageName(ref) !== rule.name) return ref;
  const name = rule.newName ?? rule.name;
  if (rule.digest) return `${name}@${rule.digest}`;
  if (rule.newTag) return `${name}:${rule.newTag}`;
  const rest = ref.slice(imageName(ref).length);
  return name + rest;
}

export function setImages(manifests: Manifest[], rules: ImageRule[]): void {
  for (const m of manifests) {
    const pod = (m as Workload).spec?.template?.spec;
    if (!pod) continue;
    for (const c of [...(pod.containers ?? []), ...(pod.initContainers ?? [])]) {
      if (typeof c.image !== 'string') continue;
      for (const rule of rules) c.image = applyImage(c.image, rule);
    }
  }
}

/**
 * The namespace transformer: namespaced objects move to `ns`; ServiceAccount subjects of bindings that
 * name one of the rendered ServiceAccounts follow; a Namespace object is renamed (we render exactly one).
 */
export function setNamespace(manifests: Manifest[], ns: string): void {
  const accounts = new Set(manifests.filter((m) => m.kind === 'ServiceAccount').map((m) => m.metadata.name));
  for (const m of manifests) {
    if (m.kind === 'Namespace') m.metadata.name = ns;
    else if (!isClusterScoped(m)) m.metadata.namespace = ns;
    if (m.kind === 'RoleBinding' || m.kind === 'ClusterRoleBinding') {
      for (const s of (m.subjects as Array<{ kind: string; name: string; namespace?: string }> | undefined) ?? []) {
        if (s.kind === 'ServiceAccount' && accounts.has(s.name)) s.namespace = ns;
      }
    }
  }
}

/** The `labels` transformer (without includeSelectors: selectors of Deployments are immutable). */
export function setLabels(manifests: Manifest[], rule: LabelRule, where: string): void {
  if (rule.includeSelectors) throw new Error(`${where}: labels with includeSelectors are not rendered (src/cli/kustomize.ts)`);
  if (typeof rule.pairs !== 'object' || rule.pairs === null) throw new Error(`${where}: labels entry without pairs`);
  for (const m of manifests) {
    m.metadata.labels = { ...m.metadata.labels, ...rule.pairs };
    const template = (m as { spec?: { template?: { metadata?: { labels?: Record<string, string> } } } }).spec?.template;
    if (rule.includeTemplates && template) template.metadata = { ...template.metadata, labels: { ...template.metadata?.labels, ...rule.pairs } };
  }
}

/** `/a/b~1c/0` → ['a', 'b/c', '0'] (RFC 6901). */
function pointer(path: string, where: string): string[] {
  if (!path.startsWith('/')) throw new Error(`${where}: patch path "${path}" must start with /`);
  return path.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** RFC 6902 add, replace and remove (what an overlay needs to change args and names). */
export function applyJsonPatch(target: unknown, ops: JsonPatchOp[], where: string): void {
  for (const o of ops) {
    const tokens = pointer(o.path, where);
    const last = tokens.pop();
    if (last === undefined) throw new Error(`${where}: patch path "${o.path}" names the whole object`);
    let parent: unknown = target;
    for (const t of tokens) {
      parent = Array.isArray(parent) ? parent[Number(t)] : (parent as Record<string, unknown> | undefined)?.[t];
      if (typeof parent !== 'object' || parent === null) throw new Error(`${where}: patch path "${o.path}" does not exist`);
    }
    if (Array.isArray(parent)) {
      const i = last === '-' ? parent.length : Number(last);
      if (!Number.isInteger(i) || i < 0 || i > parent.length || (o.op !== 'add' && i >= parent.length)) throw new Error(`${where}: patch path "${o.path}": no such index`);
      if (o.op === 'add') parent.splice(i, 0, structuredClone(o.value));
      else if (o.op === 'replace') parent[i] = structuredClone(o.value);
      else if (o.op === 'remove') parent.splice(i, 1);
      else throw new Error(`${where}: patch op "${o.op}" is not rendered (add, replace, remove)`);
    } else {
      const obj = parent as Record<string, unknown>;
      if (o.op !== 'add' && !(last in obj)) throw new Error(`${where}: patch path "${o.path}" does not exist`);
      if (o.op === 'add' || o.op === 'replace') obj[last] = structuredClone(o.value);
      else if (o.op === 'remove') delete obj[last];
      else throw new Error(`${where}: patch op "${o.op}" is not rendered (add, replace, remove)`);
    }
  }
}

function applyPatches(manifests: Manifest[], rules: PatchRule[], dir: string): void {
  for (const [i, r] of rules.entries()) {
    const where = `${join(dir, 'kustomization.yaml')}: patches[${i}]`;
    if (r.path !== undefined || typeof r.patch !== 'string') throw new Error(`${where}: only inline JSON 6902 patches (patch: |-) are rendered`);
    if (!r.target?.kind || !r.target.name) throw new Error(`${where}: target needs kind and name`);
    const ops = parseAllDocuments(r.patch)[0]?.toJS() as unknown;
    if (!Array.isArray(ops)) throw new Error(`${where}: only JSON 6902 patches (a list of operations) are rendered`);
    const targets = manifests.filter((m) => m.kind === r.target!.kind && m.metadata.name === r.target!.name);
    if (targets.length === 0) throw new Error(`${where}: no ${r.target.kind} named ${r.target.name}`);
    for (const m of targets) applyJsonPatch(m, ops as JsonPatchOp[], where);
  }
}

function generateConfigMaps(dir: string, k: Kustomization): Manifest[] {
  return (k.configMapGenerator ?? []).map((g) => {
    if (g.options?.disableNameSuffixHash !== true) {
      throw new Error(`${dir}: configMapGenerator ${g.name} needs options.disableNameSuffixHash: true (name hashes are not rendered)`);
    }
    const data: Record<string, string> = {};
    for (const entry of g.files ?? []) {
      const [key, path] = entry.includes('=') ? (entry.split('=', 2) as [string, string]) : [basename(entry), entry];
      data[key] = readFileSync(join(dir, path), 'utf8');
    }
    for (const lit of g.literals ?? []) {
      const i = lit.indexOf('=');
      data[lit.slice(0, i)] = lit.slice(i + 1);
    }
    const metadata: Manifest['metadata'] = { name: g.name };
    if (g.options.labels) metadata.labels = { ...g.options.labels };
    if (g.options.annotations) metadata.annotations = { ...g.options.annotations };
    return { apiVersion: 'v1', kind: 'ConfigMap', metadata, data };
  });
}

/** `kustomize build DIR` for our subset. Each manifest records the kustomization directory it came from. */
export function build(dir: string, origins?: Map<Manifest, string>): Manifest[] {
  const k = readKustomization(dir);
  const out: Manifest[] = [];
  for (const res of k.resources ?? []) {
    const path = join(dir, res);
    let isDir: boolean;
    try {
      isDir = statSync(path).isDirectory();
    } catch {
      throw new Error(`${join(dir, 'kustomization.yaml')}: resource ${res} does not exist`);
    }
    if (isDir) out.push(...build(path, origins));
    else {
      for (const m of readManifests(path)) {
        origins?.set(m, dir);
        out.push(m);
      }
    }
  }
  for (const m of generateConfigMaps(dir, k)) {
    origins?.set(m, dir);
    out.push(m);
  }
  // kustomize's order: patches, then the namespace, then labels, then images.
  if (k.patches) applyPatches(out, k.patches, dir);
  if (k.namespace) setNamespace(out, k.namespace);
  for (const rule of k.labels ?? []) setLabels(out, rule, join(dir, 'kustomization.yaml'));
  if (k.images) setImages(out, k.images);
  for (const r of k.replicas ?? []) {
    const target = out.find((m) => m.metadata.name === r.name && (m.kind === 'Deployment' || m.kind === 'StatefulSet'));
    if (!target) throw new Error(`${dir}: replicas: no Deployment named ${r.name}`);
    ((target as Workload).spec ??= {}).replicas = r.count;
  }
  const seen = new Set<string>();
  for (const m of out) {
    const id = `${m.kind}/${m.metadata.namespace ?? ''}/${m.metadata.name}`;
    if (seen.has(id)) throw new Error(`${dir}: ${id} is rendered twice`);
    seen.add(id);
  }
  return out;
}

/** kustomize's "legacy" order: what others depend on first (namespaces, CRDs, accounts, RBAC), then the rest. */
const KIND_ORDER = [
  'Namespace',
  'CustomResourceDefinition',
  'ServiceAccount',
  'ClusterRole',
  'ClusterRoleBinding',
  'Role',
  'RoleBinding',
  'ConfigMap',
  'Secret',
  'Service',
  'PriorityClass',
  'Deployment',
  'DaemonSet',
  'PodDisruptionBudget',
];

export function sortManifests(manifests: Manifest[]): Manifest[] {
  const rank = (m: Manifest): number => {
    const i = KIND_ORDER.indexOf(m.kind);
    return i < 0 ? KIND_ORDER.length : i;
  };
  // Array.prototype.sort is stable: within a kind, file order is kept.
  return [...manifests].sort((a, b) => rank(a) - rank(b));
}
