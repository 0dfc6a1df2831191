// "404 means gone?" against the real test API server. Right after an API server restart the custom
// resources answer 404 for a while (their CRDs are not served yet); the chaos suite met it. That 404
// says nothing about the object: the controller must not take it for "already unlabelled / deleted /
// done", and a make write that met it must hold the pass's break writes back (make before break).
// The server here starts without our CRDs (the window after a restart, held open), then gets them.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { useTestCluster } from '../../src/testenv/shared-cluster.ts';
import { isObjectGone, isStatus, isUnserved } from '../../src/kube/client.ts';
import { mergePatchIfExists } from '../../src/kube/patch.ts';
import { EventRecorder } from '../../src/kube/events.ts';
import { CILIUM_NODES, INSTANCES, NODES } from '../../src/kube/resources.ts';
import { applyWrites } from '../../src/controller/apply.ts';
import { ControllerMetrics } from '../../src/controller/metrics.ts';
import type { Write } from '../../src/core/types.ts';
import { repoRoot, testLogger, waitFor } from './helpers.ts';

const KEY = 'egress-gateway.network.deckhouse.io/active-for-gw-x';

const shared = useTestCluster();

/** The error a call fails with (the test fails if it does not). */
async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  assert.fail('expected the call to fail');
}

function ctx(metrics: ControllerMetrics) {
  return {
    client: shared.client,
    recorder: new EventRecorder(shared.client, { reportingController: 'egressgw-test', reportingInstance: 'test' }),
    metrics,
    log: testLogger('not-served'),
    mayWrite: () => true,
    cached: { instance: () => undefined, gateway: () => undefined, policy: () => undefined },
  };
}

describe('a 404 for a resource that is not served is not "the object is gone"', () => {
  it('the real server: a missing object names itself; an unserved resource does not', async () => {
    const gone = await failure(shared.client.get(NODES, 'no-such-node'));
    assert.ok(isObjectGone(gone, 'no-such-node'), 'a missing Node is gone');
    assert.equal(isObjectGone(gone, 'another-node'), false, 'a Status naming another object is not this one gone');
    assert.equal(isUnserved(gone), false);
    // Thunks, called one at a time: promises made up front would reject before they are awaited (an
    // unhandled rejection fails the test file).
    for (const call of [
      () => shared.client.get(INSTANCES, 'inst-1'),
      () => shared.client.delete(INSTANCES, 'inst-1'),
      () => shared.client.mergePatch(CILIUM_NODES, 'n1', { metadata: { labels: { a: '' } } }),
    ]) {
      const err = await failure(call());
      assert.ok(isStatus(err, 404), `a 404 (got ${String(err)})`);
      assert.equal(isObjectGone(err), false, 'an unserved resource says nothing about the object');
      assert.ok(isUnserved(err));
    }
  });

  it('tryGet, deleteIfExists and mergePatchIfExists throw instead of reporting "not there"', async () => {
    assert.ok(isUnserved(await failure(shared.client.tryGet(INSTANCES, 'inst-1'))));
    assert.ok(isUnserved(await failure(shared.client.deleteIfExists(INSTANCES, 'inst-1'))));
    assert.ok(isUnserved(await failure(mergePatchIfExists(shared.client, CILIUM_NODES, 'n1', { metadata: { labels: { a: '' } } }))));
    // The served, missing cases still read as "not there".
    assert.equal(await shared.client.tryGet(NODES, 'no-such-node'), undefined);
    assert.equal(await shared.client.deleteIfExists(NODES, 'no-such-node'), false);
    assert.equal(await mergePatchIfExists(shared.client, NODES, 'no-such-node', { metadata: { labels: { a: '' } } }), false);
  });

  it('a label addition that met an unserved resource fails and holds the removal back; it lands once the CRDs are served', async () => {
    await shared.client.create(NODES, { apiVersion: 'v1', kind: 'Node', metadata: { name: 'old-active', labels: { [KEY]: '' } } });
    // A handover: the new node's CiliumNode gets the label, then the old Node loses it.
    const writes: Write[] = [
      { kind: 'addLabels', target: 'CiliumNode', name: 'new-active', keys: [KEY] },
      { kind: 'removeLabels', target: 'Node', name: 'old-active', keys: [KEY] },
      { kind: 'deleteInstance', name: 'gw-x-old-active' },
    ];
    const metrics = new ControllerMetrics();
    const res = await applyWrites(ctx(metrics), writes);
    assert.equal(res.failed, 1, 'the addition failed (it did nothing)');
    assert.equal(res.succeeded, 0);
    assert.equal(res.deferred, 2, 'the removal and the deletion were held back');
    const old = await shared.client.get<{ metadata: { labels?: Record<string, string> } }>(NODES, 'old-active');
    assert.equal(old.metadata.labels?.[KEY], '', 'the old node keeps its label');
    const errors = await metrics.registry.getSingleMetricAsString('egressgw_write_errors_total');
    assert.match(errors, /kind="addLabels"\} 1/);

    // A deletion alone (no make write before it) is a failure too, not "already gone".
    const del = await applyWrites(ctx(metrics), [{ kind: 'deleteInstance', name: 'gw-x-old-active' }]);
    assert.equal(del.failed, 1);

    // The CRDs come (the restarted server serves them again): the same pass now goes through.
    await shared.cluster.applyCRDs([join(repoRoot, 'deploy', 'crds'), join(repoRoot, 'test', 'fixtures', 'crds', 'cilium')]);
    await shared.client.create(CILIUM_NODES, { apiVersion: 'cilium.io/v2', kind: 'CiliumNode', metadata: { name: 'new-active' }, spec: {} });
    const again = await waitFor('the pass applies once the CRDs are served', async () => {
      const r = await applyWrites(ctx(metrics), writes);
      return r.failed === 0 ? r : undefined;
    });
    assert.equal(again.succeeded, 3);
    const cn = await shared.client.get<{ metadata: { labels?: Record<string, string> } }>(CILIUM_NODES, 'new-active');
    assert.equal(cn.metadata.labels?.[KEY], '');
    const oldAfter = await shared.client.get<{ metadata: { labels?: Record<string, string> } }>(NODES, 'old-active');
    assert.equal(oldAfter.metadata.labels?.[KEY], undefined);
  });
});
