// Found by the chaos suite (round 25 of seed 20261206): a gateway whose VIP was the router's address
// (198.18.0.1, the nodes' default gateway) was elected, and its node's agent took the router's address
// over on the LAN — every host's default gateway answered from a gateway node. The controller cannot
// know the routers (a node's own address it refuses: core.test.ts); the agent can: it never takes a VIP
// that is the next hop of one of its routes, and says so on the instance (AnnouncingFailed). The
// controller tries the next node after each handover timeout (since the core withdraws a timed-out
// instance when it tries another node, it keeps going round the nodes; the gateway is never Ready).
//
// Real parts: the test API server, the controller, an agent per node namespace, real ARP on the LAN.
// Needs root and `ip netns`.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { EgressGateway, EgressGatewayInstance } from '../../src/api/types.ts';
import { GATEWAYS, INSTANCES } from '../../src/kube/resources.ts';
import { startTestEnv, type TestEnv } from '../../src/testenv/env.ts';
import { ROUTER_IP } from '../../src/testenv/netns.ts';
import type { Capture } from '../../src/testenv/observe.ts';
import { poll } from '../../src/testenv/poll.ts';

const GW = 'hijack-router';
const skip = process.getuid?.() !== 0 ? 'needs root and ip netns' : false;

describe('a VIP that is the router\'s address', { skip, timeout: 180_000 }, () => {
  let env: TestEnv;
  let capture: Capture;

  before(async () => {
    env = await startTestEnv({ nodes: 2 });
    const observer = await env.net.addLanHost('observer', '198.18.0.250');
    // Asks for the router's address all along: only the router may answer.
    capture = await env.captureArp(observer.ns, observer.ifname, { ip: ROUTER_IP, senderMac: observer.mac, senderIp: observer.ip, intervalMs: 50 });
  });

  after(async () => {
    capture?.stop();
    await env?.stop();
  });

  test('is never announced by a gateway node; each node\'s instance says why, and the gateway is never Ready', async () => {
    await env.createVipGateway(GW, ROUTER_IP, ['eth0']);
    const refusedOn = new Set<string>();
    const notReady = new Set<string>();
    await poll('every node refused it with the reason', async () => {
      const list = await env.client.list<EgressGatewayInstance>(INSTANCES);
      for (const i of list.items.filter((x) => x.metadata.name.startsWith(`${GW}-`))) {
        const ready = i.status?.conditions?.find((c) => c.type === 'Ready');
        if (ready?.status === 'False' && ready.reason === 'AnnouncingFailed' && /next hop of a route on this node/.test(ready.message ?? '')) refusedOn.add(i.spec?.nodeName ?? '');
      }
      const g = await env.client.get<EgressGateway>(GATEWAYS, GW);
      const c = g.status?.conditions?.find((x) => x.type === 'Ready');
      notReady.add(`${c?.status}/${c?.reason}/${g.status?.activeNodeName ?? ''}`);
      return env.nodes.every((n) => refusedOn.has(n.name));
    }, 90_000);
    assert.ok([...notReady].every((s) => !s.startsWith('True/') && s.endsWith('/')), `the gateway was never Ready nor active: ${[...notReady].join(', ')}`);
    for (const n of env.nodes) assert.equal(await env.hasAddress(n, ROUTER_IP), false, `${n.name} does not hold the router's address`);
    const answers = capture.events.filter((e) => e.op === 'reply' && e.senderIp === ROUTER_IP);
    assert.ok(answers.length > 0, 'the router answered the observer');
    assert.deepEqual([...new Set(answers.map((e) => e.senderMac))], [env.router.mac], 'only the router answered for its address');
  });
});
