import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MODE_PRIMARY_IP, MODE_VIP } from '../api/names.ts';
import type { DataplanePolicy, EgressGatewayDataplane } from '../api/types.ts';
import { assignSlots, buildNodeDataplane, type DataplanePod, type InterfaceView, type ModelInput, type NodeDataplane } from './model.ts';
import { formatRange } from './ranges.ts';

function gateway(name: string, o: {
  id?: unknown;
  active?: string;
  endpoint?: string;
  vip?: string;
  iface?: string;
  policies?: DataplanePolicy[];
} = {}): EgressGatewayDataplane {
  return {
    metadata: { name },
    spec: {
      tunnelID: (o.id ?? 7) as number,
      activeNodeName: o.active ?? 'gw1',
      tunnelEndpoint: o.endpoint ?? '198.18.0.11',
      sourceIP: o.iface !== undefined ? { mode: MODE_PRIMARY_IP, interfaceName: o.iface } : { mode: MODE_VIP, ip: o.vip ?? '198.18.0.100' },
      policies: o.policies ?? [],
    },
  };
}

function policy(name: string, podSelector: Record<string, string>, dest: string[], excluded: string[] = [], extra: Partial<DataplanePolicy['selectors'][number]> = {}): DataplanePolicy {
  return { name, selectors: [{ podSelector: { matchLabels: podSelector }, ...extra }], destinationCIDRs: dest, excludedCIDRs: excluded };
}

function pod(ns: string, name: string, ip: string | undefined, labels: Record<string, string> = {}, o: { node?: string; hostNetwork?: boolean; phase?: string } = {}): DataplanePod {
  const p: DataplanePod = { metadata: { namespace: ns, name, labels }, spec: { nodeName: o.node ?? 'w1' }, status: { phase: o.phase ?? 'Running' } };
  if (o.hostNetwork) p.spec!.hostNetwork = true;
  if (ip !== undefined) p.status!.podIPs = [{ ip }];
  return p;
}

function build(o: Partial<ModelInput>): NodeDataplane {
  return buildNodeDataplane({
    node: 'w1',
    podCIDRs: ['198.18.16.0/20'],
    serviceCIDRs: ['198.18.48.0/24'],
    gateways: [],
    pods: [],
    namespaces: new Map(),
    interfaces: new Map<string, InterfaceView>(),
    ...o,
  });
}

/** The class each pod IP is in, as "ranges → verdict" lines. */
function routes(dp: NodeDataplane): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const c of dp.classes) for (const ip of c.pods) out[ip] = c.ranges.map((r) => `${formatRange(r)} ${r.verdict}`);
  return out;
}

describe('buildNodeDataplane: source side', () => {
  it('classifies the node\'s pods by the policies\' selectors; every pod with an IPv4 is known', () => {
    const dp = build({
      gateways: [gateway('gw-a', { policies: [policy('p1', { app: 'web' }, ['203.0.113.0/24'])] })],
      pods: [
        pod('prod', 'web-1', '198.18.16.5', { app: 'web' }),
        pod('prod', 'db-1', '198.18.16.6', { app: 'db' }),
        pod('prod', 'web-host', '198.18.0.21', { app: 'web' }, { hostNetwork: true }),
        pod('prod', 'web-done', '198.18.16.7', { app: 'web' }, { phase: 'Succeeded' }),
        pod('prod', 'web-new', undefined, { app: 'web' }),
        pod('prod', 'web-elsewhere', '198.18.17.5', { app: 'web' }, { node: 'w2' }),
      ],
    });
    assert.deepEqual(dp.known, ['198.18.16.5', '198.18.16.6']);
    assert.deepEqual(routes(dp), { '198.18.16.5': ['203.0.113.0/24 gw_1'] });
    assert.deepEqual(dp.egress, [{ slot: 1, gateway: 'gw-a', tunnelID: 7, endpoint: '198.18.0.11' }]);
    assert.deepEqual(dp.problems, []);
    assert.deepEqual(dp.cluster.map(formatRange), ['198.18.16.0/20', '198.18.48.0/24']);
    assert.deepEqual(dp.podNets.map(formatRange), ['198.18.16.0/20']);
  });

  it('namespaceSelector and the io.kubernetes.pod.namespace pseudo-label both select', () => {
    const dp = build({
      gateways: [gateway('gw-a', {
        policies: [
          policy('by-pseudo-label', { 'io.kubernetes.pod.namespace': 'team-a' }, ['203.0.113.0/24']),
          { name: 'by-ns-selector', selectors: [{ namespaceSelector: { matchLabels: { egress: 'yes' } } }], destinationCIDRs: ['198.51.100.0/24'] },
        ],
      })],
      pods: [pod('team-a', 'x', '198.18.16.5'), pod('team-b', 'y', '198.18.16.6'), pod('team-c', 'z', '198.18.16.7')],
      namespaces: new Map([['team-b', { egress: 'yes' }], ['team-c', { egress: 'no' }]]),
    });
    assert.deepEqual(routes(dp), { '198.18.16.5': ['203.0.113.0/24 gw_1'], '198.18.16.6': ['198.51.100.0/24 gw_1'] });
  });

  it('a gateway with no active node fails closed: its ranges drop', () => {
    const dp = build({
      gateways: [gateway('gw-a', { active: '', endpoint: '', policies: [policy('p1', { app: 'web' }, ['0.0.0.0/0'], ['203.0.113.128/25'])] })],
      pods: [pod('prod', 'web-1', '198.18.16.5', { app: 'web' })],
    });
    assert.deepEqual(routes(dp), { '198.18.16.5': ['0.0.0.0-203.0.113.127 drop', '203.0.114.0-255.255.255.255 drop'] });
    assert.deepEqual(dp.egress, []);
  });

  it('overlapping policies of two gateways resolve by longest prefix, exclusions cut holes', () => {
    const dp = build({
      gateways: [
        gateway('gw-a', { id: 7, endpoint: '198.18.0.11', policies: [policy('p-all', { app: 'web' }, ['0.0.0.0/0'], ['10.0.0.0/8'])] }),
        gateway('gw-b', { id: 8, endpoint: '198.18.0.12', vip: '198.18.0.101', policies: [policy('p-ten', { team: 'x' }, ['10.1.0.0/16'])] }),
      ],
      pods: [pod('prod', 'both', '198.18.16.5', { app: 'web', team: 'x' }), pod('prod', 'only-a', '198.18.16.6', { app: 'web' })],
    });
    assert.deepEqual(routes(dp), {
      '198.18.16.5': ['0.0.0.0-9.255.255.255 gw_1', '10.1.0.0/16 gw_2', '11.0.0.0-255.255.255.255 gw_1'],
      '198.18.16.6': ['0.0.0.0-9.255.255.255 gw_1', '11.0.0.0-255.255.255.255 gw_1'],
    });
    assert.equal(dp.classes.length, 2);
    assert.deepEqual(dp.vips, ['198.18.0.100', '198.18.0.101']);
  });

  it('pods sharing a set of policies share one class (stable name)', () => {
    const gws = [gateway('gw-a', { policies: [policy('p1', { app: 'web' }, ['203.0.113.0/24'])] })];
    const a = build({ gateways: gws, pods: [pod('p', 'a', '198.18.16.5', { app: 'web' }), pod('p', 'b', '198.18.16.6', { app: 'web' })] });
    const b = build({ gateways: gws, pods: [pod('p', 'c', '198.18.16.9', { app: 'web' })] });
    assert.equal(a.classes.length, 1);
    assert.deepEqual(a.classes[0]!.pods, ['198.18.16.5', '198.18.16.6']);
    assert.equal(a.classes[0]!.id, b.classes[0]!.id);
    assert.match(a.classes[0]!.id, /^c_[0-9a-f]{12}$/);
  });

  it('reports a pod outside the pod CIDRs and a duplicate pod IP', () => {
    const dp = build({
      gateways: [gateway('gw-a', { policies: [policy('p1', {}, ['203.0.113.0/24'])] })],
      pods: [pod('p', 'a', '10.9.9.9'), pod('p', 'b', '198.18.16.5'), pod('p', 'c', '198.18.16.5')],
    });
    assert.deepEqual(dp.known, ['198.18.16.5']);
    assert.deepEqual(dp.problems.map((p) => `${p.pod}: ${p.message}`), [
      'p/a: pod IP 10.9.9.9 is outside the pod CIDRs: its traffic is not redirected',
      'p/c: pod IP 198.18.16.5 is also p/b\'s; classified once',
    ]);
  });
});

describe('buildNodeDataplane: a gateway active on this node', () => {
  it('its pods are SNATed here, without the tunnel (no egress slot, no route)', () => {
    const dp = build({
      node: 'gw1',
      gateways: [gateway('gw-a', { active: 'gw1', policies: [policy('p1', { app: 'web' }, ['203.0.113.0/24'])] })],
      pods: [pod('p', 'a', '198.18.16.5', { app: 'web' }, { node: 'gw1' })],
    });
    assert.deepEqual(dp.ingress, [{ slot: 128, gateway: 'gw-a', tunnelID: 7, snat: '198.18.0.100' }]);
    assert.deepEqual(routes(dp), { '198.18.16.5': ['203.0.113.0/24 in_128'] });
    assert.deepEqual(dp.egress, []);
  });
});

describe('buildNodeDataplane: gateway side', () => {
  it('SNAT to the VIP on every node, to the interface\'s primary IPv4 where the interface exists', () => {
    const dp = build({
      node: 'gw2',
      gateways: [gateway('vip', { id: 7 }), gateway('prim', { id: 9, iface: 'eth1', active: 'gw2' }), gateway('prim-b', { id: 10, iface: 'eth9', active: 'gw3' })],
      interfaces: new Map([['eth1', { up: true, ipv4: ['192.0.2.12', '192.0.2.99'] }]]),
    });
    assert.deepEqual(dp.ingress, [
      { slot: 128, gateway: 'prim', tunnelID: 9, snat: '192.0.2.12' },
      { slot: 129, gateway: 'vip', tunnelID: 7, snat: '198.18.0.100' },
    ]);
    assert.deepEqual(dp.problems, [], 'a missing interface matters only on the active node');
  });

  it('a missing interface on the active node is a problem, and its tunnelled traffic gets no SNAT', () => {
    const dp = build({ node: 'gw2', gateways: [gateway('prim', { id: 9, iface: 'eth9', active: 'gw2' })] });
    assert.deepEqual(dp.ingress, []);
    assert.deepEqual(dp.problems, [{ gateway: 'prim', message: 'interface eth9 does not exist on this node: tunnelled traffic is dropped' }]);
  });

  it('so is one on a candidate node (its labels match the gateway\'s nodeSelector), not on other nodes', () => {
    const g = gateway('prim', { id: 9, iface: 'eth9', active: '' });
    g.spec!.nodeSelector = { role: 'egress' };
    assert.equal(build({ node: 'gw2', gateways: [g], nodeLabels: { role: 'egress' } }).problems.length, 1);
    assert.deepEqual(build({ node: 'w1', gateways: [g], nodeLabels: { role: 'worker' } }).problems, []);
    assert.deepEqual(build({ node: 'w1', gateways: [g] }).problems, [], 'labels unknown: not reported');
  });
});

describe('buildNodeDataplane: bad input loses nothing else', () => {
  it('a policy with a CIDR the data plane cannot take is left out, with the field named; the others stay', () => {
    const dp = build({
      gateways: [gateway('gw-a', { policies: [policy('bad', { app: 'web' }, ['2001:db8::/32']), policy('good', { app: 'web' }, ['203.0.113.0/24'])] })],
      pods: [pod('p', 'a', '198.18.16.5', { app: 'web' })],
    });
    assert.deepEqual(routes(dp), { '198.18.16.5': ['203.0.113.0/24 gw_1'] });
    assert.deepEqual(dp.problems, [{
      gateway: 'gw-a', policy: 'bad',
      message: 'policy left out of the data plane: destinationCIDRs[0]: IPv6 CIDR "2001:db8::/32" is not supported by the Linux data plane (IPv4 only)',
    }]);
  });

  it('a malformed or duplicate tunnel id fails the gateway closed', () => {
    const dp = build({
      gateways: [
        gateway('a', { id: 7, policies: [policy('pa', { app: 'a' }, ['203.0.113.0/24'])] }),
        gateway('b', { id: 7, policies: [policy('pb', { app: 'b' }, ['203.0.113.0/24'])] }),
        gateway('c', { id: 'x', policies: [policy('pc', { app: 'c' }, ['203.0.113.0/24'])] }),
      ],
      pods: [pod('p', 'a', '198.18.16.5', { app: 'a' }), pod('p', 'b', '198.18.16.6', { app: 'b' }), pod('p', 'c', '198.18.16.7', { app: 'c' })],
    });
    assert.deepEqual(routes(dp), {
      '198.18.16.5': ['203.0.113.0/24 gw_1'],
      '198.18.16.6': ['203.0.113.0/24 drop'],
      '198.18.16.7': ['203.0.113.0/24 drop'],
    });
    assert.deepEqual(dp.problems.map((p) => p.gateway), ['c', 'b']);
    assert.deepEqual(dp.ingress.map((i) => i.gateway), ['a']);
  });
});

describe('assignSlots', () => {
  it('keeps slots, and does not reuse a slot freed in the same update', () => {
    const prev = new Map([['a', 1], ['b', 2]]);
    assert.deepEqual([...assignSlots(['b', 'c'], prev, 1, 127)], [['b', 2], ['c', 3]]);
    assert.deepEqual([...assignSlots(['c'], new Map([['c', 3]]), 1, 127)], [['c', 3]]);
    assert.deepEqual([...assignSlots(['x', 'y', 'z'], new Map(), 1, 2)], [['x', 1], ['y', 2]]);
  });
});

describe('pod selection index', () => {
  it('selects exactly what testing every policy against every pod selects (property)', async () => {
    const fc = (await import('fast-check')).default;
    const { podSelected } = await import('../core/selectors.ts');
    const labelArb = fc.dictionary(fc.constantFrom('app', 'team', 'tier'), fc.constantFrom('a', 'b', 'c'), { maxKeys: 3 });
    const selectorArb = fc.record({
      podSelector: fc.option(fc.record({
        matchLabels: fc.option(labelArb, { nil: undefined }),
        matchExpressions: fc.option(fc.array(fc.record({ key: fc.constantFrom('app', 'team', 'io.kubernetes.pod.namespace'), operator: fc.constantFrom('In', 'NotIn', 'Exists', 'DoesNotExist'), values: fc.array(fc.constantFrom('a', 'b', 'ns1'), { maxLength: 2 }) }), { maxLength: 2 }), { nil: undefined }),
      }, { requiredKeys: [] }), { nil: undefined }),
      namespaceSelector: fc.option(fc.record({ matchLabels: labelArb }), { nil: undefined }),
    }, { requiredKeys: [] });
    const policyArb = fc.array(fc.array(selectorArb, { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 6 });
    const podArb = fc.array(fc.record({ ns: fc.constantFrom('ns1', 'ns2'), labels: labelArb }), { minLength: 1, maxLength: 8 });
    fc.assert(fc.property(policyArb, podArb, (selectorLists, podSpecs) => {
      const policies = selectorLists.map((selectors, i) => ({ name: `p${i}`, selectors, destinationCIDRs: ['203.0.113.0/24'] }));
      const namespaces = new Map([['ns1', { team: 'a' }], ['ns2', { team: 'b' }]]);
      const pods = podSpecs.map((s, i) => pod(s.ns, `x${i}`, `198.18.16.${10 + i}`, s.labels));
      const dp = build({ gateways: [gateway('gw', { policies })], pods, namespaces });
      const got = new Map<string, string[]>();
      for (const c of dp.classes) for (const ip of c.pods) got.set(ip, c.policies);
      pods.forEach((p) => {
        const want = policies.filter((pol) => podSelected(pol.selectors, { namespace: p.metadata.namespace!, labels: p.metadata.labels, namespaceLabels: namespaces.get(p.metadata.namespace!) })).map((pol) => pol.name);
        assert.deepEqual(got.get(p.status!.podIPs![0]!.ip!) ?? [], want);
      });
    }), { numRuns: 300 });
  });
});
