// The world (world.ts) into the API, as an operator and the cluster's own parts would write it: gateways
// and policies applied or deleted, node labels and cordons patched, Node Ready and cilium-agent Ready
// set through /status (what a kubelet and Cilium would report). Every write is idempotent, so a write
// whose answer was lost is simply retried.

import { DEFAULT_CILIUM_NAMESPACE } from '../../src/api/names.ts';
import { isObjectGone, type KubeClient, type ResourceRef } from '../../src/kube/client.ts';
import { GATEWAYS, NODES, POLICIES, namespaces, pods } from '../../src/kube/resources.ts';
import { setNodeReady } from '../../src/testenv/seed.ts';
import { GATEWAYS as GATEWAY_NAMES, POD_NAMESPACE, POLICY_COUNT, POOL_LABEL, gatewayObject, policyName, policyObject, type Impairment, type Mutation, type PodSpec, type World } from './world.ts';

export interface NodeAddresses {
  ipOf(node: string): string;
}

/**
 * Server-side apply with one field manager, creating the object when missing: every field is then the
 * suite's, so a field left out of the next apply is removed (a create by another manager would keep it).
 */
async function apply(client: KubeClient, ref: ResourceRef, object: object): Promise<void> {
  const name = (object as { metadata: { name: string } }).metadata.name;
  await client.apply(ref, name, object, { fieldManager: 'egressgw-chaos', force: true });
}

export async function deleteIfExists(client: KubeClient, ref: ResourceRef, name: string): Promise<void> {
  try {
    await client.delete(ref, name);
  } catch (err) {
    if (!isObjectGone(err, name)) throw err;
  }
}

/**
 * A world pod as the kubelet and the CNI would leave it: bound to its node, Running, its pod network
 * namespace's address in status.podIP. A grace period of 0 makes a delete final at once (no kubelet here
 * would confirm a graceful one).
 */
async function applyPod(client: KubeClient, p: PodSpec): Promise<void> {
  const ref = pods(POD_NAMESPACE);
  await apply(client, ref, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: p.name, namespace: POD_NAMESPACE, labels: p.app ? { app: p.app } : {} },
    spec: { nodeName: p.node, terminationGracePeriodSeconds: 0, containers: [{ name: 'app', image: 'lab.invalid/app:none' }] },
  });
  await client.mergePatch(ref, p.name, { status: { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }] } }, 'status');
}

async function setImpairment(client: KubeClient, nodes: NodeAddresses, node: string, what: Exclude<Impairment, 'none'>, on: boolean): Promise<void> {
  if (what === 'cordoned') await client.mergePatch(NODES, node, { spec: { unschedulable: on ? true : null } });
  else if (what === 'notReady') await setNodeReady(client, { name: node, ip: nodes.ipOf(node) }, !on);
  else {
    await client.mergePatch(pods(DEFAULT_CILIUM_NAMESPACE), `cilium-agent-${node}`, { status: { phase: 'Running', conditions: [{ type: 'Ready', status: on ? 'False' : 'True' }] } }, 'status');
  }
}

/** Writes one change of the world (`after` is the world with it applied). */
export async function applyMutation(client: KubeClient, nodes: NodeAddresses, m: Mutation, after: World): Promise<void> {
  switch (m.kind) {
    case 'gatewayDelete':
      return deleteIfExists(client, GATEWAYS, m.name);
    case 'policyDelete':
      return deleteIfExists(client, POLICIES, m.name);
    case 'gatewaySelector':
    case 'gatewayVip':
    case 'gatewayInterfaces':
    case 'gatewayCreate': {
      const spec = after.gateways.get(m.kind === 'gatewayCreate' ? m.spec.name : m.name);
      if (spec) await apply(client, GATEWAYS, gatewayObject(spec));
      return;
    }
    case 'policyGateway':
    case 'policyCidrs':
    case 'policyCreate': {
      const spec = after.policies.get(m.kind === 'policyCreate' ? m.spec.name : m.name);
      if (spec) await apply(client, POLICIES, policyObject(spec));
      return;
    }
    case 'nodePool':
      await client.mergePatch(NODES, m.node, { metadata: { labels: { [POOL_LABEL]: m.pool === 'none' ? null : m.pool } } });
      return;
    case 'nodeHealth':
      if (m.from !== 'none') await setImpairment(client, nodes, m.node, m.from, false);
      if (m.to !== 'none') await setImpairment(client, nodes, m.node, m.to, true);
      return;
    case 'podDelete':
      return deleteIfExists(client, pods(POD_NAMESPACE), m.name);
    case 'podLabel':
    case 'podCreate': {
      const p = after.pods.get(m.name);
      if (p?.present) await applyPod(client, p);
      return;
    }
  }
}

/** Makes the API hold exactly the world: its gateways and policies (and no other of the suite's), its nodes' state. */
export async function applyWorld(client: KubeClient, nodes: NodeAddresses, world: World): Promise<void> {
  for (const n of world.nodes.values()) {
    await client.mergePatch(NODES, n.name, { metadata: { labels: { [POOL_LABEL]: n.pool === 'none' ? null : n.pool } } });
    for (const what of ['cordoned', 'notReady', 'ciliumNotReady'] as const) await setImpairment(client, nodes, n.name, what, n.impairment === what);
  }
  for (const name of GATEWAY_NAMES) {
    const spec = world.gateways.get(name);
    if (spec) await apply(client, GATEWAYS, gatewayObject(spec));
    else await deleteIfExists(client, GATEWAYS, name);
  }
  for (let i = 0; i < POLICY_COUNT; i++) {
    const spec = world.policies.get(policyName(i));
    if (spec) await apply(client, POLICIES, policyObject(spec));
    else await deleteIfExists(client, POLICIES, policyName(i));
  }
  if (world.pods.size === 0) return;
  await apply(client, namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: POD_NAMESPACE } });
  for (const p of world.pods.values()) {
    if (p.present) await applyPod(client, p);
    else await deleteIfExists(client, pods(POD_NAMESPACE), p.name);
  }
}
