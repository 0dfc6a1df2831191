// Live-cluster access for the CLI: a client from a kubeconfig, and the objects the core needs, listed the
// way the controller watches them (agent pods by namespace and selector, heartbeat Leases in their namespace).

import type {
  CiliumEgressGatewayPolicy,
  CiliumNodeLike,
  EgressGateway,
  EgressGatewayInstance,
  EgressGatewayPolicy,
  LeaseLike,
  NodeLike,
  PodLike,
} from '../api/types.ts';
import { OWNED_LABELS } from '../api/names.ts';
import { nodeOfHeartbeatLease } from '../controller/snapshot.ts';
import { KubeClient, isStatus, loadKubeConfig } from '../kube/client.ts';
import { CEGPS, CILIUM_NODES, GATEWAYS, INSTANCES, NODES, POLICIES, leases, pods } from '../kube/resources.ts';
import type { Snapshot } from '../core/types.ts';
import { UsageError } from '../term/errors.ts';
import { snapshotFromObjects, type AgentLocation, type ObjectSet } from './snapshot-input.ts';

export function connect(kubeconfig: string | undefined): KubeClient {
  try {
    return new KubeClient(loadKubeConfig(kubeconfig));
  } catch (err) {
    throw new UsageError(`cannot load kubeconfig${kubeconfig ? ` ${kubeconfig}` : ''}: ${(err as Error).message}`);
  }
}

/** A list whose API may be missing (Cilium not installed): empty, as the controller's informer would see. */
async function optionalList<T>(fn: () => Promise<{ items: T[] }>): Promise<T[]> {
  try {
    return (await fn()).items;
  } catch (err) {
    if (isStatus(err, 404)) return [];
    throw err;
  }
}

async function requiredList<T>(what: string, fn: () => Promise<{ items: T[] }>): Promise<T[]> {
  try {
    return (await fn()).items;
  } catch (err) {
    if (isStatus(err, 404)) throw new UsageError(`the ${what} API is not installed in this cluster (apply the CRDs: egressgw manifests)`, 1);
    throw err;
  }
}

const ownedSelector = Object.entries(OWNED_LABELS)
  .map(([k, v]) => `${k}=${v}`)
  .join(',');

export async function listHeartbeatLeases(client: KubeClient, loc: AgentLocation): Promise<LeaseLike[]> {
  const items = await optionalList(() => client.list<LeaseLike>(leases(loc.heartbeatNamespace)));
  return items.filter((l) => nodeOfHeartbeatLease(l.metadata.name) !== undefined);
}

/** Everything the core reads, listed once. */
export async function listObjects(client: KubeClient, loc: AgentLocation): Promise<ObjectSet> {
  const [nodes, ciliumNodes, ciliumPods, agentPods, heartbeatLeases, gateways, policies, instances, cegps] = await Promise.all([
    requiredList('Node', () => client.list<NodeLike>(NODES)),
    optionalList(() => client.list<CiliumNodeLike>(CILIUM_NODES)),
    optionalList(() => client.list<PodLike>(pods(loc.ciliumNamespace), { labelSelector: loc.ciliumSelector })),
    optionalList(() => client.list<PodLike>(pods(loc.agentNamespace), { labelSelector: loc.agentSelector })),
    listHeartbeatLeases(client, loc),
    requiredList('EgressGateway', () => client.list<EgressGateway>(GATEWAYS)),
    requiredList('EgressGatewayPolicy', () => client.list<EgressGatewayPolicy>(POLICIES)),
    requiredList('SDNInternalEgressGatewayInstance', () => client.list<EgressGatewayInstance>(INSTANCES)),
    optionalList(() => client.list<CiliumEgressGatewayPolicy>(CEGPS, { labelSelector: ownedSelector })),
  ]);
  // Both pod lists may be the same pods (one namespace, overlapping selectors): keep each pod once.
  const seen = new Set<string>();
  const allPods = [...ciliumPods, ...agentPods].filter((p) => {
    const key = `${p.metadata.namespace}/${p.metadata.name}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return { nodes, ciliumNodes, pods: allPods, leases: heartbeatLeases, gateways, policies, instances, cegps };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A Snapshot of the live cluster with heartbeats judged as the controller judges them: on this process's
 * clock, by whether a Lease's renewal changes while we watch. Lease renewTimes are written on the agents'
 * clocks, so comparing them with ours would turn clock skew into false verdicts. We re-list the Leases
 * until each has been seen renewed or the longest lease duration has passed (a live agent renews every
 * 500 ms by default, so this usually takes well under a second).
 */
export async function liveSnapshot(client: KubeClient, loc: AgentLocation, opts: { pollMs?: number } = {}): Promise<{ snapshot: Snapshot; objects: ObjectSet }> {
  const objects = await listObjects(client, loc);
  const t0 = Date.now();
  const rounds: Array<{ at: number; leases: LeaseLike[] }> = [{ at: t0, leases: objects.leases }];
  const first = new Map(objects.leases.map((l) => [l.metadata.name, JSON.stringify([l.spec?.holderIdentity, l.spec?.renewTime])]));
  const renewed = new Set<string>();
  const longest = Math.max(0, ...objects.leases.map((l) => (l.spec?.leaseDurationSeconds ?? loc.heartbeatDurationMs / 1000) * 1000));
  while (renewed.size < first.size && Date.now() - t0 < longest) {
    await sleep(opts.pollMs ?? 200);
    const now = Date.now();
    const current = await listHeartbeatLeases(client, loc);
    rounds.push({ at: now, leases: current });
    for (const l of current) {
      const before = first.get(l.metadata.name);
      if (before !== undefined && before !== JSON.stringify([l.spec?.holderIdentity, l.spec?.renewTime])) renewed.add(l.metadata.name);
    }
  }
  const now = Date.now();
  const snapshot = snapshotFromObjects(objects, { now, location: loc, heartbeatRounds: rounds });
  return { snapshot, objects };
}
