import { test } from 'node:test';
import assert from 'node:assert/strict';
import { reconcile } from '../core/index.ts';
import { NOW, agentsAct, applyWrites, cluster, policy, primaryGateway, settleWith, update, vipGateway } from '../core/testing.ts';
import type { Snapshot } from '../core/types.ts';
import { MOVE_TO_ANNOTATION, UPLINKS_ANNOTATION } from '../api/names.ts';
import { trimCEGP, trimCiliumNode, trimGateway, trimInstance, trimLease, trimNode, trimPod, trimPolicy } from './trim.ts';

const trimAll = (s: Snapshot): Snapshot => ({
  ...s,
  nodes: s.nodes.map(trimNode),
  ciliumNodes: s.ciliumNodes.map(trimCiliumNode),
  ciliumAgentPods: s.ciliumAgentPods.map(trimPod),
  agentPods: s.agentPods.map(trimPod),
  gateways: s.gateways.map(trimGateway),
  policies: s.policies.map(trimPolicy),
  instances: s.instances.map(trimInstance),
  cegps: s.cegps.map(trimCEGP),
});

test('trimmed caches decide exactly what full objects decide', () => {
  const sel = { role: 'egress' };
  let s = cluster(['n1', 'n2', 'n3'].map((name) => ({ name, labels: sel })), {
    gateways: [vipGateway('v', '192.0.2.1', sel), primaryGateway('p', 'eth1', sel)],
    policies: [policy('a', 'v'), policy('b', 'p', { excluded: ['10.1.0.0/16'] }), policy('c', 'missing')],
  });
  // Foreign fields the core must not need.
  s = { ...s, nodes: update(s.nodes, 'n2', (n) => ((n.metadata as unknown as Record<string, unknown>)['annotations'] = { 'x/y': 'z' })) };
  for (let i = 0; i < 6; i++) {
    const full = reconcile(s);
    assert.deepEqual(reconcile(trimAll(s)).writes, full.writes, `pass ${i}`);
    s = agentsAct(applyWrites(s, full.writes));
  }
  s = settleWith((x) => reconcile(x), { ...s, nodes: update(s.nodes, 'n1', (n) => (n.spec = { unschedulable: true })) });
  assert.deepEqual(reconcile(trimAll({ ...s, now: NOW + 1 })).writes, reconcile({ ...s, now: NOW + 1 }).writes);
});

test('trim keeps what the controller reads and drops the rest', () => {
  const node = trimNode({
    metadata: { name: 'n', labels: { a: 'b' }, annotations: { 'x/y': '1', [MOVE_TO_ANNOTATION]: 'm' }, managedFields: [{}] },
    spec: { unschedulable: true, podCIDR: '10.0.0.0/24' },
    status: {
      conditions: [{ type: 'MemoryPressure', status: 'False' }, { type: 'Ready', status: 'False', reason: 'r' }],
      images: [{}],
      addresses: [{ type: 'Hostname', address: 'n' }, { type: 'InternalIP', address: '192.0.2.7' }, { type: 'ExternalIP', address: '203.0.113.7' }],
    },
  } as never);
  // The node's IP addresses stay: a VIP must not be one of them.
  assert.deepEqual(node, {
    metadata: { name: 'n', labels: { a: 'b' }, annotations: { [MOVE_TO_ANNOTATION]: 'm' } },
    spec: { unschedulable: true },
    status: { conditions: [{ type: 'Ready', status: 'False' }], addresses: [{ type: 'InternalIP', address: '192.0.2.7' }, { type: 'ExternalIP', address: '203.0.113.7' }] },
  });
  const lease = trimLease({ metadata: { name: 'l', namespace: 'ns', annotations: { [UPLINKS_ANNOTATION]: '{}', other: 'x' } }, spec: { holderIdentity: 'h' } });
  assert.deepEqual(lease, { metadata: { name: 'l', namespace: 'ns', annotations: { [UPLINKS_ANNOTATION]: '{}' } }, spec: { holderIdentity: 'h' } });
  // Instances are written back whole (PUT): foreign annotations stay.
  const inst = trimInstance({ metadata: { name: 'i', annotations: { other: 'x' }, managedFields: [{}] } as never, spec: { nodeName: 'n' } });
  assert.deepEqual(inst, { metadata: { name: 'i', annotations: { other: 'x' } }, spec: { nodeName: 'n' } });
  const pod = trimPod({ metadata: { name: 'p', namespace: 'ns' }, spec: { nodeName: 'n', containers: [] } as never });
  assert.deepEqual(pod, { metadata: { name: 'p', namespace: 'ns' }, spec: { nodeName: 'n' } });
});
