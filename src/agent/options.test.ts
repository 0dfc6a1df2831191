import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FENCE_MARGIN_MS, trustedLeaseMs } from '../api/fencing.ts';
import { buildAgentOptions, DEFAULT_AGENT_OPTIONS, parseDuration, parseListenAddress, timingProblems } from './options.ts';

test('durations: ms, s, m and bare milliseconds; garbage is rejected', () => {
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('2s'), 2000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('1m'), 60_000);
  assert.equal(parseDuration('300'), 300);
  assert.equal(parseDuration('2 sec'), undefined);
  assert.equal(parseDuration('-1s'), undefined);
});

test('listen addresses: host:port, [v6]:port, :port', () => {
  assert.deepEqual(parseListenAddress('127.0.0.1:9870'), { host: '127.0.0.1', port: 9870 });
  assert.deepEqual(parseListenAddress(':9870'), { host: '0.0.0.0', port: 9870 });
  assert.deepEqual(parseListenAddress('[::1]:80'), { host: '::1', port: 80 });
  assert.equal(parseListenAddress('9870'), undefined);
  assert.equal(parseListenAddress('a:99999'), undefined);
});

test('the defaults satisfy the invariant', () => {
  assert.deepEqual(timingProblems(DEFAULT_AGENT_OPTIONS), []);
});

test('each broken rule is reported, naming the flags', () => {
  const d = DEFAULT_AGENT_OPTIONS;
  const cases: Array<[Partial<typeof d>, RegExp]> = [
    [{ fenceAfterMs: 750 }, /--fence-after \(750ms\) \+ 100ms must not exceed --lease-duration \(800ms\)/],
    [{ fenceAfterMs: 800 }, /--fence-after \(800ms\) \+ 100ms must not exceed --lease-duration/],
    [{ leaseDurationMs: 700 }, /--fence-after \(650ms\) \+ 100ms must not exceed --lease-duration \(700ms\)/],
    [{ renewIntervalMs: 650 }, /--renew-interval \(650ms\) must be shorter than --fence-after \(650ms\)/],
    [{ refreshIntervalMs: 1000 }, /--refresh-interval \(1s\) must be shorter than --address-lifetime \(1s\)/],
    [{ addressLifetimeMs: 1500 }, /--address-lifetime must be whole seconds/],
    [{ renewIntervalMs: 0 }, /--renew-interval must be positive/],
    [{ leaseDurationMs: 1_000_000 }, /--lease-duration must be at most/],
  ];
  for (const [patch, re] of cases) {
    const problems = timingProblems({ ...d, ...patch });
    assert.ok(problems.some((p) => re.test(p)), `${JSON.stringify(patch)} → ${JSON.stringify(problems)}`);
  }
  // Equality is allowed where the rule says ≤; the address lifetime no longer has to fit in the lease.
  assert.deepEqual(timingProblems({ ...d, fenceAfterMs: 700 }), []);
  assert.deepEqual(timingProblems({ ...d, addressLifetimeMs: 5000, refreshIntervalMs: 1000 }), []);
  // The design's old 2 s setting is still accepted.
  assert.deepEqual(timingProblems({ ...d, renewIntervalMs: 500, fenceAfterMs: 1000, leaseDurationMs: 2000 }), []);
});

test('property: every combination the agent accepts keeps the switch closed before the controller may elect another node', () => {
  const ms = fc.integer({ min: -100, max: 5000 });
  fc.assert(fc.property(ms, ms, ms, ms, fc.integer({ min: -1, max: 5 }).map((s) => s * 1000), (renew, lease, fence, refresh, lifetime) => {
    const o = { renewIntervalMs: renew, leaseDurationMs: lease, fenceAfterMs: fence, refreshIntervalMs: refresh, addressLifetimeMs: lifetime, reannounceIntervalMs: 10_000 };
    const ok = timingProblems(o).length === 0;
    if (!ok) return true;
    // Accepted: safe (the controller's trusted lease covers the switch with margin) and live (a
    // renewal can be answered before the switch closes), with durations the kernel can take.
    return fence + FENCE_MARGIN_MS <= lease && trustedLeaseMs(lease, fence) === lease && renew < fence && renew > 0 && refresh < lifetime && lifetime % 1000 === 0;
  }), { numRuns: 2000 });
  // And the other way round: whatever breaks safety is refused, with the flags named.
  fc.assert(fc.property(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 5000 }), (fence, lease) => {
    fc.pre(fence + FENCE_MARGIN_MS > lease);
    return timingProblems({ ...DEFAULT_AGENT_OPTIONS, renewIntervalMs: 1, fenceAfterMs: fence, leaseDurationMs: lease })
      .some((p) => p.includes('--fence-after') && p.includes('--lease-duration'));
  }), { numRuns: 1000 });
});

test('buildAgentOptions: node name from the flag or NODE_NAME, refuses unsafe timings', () => {
  assert.equal(buildAgentOptions({}, { NODE_NAME: 'n1' }).nodeName, 'n1');
  assert.equal(buildAgentOptions({ 'node-name': 'n2' }, { NODE_NAME: 'n1' }).nodeName, 'n2');
  assert.throws(() => buildAgentOptions({}, {}), /--node-name \(or \$NODE_NAME\) is required/);
  assert.throws(() => buildAgentOptions({ 'node-name': 'n', 'fence-after': '3s' }, {}), /--fence-after \(3s\) \+ 100ms must not exceed --lease-duration/);
  assert.throws(() => buildAgentOptions({ 'node-name': 'n', 'lease-duration': '1500ms', 'fence-after': '1450ms' }, {}), /--fence-after \(1450ms\) \+ 100ms must not exceed --lease-duration \(1500ms\)/);
  assert.throws(() => buildAgentOptions({ 'node-name': 'n', 'renew-interval': 'soon' }, {}), /--renew-interval: "soon" is not a duration/);
  const o = buildAgentOptions({ 'node-name': 'n', 'metrics-addr': ':9999', 'no-heartbeat': true }, {});
  assert.equal(o.metricsPort, 9999);
  assert.equal(o.metricsHost, '0.0.0.0');
  assert.equal(o.heartbeat, false);
});
