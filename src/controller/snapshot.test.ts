import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FENCE_MARGIN_MS } from '../api/fencing.ts';
import { HeartbeatTracker, SnapshotBuilder, buildSnapshot, leaseDurationMs, nextHandoverTimeout, nodeOfHeartbeatLease, parseUplinks } from './snapshot.ts';
import { ASSIGNED_AT_ANNOTATION, HANDOVER_TO_ANNOTATION, REFUSED_ANNOTATION, FENCE_AFTER_MS_ANNOTATION, LEASE_DURATION_MS_ANNOTATION, UPLINKS_ANNOTATION, heartbeatLeaseName } from '../api/names.ts';
import type { LeaseLike } from '../api/types.ts';

const lease = (node: string, renewTime: string, extra: Partial<LeaseLike['spec']> = {}, annotations?: Record<string, string>): LeaseLike => ({
  metadata: { name: heartbeatLeaseName(node), namespace: 'ns', ...(annotations ? { annotations } : {}) },
  spec: { holderIdentity: node, renewTime, ...extra },
});

test('heartbeat lease names map back to nodes; other leases are ignored', () => {
  assert.equal(nodeOfHeartbeatLease(heartbeatLeaseName('frontend-1')), 'frontend-1');
  assert.equal(nodeOfHeartbeatLease('egressgw-controller'), undefined);
  assert.equal(nodeOfHeartbeatLease(heartbeatLeaseName('')), undefined);
});

test('observedAt moves only when the lease record changes, on our clock', () => {
  const t = new HeartbeatTracker(2000);
  assert.equal(t.observe(lease('a', '2000-01-01T00:00:00.000000Z', { leaseDurationSeconds: 3 }), 1000), true);
  assert.deepEqual(t.heartbeats(), [{ node: 'a', observedAt: 1000, durationMs: 3000 }]);
  // Same record (e.g. a relist): nothing changes.
  assert.equal(t.observe(lease('a', '2000-01-01T00:00:00.000000Z', { leaseDurationSeconds: 3 }), 1500), false);
  assert.equal(t.heartbeats()[0]?.observedAt, 1000);
  // A renewal of a live heartbeat moves observedAt but needs no pass.
  assert.equal(t.observe(lease('a', '1999-01-01T00:00:00.000000Z', { leaseDurationSeconds: 3 }), 2000), false);
  assert.equal(t.heartbeats()[0]?.observedAt, 2000);
  assert.equal(t.nextExpiry(2000), 5000);
  // A renewal after expiry revives it: that needs a pass.
  assert.equal(t.observe(lease('a', '1999-01-01T00:00:01.000000Z', { leaseDurationSeconds: 3 }), 9000), true);
  assert.equal(t.nextExpiry(13000), undefined);
});

test('missing leaseDurationSeconds uses the default; uplinks are parsed, malformed ones ignored', () => {
  const t = new HeartbeatTracker(2000);
  const up = JSON.stringify({ eth1: { up: true, ipv4: ['192.0.2.1'] }, eth2: { up: false } });
  t.observe(lease('a', 'x', {}, { [UPLINKS_ANNOTATION]: up }), 0);
  t.observe(lease('b', 'x', {}, { [UPLINKS_ANNOTATION]: '{not json' }), 0);
  const [a, b] = t.heartbeats();
  assert.deepEqual(a, { node: 'a', observedAt: 0, durationMs: 2000, uplinks: { eth1: { up: true, ipv4: ['192.0.2.1'] }, eth2: { up: false } } });
  assert.deepEqual(b, { node: 'b', observedAt: 0, durationMs: 2000 });
  assert.equal(parseUplinks('{"eth1":{"up":"yes"}}'), undefined);
  assert.equal(parseUplinks('[]'), undefined);
  assert.equal(t.forget(lease('a', 'x')), true);
  assert.equal(t.heartbeats().length, 1);
});

test('handover timeouts come from unconfirmed, assigned instances only', () => {
  const inst = (name: string, assigned: string | undefined, ready: boolean, deleting = false) => ({
    metadata: {
      name,
      ...(assigned ? { annotations: { [ASSIGNED_AT_ANNOTATION]: assigned } } : {}),
      ...(deleting ? { deletionTimestamp: '2000-01-01T00:00:00Z' } : {}),
    },
    status: { conditions: ready ? [{ type: 'Ready', status: 'True' as const, reason: '', message: '', lastTransitionTime: '' }] : [] },
  });
  const t0 = Date.parse('2030-01-01T00:00:00Z');
  const list = [
    inst('a', '2030-01-01T00:00:00Z', false),
    inst('b', '2030-01-01T00:00:01Z', true),
    inst('c', '2029-12-31T23:59:59Z', false, true),
    inst('d', undefined, false),
  ];
  assert.equal(nextHandoverTimeout(list, 5000, t0), t0 + 5000);
  // Then the retry of a refused VIP (core/refusals.ts): 30 s after the timeout, doubling per retry.
  assert.equal(nextHandoverTimeout(list, 5000, t0 + 5000), t0 + 35_000);
  assert.equal(nextHandoverTimeout(list, 5000, t0 + 35_000), undefined);
  const refused = { ...list[0]!, metadata: { ...list[0]!.metadata, annotations: { ...list[0]!.metadata.annotations, [REFUSED_ANNOTATION]: '{"nodes":{"n1":"x"},"retries":2}' } } };
  assert.equal(nextHandoverTimeout([refused], 5000, t0 + 5000), t0 + 125_000);
  // The old owner's instance during a handover away from it runs no clock (core/election.ts).
  const marked = { ...list[0]!, metadata: { ...list[0]!.metadata, annotations: { ...list[0]!.metadata.annotations, [HANDOVER_TO_ANNOTATION]: 'n2' } } };
  assert.equal(nextHandoverTimeout([marked], 5000, t0), undefined);
});

test('the snapshot builder hands out the same sorted list while a cache is unchanged, a new one when it changes', () => {
  let version = 1;
  let nodes = [{ metadata: { name: 'b' } }, { metadata: { name: 'a' } }];
  let listed = 0;
  const empty = () => [];
  const pods = [
    { metadata: { name: 'p', namespace: 'y' } },
    { metadata: { name: 'p', namespace: 'x' } },
  ];
  const b = new SnapshotBuilder({
    nodes: () => {
      listed++;
      return nodes;
    },
    ciliumNodes: empty,
    ciliumAgentPods: () => [...pods],
    agentPods: empty,
    gateways: empty,
    policies: empty,
    instances: empty,
    cegps: empty,
    heartbeats: new HeartbeatTracker(2000),
    versions: { nodes: () => version },
  });
  const s1 = b.build(1);
  assert.deepEqual(s1.nodes.map((n) => n.metadata.name), ['a', 'b']);
  assert.deepEqual(s1.ciliumAgentPods.map((p) => p.metadata.namespace), ['x', 'y']);
  const s2 = b.build(2);
  assert.equal(s2.nodes, s1.nodes);
  assert.equal(listed, 1);
  // Without a version, the same objects in the same order also give the same array.
  assert.equal(s2.ciliumAgentPods, s1.ciliumAgentPods);
  nodes = [{ metadata: { name: 'c' } }, ...nodes];
  version++;
  const s3 = b.build(3);
  assert.notEqual(s3.nodes, s1.nodes);
  assert.deepEqual(s3.nodes.map((n) => n.metadata.name), ['a', 'b', 'c']);
  // The one-shot form sorts the same way.
  const one = buildSnapshot({ nodes: () => nodes, ciliumNodes: empty, ciliumAgentPods: () => pods, agentPods: empty, gateways: empty, policies: empty, instances: empty, cegps: empty, heartbeats: new HeartbeatTracker(2000) }, 4);
  assert.deepEqual(one.nodes.map((n) => n.metadata.name), ['a', 'b', 'c']);
});

test('heartbeats(): the same list and records, renewals updated in place, until a node comes or goes', () => {
  const t = new HeartbeatTracker(2000);
  t.observe(lease('a', 'x'), 0);
  const l1 = t.heartbeats();
  assert.equal(t.heartbeats(), l1);
  t.observe(lease('a', 'x'), 10);
  assert.equal(t.heartbeats(), l1);
  assert.equal(l1[0]?.observedAt, 0);
  t.observe(lease('a', 'y'), 20);
  assert.equal(t.heartbeats(), l1);
  assert.equal(l1[0]?.observedAt, 20);
  t.observe(lease('b', 'x'), 30);
  const l2 = t.heartbeats();
  assert.notEqual(l2, l1);
  assert.deepEqual(
    l2.map((h) => [h.node, h.observedAt]),
    [
      ['a', 20],
      ['b', 30],
    ],
  );
  t.forget(lease('a', 'y'));
  t.forget(lease('b', 'x'));
  assert.deepEqual(t.heartbeats(), []);
});

test('a millisecond lease duration from the annotation is used when sane, never beyond leaseDurationSeconds', () => {
  const at = (ms: string | undefined, secs?: number): LeaseLike => ({
    metadata: { name: heartbeatLeaseName('n1'), ...(ms !== undefined ? { annotations: { [LEASE_DURATION_MS_ANNOTATION]: ms } } : {}) },
    spec: { holderIdentity: 'n1', renewTime: '2026-11-24T10:00:00.000000Z', ...(secs !== undefined ? { leaseDurationSeconds: secs } : {}) },
  });
  assert.equal(leaseDurationMs(at(undefined, 2), 5000), 2000);
  assert.equal(leaseDurationMs(at('1500', 2), 5000), 1500);
  assert.equal(leaseDurationMs(at('2500', 2), 5000), 2000, 'longer than the spec: the spec wins');
  assert.equal(leaseDurationMs(at('50', 2), 5000), 2000, 'absurdly short: ignored');
  assert.equal(leaseDurationMs(at('1.5s', 2), 5000), 2000, 'not a number of ms: ignored');
  assert.equal(leaseDurationMs(at('1500'), 5000), 1500, 'no spec duration: bounded by the default');
  const t = new HeartbeatTracker(5000);
  t.observe(at('1500', 2), 1000);
  assert.equal(t.heartbeats()[0]?.durationMs, 1500);
});

test('the controller never trusts a heartbeat for less than the agent\'s fence-after plus the margin', () => {
  const at = (lease: string | undefined, fence: string | undefined, secs = 1): LeaseLike => ({
    metadata: {
      name: heartbeatLeaseName('n1'),
      annotations: { ...(lease !== undefined ? { [LEASE_DURATION_MS_ANNOTATION]: lease } : {}), ...(fence !== undefined ? { [FENCE_AFTER_MS_ANNOTATION]: fence } : {}) },
    },
    spec: { holderIdentity: 'n1', renewTime: '2026-11-24T10:00:00.000000Z', leaseDurationSeconds: secs },
  });
  assert.equal(leaseDurationMs(at('800', '600'), 2000), 800, 'a safe pair is taken as it is');
  assert.equal(leaseDurationMs(at('800', '700'), 2000), 800, 'exactly the margin');
  assert.equal(leaseDurationMs(at('600', '600'), 2000), 600 + FENCE_MARGIN_MS, 'an unsafe pair is stretched to fence-after + margin');
  assert.equal(leaseDurationMs(at(undefined, '1500', 1), 2000), 1500 + FENCE_MARGIN_MS, 'beyond leaseDurationSeconds too');
  assert.equal(leaseDurationMs(at('800', 'soon'), 2000), 800, 'a fence-after that is not a number of ms is ignored');
});
