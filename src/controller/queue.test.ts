import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReconcileQueue, type PassResult } from './queue.ts';

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

test('a burst of requests coalesces into few passes, and a request during a pass gets a pass after it', async () => {
  let passes = 0;
  let release: (() => void) | undefined;
  const q = new ReconcileQueue(
    async (): Promise<PassResult> => {
      passes++;
      if (passes === 1) await new Promise<void>((r) => (release = r));
      return 'ok';
    },
    { minIntervalMs: 1 },
  );
  for (let i = 0; i < 100; i++) q.enqueue();
  await until(() => release !== undefined);
  for (let i = 0; i < 100; i++) q.enqueue();
  release?.();
  await until(() => passes === 2);
  await q.idle();
  assert.equal(passes, 2);
  q.stop();
});

test('a failed pass is retried without new requests', async () => {
  let passes = 0;
  const q = new ReconcileQueue(async (): Promise<PassResult> => (++passes < 3 ? 'error' : 'ok'), { minIntervalMs: 1, baseBackoffMs: 1 });
  q.enqueue();
  await until(() => passes === 3);
  q.stop();
});
