// Least privilege of `egressgw manifests --dataplane linux`, checked against reality as rbac.test.ts does
// for the default install: the controller (as its ServiceAccount, `--dataplane linux`) and real agents on
// every node of the Linux data plane's netns cluster run through a scenario that exercises their paths
// (dataplane objects written, updated on a failover and deleted; agents watching them, their node's pods,
// namespaces and their Node; a Warning event; the uninstall check at exit). Every request must be granted
// and every grant used, except those in UNEXERCISED.
//
// Needs root and `ip netns` (src/testenv/dataplane-env.ts).
import { after, before, describe } from 'node:test';
import { API_VERSION, DEFAULT_NAMESPACE, MODE_VIP } from '../../src/api/names.ts';
import type { EgressGatewayDataplane } from '../../src/api/types.ts';
import { renderManifests } from '../../src/cli/manifests.ts';
import { runController } from '../../src/controller/controller.ts';
import { parseControllerArgs } from '../../src/controller/options.ts';
import { DATAPLANES, GATEWAYS } from '../../src/kube/resources.ts';
import { kernelView, startDataplaneEnv, type DataplaneEnv } from '../../src/testenv/dataplane-env.ts';
import { POD_CIDR, SERVICE_CIDR } from '../../src/testenv/podnet.ts';
import { poll } from '../../src/testenv/poll.ts';
import { GATEWAY_NODE_LABEL, TEST_VIP, applyObjects } from '../../src/testenv/seed.ts';
import { COMPONENTS, auditTests } from './rbac-audit.ts';

const canRun = process.getuid?.() === 0;
const WAIT = 60_000;


/** Grants the scenario cannot exercise, with why they are still needed (keys: `verb group/resource`). */
const UNEXERCISED: Record<keyof typeof COMPONENTS, Record<string, string>> = {
  controller: {
    // The default install's grants that only the Cilium data plane or rarer paths use (rbac.test.ts covers them).
    'create cilium.io/ciliumegressgatewaypolicies': 'the Cilium data plane only',
    'patch cilium.io/ciliumegressgatewaypolicies': 'the Cilium data plane only',
    'delete cilium.io/ciliumegressgatewaypolicies': 'the Cilium data plane only',
    'get internal.network.deckhouse.io/sdninternalegressgatewayinstances': 'cache-miss fallback of updateInstance',
    'patch events.k8s.io/events': 'event series updates',
    'update internal.network.deckhouse.io/sdninternalegressgatewayinstances': 'an instance spec change (the default audit covers it)',
    'patch network.deckhouse.io/egressgateways': 'the move-to annotation (the default audit covers it)',
    // Server-side apply that creates an object is audited as patch, but authorized as patch and create.
    'create internal.network.deckhouse.io/sdninternalegressgatewaydataplanes': 'SSA creation is authorized as create',
    'patch cilium.io/ciliumnodes': 'no CiliumNodes without Cilium',
  },
  agent: {
    'patch events.k8s.io/events': 'event series updates',
    'patch internal.network.deckhouse.io/sdninternalegressgatewayinstances': 'the finalizer release of a withdrawn VIP (the default audit covers it)',
    // Written only while a SNAT port clash exists through the active node (test/dataplane/snat-clash.test.ts).
    'patch internal.network.deckhouse.io/sdninternalegressgatewaydataplanes/status': 'the active node\'s SNAT remaps, published only when two connections clash',
  },
};

describe('RBAC of the Linux data plane install is exactly what the components use', { skip: canRun ? false : 'needs root for network namespaces' }, () => {
  let env: DataplaneEnv;
  const stop = new AbortController();
  let controller: Promise<void> | undefined;

  before(async () => {
    env = await startDataplaneEnv({ controller: false, agentArgs: ['--daemonset', `${DEFAULT_NAMESPACE}/egress-gateway-agent`] });
    const options = parseControllerArgs(['--dataplane', 'linux', '--metrics-addr=', '--log-level=warn', '--leader-elect-retry-period=500ms', '--leader-elect-renew-deadline=2s', '--leader-elect-lease-duration=3s', '--handover-timeout=30s']);
    controller = runController(options, { signal: stop.signal, kubeConfig: env.cluster.clientFor(COMPONENTS.controller.user) });
    const client = env.client;
    const [w4] = env.workers;
    const pod = env.pods.find((p) => p.node === w4!.name)!;
    await env.putNamespace('audit');
    await env.putPod(pod, 'audit', { app: 'x' });
    // A pod object whose address is outside the pod CIDRs: the agent's Warning event on its Node.
    await env.putPod({ ...pod, name: 'outside', ip: '192.0.2.77' }, 'audit', { app: 'x' });
    await applyObjects(client, [
      { apiVersion: API_VERSION, kind: 'EgressGateway', metadata: { name: 'audit' }, spec: { nodeSelector: { [GATEWAY_NODE_LABEL]: '' }, sourceIP: { mode: MODE_VIP, virtualIPAddress: { ip: TEST_VIP } } } },
      { apiVersion: API_VERSION, kind: 'EgressGatewayPolicy', metadata: { name: 'audit' }, spec: { egressGatewayName: 'audit', destinationCIDRs: ['203.0.113.0/24'], selectors: [{ podSelector: { matchLabels: { app: 'x' } } }] } },
    ]);
    const active = async (not?: string) =>
      poll('an active node', async () => {
        const d = await client.tryGet<EgressGatewayDataplane>(DATAPLANES, 'audit');
        const a = d?.spec?.activeNodeName;
        return a && a !== not ? a : undefined;
      }, WAIT);
    const first = await active();
    await poll('the worker programmed', async () => (await kernelView(w4!.ns)).selected.includes(pod.ip), WAIT);
    // A hard failure: the dataplane object follows the new node.
    const dead = env.gateways.find((n) => n.name === first)!;
    dead.agent.kill('SIGKILL');
    await dead.agent.exited;
    await active(first);
    // Deleting the gateway deletes its dataplane object.
    await client.delete(GATEWAYS, 'audit');
    await poll('dataplane object deleted', async () => (await client.tryGet(DATAPLANES, 'audit')) === undefined, WAIT);
    // An agent exits: it reads its DaemonSet (absent here: an uninstall) and removes its data plane.
    w4!.agent.kill('SIGTERM');
    await w4!.agent.exited;
    // A graceful stop of a gateway node's agent deletes its heartbeat Lease.
    const g = env.gateways.find((n) => n.name !== first)!;
    g.agent.kill('SIGTERM');
    await g.agent.exited;
    stop.abort();
    await controller;
  });

  after(async () => {
    stop.abort();
    await controller;
    await env?.stop();
  });

  auditTests(renderManifests({ dataplane: 'linux', linux: { podCIDRs: [POD_CIDR], serviceCIDRs: [SERVICE_CIDR] } }), COMPONENTS, UNEXERCISED, () => env.cluster.auditEvents());
});
