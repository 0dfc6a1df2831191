// src/kube against the real test API server: patch content types, informer sync and recovery from
// a compacted resourceVersion (410 Gone), Lease leader election, events with series.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Fixture, NS, waitFor } from './helpers.ts';
import { KubeClient, isStatus } from '../../src/kube/client.ts';
import { FaultProxy, kubeConfigVia } from '../../src/testenv/faultproxy.ts';
import { Informer } from '../../src/kube/informer.ts';
import { LeaderElector } from '../../src/kube/leader.ts';
import { EventRecorder } from '../../src/kube/events.ts';
import { labelsPatch } from '../../src/kube/patch.ts';
import { CEGPS, NODES, events, leases } from '../../src/kube/resources.ts';
import type { LeaseLike, NodeLike } from '../../src/api/types.ts';

let f: Fixture;
before(async () => {
  f = await Fixture.start();
});
after(async () => {
  await f?.stop();
});

test('merge patch, JSON patch and server-side apply reach the server with their content types', async () => {
  await f.node('patch-1', { a: '1', b: '2' }, { ciliumNode: false });
  // Merge patch: null deletes, "" adds.
  await f.client.mergePatch(NODES, 'patch-1', labelsPatch(['x/y'], ['a']));
  let labels = await f.nodeLabels('patch-1');
  assert.equal(labels['x/y'], '');
  assert.equal('a' in labels, false);
  // JSON patch with a failing test op is refused: it is really parsed as RFC 6902.
  await assert.rejects(
    f.client.jsonPatch(NODES, 'patch-1', [
      { op: 'test', path: '/metadata/labels/b', value: 'nope' },
      { op: 'remove', path: '/metadata/labels/b' },
    ]),
    (err: unknown) => isStatus(err, 422, 409, 500),
  );
  await f.client.jsonPatch(NODES, 'patch-1', [
    { op: 'test', path: '/metadata/labels/b', value: '2' },
    { op: 'remove', path: '/metadata/labels/b' },
  ]);
  labels = await f.nodeLabels('patch-1');
  assert.equal('b' in labels, false);
  // Server-side apply creates, records our field manager, and removes fields we stop applying.
  const cegp = (excluded?: string[]) => ({
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumEgressGatewayPolicy',
    metadata: { name: 'ssa-1', labels: { heritage: 'deckhouse', module: 'cni-cilium' } },
    spec: {
      selectors: [{ podSelector: { matchLabels: { app: 'x' } } }],
      destinationCIDRs: ['192.0.2.0/24'],
      ...(excluded ? { excludedCIDRs: excluded } : {}),
      egressGateway: { nodeSelector: { matchLabels: { k: '' } }, egressIP: '198.18.0.1' },
    },
  });
  await f.client.apply(CEGPS, 'ssa-1', cegp(['192.0.2.0/28']), { fieldManager: 'egressgw-test', force: true });
  let got = await f.client.get<{ metadata: { managedFields?: Array<{ manager: string; operation: string }> }; spec: { excludedCIDRs?: string[] } }>(CEGPS, 'ssa-1');
  assert.deepEqual(got.spec.excludedCIDRs, ['192.0.2.0/28']);
  assert.ok(got.metadata.managedFields?.some((m) => m.manager === 'egressgw-test' && m.operation === 'Apply'));
  await f.client.apply(CEGPS, 'ssa-1', cegp(), { fieldManager: 'egressgw-test', force: true });
  got = await f.client.get(CEGPS, 'ssa-1');
  assert.equal(got.spec.excludedCIDRs, undefined);
  await f.client.delete(CEGPS, 'ssa-1');
});

test('an informer syncs, follows changes, and recovers after its resourceVersion is compacted away', async () => {
  const inf = new Informer<NodeLike>(f.client, { resource: NODES, labelSelector: 'informer-test=yes', minBackoffMs: 100 });
  const seen: string[] = [];
  inf.onEvent((type, o) => seen.push(`${type}:${o.metadata.name}`));
  await f.node('inf-1', { 'informer-test': 'yes' }, { ciliumNode: false });
  await f.node('inf-other', { 'informer-test': 'no' }, { ciliumNode: false });
  inf.start();
  await inf.waitForSync();
  assert.equal(inf.hasSynced(), true);
  assert.deepEqual(inf.list().map((n) => n.metadata.name), ['inf-1']);
  await f.node('inf-2', { 'informer-test': 'yes' }, { ciliumNode: false });
  await waitFor('inf-2 in cache', () => inf.get('inf-2') !== undefined);
  // Stop watching, change things, compact etcd past our resourceVersion, and resume: the watch gets
  // 410 Gone and the informer must relist (seeing the deletion it missed) rather than stall.
  inf.stop();
  await f.client.delete(NODES, 'inf-1');
  await f.setNodeLabels('inf-2', { extra: 'x' });
  for (let i = 0; i < 5; i++) await f.setNodeLabels('inf-other', { churn: String(i) });
  await f.cluster.compactEtcd();
  inf.start();
  await waitFor('relist after 410', () => inf.get('inf-1') === undefined && inf.get('inf-2')?.metadata.labels?.extra === 'x');
  assert.ok(seen.includes('delete:inf-1'));
  inf.stop();
});

test('leader election: one leader at a time, release hands over at once, expiry on our clock', async () => {
  const cfg = (identity: string) => ({ namespace: NS, name: 'le-test', identity, leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 });
  const events: string[] = [];
  const mk = (id: string) =>
    new LeaderElector(f.client, cfg(id), {
      onStartedLeading: () => events.push(`start:${id}`),
      onStoppedLeading: () => events.push(`stop:${id}`),
    });
  const a = mk('a');
  const b = mk('b');
  const acA = new AbortController();
  const acB = new AbortController();
  const runA = a.run(acA.signal);
  await waitFor('a leads', () => a.isLeader());
  const runB = b.run(acB.signal);
  await waitFor('b observes a', () => b.leader() === 'a');
  assert.equal(b.isLeader(), false);
  // Graceful shutdown releases the Lease; b takes it without waiting for the lease duration.
  acA.abort();
  await runA;
  const released = await f.client.get<LeaseLike>(leases(NS), 'le-test');
  assert.ok(released.spec?.holderIdentity === '' || released.spec?.holderIdentity === 'b');
  await waitFor('b leads', () => b.isLeader(), 2500);
  assert.equal(a.isLeader(), false);
  acB.abort();
  await runB;
  assert.deepEqual(events, ['start:a', 'stop:a', 'start:b', 'stop:b']);

  // A holder that vanishes without releasing: the Lease is taken only after it stops changing for
  // the lease duration, whatever renewTime says (here: far in the future, a skewed clock).
  await f.client.create(leases(NS), {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name: 'le-skew' },
    spec: { holderIdentity: 'ghost', leaseDurationSeconds: 2, renewTime: '2099-01-01T00:00:00.000000Z', acquireTime: '2099-01-01T00:00:00.000000Z' },
  });
  const c = new LeaderElector(f.client, { ...cfg('c'), name: 'le-skew' });
  const acC = new AbortController();
  const started = Date.now();
  const runC = c.run(acC.signal);
  await waitFor('c leads after expiry', () => c.isLeader(), 10_000);
  assert.ok(Date.now() - started >= 1900, 'took the Lease before it expired on our clock');
  acC.abort();
  await runC;
});

test('events: events.k8s.io/v1 objects, identical ones join a series', async () => {
  let now = Date.now();
  const rec = new EventRecorder(f.client, { reportingController: 'network.deckhouse.io/egressgw-test', reportingInstance: 'test-1', now: () => now, minSeriesUpdateMs: 0 });
  const regarding = { apiVersion: 'network.deckhouse.io/v1alpha1', kind: 'EgressGateway', name: 'ev-gw', uid: '00000000-0000-0000-0000-000000000001' };
  assert.equal(await rec.record(regarding, 'Warning', 'NoEligibleNode', 'no node'), 'created');
  now += 1000;
  assert.equal(await rec.record(regarding, 'Warning', 'NoEligibleNode', 'no node'), 'series');
  assert.equal(await rec.record(regarding, 'Normal', 'Elected', 'Node n1 was elected'), 'created');
  const list = await f.client.list<{ regarding: { name: string }; reason: string; series?: { count: number }; reportingController: string }>(events('default'));
  const mine = list.items.filter((e) => e.regarding.name === 'ev-gw');
  assert.equal(mine.length, 2);
  const warn = mine.find((e) => e.reason === 'NoEligibleNode');
  assert.equal(warn?.series?.count, 2);
  assert.equal(warn?.reportingController, 'network.deckhouse.io/egressgw-test');
});

test('the client and its informers speak HTTP/1.1 only (no h2 in the TLS ALPN offer)', async () => {
  // Node's HTTP/2 session was seen spinning in native code while its memory grew (src/kube/client.ts).
  const u = new URL(f.cluster.server);
  const proxy = await FaultProxy.start({ host: u.hostname, port: Number(u.port) }, { host: u.hostname });
  const client = new KubeClient(kubeConfigVia(f.cluster.kubeConfig, proxy.url));
  const informer = new Informer<NodeLike>(client, { resource: NODES });
  try {
    informer.start();
    await informer.waitForSync();
    await Promise.all(Array.from({ length: 3 }, () => client.list(NODES)));
    assert.ok(proxy.firstChunks.length >= 2, `${proxy.firstChunks.length} connection(s)`);
    const h2 = Buffer.from([0x02, 0x68, 0x32]); // the ALPN protocol name "h2", length-prefixed
    const h1 = Buffer.from('http/1.1');
    for (const hello of proxy.firstChunks) {
      assert.equal(hello.includes(h2), false, 'HTTP/2 offered in a ClientHello');
      assert.equal(hello.includes(h1), true, 'HTTP/1.1 offered');
    }
  } finally {
    informer.stop();
    await proxy.close();
  }
});
