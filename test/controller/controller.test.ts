// The controller against the real test API server: seed YAML, VIP handover, spec changes, gateway
// deletion, and a quiet resync. One cluster and one controller for the file; each test uses its own
// nodes (its own selector label) so the tests do not see each other's gateways.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Fixture, eventsFor, metricValue, repoRoot, startController, waitFor, type RunningController } from './helpers.ts';
import { FakeAgents } from './agents.ts';
import { CEGPS, GATEWAYS, POLICIES } from '../../src/kube/resources.ts';
import { MEMBER_LABEL, activeForLabel, cegpName } from '../../src/api/names.ts';
import type { CiliumEgressGatewayPolicy, EgressGateway, EgressGatewayPolicy } from '../../src/api/types.ts';

let f: Fixture;
let ctl: RunningController;
let agents: FakeAgents;

before(async () => {
  f = await Fixture.start();
  agents = new FakeAgents(f);
  agents.start();
  ctl = startController(f);
  await ctl.ready;
});

after(async () => {
  agents?.stop();
  await ctl?.stop();
  await f?.stop();
});

const readyOf = (o: { status?: { conditions?: Array<{ type: string; status: string; reason: string }> } } | undefined) =>
  o?.status?.conditions?.find((c) => c.type === 'Ready');

function vipGateway(name: string, selector: Record<string, string>, ip: string): EgressGateway {
  return {
    apiVersion: 'network.deckhouse.io/v1alpha1',
    kind: 'EgressGateway',
    metadata: { name },
    spec: { nodeSelector: selector, sourceIP: { mode: 'VirtualIPAddress', virtualIPAddress: { ip } } },
  };
}

function primaryGateway(name: string, selector: Record<string, string>, iface = 'eth1'): EgressGateway {
  return {
    apiVersion: 'network.deckhouse.io/v1alpha1',
    kind: 'EgressGateway',
    metadata: { name },
    spec: { nodeSelector: selector, sourceIP: { mode: 'PrimaryIPFromEgressGatewayNodeInterface', primaryIPFromEgressGatewayNodeInterface: { interfaceName: iface } } },
  };
}

function policy(name: string, gateway: string): EgressGatewayPolicy {
  return {
    apiVersion: 'network.deckhouse.io/v1alpha1',
    kind: 'EgressGatewayPolicy',
    metadata: { name },
    spec: { egressGatewayName: gateway, destinationCIDRs: ['192.0.2.0/24'], selectors: [{ podSelector: { matchLabels: { app: name } } }] },
  };
}

test('seed YAML applied verbatim: the policy names a missing gateway → GatewayNotFound condition, event, metric', async () => {
  for (const file of ['egressgateway-primaryip.yaml', 'egressgateway-vip.yaml', 'egressgatewaypolicy.yaml']) {
    await f.applyFile(join(repoRoot, 'deploy', 'examples', file));
  }
  const cond = await waitFor('policy condition', async () => {
    const c = readyOf(await f.client.get<EgressGatewayPolicy>(POLICIES, 'my-egressgw-policy'));
    return c?.reason === 'GatewayNotFound' ? c : undefined;
  });
  assert.equal(cond.status, 'False');
  await waitFor('GatewayNotFound event', async () => (await eventsFor(f, 'EgressGatewayPolicy', 'my-egressgw-policy')).some((e) => e.reason === 'GatewayNotFound' && e.type === 'Warning'));
  assert.equal(await metricValue(ctl.metrics.orphanPolicy, { policy: 'my-egressgw-policy', gateway: 'my-egressgw' }), 1);
  assert.equal(await metricValue(ctl.metrics.orphanPolicyReference, { name: 'my-egressgw-policy', egressgateway: 'my-egressgw' }), 1);
  assert.equal(await f.client.tryGet(CEGPS, cegpName('my-egressgw-policy')), undefined);
  // The gateways exist but no node matches: they say so rather than stay silent.
  await waitFor('myeg NoEligibleNode', async () => readyOf(await f.gateway('myeg'))?.reason === 'NoEligibleNode');

  // The named gateway appears: the orphan series goes away and the CEGP is rendered (R18).
  await f.client.create(GATEWAYS, primaryGateway('my-egressgw', { 'node-role.deckhouse.io/egress': '' }));
  await waitFor('CEGP rendered', () => f.client.tryGet(CEGPS, cegpName('my-egressgw-policy')));
  await waitFor('orphan series gone', async () => (await metricValue(ctl.metrics.orphanPolicy, { policy: 'my-egressgw-policy', gateway: 'my-egressgw' })) === undefined);
  assert.equal(await metricValue(ctl.metrics.orphanPolicyReference, { name: 'my-egressgw-policy', egressgateway: 'my-egressgw' }), undefined);
});

test('VIP handover: the label goes to a node only after its instance is Ready', async () => {
  const sel = { 'test-group': 'handover' };
  for (const n of ['ho-1', 'ho-2']) await f.healthyNode(n, sel);
  await f.client.create(GATEWAYS, vipGateway('gw-ho', sel, '198.18.0.10'));
  await waitFor('instance created', async () => (await f.instances('gw-ho')).length >= 1);
  await waitFor('gateway waits for the announcement', async () => readyOf(await f.gateway('gw-ho'))?.reason === 'VirtualIPAnnouncing');
  // More passes (resync, events) and still no label anywhere: nobody confirmed an instance.
  const seen = ctl.passes.length;
  await waitFor('two more passes', () => ctl.passes.length >= seen + 2);
  assert.deepEqual(await f.activeNodes('gw-ho', ['ho-1', 'ho-2']), []);
  assert.equal((await f.gateway('gw-ho')).status?.activeNodeName, '');

  // The agents confirm: now the label appears on the node whose instance is Ready, on the Node and
  // on the CiliumNode.
  agents.alive.add('ho-1');
  agents.alive.add('ho-2');
  const [target] = await waitFor('label on one node', async () => {
    const a = await f.activeNodes('gw-ho', ['ho-1', 'ho-2']);
    return a.length === 1 ? a : undefined;
  });
  const live = (await f.instances('gw-ho')).filter((i) => !i.metadata.deletionTimestamp);
  assert.deepEqual(live.map((i) => i.spec?.nodeName), [target]);
  assert.equal(readyOf(live[0])?.status, 'True');
  await waitFor('CiliumNode label', async () => activeForLabel('gw-ho') in (await f.ciliumNodeLabels(target!)));
  await waitFor('gateway Ready', async () => {
    const g = await f.gateway('gw-ho');
    return readyOf(g)?.status === 'True' && g.status?.activeNodeName === target;
  });
  await waitFor('VIPAnnounced event', async () => (await eventsFor(f, 'EgressGateway', 'gw-ho')).some((e) => e.reason === 'VIPAnnounced'));
  assert.equal(await metricValue(ctl.metrics.activeNode, { gateway: 'gw-ho', node: target! }), 1);
});

test('nodeSelector changed: the gateway moves to the newly selected node and the old one is cleaned', async () => {
  await f.healthyNode('sel-1', { 'test-group': 'sel-a' });
  await f.healthyNode('sel-2', { 'test-group': 'sel-b' });
  agents.alive.add('sel-1');
  agents.alive.add('sel-2');
  await f.client.create(GATEWAYS, primaryGateway('gw-sel', { 'test-group': 'sel-a' }));
  await waitFor('sel-1 active', async () => activeForLabel('gw-sel') in (await f.nodeLabels('sel-1')));
  assert.ok(MEMBER_LABEL in (await f.nodeLabels('sel-1')));
  await f.client.mergePatch(GATEWAYS, 'gw-sel', { spec: { nodeSelector: { 'test-group': 'sel-b' } } });
  await waitFor('sel-2 active', async () => activeForLabel('gw-sel') in (await f.nodeLabels('sel-2')));
  await waitFor('sel-1 cleaned on Node and CiliumNode', async () => {
    const n = await f.nodeLabels('sel-1');
    const c = await f.ciliumNodeLabels('sel-1');
    return !(activeForLabel('gw-sel') in n) && !(MEMBER_LABEL in n) && !(activeForLabel('gw-sel') in c) && !(MEMBER_LABEL in c);
  });
  // A pass writes labels before statuses: the removals above can be seen before the status write lands.
  await waitFor('status names sel-2', async () => (await f.gateway('gw-sel')).status?.activeNodeName === 'sel-2');
});

test('VIP and mode changed: the instance and the CEGP follow', async () => {
  const sel = { 'test-group': 'mode' };
  await f.healthyNode('mode-1', sel);
  agents.alive.add('mode-1');
  await f.client.create(GATEWAYS, vipGateway('gw-mode', sel, '198.18.0.20'));
  await f.client.create(POLICIES, policy('p-mode', 'gw-mode'));
  const cegp = () => f.client.tryGet<CiliumEgressGatewayPolicy>(CEGPS, cegpName('p-mode'));
  await waitFor('CEGP with egressIP', async () => (await cegp())?.spec?.egressGateway.egressIP === '198.18.0.20');
  await waitFor('active', async () => activeForLabel('gw-mode') in (await f.nodeLabels('mode-1')));

  await f.client.mergePatch(GATEWAYS, 'gw-mode', { spec: { sourceIP: { virtualIPAddress: { ip: '198.18.0.21' } } } });
  await waitFor('instance follows the VIP', async () => {
    const l = (await f.instances('gw-mode')).filter((i) => !i.metadata.deletionTimestamp);
    return l.length === 1 && l[0]?.spec?.sourceIP?.virtualIPAddress?.ip === '198.18.0.21';
  });
  await waitFor('CEGP follows the VIP', async () => (await cegp())?.spec?.egressGateway.egressIP === '198.18.0.21');
  await waitFor('policy status names the VIP', async () => (await f.client.get<EgressGatewayPolicy>(POLICIES, 'p-mode')).status?.egressIP === '198.18.0.21');

  await f.client.mergePatch(GATEWAYS, 'gw-mode', {
    spec: { sourceIP: { mode: 'PrimaryIPFromEgressGatewayNodeInterface', virtualIPAddress: null, primaryIPFromEgressGatewayNodeInterface: { interfaceName: 'eth1' } } },
  });
  await waitFor('CEGP switches to the interface', async () => {
    const e = (await cegp())?.spec?.egressGateway;
    return e?.interface === 'eth1' && e.egressIP === undefined;
  });
  await waitFor('instances withdrawn', async () => (await f.instances('gw-mode')).length === 0);
  assert.ok(activeForLabel('gw-mode') in (await f.nodeLabels('mode-1')));
});

test('gateway deleted: labels removed, CEGP deleted, policy orphaned', async () => {
  const sel = { 'test-group': 'del' };
  await f.healthyNode('del-1', sel);
  await f.healthyNode('del-2', sel);
  await f.client.create(GATEWAYS, primaryGateway('gw-del', sel));
  await f.client.create(POLICIES, policy('p-del', 'gw-del'));
  await waitFor('CEGP', () => f.client.tryGet(CEGPS, cegpName('p-del')));
  const [active] = await waitFor('active node', async () => {
    const a = await f.activeNodes('gw-del', ['del-1', 'del-2']);
    return a.length === 1 ? a : undefined;
  });
  await f.client.delete(GATEWAYS, 'gw-del');
  await waitFor('labels removed from Node and CiliumNode', async () => {
    for (const n of ['del-1', 'del-2']) {
      const labels = { ...(await f.nodeLabels(n)), ...(await f.ciliumNodeLabels(n)) };
      if (activeForLabel('gw-del') in labels || MEMBER_LABEL in labels) return false;
    }
    return true;
  });
  await waitFor('CEGP deleted', async () => (await f.client.tryGet(CEGPS, cegpName('p-del'))) === undefined);
  await waitFor('policy orphaned', async () => readyOf(await f.client.get<EgressGatewayPolicy>(POLICIES, 'p-del'))?.reason === 'GatewayNotFound');
  assert.equal(await metricValue(ctl.metrics.orphanPolicy, { policy: 'p-del', gateway: 'gw-del' }), 1);
  assert.ok(active);
});

test('a resync with nothing changed writes nothing', async () => {
  // Settle: a pass that had nothing to write.
  await waitFor('a quiet pass', () => ctl.passes.at(-1)?.writes.length === 0);
  const before = await ctl.writes();
  const seen = ctl.passes.length;
  // At least one periodic resync (2s in these tests) and the heartbeat-timer passes in between.
  await waitFor('passes including a resync', () => ctl.passes.length >= seen + 3 && Date.now() - (ctl.passes[seen]?.at ?? Date.now()) > 2000, 20_000);
  const later = ctl.passes.slice(seen);
  assert.deepEqual(later.map((p) => p.writes.length).filter((n) => n > 0), []);
  assert.equal(await ctl.writes(), before);
});
