// `egressgw status` and `egressgw move` against the real API server with the real controller (in-process).
// PrimaryIP mode needs no node agent, so this runs without network namespaces: Nodes, CiliumNodes and
// Ready cilium-agent Pods are objects, the controller elects and moves, the CLI reads and asks.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DEFAULT_CILIUM_AGENT_SELECTOR, DEFAULT_CILIUM_NAMESPACE, DEFAULT_NAMESPACE, MOVE_TO_ANNOTATION, selectorLabels } from '../../src/api/names.ts';
import type { EgressGateway } from '../../src/api/types.ts';
import { runController } from '../../src/controller/controller.ts';
import { parseControllerArgs } from '../../src/controller/options.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { CILIUM_NODES, GATEWAYS, NODES, POLICIES, namespaces, pods } from '../../src/kube/resources.ts';
import { startTestCluster, type TestCluster } from '../../src/testenv/apiserver.ts';
import { poll } from '../../src/testenv/poll.ts';
import type { StatusModel } from '../../src/status/model.ts';
import { egressgw, ROOT } from './helpers.ts';

const EGRESS = 'node-role.deckhouse.io/egress';
const NODE_NAMES = ['n1', 'n2', 'n3'];

describe('status and move against a live cluster', () => {
  let cluster: TestCluster;
  let client: KubeClient;
  let kubeconfig: string;
  const stopController = new AbortController();
  let controller: Promise<void> | undefined;

  const gateway = (): Promise<EgressGateway> => client.get<EgressGateway>(GATEWAYS, 'egress');

  before(async () => {
    cluster = await startTestCluster({
      crds: [join(ROOT, 'deploy', 'crds'), join(ROOT, 'test', 'fixtures', 'crds', 'cilium')],
      namespaces: [DEFAULT_NAMESPACE, DEFAULT_CILIUM_NAMESPACE, 'shop'],
    });
    client = new KubeClient(cluster.kubeConfig);
    kubeconfig = cluster.kubeconfigPath;
    for (const ns of [DEFAULT_NAMESPACE, DEFAULT_CILIUM_NAMESPACE, 'shop']) {
      await client.create(namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }).catch(() => undefined);
    }
    for (const n of NODE_NAMES) {
      await client.create(NODES, { apiVersion: 'v1', kind: 'Node', metadata: { name: n, labels: { [EGRESS]: '' } } });
      await client.mergePatch(NODES, n, { status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: '', lastHeartbeatTime: new Date().toISOString(), lastTransitionTime: new Date().toISOString() }] } }, 'status');
      await client.create(CILIUM_NODES, { apiVersion: 'cilium.io/v2', kind: 'CiliumNode', metadata: { name: n }, spec: {} });
      const pod = `cilium-${n}`;
      await client.create(pods(DEFAULT_CILIUM_NAMESPACE), {
        apiVersion: 'v1', kind: 'Pod',
        metadata: { name: pod, namespace: DEFAULT_CILIUM_NAMESPACE, labels: selectorLabels(DEFAULT_CILIUM_AGENT_SELECTOR) },
        spec: { nodeName: n, containers: [{ name: 'cilium-agent', image: 'test.invalid/cilium' }] },
      });
      await client.mergePatch(pods(DEFAULT_CILIUM_NAMESPACE), pod, { status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] } }, 'status');
    }
    // Workload pods: two selected by the policy, one not.
    for (const [name, app] of [['web-1', 'web'], ['web-2', 'web'], ['db-1', 'db']]) {
      await client.create(pods('shop'), {
        apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', labels: { app } },
        spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'test.invalid/app' }] },
      });
    }
    // n3 is cordoned: a move there must be refused.
    await client.mergePatch(NODES, 'n3', { spec: { unschedulable: true } });
    await client.create(GATEWAYS, {
      apiVersion: 'network.deckhouse.io/v1alpha1', kind: 'EgressGateway', metadata: { name: 'egress' },
      spec: { nodeSelector: { [EGRESS]: '' }, sourceIP: { mode: 'PrimaryIPFromEgressGatewayNodeInterface', primaryIPFromEgressGatewayNodeInterface: { interfaceName: 'eth1' } } },
    });
    await client.create(POLICIES, {
      apiVersion: 'network.deckhouse.io/v1alpha1', kind: 'EgressGatewayPolicy', metadata: { name: 'shop-web' },
      spec: { egressGatewayName: 'egress', destinationCIDRs: ['198.18.0.0/15'], selectors: [{ podSelector: { matchLabels: { app: 'web', 'io.kubernetes.pod.namespace': 'shop' } } }] },
    });
    await client.create(POLICIES, {
      apiVersion: 'network.deckhouse.io/v1alpha1', kind: 'EgressGatewayPolicy', metadata: { name: 'orphan' },
      spec: { egressGatewayName: 'missing', destinationCIDRs: ['192.0.2.0/24'], selectors: [{ podSelector: { matchLabels: { app: 'db' } } }] },
    });
    controller = runController(parseControllerArgs(['--leader-elect=false', '--metrics-addr=', '--log-level=error']), {
      signal: stopController.signal,
      kubeConfig: cluster.kubeConfig,
    });
    await poll('an active node', async () => (await gateway()).status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'), 30_000, { intervalMs: 100 });
  });

  after(async () => {
    stopController.abort();
    await controller;
    await cluster?.stop();
  });

  test('status -o json: gateways and policies with selected pods', async () => {
    const r = await egressgw(['status', '--kubeconfig', kubeconfig, '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const model = JSON.parse(r.stdout) as StatusModel;
    const g = model.gateways.find((x) => x.name === 'egress');
    assert.ok(g);
    assert.equal(g.mode, 'PrimaryIPFromEgressGatewayNodeInterface');
    assert.equal(g.source, 'eth1');
    assert.ok(['n1', 'n2'].includes(g.activeNode), `active node ${g.activeNode}`);
    assert.equal(g.readyNodes, 2);
    assert.equal(g.ready, 'True');
    const p = model.policies.find((x) => x.name === 'shop-web');
    assert.equal(p?.selectedPods, 2);
    assert.equal(p?.gateway, 'egress');
    const orphan = model.policies.find((x) => x.name === 'orphan');
    assert.deepEqual([orphan?.ready, orphan?.reason], ['False', 'GatewayNotFound']);
  });

  test('status table: one screen, no colour when not a terminal', async () => {
    const r = await egressgw(['status', '--kubeconfig', kubeconfig], { env: { NO_COLOR: undefined } });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes('\u001b['), 'no ANSI escapes');
    assert.match(r.stdout, /^egress\s+PrimaryIP\s+eth1\s+n[12]\s+2\/3\s/m);
    assert.match(r.stdout, /^orphan\s+missing\s+192\.0\.2\.0\/24\s+1\s+False GatewayNotFound/m);
  });

  test('move to a cordoned node is refused with the reason, exit 2, nothing written', async () => {
    const r = await egressgw(['move', 'egress', 'n3', '--kubeconfig', kubeconfig]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /cannot move egress to n3: .*cordoned/);
    assert.equal((await gateway()).metadata.annotations?.[MOVE_TO_ANNOTATION], undefined);
  });

  test('move to unknown names is refused', async () => {
    const a = await egressgw(['move', 'nope', 'n1', '--kubeconfig', kubeconfig]);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /EgressGateway "nope" not found/);
    const b = await egressgw(['move', 'egress', 'n9', '--kubeconfig', kubeconfig]);
    assert.equal(b.code, 2);
    assert.match(b.stderr, /node "n9" not found/);
  });

  test('move --wait hands the gateway over and the controller clears the request', async () => {
    const from = (await gateway()).status?.activeNodeName;
    const to = from === 'n1' ? 'n2' : 'n1';
    const r = await egressgw(['move', 'egress', to, '--kubeconfig', kubeconfig, '--wait', '--timeout', '30s']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`moved: ${to} is the active node of egress`));
    const g = await gateway();
    assert.equal(g.status?.activeNodeName, to);
    await poll('the move request to be cleared', async () => (await gateway()).metadata.annotations?.[MOVE_TO_ANNOTATION] === undefined, 30_000, { intervalMs: 100 });
    const again = await egressgw(['move', 'egress', to, '--kubeconfig', kubeconfig]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /already the active node/);
  });
});
