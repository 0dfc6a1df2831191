// The SNAT remap replication's edges (docs/dataplane.md, "Replicating the remapped connections"), with a
// real API server as the channel and a real conntrack table (a gateway node's namespace, entries inserted
// with the conntrack tool): what the active node publishes, that a node the controller has moved the
// gateway away from cannot overwrite the list, that the next owner replaces a stale entry of its own, and a
// node without the conntrack tool. Both connections of a clash surviving a failover with real traffic:
// test/dataplane/snat-clash.test.ts.
//
// Needs root, ip, nft and conntrack (Debian package conntrack).
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { INTERNAL_API_VERSION, KIND_DATAPLANE, MODE_VIP } from '../../src/api/names.ts';
import type { EgressGatewayDataplane, SnatRemap } from '../../src/api/types.ts';
import { ConntrackTool } from '../../src/agent/dataplane/conntrack.ts';
import { createDataplaneMetrics } from '../../src/agent/dataplane/metrics.ts';
import { RemapReplicator } from '../../src/agent/dataplane/remaps.ts';
import { createRunner } from '../../src/agent/net/exec.ts';
import { seedArgs } from '../../src/dataplane/remaps.ts';
import { silentLogger, type Logger } from '../../src/kube/log.ts';
import { DATAPLANES } from '../../src/kube/resources.ts';
import { useTestCluster } from '../../src/testenv/shared-cluster.ts';
import { Network, assertNetnsSupported, type NetNode } from '../../src/testenv/netns.ts';

const VIP = '198.18.0.100';
const SERVER = '203.0.113.10';

describe('SNAT remap replication: publishing, the stale writer, seeding over stale entries, no conntrack tool', { concurrency: false }, () => {
  const api = useTestCluster({ crds: join(import.meta.dirname, '..', '..', 'deploy', 'crds') });
  let lab: Network;
  let node: NetNode;

  before(async () => {
    await assertNetnsSupported(); // fails (not skips) without root: required in CI
    lab = await Network.create({ nodes: 1, prefix: 'egr' });
    node = lab.nodes[0]!;
    // A NAT hook in the namespace: the kernel sets up an inserted entry's SNAT binding only where NAT is in use.
    await lab.exec(node.ns, 'nft', ['add table ip remaptest; add chain ip remaptest post { type nat hook postrouting priority 100; }']);
  });

  after(async () => {
    await lab?.teardown();
  });

  /** Every replicator a case made: stopped after it, pass or fail (their timers would keep the run alive). */
  const made: RemapReplicator[] = [];
  beforeEach(async () => {
    await lab.exec(node.ns, 'conntrack', ['-F']);
  });
  afterEach(async () => {
    for (const r of made.splice(0)) await r.stop();
  });

  const remap = (podPort: number, natPort: number, podIP = '198.18.16.5'): SnatRemap => ({ podIP, podPort, serverIP: SERVER, serverPort: 80, natPort });
  /** An established connection as the node's SNAT left it (natPort = podPort: it kept its port). */
  const track = (r: SnatRemap, vip = VIP) => lab.exec(node.ns, 'conntrack', seedArgs(r, vip, 300));
  const tracked = async () => (await lab.exec(node.ns, 'conntrack', ['-L', '-p', 'tcp'])).split('\n').filter((l) => l.includes('ESTABLISHED')).map((l) => /sport=(\d+) .*dport=(\d+) \[/.exec(l)!.slice(1).map(Number)).sort();
  const putDataplane = (name: string, active: string) =>
    api.client.apply<EgressGatewayDataplane>(DATAPLANES, name, {
      apiVersion: INTERNAL_API_VERSION,
      kind: KIND_DATAPLANE,
      metadata: { name },
      spec: { tunnelID: 7, activeNodeName: active, tunnelEndpoint: '198.18.0.11', sourceIP: { mode: MODE_VIP, ip: VIP }, policies: [] },
    }, { fieldManager: 'test-controller', force: true });
  const status = async (name: string) => (await api.client.get<EgressGatewayDataplane>(DATAPLANES, name)).status?.snatRemaps;
  /** A replicator whose passes the case runs itself (`publish()`), not its timer. */
  const replicator = (gateways: () => EgressGatewayDataplane[], opts: { nodeName?: string; conntrack?: string; log?: Logger } = {}) => {
    const r = new RemapReplicator({ nodeName: opts.nodeName ?? node.name, intervalMs: 3_600_000 }, {
      client: api.client,
      conntrack: new ConntrackTool(createRunner({ netns: node.ns, ...(opts.conntrack ? { binaries: { conntrack: opts.conntrack } } : {}) })),
      gateways,
      metrics: createDataplaneMetrics(new Registry()),
      log: opts.log ?? silentLogger,
    });
    made.push(r);
    return r;
  };

  it('the active node publishes the remapped connections of its VIP only, sorted, and writes nothing while they stay the same', async () => {
    await putDataplane('pub', node.name);
    await track(remap(40002, 51000));
    await track(remap(40001, 52000, '198.18.16.6'));
    await track(remap(40003, 40003)); // kept its port: the next node's pickup keeps it too
    await track(remap(40004, 53000), '198.18.0.101'); // another VIP's connection
    const get = () => api.client.get<EgressGatewayDataplane>(DATAPLANES, 'pub');
    const snapshot = [await get()];
    const r = replicator(() => snapshot);
    await r.start();
    await r.publish();
    const after1 = await get();
    assert.deepEqual(after1.status?.snatRemaps, { node: node.name, vip: VIP, omitted: 0, connections: [remap(40002, 51000), remap(40001, 52000, '198.18.16.6')] });
    // Its cache has not seen its own write yet (the same snapshot): no second write.
    await r.publish();
    assert.equal((await get()).metadata.resourceVersion, after1.metadata.resourceVersion);
    // Nor from the newer object.
    snapshot[0] = after1;
    await r.publish();
    assert.equal((await get()).metadata.resourceVersion, after1.metadata.resourceVersion);
  });

  it('a node the gateway was moved away from cannot overwrite the list: its write carries the version it read, and fails', async () => {
    await putDataplane('stale', node.name);
    await track(remap(40001, 51000));
    const snapshot = [await api.client.get<EgressGatewayDataplane>(DATAPLANES, 'stale')];
    const r = replicator(() => snapshot);
    await r.start();
    await r.publish();
    const published = await status('stale');
    assert.equal(published?.connections.length, 1);
    // The controller moves the gateway to node 2 (a spec write); this node's cache still says it is active.
    await putDataplane('stale', 'node-2');
    snapshot[0] = { ...snapshot[0]!, status: { snatRemaps: published! } };
    await track(remap(40005, 55000));
    await r.publish();
    assert.deepEqual(await status('stale'), published, 'the list is unchanged');
    // Once its cache has the move, it does not even list.
    snapshot[0] = await api.client.get<EgressGatewayDataplane>(DATAPLANES, 'stale');
    await r.publish();
    assert.deepEqual(await status('stale'), published);
  });

  it('the next owner inserts the published remaps before it takes the VIP, replacing an entry of its own with the same pod side and another port, keeping one with the same', async () => {
    // This node held the VIP before: an old entry for the pod's tuple with another NAT port.
    await track(remap(40001, 1111));
    const list = { node: 'node-1', vip: VIP, omitted: 0, connections: [remap(40001, 51000), remap(40002, 52000)] };
    const gw: EgressGatewayDataplane = { metadata: { name: 'seed' }, spec: { activeNodeName: 'node-1', sourceIP: { mode: MODE_VIP, ip: VIP } }, status: { snatRemaps: list } };
    const r = replicator(() => [gw]);
    await r.start();
    assert.deepEqual(await r.seed(VIP), { seeded: 2, present: 0, failed: [] });
    assert.deepEqual(await tracked(), [[40001, 51000], [40002, 52000]]);
    // Again (a node taking back the VIP it published the list for): its entries are the list, left alone.
    assert.deepEqual(await r.seed(VIP), { seeded: 0, present: 2, failed: [] });
    assert.deepEqual(await tracked(), [[40001, 51000], [40002, 52000]]);
    assert.deepEqual(await r.seed('198.18.0.101'), { seeded: 0, present: 0, failed: [] }, 'nothing for another VIP');
  });

  it('without the conntrack tool: one clear warning, nothing published or seeded, nothing thrown', async () => {
    await putDataplane('none', node.name);
    await track(remap(40001, 51000));
    const lines: string[] = [];
    const log = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => { lines.push(c.toString()); cb(); } }));
    const gws = [await api.client.get<EgressGatewayDataplane>(DATAPLANES, 'none')];
    const r = replicator(() => gws, { conntrack: '/nonexistent/conntrack', log });
    await r.start();
    await r.publish();
    assert.equal(await status('none'), undefined);
    assert.deepEqual(await r.seed(VIP), { seeded: 0, present: 0, failed: [] });
    assert.equal(lines.length, 1);
    assert.match(JSON.parse(lines[0]!).msg, /conntrack is not installed on this node \(package conntrack\): SNAT remaps are neither published nor seeded/);
  });
});
