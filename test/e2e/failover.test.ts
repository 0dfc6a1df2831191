// End-to-end failover on real parts: the test API server, the controller, one agent process per node
// namespace, real veths/bridge, real ARP. Needs root and `ip netns`.
//
// Every step waits for a condition with a deadline; nothing sleeps to synchronise, and nothing asserts
// durations (speed is measured by bench/failover.ts). What is asserted is order and causality, with the
// shipped default timings:
//  - the old node stops answering for the VIP before the new owner's first announcement: an observer on
//    the LAN asks "who has the VIP?" every 20 ms, and every frame for the VIP from the old node comes
//    before the first one from the new node — for kill -9, SIGSTOP, API cut (LAN up) and uplink down;
//  - killed or frozen, the old node goes quiet while the VIP's address is still on its interface: the
//    kernel switch (nftables), not the address lifetime, silenced it;
//  - a new node gets the instance and the VIP;
//  - the router's existing neighbour entry moves to the new MAC because of the new node's gratuitous ARP,
//    with no ARP request from the router before it (router at default arp_accept=0);
//  - with only the API cut, the old node withdraws before the controller even creates the new instance;
//  - a frozen agent resumed after its lease expired never answers for the VIP it lost.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_NAMESPACE, heartbeatLeaseName } from '../../src/api/names.ts';
import type { PassInfo } from '../../src/controller/controller.ts';
import { leases } from '../../src/kube/resources.ts';
import { startTestEnv, type TestEnv, type TestEnvNode } from '../../src/testenv/env.ts';
import { mayTakeVips } from '../../src/testenv/agents.ts';
import { lanDown, lanUp, settledActive as settled, warmRouter as warm } from '../../src/testenv/failover.ts';
import type { ArpEvent, Capture } from '../../src/testenv/observe.ts';
import { poll } from '../../src/testenv/poll.ts';
import { activeInstance } from '../../src/testenv/queries.ts';

const VIP = '198.18.0.100';
const GW = 'e2e-gw';
const STEP = 20_000; // per-step deadline: generous, these are liveness bounds, not performance claims
const ORDER_SLACK_MS = 50;

const skip = process.getuid?.() !== 0 ? 'needs root and ip netns' : false;

interface PassRecord {
  at: number;
  /** The node the election chose for the gateway in this pass. */
  target: string;
}

describe('VIP failover, end to end', { skip, timeout: 300_000 }, () => {
  let env: TestEnv;
  let observer: { ns: string; ifname: string; ip: string; mac: string };
  const passes: PassRecord[] = [];

  before(async () => {
    env = await startTestEnv({
      nodes: 3,
      onPass: (p: PassInfo) => passes.push({ at: p.at, target: p.desired.gateways.get(GW)?.target ?? '' }),
    });
    // A fourth host on the LAN that keeps asking for the VIP: whoever answers is heard, and the
    // router's own neighbour state is left to what the nodes announce.
    observer = await env.net.addLanHost('observer', '198.18.0.250');
    // interfaces: [eth0] so that the controller also sees the uplink state the agents publish.
    await env.createVipGateway(GW, VIP, ['eth0']);
  });

  /** The observer's view: every ARP frame for the VIP it hears, while it asks for the VIP every 20 ms. */
  const watchVip = (): Promise<Capture> => env.captureArp(observer.ns, observer.ifname, { ip: VIP, senderMac: observer.mac, senderIp: observer.ip, intervalMs: 20 });
  const framesFrom = (c: Capture, mac: string, after = -Infinity): ArpEvent[] => c.events.filter((e) => e.senderMac === mac && e.senderIp === VIP && e.t > after);

  /**
   * The old node's last frame for the VIP came before the new node's first one: never two owners
   * answering. Returns both times.
   */
  function assertNoOverlap(c: Capture, a: TestEnvNode, b: TestEnvNode, tFail: number): { lastA: number; firstB: number } {
    const fromA = framesFrom(c, a.mac, tFail);
    const fromB = framesFrom(c, b.mac, tFail);
    assert.ok(fromB.length > 0, 'the observer heard the new owner');
    const lastA = Math.max(...fromA.map((e) => e.t), -Infinity);
    const firstB = Math.min(...fromB.map((e) => e.t));
    assert.ok(lastA < firstB, `the old node answered until ${lastA}, after the new owner's first frame at ${firstB}`);
    assert.deepEqual(c.events.filter((e) => e.senderIp === VIP && e.t > tFail && e.senderMac !== a.mac && e.senderMac !== b.mac), [], 'no third node');
    return { lastA, firstB };
  }

  after(async () => {
    await env?.stop();
  });

  const nodeByName = (name: string): TestEnvNode => {
    const n = env.nodes.find((x) => x.name === name);
    assert.ok(n, `node ${name}`);
    return n;
  };

  /** Waits until another node than `a` has a Ready instance of the gateway and holds the VIP. */
  const newOwner = async (a: TestEnvNode): Promise<TestEnvNode> => {
    const inst = await poll('a Ready instance on another node', async () => {
      const i = await activeInstance(env.client, GW);
      return i && i.node !== a.name && i.ready ? i : undefined;
    }, STEP);
    const b = nodeByName(inst.node);
    await poll(`${VIP} on ${b.name}`, () => env.hasAddress(b, VIP), STEP);
    return b;
  };

  /**
   * The active node once the gateway is settled, the controller's latest decision agrees, and every
   * agent may take VIPs (past the hold after a restart: the failover then measures no hold).
   */
  async function settledActive(): Promise<TestEnvNode> {
    return settled(env, GW, VIP, { deadlineMs: STEP, also: (inst) => passes.at(-1)?.target === inst.node && env.nodes.every((n) => mayTakeVips(n.agent)) });
  }

  /** The router talks to the VIP, so its neighbour table holds the active node's MAC. */
  async function warmRouter(active: TestEnvNode): Promise<void> {
    const entry = await warm(env, VIP, STEP);
    assert.equal(entry.mac, active.mac, 'router neighbour entry points at the active node before the failure');
  }

  /**
   * `quietFirst`: the old node keeps the VIP's address after the failure (killed or frozen agent): it must
   * have gone quiet while the address was still there, i.e. by the kernel switch.
   */
  async function failoverScenario(fail: (a: TestEnvNode) => Promise<void>, recover: (a: TestEnvNode, seen: Capture, b: TestEnvNode) => Promise<void>,
    opts: { quietFirst?: boolean } = {}): Promise<void> {
    const a = await settledActive();
    await warmRouter(a);
    // Where router-originated ARP could be seen: every node's LAN side (broadcast and unicast probes).
    const routerSide = await env.captureArp(env.router.ns, 'br0');
    const nodeSides = await Promise.all(env.nodes.map((n) => env.captureArp(n.ns, n.ifname)));
    const neigh = await env.monitorNeighbours(env.router.ns);
    const addrA = await env.monitorAddresses(a.ns);
    const seen = await watchVip();
    let owner: TestEnvNode | undefined;
    try {
      // A answers the observer before the failure (so its silence later means something).
      await poll('the observer to hear the active node', () => framesFrom(seen, a.mac).length > 0, STEP);
      const tFail = Date.now();
      await fail(a);

      // The old node loses the address by itself (lifetime) or by the agent (withdrawal).
      await poll(`${VIP} to vanish from ${a.name}`, async () => !(await env.hasAddress(a, VIP)), STEP);

      // Another node gets the instance, confirms it, and holds the VIP.
      const b = await newOwner(a);
      owner = b;
      await poll('the observer to hear the new owner', () => framesFrom(seen, b.mac, tFail).length > 0, STEP);
      const { lastA } = assertNoOverlap(seen, a, b, tFail);
      if (opts.quietFirst) {
        const gone = addrA.events.find((e) => e.deleted && e.ip === VIP)?.t ?? Infinity;
        assert.ok(lastA < gone, `the old node went quiet (last frame ${lastA}) before its address went (${gone}): the kernel switch silenced it`);
      }

      // The router's existing entry moves to B's MAC.
      const change = await poll(`router neighbour entry for ${VIP} to change to ${b.mac}`, () => neigh.events.find((e) => e.ip === VIP && e.mac === b.mac && !e.deleted), STEP);
      assert.equal((await env.net.neighbour(env.router.ns, VIP))?.mac, b.mac);

      // The capture and the neighbour monitor are two processes reading two kernel notifications of the
      // same frame, so their clocks of one event differ by scheduling noise: ORDER_SLACK_MS absorbs that
      // (it is a tolerance on ordering, not a performance bound).
      const fromB = (e: ArpEvent) => e.senderMac === b.mac && e.senderIp === VIP;
      const firstB = routerSide.events.find(fromB);
      assert.ok(firstB, 'the router received an ARP frame from B for the VIP');
      assert.equal(firstB.gratuitous, true, `B's first frame is a gratuitous ARP: ${JSON.stringify(firstB)}`);
      assert.ok(firstB.t <= change.t + ORDER_SLACK_MS, `the entry changed after B's gratuitous ARP (GARP ${firstB.t}, change ${change.t})`);
      // Up to the change, everything B sent the router was gratuitous: no solicited reply could have caused it.
      const solicited = routerSide.events.filter((e) => fromB(e) && !e.gratuitous && e.t <= change.t + ORDER_SLACK_MS);
      assert.deepEqual(solicited, [], 'only gratuitous ARP from B before the change');

      // No ARP request from the router for the VIP before the change: neither on the wire …
      const routerAsked = nodeSides.flatMap((c) => c.events).filter((e) =>
        e.ethSrc === env.router.mac && e.op === 'request' && e.targetIp === VIP && e.t >= tFail && e.t <= change.t);
      assert.deepEqual(routerAsked, [], 'the router sent no ARP request for the VIP before its entry changed');
      // … nor in the router's neighbour state machine (PROBE / INCOMPLETE mean it is asking).
      const asking = neigh.events.filter((e) => e.ip === VIP && e.t <= change.t && /PROBE|INCOMPLETE|FAILED/.test(e.state));
      assert.deepEqual(asking.map((e) => e.line), [], 'the router never probed the VIP before the change');

      // After the failure, A never answered for the VIP again (no frame from A after B's first GARP).
      const lateA = routerSide.events.filter((e) => e.senderMac === a.mac && e.senderIp === VIP && e.t > firstB.t);
      assert.deepEqual(lateA, [], 'A did not answer for the VIP after B took over');
      assert.ok(addrA.events.some((e) => e.deleted && e.ip === VIP), 'the address removal was seen in A\'s namespace');
    } finally {
      routerSide.stop();
      for (const c of nodeSides) c.stop();
      neigh.stop();
      addrA.stop();
      try {
        if (owner) await recover(a, seen, owner);
      } finally {
        seen.stop();
      }
    }
  }

  test('(a) kill -9 of the active agent: the kernel switch silences the old node, new owner, GARP moves the router', async () => {
    await failoverScenario(
      async (a) => a.agent.kill('SIGKILL'),
      async (a) => {
        await a.agent.exited;
        await env.restartAgent(a);
      },
      { quietFirst: true },
    );
  });

  test('(b) SIGSTOP of the active agent: silenced by the kernel switch; resumed after its lease expired, it never answers for the lost VIP', async () => {
    await failoverScenario(
      async (a) => a.agent.kill('SIGSTOP'),
      async (a, seen, b) => {
        const tResume = Date.now();
        a.agent.kill('SIGCONT');
        // Thawed, it finds its fence deadline long past: it fences, and takes VIPs again only from a
        // fresh list made a lease after its renewals resumed. The VIP is B's by then.
        await poll(`${a.name} to recover from fencing`, () => a.agent.logged('instances re-listed after fencing'), STEP);
        const tRelisted = Date.now();
        // The window to watch: from the resume until B has answered 10 more of the observer's questions
        // after A could take VIPs again (its reconcile of the fresh list runs right then).
        await poll('10 answers from B after A re-listed', () => framesFrom(seen, b.mac, tRelisted).length >= 10, STEP);
        assert.deepEqual(framesFrom(seen, a.mac, tResume), [], 'the resumed node never answered for the VIP');
        assert.equal(await env.hasAddress(a, VIP), false, 'the thawed agent did not re-take the VIP');
        assert.doesNotMatch(await env.net.exec(a.ns, 'nft', ['list', 'set', 'arp', 'egressgw_fence', 'open']), new RegExp(VIP.replaceAll('.', '\\.')),
          'its kernel switch for the VIP stays closed');
      },
      { quietFirst: true },
    );
  });

  test('(c) LAN link of the active node down: uplink down, new owner, GARP moves the router', async () => {
    await failoverScenario(
      async (a) => lanDown(env, a),
      async (a) => lanUp(env, a),
    );
  });

  test('graceful SIGTERM: the agent withdraws the VIP and deletes its Lease, the controller fails over at once', async () => {
    const a = await settledActive();
    a.agent.kill('SIGTERM');
    const { code } = await a.agent.exited;
    assert.equal(code, 0, 'clean exit');
    assert.equal(await env.hasAddress(a, VIP), false, 'VIP withdrawn on shutdown');
    const lease = await env.client.tryGet(leases(DEFAULT_NAMESPACE), heartbeatLeaseName(a.name));
    assert.equal(lease, undefined, 'heartbeat Lease deleted on shutdown');
    await newOwner(a);
    await env.restartAgent(a);
  });

  test('fencing: API cut, LAN up: the old node withdraws before the new instance exists, never two MACs at once', async () => {
    const a = await settledActive();
    await warmRouter(a);
    // The observer asks for the VIP every 20 ms, so any node holding it answers on the wire.
    const routerSide = await watchVip();
    const addrA = await env.monitorAddresses(a.ns);
    const passesBefore = passes.length;
    try {
      await poll('the observer to hear the active node', () => framesFrom(routerSide, a.mac).length > 0, STEP);
      const tCut = Date.now();
      await env.net.setLink(a.ns, 'mgmt0', 'down');

      const removed = await poll(`${a.name} to withdraw ${VIP}`, () => addrA.events.find((e) => e.deleted && e.ip === VIP), STEP);
      const b = await newOwner(a);

      // The controller pass that elected B (and wrote its instance) started after A had already removed the VIP.
      // A pass is reported when all its writes are done, and B's agent may confirm its instance (which is
      // how we learnt B) before the pass's remaining writes: so wait for the report; `at` is when it started.
      const electing = await poll('the controller pass that elected the new node to be reported', () => passes.slice(passesBefore).find((p) => p.target === b.name), STEP);
      assert.ok(removed.t < electing.at, `A removed the VIP (${removed.t}) before the controller elected B and created its instance (pass at ${electing.at})`);
      assert.ok(removed.t >= tCut);

      // On the wire: frames for the VIP come from A, then from B, never interleaved.
      await poll('a frame from B at the observer', () => framesFrom(routerSide, b.mac, tCut).length > 0, STEP);
      assertNoOverlap(routerSide, a, b, tCut);
    } finally {
      routerSide.stop();
      addrA.stop();
      await env.net.setLink(a.ns, 'mgmt0', 'up');
    }
    // Reconnected, A re-lists and stays out: no preemptive failback, no second owner.
    await poll(`${a.name} to recover from fencing`, () => a.agent.logged('instances re-listed after fencing'), STEP);
    assert.equal(await env.hasAddress(a, VIP), false);
  });
});
