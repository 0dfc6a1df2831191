// Two controller replicas with Lease leader election: one leader writes, the standby keeps warm
// caches; when the leader is stopped the standby takes over and continues where it left off — the
// active node does not change across the takeover (no label flapping), and the new leader acts on
// the next failure.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Fixture, startController, waitFor, type RunningController } from './helpers.ts';
import { FakeAgents } from './agents.ts';
import { NODES } from '../../src/kube/resources.ts';
import { Informer } from '../../src/kube/informer.ts';
import { ACTIVE_FOR_PREFIX } from '../../src/api/names.ts';
import type { NodeLike } from '../../src/api/types.ts';

let f: Fixture;
let agents: FakeAgents;
const replicas: RunningController[] = [];

before(async () => {
  f = await Fixture.start();
  agents = new FakeAgents(f);
  agents.start();
});

after(async () => {
  agents?.stop();
  for (const r of replicas) await r.stop();
  await f?.stop();
});

const electionArgs = (id: string) => [
  '--leader-elect=true',
  '--leader-elect-identity', id,
  '--leader-elect-lease-duration', '3s',
  '--leader-elect-renew-deadline', '2s',
  '--leader-elect-retry-period', '300ms',
  '--metrics-addr', '127.0.0.1:0',
];

async function scrape(r: RunningController, path: string): Promise<{ status: number; body: string }> {
  const { metricsPort } = await r.ready;
  const res = await fetch(`http://127.0.0.1:${metricsPort}${path}`);
  return { status: res.status, body: await res.text() };
}

async function isLeader(r: RunningController): Promise<boolean> {
  return (await r.metrics.isLeader.get()).values[0]?.value === 1;
}

test('one leader; on its shutdown the standby takes over without moving the gateway', async () => {
  const nodes = ['le-1', 'le-2', 'le-3'];
  await f.vipGatewayOnHealthyNodes('gw-le', nodes, '198.18.2.1', agents);

  const a = startController(f, electionArgs('replica-a'), 'replica-a');
  replicas.push(a);
  await a.ready;
  await waitFor('a leads', () => isLeader(a));
  const b = startController(f, electionArgs('replica-b'), 'replica-b');
  replicas.push(b);
  await b.ready;

  const [active] = await waitFor('gateway active', async () => {
    const act = await f.activeNodes('gw-le', nodes);
    return act.length === 1 && (await f.gateway('gw-le')).status?.activeNodeName === act[0] ? act : undefined;
  });
  assert.equal(await isLeader(b), false);
  assert.equal(b.passes.length, 0, 'the standby must not run passes');
  // Both replicas are ready (caches synced) and say over HTTP which one leads.
  for (const r of [a, b]) {
    assert.equal((await scrape(r, '/readyz')).status, 200);
    assert.equal((await scrape(r, '/healthz')).status, 200);
  }
  assert.match((await scrape(a, '/metrics')).body, /^egressgw_is_leader 1$/m);
  assert.match((await scrape(b, '/metrics')).body, /^egressgw_is_leader 0$/m);
  assert.match((await scrape(a, '/metrics')).body, /^egressgw_gateway_active_node\{gateway="gw-le",node="le-\d"\} 1$/m);

  // Record every active-for label change on the gateway's nodes through the takeover.
  const watch = new Informer<NodeLike>(f.client, { resource: NODES, labelSelector: 'test-group=gw-le' });
  const history: string[] = [];
  watch.onEvent((_t, n) => {
    const act = Object.keys(n.metadata.labels ?? {}).filter((k) => k.startsWith(ACTIVE_FOR_PREFIX));
    history.push(`${n.metadata.name}:${act.join(',')}`);
  });
  watch.start();
  await watch.waitForSync();
  assert.deepEqual(watch.list().map((n) => n.metadata.name).sort(), nodes, 'the recorder watches the gateway\'s nodes');
  history.length = 0;

  await a.stop();
  replicas.splice(replicas.indexOf(a), 1);
  await waitFor('b leads', () => isLeader(b), 10_000);
  await waitFor('b reconciled', () => b.passes.length > 0);
  // b's passes after the takeover found the cluster as a left it: no writes needed, nothing moved.
  const seen = b.passes.length;
  await waitFor('more passes on b', () => b.passes.length >= seen + 2);
  assert.equal((await f.gateway('gw-le')).status?.activeNodeName, active);
  assert.deepEqual(await f.activeNodes('gw-le', nodes), [active]);
  const expected = (node: string) => `${node}:${node === active ? ACTIVE_FOR_PREFIX + 'gw-le' : ''}`;
  assert.deepEqual(history.filter((h) => h !== expected(h.slice(0, h.indexOf(':')))), [], 'active-for labels changed during the takeover');
  assert.deepEqual(b.passes.flatMap((p) => p.writes.filter((w) => w.kind === 'addLabels' || w.kind === 'removeLabels')), []);

  // The new leader acts: cordon the active node, the gateway fails over.
  await f.cordon(active!, true);
  await waitFor('failover by b', async () => {
    const act = await f.activeNodes('gw-le', nodes);
    return act.length === 1 && act[0] !== active;
  });
  watch.stop();
});
