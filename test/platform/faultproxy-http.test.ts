// The fault proxy in HTTP mode, in front of the real test API server: it terminates TLS with the server's
// own certificate, forwards requests and watches, and answers a share of the requests with a status of
// its own; resets and refusals end connections. What is asserted is what the client sees and what the
// server holds, never timings.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestCluster, type TestCluster } from '../../src/testenv/apiserver.ts';
import { FaultProxy, kubeConfigVia } from '../../src/testenv/faultproxy.ts';
import { poll } from '../../src/testenv/poll.ts';
import { KubeClient, isStatus } from '../../src/kube/client.ts';
import { Informer } from '../../src/kube/informer.ts';

const CONFIGMAPS = { group: '', version: 'v1', plural: 'configmaps', namespace: 'default' };

/** The status code a request failed with (undefined when it did not fail with one). */
async function failure(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'number' ? code : -1;
  }
}

describe('fault proxy, HTTP mode', { timeout: 120_000 }, () => {
  let cluster: TestCluster;
  let proxy: FaultProxy;
  let viaProxy: KubeClient;
  let direct: KubeClient;

  before(async () => {
    cluster = await startTestCluster();
    const server = new URL(cluster.server);
    proxy = await FaultProxy.start({ host: server.hostname, port: Number(server.port) }, { host: '127.0.0.1' }, { http: cluster.servingTLS() });
    viaProxy = new KubeClient(kubeConfigVia(cluster.kubeConfig, proxy.url), { timeoutMs: 10_000 });
    direct = new KubeClient(cluster.kubeConfig);
  });

  after(async () => {
    await proxy?.close();
    await cluster?.stop();
  });

  it('forwards requests and watch events', async () => {
    await viaProxy.create(CONFIGMAPS, { metadata: { name: 'through' }, data: { a: '1' } });
    assert.equal((await direct.get<{ data: { a: string } }>(CONFIGMAPS, 'through')).data.a, '1');
    const inf = new Informer<{ metadata: { name: string }; data?: Record<string, string> }>(viaProxy, { resource: CONFIGMAPS });
    inf.start();
    try {
      await inf.waitForSync();
      await direct.mergePatch(CONFIGMAPS, 'through', { data: { a: '2' } });
      await poll('the watch event through the proxy', () => inf.get('through', 'default')?.data?.a === '2', 10_000);
    } finally {
      inf.stop();
    }
  });

  it('a status rule answers its share of the matched verbs, and only those', async () => {
    const remove = proxy.add({ kind: 'status', code: 503, share: 1, verbs: 'read' });
    try {
      assert.equal(await failure(viaProxy.list(CONFIGMAPS)), 503);
      // Writes pass.
      await viaProxy.create(CONFIGMAPS, { metadata: { name: 'write-passes' } });
      assert.equal(proxy.counters.injected[503], 1);
    } finally {
      remove();
    }
    await viaProxy.list(CONFIGMAPS);
    const none = proxy.add({ kind: 'status', code: 500, share: 0 });
    try {
      await viaProxy.list(CONFIGMAPS);
    } finally {
      none();
    }
  });

  it('a rejected write did not happen; a committed one did, though the client was told it failed', async () => {
    const rejected = proxy.add({ kind: 'status', code: 409, share: 1, verbs: 'write' });
    try {
      assert.equal(await failure(viaProxy.create(CONFIGMAPS, { metadata: { name: 'rejected' } })), 409);
    } finally {
      rejected();
    }
    assert.equal(await direct.tryGet(CONFIGMAPS, 'rejected'), undefined);
    const committed = proxy.add({ kind: 'status', code: 500, share: 1, verbs: 'write', committed: true });
    try {
      assert.equal(await failure(viaProxy.create(CONFIGMAPS, { metadata: { name: 'committed' } })), 500);
    } finally {
      committed();
    }
    assert.ok(await direct.tryGet(CONFIGMAPS, 'committed'), 'the write reached the server');
  });

  it('a 429 says TooManyRequests, as the server would', async () => {
    const remove = proxy.add({ kind: 'status', code: 429, share: 1 });
    try {
      let err: unknown;
      await viaProxy.list(CONFIGMAPS).catch((e: unknown) => (err = e));
      assert.ok(isStatus(err, 429));
      assert.match(JSON.stringify((err as { body?: unknown }).body), /TooManyRequests/);
    } finally {
      remove();
    }
  });

  it('rules apply to the clients they name only', async () => {
    const other = proxy.add({ kind: 'status', code: 500, share: 1, clients: ['127.0.0.2'] });
    try {
      await viaProxy.list(CONFIGMAPS);
    } finally {
      other();
    }
    const ours = proxy.add({ kind: 'status', code: 500, share: 1, clients: ['127.0.0.1'] });
    try {
      assert.equal(await failure(viaProxy.list(CONFIGMAPS)), 500);
    } finally {
      ours();
    }
  });

  it('a server that went away resets the client\'s connection (no request is left hanging until its timeout)', async () => {
    const client = new KubeClient(kubeConfigVia(cluster.kubeConfig, proxy.url), { timeoutMs: 20_000 });
    await client.list(CONFIGMAPS);
    const restart = cluster.restartApiServer({ kill: true, downMs: 3000 });
    await poll('the API server process gone', () => cluster.processes().apiserver.exitCode !== null || cluster.processes().apiserver.signalCode !== null, 10_000);
    let err: unknown;
    await client.list(CONFIGMAPS).catch((e: unknown) => (err = e));
    await restart;
    assert.ok(err !== undefined, 'the request failed');
    assert.doesNotMatch(String((err as Error).message), /timeout/i, 'it failed because the connection ended, not by the client\'s timeout');
    await client.list(CONFIGMAPS);
  });

  it('reset ends open connections (a watch fails and comes back); refuse turns new ones away', async () => {
    const inf = new Informer<{ metadata: { name: string }; data?: Record<string, string> }>(viaProxy, { resource: CONFIGMAPS, minBackoffMs: 50 });
    inf.start();
    try {
      await inf.waitForSync();
      await poll('an open connection', () => proxy.connections > 0, 10_000);
      const before = proxy.counters.resets;
      assert.ok(proxy.reset({ clients: ['127.0.0.1'] }) > 0);
      assert.ok(proxy.counters.resets > before);
      await direct.create(CONFIGMAPS, { metadata: { name: 'after-reset' } });
      await poll('the informer back after the reset', () => inf.get('after-reset', 'default') !== undefined, 20_000);
    } finally {
      inf.stop();
    }
    const refuse = proxy.add({ kind: 'refuse' });
    try {
      proxy.reset();
      assert.equal(await failure(new KubeClient(kubeConfigVia(cluster.kubeConfig, proxy.url), { timeoutMs: 5000 }).list(CONFIGMAPS)), -1);
    } finally {
      refuse();
    }
    await new KubeClient(kubeConfigVia(cluster.kubeConfig, proxy.url)).list(CONFIGMAPS);
  });
});
