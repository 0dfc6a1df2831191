// End-to-end failover on real parts: the test API server, the controller, one agent process per node
// namespace, real veths/bridge, real ARP. Needs root and `ip netns`.
//
// Every step waits for a condition with a deadline; nothing sleeps to synchronise, and nothing asserts
// durations (speed is measured by bench/failover.ts). What is asserted is order and causality:
//  - the old node loses the VIP (kernel lifetime, fencing or withdrawal);
//  - a new node gets the instance and the VIP;
//  - the router's existing neighbour entry moves to the new MAC because of the new node's gratuitous ARP,
//    with no ARP request from the router before it (router at default arp_accept=0);
//  - with only the API cut, the old node withdraws before the controller even creates the new instance,
//    and the router never hears two MACs for the VIP interleaved.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_NAMESPACE, heartbeatLeaseName } from '../../src/api/names.ts';
import type { PassInfo } from '../../src/controller/controller.ts';
import { leases } from '../../src/kube/resources.ts';
import { activeInstance, startLab, type ArpEvent, type LabHandle, type LabNodeHandle } from '../../src/testenv/lab.ts';

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
  let lab: LabHandle;
  const passes: PassRecord[] = [];

  before(async () => {
    lab = await startLab({
      nodes: 3,
      onPass: (p: PassInfo) => passes.push({ at: p.at, target: p.desired.gateways.get(GW)?.target ?? '' }),
    });
    // interfaces: [eth0] so that the controller also sees the uplink state the agents publish.
    await lab.createVipGateway(GW, VIP, ['eth0']);
  });

  after(async () => {
    await lab?.stop();
  });

  const nodeByName = (name: string): LabNodeHandle => {
    const n = lab.nodes.find((x) => x.name === name);
    assert.ok(n, `node ${name}`);
    return n;
  };

  /** Waits until another node than `a` has a Ready instance of the gateway and holds the VIP. */
  const newOwner = async (a: LabNodeHandle): Promise<LabNodeHandle> => {
    const inst = await lab.waitFor(async () => {
      const i = await activeInstance(lab.client, GW);
      return i && i.node !== a.name && i.ready ? i : undefined;
    }, STEP, 'a Ready instance on another node');
    const b = nodeByName(inst.node);
    await lab.waitFor(() => lab.hasAddress(b, VIP), STEP, `${VIP} on ${b.name}`);
    return b;
  };

  /** The active node once the gateway is settled: see below. */
  async function settledActive(): Promise<LabNodeHandle> {
    return lab.waitFor(async () => {
      const inst = await activeInstance(lab.client, GW);
      // One live instance (no handover in flight), Ready, and the controller's latest decision agrees.
      if (!inst?.ready || inst.live !== 1 || passes.at(-1)?.target !== inst.node) return undefined;
      const holders = [];
      for (const n of lab.nodes) if (await lab.hasAddress(n, VIP)) holders.push(n.name);
      return holders.length === 1 && holders[0] === inst.node ? nodeByName(inst.node) : undefined;
    }, STEP, 'a Ready instance whose node alone holds the VIP');
  }

  /** The router talks to the VIP, so its neighbour table holds the active node's MAC. */
  async function warmRouter(active: LabNodeHandle): Promise<void> {
    // Start from a fresh resolution: an entry left by an earlier scenario may still be STALE or probing.
    await lab.netns.ip(lab.router.ns, ['neigh', 'flush', 'to', VIP]);
    await lab.udpPoke(lab.router.ns, VIP);
    const entry = await lab.waitFor(async () => {
      const e = await lab.netns.neighbour(lab.router.ns, VIP);
      return e?.mac !== undefined && !e.state.includes('INCOMPLETE') ? e : undefined;
    }, STEP, 'the router to resolve the VIP');
    assert.equal(entry.mac, active.mac, 'router neighbour entry points at the active node before the failure');
  }

  async function failoverScenario(fail: (a: LabNodeHandle) => Promise<void>, recover: (a: LabNodeHandle) => Promise<void>): Promise<void> {
    const a = await settledActive();
    await warmRouter(a);
    // Where router-originated ARP could be seen: every node's LAN side (broadcast and unicast probes).
    const routerSide = await lab.captureArp(lab.router.ns, 'br0');
    const nodeSides = await Promise.all(lab.nodes.map((n) => lab.captureArp(n.ns, n.ifname)));
    const neigh = await lab.monitorNeighbours(lab.router.ns);
    const addrA = await lab.monitorAddresses(a.ns);
    try {
      const tFail = Date.now();
      await fail(a);

      // The old node loses the address by itself (lifetime) or by the agent (withdrawal).
      await lab.waitFor(async () => !(await lab.hasAddress(a, VIP)), STEP, `${VIP} to vanish from ${a.name}`);

      // Another node gets the instance, confirms it, and holds the VIP.
      const b = await newOwner(a);

      // The router's existing entry moves to B's MAC.
      const change = await lab.waitFor(() => neigh.events.find((e) => e.ip === VIP && e.mac === b.mac && !e.deleted), STEP,
        `router neighbour entry for ${VIP} to change to ${b.mac}`);
      assert.equal((await lab.netns.neighbour(lab.router.ns, VIP))?.mac, b.mac);

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
        e.ethSrc === lab.router.mac && e.op === 'request' && e.targetIp === VIP && e.t >= tFail && e.t <= change.t);
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
      await recover(a);
    }
  }

  test('(a) kill -9 of the active agent: lifetime expiry, new owner, GARP moves the router', async () => {
    await failoverScenario(
      async (a) => a.agent.kill('SIGKILL'),
      async (a) => {
        await a.agent.exited;
        await lab.restartAgent(a);
      },
    );
  });

  test('(b) SIGSTOP of the active agent: a frozen agent loses the VIP by itself', async () => {
    await failoverScenario(
      async (a) => a.agent.kill('SIGSTOP'),
      async (a) => {
        a.agent.kill('SIGCONT');
        // Thawed, it fences (its heartbeat is stale) and must not take the VIP back: it is B's now.
        await lab.waitFor(() => readFileSync(join(lab.logDir, `agent-${a.name}.log`), 'utf8').includes('instances re-listed after fencing'), STEP,
          `${a.name} to recover from fencing`);
        assert.equal(await lab.hasAddress(a, VIP), false, 'the thawed agent did not re-take the VIP');
      },
    );
  });

  test('(c) LAN link of the active node down: uplink down, new owner, GARP moves the router', async () => {
    await failoverScenario(
      async (a) => lab.netns.setLink(a.ns, a.ifname, 'down'),
      async (a) => {
        await lab.netns.setLink(a.ns, a.ifname, 'up');
        await lab.netns.ip(a.ns, ['route', 'replace', 'default', 'via', lab.router.ip]);
      },
    );
  });

  test('graceful SIGTERM: the agent withdraws the VIP and deletes its Lease, the controller fails over at once', async () => {
    const a = await settledActive();
    a.agent.kill('SIGTERM');
    const { code } = await a.agent.exited;
    assert.equal(code, 0, 'clean exit');
    assert.equal(await lab.hasAddress(a, VIP), false, 'VIP withdrawn on shutdown');
    const lease = await lab.client.tryGet(leases(DEFAULT_NAMESPACE), heartbeatLeaseName(a.name));
    assert.equal(lease, undefined, 'heartbeat Lease deleted on shutdown');
    await newOwner(a);
    await lab.restartAgent(a);
  });

  test('fencing: API cut, LAN up: the old node withdraws before the new instance exists, never two MACs at once', async () => {
    const a = await settledActive();
    await warmRouter(a);
    // An active prober: the router asks for the VIP every 50 ms, so any node holding it answers on the wire.
    const routerSide = await lab.captureArp(lab.router.ns, 'br0', { ip: VIP, senderMac: lab.router.mac, senderIp: lab.router.ip, intervalMs: 50 });
    const addrA = await lab.monitorAddresses(a.ns);
    const passesBefore = passes.length;
    try {
      const tCut = Date.now();
      await lab.netns.setLink(a.ns, 'mgmt0', 'down');

      const removed = await lab.waitFor(() => addrA.events.find((e) => e.deleted && e.ip === VIP), STEP, `${a.name} to withdraw ${VIP}`);
      const b = await newOwner(a);

      // The controller pass that elected B (and wrote its instance) started after A had already removed the VIP.
      // A pass is reported when all its writes are done, and B's agent may confirm its instance (which is
      // how we learnt B) before the pass's remaining writes: so wait for the report; `at` is when it started.
      const electing = await lab.waitFor(() => passes.slice(passesBefore).find((p) => p.target === b.name), STEP, 'the controller pass that elected the new node to be reported');
      assert.ok(removed.t < electing.at, `A removed the VIP (${removed.t}) before the controller elected B and created its instance (pass at ${electing.at})`);
      assert.ok(removed.t >= tCut);

      // On the wire: frames for the VIP come from A, then from B, never interleaved.
      await lab.waitFor(() => routerSide.events.some((e) => e.senderMac === b.mac && e.senderIp === VIP), STEP, 'a frame from B at the router');
      const forVip = routerSide.events.filter((e) => e.senderIp === VIP && (e.op === 'reply' || e.gratuitous));
      const lastA = Math.max(...forVip.filter((e) => e.senderMac === a.mac).map((e) => e.t), -Infinity);
      const firstB = Math.min(...forVip.filter((e) => e.senderMac === b.mac).map((e) => e.t));
      assert.ok(lastA < firstB, `no overlap: last frame from A at ${lastA}, first from B at ${firstB}`);
      assert.deepEqual([...new Set(forVip.map((e) => e.senderMac))].filter((m) => m !== a.mac && m !== b.mac), [], 'no third MAC');
    } finally {
      routerSide.stop();
      addrA.stop();
      await lab.netns.setLink(a.ns, 'mgmt0', 'up');
    }
    // Reconnected, A re-lists and stays out: no preemptive failback, no second owner.
    await lab.waitFor(() => readFileSync(join(lab.logDir, `agent-${a.name}.log`), 'utf8').includes('instances re-listed after fencing'), STEP,
      `${a.name} to recover from fencing`);
    assert.equal(await lab.hasAddress(a, VIP), false);
  });
});
