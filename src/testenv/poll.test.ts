// poll: the deadline is on the monotonic clock, so a wall-clock step does not end a poll early.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { poll, PollTimeout } from './poll.ts';

describe('poll', () => {
  it('resolves with the first answer; times out naming what it waited for', async () => {
    let n = 0;
    assert.equal(await poll('three probes', () => (++n >= 3 ? n : undefined), 5_000, { intervalMs: 1 }), 3);
    await assert.rejects(poll('never', () => false, 30, { intervalMs: 5 }), (e: unknown) => e instanceof PollTimeout && /waiting for never/.test(e.message));
  });

  it('a wall-clock step forward (NTP, a VM resumed) does not end the poll early', async () => {
    const realNow = Date.now;
    let probes = 0;
    try {
      const answer = await poll('the fifth probe', () => {
        probes++;
        // The wall clock jumps a minute ahead after the first probe.
        if (probes === 1) Date.now = () => realNow() + 60_000;
        return probes >= 5 ? 'done' : undefined;
      }, 10_000, { intervalMs: 5 });
      assert.equal(answer, 'done');
    } finally {
      Date.now = realNow;
    }
  });
});
