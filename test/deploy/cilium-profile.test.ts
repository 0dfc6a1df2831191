// The default install (profile cilium) on a cluster laid out as upstream Cilium's Helm chart lays it out:
// cilium-agent pods of the `cilium` DaemonSet in kube-system (k8s-app=cilium, with the chart's other labels,
// owner, init containers and host network), next to cilium-operator and cilium-envoy pods that are not
// agents. The controller runs as `egressgw controller` with exactly the rendered Deployment's arguments and
// environment (expanded as the kubelet does), in a network namespace of its own (its :8080 is then its own).
//
// First the same controller with the deckhouse profile's arguments: it finds no cilium-agent pod, and says
// so: the gateway's reason is CiliumAgentNotFound and its log names the namespace and selector it used.
// Then the cilium profile's: the gateway gets an active node among the nodes that run a cilium-agent.
//
// Needs root and `ip netns`.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { MODE_PRIMARY_IP, PROFILES, type ProfileName } from '../../src/api/names.ts';
import type { EgressGateway } from '../../src/api/types.ts';
import { renderManifests } from '../../src/cli/manifests.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { CILIUM_NODES, GATEWAYS, NODES, namespaces, pods } from '../../src/kube/resources.ts';
import { startTestCluster, type TestCluster } from '../../src/testenv/apiserver.ts';
import { setNodeReady } from '../../src/testenv/seed.ts';
import { Network } from '../../src/testenv/netns.ts';
import { poll } from '../../src/testenv/poll.ts';
import { BIN, ROOT } from '../cli/helpers.ts';
import { containerRun } from './pod-args.ts';

const canRun = process.getuid?.() === 0;
const GATEWAY_LABEL = 'egressgw.test/gateway';
const NODE_NAMES = ['worker-1', 'worker-2', 'worker-3'];
const CILIUM_VERSION = 'v1.18.2';

/** A pod as a DaemonSet or Deployment of Cilium's chart creates it, scheduled and (when `ready`) Ready. */
function chartPod(o: { name: string; node: string; labels: Record<string, string>; owner: { kind: string; name: string; uid: string }; container: string; init?: string[] }) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: o.name,
      namespace: 'kube-system',
      labels: o.labels,
      annotations: { 'kubectl.kubernetes.io/default-container': o.container },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: o.owner.kind, name: o.owner.name, uid: o.owner.uid, controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      nodeName: o.node,
      hostNetwork: true,
      serviceAccountName: o.container === 'cilium-agent' ? 'cilium' : o.container,
      automountServiceAccountToken: false,
      priorityClassName: 'system-node-critical',
      tolerations: [{ operator: 'Exists' }],
      initContainers: (o.init ?? []).map((name) => ({ name, image: `quay.io/cilium/cilium:${CILIUM_VERSION}` })),
      containers: [{ name: o.container, image: `quay.io/cilium/${o.container === 'cilium-agent' ? 'cilium' : o.container}:${CILIUM_VERSION}` }],
    },
  };
}

const readyStatus = (containers: string[]) => {
  const now = new Date().toISOString();
  return {
    status: {
      phase: 'Running',
      conditions: ['PodReadyToStartContainers', 'Initialized', 'Ready', 'ContainersReady', 'PodScheduled'].map((type) => ({ type, status: 'True', lastTransitionTime: now })),
      containerStatuses: containers.map((name) => ({ name, ready: true, started: true, restartCount: 0, image: `quay.io/cilium/cilium:${CILIUM_VERSION}`, imageID: '', state: { running: { startedAt: now } } })),
    },
  };
};

describe('install profile cilium against a cluster as upstream Cilium lays it out', { skip: canRun ? false : 'needs root for a network namespace' }, () => {
  let net: Network;
  let cluster: TestCluster;
  let client: KubeClient;
  let child: ChildProcess | undefined;
  let lines: string[] = [];

  before(async () => {
    net = await Network.create({ nodes: 1, management: true, prefix: 'egc' });
    cluster = await startTestCluster({ bindAddress: net.mgmt!.hostIp, extraSANs: [net.mgmt!.hostIp], namespaces: [PROFILES.cilium.namespace, PROFILES.deckhouse.namespace] });
    client = new KubeClient(cluster.kubeConfig);
    await cluster.applyCRDs([join(ROOT, 'deploy', 'crds'), join(ROOT, 'test', 'fixtures', 'crds', 'cilium')]);
    for (const ns of [PROFILES.cilium.namespace, PROFILES.deckhouse.namespace]) {
      await client.create(namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }).catch(() => undefined);
    }
    for (const [i, name] of NODE_NAMES.entries()) {
      await client.create(NODES, { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { [GATEWAY_LABEL]: '', 'kubernetes.io/hostname': name } } });
      await setNodeReady(client, { name, ip: `198.18.0.${20 + i}` }, true);
      await client.create(CILIUM_NODES, { apiVersion: 'cilium.io/v2', kind: 'CiliumNode', metadata: { name }, spec: {} });
    }
    // The chart's workloads, as objects (no kubelet here), so the pods can name their owners.
    const owner = async (kind: 'DaemonSet' | 'Deployment', name: string, labels: Record<string, string>): Promise<{ kind: string; name: string; uid: string }> => {
      const plural = kind === 'DaemonSet' ? 'daemonsets' : 'deployments';
      const created = await client.create<{ metadata: { uid: string } }>({ group: 'apps', version: 'v1', plural, namespace: 'kube-system' }, {
        apiVersion: 'apps/v1',
        kind,
        metadata: { name, namespace: 'kube-system', labels },
        spec: { selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name, image: `quay.io/cilium/${name}:${CILIUM_VERSION}` }] } } },
      });
      return { kind, name, uid: created.metadata.uid };
    };
    const agentLabels = { 'k8s-app': 'cilium', 'app.kubernetes.io/name': 'cilium-agent', 'app.kubernetes.io/part-of': 'cilium' };
    const agents = await owner('DaemonSet', 'cilium', agentLabels);
    const envoys = await owner('DaemonSet', 'cilium-envoy', { 'k8s-app': 'cilium-envoy', 'app.kubernetes.io/name': 'cilium-envoy', 'app.kubernetes.io/part-of': 'cilium' });
    const operator = await owner('Deployment', 'cilium-operator', { 'io.cilium/app': 'operator', name: 'cilium-operator', 'app.kubernetes.io/name': 'cilium-operator', 'app.kubernetes.io/part-of': 'cilium' });
    const put = async (pod: ReturnType<typeof chartPod>, containers: string[]): Promise<void> => {
      await client.create(pods('kube-system'), pod);
      await client.mergePatch(pods('kube-system'), pod.metadata.name, readyStatus(containers), 'status');
    };
    const hash = { 'controller-revision-hash': '7c9b8d4f6d', 'pod-template-generation': '1' };
    // Agents on worker-1 and worker-2 only; worker-3 runs Cilium's envoy and operator, which are not agents.
    for (const [i, node] of NODE_NAMES.slice(0, 2).entries()) {
      await put(chartPod({
        name: `cilium-${['x7k2p', 'q9m4d'][i]}`, node, labels: { ...agentLabels, ...hash }, owner: agents, container: 'cilium-agent',
        init: ['config', 'mount-cgroup', 'apply-sysctl-overwrites', 'mount-bpf-fs', 'clean-cilium-state', 'install-cni-binaries'],
      }), ['cilium-agent']);
    }
    for (const [i, node] of NODE_NAMES.entries()) {
      await put(chartPod({ name: `cilium-envoy-${['a1b2c', 'd3e4f', 'g5h6i'][i]}`, node, labels: { 'k8s-app': 'cilium-envoy', 'app.kubernetes.io/name': 'cilium-envoy', 'app.kubernetes.io/part-of': 'cilium', ...hash }, owner: envoys, container: 'cilium-envoy' }), ['cilium-envoy']);
    }
    await put(chartPod({ name: 'cilium-operator-6d8f9c7b5-zt4nw', node: 'worker-3', labels: { 'io.cilium/app': 'operator', name: 'cilium-operator', 'app.kubernetes.io/name': 'cilium-operator', 'app.kubernetes.io/part-of': 'cilium', 'pod-template-hash': '6d8f9c7b5' }, owner: operator, container: 'cilium-operator' }), ['cilium-operator']);

    await client.create(GATEWAYS, {
      apiVersion: `${GATEWAYS.group}/${GATEWAYS.version}`,
      kind: 'EgressGateway',
      metadata: { name: 'upstream' },
      spec: { nodeSelector: { [GATEWAY_LABEL]: '' }, sourceIP: { mode: MODE_PRIMARY_IP, primaryIPFromEgressGatewayNodeInterface: { interfaceName: 'eth1' } } },
    });
  });

  after(async () => {
    await stopController();
    await cluster?.stop();
    await net?.teardown();
  });

  /** `egressgw controller` with exactly the profile's rendered Deployment args and env, in the lab node's namespace. */
  async function startController(profile: ProfileName): Promise<void> {
    await stopController();
    const dep = renderManifests({ profile }).find((m) => m.kind === 'Deployment');
    assert.ok(dep);
    const namespace = PROFILES[profile].namespace;
    const run = containerRun(dep, 'controller', { namespace, name: 'egressgw-controller-5b7d9c8f4-x2v9q' });
    assert.equal(run.args[0], 'controller');
    const kubeconfig = cluster.kubeconfigFor(`system:serviceaccount:${namespace}:egressgw-controller`);
    lines = [];
    child = spawn('ip', ['netns', 'exec', net.nodes[0]!.ns, process.execPath, BIN, ...run.args], {
      env: { ...process.env, ...Object.fromEntries(run.env), KUBECONFIG: kubeconfig },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
    createInterface({ input: child.stderr! }).on('line', (l) => lines.push(l));
  }

  async function stopController(): Promise<void> {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
  }

  const gateway = (): Promise<EgressGateway> => client.get<EgressGateway>(GATEWAYS, 'upstream');
  const ready = (g: EgressGateway) => g.status?.conditions?.find((c) => c.type === 'Ready');
  const log = (): string => `\n--- controller output ---\n${lines.slice(-40).join('\n')}`;

  test('with the deckhouse profile\'s args it finds no cilium-agent pod and says where it looked', async () => {
    await startController('deckhouse');
    const { ciliumNamespace, ciliumSelector } = PROFILES.deckhouse;
    const cond = await poll('reason CiliumAgentNotFound', async () => {
      const c = ready(await gateway());
      return c?.reason === 'CiliumAgentNotFound' ? c : undefined;
    }, 60_000).catch((err: Error) => assert.fail(`${err.message}${log()}`));
    assert.equal(cond.status, 'False');
    assert.match(cond.message ?? '', new RegExp(`no cilium-agent pod found \\(namespace ${ciliumNamespace}, selector ${ciliumSelector}\\)`));
    const warning = lines.map((l) => JSON.parse(l) as { level: string; msg: string; namespace?: string; selector?: string }).find((l) => /no cilium-agent pod found/.test(l.msg));
    assert.ok(warning, `a log line says no cilium-agent pod was found${log()}`);
    assert.deepEqual([warning.level, warning.namespace, warning.selector], ['warn', ciliumNamespace, ciliumSelector]);
    assert.match(warning.msg, new RegExp(`in namespace ${ciliumNamespace} with selector ${ciliumSelector}`));
    await stopController();
  });

  test('with the cilium profile\'s args (its defaults) the gateway gets an active node that runs a cilium-agent', async () => {
    await startController('cilium');
    const g = await poll('gateway Ready with an active node', async () => {
      const gw = await gateway();
      return ready(gw)?.status === 'True' && gw.status?.activeNodeName ? gw : undefined;
    }, 60_000).catch((err: Error) => assert.fail(`${err.message}${log()}`));
    assert.ok(['worker-1', 'worker-2'].includes(g.status!.activeNodeName!), g.status!.activeNodeName);
    // worker-3 runs cilium-envoy and cilium-operator but no agent: matched by the gateway, not eligible.
    assert.deepEqual([g.status?.readyNodes, g.status?.totalNodes], [2, 3]);
    assert.equal(ready(g)?.reason, 'ElectionSucceed');
    // And it is Ready itself, on the probe port of the Deployment.
    const res = await fetch(`http://${net.nodes[0]!.mgmt!.ip}:8080/readyz`);
    assert.equal(res.status, 200);
  });
});
