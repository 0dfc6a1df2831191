// The Linux data plane's kernel side with real packets between network namespaces (needs root, nft, ip):
// models from the pure builder, applied by LinuxDataplane on a worker and two gateway nodes, traffic from
// pod namespaces to an "internet" host that records the source address it sees. No API server here: the
// agent's watch side is tested in test/e2e/dataplane.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MODE_PRIMARY_IP, MODE_VIP } from '../../src/api/names.ts';
import type { DataplanePolicy, EgressGatewayDataplane } from '../../src/api/types.ts';
import { buildNodeDataplane, type DataplanePod, type NodeDataplane } from '../../src/dataplane/model.ts';
import { DEFAULT_DATAPLANE_SETTINGS } from '../../src/dataplane/render.ts';
import { createRunner } from '../../src/agent/net/exec.ts';
import { jsonElements, jsonNames } from '../../src/agent/net/nft.ts';
import { DataplaneUnavailable, LinuxDataplane } from '../../src/agent/dataplane/linux.ts';
import { Network, assertNetnsSupported, type NetNode } from '../../src/testenv/netns.ts';
import { POD_CIDR, SERVICE_CIDR, addPodNet, setUplink, type PodNet, type PodNs } from '../../src/testenv/podnet.ts';
import { Traffic, deliveredBesideControl, freshPort, sourcesSeen as seen } from '../../src/testenv/traffic.ts';
import { poll } from '../../src/testenv/poll.ts';

const VIP = '198.18.0.100';
const S = DEFAULT_DATAPLANE_SETTINGS;

describe('Linux data plane in the kernel (real packets)', { concurrency: false }, () => {
  let lab: Network;
  let net: PodNet;
  let worker: NetNode;
  let gwA: NetNode;
  let gwB: NetNode;
  let pod1: PodNs;
  let pod2: PodNs;
  let pod3: PodNs;
  /** A pod on the active gateway node itself: its traffic goes through the tunnel to its own node. */
  let podOnGw: PodNs;
  let inet: Traffic;
  const traffic: Traffic[] = [];
  const planes = new Map<string, LinuxDataplane>();

  const plane = (n: NetNode) => planes.get(n.name)!;
  const podObj = (p: PodNs, labels: Record<string, string>): DataplanePod => ({
    metadata: { namespace: 'prod', name: p.name, labels },
    spec: { nodeName: p.node },
    status: { phase: 'Running', podIP: p.ip },
  });
  const gateway = (o: { active: NetNode | undefined; policies: DataplanePolicy[]; mode?: string; iface?: string }): EgressGatewayDataplane => ({
    metadata: { name: 'gw' },
    spec: {
      tunnelID: 42,
      activeNodeName: o.active?.name ?? '',
      tunnelEndpoint: o.active?.ip ?? '',
      sourceIP: o.mode === MODE_PRIMARY_IP ? { mode: MODE_PRIMARY_IP, interfaceName: o.iface ?? 'eth0' } : { mode: MODE_VIP, ip: VIP },
      policies: o.policies,
    },
  });
  const webPolicy: DataplanePolicy = { name: 'web', selectors: [{ podSelector: { matchLabels: { app: 'web' } } }], destinationCIDRs: ['203.0.113.0/24'] };
  const model = (node: NetNode, gateways: EgressGatewayDataplane[], pods: DataplanePod[]): NodeDataplane =>
    buildNodeDataplane({
      node: node.name,
      podCIDRs: [POD_CIDR],
      serviceCIDRs: [SERVICE_CIDR],
      gateways,
      pods: pods.filter((p) => p.spec?.nodeName === node.name),
      namespaces: new Map(),
      interfaces: new Map([['eth0', { up: true, ipv4: [node.ip] }]]),
    });
  /** Applies the same objects on every node, as every agent would compute from them. */
  const applyAll = async (gateways: EgressGatewayDataplane[], pods: DataplanePod[]) => {
    for (const n of lab.nodes) await plane(n).apply(model(n, gateways, pods));
  };
  const helpers = new Map<string, Traffic>();
  const podTraffic = async (p: PodNs): Promise<Traffic> => {
    let t = helpers.get(p.ns);
    if (!t) {
      t = await Traffic.start((ns, cmd, args) => lab.spawnIn(ns, cmd, args), p.ns);
      helpers.set(p.ns, t);
      traffic.push(t);
    }
    return t;
  };
  const sourcesSeen = async (p: PodNs, dst: string): Promise<string[]> => seen(inet, await podTraffic(p), dst);
  const blocked = async (p: PodNs, control: PodNs, dst: string): Promise<number> => deliveredBesideControl(inet, await podTraffic(p), await podTraffic(control), dst);

  before(async () => {
    await assertNetnsSupported(); // fails (not skips) without root: required in CI
    lab = await Network.create({ nodes: 3, prefix: 'egd' });
    [worker, gwA, gwB] = lab.nodes as [NetNode, NetNode, NetNode];
    net = await addPodNet(lab, { [worker.name]: 3, [gwA.name]: 1 });
    [pod1, pod2, pod3] = net.pods.filter((p) => p.node === worker.name) as [PodNs, PodNs, PodNs];
    podOnGw = net.pods.find((p) => p.node === gwA.name)!;
    for (const n of lab.nodes) planes.set(n.name, new LinuxDataplane(S, createRunner({ netns: n.ns })));
    inet = await Traffic.start((ns, cmd, args) => lab.spawnIn(ns, cmd, args), net.internet.ns);
    traffic.push(inet);
    // Something of someone else's on the worker, which no update or cleanup of ours may touch.
    await lab.ip(worker.ns, ['rule', 'add', 'priority', '1000', 'fwmark', '0x4000/0x4000', 'lookup', '100']);
    await lab.ip(worker.ns, ['route', 'add', 'blackhole', '192.0.2.0/24', 'table', '100']);
  });

  after(async () => {
    for (const t of traffic) await t.close().catch(() => undefined);
    await lab?.teardown();
  });

  it('nft missing: a clear error, and nothing is created', async () => {
    const broken = new LinuxDataplane(S, createRunner({ netns: worker.ns, binaries: { nft: '/nonexistent/nft' } }));
    await assert.rejects(broken.preflight(), (err: Error) => err instanceof DataplaneUnavailable && /nft is not installed on this node \(package nftables\)/.test(err.message));
    const st = await plane(worker).state();
    assert.equal(st.device, false);
    assert.equal(st.table, undefined);
  });

  it('the kernel refuses the tunnel device (UDP 4790 taken by another VXLAN-GPE device): a clear error, nothing of ours created, theirs untouched', async () => {
    await lab.ip(worker.ns, ['link', 'add', 'fx0', 'type', 'vxlan', 'external', 'gpe', 'dstport', String(S.tunnelPort)]);
    await lab.ip(worker.ns, ['link', 'set', 'fx0', 'up']);
    try {
      const dp = model(worker, [gateway({ active: gwA, policies: [webPolicy] })], [podObj(pod1, { app: 'web' })]);
      await assert.rejects(plane(worker).apply(dp), (err: Error) => err instanceof DataplaneUnavailable && /cannot create the tunnel device egw0 \(VXLAN-GPE, UDP 4790\): .*already exists/.test(err.message));
      assert.deepEqual(await plane(worker).state(), { table: undefined, rules: [], routes: [], device: false });
      assert.match(await lab.ip(worker.ns, ['-d', 'link', 'show', 'fx0']), /vxlan external .*dstport 4790/);
    } finally {
      await lab.ip(worker.ns, ['link', 'del', 'fx0']);
    }
  });

  it('a link named like the tunnel device that is not ours (a veth): a clear error naming --tunnel-device; apply and cleanup leave it alone', async () => {
    await lab.ip(worker.ns, ['link', 'add', S.device, 'type', 'veth', 'peer', 'name', 'fx1']);
    try {
      const dp = model(worker, [gateway({ active: gwA, policies: [webPolicy] })], [podObj(pod1, { app: 'web' })]);
      await assert.rejects(plane(worker).apply(dp), (err: Error) => err instanceof DataplaneUnavailable && /a link named egw0 exists and is not an egressgw tunnel \(kind veth\).*--tunnel-device/.test(err.message));
      await plane(worker).cleanup();
      assert.match(await lab.ip(worker.ns, ['-d', 'link', 'show', S.device]), /veth/);
      const st = await plane(worker).state();
      assert.deepEqual([st.table, st.rules, st.routes], [undefined, [], []]);
    } finally {
      await lab.ip(worker.ns, ['link', 'del', S.device]);
    }
  });

  it('selected pods leave with the VIP; unselected pods and other destinations with the node IP', async () => {
    await lab.ip(gwA.ns, ['addr', 'add', `${VIP}/32`, 'dev', 'eth0']);
    const pods = [podObj(pod1, { app: 'web' }), podObj(pod2, { app: 'db' })];
    await applyAll([gateway({ active: gwA, policies: [webPolicy] })], pods);
    assert.deepEqual(await sourcesSeen(pod1, net.internet.ip), [VIP]);
    assert.deepEqual(await sourcesSeen(pod2, net.internet.ip), [worker.ip]);
    assert.deepEqual(await sourcesSeen(pod1, net.internet.otherIp), [worker.ip], 'outside destinationCIDRs');
  });

  it('a selected pod on the active gateway node itself leaves with the VIP too', async () => {
    const pods = [podObj(pod1, { app: 'web' }), podObj(podOnGw, { app: 'web' })];
    await applyAll([gateway({ active: gwA, policies: [webPolicy] })], pods);
    assert.deepEqual(await sourcesSeen(podOnGw, net.internet.ip), [VIP]);
  });

  it('a flow of a gateway node\'s pod that changes path (tunnel → local SNAT) never leaves with the pod\'s address', async () => {
    // Through the tunnel first (B active), then A becomes active: the flow's conntrack entry on A kept the
    // tunnel leg's identity binding; the guard drops what would otherwise leave un-SNATed.
    const pods = [podObj(pod1, { app: 'web' }), podObj(podOnGw, { app: 'web' })];
    await lab.ip(gwA.ns, ['addr', 'del', `${VIP}/32`, 'dev', 'eth0']);
    await lab.ip(gwB.ns, ['addr', 'add', `${VIP}/32`, 'dev', 'eth0']);
    await applyAll([gateway({ active: gwB, policies: [webPolicy] })], pods);
    const port = freshPort();
    const id = `p${port}`;
    await inet.udpListen(id, port);
    const t = await podTraffic(podOnGw);
    await t.udpStream(id, net.internet.ip, port, 10);
    await poll('the flow through B', () => inet.received(id).length >= 10, 10_000);
    await lab.ip(gwB.ns, ['addr', 'del', `${VIP}/32`, 'dev', 'eth0']);
    await lab.ip(gwA.ns, ['addr', 'add', `${VIP}/32`, 'dev', 'eth0']);
    await lab.ip(lab.router.ns, ['neigh', 'flush', 'to', VIP]);
    await applyAll([gateway({ active: gwA, policies: [webPolicy] })], pods);
    // A fresh flow of the same pod takes the local path; the old one is dropped, not leaked.
    assert.deepEqual(await sourcesSeen(podOnGw, net.internet.ip), [VIP]);
    await t.stop(id);
    await inet.stop(id);
    assert.deepEqual([...new Set(inet.received(id).map((e) => e.from))], [VIP]);
  });

  it('excluded CIDRs leave with the node IP', async () => {
    const pods = [podObj(pod1, { app: 'web' })];
    const p: DataplanePolicy = { ...webPolicy, destinationCIDRs: ['0.0.0.0/0'], excludedCIDRs: ['198.51.100.0/24'] };
    await applyAll([gateway({ active: gwA, policies: [p] })], pods);
    assert.deepEqual(await sourcesSeen(pod1, net.internet.ip), [VIP]);
    assert.deepEqual(await sourcesSeen(pod1, net.internet.otherIp), [worker.ip]);
  });

  it('a pod the data plane does not know yet is dropped, not leaked (drop until programmed)', async () => {
    const pods = [podObj(pod1, { app: 'web' }), podObj(pod2, { app: 'db' })];
    await applyAll([gateway({ active: gwA, policies: [webPolicy] })], pods);
    assert.equal(await blocked(pod3, pod2, net.internet.ip), 0);
    await applyAll([gateway({ active: gwA, policies: [webPolicy] })], [...pods, podObj(pod3, { app: 'web' })]);
    assert.deepEqual(await sourcesSeen(pod3, net.internet.ip), [VIP]);
  });

  it('no active node: the policy\'s traffic is dropped (fail closed), other pods are unaffected', async () => {
    const pods = [podObj(pod1, { app: 'web' }), podObj(pod2, { app: 'db' })];
    await applyAll([gateway({ active: undefined, policies: [webPolicy] })], pods);
    assert.equal(await blocked(pod1, pod2, net.internet.ip), 0);
  });

  it('PrimaryIP mode: the gateway interface\'s primary IPv4', async () => {
    const pods = [podObj(pod1, { app: 'web' })];
    await applyAll([gateway({ active: gwB, policies: [webPolicy], mode: MODE_PRIMARY_IP, iface: 'eth0' })], pods);
    assert.deepEqual(await sourcesSeen(pod1, net.internet.ip), [gwB.ip]);
  });

  it('the table holds exactly the current pods and classes: nothing stale after removals', async () => {
    const all = [podObj(pod1, { app: 'web' }), podObj(pod2, { app: 'web' }), podObj(pod3, { app: 'db' })];
    await applyAll([gateway({ active: gwA, policies: [webPolicy] })], all);
    let st = await plane(worker).state();
    assert.deepEqual(jsonElements(st.table, 'set', 'known4'), [pod1.ip, pod2.ip, pod3.ip]);
    assert.equal(jsonElements(st.table, 'map', 'pods4').length, 2);
    assert.equal(st.rules.length, 1);
    assert.equal(st.routes.length, 1);
    // Pods only (pod2 deleted, pod3 relabelled into pod1's class): a small element transaction, no table replacement.
    const r = await plane(worker).apply(model(worker, [gateway({ active: gwA, policies: [webPolicy] })], [podObj(pod1, { app: 'web' }), podObj(pod3, { app: 'web' })]));
    assert.equal(r.nft, 'pods');
    st = await plane(worker).state();
    assert.deepEqual(jsonElements(st.table, 'set', 'known4'), [pod1.ip, pod3.ip]);
    assert.equal(jsonElements(st.table, 'map', 'pods4').length, 2);
    assert.ok(!JSON.stringify(jsonElements(st.table, 'map', 'pods4')).includes(pod2.ip));
    assert.deepEqual(await sourcesSeen(pod3, net.internet.ip), [VIP]);
    // pod2 deleted, pod1 relabelled, the policy changed to another destination.
    const moved: DataplanePolicy = { ...webPolicy, destinationCIDRs: ['198.51.100.0/24'] };
    await applyAll([gateway({ active: gwA, policies: [moved] })], [podObj(pod1, { app: 'db' }), podObj(pod3, { app: 'web' })]);
    st = await plane(worker).state();
    assert.deepEqual(jsonElements(st.table, 'set', 'known4'), [pod1.ip, pod3.ip]);
    const podsMap = JSON.stringify(jsonElements(st.table, 'map', 'pods4'));
    assert.ok(podsMap.includes(pod3.ip) && !podsMap.includes(pod1.ip) && !podsMap.includes(pod2.ip), podsMap);
    const classes = jsonNames(st.table, 'map').filter((n) => n.startsWith('c_'));
    assert.equal(classes.length, 1);
    assert.ok(!JSON.stringify(jsonElements(st.table, 'map', classes[0]!)).includes('203.0.113.0'), 'the old destination is gone');
    assert.deepEqual(await sourcesSeen(pod3, net.internet.otherIp), [VIP]);
    // The gateway deleted: no class, no slot, no rule, no route.
    await applyAll([], [podObj(pod1, { app: 'db' }), podObj(pod3, { app: 'web' })]);
    st = await plane(worker).state();
    assert.deepEqual(jsonNames(st.table, 'map'), ['pods4', 'snat4', 'tunnel_in4']);
    assert.deepEqual(jsonNames(st.table, 'chain').filter((n) => /^(c_|gw_)/.test(n)), []);
    assert.deepEqual(st.rules, []);
    assert.deepEqual(st.routes, []);
    assert.deepEqual(await sourcesSeen(pod3, net.internet.otherIp), [worker.ip]);
  });

  it('failover: the route follows the new node; a UDP stream and a TCP connection keep flowing from the VIP', async () => {
    const pods = [podObj(pod1, { app: 'web' })];
    await applyAll([gateway({ active: gwA, policies: [webPolicy] })], pods);
    const port = freshPort();
    const id = `f${port}`;
    await inet.udpListen(id, port);
    await inet.tcpListen(`${id}t`, port);
    const t = await podTraffic(pod1);
    await t.udpStream(id, net.internet.ip, port, 10);
    await t.tcpConnect(`${id}c`, net.internet.ip, port, 20);
    await poll('TCP echoes through gateway A', () => t.tcp.some((e) => e.ev === 'echo' && e.id === `${id}c` && e.n! >= 20), 10_000);
    // Hard failure of A's uplink; the VIP moves to B (the agent's part, by hand here), the route follows.
    await setUplink(lab, net, gwA, 'down');
    await lab.ip(gwB.ns, ['addr', 'add', `${VIP}/32`, 'dev', 'eth0']);
    await lab.ip(lab.router.ns, ['neigh', 'flush', 'to', VIP]);
    await applyAll([gateway({ active: gwB, policies: [webPolicy] })], pods);
    const switched = inet.received(id).length;
    await poll('the stream arrives through B', () => inet.received(id).length >= switched + 20, 10_000);
    const echoes = () => Math.max(0, ...t.tcp.filter((e) => e.id === `${id}c` && e.ev === 'echo').map((e) => e.n!));
    const before = echoes();
    await poll('TCP echoes continue through B', () => echoes() >= before + 20, 15_000);
    assert.deepEqual([...new Set(inet.received(id).map((e) => e.from))], [VIP]);
    const accepts = inet.tcp.filter((e) => e.ev === 'accept' && e.id === `${id}t`);
    assert.equal(accepts.length, 1, 'one connection, never re-established');
    assert.equal(accepts[0]!.from, VIP);
    assert.deepEqual(t.tcp.filter((e) => e.ev === 'closed' && !e.stopped), []);
    await t.stop(id);
    await t.stop(`${id}c`);
    await setUplink(lab, net, gwA, 'up');
    await lab.ip(gwB.ns, ['addr', 'del', `${VIP}/32`, 'dev', 'eth0']);
  });

  it('cleanup removes everything of ours and nothing else', async () => {
    for (const n of lab.nodes) await plane(n).cleanup();
    for (const n of lab.nodes) {
      const st = await plane(n).state();
      assert.deepEqual(st, { table: undefined, rules: [], routes: [], device: false }, n.name);
    }
    assert.match(await lab.ip(worker.ns, ['rule', 'show', 'priority', '1000']), /fwmark 0x4000\/0x4000 lookup 100/);
    assert.match(await lab.ip(worker.ns, ['route', 'show', 'table', '100']), /blackhole 192\.0\.2\.0\/24/);
    assert.match(await lab.exec(worker.ns, 'nft', ['list', 'tables']), /table ip podnet/);
    assert.equal((await plane(worker).cleanup()).length, 0, 'idempotent');
  });
});
