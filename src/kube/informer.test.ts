// The informer against the real test API server: a stopped informer leaves no watch open.
//
// Found through the chaos suite (linux, seed 28, under load): the agent starts a new instance informer
// after every fence and stops the old one; an informer stopped while its list or watch request was in
// flight opened the watch afterwards and kept it for good (client-node's ListWatch.stop() aborts only an
// established watch). One agent had a hundred live watches after a few minutes of fencing, every event
// delivered to each. The server's own gauge of long-running requests counts the watches.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestCluster, type TestCluster } from '../testenv/apiserver.ts';
import { poll } from '../testenv/poll.ts';
import { KubeClient } from './client.ts';
import { Informer } from './informer.ts';
import type { ResourceRef } from './client.ts';

// Nothing else in this file's cluster watches ConfigMaps.
const CONFIGMAPS: ResourceRef = { group: '', version: 'v1', plural: 'configmaps', namespace: 'default' };

describe('Informer.stop', { timeout: 120_000 }, () => {
  let cluster: TestCluster;
  let client: KubeClient;

  before(async () => {
    cluster = await startTestCluster({});
    client = new KubeClient(cluster.kubeConfig);
  });
  after(async () => {
    await cluster?.stop();
  });

  /** Watches of ConfigMaps the server is serving now. */
  async function configMapWatches(): Promise<number> {
    const text = await client.request<string>('GET', '/metrics');
    const line = String(text).split('\n').find((l) => l.startsWith('apiserver_longrunning_requests{') && l.includes('resource="configmaps"') && l.includes('verb="WATCH"'));
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  }

  it('stopped while its list is in flight, it opens no watch afterwards (and tells nobody of the list)', async () => {
    const heard: string[] = [];
    // Something for their lists to find (and, before the fix, to report).
    await client.create(CONFIGMAPS, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'informer-stop' }, data: {} });
    for (let n = 0; n < 5; n++) {
      const i = new Informer(client, { resource: CONFIGMAPS });
      i.onEvent((type) => heard.push(type));
      i.start(); // the list request is on its way
      i.stop();
    }
    // A live one, started after them: once it is synced, its watch is open — theirs would be too.
    const live = new Informer(client, { resource: CONFIGMAPS });
    live.start();
    try {
      await live.waitForSync();
      await poll('the live informer\'s watch on the server', async () => (await configMapWatches()) >= 1, 20_000);
      // One more round trip behind every request sent so far, then count.
      await client.list(CONFIGMAPS);
      assert.equal(await configMapWatches(), 1, 'watches of informers that were stopped are still open');
      assert.deepEqual(heard, []);
    } finally {
      live.stop();
    }
    await poll('no ConfigMap watch left', async () => (await configMapWatches()) === 0, 20_000);
  });
});
