import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MODE_PRIMARY_IP, MODE_VIP, OWNED_LABELS, activeForLabel } from '../api/names.ts';
import type { CiliumEgressGatewayPolicy, EgressGateway, EgressGatewayDataplane, NodeLike } from '../api/types.ts';
import { MAX_TUNNEL_ID, allocateTunnelIDs, nodeTunnelEndpoint, planDataplaneWrites, renderDataplanes } from './dataplane.ts';

const node = (name: string, ip?: string): NodeLike => ({
  metadata: { name },
  status: { addresses: [{ type: 'Hostname', address: name }, ...(ip ? [{ type: 'InternalIP', address: ip }] : [])] } as NodeLike['status'],
});
const vipGw = (name: string, vip: string): EgressGateway => ({
  metadata: { name, uid: `uid-${name}` },
  spec: { nodeSelector: {}, sourceIP: { mode: MODE_VIP, virtualIPAddress: { ip: vip } } },
});
const primGw = (name: string, iface: string): EgressGateway => ({
  metadata: { name, uid: `uid-${name}` },
  spec: { sourceIP: { mode: MODE_PRIMARY_IP, primaryIPFromEgressGatewayNodeInterface: { interfaceName: iface } } },
});
const cegp = (policy: string, gateway: string, dest: string[], excluded?: string[]): CiliumEgressGatewayPolicy => ({
  metadata: { name: `d8.${policy}` },
  spec: {
    selectors: [{ podSelector: { matchLabels: { app: policy } } }],
    destinationCIDRs: dest,
    ...(excluded ? { excludedCIDRs: excluded } : {}),
    egressGateway: { nodeSelector: { matchLabels: { [activeForLabel(gateway)]: '' } }, egressIP: '198.18.0.100' },
  },
});

describe('nodeTunnelEndpoint', () => {
  it('is the first IPv4 InternalIP', () => {
    assert.equal(nodeTunnelEndpoint(node('n1', '198.18.0.11')), '198.18.0.11');
    assert.equal(nodeTunnelEndpoint(node('n1')), undefined);
    assert.equal(nodeTunnelEndpoint({ metadata: { name: 'x' }, status: { addresses: [{ type: 'InternalIP', address: '2001:db8::1' }, { type: 'InternalIP', address: '198.18.0.9' }] } as NodeLike['status'] }), '198.18.0.9');
    assert.equal(nodeTunnelEndpoint(undefined), undefined);
  });
});

describe('allocateTunnelIDs', () => {
  it('keeps observed ids, gives new gateways unique ones, and is deterministic', () => {
    const a = allocateTunnelIDs(['a', 'b', 'c'], new Map([['b', 7]]));
    assert.equal(a.get('b'), 7);
    assert.equal(new Set(a.values()).size, 3);
    assert.deepEqual(allocateTunnelIDs(['c', 'b', 'a'], new Map([['b', 7]])), a);
    for (const id of a.values()) assert.ok(id >= 1 && id <= MAX_TUNNEL_ID);
  });

  it('two gateways observed with one id: the first in name order keeps it', () => {
    const a = allocateTunnelIDs(['x', 'y'], new Map([['x', 5], ['y', 5]]));
    assert.equal(a.get('x'), 5);
    assert.notEqual(a.get('y'), 5);
  });

  it('ignores ids out of range', () => {
    const a = allocateTunnelIDs(['x'], new Map([['x', 0]]));
    assert.ok(a.get('x')! >= 1);
    assert.notEqual(allocateTunnelIDs(['x'], new Map([['x', MAX_TUNNEL_ID + 1]])).get('x'), MAX_TUNNEL_ID + 1);
  });
});

describe('renderDataplanes', () => {
  const nodes = [node('gw1', '198.18.0.11'), node('gw2', '198.18.0.12'), node('noip')];
  it('one object per gateway with its active node, endpoint, source IP and rendered policies', () => {
    const out = renderDataplanes({
      gateways: [vipGw('vip', '198.18.0.100'), primGw('prim', 'eth1'), vipGw('idle', '198.18.0.101')],
      nodes,
      observed: [{ metadata: { name: 'vip' }, spec: { tunnelID: 9 } }],
      decisions: new Map([['vip', { active: 'gw1' }], ['prim', { active: 'gw2' }], ['idle', { active: '' }]]),
      cegps: new Map([['d8.web', cegp('web', 'vip', ['0.0.0.0/0'], ['10.0.0.0/8'])], ['d8.api', cegp('api', 'vip', ['203.0.113.0/24'])], ['d8.orphan', cegp('orphan', 'gone', ['0.0.0.0/0'])]]),
    });
    assert.deepEqual([...out.keys()].sort(), ['idle', 'prim', 'vip']);
    const vip = out.get('vip')!;
    assert.deepEqual(vip.metadata.labels, { ...OWNED_LABELS });
    assert.deepEqual(vip.metadata.ownerReferences, [{ apiVersion: 'network.deckhouse.io/v1alpha1', kind: 'EgressGateway', name: 'vip', uid: 'uid-vip', controller: true, blockOwnerDeletion: true }]);
    assert.deepEqual(vip.spec, {
      tunnelID: 9,
      activeNodeName: 'gw1',
      tunnelEndpoint: '198.18.0.11',
      sourceIP: { mode: MODE_VIP, ip: '198.18.0.100' },
      policies: [
        { name: 'api', selectors: [{ podSelector: { matchLabels: { app: 'api' } } }], destinationCIDRs: ['203.0.113.0/24'] },
        { name: 'web', selectors: [{ podSelector: { matchLabels: { app: 'web' } } }], destinationCIDRs: ['0.0.0.0/0'], excludedCIDRs: ['10.0.0.0/8'] },
      ],
    });
    assert.deepEqual(out.get('prim')!.spec!.sourceIP, { mode: MODE_PRIMARY_IP, interfaceName: 'eth1' });
    assert.equal(out.get('prim')!.spec!.tunnelEndpoint, '198.18.0.12');
    assert.deepEqual([out.get('idle')!.spec!.activeNodeName, out.get('idle')!.spec!.tunnelEndpoint], ['', '']);
  });

  it('an active node without an InternalIP fails closed', () => {
    const out = renderDataplanes({ gateways: [vipGw('g', '198.18.0.100')], nodes, observed: [], decisions: new Map([['g', { active: 'noip' }]]), cegps: new Map() });
    assert.deepEqual([out.get('g')!.spec!.activeNodeName, out.get('g')!.spec!.tunnelEndpoint], ['', '']);
  });
});

describe('planDataplaneWrites', () => {
  it('writes what differs, deletes what no gateway wants, and nothing on an unchanged resync', () => {
    const want = renderDataplanes({ gateways: [vipGw('a', '198.18.0.100'), vipGw('b', '198.18.0.101')], nodes: [node('gw1', '198.18.0.11')], observed: [], decisions: new Map([['a', { active: 'gw1' }]]), cegps: new Map() });
    const first = planDataplaneWrites(want, [{ metadata: { name: 'stale' } }]);
    assert.deepEqual(first.applies.map((w) => w.kind === 'applyDataplane' && w.object.metadata.name), ['a', 'b']);
    assert.deepEqual(first.deletes, [{ kind: 'deleteDataplane', name: 'stale' }]);
    // What the API server returns: the applied object plus server fields, and no excludedCIDRs when empty.
    const observed: EgressGatewayDataplane[] = [...want.values()].map((o) => ({ ...structuredClone(o), metadata: { ...o.metadata, resourceVersion: '7', uid: 'x' } }));
    assert.deepEqual(planDataplaneWrites(want, observed), { applies: [], deletes: [] });
    const moved = new Map(want);
    moved.set('a', { ...want.get('a')!, spec: { ...want.get('a')!.spec, activeNodeName: 'gw2', tunnelEndpoint: '198.18.0.12' } });
    assert.deepEqual(planDataplaneWrites(moved, observed).applies.map((w) => w.kind === 'applyDataplane' && w.object.spec?.tunnelEndpoint), ['198.18.0.12']);
  });
});
