// Where the TCP resets across a Linux-data-plane failover come from (issue 11), with real packets: an SNAT
// port clash. Two pods open a connection from the SAME source port to the same server ip:port. The first
// gateway node SNATs both to the VIP: the first keeps its port p, the second is remapped to a random free
// port p'. The new gateway node has no conntrack state (none is synchronised): it picks each connection up
// from its next packet (nf_conntrack_tcp_loose) and keeps the pod's port when that is free there, first
// come first served. Whichever of the two speaks first gets p; the other gets a fresh random port that the
// server has never seen, and the server answers its segment with a RST (ECONNRESET at the pod). When the
// remapped one speaks first, its segments land on the other's server socket (VIP:p) out of window: it
// stalls, and the other is reset. Either way one connection of a clashing pair is lost; with distinct
// ports both survive (control).
//
// The fix (docs/dataplane.md, "Replicating the remapped connections"): the active node publishes its
// remapped connections in the gateway's dataplane object's status, and the next owner inserts them into
// its conntrack table before it takes the VIP. The product's case runs that replication (a real API server
// as the channel, conntrack in each gateway node's namespace) in the order that otherwise loses both; the
// last case is the same insert done by hand (the kernel side alone).
//
// The rig (test/dataplane/failover-rig.ts) is the kernel side only: a worker with two pods and two gateway
// nodes, the failover done the way the agents do it.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { INTERNAL_API_VERSION, KIND_DATAPLANE, MODE_VIP } from '../../src/api/names.ts';
import type { EgressGatewayDataplane } from '../../src/api/types.ts';
import { ConntrackTool } from '../../src/agent/dataplane/conntrack.ts';
import { createDataplaneMetrics } from '../../src/agent/dataplane/metrics.ts';
import { RemapReplicator } from '../../src/agent/dataplane/remaps.ts';
import { createRunner } from '../../src/agent/net/exec.ts';
import { Informer } from '../../src/kube/informer.ts';
import { silentLogger } from '../../src/kube/log.ts';
import { DATAPLANES } from '../../src/kube/resources.ts';
import { useTestCluster } from '../../src/testenv/shared-cluster.ts';
import type { NetNode } from '../../src/testenv/netns.ts';
import type { PodNs } from '../../src/testenv/podnet.ts';
import { freshPort, type Traffic } from '../../src/testenv/traffic.ts';
import { poll } from '../../src/testenv/poll.ts';
import { FailoverRig, VIP, WAIT, closedWith, echoed } from './failover-rig.ts';

describe('SNAT port clash: two pods with the same source port to one server lose a connection across a gateway failover', { concurrency: false }, () => {
  let rig: FailoverRig;
  let podA: PodNs;
  let podB: PodNs;
  let inet: Traffic;
  let ta: Traffic;
  let tb: Traffic;

  /** Retransmissions of the pod's connection from `port` (ss: `retrans:<now>/<total>`). */
  const retransmissions = async (p: PodNs, port: number): Promise<number> => {
    const out = await rig.lab.exec(p.ns, 'ss', ['-tni', 'state', 'established', `( sport = :${port} )`]);
    return Number(/retrans:\d+\/(\d+)/.exec(out)?.[1] ?? 0);
  };

  // The channel of the product's replication (the dataplane object's status) is a real API server.
  const api = useTestCluster({ crds: join(import.meta.dirname, '..', '..', 'deploy', 'crds') });

  before(async () => {
    rig = await FailoverRig.create('egc', 2);
    [podA, podB] = rig.pods as [PodNs, PodNs];
    inet = rig.inet;
    [ta, tb] = rig.clients as [Traffic, Traffic];
  });

  after(async () => {
    await rig?.close();
  });

  /**
   * A then B connect to the server from `portA` / `portB` and carry one line each through gateway node 1.
   * Returns the server port and the port the server sees for each (from node 1's conntrack).
   */
  const openPair = async (id: string, portA: number, portB: number) => {
    const server = freshPort();
    await inet.tcpListen(id, server, { record: true });
    const natA = await rig.connect(id, server, 0, 'a', portA);
    const natB = await rig.connect(id, server, 1, 'b', portB);
    const accepted = inet.tcp.filter((e) => e.id === id && e.ev === 'accept').map((e) => e.fromPort).sort();
    assert.deepEqual(accepted, [natA, natB].sort(), 'the server sees the ports of node 1\'s SNAT');
    return { server, portA: natA, portB: natB };
  };
  const pickedUp = (pod: PodNs, server: number) => rig.pickedUp(pod, server);
  const conntrack = (server: number) => rig.conntrack(rig.gw2, server);
  // Node 2 remaps with a random port (the kernel's choice for SNAT without a port range): that it hits
  // the other connection's old port p' instead of an unknown one has a chance of about 1 in 64,000, the
  // one way these cases could see another outcome.
  /**
   * The one RST the server sent, once the connection `id` of `t` was reset. Its port is the one node 2 gave
   * the connection: node 2's entry itself is gone by then (conntrack deletes a picked-up entry whose first
   * answer is a RST at once).
   */
  const resetByServer = async (t: Traffic, id: string, server: number): Promise<number> => {
    await poll(`${id} reset`, () => closedWith(t, id), WAIT);
    assert.match(closedWith(t, id)!, /ECONNRESET/);
    const rsts = await rig.rstsSent(rig.net.internet.ns, server);
    assert.equal(rsts.length, 1, `one RST from the server: ${rsts.join(', ')}`);
    assert.equal(rsts[0]!.split(':')[0], VIP);
    assert.deepEqual(await rig.rstsSent(rig.gw2.ns, server), [], 'no RST from the new gateway node');
    return Number(rsts[0]!.split(':')[1]);
  };
  const serverLines = (id: string) => rig.serverLines(id);

  afterEach(() => rig.stopAll());

  it('the remapped connection speaks first: on the new node it takes the other\'s port and stalls on the other\'s server socket; the other is remapped and reset by the server', async () => {
    await rig.fresh();
    const id = `k${freshPort()}`;
    const p = 40_001;
    const { server, portA, portB } = await openPair(id, p, p);
    assert.equal(portA, p, 'A came first: node 1 kept its port');
    assert.notEqual(portB, p, 'B clashed: node 1 remapped it');
    await rig.failover();

    await tb.tcpSend(`${id}b`, 'b2');
    const b = await pickedUp(podB, server);
    assert.deepEqual([b.natIP, b.natPort], [VIP, p], 'node 2 gives B the pod port, which the server knows as A\'s connection');
    await ta.tcpSend(`${id}a`, 'a2');
    const aPort = await resetByServer(ta, `${id}a`, server);
    assert.ok(aPort !== p && aPort !== portB, `node 2 remapped A to a port the server never saw (got ${aPort})`);
    // B's segment hit A's server socket out of window: never delivered, answered by ACKs of A's byte
    // stream. B retransmits it and stays open: a stall (until the pod's TCP gives up, minutes later).
    await poll('B retransmits its line 3 times', async () => (await retransmissions(podB, p)) >= 3, WAIT);
    assert.equal(echoed(tb, `${id}b`, 'b2'), false);
    assert.equal(closedWith(tb, `${id}b`), undefined, 'B is not closed: it stalls');
    assert.deepEqual(serverLines(id).sort(), [`${p}:a1`, `${portB}:b1`].sort(), 'the server read nothing after the failover');
  });

  it('the connection that kept its port speaks first: it survives; the remapped one gets a fresh port on the new node and is reset by the server', async () => {
    await rig.fresh();
    const id = `k${freshPort()}`;
    const p = 40_002;
    const { server, portA, portB } = await openPair(id, p, p);
    assert.equal(portA, p);
    assert.notEqual(portB, p);
    await rig.failover();

    await ta.tcpSend(`${id}a`, 'a2');
    const a = await pickedUp(podA, server);
    assert.deepEqual([a.natIP, a.natPort], [VIP, p], 'A keeps its port on node 2');
    await poll('A echoes through node 2', () => echoed(ta, `${id}a`, 'a2'), WAIT);
    await tb.tcpSend(`${id}b`, 'b2');
    const bPort = await resetByServer(tb, `${id}b`, server);
    assert.ok(bPort !== p && bPort !== portB, `node 2 remapped B to a port the server never saw (got ${bPort})`);
    assert.equal(closedWith(ta, `${id}a`), undefined, 'A survives');
    assert.deepEqual(serverLines(id).sort(), [`${p}:a1`, `${p}:a2`, `${portB}:b1`].sort());
  });

  it('control: distinct source ports, so no clash: both survive, the port-keeping pickup maps each back as node 1 did', async () => {
    await rig.fresh();
    const id = `k${freshPort()}`;
    const { server, portA, portB } = await openPair(id, 40_003, 40_004);
    assert.deepEqual([portA, portB], [40_003, 40_004], 'node 1 kept both ports');
    await rig.failover();

    for (const [t, pod, who, port] of [[tb, podB, 'b', portB], [ta, podA, 'a', portA]] as const) {
      await t.tcpSend(`${id}${who}`, `${who}2`);
      const e = await pickedUp(pod, server);
      assert.deepEqual([e.natIP, e.natPort], [VIP, port]);
      await poll(`${who} echoes through node 2`, () => echoed(t, `${id}${who}`, `${who}2`), WAIT);
    }
    assert.deepEqual(await rig.rstsSent(rig.net.internet.ns, server), []);
    assert.deepEqual([closedWith(ta, `${id}a`), closedWith(tb, `${id}b`)], [undefined, undefined]);
  });

  /**
   * After a failover onto a node that holds B's remap: B (remapped to `portB` on node 1) speaks first, then
   * A (port `p`); each keeps the port the server knows, both echo, the server sent no RST.
   */
  const bothSurviveRemappedFirst = async (id: string, server: number, p: number, portB: number) => {
    await tb.tcpSend(`${id}b`, 'b2');
    assert.equal((await pickedUp(podB, server)).natPort, portB, 'B keeps node 1\'s mapping on node 2');
    await poll('B echoes through node 2', () => echoed(tb, `${id}b`, 'b2'), WAIT);
    await ta.tcpSend(`${id}a`, 'a2');
    assert.equal((await pickedUp(podA, server)).natPort, p, 'A keeps its port: it is free on node 2');
    await poll('A echoes through node 2', () => echoed(ta, `${id}a`, 'a2'), WAIT);
    assert.deepEqual(await rig.rstsSent(rig.net.internet.ns, server), []);
    assert.deepEqual([closedWith(ta, `${id}a`), closedWith(tb, `${id}b`)], [undefined, undefined]);
    assert.deepEqual(serverLines(id).sort(), [`${p}:a1`, `${p}:a2`, `${portB}:b1`, `${portB}:b2`].sort());
  };

  /** The gateway's dataplane object as the controller writes it (spec only, server-side apply). */
  const putDataplane = (active: NetNode) =>
    api.client.apply(DATAPLANES, 'gw', {
      apiVersion: INTERNAL_API_VERSION,
      kind: KIND_DATAPLANE,
      metadata: { name: 'gw' },
      spec: { tunnelID: 42, activeNodeName: active.name, tunnelEndpoint: active.ip, sourceIP: { mode: MODE_VIP, ip: VIP }, policies: [] },
    }, { fieldManager: 'test-controller', force: true });
  const remapsInApi = async () => (await api.client.get<EgressGatewayDataplane>(DATAPLANES, 'gw')).status?.snatRemaps;

  /** A gateway node's agent part that replicates remaps: its own cache of the dataplane objects, its own conntrack. */
  const replicatorOn = async (n: NetNode) => {
    const cache = new Informer<EgressGatewayDataplane>(api.client, { resource: DATAPLANES });
    cache.start();
    await cache.waitForSync();
    const r = new RemapReplicator({ nodeName: n.name, intervalMs: 200 }, {
      client: api.client,
      conntrack: new ConntrackTool(createRunner({ netns: n.ns })),
      gateways: () => cache.list(),
      metrics: createDataplaneMetrics(new Registry()),
      log: silentLogger,
    });
    return { r, cache, stop: async () => { await r.stop(); cache.stop(); } };
  };

  it('the product\'s replication: node 1 publishes the remap in the dataplane object\'s status, node 2 seeds it before taking the VIP; both survive in the order that otherwise loses both, and the list follows the connections', async () => {
    await rig.fresh();
    await putDataplane(rig.gw1);
    const n1 = await replicatorOn(rig.gw1);
    const n2 = await replicatorOn(rig.gw2);
    try {
      // Every node's agent runs it; only the gateway's active node lists and publishes.
      await n1.r.start();
      await n2.r.start();
      const id = `k${freshPort()}`;
      const p = 40_006;
      const { server, portA, portB } = await openPair(id, p, p);
      assert.deepEqual([portA === p, portB === p], [true, false], 'B clashed on node 1');
      const remapB = { podIP: podB.ip, podPort: p, serverIP: rig.net.internet.ip, serverPort: server, natPort: portB };
      // Node 1 publishes only the remapped connection: A kept its port, node 2's pickup keeps it too.
      await poll('node 1 publishes B\'s remap', async () => (await remapsInApi())?.connections.length === 1, WAIT);
      assert.deepEqual(await remapsInApi(), { node: rig.gw1.name, vip: VIP, omitted: 0, connections: [remapB] });

      // Node 1 dies (it publishes nothing more). Node 2's VIP part takes the VIP: the seeding first, from
      // node 2's own cache of the object, then the address; the controller then moves the gateway.
      await n1.stop();
      await poll('node 2\'s cache holds the list', () => n2.cache.get('gw')?.status?.snatRemaps?.connections.length === 1, WAIT);
      assert.deepEqual(await n2.r.seed(VIP), { seeded: 1, present: 0, failed: [] });
      assert.deepEqual((await conntrack(server)).map((e) => [e.podIP, e.natIP, e.natPort]), [[podB.ip, VIP, portB]]);
      await rig.failover();
      await putDataplane(rig.gw2);

      // The order that loses both without the seeding (the first case): the remapped one speaks first.
      await bothSurviveRemappedFirst(id, server, p, portB);

      // Node 2 is active now and lists the same remap (the seeded entry): no write. B closes: its entry
      // leaves ESTABLISHED and node 2 publishes the list without it.
      await tb.stop(`${id}b`);
      await poll('node 2 publishes the list without the closed connection', async () => (await remapsInApi())?.node === rig.gw2.name, WAIT);
      assert.deepEqual(await remapsInApi(), { node: rig.gw2.name, vip: VIP, omitted: 0, connections: [] });
    } finally {
      await n1.stop();
      await n2.stop();
    }
  });

  it('the kernel side of the fix, by hand: the new node pre-seeded with the remapped entry (conntrack -I --src-nat VIP:port) keeps both, in the order that otherwise loses both', async () => {
    await rig.fresh();
    const id = `k${freshPort()}`;
    const p = 40_005;
    const { server, portB } = await openPair(id, p, p);
    assert.notEqual(portB, p);
    // The remapped entry as node 1 holds it. `--src-nat IP:port` (not `--src-nat=…`, which conntrack 1.4.7
    // drops silently) and no reply tuple: the kernel then sets up the NAT binding itself (status SRC_NAT),
    // which a given reply tuple would not do, and snat_guard would drop the packets.
    await rig.lab.exec(rig.gw2.ns, 'conntrack', ['-I', '-p', 'tcp', '-s', podB.ip, '-d', rig.net.internet.ip, '--sport', String(p), '--dport', String(server),
      '--src-nat', `${VIP}:${portB}`, '--state', 'ESTABLISHED', '-u', 'SEEN_REPLY,ASSURED', '-t', '300']);
    assert.deepEqual((await conntrack(server)).map((e) => [e.podIP, e.natIP, e.natPort]), [[podB.ip, VIP, portB]]);
    await rig.failover();

    await bothSurviveRemappedFirst(id, server, p, portB);
  });
});
