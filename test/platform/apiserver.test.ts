// The test platform itself: these run against the real API server from src/testenv, one cluster
// for the whole file.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { join } from 'node:path';
import {
  ApiException,
  ApisApi,
  CoreV1Api,
  CustomObjectsApi,
  KubernetesObjectApi,
  PatchStrategy,
  Watch,
  makeInformer,
  type KubeConfig,
  type KubernetesObject,
  type V1Node,
  type V1Pod,
} from '@kubernetes/client-node';
import { rawRequest, startTestCluster, waitFor, type TestCluster } from '../../src/testenv/apiserver.ts';

const fixtures = join(import.meta.dirname, '..', 'fixtures');
const group = 'testenv.egressgw.io';
const version = 'v1alpha1';
let cluster: TestCluster;
let kc: KubeConfig;

before(async () => {
  cluster = await startTestCluster({ crds: join(fixtures, 'widgets-crd.yaml') });
  kc = cluster.kubeConfig;
});
after(async () => {
  await cluster?.stop();
});

/** Raw GET through the client's TLS and credentials, for discovery and Table requests. */
async function getRaw(path: string, accept = 'application/json'): Promise<{ status: number; body: unknown }> {
  const res = await rawRequest(kc, 'GET', path, undefined, undefined, accept);
  return { status: res.status, body: JSON.parse(res.body) };
}

async function rejection(p: Promise<unknown>): Promise<ApiException<string>> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ApiException) return e as ApiException<string>;
    throw e;
  }
  assert.fail('expected the request to be rejected');
}

test('a CRD CEL rule rejects a bad object with 422 and the field path', async () => {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const widget = (name: string, spec: object) => ({ apiVersion: `${group}/${version}`, kind: 'Widget', metadata: { name }, spec });
  await custom.createNamespacedCustomObject({ group, version, namespace: 'default', plural: 'widgets', body: widget('good', { replicas: 3, minReplicas: 1 }) });
  const err = await rejection(
    custom.createNamespacedCustomObject({ group, version, namespace: 'default', plural: 'widgets', body: widget('bad', { replicas: 1, minReplicas: 5 }) }),
  );
  assert.equal(err.code, 422);
  const body = String(err.body);
  assert.match(body, /spec\.minReplicas/);
  assert.match(body, /minReplicas must not exceed replicas/);

  // Printer columns come back in Table form, as kubectl get asks.
  const table = await getRaw(`/apis/${group}/${version}/namespaces/default/widgets`, 'application/json;as=Table;g=meta.k8s.io;v=v1');
  const t = table.body as { columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] };
  assert.ok(t.columnDefinitions.some((c) => c.name === 'Replicas'), JSON.stringify(t.columnDefinitions));
  assert.ok(t.rows.some((r) => r.cells.includes(3)));
});

test('a node informer sees ADDED, MODIFIED, DELETED and recovers from 410 after etcd compaction', async () => {
  const core = kc.makeApiClient(CoreV1Api);
  let lists = 0;
  const informer = makeInformer<V1Node>(kc, '/api/v1/nodes', () => {
    lists++;
    return core.listNode();
  });
  const seen: string[] = [];
  informer.on('add', (n) => seen.push(`ADDED ${n.metadata!.name}`));
  informer.on('update', (n) => seen.push(`MODIFIED ${n.metadata!.name} ${n.metadata!.labels?.step ?? ''}`));
  informer.on('delete', (n) => seen.push(`DELETED ${n.metadata!.name}`));
  // client-node informers stop on errors other than 410; restart them, as a controller would.
  let stopped = false;
  informer.on('error', () => {
    if (!stopped) setTimeout(() => void (stopped || informer.start().catch(() => {})), 200);
  });
  await informer.start();
  try {
    await core.createNode({ body: { metadata: { name: 'inf-1' } } });
    await waitFor('ADDED inf-1', () => seen.includes('ADDED inf-1'), 20_000);
    await core.patchNode({ name: 'inf-1', body: [{ op: 'add', path: '/metadata/labels', value: { step: 'two' } }] });
    await waitFor('MODIFIED inf-1', () => seen.includes('MODIFIED inf-1 two'), 20_000);
    await core.deleteNode({ name: 'inf-1' });
    await waitFor('DELETED inf-1', () => seen.includes('DELETED inf-1'), 20_000);

    // Writes, then compaction at the current revision: a watch from before it is now 410 Gone.
    const before = await core.listNode();
    const oldRV = before.metadata!.resourceVersion!;
    await core.createNode({ body: { metadata: { name: 'inf-2' } } });
    const listsBefore = lists;
    await cluster.compactEtcd();

    const gone = await new Promise<number>((resolve, reject) => {
      let code = 0;
      void new Watch(kc)
        .watch('/api/v1/nodes', { resourceVersion: oldRV }, (type, obj: { code?: number }) => {
          if (type === 'ERROR') code = obj.code ?? -1;
        }, (err?: { statusCode?: number }) => resolve(err?.statusCode ?? code))
        .catch(reject);
    });
    assert.equal(gone, 410);

    await core.createNode({ body: { metadata: { name: 'inf-3' } } });
    await waitFor('informer relists and sees inf-3', () => lists > listsBefore && seen.includes('ADDED inf-3'), 60_000);
    assert.ok(informer.get('inf-2'), 'inf-2 is in the cache after the relist');
  } finally {
    stopped = true;
    await informer.stop();
  }
});

test('pod /status updates keep spec; fieldSelector spec.nodeName filters', async () => {
  const core = kc.makeApiClient(CoreV1Api);
  const pod = (name: string, node: string): V1Pod => ({
    metadata: { name, labels: { app: 'fs' } },
    spec: { nodeName: node, containers: [{ name: 'c', image: 'busybox' }] },
    status: { phase: 'Running' },
  });
  const created = await core.createNamespacedPod({ namespace: 'default', body: pod('pa-1', 'node-a') });
  assert.equal(created.status?.phase, 'Pending', 'status is reset on create');
  await core.createNamespacedPod({ namespace: 'default', body: pod('pa-2', 'node-a') });
  await core.createNamespacedPod({ namespace: 'default', body: pod('pb-1', 'node-b') });

  const changed = structuredClone(created);
  changed.spec!.containers[0]!.image = 'evil';
  changed.status = { phase: 'Running', podIP: '198.18.0.10' };
  const updated = await core.replaceNamespacedPodStatus({ name: 'pa-1', namespace: 'default', body: changed });
  assert.equal(updated.status?.phase, 'Running');
  assert.equal(updated.status?.podIP, '198.18.0.10');
  assert.equal(updated.spec?.containers[0]?.image, 'busybox', '/status must not change spec');

  // And the main resource keeps status.
  const main = structuredClone(updated);
  main.status = { phase: 'Failed' };
  main.metadata!.labels = { app: 'fs', touched: 'yes' };
  const replaced = await core.replaceNamespacedPod({ name: 'pa-1', namespace: 'default', body: main });
  assert.equal(replaced.status?.phase, 'Running');
  assert.equal(replaced.metadata?.labels?.touched, 'yes');

  const onA = await core.listNamespacedPod({ namespace: 'default', fieldSelector: 'spec.nodeName=node-a' });
  assert.deepEqual(onA.items.map((p) => p.metadata!.name).sort(), ['pa-1', 'pa-2']);
  const onB = await core.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=node-b,metadata.namespace=default' });
  assert.deepEqual(onB.items.map((p) => p.metadata!.name), ['pb-1']);
  const err = await rejection(core.listNamespacedPod({ namespace: 'default', fieldSelector: 'spec.nope=x' }));
  assert.equal(err.code, 400);
});

test('server-side apply works on a CRD and on a built-in', async () => {
  const objects = KubernetesObjectApi.makeApiClient(kc);
  const apply = (obj: KubernetesObject, manager: string, force = false) =>
    objects.patch(obj, undefined, undefined, manager, force, PatchStrategy.ServerSideApply);

  const w1 = await apply(
    { apiVersion: `${group}/${version}`, kind: 'Widget', metadata: { name: 'ssa', namespace: 'default' }, spec: { replicas: 2, tags: { a: 'x' } } } as KubernetesObject,
    'alice',
  );
  assert.ok(w1.metadata?.managedFields?.some((f) => f.manager === 'alice' && f.operation === 'Apply'));
  const w2 = (await apply(
    { apiVersion: `${group}/${version}`, kind: 'Widget', metadata: { name: 'ssa', namespace: 'default' }, spec: { replicas: 2, tags: { b: 'y' } } } as KubernetesObject,
    'bob',
  )) as KubernetesObject & { spec: { tags: Record<string, string> } };
  assert.deepEqual(w2.spec.tags, { a: 'x', b: 'y' }, 'two managers own different keys');
  const conflict = await rejection(
    apply({ apiVersion: `${group}/${version}`, kind: 'Widget', metadata: { name: 'ssa', namespace: 'default' }, spec: { replicas: 5 } } as KubernetesObject, 'carol'),
  );
  assert.equal(conflict.code, 409, 'replicas is co-owned by alice and bob');

  const cm1 = await apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ssa', namespace: 'default', labels: { a: '1' } }, data: { a: '1' } } as KubernetesObject, 'alice');
  assert.ok(cm1.metadata?.managedFields?.some((f) => f.manager === 'alice' && f.operation === 'Apply'));
  const cm2 = await apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ssa', namespace: 'default', labels: { b: '2' } } } as KubernetesObject, 'bob');
  assert.deepEqual(cm2.metadata?.labels, { a: '1', b: '2' });
  assert.deepEqual((cm2 as KubernetesObject & { data: object }).data, { a: '1' });
  const cmConflict = await rejection(apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ssa', namespace: 'default', labels: { a: 'other' } } } as KubernetesObject, 'bob'));
  assert.equal(cmConflict.code, 409);
});

test('discovery lists the CRD group (legacy /apis and aggregated)', async () => {
  const groups = await kc.makeApiClient(ApisApi).getAPIVersions();
  assert.ok(groups.groups.some((g) => g.name === group), `legacy /apis: ${groups.groups.map((g) => g.name).join(',')}`);
  assert.ok(groups.groups.some((g) => g.name === 'apiextensions.k8s.io'));
  const agg = await getRaw('/apis', 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList');
  const items = (agg.body as { items: { metadata: { name: string }; versions: { version: string; resources: { resource: string }[] }[] }[] }).items;
  const ours = items.find((i) => i.metadata.name === group);
  assert.ok(ours, 'aggregated discovery has the CRD group');
  assert.ok(ours.versions[0]!.resources.some((r) => r.resource === 'widgets'));
  assert.ok(items.some((i) => i.metadata.name === 'coordination.k8s.io'));
});

test('watches from the watch cache send bookmarks (watch-list initial-events-end)', async () => {
  const res = await rawRequest(kc, 'GET', '/api/v1/namespaces?watch=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=2');
  const events = res.body.trim().split('\n').map((l) => JSON.parse(l) as { type: string; object: { metadata: { name?: string; annotations?: Record<string, string> } } });
  assert.ok(events.some((e) => e.type === 'ADDED' && e.object.metadata.name === 'kube-system'));
  assert.ok(events.some((e) => e.type === 'BOOKMARK' && e.object.metadata.annotations?.['k8s.io/initial-events-end'] === 'true'));
});

test('the audit log records the identity each client presented', async () => {
  const agent = cluster.clientFor('system:serviceaccount:egressgw:agent').makeApiClient(CoreV1Api);
  await agent.listNode({ labelSelector: 'audit=probe' });
  await waitFor(
    'audit event for the agent',
    () => cluster.auditEvents().some((e) => e.user.username === 'system:serviceaccount:egressgw:agent' && e.verb === 'list' && e.objectRef?.resource === 'nodes'),
    10_000,
  );
  assert.ok(cluster.auditEvents().some((e) => e.user.username === 'admin'));
});

test('restarting the API server (SIGTERM or SIGKILL) and etcd keeps the data, the port and the certificate', async () => {
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'survives' }, data: { a: '1' } } });
  const before = cluster.processes().apiserver.pid;
  await cluster.restartApiServer();
  assert.notEqual(cluster.processes().apiserver.pid, before, 'a new API server process');
  assert.equal((await core.readNamespacedConfigMap({ namespace: 'default', name: 'survives' })).data?.a, '1');
  await cluster.restartApiServer({ kill: true });
  const etcdBefore = cluster.processes().etcd.pid;
  await cluster.restartEtcd({ kill: true, downMs: 200 });
  assert.notEqual(cluster.processes().etcd.pid, etcdBefore, 'a new etcd process');
  // The same client configuration (server URL and CA) still works, and the data is still there.
  assert.equal((await core.readNamespacedConfigMap({ namespace: 'default', name: 'survives' })).data?.a, '1');
  await core.deleteNamespacedConfigMap({ namespace: 'default', name: 'survives' });
});
