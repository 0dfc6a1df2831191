// Correctness facts of the controller bench at quick sizes (no timing: speed is `npm run bench`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runControllerBench } from '../../bench/controller.ts';

test('controller bench (quick): unchanged resyncs write nothing; a failed node moves exactly its gateways', async () => {
  const r = await runControllerBench({ quick: true, log: () => undefined });
  // Every gateway was settled before measuring, so an unchanged full resync plans no write at all.
  assert.deepEqual(r.correctness.unchangedResyncWriteKinds, {});
  assert.equal(r.correctness.unchangedResyncWrites, 0);
  assert.equal(r.correctness.finalResyncWrites, 0);
  // Each failure moved the active-for label of exactly the gateways active on the failed node, to another node.
  assert.equal(r.correctness.failureEvents, 20);
  assert.ok(r.correctness.affectedGatewaysTotal >= r.correctness.failureEvents);
  assert.deepEqual(r.correctness.mismatchExamples, []);
  assert.equal(r.correctness.labelMoveMismatches, 0);
  // Both failure kinds and both gateway modes were exercised, and each failure pass planned writes.
  assert.equal(r.failure.byKind.NodeNotReady.n, 10);
  assert.equal(r.failure.byKind.HeartbeatExpired.n, 10);
  assert.deepEqual(Object.keys(r.failure.byMode).sort(), ['PrimaryIP', 'VIP']);
  assert.ok(r.failure.writesMedian > 0);
  assert.ok((r.failure.writeKinds['removeLabels'] ?? 0) > 0);
  // No failback: a failed node that recovers takes nothing back.
  assert.equal(r.correctness.recoveryLabelMoves, 0);
});
