// Objects (from manifest files or from a live cluster) → the core's Snapshot, the same way the controller
// fills it from its informers: cilium-agent and egressgw agent pods filtered by namespace and selector,
// heartbeats from the agents' Leases through the controller's own HeartbeatTracker.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseControllerArgs, type ControllerOptions } from '../controller/options.ts';
import {
  KIND_CEGP,
  KIND_GATEWAY,
  KIND_INSTANCE,
  KIND_POLICY,
  OWNED_LABELS,
  heartbeatLeaseName,
} from '../api/names.ts';
import type {
  CiliumEgressGatewayPolicy,
  CiliumNodeLike,
  EgressGateway,
  EgressGatewayInstance,
  EgressGatewayPolicy,
  LabelSelector,
  LeaseLike,
  NodeLike,
  PodLike,
} from '../api/types.ts';
import { HeartbeatTracker, buildSnapshot } from '../controller/snapshot.ts';
import { matchesLabelSelector } from '../core/selectors.ts';
import type { Snapshot } from '../core/types.ts';
import { UsageError } from '../term/errors.ts';

export interface ObjectSet {
  nodes: NodeLike[];
  pods: PodLike[];
  ciliumNodes: CiliumNodeLike[];
  leases: LeaseLike[];
  gateways: EgressGateway[];
  policies: EgressGatewayPolicy[];
  instances: EgressGatewayInstance[];
  cegps: CiliumEgressGatewayPolicy[];
}

export const emptyObjectSet = (): ObjectSet => ({
  nodes: [],
  pods: [],
  ciliumNodes: [],
  leases: [],
  gateways: [],
  policies: [],
  instances: [],
  cegps: [],
});

/** Where the controller looks for agents and heartbeats: its options (and flags) of the same names. */
export type AgentLocation = Pick<ControllerOptions, 'ciliumNamespace' | 'ciliumSelector' | 'agentNamespace' | 'agentSelector' | 'heartbeatNamespace' | 'heartbeatDurationMs'>;

/** The controller's defaults, taken from its own flag parser so the two cannot drift apart. */
export const DEFAULT_AGENT_LOCATION: AgentLocation = (() => {
  const d = parseControllerArgs([]);
  return Object.freeze({
    ciliumNamespace: d.ciliumNamespace,
    ciliumSelector: d.ciliumSelector,
    agentNamespace: d.agentNamespace,
    agentSelector: d.agentSelector,
    heartbeatNamespace: d.heartbeatNamespace,
    heartbeatDurationMs: d.heartbeatDurationMs,
  });
})();

/** `a=b,c!=d,e,!f` (the equality-based selectors the controller's flags take) → a LabelSelector. */
export function parseSelector(text: string): LabelSelector {
  const sel: Required<LabelSelector> = { matchLabels: {}, matchExpressions: [] };
  for (const raw of text.split(',')) {
    const part = raw.trim();
    if (part === '') continue;
    let m: RegExpExecArray | null;
    if ((m = /^([^!=\s]+)\s*!=\s*(\S*)$/.exec(part))) sel.matchExpressions.push({ key: m[1]!, operator: 'NotIn', values: [m[2]!] });
    else if ((m = /^([^!=\s]+)\s*==?\s*(\S*)$/.exec(part))) sel.matchLabels[m[1]!] = m[2]!;
    else if ((m = /^!\s*(\S+)$/.exec(part))) sel.matchExpressions.push({ key: m[1]!, operator: 'DoesNotExist' });
    else if (/^\S+$/.test(part)) sel.matchExpressions.push({ key: part, operator: 'Exists' });
    else throw new UsageError(`invalid label selector "${text}"`);
  }
  return sel;
}

const KINDS: Record<string, keyof ObjectSet> = {
  Node: 'nodes',
  Pod: 'pods',
  CiliumNode: 'ciliumNodes',
  Lease: 'leases',
  [KIND_GATEWAY]: 'gateways',
  [KIND_POLICY]: 'policies',
  [KIND_INSTANCE]: 'instances',
  [KIND_CEGP]: 'cegps',
};

/**
 * Adds one parsed document (an object or a `List`/`*List` of them) to `set`. Returns the kinds it
 * ignored, so the caller can say so instead of silently planning without them.
 */
export function addObject(set: ObjectSet, doc: unknown, source: string, ignored: Set<string>): void {
  if (doc === null || doc === undefined) return;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new UsageError(`${source}: a YAML document is not an object`);
  const o = doc as { kind?: unknown; items?: unknown; metadata?: { name?: unknown } };
  if (typeof o.kind === 'string' && o.kind.endsWith('List') && Array.isArray(o.items)) {
    for (const item of o.items) addObject(set, item, source, ignored);
    return;
  }
  if (typeof o.kind !== 'string') throw new UsageError(`${source}: an object has no kind`);
  const slot = KINDS[o.kind];
  if (!slot) {
    ignored.add(o.kind);
    return;
  }
  if (typeof o.metadata?.name !== 'string' || o.metadata.name === '') throw new UsageError(`${source}: a ${o.kind} has no metadata.name`);
  (set[slot] as unknown[]).push(doc);
}

function yamlFiles(path: string): string[] {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new UsageError(`${path}: no such file or directory`);
  }
  if (!st.isDirectory()) return [path];
  return readdirSync(path, { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.(ya?ml|json)$/.test(f))
    .sort()
    .map((f) => join(path, f))
    .filter((f) => statSync(f).isFile());
}

/** Reads manifests (files, or directories searched recursively for .yaml/.yml/.json). */
export function readObjectFiles(paths: string[]): { objects: ObjectSet; ignoredKinds: string[] } {
  const objects = emptyObjectSet();
  const ignored = new Set<string>();
  for (const path of paths) {
    for (const file of yamlFiles(path)) {
      const docs = parseAllDocuments(readFileSync(file, 'utf8'));
      for (const doc of docs) {
        if (doc.errors.length > 0) throw new UsageError(`${file}: ${doc.errors[0]!.message.split('\n')[0]}`);
        addObject(objects, doc.toJS(), file, ignored);
      }
    }
  }
  return { objects, ignoredKinds: [...ignored].sort() };
}

const inNamespaceMatching = (pods: readonly PodLike[], namespace: string, selector: string): PodLike[] => {
  const sel = parseSelector(selector);
  return pods.filter((p) => (p.metadata.namespace ?? 'default') === namespace && matchesLabelSelector(p.metadata.labels, sel));
};

export interface SnapshotFromObjectsOptions {
  now: number;
  location?: AgentLocation;
  /** Leases are fed to the tracker at these times (one round per entry); default: once, at `now`. */
  heartbeatRounds?: Array<{ at: number; leases: readonly LeaseLike[] }>;
  /** Ignore heartbeat Leases altogether. */
  noHeartbeats?: boolean;
  /**
   * Treat every Node as running a Ready cilium-agent and a Ready egressgw agent with a live heartbeat
   * (for planning from manifests that hold only Nodes and gateways).
   */
  assumeAgents?: boolean;
}

/** The Snapshot the controller would build from these objects. */
export function snapshotFromObjects(objects: ObjectSet, opts: SnapshotFromObjectsOptions): Snapshot {
  const loc = opts.location ?? DEFAULT_AGENT_LOCATION;
  const tracker = new HeartbeatTracker(loc.heartbeatDurationMs);
  const ciliumAgentPods = inNamespaceMatching(objects.pods, loc.ciliumNamespace, loc.ciliumSelector);
  const agentPods = inNamespaceMatching(objects.pods, loc.agentNamespace, loc.agentSelector);
  if (!opts.noHeartbeats) {
    const rounds = opts.heartbeatRounds ?? [{ at: opts.now, leases: objects.leases }];
    for (const round of rounds) {
      for (const lease of round.leases) {
        if ((lease.metadata.namespace ?? 'default') === loc.heartbeatNamespace) tracker.observe(lease, round.at);
      }
    }
  }
  if (opts.assumeAgents) {
    const ready = { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] };
    const ciliumLabels = parseSelector(loc.ciliumSelector).matchLabels ?? {};
    const agentLabels = parseSelector(loc.agentSelector).matchLabels ?? {};
    const renewTime = new Date(opts.now).toISOString();
    for (const node of objects.nodes) {
      const n = node.metadata.name;
      if (!ciliumAgentPods.some((p) => p.spec?.nodeName === n)) {
        ciliumAgentPods.push({ metadata: { name: `assumed-cilium-${n}`, namespace: loc.ciliumNamespace, labels: ciliumLabels }, spec: { nodeName: n }, status: ready });
      }
      if (!agentPods.some((p) => p.spec?.nodeName === n)) {
        agentPods.push({ metadata: { name: `assumed-agent-${n}`, namespace: loc.agentNamespace, labels: agentLabels }, spec: { nodeName: n }, status: ready });
      }
      if (!tracker.heartbeats().some((h) => h.node === n)) {
        tracker.observe(
          {
            metadata: { name: heartbeatLeaseName(n), namespace: loc.heartbeatNamespace },
            spec: { holderIdentity: n, renewTime, leaseDurationSeconds: Math.ceil(loc.heartbeatDurationMs / 1000) },
          },
          opts.now,
        );
      }
    }
  }
  return buildSnapshot(
    {
      nodes: () => objects.nodes,
      ciliumNodes: () => objects.ciliumNodes,
      ciliumAgentPods: () => ciliumAgentPods,
      agentPods: () => agentPods,
      gateways: () => objects.gateways,
      policies: () => objects.policies,
      instances: () => objects.instances,
      // The controller watches only CEGPs carrying our labels.
      cegps: () => objects.cegps.filter((c) => Object.entries(OWNED_LABELS).every(([k, v]) => c.metadata.labels?.[k] === v)),
      heartbeats: tracker,
    },
    opts.now,
  );
}
