// The container image of `npm run image`, run as the install runs it: crun starts the controller and the
// agent from out/image/egressgw.oci.tar with exactly the arguments and environment of the rendered default
// install (profile cilium), read-only root, the Deployment's user, the DaemonSet's capabilities, and the
// service-account files and variables a pod gets. The controller (in one lab node's network namespace)
// must serve /readyz and elect a node; the agent (in another) must hold the VIP on its interface and
// announce it with gratuitous ARP, which a capture in the router's namespace sees.
//
// Needs root, crun and umoci (.ci/run installs them) and the image (`npm run image`; .ci/run builds it
// first). Without them the suite is skipped, except in CI (CI=true), where that is a failure.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { activeForLabel, DEFAULT_NAMESPACE, MODE_VIP } from '../../src/api/names.ts';
import type { EgressGateway, EgressGatewayInstance } from '../../src/api/types.ts';
import { renderManifests } from '../../src/cli/manifests.ts';
import type { Manifest } from '../../src/cli/kustomize.ts';
import { decodeFrame } from '../../src/agent/net/frames.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { GATEWAYS, INSTANCES, NODES } from '../../src/kube/resources.ts';
import { startTestCluster, type TestCluster } from '../../src/testenv/apiserver.ts';
import { SEED_NAMESPACES, seedCluster } from '../../src/testenv/seed.ts';
import { Network } from '../../src/testenv/netns.ts';
import { Container, imageRunProblem, serviceAccountMount, unpackImage, type UnpackedImage } from '../../src/testenv/oci.ts';
import { poll } from '../../src/testenv/poll.ts';
import { WireHelper } from '../../src/testenv/wire.ts';
import { containerRun } from '../deploy/pod-args.ts';
import { imageInputs, readReport } from '../../scripts/image/inputs.ts';

const problem = (await imageRunProblem()) ?? (await staleImage());

/** The image in out/image must be the one of these sources, or the test would prove something else. */
async function staleImage(): Promise<string | undefined> {
  const [report, inputs] = [readReport(), await imageInputs()];
  if (report?.key === inputs.imageKey) return undefined;
  return `out/image holds the image of other sources (inputs ${report?.key ?? 'unknown'}, these sources: ${inputs.imageKey}): run npm run image`;
}
const inCI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';
const VIP = '198.18.0.100';

if (problem && inCI) {
  test('the image runs (required in CI)', () => {
    assert.fail(`cannot run the image in CI: ${problem}`);
  });
}

describe('the image, run with crun as the install runs it', { skip: problem && !inCI ? problem : false }, () => {
  let image: UnpackedImage;
  let net: Network;
  let cluster: TestCluster;
  let client: KubeClient;
  let controller: Container | undefined;
  let agent: Container | undefined;
  let rawless: Container | undefined;
  let capture: WireHelper | undefined;
  const manifests = renderManifests();
  const find = (kind: string): Manifest => {
    const m = manifests.find((x) => x.kind === kind);
    assert.ok(m, kind);
    return m;
  };
  /** The container's log, for assertion messages. */
  const logOf = (c: Container | undefined): string => `\n--- container log ---\n${c?.output().slice(-4000) ?? '(not started)'}`;
  /** Aborted (with the container's log) when any of them exits: a poll then stops at once. */
  const untilExit = (...cs: Container[]): { signal: AbortSignal } => {
    const ac = new AbortController();
    for (const c of cs) void c.exited.then(({ code, signal }) => ac.abort(new Error(`container ${c.id} exited (${code ?? signal})${logOf(c)}`)));
    return { signal: ac.signal };
  };

  /** The capabilities the DaemonSet grants its agent container. */
  const daemonSetCapabilities = (): string[] => {
    const ds = find('DaemonSet') as unknown as { spec: { template: { spec: { containers: Array<{ securityContext: { capabilities: { add: string[] } } }> } } } };
    return ds.spec.template.spec.containers[0]!.securityContext.capabilities.add;
  };
  /** An agent container on `node` with the DaemonSet's arguments and environment, as root with `capabilities`. */
  const startAgent = (node: Network['nodes'][number], capabilities: string[]): Container => {
    const run = containerRun(find('DaemonSet'), 'agent', { namespace: DEFAULT_NAMESPACE, name: `egress-gateway-agent-${node.name}`, nodeName: node.name });
    const sa = serviceAccountMount(cluster, DEFAULT_NAMESPACE, 'egress-gateway-agent', join(image.dir, `sa-agent-${node.name}`));
    return Container.start(image, {
      args: run.args,
      env: { ...Object.fromEntries(run.env), ...sa.env },
      user: { uid: 0, gid: 0 },
      capabilities,
      netns: node.ns,
      binds: [sa.bind],
    });
  };

  before(async () => {
    image = await unpackImage();
    net = await Network.create({ nodes: 2, management: true, prefix: 'egi' });
    cluster = await startTestCluster({ bindAddress: net.mgmt!.hostIp, extraSANs: [net.mgmt!.hostIp], namespaces: SEED_NAMESPACES });
    client = new KubeClient(cluster.kubeConfig);
    // Nodes, CiliumNodes, and Ready cilium-agent pods where upstream Cilium runs them (kube-system, k8s-app=cilium).
    await seedCluster(cluster, client, net.nodes);
    capture = await WireHelper.start(net, net.router.ns);
    await capture.capture('arp', net.router.bridge, 'arp');
  });

  after(async () => {
    await agent?.stop();
    await rawless?.stop();
    await controller?.stop();
    await capture?.close();
    await cluster?.stop();
    await net?.teardown();
    image?.remove();
  });

  test('the controller (Deployment args, uid 64535, no capabilities) serves /readyz', async () => {
    const node = net.nodes[1]!;
    const run = containerRun(find('Deployment'), 'controller', { namespace: DEFAULT_NAMESPACE, name: 'egressgw-controller-0' });
    const sa = serviceAccountMount(cluster, DEFAULT_NAMESPACE, 'egressgw-controller', join(image.dir, 'sa-controller'));
    controller = Container.start(image, {
      args: run.args,
      env: { ...Object.fromEntries(run.env), ...sa.env },
      user: { uid: 64535, gid: 64535 },
      netns: node.ns,
      binds: [sa.bind],
    });
    const port = 8080;
    assert.ok(run.args.includes(`--metrics-addr=:${port}`), run.args.join(' '));
    await poll(
      `controller /readyz on ${node.mgmt!.ip}:${port}`,
      async () => (await fetch(`http://${node.mgmt!.ip}:${port}/readyz`)).status === 200,
      60_000,
      untilExit(controller),
    );
  });

  test('the agent (DaemonSet args, root with NET_ADMIN and NET_RAW) holds the VIP and announces it; the controller elects its node', async () => {
    assert.ok(controller, 'the controller runs');
    const node = net.nodes[0]!;
    agent = startAgent(node, daemonSetCapabilities());
    await client.create(GATEWAYS, {
      apiVersion: `${GATEWAYS.group}/${GATEWAYS.version}`,
      kind: 'EgressGateway',
      metadata: { name: 'image' },
      spec: { nodeSelector: { 'kubernetes.io/hostname': node.name }, sourceIP: { mode: MODE_VIP, virtualIPAddress: { ip: VIP } } },
    });
    const gw = await poll(
      'gateway image Ready on the agent node',
      async () => {
        const g = await client.get<EgressGateway>(GATEWAYS, 'image');
        return g.status?.activeNodeName === node.name && g.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? g : undefined;
      },
      60_000,
      untilExit(agent, controller!),
    ).catch(async (err: Error) => {
      const g = await client.get<EgressGateway>(GATEWAYS, 'image').catch(() => undefined);
      throw new Error(`${err.message}; gateway status ${JSON.stringify(g?.status)}${logOf(agent)}${logOf(controller)}`);
    });
    assert.equal(gw.status?.activeNodeName, node.name);
    // The VIP is on the node's interface, put there by the agent in the container.
    const addrs = await net.ip(node.ns, ['-o', 'addr', 'show', 'dev', node.ifname]);
    assert.match(addrs, new RegExp(` ${VIP.replace(/\./g, '\\.')}/32 `));
    // Its gratuitous ARP reached the router's bridge: sender = target = the VIP, from the node's MAC.
    const garp = await poll('gratuitous ARP for the VIP seen by the router', () => {
      for (const f of capture!.framesOf('arp')) {
        const d = decodeFrame(f);
        if (d?.kind === 'arp' && d.arp.senderIp === VIP && d.arp.targetIp === VIP) return d;
      }
      return undefined;
    }, 30_000);
    assert.equal(garp.kind === 'arp' && garp.arp.senderMac, node.mac);
    // Cilium selects the gateway node on this label.
    const n = await client.get<{ metadata: { labels?: Record<string, string> } }>(NODES, node.name);
    assert.equal(n.metadata.labels?.[activeForLabel('image')], '');
  });
  test('an agent without NET_RAW reports its instance not Ready, naming the capability, and is never made active', async () => {
    assert.ok(controller, 'the controller runs');
    const node = net.nodes[1]!;
    const caps = daemonSetCapabilities().filter((c) => c !== 'NET_RAW');
    assert.ok(caps.includes('NET_ADMIN'), 'the VIP can still be put on the interface');
    rawless = startAgent(node, caps);
    await client.create(GATEWAYS, {
      apiVersion: `${GATEWAYS.group}/${GATEWAYS.version}`,
      kind: 'EgressGateway',
      metadata: { name: 'noraw' },
      spec: { nodeSelector: { 'kubernetes.io/hostname': node.name }, sourceIP: { mode: MODE_VIP, virtualIPAddress: { ip: '198.18.0.101' } } },
    });
    const ready = await poll(
      `the instance on ${node.name} reports Ready=False`,
      async () => {
        const list = await client.list<EgressGatewayInstance>(INSTANCES);
        const inst = list.items.find((i) => i.spec?.nodeName === node.name && i.spec?.sourceIP?.virtualIPAddress?.ip === '198.18.0.101');
        return inst?.status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'False');
      },
      60_000,
      untilExit(rawless, controller),
    ).catch((err: Error) => { throw new Error(`${err.message}${logOf(rawless)}`); });
    assert.equal(ready.reason, 'AnnouncingFailed');
    assert.match(ready.message ?? '', /NET_RAW/);
    // An unconfirmed instance never carries the gateway: no active node, no label Cilium would select.
    const g = await client.get<EgressGateway>(GATEWAYS, 'noraw');
    assert.notEqual(g.status?.activeNodeName, node.name);
    const n = await client.get<{ metadata: { labels?: Record<string, string> } }>(NODES, node.name);
    assert.equal(n.metadata.labels?.[activeForLabel('noraw')], undefined);
  });
});
