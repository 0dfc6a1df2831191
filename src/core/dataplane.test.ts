import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MODE_PRIMARY_IP, MODE_VIP, OWNED_LABELS, activeForLabel } from '../api/names.ts';
import type { EgressGatewayDataplane, NodeLike } from '../api/types.ts';
import { MAX_TUNNEL_ID, nodeTunnelEndpoint, proposedTunnelID, settleTunnelIDs } from './dataplane.ts';
import { reconcile } from './reconcile.ts';
import { cluster, policy, primaryGateway, settleWith, update, vipGateway } from './testing.ts';
import type { Snapshot, Write } from './types.ts';

const LINUX = { dataplane: 'linux' as const, requireCiliumAgent: false };
const run = (s: Snapshot) => reconcile(s, LINUX);

/** Nodes with InternalIPs 198.18.0.1N (the Linux data plane needs them). */
function withAddresses(s: Snapshot): Snapshot {
  return { ...s, nodes: s.nodes.map((n, i) => ({ ...n, status: { ...n.status, addresses: [{ type: 'InternalIP', address: `198.18.0.${11 + i}` }] } as NodeLike['status'] })) };
}

const dataplaneOf = (s: Snapshot, name: string): EgressGatewayDataplane | undefined => s.dataplanes?.find((o) => o.metadata.name === name);
const kinds = (ws: readonly Write[]) => ws.map((w) => w.kind);

describe('the Linux data plane in the core (--dataplane linux)', () => {
  const base = () =>
    withAddresses(cluster(
      [{ name: 'n1', labels: { role: 'egress' } }, { name: 'n2', labels: { role: 'egress' } }, { name: 'w1' }],
      { gateways: [vipGateway('vip', '198.18.0.100', { role: 'egress' }), primaryGateway('prim', 'eth1', { role: 'egress' })], policies: [policy('web', 'vip', { excluded: ['10.0.0.0/8'] }), policy('api', 'prim', { cidrs: ['203.0.113.0/24'] })] },
    ));

  it('renders one object per gateway with its active node\'s address and policies, and writes no CEGP', () => {
    const s = settleWith(run, base());
    assert.deepEqual(s.cegps, []);
    const vip = dataplaneOf(s, 'vip')!;
    assert.deepEqual(vip.metadata.labels, { ...OWNED_LABELS });
    assert.equal(vip.metadata.ownerReferences?.[0]?.name, 'vip');
    const active = s.nodes.find((n) => n.metadata.labels?.[activeForLabel('vip')] !== undefined)!;
    assert.equal(vip.spec?.activeNodeName, active.metadata.name);
    assert.equal(vip.spec?.tunnelEndpoint, nodeTunnelEndpoint(active));
    assert.deepEqual(vip.spec?.sourceIP, { mode: MODE_VIP, ip: '198.18.0.100' });
    assert.deepEqual(vip.spec?.nodeSelector, { role: 'egress' });
    assert.deepEqual(vip.spec?.policies, [{ name: 'web', selectors: [{ podSelector: { matchLabels: { app: 'web' } } }], destinationCIDRs: ['0.0.0.0/0'], excludedCIDRs: ['10.0.0.0/8'] }]);
    assert.deepEqual(dataplaneOf(s, 'prim')?.spec?.sourceIP, { mode: MODE_PRIMARY_IP, interfaceName: 'eth1' });
    assert.notEqual(vip.spec?.tunnelID, dataplaneOf(s, 'prim')?.spec?.tunnelID);
    assert.deepEqual(run(s).writes, [], 'a settled cluster: nothing to write');
  });

  it('a failover rewrites the object with the new node and its address (after the label moved)', () => {
    let s = settleWith(run, base());
    const old = dataplaneOf(s, 'vip')!.spec!.activeNodeName!;
    s = { ...s, heartbeats: s.heartbeats.filter((h) => h.node !== old) };
    s = settleWith(run, s);
    const now = dataplaneOf(s, 'vip')!;
    assert.notEqual(now.spec?.activeNodeName, old);
    assert.equal(now.spec?.tunnelEndpoint, nodeTunnelEndpoint(s.nodes.find((n) => n.metadata.name === now.spec?.activeNodeName)));
    assert.equal(now.spec?.tunnelID, dataplaneOf(settleWith(run, base()), 'vip')?.spec?.tunnelID, 'the tunnel id stays');
  });

  it('no eligible node: the object says so (the agents drop its traffic); the gateway deleted: its object goes', () => {
    let s = settleWith(run, base());
    s = { ...s, heartbeats: [] };
    s = settleWith(run, s);
    assert.deepEqual([dataplaneOf(s, 'vip')?.spec?.activeNodeName, dataplaneOf(s, 'vip')?.spec?.tunnelEndpoint], ['', '']);
    s = { ...s, gateways: s.gateways.filter((g) => g.metadata.name !== 'vip') };
    const { writes } = run(s);
    assert.ok(kinds(writes).includes('deleteDataplane'));
    s = settleWith(run, s);
    assert.equal(dataplaneOf(s, 'vip'), undefined);
  });

  // Found by the chaos suite (linux mode, seed 20261214 round 1): a gateway whose VIP is node w1's own
  // address is InvalidSpec, but its object carried the VIP; the agents keep every object's VIP off their
  // interfaces' addresses, so w1 had no address left to SNAT the valid PrimaryIP gateway's traffic to.
  it('an invalid gateway\'s object claims no address (a VIP that is a node\'s own address stays the node\'s)', () => {
    const s0 = base();
    const bad = vipGateway('bad', '198.18.0.13', { role: 'egress' });
    const s = settleWith(run, { ...s0, gateways: [...s0.gateways, bad] });
    assert.equal(s.gateways.find((g) => g.metadata.name === 'bad')?.status?.conditions?.find((c) => c.type === 'Ready')?.reason, 'InvalidSpec');
    assert.deepEqual(dataplaneOf(s, 'bad')?.spec?.sourceIP, { mode: MODE_VIP });
    assert.deepEqual(dataplaneOf(s, 'vip')?.spec?.sourceIP, { mode: MODE_VIP, ip: '198.18.0.100' }, 'a valid gateway keeps its VIP');
    const invalidPrim = primaryGateway('bad-prim', '', { role: 'egress' });
    const s2 = settleWith(run, { ...s0, gateways: [...s0.gateways, invalidPrim] });
    assert.deepEqual(dataplaneOf(s2, 'bad-prim')?.spec?.sourceIP, { mode: MODE_PRIMARY_IP });
  });

  it('a policy change is a write of its gateway\'s object only', () => {
    let s = settleWith(run, base());
    s = { ...s, policies: update(s.policies, 'web', (p) => (p.spec!.destinationCIDRs = ['198.51.100.0/24'])) };
    const applies = run(s).writes.filter((w) => w.kind === 'applyDataplane');
    assert.deepEqual(applies.map((w) => w.kind === 'applyDataplane' && w.object.metadata.name), ['vip']);
  });

  it('a dataplane object of no gateway is deleted; the Cilium data plane ignores dataplane objects', () => {
    const stray: EgressGatewayDataplane = { metadata: { name: 'gone' }, spec: { tunnelID: 5 } };
    const s = { ...settleWith(run, base()), dataplanes: [...(settleWith(run, base()).dataplanes ?? []), stray] };
    assert.deepEqual(run(s).writes, [{ kind: 'deleteDataplane', name: 'gone' }]);
    assert.ok(!kinds(reconcile(s).writes).some((k) => k === 'deleteDataplane' || k === 'applyDataplane'));
  });
});

describe('tunnel ids', () => {
  it('a gateway keeps the id its object carries; a new one proposes its name\'s hash', () => {
    assert.equal(proposedTunnelID('g', { metadata: { name: 'g' }, spec: { tunnelID: 42 } }), 42);
    const h = proposedTunnelID('g', undefined);
    assert.ok(h >= 1 && h <= MAX_TUNNEL_ID);
    assert.equal(proposedTunnelID('g', { metadata: { name: 'g' }, spec: { tunnelID: 0 } }), h, 'an invalid id is not kept');
  });

  it('settled unique: ids on the wire first, then the fresh ones probing upwards, in name order', () => {
    assert.deepEqual([...settleTunnelIDs([{ name: 'b', id: 7, observed: false }, { name: 'a', id: 7, observed: true }])], [['a', 7], ['b', 8]]);
    assert.deepEqual([...settleTunnelIDs([{ name: 'x', id: 5, observed: true }, { name: 'y', id: 5, observed: true }])], [['x', 5], ['y', 6]]);
    assert.deepEqual([...settleTunnelIDs([{ name: 'z', id: MAX_TUNNEL_ID, observed: true }, { name: 'zz', id: MAX_TUNNEL_ID, observed: false }])], [['z', MAX_TUNNEL_ID], ['zz', 1]]);
  });

  it('two gateways whose names hash to one id get different ids in the pass that renders them', () => {
    // Force a collision: observed ids that two gateways both claim.
    let s = withAddresses(cluster([{ name: 'n1', labels: { role: 'egress' } }], { gateways: [vipGateway('a', '198.18.0.100', { role: 'egress' }), vipGateway('b', '198.18.0.101', { role: 'egress' })] }));
    s = { ...s, dataplanes: [{ metadata: { name: 'a' }, spec: { tunnelID: 9 } }, { metadata: { name: 'b' }, spec: { tunnelID: 9 } }] };
    s = settleWith(run, s);
    assert.deepEqual([dataplaneOf(s, 'a')?.spec?.tunnelID, dataplaneOf(s, 'b')?.spec?.tunnelID], [9, 10]);
  });
});
