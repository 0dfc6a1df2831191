// The agent's heartbeat against the real test API server: what it leaves on its Lease.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Fixture, NS } from '../controller/helpers.ts';
import { Heartbeat, uplinksJson, type Uplinks } from '../../src/agent/heartbeat.ts';
import { UPLINKS_ANNOTATION } from '../../src/api/names.ts';
import type { LeaseLike } from '../../src/api/types.ts';
import { leases } from '../../src/kube/resources.ts';
import { silentLogger } from '../../src/kube/log.ts';
import { poll } from '../../src/testenv/poll.ts';

let f: Fixture;
before(async () => {
  f = await Fixture.start();
});
after(async () => {
  await f?.stop();
});

const UP: Uplinks = { eth0: { up: true, ipv4: ['198.18.0.11'], ipv6: [] } };
const DOWN: Uplinks = { eth0: { up: false, ipv4: ['198.18.0.11'], ipv6: [] } };

test('heartbeat: a stale uplink state left on the Lease (a renewal the server applied after a newer one) is corrected by the next renewals', async () => {
  const hb = new Heartbeat({
    client: f.client,
    namespace: NS,
    node: 'hb-uplinks-1',
    renewIntervalMs: 100,
    leaseDurationMs: 800,
    fenceAfterMs: 650,
    requestTimeoutMs: 650,
    uplinks: () => UP,
    log: silentLogger,
  });
  const annotation = async (): Promise<string | undefined> =>
    (await f.client.get<LeaseLike>(leases(NS), hb.leaseName)).metadata?.annotations?.[UPLINKS_ANNOTATION];
  hb.start();
  try {
    await poll('the Lease carries the uplink state', async () => (await annotation()) === uplinksJson(UP), 10_000);
    // What an overlapping renewal sent while the link was down, aborted by the agent at its timeout but
    // applied by the server after the newer renewals, leaves behind. The agent's state is UP throughout.
    await f.client.mergePatch(leases(NS), hb.leaseName, { metadata: { annotations: { [UPLINKS_ANNOTATION]: uplinksJson(DOWN) } } });
    assert.equal(await annotation(), uplinksJson(DOWN));
    await poll('the Lease carries the agent\'s uplink state again', async () => (await annotation()) === uplinksJson(UP), 5_000);
  } finally {
    hb.stop();
  }
});
