// Fixtures for controller integration tests against the real test API server: nodes, CiliumNodes,
// cilium-agent and egressgw agent pods with a Ready status (written through /status, as a kubelet
// would), heartbeat Leases renewed from the test like an agent would, and the controller itself
// running in-process. Waits are condition polls with deadlines, never fixed sleeps.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { startTestCluster } from '../../src/testenv/apiserver.ts';
import { poll, type Pending } from '../../src/testenv/poll.ts';
import { KubeClient, isStatus, type KubeConfig, type ResourceRef } from '../../src/kube/client.ts';
import { CILIUM_NODES, GATEWAYS, INSTANCES, NODES, POLICIES, CEGPS, leases, namespaces, pods } from '../../src/kube/resources.ts';
import { microTime, rfc3339 } from '../../src/kube/time.ts';
import { createLogger, silentLogger, type Logger } from '../../src/kube/log.ts';
import { heartbeatLeaseName, DEFAULT_CILIUM_AGENT_SELECTOR, DEFAULT_CILIUM_NAMESPACE, DEFAULT_NAMESPACE, activeForLabel, selectorLabels } from '../../src/api/names.ts';
import type { EgressGateway, EgressGatewayInstance, NodeLike } from '../../src/api/types.ts';
import { runController, type PassInfo } from '../../src/controller/controller.ts';
import { ControllerMetrics } from '../../src/controller/metrics.ts';
import { parseControllerArgs } from '../../src/controller/options.ts';

export const repoRoot = join(import.meta.dirname, '..', '..');
export const NS = DEFAULT_NAMESPACE;
export const CILIUM_NS = DEFAULT_CILIUM_NAMESPACE;

export function testLogger(name: string): Logger {
  return process.env.EGRESSGW_TEST_LOG ? createLogger(process.env.EGRESSGW_TEST_LOG, name) : silentLogger;
}

/** poll (src/testenv/poll.ts) with the controller tests' default deadline. */
export function waitFor<T>(what: string, fn: () => Promise<T | Pending> | T | Pending, timeoutMs = 30_000): Promise<T> {
  return poll(what, fn, timeoutMs);
}

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;

export class Fixture {
  readonly cluster: Cluster;
  readonly client: KubeClient;
  readonly kubeConfig: KubeConfig;
  private readonly renewers = new Map<string, NodeJS.Timeout>();

  private constructor(cluster: Cluster) {
    this.cluster = cluster;
    this.kubeConfig = cluster.kubeConfig;
    this.client = new KubeClient(cluster.kubeConfig);
  }

  static async start(): Promise<Fixture> {
    const cluster = await startTestCluster({ namespaces: [NS, CILIUM_NS] });
    const f = new Fixture(cluster);
    try {
      await cluster.applyCRDs([join(repoRoot, 'deploy', 'crds'), join(repoRoot, 'test', 'fixtures', 'crds', 'cilium')]);
      for (const ns of [NS, CILIUM_NS]) {
        await f.ensure(namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
        // Pods need their service account when the ServiceAccount admission plugin runs.
        await f.ensure({ group: '', version: 'v1', plural: 'serviceaccounts', namespace: ns }, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } });
      }
      await waitFor('CRDs served', async () => {
        for (const r of [GATEWAYS, POLICIES, INSTANCES, CEGPS, CILIUM_NODES]) await f.client.list(r);
        return true;
      });
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return f;
  }

  async stop(): Promise<void> {
    for (const t of this.renewers.values()) clearInterval(t);
    this.renewers.clear();
    await this.cluster.stop();
  }

  async ensure(ref: ResourceRef, body: unknown): Promise<void> {
    try {
      await this.client.create(ref, body);
    } catch (err) {
      if (!isStatus(err, 409)) throw err;
    }
  }

  /** A Node (no Ready condition = Ready, as the reference) and its CiliumNode with the same labels. */
  async node(name: string, labels: Record<string, string>, opts: { ciliumNode?: boolean } = {}): Promise<void> {
    await this.client.create(NODES, { apiVersion: 'v1', kind: 'Node', metadata: { name, labels } });
    await this.setNodeReady(name, true);
    if (opts.ciliumNode !== false) {
      await this.client.create(CILIUM_NODES, { apiVersion: 'cilium.io/v2', kind: 'CiliumNode', metadata: { name, labels }, spec: {} });
    }
  }

  async setNodeReady(name: string, ready: boolean): Promise<void> {
    const now = rfc3339(Date.now());
    await this.client.mergePatch(NODES, name, {
      status: {
        conditions: [
          {
            type: 'Ready',
            status: ready ? 'True' : 'False',
            reason: ready ? 'KubeletReady' : 'KubeletNotReady',
            message: ready ? 'kubelet is posting ready status' : 'test says so',
            lastHeartbeatTime: now,
            lastTransitionTime: now,
          },
        ],
      },
    }, 'status');
  }

  async cordon(name: string, on: boolean): Promise<void> {
    await this.client.mergePatch(NODES, name, { spec: { unschedulable: on ? true : null } });
  }

  async setNodeLabels(name: string, labels: Record<string, string | null>): Promise<void> {
    await this.client.mergePatch(NODES, name, { metadata: { labels } });
  }

  private async pod(name: string, node: string, labels: Record<string, string>, ready: boolean, ns = NS): Promise<void> {
    await this.client.create(pods(ns), {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, labels },
      spec: { nodeName: node, automountServiceAccountToken: false, containers: [{ name: 'c', image: 'example.invalid/none' }] },
    });
    await this.setPodReady(name, ready, ns);
  }

  async setPodReady(name: string, ready: boolean, ns = name.startsWith('cilium-') ? CILIUM_NS : NS): Promise<void> {
    const now = rfc3339(Date.now());
    await this.client.mergePatch(pods(ns), name, {
      status: { phase: 'Running', conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: now }] },
    }, 'status');
  }

  ciliumAgent(node: string, ready = true): Promise<void> {
    // As upstream Cilium's chart runs them (the controller's default --cilium-namespace/--cilium-selector).
    return this.pod(`cilium-${node}`, node, selectorLabels(DEFAULT_CILIUM_AGENT_SELECTOR), ready, CILIUM_NS);
  }

  agentPod(node: string, ready = true): Promise<void> {
    return this.pod(`egressgw-agent-${node}`, node, { app: 'egress-gateway-agent' }, ready);
  }

  /** Renew the node's heartbeat Lease every 200 ms (leaseDurationSeconds 2), like an agent. */
  async startHeartbeat(node: string): Promise<void> {
    const ref = leases(NS);
    const name = heartbeatLeaseName(node);
    const spec = () => ({ holderIdentity: node, leaseDurationSeconds: 2, renewTime: microTime(Date.now()) });
    await this.ensure(ref, { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name }, spec: spec() });
    const t = setInterval(() => {
      this.client.mergePatch(ref, name, { spec: spec() }).catch(() => undefined);
    }, 200);
    this.renewers.set(node, t);
  }

  stopHeartbeat(node: string): void {
    clearInterval(this.renewers.get(node));
    this.renewers.delete(node);
  }

  /** A fully healthy gateway node: Node, CiliumNode, Ready cilium agent, Ready agent, live heartbeat. */
  /**
   * A VIP gateway over healthy nodes (selected by `test-group: <name>`) whose agents are alive
   * (`agents.alive` is the stand-in agents' set, see agents.ts).
   */
  async vipGatewayOnHealthyNodes(name: string, nodes: string[], ip: string, agents: { alive: Set<string> }): Promise<void> {
    const sel = { 'test-group': name };
    for (const n of nodes) {
      await this.healthyNode(n, sel);
      agents.alive.add(n);
    }
    await this.client.create(GATEWAYS, {
      apiVersion: 'network.deckhouse.io/v1alpha1',
      kind: 'EgressGateway',
      metadata: { name },
      spec: { nodeSelector: sel, sourceIP: { mode: 'VirtualIPAddress', virtualIPAddress: { ip } } },
    });
  }

  async healthyNode(name: string, labels: Record<string, string>): Promise<void> {
    await this.node(name, labels);
    await this.ciliumAgent(name);
    await this.agentPod(name);
    await this.startHeartbeat(name);
  }

  /** Apply a manifest file verbatim (our kinds only). */
  async applyFile(path: string): Promise<void> {
    for (const doc of parseAllDocuments(readFileSync(path, 'utf8'))) {
      const obj = doc.toJS() as { kind?: string } | null;
      if (!obj) continue;
      await this.client.create(refOfKind(obj.kind), obj);
    }
  }

  getNode(name: string): Promise<NodeLike> {
    return this.client.get<NodeLike>(NODES, name);
  }

  async nodeLabels(name: string): Promise<Record<string, string>> {
    return (await this.getNode(name)).metadata.labels ?? {};
  }

  async ciliumNodeLabels(name: string): Promise<Record<string, string>> {
    return (await this.client.get<NodeLike>(CILIUM_NODES, name)).metadata.labels ?? {};
  }

  /** Names of nodes carrying active-for-<gateway>, among `candidates`. */
  async activeNodes(gateway: string, candidates: string[]): Promise<string[]> {
    const out: string[] = [];
    for (const n of candidates) if (activeForLabel(gateway) in (await this.nodeLabels(n))) out.push(n);
    return out;
  }

  gateway(name: string): Promise<EgressGateway> {
    return this.client.get<EgressGateway>(GATEWAYS, name);
  }

  async instances(gateway?: string): Promise<EgressGatewayInstance[]> {
    const list = await this.client.list<EgressGatewayInstance>(INSTANCES);
    if (!gateway) return list.items;
    const g = await this.client.tryGet<EgressGateway>(GATEWAYS, gateway);
    return list.items.filter((i) => i.metadata.ownerReferences?.some((r) => (g ? r.uid === g.metadata.uid : r.name === gateway)));
  }

  /** What an agent does once the VIP is up: instance Ready=True for its generation. */
  async confirmInstance(name: string): Promise<void> {
    const inst = await this.client.get<EgressGatewayInstance>(INSTANCES, name);
    const now = rfc3339(Date.now());
    await this.client.mergePatch(INSTANCES, name, {
      status: {
        observedGeneration: inst.metadata.generation,
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'AnnouncingSucceed',
            message: 'Announcing 1 Virtual IPs',
            lastTransitionTime: now,
            observedGeneration: inst.metadata.generation,
          },
        ],
      },
    }, 'status');
  }
}

export function refOfKind(kind: string | undefined): ResourceRef {
  switch (kind) {
    case 'EgressGateway':
      return GATEWAYS;
    case 'EgressGatewayPolicy':
      return POLICIES;
    case 'SDNInternalEgressGatewayInstance':
      return INSTANCES;
    default:
      throw new Error(`applyFile: unsupported kind ${kind}`);
  }
}

export interface RunningController {
  metrics: ControllerMetrics;
  passes: PassInfo[];
  ready: Promise<{ metricsPort?: number }>;
  stop(): Promise<void>;
  /** Total writes sent so far (egressgw_writes_total summed). */
  writes(): Promise<number>;
}

/** Start a controller in-process with test-friendly flags (no HTTP unless asked, fast resync). */
export function startController(f: Fixture, args: string[] = [], name = 'controller'): RunningController {
  const ac = new AbortController();
  const metrics = new ControllerMetrics();
  const passes: PassInfo[] = [];
  let onReady!: (v: { metricsPort?: number }) => void;
  const ready = new Promise<{ metricsPort?: number }>((r) => (onReady = r));
  const options = parseControllerArgs(['--metrics-addr', '', '--leader-elect=false', '--resync', '2s', '--handover-timeout', '5s', ...args]);
  const done = runController(options, {
    signal: ac.signal,
    kubeConfig: f.kubeConfig,
    logger: testLogger(name),
    metrics,
    onPass: (p) => {
      passes.push(p);
      if (passes.length > 200) passes.shift();
    },
    onReady,
  });
  done.catch(() => undefined);
  return {
    metrics,
    passes,
    ready,
    stop: async () => {
      ac.abort();
      await done;
    },
    writes: () => metrics.totalWrites(),
  };
}

/** The value of one series of a prom-client metric, or undefined when the series does not exist. */
export async function metricValue(
  metric: { get(): Promise<{ values: Array<{ value: number; labels: Record<string, string | number> }> }> },
  labels: Record<string, string>,
): Promise<number | undefined> {
  const { values } = await metric.get();
  const hit = values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return hit?.value;
}

/** Events (events.k8s.io/v1) about one object. */
export async function eventsFor(f: Fixture, kind: string, name: string): Promise<Array<{ reason: string; type: string; note: string }>> {
  const { events } = await import('../../src/kube/resources.ts');
  const list = await f.client.list<{ regarding: { kind: string; name: string }; reason: string; type: string; note: string }>(events('default'));
  return list.items.filter((e) => e.regarding.kind === kind && e.regarding.name === name);
}
