import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildAgentOptions, DEFAULT_AGENT_OPTIONS, parseDuration, parseListenAddress, timingProblems, type AgentFlagValues } from './options.ts';

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

test('the defaults satisfy refresh < lifetime <= fenceAfter < leaseDuration', () => {
  assert.deepEqual(timingProblems(DEFAULT_AGENT_OPTIONS), []);
});

test('each broken inequality of the timing invariant is reported, naming the flags', () => {
  const d = DEFAULT_AGENT_OPTIONS;
  const cases: Array<[Partial<typeof d>, RegExp]> = [
    [{ refreshIntervalMs: 1000 }, /--refresh-interval \(1s\) must be shorter than --address-lifetime \(1s\)/],
    [{ addressLifetimeMs: 2000, fenceAfterMs: 1000, leaseDurationMs: 3000 }, /--address-lifetime \(2s\) must not exceed --fence-after \(1s\)/],
    [{ fenceAfterMs: 2000 }, /--fence-after \(2s\) must be shorter than --lease-duration \(2s\)/],
    [{ addressLifetimeMs: 1500, fenceAfterMs: 1500 }, /whole seconds/],
    [{ renewIntervalMs: 1000 }, /--renew-interval \(1s\) must be shorter than --fence-after/],
  ];
  for (const [patch, re] of cases) {
    const problems = timingProblems({ ...d, ...patch });
    assert.ok(problems.some((p) => re.test(p)), `${JSON.stringify(patch)} → ${JSON.stringify(problems)}`);
  }
  // Equality is allowed where the invariant says ≤.
  assert.deepEqual(timingProblems({ ...d, addressLifetimeMs: 1000, fenceAfterMs: 1000 }), []);
  // A sub-second lease is fine (it travels in an annotation), as long as the invariant holds.
  assert.deepEqual(timingProblems({ ...d, leaseDurationMs: 1500 }), []);
  assert.ok(timingProblems({ ...d, leaseDurationMs: 1550 }).some((p) => /multiple of 100ms/.test(p)));
});

test('buildAgentOptions: node name from the flag or NODE_NAME, refuses unsafe timings', () => {
  assert.equal(buildAgentOptions({}, { NODE_NAME: 'n1' }).nodeName, 'n1');
  assert.equal(buildAgentOptions({ 'node-name': 'n2' }, { NODE_NAME: 'n1' }).nodeName, 'n2');
  assert.throws(() => buildAgentOptions({}, {}), /--node-name \(or \$NODE_NAME\) is required/);
  assert.throws(() => buildAgentOptions({ 'node-name': 'n', 'fence-after': '3s' }, {}), /--fence-after \(3s\) must be shorter than --lease-duration/);
  assert.throws(() => buildAgentOptions({ 'node-name': 'n', 'renew-interval': 'soon' }, {}), /--renew-interval: "soon" is not a duration/);
  const o = buildAgentOptions({ 'node-name': 'n', 'metrics-addr': ':9999', 'no-heartbeat': true }, {});
  assert.equal(o.metricsPort, 9999);
  assert.equal(o.metricsHost, '0.0.0.0');
  assert.equal(o.heartbeat, false);
});

test('buildAgentOptions: --dataplane linux needs the cluster CIDRs and takes the data plane settings', () => {
  const o = buildAgentOptions({ 'node-name': 'n', dataplane: 'linux', 'pod-cidr': ['10.0.0.0/16'], 'service-cidr': ['10.96.0.0/12'], 'fwmark-mask': '0x00ff0000', 'route-table-base': '30000', cleanup: true }, {});
  assert.equal(o.dataplane, 'linux');
  assert.deepEqual(o.podCIDRs, ['10.0.0.0/16']);
  assert.equal(o.dataplaneSettings.markMask, 0x00ff0000);
  assert.equal(o.dataplaneSettings.routeTableBase, 30000);
  assert.equal(o.cleanup, true);
  assert.equal(buildAgentOptions({ 'node-name': 'n' }, {}).dataplane, 'cilium');
  const cases: Array<[AgentFlagValues, RegExp]> = [
    [{ dataplane: 'bpf' }, /--dataplane: "bpf" is not one of cilium, linux/],
    [{ dataplane: 'linux', 'service-cidr': ['10.96.0.0/12'] }, /--pod-cidr is required with --dataplane linux/],
    [{ dataplane: 'linux', 'pod-cidr': ['fd00::/64'], 'service-cidr': ['10.96.0.0/12'] }, /--pod-cidr: IPv6 CIDR "fd00::\/64" is not supported/],
    [{ dataplane: 'linux', 'pod-cidr': ['10.0.0.0/16'], 'service-cidr': ['10.96.0.0/12'], 'fwmark-mask': '0x3' }, /--fwmark-mask: 0x3 must be at least 8 contiguous bits/],
    [{ dataplane: 'linux', 'pod-cidr': ['10.0.0.0/16'], 'service-cidr': ['10.96.0.0/12'], 'tunnel-port': 'x' }, /--tunnel-port: "x" is not a number/],
    [{ cleanup: true }, /--cleanup, --pod-cidr and --service-cidr need --dataplane linux/],
  ];
  for (const [values, re] of cases) {
    assert.throws(() => buildAgentOptions({ 'node-name': 'n', ...values }, {}), re, JSON.stringify(values));
  }
});
