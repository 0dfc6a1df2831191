// A synthetic cluster held the way the controller holds it: one list-watch cache per watched resource
// (client-node's own cache map and list(), as `Informer.list()` returns them), heartbeat Leases fed
// through the controller's real HeartbeatTracker, and an applier that plays the API server + watch for
// the controller's writes (each write replaces the cached object with a new one, as a watch event would).
//
// Not part of the controller: this exists so the bench can run the controller's snapshot → core path
// at 5,000 nodes without an API server.

import { addOrUpdateObject, deleteObject, type CacheMap, type KubernetesObject } from '@kubernetes/client-node';
import type {
  CiliumEgressGatewayPolicy,
  CiliumNodeLike,
  EgressGateway,
  EgressGatewayInstance,
  EgressGatewayPolicy,
  LeaseLike,
  NodeLike,
  PodLike,
} from '../src/api/types.ts';
import {
  API_VERSION,
  DEFAULT_CILIUM_AGENT_SELECTOR,
  DEFAULT_CILIUM_NAMESPACE,
  DEFAULT_NAMESPACE,
  KIND_GATEWAY,
  KIND_POLICY,
  MODE_PRIMARY_IP,
  MODE_VIP,
  MOVE_TO_ANNOTATION,
  UPLINKS_ANNOTATION,
  heartbeatLeaseName,
  selectorLabels,
} from '../src/api/names.ts';
import type { Write } from '../src/core/types.ts';
import { HeartbeatTracker, SnapshotBuilder, sourcesFromCaches } from '../src/controller/snapshot.ts';
import { trimCEGP, trimCiliumNode, trimGateway, trimInstance, trimLease, trimNode, trimPod, trimPolicy } from '../src/controller/trim.ts';
import type { Snapshot } from '../src/core/types.ts';
import { microTime } from '../src/kube/time.ts';

export const POOL_LABEL = 'bench.egressgw.io/pool';
export const UPLINK = 'eth1';
const T0 = '2025-12-01T00:00:00Z';

/** One informer's cache: client-node's CacheMap, listed exactly as `ListWatch.list()` does. */
export class Cache<T extends { metadata: { name: string; namespace?: string } }> {
  private readonly objects: CacheMap<KubernetesObject> = new Map();
  private rv = 0;
  private changes = 0;
  private readonly transform: (obj: T) => T;
  private readonly listeners: Array<(type: 'add' | 'update' | 'delete', obj: T) => void> = [];

  /** `transform`: the controller's informer transform for this resource (src/controller/trim.ts). */
  constructor(transform: (obj: T) => T) {
    this.transform = transform;
  }

  set(obj: T): void {
    // Every stored version is a new object with a new resourceVersion, as it comes from a watch event
    // (client-node ignores an update whose resourceVersion equals the cached one), and it goes through
    // the same transform as in the controller's informer before it is cached.
    const stored = this.transform({ ...obj, metadata: { ...obj.metadata, resourceVersion: String(++this.rv) } });
    const type = this.get(obj.metadata.name, obj.metadata.namespace) ? 'update' : 'add';
    addOrUpdateObject(this.objects, stored as unknown as KubernetesObject);
    this.changes++;
    for (const l of this.listeners) l(type, stored);
  }

  delete(obj: T): void {
    deleteObject(this.objects, obj as unknown as KubernetesObject);
    this.changes++;
    for (const l of this.listeners) l('delete', obj);
  }

  /** As Informer.onEvent: called for every add, update and delete. */
  onEvent(cb: (type: 'add' | 'update' | 'delete', obj: T) => void): void {
    this.listeners.push(cb);
  }

  /** As Informer.version: moves with every change. */
  get version(): number {
    return this.changes;
  }

  get(name: string, namespace?: string): T | undefined {
    return this.objects.get(namespace ?? '')?.get(name) as T | undefined;
  }

  list(): T[] {
    const all: T[] = [];
    for (const ns of this.objects.values()) all.push(...(ns.values() as Iterable<T>));
    return all;
  }

  get size(): number {
    let n = 0;
    for (const ns of this.objects.values()) n += ns.size;
    return n;
  }
}

export interface ClusterSize {
  nodes: number;
  /** Node pools (equal slices of the nodes); gateways select a pool, so 10 gateways share one pool's nodes at full size. */
  pools: number;
  gateways: number;
  policies: number;
  /** All pods resident in the process: cilium-agent + agent pods (watched) + workload pods (not watched). */
  pods: number;
}

/** The caches the controller keeps (src/controller/controller.ts `Caches`), plus the unwatched workload pods. */
export interface Caches {
  nodes: Cache<NodeLike>;
  ciliumNodes: Cache<CiliumNodeLike>;
  ciliumAgentPods: Cache<PodLike>;
  agentPods: Cache<PodLike>;
  leases: Cache<LeaseLike>;
  gateways: Cache<EgressGateway>;
  policies: Cache<EgressGatewayPolicy>;
  instances: Cache<EgressGatewayInstance>;
  cegps: Cache<CiliumEgressGatewayPolicy>;
}

export interface Cluster {
  size: ClusterSize;
  caches: Caches;
  heartbeats: HeartbeatTracker;
  nodeNames: string[];
  gatewayNames: string[];
  /** Controller clock (virtual: the bench moves it). */
  now: number;
  /** Nodes whose agent stopped renewing its heartbeat Lease. */
  silent: Set<string>;
  /** The controller's snapshot builder over these caches (with their versions, as the controller wires it). */
  snapshots: SnapshotBuilder;
}

const pad = (n: number, w: number): string => String(n).padStart(w, '0');
export const nodeName = (i: number): string => `node-${pad(i, 5)}`;
export const gatewayName = (i: number): string => `gw-${pad(i, 4)}`;
export const poolName = (p: number): string => `pool-${pad(p, 3)}`;

function readyConditions(ready: boolean, at: string): NonNullable<NodeLike['status']>['conditions'] {
  return [
    { type: 'MemoryPressure', status: 'False', reason: 'KubeletHasSufficientMemory', message: 'kubelet has sufficient memory available' },
    { type: 'DiskPressure', status: 'False', reason: 'KubeletHasNoDiskPressure', message: 'kubelet has no disk pressure' },
    { type: 'PIDPressure', status: 'False', reason: 'KubeletHasSufficientPID', message: 'kubelet has sufficient PID available' },
    ready
      ? { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status', lastTransitionTime: at } as never
      : { type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown', message: 'Kubelet stopped posting node status.', lastTransitionTime: at } as never,
  ];
}

export function makeNode(i: number, pools: number, nodes: number, ready = true): NodeLike {
  const name = nodeName(i);
  const pool = Math.floor((i * pools) / nodes);
  return {
    metadata: {
      name,
      uid: `00000000-0000-4000-8000-${pad(i, 12)}`,
      creationTimestamp: T0,
      labels: {
        'kubernetes.io/hostname': name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        'node.kubernetes.io/instance-type': 'm5.xlarge',
        'topology.kubernetes.io/zone': `zone-${pool % 3}`,
        [POOL_LABEL]: poolName(pool),
      },
      annotations: { 'node.alpha.kubernetes.io/ttl': '0', 'volumes.kubernetes.io/controller-managed-attach-detach': 'true' },
    },
    spec: { podCIDR: `10.${(i >> 8) & 255}.${i & 255}.0/24` } as NodeLike['spec'],
    status: {
      conditions: readyConditions(ready, T0),
      addresses: [
        { type: 'InternalIP', address: `10.200.${(i >> 8) & 255}.${i & 255}` },
        { type: 'Hostname', address: name },
      ],
      capacity: { cpu: '4', memory: '16Gi', pods: '110', 'ephemeral-storage': '100Gi' },
      allocatable: { cpu: '3800m', memory: '15Gi', pods: '110', 'ephemeral-storage': '90Gi' },
      nodeInfo: { kubeletVersion: 'v1.33.1', containerRuntimeVersion: 'containerd://2.0.5', kernelVersion: '6.8.0', osImage: 'Ubuntu 24.04 LTS' },
    } as NodeLike['status'],
  };
}

function makePod(name: string, namespace: string, node: string, labels: Record<string, string>, image: string, i: number): PodLike {
  return {
    metadata: {
      name,
      namespace,
      uid: `10000000-0000-4000-8000-${pad(i, 12)}`,
      creationTimestamp: T0,
      labels,
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${labels['app'] ?? 'rs'}-6d4cf56db6`, uid: `20000000-0000-4000-8000-${pad(i % 100_000, 12)}`, controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      nodeName: node,
      serviceAccountName: 'default',
      containers: [
        {
          name: 'main',
          image,
          ports: [{ containerPort: 8080, protocol: 'TCP' }],
          resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
          env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
        },
      ],
    } as PodLike['spec'],
    status: {
      phase: 'Running',
      podIP: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      conditions: [
        { type: 'Initialized', status: 'True' },
        { type: 'Ready', status: 'True' },
        { type: 'ContainersReady', status: 'True' },
        { type: 'PodScheduled', status: 'True' },
      ],
      containerStatuses: [{ name: 'main', ready: true, restartCount: 0, image, imageID: `${image}@sha256:${pad(i, 64)}`, started: true }],
    } as PodLike['status'],
  };
}

/** What every agent reports (the same text on each renewal, as an agent whose uplink does not change sends). */
const UPLINKS = JSON.stringify({ [UPLINK]: { up: true, ipv4: ['192.0.2.10'] } });

export function makeLease(node: string, renewAt: number): LeaseLike {
  return {
    metadata: {
      name: heartbeatLeaseName(node),
      namespace: DEFAULT_NAMESPACE,
      annotations: { [UPLINKS_ANNOTATION]: UPLINKS },
    },
    spec: { holderIdentity: node, leaseDurationSeconds: 2, renewTime: microTime(renewAt) },
  };
}

/** Build the caches: every gateway unsettled (no labels, instances, CEGPs or statuses yet). */
export function buildCluster(size: ClusterSize, now: number): Cluster {
  const caches: Caches = {
    nodes: new Cache(trimNode),
    ciliumNodes: new Cache(trimCiliumNode),
    ciliumAgentPods: new Cache(trimPod),
    agentPods: new Cache(trimPod),
    leases: new Cache(trimLease),
    gateways: new Cache(trimGateway),
    policies: new Cache(trimPolicy),
    instances: new Cache(trimInstance),
    cegps: new Cache(trimCEGP),
  };
  const heartbeats = new HeartbeatTracker(2000);
  const nodeNames: string[] = [];
  let podSeq = 0;
  for (let i = 0; i < size.nodes; i++) {
    const n = makeNode(i, size.pools, size.nodes);
    nodeNames.push(n.metadata.name);
    caches.nodes.set(n);
    caches.ciliumNodes.set({ metadata: { name: n.metadata.name, labels: { ...n.metadata.labels } } });
    caches.ciliumAgentPods.set(
      makePod(`cilium-agent-${pad(i, 5)}`, DEFAULT_CILIUM_NAMESPACE, n.metadata.name, selectorLabels(DEFAULT_CILIUM_AGENT_SELECTOR), 'quay.io/cilium/cilium:v1.17.4', podSeq++),
    );
    // Every node is in some pool that gateways select, so every node is a member and runs an agent.
    caches.agentPods.set(
      makePod(`egressgw-agent-${pad(i, 5)}`, DEFAULT_NAMESPACE, n.metadata.name, { app: 'egress-gateway-agent' }, 'registry.example/egressgw:0.1.0', podSeq++),
    );
    const lease = makeLease(n.metadata.name, now - 100);
    caches.leases.set(lease);
    heartbeats.observe(lease, now - 100);
  }
  const gatewayNames: string[] = [];
  for (let i = 0; i < size.gateways; i++) {
    const name = gatewayName(i);
    gatewayNames.push(name);
    // Gateways spread over the pools: at full size each pool is shared by 10 gateways.
    const nodeSelector = { [POOL_LABEL]: poolName(i % size.pools) };
    const vip = i % 2 === 0;
    caches.gateways.set({
      apiVersion: API_VERSION,
      kind: KIND_GATEWAY,
      metadata: { name, uid: `30000000-0000-4000-8000-${pad(i, 12)}`, generation: 1, creationTimestamp: T0 },
      spec: {
        nodeSelector,
        sourceIP: vip
          ? { mode: MODE_VIP, virtualIPAddress: { ip: `198.18.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`, interfaces: [UPLINK] } }
          : { mode: MODE_PRIMARY_IP, primaryIPFromEgressGatewayNodeInterface: { interfaceName: UPLINK } },
      },
    });
  }
  for (let i = 0; i < size.policies; i++) {
    const name = `policy-${pad(i, 5)}`;
    const spec: NonNullable<EgressGatewayPolicy['spec']> = {
      egressGatewayName: gatewayName(i % size.gateways),
      destinationCIDRs: i % 4 === 0 ? ['0.0.0.0/0'] : ['10.0.0.0/8', '172.16.0.0/12'],
      selectors: [{ podSelector: { matchLabels: { app: `app-${pad(i % 2000, 4)}` } } }],
    };
    if (i % 4 === 1) spec.excludedCIDRs = ['10.1.0.0/16'];
    if (i % 5 === 0) (spec.selectors as NonNullable<typeof spec.selectors>)[0]!.namespaceSelector = { matchLabels: { 'kubernetes.io/metadata.name': `team-${pad(i % 200, 3)}` } };
    caches.policies.set({ apiVersion: API_VERSION, kind: KIND_POLICY, metadata: { name, uid: `40000000-0000-4000-8000-${pad(i, 12)}`, generation: 1 }, spec });
  }
  return { size, caches, heartbeats, nodeNames, gatewayNames, now, silent: new Set(), snapshots: snapshotBuilder(caches, heartbeats) };
}

/**
 * Workload pods up to `totalPods` pods in the process (the watched agent pods count): kept in their own
 * cache, because the controller does not watch them; the snapshot never reads it.
 */
export function addWorkloadPods(c: Cluster, totalPods: number): Cache<PodLike> {
  // The controller does not watch these; if it did, they would go through its pod transform, as here.
  const pods = new Cache<PodLike>(trimPod);
  const watched = c.caches.ciliumAgentPods.size + c.caches.agentPods.size;
  const n = Math.max(0, totalPods - watched);
  for (let i = 0; i < n; i++) {
    const ns = `team-${pad(i % 200, 3)}`;
    const app = `app-${pad(i % 2000, 4)}`;
    const node = c.nodeNames[i % c.nodeNames.length] as string;
    pods.set(makePod(`${app}-6d4cf56db6-${pad(i, 6)}`, ns, node, { app, 'pod-template-hash': '6d4cf56db6' }, `registry.example/${app}:1.0.${i % 7}`, watched + i));
  }
  return pods;
}

function snapshotBuilder(k: Caches, heartbeats: HeartbeatTracker): SnapshotBuilder {
  return new SnapshotBuilder(sourcesFromCaches(k, heartbeats));
}

/** The controller's pass input, through its real snapshot code (src/controller/snapshot.ts). */
export function snapshotOf(c: Cluster): Snapshot {
  return c.snapshots.build(c.now);
}

/**
 * Move the controller clock by `ms`; every agent not in `silent` renews its Lease just before the new
 * now (what 5,000 agents renewing every 500 ms look like to the tracker).
 */
export function advance(c: Cluster, ms: number): void {
  c.now += ms;
  for (const n of c.nodeNames) {
    if (c.silent.has(n)) continue;
    const lease = makeLease(n, c.now - 50);
    c.caches.leases.set(lease);
    c.heartbeats.observe(lease, c.now - 50);
  }
}

export function setNodeReady(c: Cluster, name: string, ready: boolean): void {
  const n = c.caches.nodes.get(name);
  if (!n) throw new Error(`no node ${name}`);
  c.caches.nodes.set({ ...n, metadata: { ...n.metadata }, status: { ...n.status, conditions: readyConditions(ready, new Date(c.now).toISOString()) } });
}

const clone = <T>(o: T): T => structuredClone(o);

/**
 * The API server and the watch for the controller's writes: same semantics as the core's test helper
 * `applyWrites` (src/core/testing.ts), but on the caches and O(1) per write (that helper maps whole lists
 * per write, which is fine for tests and far too slow for 10,000 policies). Returns the number of events.
 */
export function applyToCaches(c: Cluster, writes: readonly Write[]): number {
  const k = c.caches;
  const nowIso = new Date(c.now).toISOString();
  let events = 0;
  for (const w of writes) {
    switch (w.kind) {
      case 'addLabels':
      case 'removeLabels': {
        const cache = (w.target === 'Node' ? k.nodes : k.ciliumNodes) as Cache<NodeLike>;
        const o = cache.get(w.name);
        if (!o) break;
        const labels = { ...o.metadata.labels };
        for (const key of w.keys) {
          if (w.kind === 'addLabels') labels[key] = '';
          else delete labels[key];
        }
        cache.set({ ...o, metadata: { ...o.metadata, labels } });
        break;
      }
      case 'createInstance': {
        if (k.instances.get(w.object.metadata.name)) throw new Error(`create: ${w.object.metadata.name} exists`);
        const o = clone(w.object);
        o.metadata.generation = 1;
        o.metadata.uid = `uid-inst-${o.metadata.name}`;
        o.metadata.creationTimestamp = nowIso;
        k.instances.set(o);
        break;
      }
      case 'updateInstance': {
        const i = k.instances.get(w.object.metadata.name);
        if (!i) break;
        const o = clone(w.object);
        const specChanged = JSON.stringify(i.spec) !== JSON.stringify(o.spec);
        o.metadata = { ...i.metadata, ...o.metadata, generation: (i.metadata.generation ?? 1) + (specChanged ? 1 : 0) };
        if (i.status) o.status = clone(i.status);
        k.instances.set(o);
        break;
      }
      case 'deleteInstance': {
        const i = k.instances.get(w.name);
        if (!i) break;
        if ((i.metadata.finalizers ?? []).length === 0) k.instances.delete(i);
        else if (!i.metadata.deletionTimestamp) k.instances.set({ ...i, metadata: { ...i.metadata, deletionTimestamp: nowIso } });
        break;
      }
      case 'releaseFinalizer': {
        const i = k.instances.get(w.name);
        if (!i) break;
        if (i.metadata.deletionTimestamp) k.instances.delete(i);
        else k.instances.set({ ...i, metadata: { ...i.metadata, finalizers: [] } });
        break;
      }
      case 'applyCEGP':
        k.cegps.set(clone(w.object));
        break;
      case 'deleteCEGP': {
        const o = k.cegps.get(w.name);
        if (o) k.cegps.delete(o);
        break;
      }
      case 'gatewayStatus': {
        const g = k.gateways.get(w.name);
        if (g) k.gateways.set({ ...g, metadata: { ...g.metadata }, status: clone(w.status) });
        break;
      }
      case 'policyStatus': {
        const p = k.policies.get(w.name);
        if (p) k.policies.set({ ...p, metadata: { ...p.metadata }, status: clone(w.status) });
        break;
      }
      case 'clearMoveRequest': {
        const g = k.gateways.get(w.gateway);
        if (!g?.metadata.annotations) break;
        const annotations = { ...g.metadata.annotations };
        delete annotations[MOVE_TO_ANNOTATION];
        k.gateways.set({ ...g, metadata: { ...g.metadata, annotations } });
        break;
      }
      case 'event':
        events++;
        break;
    }
  }
  return events;
}

/**
 * What live agents do (the core's `agentsAct` test helper, on the caches): confirm their instances for
 * the current generation and remove the finalizer of their deleting ones. Returns how many changed.
 */
export function agentsAct(c: Cluster): number {
  const live = new Set(c.heartbeats.heartbeats().filter((h) => c.now - h.observedAt < h.durationMs).map((h) => h.node));
  let changed = 0;
  for (const i of c.caches.instances.list()) {
    const node = i.spec?.nodeName;
    if (node === undefined || !live.has(node)) continue;
    if (i.metadata.deletionTimestamp) {
      c.caches.instances.delete(i);
      changed++;
      continue;
    }
    const gen = i.metadata.generation;
    const cond = i.status?.conditions?.find((x) => x.type === 'Ready');
    if (cond?.status === 'True' && i.status?.observedGeneration === gen) continue;
    c.caches.instances.set({
      ...i,
      status: {
        observedGeneration: gen,
        conditions: [{ type: 'Ready', status: 'True', reason: 'AnnouncingSucceed', message: 'Announcing 1 Virtual IPs', lastTransitionTime: new Date(c.now).toISOString(), ...(gen !== undefined ? { observedGeneration: gen } : {}) }],
      },
    });
    changed++;
  }
  return changed;
}
