// The status view as a pure function: objects in, rows and text out.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stripVTControlCharacters } from 'node:util';
import type { EgressGateway, EgressGatewayPolicy, PodLike } from '../../src/api/types.ts';
import { buildStatusModel, countSelectedPods, gatewayRow, renderStatus } from '../../src/status/model.ts';

const NOW = Date.parse('2026-01-01T12:00:00Z');
const cond = (status: 'True' | 'False', reason: string, message = '') => [{ type: 'Ready', status, reason, message, lastTransitionTime: '2026-01-01T11:00:00Z' }];

const vipGateway: EgressGateway = {
  metadata: { name: 'gw-vip', generation: 2 },
  spec: { sourceIP: { mode: 'VirtualIPAddress', virtualIPAddress: { ip: '192.0.2.10' } } },
  status: {
    observedGeneration: 2, activeNodeName: 'node-b', readyNodes: 2, totalNodes: 3,
    lastFailoverTime: '2026-01-01T11:57:00Z', lastFailoverReason: 'HeartbeatExpired',
    conditions: cond('True', 'ElectionSucceedAndVirtualIPAnnounced'),
  },
};
const primaryGateway: EgressGateway = {
  metadata: { name: 'gw-primary', generation: 3 },
  spec: { sourceIP: { mode: 'PrimaryIPFromEgressGatewayNodeInterface', primaryIPFromEgressGatewayNodeInterface: { interfaceName: 'eth1' } } },
  status: { observedGeneration: 2, activeNodeName: '', readyNodes: 0, totalNodes: 2, conditions: cond('False', 'NoEligibleNode', '2 nodes match: 2 cordoned') },
};
const pod = (ns: string, name: string, labels: Record<string, string>, extra: Partial<PodLike> = {}): PodLike => ({
  metadata: { name, namespace: ns, labels }, spec: { nodeName: 'n1' }, status: { phase: 'Running' }, ...extra,
});
const pods: PodLike[] = [
  pod('shop', 'a', { app: 'backend' }),
  pod('shop', 'b', { app: 'backend' }),
  pod('shop', 'done', { app: 'backend' }, { status: { phase: 'Succeeded' } }),
  pod('shop', 'hostnet', { app: 'backend' }, { spec: { nodeName: 'n1', hostNetwork: true } as PodLike['spec'] }),
  pod('billing', 'c', { app: 'backend' }),
  pod('billing', 'd', { app: 'frontend' }),
];
const namespaces = new Map([['shop', { team: 'retail' }], ['billing', { team: 'finance' }]]);

describe('countSelectedPods', () => {
  const cases: Array<[string, Parameters<typeof countSelectedPods>[0], number]> = [
    ['matchLabels across namespaces (running, not host-network)', [{ podSelector: { matchLabels: { app: 'backend' } } }], 3],
    ['namespace pseudo-label', [{ podSelector: { matchLabels: { app: 'backend', 'io.kubernetes.pod.namespace': 'billing' } } }], 1],
    ['namespaceSelector on namespace labels', [{ podSelector: { matchLabels: { app: 'backend' } }, namespaceSelector: { matchLabels: { team: 'retail' } } }], 2],
    ['namespaceSelector on kubernetes.io/metadata.name', [{ podSelector: {}, namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'billing' } } }], 2],
    ['matchExpressions', [{ podSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['frontend', 'backend'] }] } }], 4],
    ['selectors are OR-ed, a pod counts once', [{ podSelector: { matchLabels: { app: 'backend' } } }, { podSelector: { matchLabels: { 'io.kubernetes.pod.namespace': 'billing' } } }], 4],
    ['no selectors select nothing', [], 0],
    ['unknown operator selects nothing', [{ podSelector: { matchExpressions: [{ key: 'app', operator: 'Near' }] } }], 0],
  ];
  for (const [name, selectors, want] of cases) {
    test(name, () => assert.equal(countSelectedPods(selectors, pods, namespaces), want));
  }
});

describe('gatewayRow', () => {
  test('VIP mode shows the VIP, ready x/y and the failover', () => {
    const r = gatewayRow(vipGateway);
    assert.deepEqual(
      [r.mode, r.source, r.activeNode, r.readyNodes, r.totalNodes, r.ready, r.reason, r.stale],
      ['VirtualIPAddress', '192.0.2.10', 'node-b', 2, 3, 'True', 'ElectionSucceedAndVirtualIPAnnounced', false],
    );
  });
  test('PrimaryIP mode shows the interface; an old observedGeneration is stale', () => {
    const r = gatewayRow(primaryGateway);
    assert.deepEqual([r.source, r.ready, r.reason, r.stale], ['eth1', 'False', 'NoEligibleNode', true]);
  });
  test('a gateway the controller never saw says so', () => {
    const r = gatewayRow({ metadata: { name: 'new' }, spec: {} });
    assert.deepEqual([r.mode, r.ready, r.reason, r.readyNodes], ['', 'Unknown', 'NoStatus', null]);
  });
});

describe('renderStatus', () => {
  const policies: EgressGatewayPolicy[] = [
    { metadata: { name: 'shop-out' }, spec: { egressGatewayName: 'gw-vip', destinationCIDRs: ['198.18.0.0/15'], excludedCIDRs: ['198.18.1.0/24'], selectors: [{ podSelector: { matchLabels: { app: 'backend' } } }] }, status: { conditions: cond('True', 'Rendered') } },
    { metadata: { name: 'orphan' }, spec: { egressGatewayName: 'missing', destinationCIDRs: ['192.0.2.0/24'], selectors: [] }, status: { conditions: cond('False', 'GatewayNotFound', 'EgressGateway missing does not exist') } },
  ];
  const model = buildStatusModel({ gateways: [vipGateway, primaryGateway], policies, pods, namespaces: [] });

  test('sorted by name, one table each, reasons and messages', () => {
    const text = renderStatus(model, { color: false, now: NOW });
    assert.equal(
      text,
      [
        'EGRESS GATEWAYS',
        'NAME        MODE       VIP/INTERFACE  ACTIVE NODE  READY NODES  LAST FAILOVER              READY',
        'gw-primary  PrimaryIP  eth1           <none>       0/2          -                          False NoEligibleNode (stale)',
        'gw-vip      VIP        192.0.2.10     node-b       2/3          3m ago (HeartbeatExpired)  True ElectionSucceedAndVirtualIPAnnounced',
        '  gw-primary: 2 nodes match: 2 cordoned',
        '',
        'EGRESS GATEWAY POLICIES',
        'NAME      GATEWAY  DESTINATIONS                        PODS  READY',
        'orphan    missing  192.0.2.0/24                        0     False GatewayNotFound',
        'shop-out  gw-vip   198.18.0.0/15 except 198.18.1.0/24  3     True Rendered',
        '  orphan: EgressGateway missing does not exist',
        '',
      ].join('\n'),
    );
  });

  test('colour only when asked, and it does not shift the columns', () => {
    const plain = renderStatus(model, { color: false, now: NOW });
    const coloured = renderStatus(model, { color: true, now: NOW });
    assert.ok(!plain.includes('\u001b['));
    assert.ok(coloured.includes('\u001b[31m'), 'not-ready states are red');
    assert.ok(coloured.includes('\u001b[32m'), 'ready states are green');
    assert.equal(stripVTControlCharacters(coloured), plain);
  });

  test('empty cluster', () => {
    assert.equal(renderStatus({ gateways: [], policies: [] }, { color: false, now: NOW }), 'No EgressGateways.\n\nNo EgressGatewayPolicies.\n');
  });
});
