import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseControllerArgs, parseDuration, parseListenAddr } from './options.ts';

test('defaults follow the cilium install profile: cilium-agent pods as upstream Cilium runs them', () => {
  const o = parseControllerArgs([]);
  assert.equal(o.ciliumNamespace, 'kube-system');
  assert.equal(o.ciliumSelector, 'k8s-app=cilium');
  assert.equal(o.agentNamespace, 'egressgw-system');
  assert.equal(o.agentSelector, 'app=egress-gateway-agent');
  assert.equal(o.heartbeatNamespace, 'egressgw-system');
  assert.equal(o.leaderElectNamespace, 'egressgw-system');
  assert.equal(o.heartbeatDurationMs, 2000);
  assert.equal(o.handoverTimeoutMs, 5000);
  assert.equal(o.leaderElect, true);
  assert.equal(o.leaseDurationMs, 15000);
  assert.equal(o.renewDeadlineMs, 10000);
  assert.equal(o.retryPeriodMs, 2000);
  assert.equal(o.metricsAddr, ':8080');
  assert.equal(o.resyncMs, 30000);
});

test('flags and their errors', () => {
  assert.equal(parseControllerArgs(['--leader-elect=false']).leaderElect, false);
  assert.equal(parseControllerArgs(['--no-leader-elect']).leaderElect, false);
  assert.equal(parseControllerArgs(['--heartbeat-namespace', 'x']).leaderElectNamespace, 'x');
  assert.equal(parseControllerArgs(['--resync=1m30s']).resyncMs, 90_000);
  assert.throws(() => parseControllerArgs(['--resync', 'soon']), /--resync/);
  assert.throws(() => parseControllerArgs(['--bogus']), /bogus/);
  assert.throws(() => parseControllerArgs(['--leader-elect-renew-deadline', '20s']), /renew deadline/);
  assert.throws(() => parseControllerArgs(['--log-level', 'loud']), /log-level/);
  assert.throws(() => parseControllerArgs(['--metrics-addr', 'nowhere']), /metrics-addr/);
});

test('durations and listen addresses', () => {
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('700'), 700);
  assert.throws(() => parseDuration('2 s'));
  assert.deepEqual(parseListenAddr(':8080'), { host: undefined, port: 8080 });
  assert.deepEqual(parseListenAddr('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  assert.deepEqual(parseListenAddr('[::1]:9'), { host: '::1', port: 9 });
  assert.equal(parseListenAddr(''), undefined);
});
