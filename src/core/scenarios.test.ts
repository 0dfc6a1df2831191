// Reference acceptance scenarios R1–R23 and R32 (reference-behaviour §6), with our design's changes:
// VIP eligibility needs a live agent heartbeat, the label moves only after the new instance is
// confirmed, and "no eligible node" fails closed (no active-for label anywhere).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ASSIGNED_AT_ANNOTATION,
  INSTANCE_FINALIZER,
  MEMBER_LABEL,
  NODE_NAME_LABEL,
  activeForLabel,
} from '../api/names.ts';
import type { EgressGatewayInstance } from '../api/types.ts';
import { computeDesired, instanceName, reconcile } from './index.ts';
import type { Snapshot, Write } from './types.ts';
import {
  NOW,
  T0,
  agentsAct,
  applyWrites,
  cluster,
  heartbeat,
  instanceWithStatus,
  labelsOfNode,
  policy,
  pod,
  primaryGateway,
  settleWith,
  update,
  vipGateway,
} from './testing.ts';

const M = MEMBER_LABEL;
const A = activeForLabel('egg-dev');
const EGRESS = { 'node-role': 'egress' };
const eggDev = (o: Parameters<typeof vipGateway>[3] = {}) => vipGateway('egg-dev', '10.2.2.8', EGRESS, o);
const run = (s: Snapshot) => reconcile(s);
const settle = (s: Snapshot) => settleWith(run, s);
const ofKind = <K extends Write['kind']>(ws: Write[], kind: K): Array<Extract<Write, { kind: K }>> =>
  ws.filter((w): w is Extract<Write, { kind: K }> => w.kind === kind);
const gwStatus = (s: Snapshot, name = 'egg-dev') => s.gateways.find((g) => g.metadata.name === name)?.status;
const readyCond = (s: Snapshot, name = 'egg-dev') => gwStatus(s, name)?.conditions?.find((c) => c.type === 'Ready');
const holders = (s: Snapshot, key: string, list: 'nodes' | 'ciliumNodes' = 'nodes') =>
  s[list].filter((n) => n.metadata.labels?.[key] !== undefined).map((n) => n.metadata.name);

/** A confirmed instance of egg-dev on `node` (what a live agent reports). */
function readyInstance(gwName: string, node: string, o: { name?: string; uid?: string; ready?: 'True' | 'False'; assignedAt?: string } = {}): EgressGatewayInstance {
  return instanceWithStatus(
    {
      metadata: {
        name: o.name ?? instanceName(gwName, node),
        generation: 1,
        labels: { heritage: 'deckhouse', module: 'cni-cilium', [NODE_NAME_LABEL]: node },
        annotations: { [ASSIGNED_AT_ANNOTATION]: o.assignedAt ?? T0 },
        finalizers: [INSTANCE_FINALIZER],
        ownerReferences: [{ apiVersion: 'network.deckhouse.io/v1alpha1', kind: 'EgressGateway', name: gwName, uid: o.uid ?? `uid-gw-${gwName}`, controller: true, blockOwnerDeletion: true }],
      },
      spec: { nodeName: node, sourceIP: { mode: 'VirtualIPAddress', virtualIPAddress: { ip: '10.2.2.8', interfaces: [] } } },
    },
    o.ready ?? 'True',
  );
}

describe('R1 fresh cluster', () => {
  it('writes nothing', () => {
    const s = cluster([{ name: 'frontend-1' }, { name: 'frontend-2' }]);
    assert.deepEqual(run(s).writes, []);
  });
});

describe('R2 membership without agents', () => {
  it('labels the matching node member only; no active node, no instance', () => {
    const s = cluster(
      [
        { name: 'frontend-1', labels: EGRESS, healthy: false },
        { name: 'frontend-2', labels: { 'node-role': 'ingress' }, healthy: false },
      ],
      { gateways: [eggDev()] },
    );
    const { writes } = run(s);
    assert.deepEqual(ofKind(writes, 'addLabels'), [
      { kind: 'addLabels', target: 'Node', name: 'frontend-1', keys: [M] },
      { kind: 'addLabels', target: 'CiliumNode', name: 'frontend-1', keys: [M] },
    ]);
    assert.equal(ofKind(writes, 'createInstance').length, 0);
    const st = ofKind(writes, 'gatewayStatus')[0]?.status;
    assert.equal(st?.readyNodes, 0);
    assert.equal(st?.activeNodeName, '');
    assert.equal(st?.conditions?.[0]?.status, 'False');
    // No cilium-agent pod anywhere: the reason says so rather than "not Ready" on every node.
    assert.equal(st?.conditions?.[0]?.reason, 'CiliumAgentNotFound');
    assert.equal(
      st?.conditions?.[0]?.message,
      "no cilium-agent pod found; check the controller's --cilium-namespace and --cilium-selector (the install profile): no eligible node: 1 matches the selector: 1 no cilium-agent pod found",
    );
    const events = ofKind(writes, 'event').map((w) => w.reason);
    assert.ok(events.includes('CiliumAgentNotFound'), `events: ${events.join(', ')}`);
  });

  it('says where the controller looked (namespace, selector) when the shell tells the core', () => {
    const s = cluster([{ name: 'frontend-1', labels: EGRESS, healthy: false }], { gateways: [eggDev()] });
    const st = ofKind(reconcile(s, { ciliumAgentSource: 'namespace kube-system, selector k8s-app=cilium' }).writes, 'gatewayStatus')[0]?.status;
    assert.match(st?.conditions?.[0]?.message ?? '', /^no cilium-agent pod found \(namespace kube-system, selector k8s-app=cilium\); /);
  });

  it('a node without a cilium-agent while other nodes have one is "not Ready", not "not found"', () => {
    const s = cluster(
      [
        { name: 'frontend-1', labels: EGRESS, healthy: false },
        { name: 'frontend-2', labels: { 'node-role': 'ingress' } },
      ],
      { gateways: [eggDev()] },
    );
    const st = ofKind(run(s).writes, 'gatewayStatus')[0]?.status;
    assert.equal(st?.conditions?.[0]?.reason, 'NoEligibleNode');
    assert.equal(st?.conditions?.[0]?.message, 'no eligible node: 1 matches the selector: 1 cilium-agent not Ready');
  });
});

describe('R3 election with a single eligible node (VIP)', () => {
  const s0 = (): Snapshot => {
    const s = cluster(
      [
        { name: 'frontend-1', labels: { ...EGRESS, [M]: '' } },
        { name: 'frontend-2', labels: { 'node-role': 'ingress' }, healthy: false },
        { name: 'frontend-3', labels: EGRESS, healthy: false },
      ],
      { gateways: [eggDev()] },
    );
    return s;
  };
  it('creates the instance first and labels f1 only once the agent confirms it', () => {
    const s = s0();
    const { writes } = run(s);
    const creates = ofKind(writes, 'createInstance');
    assert.equal(creates.length, 1);
    const inst = creates[0]!.object;
    assert.equal(inst.metadata.name, 'egg-dev-cd98b75eb2');
    assert.equal(inst.spec?.nodeName, 'frontend-1');
    assert.equal(inst.metadata.labels?.[NODE_NAME_LABEL], 'frontend-1');
    assert.deepEqual(inst.metadata.finalizers, [INSTANCE_FINALIZER]);
    assert.deepEqual(inst.metadata.ownerReferences, [
      { apiVersion: 'network.deckhouse.io/v1alpha1', kind: 'EgressGateway', name: 'egg-dev', uid: 'uid-gw-egg-dev', controller: true, blockOwnerDeletion: true },
    ]);
    assert.deepEqual(inst.spec?.sourceIP, s.gateways[0]!.spec!.sourceIP);
    assert.equal(inst.metadata.annotations?.[ASSIGNED_AT_ANNOTATION], new Date(NOW).toISOString());
    // Not before the instance is Ready.
    assert.ok(!ofKind(writes, 'addLabels').some((w) => w.keys.includes(A)));
    assert.deepEqual(ofKind(writes, 'addLabels').map((w) => `${w.target}/${w.name}`), ['Node/frontend-3', 'CiliumNode/frontend-3']);

    const end = settle(s);
    assert.deepEqual(labelsOfNode(end.nodes, 'frontend-1'), { ...EGRESS, [M]: '', [A]: '' });
    assert.deepEqual(labelsOfNode(end.nodes, 'frontend-3'), { ...EGRESS, [M]: '' });
    assert.deepEqual(labelsOfNode(end.nodes, 'frontend-2'), { 'node-role': 'ingress' });
    assert.deepEqual(labelsOfNode(end.ciliumNodes, 'frontend-1'), { ...EGRESS, [M]: '', [A]: '' });
    assert.equal(gwStatus(end)?.readyNodes, 1);
    assert.equal(gwStatus(end)?.activeNodeName, 'frontend-1');
    assert.equal(end.instances.length, 1);
    assert.equal(readyCond(end)?.reason, 'ElectionSucceedAndVirtualIPAnnounced');
  });
});

describe('R4 PrimaryIP mode needs no egress agent', () => {
  it('labels f1 at once and creates no instance', () => {
    const s = cluster([{ name: 'frontend-1', labels: EGRESS, healthy: false }], {
      gateways: [primaryGateway('egg-dev', 'eth1', EGRESS)],
      ciliumAgentPods: [pod('cilium-1', 'frontend-1')],
    });
    const { writes } = run(s);
    assert.equal(ofKind(writes, 'createInstance').length, 0);
    const end = settle(s);
    assert.deepEqual(holders(end, A), ['frontend-1']);
    assert.deepEqual(holders(end, A, 'ciliumNodes'), ['frontend-1']);
    const c = readyCond(end);
    assert.equal(c?.status, 'True');
    assert.equal(c?.reason, 'ElectionSucceed');
    assert.equal(c?.message, 'Node frontend-1 was elected as active node');
    assert.equal(end.instances.length, 0);
  });
});

describe('R5 cordoning the active node', () => {
  it('strips f1 on Node and CiliumNode; exactly one of f2/f3 becomes active', () => {
    const withLabels = { ...EGRESS, [M]: '', [A]: '' };
    let s = cluster(
      [
        { name: 'frontend-1', labels: withLabels, unschedulable: true },
        { name: 'frontend-2', labels: { ...EGRESS, [M]: '' } },
        { name: 'frontend-3', labels: { ...EGRESS, [M]: '' } },
      ],
      { gateways: [eggDev()] },
    );
    s = { ...s, instances: [readyInstance('egg-dev', 'frontend-1')] };
    const first = run(s).writes;
    assert.deepEqual(
      ofKind(first, 'removeLabels').map((w) => [w.target, w.name, w.keys]),
      [
        ['Node', 'frontend-1', [A, M]],
        ['CiliumNode', 'frontend-1', [A, M]],
      ],
    );
    // Make before break: f1's instance stays until the new one is confirmed.
    assert.equal(ofKind(first, 'deleteInstance').length, 0);
    const end = settle(s);
    assert.deepEqual(labelsOfNode(end.nodes, 'frontend-1'), EGRESS);
    assert.deepEqual(labelsOfNode(end.ciliumNodes, 'frontend-1'), EGRESS);
    const h = holders(end, A);
    assert.equal(h.length, 1);
    assert.ok(h[0] === 'frontend-2' || h[0] === 'frontend-3');
    assert.deepEqual(holders(end, M).sort(), ['frontend-2', 'frontend-3']);
    assert.equal(gwStatus(end)?.activeNodeName, h[0]);
    assert.deepEqual(end.instances.map((i) => i.spec?.nodeName), [h[0]]);
  });
});

describe('R6 active node NotReady while the alternatives are unusable', () => {
  it('leaves no active node and fails closed', () => {
    let s = cluster(
      [
        { name: 'frontend-1', labels: { ...EGRESS, [M]: '', [A]: '' }, ready: false, healthy: false },
        { name: 'frontend-2', labels: { ...EGRESS, [M]: '' }, healthy: false },
        { name: 'frontend-3', labels: { ...EGRESS, [M]: '' }, unschedulable: true, healthy: false },
      ],
      { gateways: [eggDev()] },
    );
    s = { ...s, ciliumAgentPods: [pod('cilium-2', 'frontend-2', { ready: false })] };
    const end = settle(s);
    for (const n of ['frontend-1', 'frontend-3']) {
      assert.deepEqual(labelsOfNode(end.nodes, n), EGRESS);
      assert.deepEqual(labelsOfNode(end.ciliumNodes, n), EGRESS);
    }
    assert.deepEqual(labelsOfNode(end.nodes, 'frontend-2'), { ...EGRESS, [M]: '' });
    const st = gwStatus(end);
    assert.equal(st?.readyNodes, 0);
    assert.equal(st?.activeNodeName, '');
    assert.equal(readyCond(end)?.status, 'False');
    assert.equal(readyCond(end)?.message, 'no eligible node: 3 match the selector: 1 NotReady, 1 cordoned, 1 cilium-agent not Ready');
  });
});

describe('R7 cilium agent of the active node goes NotReady', () => {
  it('f1 keeps M, loses A on both objects; one of f2/f3 takes over', () => {
    let s = cluster(
      [
        { name: 'frontend-1', labels: { ...EGRESS, [M]: '', [A]: '' } },
        { name: 'frontend-2', labels: { ...EGRESS, [M]: '' } },
        { name: 'frontend-3', labels: { ...EGRESS, [M]: '' } },
      ],
      { gateways: [eggDev()] },
    );
    s = settle({ ...s, instances: [readyInstance('egg-dev', 'frontend-1')] });
    assert.equal(gwStatus(s)?.activeNodeName, 'frontend-1');
    s = {
      ...s,
      ciliumAgentPods: update(s.ciliumAgentPods, 'cilium-frontend-1', (p) => {
        p.status = { conditions: [{ type: 'Ready', status: 'False' }] };
      }),
    };
    const end = settle(s);
    assert.deepEqual(labelsOfNode(end.nodes, 'frontend-1'), { ...EGRESS, [M]: '' });
    assert.deepEqual(labelsOfNode(end.ciliumNodes, 'frontend-1'), { ...EGRESS, [M]: '' });
    const h = holders(end, A);
    assert.equal(h.length, 1);
    assert.ok(['frontend-2', 'frontend-3'].includes(h[0]!));
    assert.equal(gwStatus(end)?.readyNodes, 2);
    assert.equal(gwStatus(end)?.lastFailoverReason, 'CiliumAgentNotReady');
  });
});

describe('R8 counting eligible nodes', () => {
  it('counts 2 and keeps f1 (sticky)', () => {
    let s = cluster(
      [
        { name: 'frontend-1', labels: { ...EGRESS, [M]: '', [A]: '' } },
        { name: 'frontend-2', labels: { ...EGRESS, [M]: '' } },
        { name: 'frontend-3', labels: { ...EGRESS, [M]: '' } },
      ],
      { gateways: [eggDev()], instances: [readyInstance('egg-dev', 'frontend-1')] },
    );
    const notReady = (p: { status?: unknown }) => {
      p.status = { conditions: [{ type: 'Ready', status: 'False' }] };
    };
    s = { ...s, ciliumAgentPods: update(s.ciliumAgentPods, 'cilium-frontend-2', notReady), agentPods: update(s.agentPods, 'agent-frontend-2', notReady) };
    const end = settle(s);
    assert.equal(gwStatus(end)?.readyNodes, 2);
    assert.equal(gwStatus(end)?.activeNodeName, 'frontend-1');
    assert.deepEqual(holders(end, A), ['frontend-1']);
  });
});

describe('R9 VIP mode requires the egress agent', () => {
  it('no eligible node when every egress agent is NotReady', () => {
    let s = cluster(
      [
        { name: 'frontend-1', labels: { ...EGRESS, [M]: '', [A]: '' } },
        { name: 'frontend-2', labels: { ...EGRESS, [M]: '' } },
        { name: 'frontend-3', labels: { ...EGRESS, [M]: '' } },
      ],
      { gateways: [eggDev()] },
    );
    const notReady = (p: { status?: unknown }) => {
      p.status = { conditions: [{ type: 'Ready', status: 'False' }] };
    };
    s = {
      ...s,
      ciliumAgentPods: update(s.ciliumAgentPods, 'cilium-frontend-2', notReady),
      agentPods: s.agentPods.map((p) => ({ ...p, status: { conditions: [{ type: 'Ready', status: 'False' }] } })),
    };
    const { writes } = run(s);
    assert.equal(ofKind(writes, 'createInstance').length, 0);
    const end = settle(s);
    assert.equal(gwStatus(end)?.readyNodes, 0);
    assert.equal(gwStatus(end)?.activeNodeName, '');
    assert.equal(readyCond(end)?.status, 'False');
    assert.deepEqual(holders(end, A), []);
    assert.equal(end.instances.length, 0);
  });
});

describe('R10 no eligible node: nothing half-rendered', () => {
  it('no instance, Ready=False, and the active-for label is removed (fixes D13)', () => {
    // frontend-2 (not a gateway node) runs a cilium-agent, so frontend-1's is missing, not all of them.
    const s = cluster([{ name: 'frontend-1', labels: { ...EGRESS, [M]: '', [A]: '' }, healthy: false }, { name: 'frontend-2', labels: { 'node-role': 'ingress' } }], { gateways: [eggDev()] });
    const { writes } = run(s);
    assert.equal(ofKind(writes, 'createInstance').length, 0);
    const end = settle(s);
    assert.equal(end.instances.length, 0);
    assert.equal(readyCond(end)?.status, 'False');
    assert.equal(readyCond(end)?.reason, 'NoEligibleNode');
    assert.equal(gwStatus(end)?.readyNodes, 0);
    assert.equal(gwStatus(end)?.activeNodeName, '');
    // Fail closed: nobody announces the VIP, so no node may carry the label Cilium selects on.
    assert.deepEqual(labelsOfNode(end.nodes, 'frontend-1'), { ...EGRESS, [M]: '' });
    assert.deepEqual(labelsOfNode(end.ciliumNodes, 'frontend-1'), { ...EGRESS, [M]: '' });
  });
});

describe('R11 gateway status follows the instance', () => {
  it('Ready=True once the active node’s own instance (whatever its name) is Ready', () => {
    const s = cluster([{ name: 'frontend-1', labels: { ...EGRESS, [M]: '', [A]: '' } }], {
      gateways: [eggDev()],
      instances: [readyInstance('egg-dev', 'frontend-1', { name: 'some-other-name' })],
    });
    const { writes, desired } = run(s);
    assert.equal(ofKind(writes, 'createInstance').length, 0);
    assert.equal(ofKind(writes, 'deleteInstance').length, 0);
    const c = desired.gatewayStatuses.get('egg-dev')?.conditions?.[0];
    assert.equal(c?.status, 'True');
    assert.equal(c?.reason, 'ElectionSucceedAndVirtualIPAnnounced');
    assert.equal(c?.message, 'Node frontend-1 was elected as active node and VirtualIP is announced');
  });
});

describe('R12 gateway status when the announcement is not confirmed', () => {
  it('without an agent: Ready=False, no eligible node', () => {
    const s = cluster([{ name: 'frontend-1', labels: { ...EGRESS, [M]: '', [A]: '' }, healthy: false }], {
      gateways: [eggDev()],
      ciliumAgentPods: [pod('cilium-1', 'frontend-1')],
      instances: [readyInstance('egg-dev', 'frontend-1', { ready: 'False' })],
    });
    const c = computeDesired(s).gatewayStatuses.get('egg-dev')?.conditions?.[0];
    assert.equal(c?.status, 'False');
    assert.equal(c?.reason, 'NoEligibleNode');
  });
  it('with a live agent that has not confirmed yet: Ready=False / VirtualIPAnnouncing', () => {
    const s = cluster([{ name: 'frontend-1', labels: { ...EGRESS, [M]: '', [A]: '' } }], {
      gateways: [eggDev()],
      instances: [readyInstance('egg-dev', 'frontend-1', { ready: 'False', assignedAt: new Date(NOW - 1000).toISOString() })],
    });
    const { desired, writes } = run(s);
    const c = desired.gatewayStatuses.get('egg-dev')?.conditions?.[0];
    assert.equal(c?.status, 'False');
    assert.equal(c?.reason, 'VirtualIPAnnouncing');
    assert.equal(c?.message, 'waiting for node frontend-1 to announce VirtualIP 10.2.2.8');
    // The current holder keeps its label meanwhile.
    assert.equal(ofKind(writes, 'removeLabels').length, 0);
  });
});

describe('R13 label hygiene', () => {
  it('removes stale member and active-for labels everywhere (fixes D2, D12)', () => {
    const s = cluster(
      [
        { name: 'frontend-1', labels: { [M]: '', [A]: '', ...EGRESS }, healthy: false },
        { name: 'frontend-2', labels: { [M]: '', [A]: '' }, healthy: false },
        { name: 'frontend-3', labels: {}, healthy: false },
        { name: 'frontend-4', labels: { [M]: '', [A]: '', [activeForLabel('egg-prod')]: '' }, healthy: false },
      ],
      { gateways: [eggDev()] },
    );
    const rm = ofKind(run(s).writes, 'removeLabels');
    const get = (t: string, n: string) => rm.find((w) => w.target === t && w.name === n)?.keys;
    for (const t of ['Node', 'CiliumNode']) {
      assert.deepEqual(get(t, 'frontend-2'), [A, M]);
      assert.deepEqual(get(t, 'frontend-4'), [A, activeForLabel('egg-prod'), M]);
      assert.equal(get(t, 'frontend-3'), undefined);
    }
    const end = settle(s);
    assert.deepEqual(labelsOfNode(end.nodes, 'frontend-3'), {});
    assert.equal(labelsOfNode(end.nodes, 'frontend-1')['node-role'], 'egress');
  });
});

describe('R14 releasing the finalizer of an orphaned instance', () => {
  const deleting = (node: string): EgressGatewayInstance => {
    const i = readyInstance('egg-dev', node);
    i.metadata.deletionTimestamp = T0;
    return i;
  };
  const base = () =>
    cluster(
      [
        { name: 'frontend-1', labels: { ...EGRESS, [M]: '' } },
        { name: 'frontend-2', labels: { ...EGRESS, [M]: '' }, ready: false },
        { name: 'frontend-3', labels: { ...EGRESS, [M]: '' }, unschedulable: true },
        { name: 'frontend-4', labels: { [M]: '' } },
      ],
      { gateways: [eggDev()] },
    );
  for (const [what, nodeName] of [
    ['node gone', 'frontend-9'],
    ['node NotReady', 'frontend-2'],
    ['node cordoned', 'frontend-3'],
    ['node no longer matching', 'frontend-4'],
  ] as const) {
    it(`releases it when the ${what}`, () => {
      const s = { ...base(), instances: [deleting(nodeName)] };
      const rel = ofKind(run(s).writes, 'releaseFinalizer');
      assert.deepEqual(rel, [{ kind: 'releaseFinalizer', name: instanceName('egg-dev', nodeName) }]);
      assert.equal(ofKind(run(s).writes, 'deleteInstance').length, 0);
    });
  }
  it('leaves it to a live member node’s agent', () => {
    const s = { ...base(), instances: [deleting('frontend-1')] };
    assert.equal(ofKind(run(s).writes, 'releaseFinalizer').length, 0);
  });
  it('releases it when the member node’s agent heartbeat expired', () => {
    const s0 = base();
    const s = { ...s0, heartbeats: s0.heartbeats.map((h) => (h.node === 'frontend-1' ? heartbeat('frontend-1', { live: false }) : h)), instances: [deleting('frontend-1')] };
    assert.equal(ofKind(run(s).writes, 'releaseFinalizer').length, 1);
  });
  it('a missing instance is not an error (nothing to do)', () => {
    assert.equal(ofKind(run(base()).writes, 'releaseFinalizer').length, 0);
  });
});

describe('R15 two policies on one gateway', () => {
  it('renders one CEGP per policy', () => {
    const p1 = policy('egp-dev', 'myeg', { podLabels: { app: 'nginx' }, cidrs: ['192.168.0.0/16'], excluded: ['192.168.3.0/24'] });
    const p2 = policy('egp-dev-2', 'myeg', { podLabels: { app: 'nginx-2' }, cidrs: ['192.168.100.0/16'], excluded: ['192.168.103.0/24'] });
    const s = cluster([{ name: 'w1', labels: { role: 'worker' } }], { gateways: [vipGateway('myeg', '10.2.2.8', { role: 'worker' })], policies: [p1, p2] });
    const applies = ofKind(run(s).writes, 'applyCEGP').map((w) => w.object);
    const sel = { matchLabels: { [activeForLabel('myeg')]: '' } };
    assert.deepEqual(applies, [
      {
        apiVersion: 'cilium.io/v2',
        kind: 'CiliumEgressGatewayPolicy',
        metadata: { name: 'd8.egp-dev', labels: { heritage: 'deckhouse', module: 'cni-cilium' } },
        spec: {
          selectors: [{ podSelector: { matchLabels: { app: 'nginx' } } }],
          destinationCIDRs: ['192.168.0.0/16'],
          excludedCIDRs: ['192.168.3.0/24'],
          egressGateway: { nodeSelector: sel, egressIP: '10.2.2.8' },
        },
      },
      {
        apiVersion: 'cilium.io/v2',
        kind: 'CiliumEgressGatewayPolicy',
        metadata: { name: 'd8.egp-dev-2', labels: { heritage: 'deckhouse', module: 'cni-cilium' } },
        spec: {
          selectors: [{ podSelector: { matchLabels: { app: 'nginx-2' } } }],
          destinationCIDRs: ['192.168.100.0/16'],
          excludedCIDRs: ['192.168.103.0/24'],
          egressGateway: { nodeSelector: sel, egressIP: '10.2.2.8' },
        },
      },
    ]);
  });
});

describe('R16 PrimaryIP rendering', () => {
  it('sets interface, not egressIP', () => {
    const s = cluster([{ name: 'w1', labels: EGRESS }], { gateways: [primaryGateway('egg-dev', 'eth1', EGRESS)], policies: [policy('p', 'egg-dev')] });
    const c = ofKind(run(s).writes, 'applyCEGP')[0]?.object;
    assert.equal(c?.spec?.egressGateway.interface, 'eth1');
    assert.equal('egressIP' in (c?.spec?.egressGateway ?? {}), false);
  });
});

describe('R17 empty excludedCIDRs', () => {
  it('omits the field when missing or empty; copies it otherwise', () => {
    const a = policy('egp-dev', 'egg-dev', { podLabels: { role: 'worker' }, cidrs: ['192.168.0.0/16'] });
    const b = policy('egp-prod', 'egg-dev', { podLabels: { role: 'master' }, cidrs: ['172.16.0.0/16'], excluded: [] });
    const c = policy('egp-x', 'egg-dev', { cidrs: ['10.0.0.0/8'], excluded: ['10.1.0.0/16'] });
    const s = cluster([{ name: 'frontend-1', labels: EGRESS }], { gateways: [eggDev()], policies: [a, b, c] });
    const m = computeDesired(s).cegps;
    assert.equal('excludedCIDRs' in (m.get('d8.egp-dev')?.spec ?? {}), false);
    assert.equal('excludedCIDRs' in (m.get('d8.egp-prod')?.spec ?? {}), false);
    assert.deepEqual(m.get('d8.egp-x')?.spec?.excludedCIDRs, ['10.1.0.0/16']);
  });
});

describe('R18 orphan policy', () => {
  it('no CEGP (an old one is deleted), metric, condition and event; fixed when the gateway appears', () => {
    const old = { apiVersion: 'cilium.io/v2', kind: 'CiliumEgressGatewayPolicy', metadata: { name: 'd8.p', labels: { heritage: 'deckhouse', module: 'cni-cilium' } } };
    const s = cluster([{ name: 'frontend-1', labels: EGRESS }], { policies: [policy('p', 'my-egressgw')], cegps: [old] });
    const { desired, writes } = run(s);
    assert.deepEqual(ofKind(writes, 'deleteCEGP'), [{ kind: 'deleteCEGP', name: 'd8.p' }]);
    assert.deepEqual(desired.metrics.orphanPolicies, [{ policy: 'p', gateway: 'my-egressgw' }]);
    const c = desired.policyStatuses.get('p')?.conditions?.[0];
    assert.equal(c?.reason, 'GatewayNotFound');
    assert.match(c?.message ?? '', /my-egressgw/);
    assert.deepEqual(ofKind(writes, 'event').map((e) => e.reason), ['GatewayNotFound']);
    // Once the status is written the event is not repeated.
    const after = applyWrites(s, writes);
    assert.deepEqual(run(after).writes, []);
    // The gateway appears.
    const fixed = { ...after, gateways: [vipGateway('my-egressgw', '10.2.2.9', EGRESS)] };
    const r = run(fixed);
    assert.deepEqual(r.desired.metrics.orphanPolicies, []);
    assert.deepEqual(ofKind(r.writes, 'applyCEGP').map((w) => w.object.metadata.name), ['d8.p']);
  });
});

describe('R19 gateway without an active node still gets its CEGP', () => {
  it('renders the active-for selector; no node carries it (fail closed)', () => {
    const s = cluster([{ name: 'frontend-1', labels: EGRESS, healthy: false }], { gateways: [eggDev()], policies: [policy('p', 'egg-dev')] });
    const end = settle(s);
    const c = end.cegps.find((x) => x.metadata.name === 'd8.p');
    assert.deepEqual(c?.spec?.egressGateway.nodeSelector.matchLabels, { [A]: '' });
    assert.deepEqual(holders(end, A), []);
    assert.equal(end.policies[0]?.status?.conditions?.[0]?.reason, 'NoActiveNode');
  });
});

describe('R20 deleting a gateway', () => {
  it('withdraws its instance, its CEGPs and every label of ours', () => {
    let s = cluster(
      [
        { name: 'frontend-1', labels: EGRESS },
        { name: 'frontend-2', labels: EGRESS },
      ],
      { gateways: [eggDev()], policies: [policy('p', 'egg-dev')] },
    );
    s = settle(s);
    assert.equal(holders(s, A).length, 1);
    assert.equal(s.instances.length, 1);
    assert.equal(s.cegps.length, 1);
    const gone = { ...s, gateways: [] };
    const { writes, desired } = run(gone);
    assert.equal(ofKind(writes, 'deleteInstance').length, 1);
    // The nodes are no longer members, so no agent will remove the finalizer: the controller does.
    assert.equal(ofKind(writes, 'releaseFinalizer').length, 1);
    assert.deepEqual(ofKind(writes, 'deleteCEGP'), [{ kind: 'deleteCEGP', name: 'd8.p' }]);
    assert.deepEqual(desired.metrics.orphanPolicies, [{ policy: 'p', gateway: 'egg-dev' }]);
    const end = applyWrites(gone, writes);
    for (const n of ['frontend-1', 'frontend-2']) {
      assert.deepEqual(labelsOfNode(end.nodes, n), EGRESS);
      assert.deepEqual(labelsOfNode(end.ciliumNodes, n), EGRESS);
    }
    assert.equal(end.instances.length, 0);
  });
});

describe('R21 hard power-off of the active node', () => {
  it('strips the dead node’s Node and CiliumNode, releases its instance, hands over to f2', () => {
    let s = cluster(
      [
        { name: 'frontend-1', labels: EGRESS },
        { name: 'frontend-2', labels: EGRESS },
      ],
      { gateways: [eggDev()], policies: [policy('p', 'egg-dev')] },
    );
    // Start with f1 active.
    s = settle({ ...s, instances: [readyInstance('egg-dev', 'frontend-1')], nodes: update(s.nodes, 'frontend-1', (n) => (n.metadata.labels = { ...EGRESS, [A]: '' })) });
    assert.deepEqual(holders(s, A), ['frontend-1']);
    // Power off: NotReady, heartbeat expired; its CiliumNode is nobody's to sync any more.
    s = {
      ...s,
      nodes: update(s.nodes, 'frontend-1', (n) => (n.status = { conditions: [{ type: 'Ready', status: 'False' }] })),
      heartbeats: s.heartbeats.map((h) => (h.node === 'frontend-1' ? heartbeat('frontend-1', { live: false }) : h)),
    };
    const { writes } = run(s);
    const rm = ofKind(writes, 'removeLabels');
    assert.deepEqual(rm.map((w) => [w.target, w.name, w.keys]), [
      ['Node', 'frontend-1', [A, M]],
      ['CiliumNode', 'frontend-1', [A, M]],
    ]);
    assert.deepEqual(ofKind(writes, 'createInstance').map((w) => w.object.spec?.nodeName), ['frontend-2']);
    const old = instanceName('egg-dev', 'frontend-1');
    assert.deepEqual(ofKind(writes, 'deleteInstance').map((w) => w.name), [old]);
    assert.deepEqual(ofKind(writes, 'releaseFinalizer').map((w) => w.name), [old]);
    assert.deepEqual(ofKind(writes, 'event').map((e) => e.reason), ['FailedOver']);
    const end = settle(s);
    assert.deepEqual(holders(end, A), ['frontend-2']);
    assert.deepEqual(holders(end, A, 'ciliumNodes'), ['frontend-2']);
    assert.equal(gwStatus(end)?.activeNodeName, 'frontend-2');
    assert.equal(readyCond(end)?.status, 'True');
    assert.equal(gwStatus(end)?.lastFailoverReason, 'NodeNotReady,HeartbeatExpired');
    assert.equal(end.cegps[0]?.spec?.egressGateway.egressIP, '10.2.2.8');
  });
});

describe('R22 shared nodes, independent election', () => {
  it('one active node per gateway, each label on one node; spread over different nodes', () => {
    const s = cluster(
      ['frontend-1', 'frontend-2', 'frontend-3'].map((name) => ({ name, labels: EGRESS })),
      { gateways: [vipGateway('a', '10.2.2.8', EGRESS), vipGateway('b', '10.2.2.9', EGRESS)] },
    );
    const end = settle(s);
    const ha = holders(end, activeForLabel('a'));
    const hb = holders(end, activeForLabel('b'));
    assert.equal(ha.length, 1);
    assert.equal(hb.length, 1);
    assert.notEqual(ha[0], hb[0]);
    assert.equal(gwStatus(end, 'a')?.activeNodeName, ha[0]);
    assert.equal(gwStatus(end, 'b')?.activeNodeName, hb[0]);
  });
});

describe('R23 documented maintenance procedure', () => {
  it('unlabel → f2 takes over; cordon → nothing; uncordon + relabel → member again, f2 stays', () => {
    let s = cluster(
      [
        { name: 'frontend-1', labels: { ...EGRESS, [A]: '' } },
        { name: 'frontend-2', labels: EGRESS },
      ],
      { gateways: [eggDev()], instances: [readyInstance('egg-dev', 'frontend-1')] },
    );
    s = settle(s);
    assert.deepEqual(holders(s, A), ['frontend-1']);
    const setNode = (f: (n: (typeof s.nodes)[number]) => void) => (s = { ...s, nodes: update(s.nodes, 'frontend-1', f) });
    setNode((n) => delete n.metadata.labels!['node-role']);
    s = settle(s);
    assert.deepEqual(labelsOfNode(s.nodes, 'frontend-1'), {});
    assert.deepEqual(labelsOfNode(s.ciliumNodes, 'frontend-1'), EGRESS);
    assert.deepEqual(holders(s, A), ['frontend-2']);
    setNode((n) => (n.spec = { unschedulable: true }));
    assert.deepEqual(run(s).writes, []);
    setNode((n) => {
      n.spec = {};
      n.metadata.labels = { ...EGRESS };
    });
    s = settle(s);
    assert.deepEqual(labelsOfNode(s.nodes, 'frontend-1'), { ...EGRESS, [M]: '' });
    assert.deepEqual(holders(s, A), ['frontend-2']);
  });
});

describe('R32 node without a Ready condition', () => {
  it('counts as eligible', () => {
    const s = cluster([{ name: 'frontend-1', labels: EGRESS, ready: 'none' }], { gateways: [eggDev()] });
    const d = computeDesired(s).gateways.get('egg-dev');
    assert.equal(d?.readyNodes, 1);
    assert.equal(d?.target, 'frontend-1');
    assert.deepEqual(d?.candidates, [{ node: 'frontend-1', eligible: true, reasons: [] }]);
  });
});

// Keep the helpers honest: a settled cluster plans nothing.
describe('settled state', () => {
  it('plans no writes once settled', () => {
    const s = settle(cluster([{ name: 'frontend-1', labels: EGRESS }], { gateways: [eggDev()], policies: [policy('p', 'egg-dev')] }));
    assert.deepEqual(reconcile(s).writes, []);
    assert.deepEqual(run(agentsAct(s)).writes, []);
  });
});
