// Hard failover of the Linux data plane with traffic flowing (needs root, nft, ip): in the netns cluster
// (src/testenv/dataplane-env.ts) a pod sends a UDP datagram every 10 ms to the internet host and keeps a TCP
// connection to it busy; the active gateway node fails hard (its agent killed with SIGKILL, then another
// node's uplink pulled). The source node's route must follow the new active node, the stream must keep
// arriving from the VIP (never from the node's own address), and the TCP connection opened before the
// failover must carry on: the same connection, the same VIP and source port at the server. Then two pods
// whose connections clash on one SNAT port (same source port, same server ip:port): the active node's agent
// publishes the remapped one, the next owner's agent seeds it before it takes the VIP, and both connections
// carry on across a hard failover (without the replication one of the pair is lost: snat-clash.test.ts).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { API_VERSION, MODE_VIP } from '../../src/api/names.ts';
import type { EgressGatewayDataplane } from '../../src/api/types.ts';
import { DATAPLANES } from '../../src/kube/resources.ts';
import { assertNetnsSupported } from '../../src/testenv/netns.ts';
import { kernelView, startDataplaneEnv, type DataplaneEnv, type DataplaneNode } from '../../src/testenv/dataplane-env.ts';
import type { PodNs } from '../../src/testenv/podnet.ts';
import { poll } from '../../src/testenv/poll.ts';
import { GATEWAY_NODE_LABEL, TEST_VIP, applyObjects } from '../../src/testenv/seed.ts';
import { freshPort, type Traffic } from '../../src/testenv/traffic.ts';

const WAIT = 30_000;

describe('Linux data plane: hard failover with traffic flowing', { concurrency: false }, () => {
  let env: DataplaneEnv;
  let inet: Traffic;
  let pod: PodNs;
  let src: DataplaneNode;
  let sender: Traffic;
  const active = async (): Promise<DataplaneNode> => {
    const d = await poll('an active node', async () => {
      const o = await env.client.tryGet<EgressGatewayDataplane>(DATAPLANES, 'vip-gw');
      return o?.spec?.activeNodeName ? o : undefined;
    }, WAIT);
    return env.nodes.find((n) => n.name === d.spec!.activeNodeName)!;
  };
  /** The source node's route for the gateway points at `n` (read from its kernel). */
  const routedTo = (n: DataplaneNode) =>
    poll(`${src.name} routes to ${n.name}`, async () => {
      const v = await kernelView(src.ns);
      return v.routes.length === 1 && v.routes[0]!.endpoint === n.ip && v.selected.includes(pod.ip);
    }, WAIT);

  before(async () => {
    await assertNetnsSupported(); // fails (not skips) without root: required in CI
    env = await startDataplaneEnv();
    inet = await env.traffic(env.podNet.internet.ns);
    src = env.workers[0]!;
    pod = env.pods.find((p) => p.node === src.name)!;
    sender = await env.traffic(pod.ns);
    await env.putNamespace('app');
    await env.putPod(pod, 'app', { app: 'web' });
    await applyObjects(env.client, [
      { apiVersion: API_VERSION, kind: 'EgressGateway', metadata: { name: 'vip-gw' }, spec: { nodeSelector: { [GATEWAY_NODE_LABEL]: '' }, sourceIP: { mode: MODE_VIP, virtualIPAddress: { ip: TEST_VIP } } } },
      { apiVersion: API_VERSION, kind: 'EgressGatewayPolicy', metadata: { name: 'web' }, spec: { egressGatewayName: 'vip-gw', destinationCIDRs: ['0.0.0.0/0'], selectors: [{ podSelector: { matchLabels: { app: 'web' } } }] } },
    ]);
  });

  after(async () => {
    await env?.stop();
  });

  for (const kind of ['the active node\'s agent killed (SIGKILL)', 'the active node\'s uplink down'] as const) {
    it(`${kind}: the route follows the new node, the UDP stream keeps arriving from the VIP, the TCP connection survives`, async () => {
      const old = await active();
      await routedTo(old);
      const port = freshPort();
      const id = `f${port}`;
      await inet.udpListen(id, port);
      await inet.tcpListen(`${id}t`, port);
      await sender.udpStream(id, env.podNet.internet.ip, port, 10);
      await sender.tcpConnect(`${id}c`, env.podNet.internet.ip, port, 20);
      const echoes = () => Math.max(0, ...sender.tcp.filter((e) => e.id === `${id}c` && e.ev === 'echo').map((e) => e.n!));
      await poll('the stream and the connection flow through the old node', () => inet.received(id).length >= 50 && echoes() >= 20, WAIT);

      if (kind.includes('SIGKILL')) {
        old.agent.kill('SIGKILL');
        await old.agent.exited;
      } else {
        await env.setUplink(old, 'down');
      }
      const next = await poll('another active node', async () => {
        const n = await active();
        return n !== old && n;
      }, WAIT);
      await routedTo(next);
      const atSwitch = inet.received(id).length;
      const echoesAtSwitch = echoes();
      await poll('the stream arrives through the new node', () => inet.received(id).length >= atSwitch + 100, WAIT);
      await poll('the TCP connection carries on', () => echoes() >= echoesAtSwitch + 20, WAIT);
      await sender.stop(id);
      await sender.stop(`${id}c`);

      const sources = [...new Set(inet.received(id).map((e) => e.from))];
      assert.deepEqual(sources, [TEST_VIP], 'every datagram, before, during and after the failover, came from the VIP');
      const accepts = inet.tcp.filter((e) => e.ev === 'accept' && e.id === `${id}t`);
      assert.equal(accepts.length, 1, 'one connection: never re-established');
      assert.equal(accepts[0]!.from, TEST_VIP);
      const connected = sender.tcp.find((e) => e.ev === 'connected' && e.id === `${id}c`)!;
      assert.equal(accepts[0]!.fromPort, connected.localPort, 'the server saw the pod\'s own source port (port-preserving SNAT)');
      assert.deepEqual(sender.tcp.filter((e) => e.ev === 'closed' && e.id === `${id}c` && !e.stopped), [], 'the connection never broke');
      await inet.stop(id);
      await inet.stop(`${id}t`);

      // Bring the failed node back (it stays standby: no failback).
      if (kind.includes('SIGKILL')) await env.startAgent(old).started;
      else await env.setUplink(old, 'up');
    });
  }

  it('an SNAT port clash (two pods, one source port, one server): the agents replicate the remap, both connections survive a hard failover', async () => {
    // The second pod on the other worker: the clash is the gateway node's, wherever the pods are.
    const src2 = env.workers[1]!;
    const pod2 = env.pods.find((p) => p.node === src2.name)!;
    const sender2 = await env.traffic(pod2.ns);
    await env.putPod(pod2, 'app', { app: 'web' });
    const old = await active();
    await routedTo(old);
    await poll(`${src2.name} routes ${pod2.name} to ${old.name}`, async () => {
      const v = await kernelView(src2.ns);
      return v.routes[0]?.endpoint === old.ip && v.selected.includes(pod2.ip);
    }, WAIT);
    const port = freshPort();
    const id = `c${port}`;
    const p = 40_100;
    await inet.tcpListen(id, port);
    const pairs = [[sender, 'a'], [sender2, 'b']] as const;
    const echoes = (t: Traffic, who: string) => Math.max(0, ...t.tcp.filter((e) => e.id === `${id}${who}` && e.ev === 'echo').map((e) => e.n!));
    for (const [t, who] of pairs) {
      await t.tcpConnect(`${id}${who}`, env.podNet.internet.ip, port, 20, { localPort: p });
      await poll(`${who} flows through ${old.name}`, () => echoes(t, who) >= 10, WAIT);
    }
    const seen = () => inet.tcp.filter((e) => e.ev === 'accept' && e.id === id).map((e) => e.fromPort!);
    assert.equal(seen().length, 2);
    assert.ok(seen().includes(p) && seen().some((x) => x !== p), `the old node kept one connection's port and remapped the other's (${seen().join(', ')})`);
    await poll('the active node publishes the remapped connection', async () => {
      const list = (await env.client.get<EgressGatewayDataplane>(DATAPLANES, 'vip-gw')).status?.snatRemaps;
      return list?.node === old.name && list.connections.some((c) => c.podPort === p && c.serverPort === port && c.natPort !== p);
    }, WAIT);

    old.agent.kill('SIGKILL');
    await old.agent.exited;
    const next = await poll('another active node', async () => {
      const n = await active();
      return n !== old && n;
    }, WAIT);
    await routedTo(next);
    const atSwitch = pairs.map(([t, who]) => echoes(t, who));
    // Both streams go on through the new node; neither connection breaks, none is opened anew.
    await poll('both connections carry on through the new node', () => pairs.every(([t, who], i) => echoes(t, who) >= atSwitch[i]! + 20), WAIT);
    for (const [t, who] of pairs) await t.stop(`${id}${who}`);
    for (const [t, who] of pairs) assert.deepEqual(t.tcp.filter((e) => e.ev === 'closed' && e.id === `${id}${who}` && !e.stopped), [], `${who} never broke`);
    assert.equal(seen().length, 2, 'no connection re-established');
    await inet.stop(id);
    await env.startAgent(old).started;
  });
});
