// The Linux data plane end to end, with real packets (needs root, nft, ip): the netns cluster of
// src/testenv/dataplane-env.ts — 3 gateway nodes, 2 workers with 2 pod namespaces each, a router, an
// internet host — with our test API server, the controller and one agent per node in `--dataplane linux`.
// What the internet host sees as the source is the verdict; each check first waits for the nodes' kernels
// to hold the expected state (read with nft and ip, as an operator would), then sends once.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { API_VERSION, MODE_PRIMARY_IP, MODE_VIP } from '../../src/api/names.ts';
import type { EgressGateway, EgressGatewayDataplane, EgressGatewayPolicy } from '../../src/api/types.ts';
import { DATAPLANES, GATEWAYS, POLICIES, events as EVENTS } from '../../src/kube/resources.ts';
import { assertNetnsSupported } from '../../src/testenv/netns.ts';
import { foreignView, kernelView, oursView, startDataplaneEnv, type DataplaneEnv, type DataplaneNode, type KernelView } from '../../src/testenv/dataplane-env.ts';
import type { PodNs } from '../../src/testenv/podnet.ts';
import { poll } from '../../src/testenv/poll.ts';
import { GATEWAY_NODE_LABEL, TEST_VIP, applyObjects } from '../../src/testenv/seed.ts';
import { deliveredBesideControl, sourcesSeen, type Traffic } from '../../src/testenv/traffic.ts';

const WAIT = 30_000;

function gateway(name: string, sourceIP: EgressGateway['spec'] extends infer S ? S extends { sourceIP?: infer T } ? T : never : never, nodeSelector: Record<string, string> = { [GATEWAY_NODE_LABEL]: '' }): EgressGateway {
  return { apiVersion: API_VERSION, kind: 'EgressGateway', metadata: { name }, spec: { nodeSelector, sourceIP } };
}

function policy(name: string, gw: string, selectors: NonNullable<EgressGatewayPolicy['spec']>['selectors'], dest: string[], excluded?: string[]): EgressGatewayPolicy {
  return { apiVersion: API_VERSION, kind: 'EgressGatewayPolicy', metadata: { name }, spec: { egressGatewayName: gw, destinationCIDRs: dest, ...(excluded ? { excludedCIDRs: excluded } : {}), selectors } };
}

describe('Linux data plane end to end (netns cluster, real packets)', { concurrency: false }, () => {
  let env: DataplaneEnv;
  let inet: Traffic;
  let w4: DataplaneNode;
  let w5: DataplaneNode;
  let p41: PodNs;
  let p42: PodNs;
  let p51: PodNs;
  let p52: PodNs;
  const t = (p: PodNs) => env.traffic(p.ns);
  const seen = async (p: PodNs, dst: string) => sourcesSeen(inet, await t(p), dst);
  const blocked = async (p: PodNs, control: PodNs, dst: string) => deliveredBesideControl(inet, await t(p), await t(control), dst);
  const internet = () => env.podNet.internet.ip;
  const other = () => env.podNet.internet.otherIp;
  const dataplane = (name: string) => env.client.tryGet<EgressGatewayDataplane>(DATAPLANES, name);
  const activeOf = async (name: string): Promise<DataplaneNode> => {
    const o = await poll(`${name}'s dataplane object with an active node`, async () => {
      const d = await dataplane(name);
      return d?.spec?.activeNodeName ? d : undefined;
    }, WAIT);
    return env.nodes.find((n) => n.name === o.spec!.activeNodeName)!;
  };
  /** Waits until the node's kernel holds what `ok` expects; returns that view. */
  const kernel = (n: DataplaneNode, what: string, ok: (v: KernelView) => boolean) =>
    poll(`${n.name}: ${what}`, async () => {
      const v = await kernelView(n.ns);
      return ok(v) && v;
    }, WAIT);
  const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && b.every((x) => a.includes(x));
  /** Every node's known4 is exactly the IPs of the pod objects on it: nothing stale anywhere. */
  const noStaleAnywhere = async (objects: Array<{ pod: PodNs }>) => {
    for (const n of env.nodes) {
      const want = objects.filter((o) => o.pod.node === n.name).map((o) => o.pod.ip);
      await kernel(n, `known4 = ${JSON.stringify(want)}`, (v) => sameSet(v.known, want));
    }
  };

  before(async () => {
    await assertNetnsSupported(); // fails (not skips) without root: required in CI
    env = await startDataplaneEnv({ keepLogs: process.env.EGRESSGW_KEEP_LOGS === '1' });
    if (process.env.EGRESSGW_KEEP_LOGS === '1') process.stderr.write(`logs: ${env.logDir}\n`);
    [w4, w5] = env.workers as [DataplaneNode, DataplaneNode];
    [p41, p42] = env.pods.filter((p) => p.node === w4.name) as [PodNs, PodNs];
    [p51, p52] = env.pods.filter((p) => p.node === w5.name) as [PodNs, PodNs];
    inet = await env.traffic(env.podNet.internet.ns);
    await env.putNamespace('team-a', { egress: 'yes' });
    await env.putNamespace('team-b');
    await env.putPod(p41, 'team-a', { app: 'web' });
    await env.putPod(p42, 'team-a', { app: 'db' });
    await env.putPod(p51, 'team-b', { app: 'other' });
    await env.putPod(p52, 'team-b', { app: 'closed' });
    await applyObjects(env.client, [
      gateway('vip-gw', { mode: MODE_VIP, virtualIPAddress: { ip: TEST_VIP } }),
      gateway('prim-gw', { mode: MODE_PRIMARY_IP, primaryIPFromEgressGatewayNodeInterface: { interfaceName: 'eth0' } }),
      gateway('nowhere', { mode: MODE_VIP, virtualIPAddress: { ip: '198.18.0.102' } }, { 'egressgw.lab/no-such-node': '' }),
      policy('web', 'vip-gw', [{ podSelector: { matchLabels: { app: 'web' } } }], ['0.0.0.0/0'], ['198.51.100.0/24']),
      policy('by-ns', 'prim-gw', [{ podSelector: { matchLabels: { 'io.kubernetes.pod.namespace': 'team-b', app: 'other' } } }], ['203.0.113.0/24']),
      policy('closed', 'nowhere', [{ podSelector: { matchLabels: { app: 'closed' } } }], ['0.0.0.0/0']),
    ]);
  });

  after(async () => {
    await env?.stop();
  });

  it('the internet host sees the VIP, the gateway interface\'s primary IP, or the node IP', async () => {
    await activeOf('vip-gw');
    const prim = await activeOf('prim-gw');
    await kernel(w4, 'p4-1 redirected, p4-2 known', (v) => sameSet(v.selected, [p41.ip]) && sameSet(v.known, [p41.ip, p42.ip]) && v.routes.length === 1);
    await kernel(w5, 'p5-1 and p5-2 redirected', (v) => sameSet(v.selected, [p51.ip, p52.ip]) && v.routes.length === 1);
    assert.deepEqual(await seen(p41, internet()), [TEST_VIP], 'selected pod and destination');
    assert.deepEqual(await seen(p41, other()), [w4.ip], 'excluded CIDR');
    assert.deepEqual(await seen(p42, internet()), [w4.ip], 'unselected pod');
    assert.deepEqual(await seen(p51, internet()), [prim.ip], 'PrimaryIP mode, selected with io.kubernetes.pod.namespace');
    assert.deepEqual(await seen(p51, other()), [w5.ip], 'outside destinationCIDRs');
  });

  it('a policy whose gateway has no eligible node drops its traffic (fail closed)', async () => {
    const d = await dataplane('nowhere');
    assert.equal(d?.spec?.activeNodeName, '');
    assert.equal(await blocked(p52, p51, internet()), 0);
  });

  it('namespaceSelector: follows the namespace\'s labels', async () => {
    await applyObjects(env.client, [policy('ns-sel', 'vip-gw', [{ podSelector: { matchLabels: { app: 'db' } }, namespaceSelector: { matchLabels: { egress: 'yes' } } }], ['203.0.113.0/24'])]);
    await kernel(w4, 'p4-2 redirected', (v) => sameSet(v.selected, [p41.ip, p42.ip]));
    assert.deepEqual(await seen(p42, internet()), [TEST_VIP]);
    await env.putNamespace('team-a', { egress: 'no' });
    await kernel(w4, 'p4-2 no longer redirected', (v) => sameSet(v.selected, [p41.ip]));
    assert.deepEqual(await seen(p42, internet()), [w4.ip]);
    await env.client.deleteIfExists(POLICIES, 'ns-sel');
    await env.putNamespace('team-a', { egress: 'yes' });
  });

  it('pods added, deleted and relabelled: the rules follow, nothing stale stays in any table', async () => {
    await env.putPod(p41, 'team-a', { app: 'db' });
    await kernel(w4, 'p4-1 no longer redirected', (v) => v.selected.length === 0 && v.classes === 0);
    assert.deepEqual(await seen(p41, internet()), [w4.ip]);
    await env.deletePod(p42, 'team-a');
    await noStaleAnywhere([{ pod: p41 }, { pod: p51 }, { pod: p52 }]);
    // The namespace still sends, but no pod object owns its address: dropped, never leaked.
    assert.equal(await blocked(p42, p41, internet()), 0);
    await env.putPod(p42, 'team-a', { app: 'web' });
    await env.putPod(p41, 'team-a', { app: 'web' });
    await kernel(w4, 'both redirected', (v) => sameSet(v.selected, [p41.ip, p42.ip]) && v.classes === 1);
    assert.deepEqual(await seen(p42, internet()), [TEST_VIP]);
    await noStaleAnywhere([{ pod: p41 }, { pod: p42 }, { pod: p51 }, { pod: p52 }]);
  });

  it('a policy changed: the new destinations go through the gateway, the old ones no longer', async () => {
    // A merge patch, as `kubectl edit` would: the excluded CIDR goes too.
    await env.client.mergePatch(POLICIES, 'web', { spec: { destinationCIDRs: ['198.51.100.0/24'], excludedCIDRs: null } });
    await poll('the dataplane object has the new destinations', async () => JSON.stringify((await dataplane('vip-gw'))?.spec?.policies).includes('198.51.100.0/24') && !JSON.stringify((await dataplane('vip-gw'))?.spec?.policies).includes('0.0.0.0/0'), WAIT);
    await poll('p4-1 to the other network leaves with the VIP', async () => (await seen(p41, other())).join() === TEST_VIP, WAIT);
    assert.deepEqual(await seen(p41, internet()), [w4.ip]);
    await env.client.mergePatch(POLICIES, 'web', { spec: { destinationCIDRs: ['0.0.0.0/0'], excludedCIDRs: ['198.51.100.0/24'] } });
    await poll('p4-1 to the internet leaves with the VIP again', async () => (await seen(p41, internet())).join() === TEST_VIP, WAIT);
  });

  it('a gateway deleted: its object goes, its policies\' pods leave with the node IP again, no stale rule', async () => {
    await env.client.deleteIfExists(GATEWAYS, 'nowhere');
    await poll('the dataplane object of the deleted gateway is gone', async () => (await dataplane('nowhere')) === undefined, WAIT);
    await kernel(w5, 'p5-2 no longer redirected', (v) => sameSet(v.selected, [p51.ip]) && v.gatewayChains === 1 && v.rules.length === 1);
    assert.deepEqual(await seen(p52, internet()), [w5.ip]);
  });

  /** What is not ours on every node; a bad input must leave it as it was. */
  const foreignOnNodes = async () => Promise.all(env.nodes.map((n) => foreignView(n.ns)));

  it('bad input: a CIDR the data plane cannot take and a missing interface are conditions; nothing else changes', async () => {
    const before = await foreignOnNodes();
    const ours = await Promise.all(env.nodes.map((n) => kernelView(n.ns)));
    await applyObjects(env.client, [
      policy('v6', 'vip-gw', [{ podSelector: { matchLabels: { app: 'web' } } }], ['2001:db8::/32']),
      gateway('bad-if', { mode: MODE_PRIMARY_IP, primaryIPFromEgressGatewayNodeInterface: { interfaceName: 'eth9' } }),
    ]);
    const cond = await poll('v6 is InvalidSpec', async () => {
      const p = await env.client.get<EgressGatewayPolicy>(POLICIES, 'v6');
      const c = p.status?.conditions?.find((x) => x.type === 'Ready');
      return c?.reason === 'InvalidSpec' && c;
    }, WAIT);
    assert.match(cond.message, /spec\.destinationCIDRs\[0\]: IPv6 CIDR "2001:db8::\/32" is not supported/);
    const gcond = await poll('bad-if is not Ready', async () => {
      const g = await env.client.get<EgressGateway>(GATEWAYS, 'bad-if');
      const c = g.status?.conditions?.find((x) => x.type === 'Ready');
      return c?.status === 'False' && c;
    }, WAIT);
    assert.match(`${gcond.reason} ${gcond.message}`, /eth9|uplink|interface/i);
    // Written in the same pass as the status, just after it.
    const badIf = await poll('bad-if\'s dataplane object', () => dataplane('bad-if'), WAIT);
    assert.equal(badIf.spec?.activeNodeName, '');
    // The gateway nodes' agents say what they lack, each as a Warning on its Node (and in its log).
    const ev = await poll('a DataplaneRejected event about eth9 on a gateway node', async () => {
      const list = await env.client.list<{ reason?: string; note?: string; regarding?: { kind?: string; name?: string } }>(EVENTS('default'));
      return list.items.find((e) => e.reason === 'DataplaneRejected' && e.regarding?.kind === 'Node' && env.gateways.some((g) => g.name === e.regarding?.name) && /eth9/.test(e.note ?? ''));
    }, WAIT);
    assert.match(ev.note ?? '', /gateway bad-if: interface eth9 does not exist on this node: tunnelled traffic is dropped/);
    assert.ok(env.gateways.some((g) => g.agent.logged('data plane problem')), 'and an error in the gateway agents\' log');
    assert.ok(!JSON.stringify((await dataplane('vip-gw'))?.spec?.policies).includes('2001:db8'), 'the invalid policy is not in the data plane');
    assert.deepEqual(await seen(p41, internet()), [TEST_VIP], 'the other policies still work');
    assert.deepEqual(await foreignOnNodes(), before, 'nothing that is not ours changed on any node');
    const oursAfter = await Promise.all(env.nodes.map((n) => kernelView(n.ns)));
    assert.deepEqual(oursAfter.map((v) => [v.known, v.selected, v.routes, v.rules]), ours.map((v) => [v.known, v.selected, v.routes, v.rules]), 'our own pods, routes and rules stayed too');
    await env.client.deleteIfExists(POLICIES, 'v6');
    await env.client.deleteIfExists(GATEWAYS, 'bad-if');
  });

  it('nft missing on a node: a clear agent error and a Warning event; nothing of ours is created', async () => {
    await (await env.restartAgent(w5, ['--cleanup'])).started;
    await kernel(w5, 'programmed again', (v) => v.table && v.selected.length === 1);
    w5.agent.kill('SIGTERM');
    await w5.agent.exited;
    await kernel(w5, 'everything removed by --cleanup', (v) => !v.table && !v.device && v.rules.length === 0 && v.routes.length === 0);
    const before = await foreignView(w5.ns);
    env.startAgent(w5, ['--nft', '/nonexistent/nft']);
    const ev = await poll('a DataplaneUnavailable event on node5', async () => {
      const list = await env.client.list<{ reason?: string; note?: string; regarding?: { kind?: string; name?: string } }>(EVENTS('default'));
      return list.items.find((e) => e.reason === 'DataplaneUnavailable' && e.regarding?.kind === 'Node' && e.regarding.name === w5.name);
    }, WAIT);
    assert.match(ev.note ?? '', /nft is not installed on this node \(package nftables\).*nothing was changed/);
    const v = await kernelView(w5.ns);
    assert.deepEqual([v.table, v.device, v.rules, v.routes], [false, false, [], []]);
    assert.deepEqual(await foreignView(w5.ns), before, 'nothing else on the node changed');
    await env.restartAgent(w5);
    await kernel(w5, 'programmed by the fixed agent', (x) => x.table && x.selected.length === 1);
  });

  it('uninstall: an agent whose DaemonSet is gone removes everything at exit; a plain restart keeps it', async () => {
    const ds = { group: 'apps', version: 'v1', plural: 'daemonsets', namespace: 'd8-cni-cilium' };
    await env.client.create(ds, {
      apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'egress-gateway-agent', namespace: 'd8-cni-cilium' },
      spec: { selector: { matchLabels: { app: 'x' } }, template: { metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'a', image: 'lab.invalid/x' }] } } },
    });
    const args = ['--daemonset', 'd8-cni-cilium/egress-gateway-agent'];
    await (await env.restartAgent(w4, args)).started;
    // The old agent's state is in the kernel already: wait for the new one's own first apply, so that no
    // apply is in flight at the signal (what the kernel holds at exit is what this agent programmed).
    await poll('the new agent applied its state', () => w4.agent.logged('data plane applied'), WAIT);
    const atExit = await kernel(w4, 'programmed', (v) => v.table && v.selected.length === 2 && v.rules.length === 1);
    w4.agent.kill('SIGTERM');
    await w4.agent.exited;
    let v = await kernelView(w4.ns);
    assert.ok(v.table && v.device, 'a restart keeps the data plane');
    assert.deepEqual([v.known, v.selected, v.rules, v.routes], [atExit.known, atExit.selected, atExit.rules, atExit.routes], 'exactly as the agent left it');
    assert.deepEqual(await seen(p41, internet()), [TEST_VIP], 'and it still works without its agent');
    await env.startAgent(w4, args).started;
    await env.client.deleteIfExists(ds, 'egress-gateway-agent');
    w4.agent.kill('SIGTERM');
    await w4.agent.exited;
    v = await kernelView(w4.ns);
    assert.deepEqual([v.table, v.device, v.rules, v.routes], [false, false, [], []]);
    env.startAgent(w4);
    await kernel(w4, 'programmed again', (x) => x.table && x.selected.length === 2);
  });

  it('--cleanup on a gateway node and on a worker: all of ours present while running, nothing of it after exit', async () => {
    // The whole picture with the operator's tools (nft -j list ruleset, ip rule, ip route show table all,
    // ip link, ip addr), not through the code under test. Every gateway agent runs with --cleanup, so the
    // one that holds the VIP is such an agent wherever the VIP lands after the restarts.
    for (const g of env.gateways) await (await env.restartAgent(g, ['--cleanup'])).started;
    await (await env.restartAgent(w4, ['--cleanup'])).started;
    const running = await poll('a gateway node holding the VIP, its fence and the data plane table', async () => {
      for (const g of env.gateways) {
        const v = await oursView(g.ns, [TEST_VIP]);
        if (v.addresses.length > 0 && v.tables.length === 3 && v.links.length === 1) return { g, v };
      }
      return undefined;
    }, WAIT);
    const gw = running.g;
    assert.deepEqual(running.v.tables, ['arp egressgw_fence', 'inet egressgw', 'inet egressgw_fence']);
    assert.deepEqual(running.v.links, ['egw0']);
    assert.deepEqual(running.v.addresses, [TEST_VIP]);
    const worker = await poll('the worker\'s rule, route, table and tunnel device', async () => {
      const v = await oursView(w4.ns, [TEST_VIP]);
      if (v.tables.length === 1 && v.rules.length === 1 && v.routes.some((l) => l.includes(' encap ')) && v.links.length === 1) return v;
      throw new Error(`not yet: ${JSON.stringify(v)}`);
    }, WAIT);
    assert.deepEqual(worker.tables, ['inet egressgw'], 'a worker is not a member: no fence tables');
    assert.match(worker.rules[0]!, /^2500:\s+from all fwmark 0x[0-9a-f]+\/0xff000000 lookup 260\d\d/);
    // The slot's route into the tunnel; besides it only the kernel's own routes of the device (table local).
    assert.match(worker.routes[0]!, /^default\s+encap ip id \d+ .*dst 198\.18\.0\.1[123] .*dev egw0 table 260\d\d/);
    assert.deepEqual(worker.routes.slice(1).filter((l) => !/ dev egw0 table local /.test(l)), []);
    // The agents' restarts may have moved the VIP: the path works once the controller names the node that
    // holds it and the worker's route points there.
    await poll(`vip-gw active on ${gw.name}`, async () => (await dataplane('vip-gw'))?.spec?.activeNodeName === gw.name, WAIT);
    await poll(`${w4.name}'s route to ${gw.name}`, async () => (await oursView(w4.ns)).routes.some((l) => l.includes(`dst ${gw.ip} `)), WAIT);
    assert.deepEqual(await seen(p41, internet()), [TEST_VIP], 'and the path works');
    const foreign = [await foreignView(gw.ns), await foreignView(w4.ns)];
    for (const n of [gw, w4]) {
      n.agent.kill('SIGTERM');
      await n.agent.exited;
      assert.ok(n.agent.logged('removed the data plane (--cleanup)'), `${n.name} logged its cleanup`);
    }
    const empty = { tables: [], rules: [], routes: [], links: [], addresses: [] };
    assert.deepEqual(await oursView(gw.ns, [TEST_VIP]), empty, `${gw.name}: nothing of ours remains`);
    assert.deepEqual(await oursView(w4.ns, [TEST_VIP]), empty, `${w4.name}: nothing of ours remains`);
    assert.deepEqual([await foreignView(gw.ns), await foreignView(w4.ns)], foreign, 'and nothing else changed');
    for (const n of [gw, w4]) env.startAgent(n);
    await kernel(w4, 'programmed again', (x) => x.table && x.selected.includes(p41.ip));
    assert.deepEqual(await seen(p41, internet()), [TEST_VIP]);
  });
});
