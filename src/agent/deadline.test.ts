// The fence deadline, and a model check of the timing argument in src/api/fencing.ts: an agent renewing
// through a slow, lossy API, a controller watching with some delay, and a failure (kill -9, SIGSTOP and
// resume, API cut and heal). Whenever the controller may declare the node dead, the node's kernel switch
// must already be closed — for every timing combination the agent accepts at start-up.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FENCE_MARGIN_MS, trustedLeaseMs } from '../api/fencing.ts';
import { FenceDeadline } from './deadline.ts';
import { DEFAULT_AGENT_OPTIONS, timingProblems } from './options.ts';

describe('FenceDeadline', () => {
  it('an answer moves the deadline to its send time + fenceAfter while the switch is open', () => {
    const d = new FenceDeadline(600);
    assert.equal(d.open(0), false);
    assert.equal(d.accepted(0, 50), 'restarted', 'the first answer starts a chain');
    assert.equal(d.deadline, 600);
    assert.equal(d.accepted(200, 450), 'extended');
    assert.equal(d.deadline, 800, 'from the send time, not the answer time');
    assert.equal(d.accepted(100, 460), 'extended', 'an older answer arriving late');
    assert.equal(d.deadline, 800, 'never moves the deadline back');
    assert.equal(d.open(799), true);
    assert.equal(d.open(800), false);
  });

  it('an answer after the deadline starts a new chain; one too late to count changes nothing', () => {
    const d = new FenceDeadline(600);
    d.accepted(0, 10);
    assert.equal(d.accepted(500, 650), 'restarted', 'the switch had closed at 600');
    assert.equal(d.deadline, 1100);
    assert.equal(d.accepted(200, 900), 'stale', 'sent at 200: counts until 800 only');
    assert.equal(d.deadline, 1100);
    d.close();
    assert.equal(d.open(700), false);
  });
});

const TICK_MS = 10; // nftables timeouts run on jiffies: at most a tick or two late (HZ ≥ 100)
const WATCH_LAG_MS = FENCE_MARGIN_MS - TICK_MS; // the assumption the margin stands for

interface Renewal {
  sent: number;
  /** When the API server accepted it (undefined: lost). */
  accepted?: number;
  /** When the agent processed the answer (undefined: never, or after its request timeout). */
  processed?: number;
  /** When the controller's watch delivered it. */
  observed?: number;
}

describe('timing model', () => {
  it('property: the switch is closed whenever the controller may declare the node dead', () => {
    const timings = fc.record({
      renew: fc.integer({ min: 20, max: 600 }),
      fenceExtra: fc.integer({ min: 1, max: 1500 }),
      leaseExtra: fc.integer({ min: FENCE_MARGIN_MS, max: 1500 }),
    }).map(({ renew, fenceExtra, leaseExtra }) => ({ renew, fence: renew + fenceExtra, lease: renew + fenceExtra + leaseExtra }));
    fc.assert(fc.property(
      timings,
      fc.constantFrom('kill', 'freeze', 'cut'),
      fc.integer({ min: 0, max: 4000 }),
      fc.integer({ min: 0, max: 6000 }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 700 }), fc.integer({ min: 0, max: 700 }), fc.integer({ min: 0, max: WATCH_LAG_MS })), { minLength: 1, maxLength: 60 }),
      (t, kind, failAt, outage, lat) => {
        const o = { ...DEFAULT_AGENT_OPTIONS, renewIntervalMs: t.renew, fenceAfterMs: t.fence, leaseDurationMs: t.lease };
        fc.pre(timingProblems(o).length === 0);
        const resumeAt = failAt + outage; // freeze: resumed; cut: healed; kill: never
        const end = resumeAt + 3 * t.lease + 2000;
        // The agent holds the VIP at 0 on a chain whose last renewal (sent, accepted, seen and answered
        // at 0) is where the story starts; then one renewal every renew interval, each aborted after
        // fenceAfter (the agent sends one per tick even while others are in flight).
        const renewals: Renewal[] = [{ sent: 0, accepted: 0, observed: 0, processed: 0 }];
        for (let tick = t.renew, i = 0; tick < end; tick += t.renew) {
          const sendable = kind === 'kill' ? tick < failAt : kind === 'freeze' ? tick < failAt || tick >= resumeAt : true;
          if (!sendable) continue;
          const [toServer, back, watch] = lat[i++ % lat.length]!;
          const r: Renewal = { sent: tick };
          const arrives = tick + toServer;
          const cut = kind === 'cut' && arrives >= failAt && arrives < resumeAt;
          if (!cut) {
            r.accepted = arrives;
            r.observed = arrives + watch;
            let answer = arrives + back;
            if (kind === 'cut' && answer >= failAt && answer < resumeAt) answer = Infinity; // the way back is cut too
            if (kind === 'kill' && answer >= failAt) answer = Infinity;
            if (kind === 'freeze' && answer >= failAt && answer < resumeAt) answer = resumeAt; // read on resume
            if (answer - tick < t.fence) r.processed = answer;
          }
          renewals.push(r);
        }
        // The controller: dead at the first moment it has seen no renewal for its trusted lease.
        const trusted = trustedLeaseMs(t.lease, t.fence);
        const seen = renewals.map((r) => r.observed).filter((x): x is number => x !== undefined).sort((a, b) => a - b);
        let death = (seen.at(-1) ?? 0) + trusted;
        for (let k = 0; k + 1 < seen.length; k++) {
          if (seen[k + 1]! - seen[k]! > trusted) {
            death = seen[k]! + trusted;
            break;
          }
        }
        if (seen.length === 0 || seen[0]! > trusted) return true; // never alive in its eyes
        // The agent up to that moment: it holds the VIP from the start, loses it when the deadline
        // passes, and may take it again a lease after a new chain started — only if the controller has
        // not declared it dead by then (the instance would be gone).
        const d = new FenceDeadline(t.fence);
        let holding = true;
        let retakeAt = Infinity;
        const answers = renewals.filter((r) => r.processed !== undefined && r.processed <= death).sort((a, b) => a.processed! - b.processed!);
        for (const r of answers) {
          if (retakeAt <= r.processed!) {
            holding = true;
            retakeAt = Infinity;
          }
          if (holding && !d.open(r.processed!) && d.deadline !== -Infinity) holding = false;
          const res = d.accepted(r.sent, r.processed!);
          if (res === 'restarted' && r !== renewals[0]) {
            holding = false;
            retakeAt = r.processed! + t.lease;
          }
        }
        if (retakeAt <= death) holding = true;
        // Closed by then, counting the kernel's tick of lateness.
        return !holding || d.deadline + TICK_MS <= death;
      },
    ), { numRuns: 3000 });
  });
});
