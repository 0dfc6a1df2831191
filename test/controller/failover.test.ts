// Failover of a VIP gateway when its active node fails, one way per test: Node NotReady, cordon,
// cilium-agent NotReady, heartbeat expiry (the agent stops renewing; no watch event announces it, the
// controller's own timer must notice). Each test: a gateway over three healthy nodes, wait for the
// active node, break it, and expect the label (Node and CiliumNode), the status, the instance, the
// FailedOver event and the failover counter to follow.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Fixture, eventsFor, metricValue, startController, waitFor, type RunningController } from './helpers.ts';
import { FakeAgents } from './agents.ts';
import { HANDOVER_TO_ANNOTATION, activeForLabel } from '../../src/api/names.ts';

let f: Fixture;
let ctl: RunningController;
let agents: FakeAgents;

before(async () => {
  f = await Fixture.start();
  agents = new FakeAgents(f);
  agents.start();
  // No periodic resync here: a heartbeat expiry must be noticed by the controller's own timer.
  ctl = startController(f, ['--resync', '10m']);
  await ctl.ready;
});

after(async () => {
  agents?.stop();
  await ctl?.stop();
  await f?.stop();
});

/** A VIP gateway over three healthy nodes; returns the nodes and the active one once confirmed. */
async function setup(name: string, ip: string): Promise<{ nodes: string[]; active: string }> {
  const nodes = [1, 2, 3].map((i) => `${name}-${i}`);
  await f.vipGatewayOnHealthyNodes(name, nodes, ip, agents);
  const [active] = await waitFor(`${name} active`, async () => {
    const a = await f.activeNodes(name, nodes);
    const g = await f.gateway(name);
    return a.length === 1 && g.status?.activeNodeName === a[0] ? a : undefined;
  });
  return { nodes, active: active! };
}

async function expectFailover(name: string, nodes: string[], from: string): Promise<string> {
  const [to] = await waitFor(`${name} fails over`, async () => {
    const a = await f.activeNodes(name, nodes);
    return a.length === 1 && a[0] !== from ? a : undefined;
  });
  await waitFor('old node unlabelled on Node and CiliumNode', async () => {
    const n = await f.nodeLabels(from);
    const c = await f.ciliumNodeLabels(from);
    return !(activeForLabel(name) in n) && !(activeForLabel(name) in c);
  });
  await waitFor('new node labelled on its CiliumNode', async () => activeForLabel(name) in (await f.ciliumNodeLabels(to!)));
  await waitFor('status names the new node', async () => {
    const g = await f.gateway(name);
    return g.status?.activeNodeName === to && g.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
  });
  await waitFor('only the new node has an instance', async () => {
    const live = (await f.instances(name)).filter((i) => !i.metadata.deletionTimestamp);
    return live.length === 1 && live[0]?.spec?.nodeName === to;
  });
  await waitFor('FailedOver event', async () => (await eventsFor(f, 'EgressGateway', name)).some((e) => e.reason === 'FailedOver' && e.note.includes(from)));
  await waitFor('failover counted', async () => ((await metricValue(ctl.metrics.failovers, { gateway: name })) ?? 0) >= 1);
  return to!;
}

test('Node NotReady', async () => {
  const { nodes, active } = await setup('fo-notready', '198.18.1.1');
  agents.alive.delete(active);
  await f.setNodeReady(active, false);
  await expectFailover('fo-notready', nodes, active);
  // The dead node's agent never removes its finalizer: the controller releases it.
  await waitFor('old instance gone', async () => (await f.instances('fo-notready')).every((i) => i.spec?.nodeName !== active));
});

test('cordon', async () => {
  const { nodes, active } = await setup('fo-cordon', '198.18.1.2');
  await f.cordon(active, true);
  await expectFailover('fo-cordon', nodes, active);
});

test('cilium-agent NotReady', async () => {
  const { nodes, active } = await setup('fo-cilium', '198.18.1.3');
  await f.setPodReady(`cilium-${active}`, false);
  const to = await expectFailover('fo-cilium', nodes, active);
  assert.notEqual(to, active);
});

test('heartbeat expiry: the agent stops renewing, no other change', async () => {
  const { nodes, active } = await setup('fo-heartbeat', '198.18.1.4');
  agents.alive.delete(active);
  f.stopHeartbeat(active);
  await expectFailover('fo-heartbeat', nodes, active);
  // No preemptive failback: the node comes back, the gateway stays where it is.
  const now = (await f.gateway('fo-heartbeat')).status?.activeNodeName;
  const seen = ctl.passes.length;
  await f.startHeartbeat(active);
  agents.alive.add(active);
  // The revived heartbeat is a change that matters: it triggers a pass.
  await waitFor('a pass after the revival', () => ctl.passes.length > seen);
  assert.equal((await f.gateway('fo-heartbeat')).status?.activeNodeName, now);
});

// The handover mark (design §5; found by the chaos suite, seed 20261209): while the VIP goes from A to
// B, A's instance says so, so that A's agent, back from a fence, does not take the VIP back beside B.
// On the API server: the mark is written with B's instance, and removed from the object (not only from
// what the controller wants) when the handover is abandoned.
test('handover mark: the old owner\'s instance names the target while it confirms; removed from the object when A is kept', async () => {
  const name = 'fo-mark';
  const { nodes, active } = await setup(name, '198.18.1.5');
  // The other nodes' agents never confirm: the handover stays under way.
  for (const n of nodes) if (n !== active) agents.mute.add(n);
  // A's agent pod goes NotReady (its /readyz fails, e.g. cut off from the API): A is not eligible, its heartbeat still live.
  await f.setPodReady(`egressgw-agent-${active}`, false);
  const live = async () => (await f.instances(name)).filter((i) => !i.metadata.deletionTimestamp);
  const target = await waitFor('A\'s instance marked with the target, whose instance is written', async () => {
    const list = await live();
    const mine = list.find((i) => i.spec?.nodeName === active);
    const to = mine?.metadata.annotations?.[HANDOVER_TO_ANNOTATION];
    return to !== undefined && list.some((i) => i.spec?.nodeName === to) ? to : undefined;
  });
  assert.notEqual(target, active);
  const marked = (await live()).filter((i) => i.metadata.annotations?.[HANDOVER_TO_ANNOTATION] !== undefined).map((i) => i.spec?.nodeName);
  assert.deepEqual(marked, [active], 'only the old owner carries the mark');
  // A recovers before B confirms: A is kept, B's instance goes, and the mark is removed from A's object.
  await f.setPodReady(`egressgw-agent-${active}`, true);
  await waitFor('only A\'s instance, unmarked', async () => {
    const list = await live();
    return list.length === 1 && list[0]?.spec?.nodeName === active && list[0].metadata.annotations?.[HANDOVER_TO_ANNOTATION] === undefined ? true : undefined;
  });
  await waitFor('A active again', async () => ((await f.activeNodes(name, nodes)).join() === active ? true : undefined));
});
