// The API side of the test environment: the objects a fresh test API server needs before the controller
// calls a node eligible (our CRDs and Cilium's, the namespace, and per node a Ready Node, its CiliumNode
// and a Ready cilium-agent Pod), a `kubectl apply` for the objects tests and the lab add, and the node
// lifecycle the environment plays (Ready / NotReady).
//
// There is no kubelet and no Cilium here: the environment plays Cilium's part only as far as eligibility
// needs it (cilium-agent pods set Ready through /status).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_CILIUM_AGENT_SELECTOR, DEFAULT_CILIUM_NAMESPACE, DEFAULT_NAMESPACE, MODE_VIP, selectorLabels } from '../api/names.ts';
import { isStatus, type KubeClient, type ResourceRef } from '../kube/client.ts';
import { rfc3339 } from '../kube/time.ts';
import { CILIUM_NODES, GATEWAYS, NODES, pods, namespaces } from '../kube/resources.ts';
import type { TestCluster } from './apiserver.ts';
import { REPO } from './paths.ts';

/**
 * The label that makes an environment node a gateway node. Deliberately not the seed examples' selector
 * (`node-role.deckhouse.io/egress`): the network environment runs real agents, and a seed VIP such as
 * 172.18.18.242 must never be announced, even on its own LAN; only TEST-NET addresses are.
 */
export const GATEWAY_NODE_LABEL = 'egressgw.lab/gateway-node';
/** The VIP tests use on the environment's LAN (198.18.0.0/24, TEST-NET). */
export const TEST_VIP = '198.18.0.100';
/** egressgw's namespace (agents' Leases) and Cilium's (its agent pods), as the default install profile has them. */
export const SEED_NAMESPACES = [DEFAULT_NAMESPACE, DEFAULT_CILIUM_NAMESPACE];

/** A node as the API sees it: its name and InternalIP. */
export interface SeedNode {
  name: string;
  ip: string;
}

const PLURALS: Record<string, string> = {
  EgressGateway: 'egressgateways',
  EgressGatewayPolicy: 'egressgatewaypolicies',
  SDNInternalEgressGatewayInstance: 'sdninternalegressgatewayinstances',
  CiliumNode: 'ciliumnodes',
  CiliumEgressGatewayPolicy: 'ciliumegressgatewaypolicies',
  Node: 'nodes',
  Pod: 'pods',
  Namespace: 'namespaces',
  Lease: 'leases',
  ConfigMap: 'configmaps',
};

function refFor(obj: { apiVersion?: string; kind?: string; metadata?: { namespace?: string } }): ResourceRef {
  const [group, version] = (obj.apiVersion ?? '').includes('/') ? (obj.apiVersion ?? '').split('/') as [string, string] : ['', obj.apiVersion ?? 'v1'];
  const p = PLURALS[obj.kind ?? ''];
  if (!p) throw new Error(`applyObjects: unsupported kind ${obj.kind}`);
  return { group, version, plural: p, namespace: obj.metadata?.namespace };
}

type Applicable = { apiVersion?: string; kind?: string; metadata: { name: string; namespace?: string } };

/**
 * A simple `kubectl apply`: creates each object, or server-side applies it over an existing one.
 * `source` (a file or directory) is named in the error of an object the server refuses.
 */
export async function applyObjects(client: KubeClient, objects: readonly object[], source?: string): Promise<void> {
  for (const o of objects as readonly Applicable[]) {
    const ref = refFor(o);
    try {
      await client.create(ref, o);
    } catch (err) {
      if (!isStatus(err, 409)) throw new Error(`applying ${o.kind} ${o.metadata.name}${source ? ` from ${source}` : ''}: ${(err as Error).message}`);
      await client.apply(ref, o.metadata.name, o, { fieldManager: 'egressgw-lab', force: true });
    }
  }
}

/** applyObjects over YAML text (several documents), a YAML file's path, or objects. */
export async function applyYaml(client: KubeClient, input: string | object | object[]): Promise<void> {
  let objects: object[];
  if (typeof input === 'string') {
    const text = input.includes('\n') ? input : readFileSync(input, 'utf8');
    objects = parseAllDocuments(text).map((d) => d.toJS() as object).filter(Boolean);
  } else {
    objects = Array.isArray(input) ? input : [input];
  }
  await applyObjects(client, objects);
}

/** A VIP-mode gateway over the environment's gateway nodes. */
export function vipGateway(name: string, ip: string, interfaces?: string[], nodeSelector: Record<string, string> = { [GATEWAY_NODE_LABEL]: '' }): object {
  return {
    apiVersion: GATEWAYS.group + '/' + GATEWAYS.version,
    kind: 'EgressGateway',
    metadata: { name },
    spec: {
      nodeSelector,
      sourceIP: { mode: MODE_VIP, virtualIPAddress: { ip, ...(interfaces ? { interfaces } : {}) } },
    },
  };
}

async function ensure(client: KubeClient, ref: ResourceRef, obj: object): Promise<void> {
  try {
    await client.create(ref, obj);
  } catch (err) {
    if (!isStatus(err, 409)) throw err;
  }
}

function nodeStatus(ip: string, ready: boolean, now = rfc3339(Date.now())) {
  return {
    status: {
      conditions: [{
        type: 'Ready',
        status: ready ? 'True' : 'False',
        reason: ready ? 'KubeletReady' : 'NodeStatusUnknown',
        message: ready ? 'lab node' : 'Kubelet stopped posting node status (simulated by the lab)',
        lastHeartbeatTime: now,
        lastTransitionTime: now,
      }],
      addresses: [{ type: 'InternalIP', address: ip }],
    },
  };
}

/** Patches a node's Ready condition, as a kubelet would (the environment's way to fail a node in the API). */
export async function setNodeReady(client: KubeClient, node: SeedNode, ready: boolean): Promise<void> {
  await client.mergePatch(NODES, node.name, nodeStatus(node.ip, ready), 'status');
}

/** Applies the CRDs and creates, per node, what the controller needs to call it eligible (see the top). */
export async function seedCluster(
  cluster: TestCluster,
  client: KubeClient,
  nodes: readonly SeedNode[],
  extraNodeLabels: Record<string, string> = {},
): Promise<void> {
  await cluster.applyCRDs(join(REPO, 'deploy', 'crds'));
  await cluster.applyCRDs(join(REPO, 'test', 'fixtures', 'crds', 'cilium'));
  for (const ns of SEED_NAMESPACES) await ensure(client, namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  for (const n of nodes) {
    await ensure(client, NODES, { apiVersion: 'v1', kind: 'Node', metadata: { name: n.name, labels: { ...extraNodeLabels, [GATEWAY_NODE_LABEL]: '', 'kubernetes.io/hostname': n.name } } });
    await setNodeReady(client, n, true);
    await ensure(client, CILIUM_NODES, { apiVersion: 'cilium.io/v2', kind: 'CiliumNode', metadata: { name: n.name }, spec: {} });
    const pod = `cilium-agent-${n.name}`;
    // Where and how upstream Cilium's chart runs its agents (the controller's defaults).
    await ensure(client, pods(DEFAULT_CILIUM_NAMESPACE), {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: pod, namespace: DEFAULT_CILIUM_NAMESPACE, labels: selectorLabels(DEFAULT_CILIUM_AGENT_SELECTOR) },
      spec: { nodeName: n.name, containers: [{ name: 'cilium-agent', image: 'lab.invalid/cilium:none' }] },
    });
    await client.mergePatch(pods(DEFAULT_CILIUM_NAMESPACE), pod, { status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] } }, 'status');
  }
}
