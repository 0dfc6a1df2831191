// The informer against the real test API server: a stopped informer leaves no watch open; a watch the
// server ends is re-opened at once, with watch bookmarks asked for.
//
// Found through the chaos suite (linux, seed 28, under load): the agent starts a new instance informer
// after every fence and stops the old one; an informer stopped while its list or watch request was in
// flight opened the watch afterwards and kept it for good (client-node's ListWatch.stop() aborts only an
// established watch). One agent had a hundred live watches after a few minutes of fencing, every event
// delivered to each. The server's own gauge of long-running requests counts the watches.
//
// Re-watch: client-node's ListWatch waits 1 s, 2 s, 4 s … up to 30 s before re-watching after each
// watch the server ends cleanly with no event since the previous one — the server ends watches on its
// timeout, on shutdown, when its watch cache reinitialises — and a change made meanwhile (a failover)
// reaches us that late. The informer is given a 3 s server-side watch timeout so the server ends watches
// often, and a recording `delay`, which sees what the informer waits before each re-watch.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { poll } from '../testenv/poll.ts';
import { useTestCluster } from '../testenv/shared-cluster.ts';
import { Informer, rewatchDelayMs } from './informer.ts';
import type { ResourceRef } from './client.ts';

// Nothing else in this file's cluster watches ConfigMaps (the stop test) or writes Secrets (re-watch).
const CONFIGMAPS: ResourceRef = { group: '', version: 'v1', plural: 'configmaps', namespace: 'default' };
const SECRETS: ResourceRef = { group: '', version: 'v1', plural: 'secrets', namespace: 'default' };

const shared = useTestCluster();

describe('Informer.stop', { timeout: 120_000 }, () => {
  /** Watches of ConfigMaps the server is serving now. */
  async function configMapWatches(): Promise<number> {
    const text = await shared.client.request<string>('GET', '/metrics');
    const line = String(text).split('\n').find((l) => l.startsWith('apiserver_longrunning_requests{') && l.includes('resource="configmaps"') && l.includes('verb="WATCH"'));
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  }

  it('stopped while its list is in flight, it opens no watch afterwards (and tells nobody of the list)', async () => {
    const heard: string[] = [];
    // Something for their lists to find (and, before the fix, to report).
    await shared.client.create(CONFIGMAPS, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'informer-stop' }, data: {} });
    for (let n = 0; n < 5; n++) {
      const i = new Informer(shared.client, { resource: CONFIGMAPS });
      i.onEvent((type) => heard.push(type));
      i.start(); // the list request is on its way
      i.stop();
    }
    // A live one, started after them: once it is synced, its watch is open — theirs would be too.
    const live = new Informer(shared.client, { resource: CONFIGMAPS });
    live.start();
    try {
      await live.waitForSync();
      await poll('the live informer\'s watch on the server', async () => (await configMapWatches()) >= 1, 20_000);
      // One more round trip behind every request sent so far, then count.
      await shared.client.list(CONFIGMAPS);
      assert.equal(await configMapWatches(), 1, 'watches of informers that were stopped are still open');
      assert.deepEqual(heard, []);
    } finally {
      live.stop();
    }
    await poll('no ConfigMap watch left', async () => (await configMapWatches()) === 0, 20_000);
  });
});

describe('Informer re-watch', { timeout: 180_000 }, () => {
  /** Secret watches (of the informer whose label selector is `test=<name>`) the server started / ended, oldest first. */
  function secretWatches(name: string, stage: 'ResponseStarted' | 'ResponseComplete'): URLSearchParams[] {
    return shared.cluster
      .auditEvents()
      .filter((e) => e.verb === 'watch' && e.objectRef?.resource === 'secrets' && e.stage === stage)
      .map((e) => new URL(e.requestURI, 'https://audit.invalid').searchParams)
      .filter((q) => q.get('labelSelector') === `test=${name}`);
  }

  it('re-watches at once after each watch the server ended, with nothing sent in between', async () => {
    const waits: number[] = [];
    const informer = new Informer<{ metadata: { name: string } }>(shared.client, {
      resource: SECRETS,
      labelSelector: 'test=rewatch',
      watchTimeoutSeconds: 3,
      delay: async (ms) => {
        waits.push(ms);
        await sleep(ms);
      },
    });
    informer.start();
    try {
      await informer.waitForSync();
      // Nobody writes Secrets, so the server has no event and no bookmark to send (a bookmark must be
      // newer than the watch's resourceVersion): each watch ends empty at its timeout.
      await poll('four watches ended by the server', () => secretWatches('rewatch', 'ResponseComplete').length >= 4, 90_000);
      await shared.client.create(SECRETS, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'after-quiet', labels: { test: 'rewatch' } } });
      await poll('the informer sees the Secret created after the quiet period', () => informer.get('after-quiet', 'default'), 30_000);
      // ListWatch asks for a delay from the second empty close on: at least three were asked for here.
      assert.ok(waits.length >= 3, `the server ended ${waits.length + 1} watches with nothing sent, expected at least 4`);
      // client-node alone would have waited 1000, 2000, 4000 … ms.
      assert.deepEqual(waits, waits.map(() => 0));
      for (const q of secretWatches('rewatch', 'ResponseStarted')) assert.equal(q.get('allowWatchBookmarks'), 'true');
    } finally {
      informer.stop();
    }
  });

  it('asks for bookmarks and re-watches from the resourceVersion they carry', async () => {
    const informer = new Informer(shared.client, { resource: SECRETS, labelSelector: 'test=bookmark', watchTimeoutSeconds: 3 });
    informer.start();
    try {
      await informer.waitForSync();
      const first = await poll('the first watch', () => secretWatches('bookmark', 'ResponseStarted')[0], 20_000);
      // A Secret the informer's selector leaves out: no event for it, but the server's cache of
      // Secrets moves past the informer's resourceVersion, so its next bookmark carries the newer one.
      const other = await shared.client.create<{ metadata: { resourceVersion: string } }>(SECRETS, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'unlabelled' } });
      const written = Number(other.metadata.resourceVersion);
      assert.ok(Number(first.get('resourceVersion')) < written);
      await poll(
        `a watch from resourceVersion ${written} or later`,
        () => secretWatches('bookmark', 'ResponseStarted').some((q) => Number(q.get('resourceVersion')) >= written),
        30_000,
      );
      assert.deepEqual(informer.list(), []);
    } finally {
      informer.stop();
    }
  });
});

describe('rewatchDelayMs', () => {
  it('re-watches at once after a watch that lasted a second; caps the wait after a shorter one at a second', () => {
    assert.equal(rewatchDelayMs(1000, 1000), 0);
    assert.equal(rewatchDelayMs(30_000, 3_600_000), 0);
    assert.equal(rewatchDelayMs(1000, 200), 1000);
    assert.equal(rewatchDelayMs(16_000, 200), 1000);
    assert.equal(rewatchDelayMs(500, 999), 500);
  });
});
