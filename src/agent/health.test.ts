import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readiness, startHealthServer } from './health.ts';
import { createAgentMetrics } from './metrics.ts';
import { uplinksJson } from './heartbeat.ts';

test('readiness needs a recent renewal and the ability to send frames', () => {
  const ok = { ok: true };
  assert.deepEqual(readiness({ heartbeatEnabled: true, sinceLastRenewalMs: 100, fenceAfterMs: 1000, frames: ok }), { ok: true, reasons: [] });
  assert.match(readiness({ heartbeatEnabled: true, sinceLastRenewalMs: 1000, fenceAfterMs: 1000, frames: ok }).reasons[0] ?? '', /1000ms ago/);
  assert.match(readiness({ heartbeatEnabled: true, sinceLastRenewalMs: Infinity, fenceAfterMs: 1000, frames: ok }).reasons[0] ?? '', /no successful renewal yet/);
  assert.equal(readiness({ heartbeatEnabled: false, sinceLastRenewalMs: Infinity, fenceAfterMs: 1000, frames: ok }).ok, true);
  const noFrames = readiness({ heartbeatEnabled: true, sinceLastRenewalMs: 0, fenceAfterMs: 1000, frames: { ok: false, reason: 'EPERM' } });
  assert.equal(noFrames.ok, false);
  assert.match(noFrames.reasons.join(), /EPERM/);
  const holding = readiness({ heartbeatEnabled: true, sinceLastRenewalMs: 100, fenceAfterMs: 1000, frames: ok, holding: 'taking no VIPs for 300ms more' });
  assert.deepEqual(holding, { ok: false, reasons: ['heartbeat: taking no VIPs for 300ms more'] });
});

test('uplinks JSON is independent of key and address order', () => {
  assert.equal(
    uplinksJson({ eth1: { up: false, ipv4: [] }, eth0: { up: true, ipv4: ['198.18.0.2', '198.18.0.1'] } }),
    uplinksJson({ eth0: { up: true, ipv4: ['198.18.0.1', '198.18.0.2'] }, eth1: { up: false } }),
  );
});

test('health server: /healthz, /readyz follows the check, /metrics exports the agent metrics', async () => {
  const metrics = createAgentMetrics('n1', { defaultMetrics: false });
  metrics.fenceEvents.inc();
  let ready = false;
  const srv = await startHealthServer({ host: '127.0.0.1', port: 0, registry: metrics.registry, ready: () => ({ ok: ready, reasons: ready ? [] : ['heartbeat: no successful renewal yet'] }) });
  try {
    const base = `http://${srv.address}`;
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    const r1 = await fetch(`${base}/readyz`);
    assert.equal(r1.status, 503);
    assert.match(await r1.text(), /no successful renewal/);
    ready = true;
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    const text = await (await fetch(`${base}/metrics`)).text();
    assert.match(text, /egressgw_agent_fence_events_total\{node="n1"\} 1/);
    assert.match(text, /egressgw_agent_heartbeat_renew_seconds_bucket/);
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  } finally {
    await srv.close();
  }
});
