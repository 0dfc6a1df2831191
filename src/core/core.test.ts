// Unit tests for what the reference scenarios do not cover: move, handover timeout, duplicate VIPs,
// invalid input, uplink health, heartbeats, statuses and events.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HANDOVER_TO_ANNOTATION, MEMBER_LABEL, MOVE_TO_ANNOTATION, activeForLabel } from '../api/names.ts';
import type { CiliumEgressGatewayPolicy, EgressGateway } from '../api/types.ts';
import {
  NodeLabelIndex,
  computeDesired,
  instanceName,
  isNodeReady,
  isPodReady,
  matchesLabelSelector,
  matchesNodeSelector,
  reconcile,
} from './index.ts';
import type { Snapshot, Write } from './types.ts';
import {
  NOW,
  agentsAct,
  applyWrites,
  cluster,
  heartbeat,
  node,
  policy,
  primaryGateway,
  settleWith,
  update,
  vipGateway,
} from './testing.ts';

const SEL = { role: 'egress' };
const run = (s: Snapshot, o?: Parameters<typeof reconcile>[1]) => reconcile(s, o);
const settle = (s: Snapshot) => settleWith((x) => run(x), s);
const ofKind = <K extends Write['kind']>(ws: Write[], kind: K): Array<Extract<Write, { kind: K }>> =>
  ws.filter((w): w is Extract<Write, { kind: K }> => w.kind === kind);
const holders = (s: Snapshot, gw: string) => s.nodes.filter((n) => n.metadata.labels?.[activeForLabel(gw)] !== undefined).map((n) => n.metadata.name);
const three = (extra: Partial<Snapshot> = {}) => cluster(['n1', 'n2', 'n3'].map((name) => ({ name, labels: SEL })), extra);
const withMove = (s: Snapshot, gw: string, to: string): Snapshot => ({
  ...s,
  gateways: update(s.gateways, gw, (g) => (g.metadata.annotations = { ...g.metadata.annotations, [MOVE_TO_ANNOTATION]: to })),
});
const later = (s: Snapshot, ms: number): Snapshot => ({
  ...s,
  now: s.now + ms,
  heartbeats: s.heartbeats.map((h) => ({ ...h, observedAt: h.observedAt + ms })),
});

describe('helpers', () => {
  it('instanceName matches the reference example', () => {
    assert.equal(instanceName('egg-dev', 'frontend-1'), 'egg-dev-cd98b75eb2');
  });
  it('readiness: a missing Ready condition counts as Ready', () => {
    assert.equal(isNodeReady(node('a', {}, { ready: 'none' })), true);
    assert.equal(isNodeReady(node('a', {}, { ready: false })), false);
    assert.equal(isPodReady({ metadata: { name: 'p' } }), true);
    assert.equal(isPodReady({ metadata: { name: 'p' }, status: { conditions: [{ type: 'Ready', status: 'Unknown' }] } }), false);
  });
  it('node selectors are exact; empty matches all', () => {
    assert.equal(matchesNodeSelector({ a: '1' }, {}), true);
    assert.equal(matchesNodeSelector({ a: '1' }, undefined), true);
    assert.equal(matchesNodeSelector({ a: '1' }, { a: '2' }), false);
    assert.equal(matchesNodeSelector({}, { a: '' }), false);
    assert.equal(matchesNodeSelector({ a: '' }, { a: '' }), true);
  });
  it('label selectors support matchExpressions', () => {
    const l = { app: 'web', tier: 'fe' };
    assert.equal(matchesLabelSelector(l, {}), true);
    assert.equal(matchesLabelSelector(l, undefined), false);
    assert.equal(matchesLabelSelector(l, { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['fe', 'be'] }] }), true);
    assert.equal(matchesLabelSelector(l, { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['fe'] }] }), false);
    assert.equal(matchesLabelSelector(l, { matchExpressions: [{ key: 'x', operator: 'DoesNotExist' }] }), true);
    assert.equal(matchesLabelSelector(l, { matchExpressions: [{ key: 'x', operator: 'Exists' }] }), false);
    assert.equal(matchesLabelSelector(l, { matchExpressions: [{ key: 'app', operator: 'Bogus' }] }), false);
  });
  it('the node index finds the same nodes as a scan', () => {
    const labels = new Map<string, Record<string, string>>([
      ['a', { x: '1', y: '1' }],
      ['b', { x: '1', y: '2' }],
      ['c', { x: '2' }],
    ]);
    const idx = new NodeLabelIndex(labels);
    assert.deepEqual(idx.match({}), ['a', 'b', 'c']);
    assert.deepEqual(idx.match({ x: '1' }), ['a', 'b']);
    assert.deepEqual(idx.match({ x: '1', y: '2' }), ['b']);
    assert.deepEqual(idx.match({ z: '1' }), []);
  });
});

describe('eligibility', () => {
  it('VIP mode needs a live heartbeat; reasons are reported per node', () => {
    let s = three({ gateways: [vipGateway('g', '192.0.2.10', SEL)] });
    s = {
      ...s,
      heartbeats: [heartbeat('n1', { live: false }), heartbeat('n3')],
      agentPods: update(s.agentPods, 'agent-n3', (p) => (p.metadata.deletionTimestamp = '2025-01-01T00:00:00Z')),
    };
    const d = computeDesired(s).gateways.get('g');
    assert.deepEqual(d?.candidates, [
      { node: 'n1', eligible: false, reasons: ['HeartbeatExpired'] },
      { node: 'n2', eligible: false, reasons: ['AgentMissing'] },
      { node: 'n3', eligible: false, reasons: ['AgentNotReady'] },
    ]);
    assert.equal(d?.message, 'no eligible node: 3 match the selector: 1 agent missing, 1 agent heartbeat expired, 1 agent not Ready');
  });
  it('PrimaryIP mode: no heartbeat is fine, an expired one is not', () => {
    const s = three({ gateways: [primaryGateway('g', 'eth1', SEL)], heartbeats: [heartbeat('n1', { live: false })] });
    const d = computeDesired(s).gateways.get('g');
    assert.deepEqual(d?.candidates.map((c) => c.eligible), [false, true, true]);
    assert.deepEqual(d?.candidates[0]?.reasons, ['HeartbeatExpired']);
  });
  it('uplink health: PrimaryIP interface must be up with an IPv4; VIP needs one listed interface up', () => {
    const up = { up: true, ipv4: ['192.0.2.1'] };
    const s = three({
      gateways: [primaryGateway('p', 'eth1', SEL), vipGateway('v', '192.0.2.10', SEL, { interfaces: ['eth1', 'eth2'] }), vipGateway('w', '192.0.2.11', SEL)],
      heartbeats: [
        heartbeat('n1', { uplinks: { eth1: { up: true, ipv4: [] }, eth2: { up: false } } }),
        heartbeat('n2', { uplinks: { eth1: up } }),
        heartbeat('n3', { uplinks: { eth2: up } }),
      ],
    });
    const d = computeDesired(s).gateways;
    assert.deepEqual(d.get('p')?.candidates.map((c) => c.reasons), [['UplinkDown'], [], ['UplinkDown']]);
    // n1: eth1 is up (no IPv4 needed for a VIP), n3: eth2 up.
    assert.deepEqual(d.get('v')?.candidates.map((c) => c.reasons), [[], [], []]);
    const s2 = { ...s, heartbeats: [heartbeat('n1', { uplinks: { eth1: { up: false } } }), heartbeat('n2'), heartbeat('n3')] };
    assert.deepEqual(computeDesired(s2).gateways.get('v')?.candidates[0]?.reasons, ['UplinkDown']);
    // Empty `interfaces`: the agent picks the interface by route; not checked here.
    assert.deepEqual(computeDesired(s2).gateways.get('w')?.candidates[0]?.reasons, []);
  });
  it('"no node matches the selector" when nothing matches', () => {
    const s = three({ gateways: [vipGateway('g', '192.0.2.10', { role: 'nope' })] });
    assert.equal(computeDesired(s).gateways.get('g')?.message, 'no eligible node: no node matches the selector');
  });
});

describe('election', () => {
  it('spreads gateways sharing nodes, fewest active first', () => {
    const gws = ['a', 'b', 'c', 'd', 'e', 'f'].map((n, i) => primaryGateway(n, 'eth1', SEL, { uid: `u${i}` }));
    const end = settle(three({ gateways: gws }));
    const count = new Map<string, number>();
    for (const g of gws) for (const h of holders(end, g.metadata.name)) count.set(h, (count.get(h) ?? 0) + 1);
    assert.deepEqual([...count.values()], [2, 2, 2]);
  });
  it('is sticky: a recovered node does not take the role back', () => {
    let s = settle(three({ gateways: [primaryGateway('g', 'eth1', SEL)] }));
    const [first] = holders(s, 'g');
    s = settle({ ...s, nodes: update(s.nodes, first!, (n) => (n.spec = { unschedulable: true })) });
    const [second] = holders(s, 'g');
    assert.notEqual(second, first);
    s = { ...s, nodes: update(s.nodes, first!, (n) => (n.spec = {})) };
    const { writes } = run(s);
    assert.ok(!ofKind(writes, 'addLabels').some((w) => w.keys.includes(activeForLabel('g'))));
    assert.deepEqual(holders(settle(s), 'g'), [second]);
  });
  it('several labelled nodes: keeps one (eligible, with a Ready instance, then lexical)', () => {
    const A = activeForLabel('g');
    const s = cluster(
      [
        { name: 'n1', labels: { ...SEL, [A]: '' }, unschedulable: true },
        { name: 'n2', labels: { ...SEL, [A]: '' } },
        { name: 'n3', labels: { ...SEL, [A]: '' } },
      ],
      { gateways: [primaryGateway('g', 'eth1', SEL)] },
    );
    assert.equal(computeDesired(s).gateways.get('g')?.active, 'n2');
  });
});

describe('VIP handover', () => {
  it('make before break on a move; Moved once, request cleared', () => {
    let s = settle(three({ gateways: [vipGateway('g', '192.0.2.10', SEL)] }));
    const [a] = holders(s, 'g');
    const b = ['n1', 'n2', 'n3'].find((n) => n !== a)!;
    s = withMove(s, 'g', b);
    let r = run(s);
    assert.deepEqual(ofKind(r.writes, 'createInstance').map((w) => w.object.spec?.nodeName), [b]);
    assert.equal(ofKind(r.writes, 'addLabels').length, 0);
    assert.equal(ofKind(r.writes, 'removeLabels').length, 0);
    assert.equal(ofKind(r.writes, 'deleteInstance').length, 0);
    assert.equal(ofKind(r.writes, 'clearMoveRequest').length, 0);
    s = applyWrites(s, r.writes);
    assert.deepEqual(run(s).writes, [], 'waiting for the agent: nothing to do');
    s = agentsAct(s, [b]);
    r = run(s);
    const kinds = r.writes.map((w) => `${w.kind}${'target' in w ? `:${w.target}` : ''}`);
    assert.deepEqual(kinds, ['addLabels:Node', 'addLabels:CiliumNode', 'removeLabels:Node', 'removeLabels:CiliumNode', 'gatewayStatus', 'clearMoveRequest', 'deleteInstance', 'event']);
    assert.deepEqual(ofKind(r.writes, 'event').map((e) => [e.reason, e.type]), [['Moved', 'Normal']]);
    assert.equal(ofKind(r.writes, 'gatewayStatus')[0]?.status.lastFailoverReason, 'Moved');
    s = applyWrites(s, r.writes);
    assert.deepEqual(holders(s, 'g'), [b]);
    assert.deepEqual(run(s).writes, []);
  });
  it('rejects a move to an ineligible node', () => {
    let s = settle(three({ gateways: [vipGateway('g', '192.0.2.10', SEL)] }));
    const [a] = holders(s, 'g');
    const b = ['n1', 'n2', 'n3'].find((n) => n !== a)!;
    s = withMove({ ...s, nodes: update(s.nodes, b, (n) => (n.spec = { unschedulable: true })) }, 'g', b);
    const r = run(s);
    assert.equal(ofKind(r.writes, 'clearMoveRequest').length, 1);
    const ev = ofKind(r.writes, 'event').find((e) => e.reason === 'MoveRejected');
    assert.equal(ev?.type, 'Warning');
    assert.match(ev?.note ?? '', new RegExp(`${b} is not eligible: Cordoned`));
    assert.equal(ofKind(r.writes, 'createInstance').length, 0);
    const r2 = run(withMove(s, 'g', 'nowhere'));
    assert.match(ofKind(r2.writes, 'event').find((e) => e.reason === 'MoveRejected')?.note ?? '', /does not exist/);
  });
  it('PrimaryIP: a move relabels at once', () => {
    let s = settle(three({ gateways: [primaryGateway('g', 'eth1', SEL)] }));
    const [a] = holders(s, 'g');
    const b = ['n1', 'n2', 'n3'].find((n) => n !== a)!;
    s = settle(withMove(s, 'g', b));
    assert.deepEqual(holders(s, 'g'), [b]);
    assert.equal(s.gateways[0]?.metadata.annotations?.[MOVE_TO_ANNOTATION], undefined);
  });
  it('a node that does not confirm in time is skipped; its instance is withdrawn as the next node is tried', () => {
    const s0 = three({ gateways: [vipGateway('g', '192.0.2.10', SEL)] });
    let r = run(s0);
    const first = ofKind(r.writes, 'createInstance')[0]!.object.spec!.nodeName!;
    let s = applyWrites(s0, r.writes);
    s = later(s, 5000);
    r = run(s);
    const second = ofKind(r.writes, 'createInstance')[0]!.object.spec!.nodeName!;
    assert.notEqual(second, first);
    // An instance orders its agent to hold and announce the VIP: a late confirmation of the first node
    // beside the second would make two owners, so the first one's goes in the same pass, and the
    // second's is held (handover mark) until the first one's is gone: the first node's agent is alive and
    // may still take the VIP until it has seen the deletion and released its instance (gateway.ts, heldInstance).
    assert.deepEqual(ofKind(r.writes, 'deleteInstance').map((w) => w.name), [instanceName('g', first)]);
    assert.equal(ofKind(r.writes, 'createInstance')[0]!.object.metadata.annotations?.[HANDOVER_TO_ANNOTATION], second);
    s = applyWrites(s, r.writes);
    assert.deepEqual(run(s).writes, [], 'still held while the first instance is deleting');
    s = agentsAct(s, [first]);
    r = run(s);
    assert.deepEqual(r.writes.map((w) => [w.kind, 'object' in w ? w.object.metadata.annotations?.[HANDOVER_TO_ANNOTATION] : undefined]), [['updateInstance', undefined]]);
    s = applyWrites(s, r.writes);
    assert.deepEqual(run(s).writes, []);
    s = agentsAct(s, [second]);
    s = settle(s);
    assert.deepEqual(holders(s, 'g'), [second]);
  });
  it('no target elsewhere: a timed-out instance stays, and a late confirmation makes its node the owner', () => {
    const one = three({ gateways: [vipGateway('g', '192.0.2.10', SEL)] });
    let r = run(one);
    const first = ofKind(r.writes, 'createInstance')[0]!.object.spec!.nodeName!;
    // Only the first node stays eligible: the others are cordoned.
    let s = applyWrites(one, r.writes);
    s = { ...s, nodes: s.nodes.map((n) => (n.metadata.name === first ? n : { ...n, spec: { ...n.spec, unschedulable: true } })) };
    s = later(s, 5000);
    r = run(s);
    assert.deepEqual(r.desired.gateways.get('g')?.candidates.find((c) => c.node === first)?.reasons, ['HandoverTimedOut']);
    assert.equal(ofKind(r.writes, 'deleteInstance').length, 0);
    s = applyWrites(s, r.writes);
    s = settle(agentsAct(s, [first]));
    assert.deepEqual(holders(s, 'g'), [first]);
  });
  it('a VIP change rewrites the active instance without failing over', () => {
    let s = settle(three({ gateways: [vipGateway('g', '192.0.2.10', SEL)] }));
    const [a] = holders(s, 'g');
    s = later(s, 60_000);
    s = { ...s, gateways: update(s.gateways, 'g', (g) => (g.spec!.sourceIP!.virtualIPAddress!.ip = '192.0.2.20')) };
    const r = run(s);
    const up = ofKind(r.writes, 'updateInstance');
    assert.equal(up.length, 1);
    assert.equal(up[0]?.object.spec?.sourceIP?.virtualIPAddress?.ip, '192.0.2.20');
    assert.equal(ofKind(r.writes, 'removeLabels').length, 0);
    s = applyWrites(s, r.writes);
    assert.equal(run(s).desired.gateways.get('g')?.reason, 'VirtualIPAnnouncing');
    assert.deepEqual(holders(settle(s), 'g'), [a]);
  });
});

describe('duplicate VIPs and invalid input', () => {
  it('the older gateway keeps a duplicated VIP', () => {
    const s = three({
      gateways: [vipGateway('b', '192.0.2.10', SEL, { created: '2025-01-01T00:00:00Z' }), vipGateway('a', '192.0.2.10', SEL, { created: '2025-06-01T00:00:00Z' })],
    });
    const r = run(s);
    assert.equal(r.desired.gateways.get('a')?.phase, 'Invalid');
    assert.equal(r.desired.gateways.get('a')?.reason, 'DuplicateVIP');
    assert.match(r.desired.gateways.get('a')?.message ?? '', /gateway b/);
    assert.equal(r.desired.gateways.get('b')?.phase, 'HandingOver');
    assert.deepEqual(r.desired.metrics.duplicateVIPs, [{ ip: '192.0.2.10', gateways: ['b', 'a'] }]);
    assert.deepEqual(ofKind(r.writes, 'createInstance').map((w) => w.object.metadata.ownerReferences?.[0]?.name), ['b']);
    assert.deepEqual(ofKind(r.writes, 'event').map((e) => `${e.regarding.name}/${e.reason}`), ['a/DuplicateVIP']);
  });
  it('never throws on malformed objects', () => {
    const junk = [
      { metadata: { name: 'nospec' } },
      { metadata: { name: 'nosource' }, spec: {} },
      { metadata: { name: 'badmode' }, spec: { sourceIP: { mode: 'Magic' } } },
      { metadata: { name: 'badsel' }, spec: { nodeSelector: 'x', sourceIP: { mode: 'VirtualIPAddress', virtualIPAddress: { ip: '10.0.0.1' } } } },
      { metadata: { name: 'nullvip' }, spec: { sourceIP: { mode: 'VirtualIPAddress', virtualIPAddress: null } } },
      { metadata: {} },
      null,
    ] as unknown as EgressGateway[];
    const s = three({
      gateways: junk,
      policies: [{ metadata: { name: 'p' } }, { metadata: { name: 'q' }, spec: null }, { metadata: { name: 'r' }, spec: { egressGatewayName: 'nospec', selectors: 'x' } }] as never,
      nodes: [...three().nodes, { metadata: null } as never],
      instances: [{ metadata: { name: 'i', ownerReferences: [null] } } as never],
    });
    const r = run(s);
    for (const n of ['nospec', 'nosource', 'badmode', 'badsel', 'nullvip']) {
      assert.equal(r.desired.gateways.get(n)?.phase, 'Invalid', n);
      assert.equal(r.desired.gateways.get(n)?.reason, 'InvalidSpec', n);
    }
    assert.equal(r.desired.policyStatuses.get('p')?.conditions?.[0]?.reason, 'InvalidSpec');
    assert.deepEqual(run(applyWrites(s, r.writes)).writes, []);
  });
  it('an IPv6 VIP or CIDR keeps the observed CEGP untouched and reports InvalidSpec with the field', () => {
    const observed: CiliumEgressGatewayPolicy = {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumEgressGatewayPolicy',
      metadata: { name: 'd8.p6', labels: { heritage: 'deckhouse', module: 'cni-cilium' } },
      spec: { selectors: [], destinationCIDRs: ['10.0.0.0/8'], egressGateway: { nodeSelector: { matchLabels: { x: '' } }, egressIP: '192.0.2.1' } },
    };
    const s = three({
      gateways: [vipGateway('v6', '2001:db8::1', SEL), vipGateway('v4', '192.0.2.10', SEL)],
      policies: [policy('p6', 'v6'), policy('c6', 'v4', { cidrs: ['10.0.0.0/8', '2001:db8::/32'] }), policy('bad', 'v4', { cidrs: ['10.0.0.0/33'] })],
      cegps: [observed],
    });
    const r = run(s);
    assert.equal(r.desired.gateways.get('v6')?.reason, 'InvalidSpec');
    assert.match(r.desired.gateways.get('v6')?.message ?? '', /spec\.sourceIP\.virtualIPAddress\.ip: IPv6/);
    assert.equal(r.desired.cegps.get('d8.p6'), observed);
    assert.equal(ofKind(r.writes, 'applyCEGP').length, 0);
    assert.equal(ofKind(r.writes, 'deleteCEGP').length, 0);
    const cond = (p: string) => r.desired.policyStatuses.get(p)?.conditions?.[0];
    assert.equal(cond('p6')?.reason, 'InvalidSpec');
    assert.match(cond('c6')?.message ?? '', /spec\.destinationCIDRs\[1\]: IPv6 CIDR/);
    assert.match(cond('bad')?.message ?? '', /spec\.destinationCIDRs\[0\]: "10\.0\.0\.0\/33" is not a valid IPv4 CIDR/);
    assert.deepEqual(ofKind(r.writes, 'event').filter((e) => e.reason === 'InvalidSpec').map((e) => e.regarding.name).sort(), ['bad', 'c6', 'p6', 'v6']);
  });
  // Found by the chaos suite (bad input): a gateway whose VIP was node4's own address was elected on
  // node3, whose agent then answered ARP for node4's address — the node lost its address on the LAN.
  it('a gateway whose VIP is a node\'s own address is never elected (it would take the address over)', () => {
    const withAddress = (s: Snapshot, name: string, ip: string): Snapshot => ({
      ...s,
      nodes: update(s.nodes, name, (n) => (n.status = { ...n.status, addresses: [{ type: 'Hostname', address: name }, { type: 'InternalIP', address: ip }] })),
    });
    const s = withAddress(three({ gateways: [vipGateway('hijack', '192.0.2.13', SEL), vipGateway('fine', '192.0.2.10', SEL)], policies: [policy('p', 'hijack')] }), 'n3', '192.0.2.13');
    const r = run(s);
    const g = r.desired.gateways.get('hijack');
    assert.equal(g?.phase, 'Invalid');
    assert.equal(g?.reason, 'InvalidSpec');
    assert.match(g?.message ?? '', /spec\.sourceIP\.virtualIPAddress\.ip: 192\.0\.2\.13 is an address of node n3/);
    assert.equal(g?.active, '');
    assert.deepEqual(ofKind(r.writes, 'createInstance').map((w) => w.object.metadata.ownerReferences?.[0]?.name), ['fine']);
    assert.equal(r.desired.policyStatuses.get('p')?.conditions?.[0]?.reason, 'NoActiveNode');
    assert.deepEqual(ofKind(r.writes, 'event').filter((e) => e.regarding.name === 'hijack').map((e) => e.reason), ['InvalidSpec']);
    // The node's address going away (the node renumbered) makes the gateway valid again.
    const back = run({ ...s, nodes: update(s.nodes, 'n3', (n) => (n.status = { conditions: n.status?.conditions })) });
    assert.equal(back.desired.gateways.get('hijack')?.phase, 'HandingOver');
    // Not a duplicate: the rule does not make the gateway that keeps a shared VIP lose it.
    assert.deepEqual(r.desired.metrics.duplicateVIPs, []);
  });
  it('a gateway name too long for the label is invalid', () => {
    const s = three({ gateways: [primaryGateway('x'.repeat(53), 'eth1', SEL)] });
    assert.equal(computeDesired(s).gateways.get('x'.repeat(53))?.phase, 'Invalid');
  });
});

describe('statuses and events', () => {
  it('keeps lastTransitionTime while the status does not change; no write when equal', () => {
    let s = settle(three({ gateways: [primaryGateway('g', 'eth1', SEL)], policies: [policy('p', 'g')] }));
    const t = s.gateways[0]?.status?.conditions?.[0]?.lastTransitionTime;
    assert.equal(t, new Date(NOW).toISOString());
    s = later(s, 1000);
    assert.deepEqual(run(s).writes, []);
    // readyNodes changes: status rewritten, transition time kept.
    s = { ...s, nodes: update(s.nodes, holders(s, 'g')[0] === 'n3' ? 'n1' : 'n3', (n) => (n.spec = { unschedulable: true })) };
    const w = ofKind(run(s).writes, 'gatewayStatus')[0];
    assert.equal(w?.status.readyNodes, 2);
    assert.equal(w?.status.conditions?.[0]?.lastTransitionTime, t);
    assert.equal(w?.status.conditions?.[0]?.lastHeartbeatTime, new Date(NOW + 1000).toISOString());
    assert.deepEqual(ofKind(run(s).writes, 'event'), []);
  });
  it('Elected and VIPAnnounced once; policy Ready with the egress IP', () => {
    let s = three({ gateways: [vipGateway('g', '192.0.2.10', SEL)], policies: [policy('p', 'g')] });
    const events: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = run(s);
      events.push(...ofKind(r.writes, 'event').map((e) => e.reason));
      s = agentsAct(applyWrites(s, r.writes));
    }
    assert.deepEqual(events, ['Elected', 'VIPAnnounced']);
    const ps = s.policies[0]?.status;
    assert.equal(ps?.conditions?.[0]?.reason, 'GatewayActive');
    assert.equal(ps?.egressIP, '192.0.2.10');
    assert.equal(ps?.activeNodeName, holders(s, 'g')[0]);
  });
  it('member label only on Ready, uncordoned matching nodes', () => {
    const s = cluster(
      [
        { name: 'n1', labels: SEL },
        { name: 'n2', labels: SEL, ready: false },
        { name: 'n3', labels: SEL, unschedulable: true },
        { name: 'n4', labels: {} },
      ],
      { gateways: [primaryGateway('g', 'eth1', SEL)] },
    );
    assert.deepEqual([...computeDesired(s).nodeLabels.entries()].map(([n, k]) => [n, [...k].sort()]), [['n1', [activeForLabel('g'), MEMBER_LABEL].sort()]]);
  });
});
