// Hard failover of the Linux data plane with traffic flowing (needs root, nft, ip): in the netns cluster
// (src/testenv/dataplane-env.ts) a pod sends a UDP datagram every 10 ms to the internet host and keeps a TCP
// connection to it busy; the active gateway node fails hard (its agent killed with SIGKILL, then another
// node's uplink pulled). The source node's route must follow the new active node, the stream must keep
// arriving from the VIP (never from the node's own address), and the TCP connection opened before the
// failover must carry on: the same connection, the same VIP and source port at the server.
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
});
