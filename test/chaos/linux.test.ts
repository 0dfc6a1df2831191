// The Linux data plane's chaos invariant (linux.ts) is a checker: it must accept a kernel that holds
// exactly what the snapshot implies, and name what differs in one that does not. The kernel views here
// are built by hand (and, for the parser, from nft's own JSON): a test of the checker, not of the kernel.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EgressGateway, EgressGatewayDataplane, PodLike } from '../../src/api/types.ts';
import { fmt4, ip4, linuxDataplaneViolations, parseKernel, type LinuxInput, type LinuxKernel } from './linux.ts';
import { initialWorld, type World } from './world.ts';

const NODES = ['node1', 'node2', 'node3'];
const IPS = new Map(NODES.map((n, i) => [n, `198.18.0.${11 + i}`]));
const MASK = 0xff000000;
const TABLE = 26000;

/** A small world: two gateways, three policies, pods p1-1 (app-0) and p1-2 (web) on node1. */
function world(): World {
  const w = initialWorld(NODES, [{ name: 'p1-1', node: 'node1', ip: '198.18.17.11' }, { name: 'p1-2', node: 'node1', ip: '198.18.17.12' }]);
  w.gateways = new Map([['gw-v0', { name: 'gw-v0', mode: 'vip', selector: 'all', vip: '198.18.0.100' }], ['gw-p0', { name: 'gw-p0', mode: 'primary', selector: 'all' }]]);
  w.policies = new Map([
    ['pol-00', { name: 'pol-00', gateway: 'gw-v0', cidrs: ['203.0.113.0/25'], excluded: ['203.0.113.64/26'], app: 'app-0' }],
    ['pol-01', { name: 'pol-01', gateway: 'gw-p0', cidrs: ['203.0.113.0/24'], excluded: [], app: 'app-0' }],
    // Its gateway is gone: it selects nothing in the data plane.
    ['pol-02', { name: 'pol-02', gateway: 'gw-v9', cidrs: ['192.0.2.0/24'], excluded: [], app: 'web' }],
  ]);
  w.pods.get('p1-2')!.app = 'web';
  return w;
}

const gateway = (name: string, active: string): EgressGateway => ({ metadata: { name }, status: { activeNodeName: active } } as EgressGateway);
const dataplane = (name: string, tunnelID: number): EgressGatewayDataplane => ({ metadata: { name }, spec: { tunnelID } });
const pod = (name: string, ip: string, app: string): PodLike => ({ metadata: { name, namespace: 'chaos-apps', labels: { app } }, spec: { nodeName: 'node1' }, status: { phase: 'Running', podIP: ip } } as PodLike);

function emptyKernel(): LinuxKernel {
  return { table: true, known: [], pods: new Map(), maps: new Map(), marks: new Map(), tunnelIn: new Map(), snat: new Map(), rules: [], routes: [], device: true };
}

const range = (a: string, b: string, verdict: string) => ({ first: ip4(a), last: ip4(b), verdict });

/**
 * node1's kernel as it must be with gw-v0 active on node2 (tunnel id 11) and gw-p0 active on node1 (id 12):
 * p1-1 → 203.0.113.0/26 through the tunnel to node2, .64/26 excluded, .128/25 SNATed here (gw-p0's /24).
 */
function node1Kernel(): LinuxKernel {
  const k = emptyKernel();
  k.known = ['198.18.17.11', '198.18.17.12'];
  k.pods.set('198.18.17.11', 'jump c_a');
  k.maps.set('c_a', [range('203.0.113.0', '203.0.113.63', 'jump gw_1'), range('203.0.113.128', '203.0.113.255', 'jump in_129')]);
  k.marks.set('gw_1', 0x01000000).set('in_128', 0x80000000).set('in_129', 0x81000000);
  k.rules.push({ priority: 2500, mark: 0x01000000, mask: MASK, table: TABLE + 1 });
  k.routes.push({ table: TABLE + 1, line: 'default encap ip id 11 dst 198.18.0.12 dev egw0 table 26001', id: 11, dst: '198.18.0.12' });
  k.tunnelIn.set(11, 0x80000000).set(12, 0x81000000);
  k.snat.set(0x80000000, '198.18.0.100').set(0x81000000, '198.18.0.11');
  return k;
}

/** A node without pods: it SNATs for every gateway (gw-v0 to the VIP, gw-p0 to its own address). */
function podlessKernel(ip: string): LinuxKernel {
  const k = emptyKernel();
  k.marks.set('in_128', 0x80000000).set('in_129', 0x81000000);
  k.tunnelIn.set(11, 0x80000000).set(12, 0x81000000);
  k.snat.set(0x80000000, '198.18.0.100').set(0x81000000, ip);
  return k;
}

function input(over: Partial<LinuxInput> = {}): LinuxInput {
  return {
    world: world(),
    gateways: [gateway('gw-v0', 'node2'), gateway('gw-p0', 'node1')],
    dataplanes: [dataplane('gw-v0', 11), dataplane('gw-p0', 12)],
    pods: [pod('p1-1', '198.18.17.11', 'app-0'), pod('p1-2', '198.18.17.12', 'web')],
    nodeIps: IPS,
    podCIDR: '198.18.16.0/20',
    kernels: new Map([['node1', node1Kernel()], ['node2', podlessKernel('198.18.0.12')], ['node3', podlessKernel('198.18.0.13')]]),
    ...over,
  };
}

describe('linux data plane invariant (the checker)', () => {
  it('accepts kernels that hold exactly what the snapshot implies, and says what it compared', () => {
    const coverage = { redirectedPods: -1, verdicts: { tunnel: 0, snatHere: 0, drop: 0, notRedirected: 0 } };
    assert.deepEqual(linuxDataplaneViolations(input(), coverage), []);
    // p1-1 only; probes at the edges of 203.0.113.0/24, /25, .64/26: tunnel (.0, .63), excluded (.64, .127), SNAT here (.128, .255) and the outside neighbours.
    assert.equal(coverage.redirectedPods, 1);
    assert.ok(coverage.verdicts.tunnel > 0 && coverage.verdicts.snatHere > 0 && coverage.verdicts.notRedirected > 0 && coverage.verdicts.drop === 0, JSON.stringify(coverage));
  });

  it('names a stale pod element: a deleted pod left in known4 and pods4', () => {
    const i = input({ pods: [pod('p1-1', '198.18.17.11', 'app-0')] });
    const k = i.kernels.get('node1')!;
    k.pods.set('198.18.17.12', 'jump c_a');
    const v = linuxDataplaneViolations(i);
    assert.ok(v.some((l) => /node1: known4 holds 198\.18\.17\.12, no Running pod of this node has it \(stale\)/.test(l)), v.join('\n'));
    assert.ok(v.some((l) => /node1: pods4 holds 198\.18\.17\.12 .*\(stale\)/.test(l)), v.join('\n'));
  });

  it('names a relabelled pod still redirected, and a selected pod that is not', () => {
    const relabelled = input({ pods: [pod('p1-1', '198.18.17.11', 'web'), pod('p1-2', '198.18.17.12', 'web')] });
    assert.match(linuxDataplaneViolations(relabelled).join('\n'), /node1: pods4 redirects pod chaos-apps\/p1-1 \(198\.18\.17\.11, app web\) \(jump c_a\), which no valid policy selects \(stale\)/);
    const missing = input();
    missing.kernels.get('node1')!.pods.delete('198.18.17.11');
    assert.match(linuxDataplaneViolations(missing).join('\n'), /node1: pods4 lacks pod chaos-apps\/p1-1 .* selected by pol-00,pol-01/);
  });

  it('names a route to the old active node after a failover, and a tunnel where the gateway has no node (fail closed)', () => {
    const moved = input({ gateways: [gateway('gw-v0', 'node3'), gateway('gw-p0', 'node1')] });
    const v = linuxDataplaneViolations(moved);
    assert.ok(v.some((l) => l.includes('to 203.0.113.0: kernel tunnel id 11 to node2 (198.18.0.12), want tunnel id 11 to node3 (198.18.0.13) (pol-00 → gw-v0)')), v.join('\n'));
    const closed = input({ gateways: [gateway('gw-v0', ''), gateway('gw-p0', 'node1')] });
    assert.ok(linuxDataplaneViolations(closed).some((l) => l.includes('kernel tunnel id 11 to node2 (198.18.0.12), want drop')));
  });

  it('names a redirected excluded range, stale rules, routes, chains and tunnel ids, and a wrong SNAT source', () => {
    const i = input();
    const k1 = i.kernels.get('node1')!;
    k1.maps.set('c_a', [range('203.0.113.0', '203.0.113.127', 'jump gw_1'), range('203.0.113.128', '203.0.113.255', 'jump in_129')]);
    k1.marks.set('gw_7', 0x07000000);
    k1.rules.push({ priority: 2500, mark: 0x07000000, mask: MASK, table: TABLE + 7 });
    k1.routes.push({ table: TABLE + 9, line: 'default encap ip id 99 dst 198.18.0.13 dev egw0 table 26009', id: 99, dst: '198.18.0.13' });
    k1.tunnelIn.set(99, 0x82000000);
    i.kernels.get('node2')!.snat.set(0x80000000, '198.18.0.12');
    const v = linuxDataplaneViolations(i).join('\n');
    assert.match(v, /to 203\.0\.113\.64: kernel tunnel id 11 to node2 \(198\.18\.0\.12\), want not redirected \(pol-00 → excluded\)/);
    assert.match(v, /node1: chain gw_7 .* serves no gateway of this node.s pods. policies \(stale\)/);
    assert.match(v, /node1: ip rule priority 2500 fwmark 0x7000000\/0xff000000 lookup 26007 serves no current gateway chain \(stale\)/);
    assert.match(v, /node1: route "default encap ip id 99 .*" is used by no rule \(stale\)/);
    assert.match(v, /node1: tunnel_in4 holds tunnel id 99, which no gateway has \(stale\)/);
    assert.match(v, /node2: gateway gw-v0 \(active here\): its tunnel id 11 SNATs to 198\.18\.0\.12, want 198\.18\.0\.100/);
  });

  it('accepts the chain of a gateway whose ranges a tie in prefix length hands to another policy entirely', () => {
    const w = world();
    w.gateways.set('gw-v1', { name: 'gw-v1', mode: 'vip', selector: 'all', vip: '198.18.0.101' });
    w.policies.set('pol-03', { name: 'pol-03', gateway: 'gw-v1', cidrs: ['203.0.113.0/25'], excluded: ['203.0.113.64/26'], app: 'app-0' });
    const i = input({ world: w, gateways: [gateway('gw-v0', 'node2'), gateway('gw-p0', 'node1'), gateway('gw-v1', 'node3')], dataplanes: [dataplane('gw-v0', 11), dataplane('gw-p0', 12), dataplane('gw-v1', 13)] });
    const k = i.kernels.get('node1')!;
    k.marks.set('gw_2', 0x02000000);
    k.rules.push({ priority: 2500, mark: 0x02000000, mask: MASK, table: TABLE + 2 });
    k.routes.push({ table: TABLE + 2, line: 'default encap ip id 13 dst 198.18.0.13 dev egw0 table 26002', id: 13, dst: '198.18.0.13' });
    for (const kn of i.kernels.values()) {
      kn.tunnelIn.set(13, 0x82000000);
      kn.snat.set(0x82000000, '198.18.0.101');
    }
    assert.deepEqual(linuxDataplaneViolations(i), []);
    // The same chain once gw-v1 has moved to node2: stale.
    const moved = { ...i, gateways: [gateway('gw-v0', 'node2'), gateway('gw-p0', 'node1'), gateway('gw-v1', 'node2')] };
    assert.match(linuxDataplaneViolations(moved).join('\n'), /node1: chain gw_2 \(tunnel id 13 to node3 \(198\.18\.0\.13\)\) serves no gateway/);
  });

  it('names a node that lost the SNAT source of a PrimaryIP gateway it is not active for (a bad gateway\'s VIP is its own address: seed 20261214 round 1)', () => {
    const i = input();
    const k3 = i.kernels.get('node3')!;
    k3.tunnelIn.delete(12);
    k3.snat.delete(0x81000000);
    assert.deepEqual(linuxDataplaneViolations(i), ['linux: node3: gateway gw-p0: its tunnel id 12 SNATs to (no tunnel_in4 entry), want 198.18.0.13']);
  });

  it('names a node without the table', () => {
    const i = input();
    i.kernels.get('node3')!.table = false;
    assert.deepEqual(linuxDataplaneViolations(i), ['linux: node3: no table inet egressgw']);
  });
});

describe('linux kernel reader', () => {
  it('parses nft JSON (prefixes, ranges, verdicts, marks), ip rule JSON and ip route text', () => {
    const nft = JSON.stringify({ nftables: [
      { metainfo: { version: '1.0.6' } },
      { table: { family: 'inet', name: 'egressgw' } },
      { set: { name: 'known4', elem: ['198.18.17.11', '198.18.17.12'] } },
      { map: { name: 'pods4', map: 'verdict', elem: [['198.18.17.11', { jump: { target: 'c_9fa1150001d8' } }]] } },
      { map: { name: 'tunnel_in4', map: 'mark', elem: [[11, 2147483648]] } },
      { map: { name: 'snat4', map: 'ipv4_addr', elem: [[2147483648, '198.18.0.100']] } },
      { map: { name: 'c_9fa1150001d8', map: 'verdict', flags: ['interval'], elem: [
        [{ prefix: { addr: '203.0.113.0', len: 26 } }, { jump: { target: 'gw_2' } }],
        [{ range: ['192.0.2.5', '192.0.2.9'] }, { drop: null }],
      ] } },
      // As nft prints `meta mark set meta mark & 0x00ffffff | 0x02000000` back.
      { rule: { chain: 'gw_2', expr: [{ mangle: { key: { meta: { key: 'mark' } }, value: { '|': [{ '&': [{ meta: { key: 'mark' } }, 50331647] }, 33554432] } } }] } },
    ] });
    const rules = JSON.stringify([{ priority: 0, src: 'all', table: 'local' }, { priority: 2500, src: 'all', fwmark: '0x2000000', fwmask: '0xff000000', table: '26002' }, { priority: 32766, src: 'all', table: 'main' }]);
    const routes = 'default via 198.18.0.1 dev eth0\ndefault  encap ip id 11 src 0.0.0.0 dst 198.18.0.12 ttl 0 tos 0 dev egw0 table 26002 scope link\nlocal 127.0.0.1 dev lo table local';
    const k = parseKernel(nft, rules, routes, true);
    assert.deepEqual(k.known, ['198.18.17.11', '198.18.17.12']);
    assert.deepEqual([...k.pods], [['198.18.17.11', 'jump c_9fa1150001d8']]);
    assert.deepEqual(k.maps.get('c_9fa1150001d8')!.map((r) => [fmt4(r.first), fmt4(r.last), r.verdict]), [['203.0.113.0', '203.0.113.63', 'jump gw_2'], ['192.0.2.5', '192.0.2.9', 'drop']]);
    assert.equal(k.marks.get('gw_2'), 0x02000000);
    assert.deepEqual([...k.tunnelIn], [[11, 0x80000000]]);
    assert.deepEqual([...k.snat], [[0x80000000, '198.18.0.100']]);
    assert.deepEqual(k.rules, [{ priority: 2500, mark: 0x02000000, mask: MASK, table: 26002 }]);
    assert.deepEqual(k.routes.map((r) => [r.table, r.id, r.dst]), [[26002, 11, '198.18.0.12']]);
    assert.equal(parseKernel(undefined, '[]', '', false).table, false);
  });
});
