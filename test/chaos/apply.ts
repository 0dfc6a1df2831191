// The world (world.ts) into the API, as an operator and the cluster's own parts would write it: gateways
// and policies applied or deleted, node labels and cordons patched, Node Ready and cilium-agent Ready
// set through /status (what a kubelet and Cilium would report). Every write is idempotent, so a write
// whose answer was lost is simply retried.

import { DEFAULT_CILIUM_NAMESPACE } from '../../src/api/names.ts';
import { isObjectGone, type KubeClient } from '../../src/kube/client.ts';
import { GATEWAYS, NODES, POLICIES, pods } from '../../src/kube/resources.ts';
import { setNodeReady } from '../../src/testenv/seed.ts';
import { GATEWAYS as GATEWAY_NAMES, POLICY_COUNT, POOL_LABEL, gatewayObject, policyName, policyObject, type Impairment, type Mutation, type World } from './world.ts';

export interface NodeAddresses {
  ipOf(node: string): string;
}

/**
 * Server-side apply with one field manager, creating the object when missing: every field is then the
 * suite's, so a field left out of the next apply is removed (a create by another manager would keep it).
 */
async function apply(client: KubeClient, ref: typeof GATEWAYS, object: object): Promise<void> {
  const name = (object as { metadata: { name: string } }).metadata.name;
  await client.apply(ref, name, object, { fieldManager: 'egressgw-chaos', force: true });
}

export async function deleteIfExists(client: KubeClient, ref: typeof GATEWAYS, name: string): Promise<void> {
  try {
    await client.delete(ref, name);
  } catch (err) {
    if (!isObjectGone(err, name)) throw err;
  }
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
}
