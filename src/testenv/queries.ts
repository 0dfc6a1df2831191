// Reads of the API state that tests, the bench and the lab wait on (with poll.ts): a gateway's live
// instances and which node holds it, and which agents heartbeat.

import { DEFAULT_NAMESPACE, heartbeatLeaseName } from '../api/names.ts';
import type { EgressGatewayInstance, LeaseLike } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { INSTANCES, leases } from '../kube/resources.ts';

export function isInstanceReady(i: EgressGatewayInstance): boolean {
  return i.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** Live (not terminating) instances of `gateway`. */
export async function liveInstances(client: KubeClient, gateway: string): Promise<EgressGatewayInstance[]> {
  const list = await client.list<EgressGatewayInstance>(INSTANCES);
  return list.items.filter((i) => {
    if (i.metadata.deletionTimestamp) return false;
    const owner = i.metadata.ownerReferences?.[0]?.name;
    return owner !== undefined ? owner === gateway : i.metadata.name.startsWith(`${gateway}-`);
  });
}

export interface ActiveInstance {
  name: string;
  node: string;
  ready: boolean;
  created: string;
  /** Live instances of the gateway: more than one while a handover is in flight. */
  live: number;
}

/** The (first) live instance of `gateway` and its node, if any. */
export async function activeInstance(client: KubeClient, gateway: string): Promise<ActiveInstance | undefined> {
  const live = await liveInstances(client, gateway);
  const i = live[0];
  if (!i) return undefined;
  return {
    name: i.metadata.name,
    node: i.spec?.nodeName ?? '',
    ready: isInstanceReady(i),
    created: i.metadata.creationTimestamp ?? '',
    live: live.length,
  };
}

/** Nodes whose agent renewed its heartbeat Lease within `freshMs` (controller default lease: 2 s). */
export async function heartbeatingNodes(client: KubeClient, nodes: readonly string[], freshMs = 2000): Promise<string[]> {
  const list = await client.list<LeaseLike>(leases(DEFAULT_NAMESPACE));
  const byName = new Map(list.items.map((l) => [l.metadata.name, l]));
  return nodes.filter((n) => {
    const t = Date.parse(byName.get(heartbeatLeaseName(n))?.spec?.renewTime ?? '');
    return Number.isFinite(t) && Date.now() - t < freshMs;
  });
}
