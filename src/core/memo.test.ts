// The long-lived core (createCore) remembers per object what it derived; these tests check that its
// results never differ from a cold core's, over random sequences of changes to a cluster (objects
// replaced, added, removed; time passing; the writes applied or not; agents acting or not).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MEMBER_LABEL, MOVE_TO_ANNOTATION, activeForLabel } from '../api/names.ts';
import { createCore, reconcile } from './index.ts';
import type { Snapshot } from './types.ts';
import { NOW, agentsAct, applyWrites, ciliumNode, heartbeat, node, pod, policy, primaryGateway, update, vipGateway } from './testing.ts';
import { nameOf } from './util.ts';

const NODES = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6'];
const GWS = ['g0', 'g1', 'g2', 'g3'];
const runs = { numRuns: Number(process.env['CORE_PROP_RUNS'] ?? 120) };

function start(vipMask: number): Snapshot {
  const role = (i: number): string => (i % 2 === 0 ? 'a' : 'b');
  return {
    now: NOW,
    nodes: NODES.map((n, i) => node(n, { role: role(i) })),
    ciliumNodes: NODES.map((n, i) => ciliumNode(n, { role: role(i) })),
    ciliumAgentPods: NODES.map((n) => pod(`c-${n}`, n)),
    agentPods: NODES.map((n) => pod(`a-${n}`, n)),
    heartbeats: NODES.map((n) => heartbeat(n)),
    gateways: GWS.map((g, i) =>
      (vipMask >> i) & 1
        ? vipGateway(g, `192.0.2.${i + 1}`, { role: role(i) }, { created: `2025-0${i + 1}-01T00:00:00Z` })
        : primaryGateway(g, 'eth1', i === 3 ? undefined : { role: role(i) }, { created: `2025-0${i + 1}-01T00:00:00Z` }),
    ),
    policies: Array.from({ length: 8 }, (_, i) => policy(`p${i}`, GWS[i % GWS.length] as string)),
    instances: [],
    cegps: [],
  };
}

const nodeIx = fc.nat({ max: NODES.length - 1 });
const gwIx = fc.nat({ max: GWS.length - 1 });
const change = fc.oneof(
  fc.record({ k: fc.constant('apply' as const) }),
  fc.record({ k: fc.constant('apply' as const) }),
  fc.record({ k: fc.constant('agents' as const) }),
  fc.record({ k: fc.constant('time' as const), ms: fc.constantFrom(100, 1500, 2500, 6000) }),
  fc.record({ k: fc.constant('ready' as const), n: nodeIx, v: fc.boolean() }),
  fc.record({ k: fc.constant('cordon' as const), n: nodeIx, v: fc.boolean() }),
  fc.record({ k: fc.constant('role' as const), n: nodeIx, v: fc.constantFrom('a', 'b', 'c') }),
  fc.record({ k: fc.constant('silence' as const), n: nodeIx }),
  fc.record({ k: fc.constant('ciliumPod' as const), n: nodeIx, v: fc.boolean() }),
  fc.record({ k: fc.constant('dropNode' as const), n: nodeIx }),
  fc.record({ k: fc.constant('vip' as const), g: gwIx, v: fc.constantFrom('192.0.2.1', '192.0.2.9', '2001:db8::1') }),
  fc.record({ k: fc.constant('move' as const), g: gwIx, n: nodeIx }),
  fc.record({ k: fc.constant('dropGateway' as const), g: gwIx }),
  fc.record({ k: fc.constant('policy' as const), p: fc.nat({ max: 9 }), g: fc.constantFrom(...GWS, 'missing') }),
  fc.record({ k: fc.constant('dropPolicy' as const), p: fc.nat({ max: 9 }) }),
  fc.record({ k: fc.constant('tamperCEGP' as const), p: fc.nat({ max: 9 }) }),
  fc.record({ k: fc.constant('tamperLabel' as const), n: nodeIx, g: gwIx }),
  fc.record({ k: fc.constant('reorder' as const) }),
);
type Change = typeof change extends fc.Arbitrary<infer C> ? C : never;

function mutate(s: Snapshot, c: Change, lastWrites: Parameters<typeof applyWrites>[1]): Snapshot {
  const nodeName = 'n' in c ? (NODES[c.n] as string) : '';
  const gwName = 'g' in c && typeof c.g === 'number' ? (GWS[c.g] as string) : '';
  switch (c.k) {
    case 'apply':
      return applyWrites(s, lastWrites);
    case 'agents':
      return agentsAct(s);
    case 'time':
      // Everyone but silenced agents renews.
      return {
        ...s,
        now: s.now + c.ms,
        heartbeats: s.heartbeats.map((h) => (h.observedAt >= s.now - 2000 ? { ...h, observedAt: s.now + c.ms - 50 } : h)),
      };
    case 'ready':
      return { ...s, nodes: update(s.nodes, nodeName, (x) => (x.status = { conditions: [{ type: 'Ready', status: c.v ? 'True' : 'False' }] })) };
    case 'cordon':
      return { ...s, nodes: update(s.nodes, nodeName, (x) => (x.spec = { unschedulable: c.v })) };
    case 'role':
      return {
        ...s,
        nodes: update(s.nodes, nodeName, (x) => (x.metadata.labels = { ...x.metadata.labels, role: c.v })),
        ciliumNodes: update(s.ciliumNodes, nodeName, (x) => (x.metadata.labels = { ...x.metadata.labels, role: c.v })),
      };
    case 'silence':
      return { ...s, heartbeats: s.heartbeats.map((h) => (h.node === nodeName ? { ...h, observedAt: s.now - 10_000 } : h)) };
    case 'ciliumPod':
      return { ...s, ciliumAgentPods: s.ciliumAgentPods.map((p) => (p.spec?.nodeName === nodeName ? pod(`c-${nodeName}`, nodeName, { ready: c.v }) : p)) };
    case 'dropNode':
      return { ...s, nodes: s.nodes.filter((n) => nameOf(n) !== nodeName) };
    case 'vip':
      return {
        ...s,
        gateways: update(s.gateways, gwName, (g) => {
          if (g.spec?.sourceIP?.virtualIPAddress) g.spec.sourceIP.virtualIPAddress.ip = c.v;
        }),
      };
    case 'move':
      return { ...s, gateways: update(s.gateways, gwName, (g) => (g.metadata.annotations = { [MOVE_TO_ANNOTATION]: nodeName })) };
    case 'dropGateway':
      return { ...s, gateways: s.gateways.filter((g) => nameOf(g) !== gwName) };
    case 'policy': {
      const name = `p${c.p}`;
      const fresh = policy(name, c.g);
      const rest = s.policies.filter((p) => nameOf(p) !== name);
      return { ...s, policies: [...rest, fresh] };
    }
    case 'dropPolicy':
      return { ...s, policies: s.policies.filter((p) => nameOf(p) !== `p${c.p}`) };
    case 'tamperCEGP':
      return { ...s, cegps: update(s.cegps, `d8.p${c.p}`, (x) => (x.spec = { ...x.spec, destinationCIDRs: ['10.9.0.0/16'] } as typeof x.spec)) };
    case 'tamperLabel':
      return { ...s, nodes: update(s.nodes, nodeName, (x) => (x.metadata.labels = { ...x.metadata.labels, [activeForLabel(gwName)]: '', [MEMBER_LABEL]: '' })) };
    case 'reorder':
      return { ...s, nodes: [...s.nodes].reverse(), policies: [...s.policies].reverse(), gateways: [...s.gateways].reverse() };
  }
}

describe('memoised core', () => {
  it('a warm core gives exactly what a cold core gives, after any sequence of changes', () => {
    fc.assert(
      fc.property(fc.nat({ max: 15 }), fc.array(change, { minLength: 1, maxLength: 30 }), (vipMask, changes) => {
        const warm = createCore();
        let s = start(vipMask);
        let writes = warm.reconcile(s).writes;
        for (const c of changes) {
          s = mutate(s, c, writes);
          const w = warm.reconcile(s);
          const cold = reconcile(s);
          assert.deepEqual(w.writes, cold.writes, `writes after ${c.k}`);
          assert.deepEqual(w.desired, cold.desired, `desired after ${c.k}`);
          writes = w.writes;
        }
      }),
      runs,
    );
  });

  it('a warm core settles a cluster in the same passes as a cold one, and then writes nothing', () => {
    fc.assert(
      fc.property(fc.nat({ max: 15 }), (vipMask) => {
        const warm = createCore();
        let a = start(vipMask);
        let b = a;
        for (let i = 0; i < 10; i++) {
          const wa = warm.reconcile(a).writes;
          const wb = reconcile(b).writes;
          assert.deepEqual(wa, wb);
          a = agentsAct(applyWrites(a, wa));
          b = agentsAct(applyWrites(b, wb));
        }
        assert.deepEqual(warm.reconcile(a).writes, []);
        // Unchanged input: the warm core hands back the same maps, so nothing is rebuilt.
        const d1 = warm.reconcile(a).desired;
        const d2 = warm.reconcile({ ...a }).desired;
        assert.equal(d2.policyStatuses, d1.policyStatuses);
        assert.equal(d2.nodeLabels, d1.nodeLabels);
      }),
      { numRuns: 16 },
    );
  });

  it('shares one frozen verdict per node between gateways with the same candidates and requirement', () => {
    const warm = createCore();
    const s = start(0b0011);
    const { desired } = warm.reconcile({ ...s, gateways: [...s.gateways, vipGateway('g4', '192.0.2.44', { role: 'a' })] });
    const g0 = desired.gateways.get('g0');
    const g4 = desired.gateways.get('g4');
    assert.ok(g0 && g4);
    assert.equal(g4.candidates, g0.candidates);
    for (const v of g0.candidates) assert.ok(Object.isFrozen(v));
  });
});
