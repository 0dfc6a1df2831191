// The planner (incremental shell) against the core's whole recompute: after any sequence of changes to
// a cluster (objects replaced, added, removed; time passing; the writes applied or not; agents acting
// or not), the planner fed with the informer events of those changes gives exactly the writes and the
// Desired of `reconcile` on the whole cluster. CORE_PROP_RUNS raises the number of sequences.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ASSIGNED_AT_ANNOTATION, INSTANCE_FINALIZER, MEMBER_LABEL, MODE_VIP, MOVE_TO_ANNOTATION, NODE_NAME_LABEL, activeForLabel } from '../../api/names.ts';
import type { EgressGatewayInstance } from '../../api/types.ts';
import { instanceName, reconcile, type Snapshot } from '../../core/index.ts';
import { NOW, agentsAct, applyWrites, ciliumNode, heartbeat, node, pod, policy, primaryGateway, update, vipGateway } from '../../core/testing.ts';
import { nameOf } from '../../core/util.ts';
import { Planner, type Change } from './planner.ts';

const NODES = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6'];
const GWS = ['g0', 'g1', 'g2', 'g3'];
const runs = { numRuns: Number(process.env['CORE_PROP_RUNS'] ?? 120) };
const role = (i: number): string => (i % 2 === 0 ? 'a' : 'b');

function gateway(i: number, vip: boolean, uid?: string) {
  const o = { created: `2025-0${i + 1}-01T00:00:00Z`, ...(uid ? { uid } : {}) };
  const g = GWS[i] as string;
  return vip ? vipGateway(g, `192.0.2.${i + 1}`, { role: role(i) }, o) : primaryGateway(g, 'eth1', i === 3 ? undefined : { role: role(i) }, o);
}

function start(vipMask: number): Snapshot {
  return {
    now: NOW,
    // With InternalIPs (all but the last node), which the Linux data plane's objects carry.
    nodes: NODES.map((n, i) => {
      const x = node(n, { role: role(i) });
      if (i < NODES.length - 1) x.status = { ...x.status, addresses: [{ type: 'InternalIP', address: `198.18.0.${11 + i}` }] } as typeof x.status;
      return x;
    }),
    ciliumNodes: NODES.map((n, i) => ciliumNode(n, { role: role(i) })),
    ciliumAgentPods: NODES.map((n) => pod(`c-${n}`, n)),
    agentPods: NODES.map((n) => pod(`a-${n}`, n)),
    heartbeats: NODES.map((n) => heartbeat(n)),
    gateways: GWS.map((_, i) => gateway(i, ((vipMask >> i) & 1) === 1)),
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
  fc.record({ k: fc.constant('dropLease' as const), n: nodeIx }),
  fc.record({ k: fc.constant('uplink' as const), n: nodeIx, v: fc.boolean() }),
  fc.record({ k: fc.constant('ciliumPod' as const), n: nodeIx, v: fc.boolean() }),
  fc.record({ k: fc.constant('agentPod' as const), n: nodeIx, v: fc.constantFrom('ready', 'notReady', 'gone') }),
  // A second cilium-agent pod on a node (a rollout), ready, not ready or terminating, or gone again.
  fc.record({ k: fc.constant('rollout' as const), n: nodeIx, v: fc.constantFrom('ready', 'notReady', 'deleting', 'gone') }),
  // Every cilium-agent pod gone (the controller looks in the wrong place: CiliumAgentNotFound), or back.
  fc.record({ k: fc.constant('ciliumAll' as const), v: fc.boolean() }),
  // A node's own address, sometimes a gateway's VIP (192.0.2.1 is g0's): that gateway must not be elected.
  fc.record({ k: fc.constant('address' as const), n: nodeIx, v: fc.constantFrom('192.0.2.1', '192.0.2.9', '198.51.100.7', 'none') }),
  fc.record({ k: fc.constant('dropNode' as const), n: nodeIx }),
  fc.record({ k: fc.constant('addNode' as const), n: nodeIx, v: fc.constantFrom('a', 'b') }),
  fc.record({ k: fc.constant('dropCiliumNode' as const), n: nodeIx }),
  fc.record({ k: fc.constant('vip' as const), g: gwIx, v: fc.constantFrom('192.0.2.1', '192.0.2.9', '2001:db8::1') }),
  fc.record({ k: fc.constant('selector' as const), g: gwIx, v: fc.constantFrom('a', 'b', 'c', 'all') }),
  fc.record({ k: fc.constant('move' as const), g: gwIx, n: nodeIx }),
  fc.record({ k: fc.constant('dropGateway' as const), g: gwIx }),
  fc.record({ k: fc.constant('addGateway' as const), g: gwIx, v: fc.boolean(), u: fc.boolean() }),
  fc.record({ k: fc.constant('policy' as const), p: fc.nat({ max: 9 }), g: fc.constantFrom(...GWS, 'missing', '') }),
  fc.record({ k: fc.constant('dropPolicy' as const), p: fc.nat({ max: 9 }) }),
  fc.record({ k: fc.constant('tamperCEGP' as const), p: fc.nat({ max: 9 }) }),
  fc.record({ k: fc.constant('dropInstance' as const), i: fc.nat({ max: 9 }) }),
  // An instance whose name is not its owner's (the reference names them so too, a person may not), or
  // one with a gateway's instance name that another gateway (or none) owns.
  fc.record({ k: fc.constant('oddInstance' as const), g: gwIx, n: nodeIx, owner: fc.constantFrom(...GWS, 'none'), named: fc.boolean(), ready: fc.boolean(), deleting: fc.boolean() }),
  fc.record({ k: fc.constant('tamperLabel' as const), n: nodeIx, g: gwIx }),
  fc.record({ k: fc.constant('reorder' as const) }),
);
type Change0 = typeof change extends fc.Arbitrary<infer C> ? C : never;

function mutate(s: Snapshot, c: Change0, lastWrites: Parameters<typeof applyWrites>[1]): Snapshot {
  const nodeName = 'n' in c ? (NODES[c.n] as string) : '';
  const gwName = 'g' in c && typeof c.g === 'number' ? (GWS[c.g] as string) : '';
  const hbs = (f: (h: Snapshot['heartbeats'][number]) => Snapshot['heartbeats'][number] | undefined) => s.heartbeats.flatMap((h) => (h.node === nodeName ? (f(h) ?? []) : [h]));
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
      return { ...s, heartbeats: hbs((h) => ({ ...h, observedAt: s.now - 10_000 })) };
    case 'dropLease':
      return { ...s, heartbeats: hbs(() => undefined) };
    case 'uplink':
      return { ...s, heartbeats: hbs((h) => ({ ...h, uplinks: { eth1: { up: c.v, ipv4: ['198.51.100.1'] } } })) };
    case 'ciliumPod':
      return { ...s, ciliumAgentPods: s.ciliumAgentPods.map((p) => (p.spec?.nodeName === nodeName ? pod(`c-${nodeName}`, nodeName, { ready: c.v }) : p)) };
    case 'agentPod': {
      const rest = s.agentPods.filter((p) => p.spec?.nodeName !== nodeName);
      return { ...s, agentPods: c.v === 'gone' ? rest : [...rest, pod(`a-${nodeName}`, nodeName, { ready: c.v === 'ready' })] };
    }
    case 'rollout': {
      const rest = s.ciliumAgentPods.filter((p) => nameOf(p) !== `c2-${nodeName}`);
      return { ...s, ciliumAgentPods: c.v === 'gone' ? rest : [...rest, pod(`c2-${nodeName}`, nodeName, { ready: c.v === 'ready', deleting: c.v === 'deleting' })] };
    }
    case 'ciliumAll':
      return { ...s, ciliumAgentPods: c.v ? NODES.map((n) => pod(`c-${n}`, n)) : [] };
    case 'address':
      return {
        ...s,
        nodes: update(s.nodes, nodeName, (x) => (x.status = { ...x.status, ...(c.v === 'none' ? { addresses: [] } : { addresses: [{ type: 'InternalIP', address: c.v }] }) })),
      };
    case 'dropNode':
      return { ...s, nodes: s.nodes.filter((n) => nameOf(n) !== nodeName) };
    case 'addNode':
      if (s.nodes.some((n) => nameOf(n) === nodeName)) return s;
      return { ...s, nodes: [...s.nodes, node(nodeName, { role: c.v })] };
    case 'dropCiliumNode':
      return { ...s, ciliumNodes: s.ciliumNodes.filter((n) => nameOf(n) !== nodeName) };
    case 'vip':
      return {
        ...s,
        gateways: update(s.gateways, gwName, (g) => {
          if (g.spec?.sourceIP?.virtualIPAddress) g.spec.sourceIP.virtualIPAddress.ip = c.v;
        }),
      };
    case 'selector':
      return {
        ...s,
        gateways: update(s.gateways, gwName, (g) => {
          if (!g.spec) return;
          if (c.v === 'all') delete g.spec.nodeSelector;
          else g.spec.nodeSelector = { role: c.v };
        }),
      };
    case 'move':
      return { ...s, gateways: update(s.gateways, gwName, (g) => (g.metadata.annotations = { [MOVE_TO_ANNOTATION]: nodeName })) };
    case 'dropGateway':
      return { ...s, gateways: s.gateways.filter((g) => nameOf(g) !== gwName) };
    case 'addGateway':
      // Back with the same uid, or recreated (a new uid: its old instances are no longer its own).
      if (s.gateways.some((g) => nameOf(g) === gwName)) return s;
      return { ...s, gateways: [...s.gateways, gateway(c.g, c.v, c.u ? `uid-gw-${gwName}-2` : undefined)] };
    case 'policy': {
      const name = `p${c.p}`;
      const rest = s.policies.filter((p) => nameOf(p) !== name);
      return { ...s, policies: [...rest, policy(name, c.g)] };
    }
    case 'dropPolicy':
      return { ...s, policies: s.policies.filter((p) => nameOf(p) !== `p${c.p}`) };
    case 'tamperCEGP':
      return { ...s, cegps: update(s.cegps, `d8.p${c.p}`, (x) => (x.spec = { ...x.spec, destinationCIDRs: ['10.9.0.0/16'] } as typeof x.spec)) };
    case 'dropInstance': {
      const victim = s.instances[c.i % Math.max(1, s.instances.length)];
      return { ...s, instances: s.instances.filter((i) => i !== victim) };
    }
    case 'oddInstance': {
      const name = c.named ? instanceName(gwName, nodeName) : `odd-${gwName}-${nodeName}`;
      const inst: EgressGatewayInstance = {
        metadata: {
          name,
          generation: 1,
          labels: { heritage: 'deckhouse', module: 'cni-cilium', [NODE_NAME_LABEL]: nodeName },
          annotations: { [ASSIGNED_AT_ANNOTATION]: new Date(s.now - 1000).toISOString() },
          finalizers: [INSTANCE_FINALIZER],
          ...(c.deleting ? { deletionTimestamp: new Date(s.now).toISOString() } : {}),
          ...(c.owner !== 'none' ? { ownerReferences: [{ apiVersion: 'network.deckhouse.io/v1alpha1', kind: 'EgressGateway', name: c.owner, uid: `uid-gw-${c.owner}`, controller: true }] } : {}),
        },
        spec: { nodeName, sourceIP: { mode: MODE_VIP, virtualIPAddress: { ip: `192.0.2.${GWS.indexOf(c.owner) + 1}`, interfaces: [] } } },
      };
      if (c.ready) inst.status = { observedGeneration: 1, conditions: [{ type: 'Ready', status: 'True', reason: 'X', message: '', lastTransitionTime: new Date(s.now).toISOString() }] };
      return { ...s, instances: [...s.instances.filter((i) => nameOf(i) !== name), inst] };
    }
    case 'tamperLabel':
      return { ...s, nodes: update(s.nodes, nodeName, (x) => (x.metadata.labels = { ...x.metadata.labels, [activeForLabel(gwName)]: '', [MEMBER_LABEL]: '' })) };
    case 'reorder':
      return { ...s, nodes: [...s.nodes].reverse(), policies: [...s.policies].reverse(), gateways: [...s.gateways].reverse() };
  }
}

type Named = { metadata?: { name?: string; namespace?: string } };
const key = (o: Named): string => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

/** What the informers deliver between two states of the cluster: an event per object added, changed or gone. */
function events<T extends Named>(before: readonly T[], after: readonly T[], deliver: (type: Change, o: T) => void): void {
  const old = new Map(before.map((o) => [key(o), o]));
  const now = new Map(after.map((o) => [key(o), o]));
  for (const [k, o] of old) if (!now.has(k)) deliver('delete', o);
  for (const [k, o] of now) {
    const was = old.get(k);
    if (!was) deliver('add', o);
    else if (was !== o) deliver('update', o);
  }
}

function feed(p: Planner, before: Snapshot | undefined, after: Snapshot): void {
  const b = (k: keyof Snapshot) => (before?.[k] ?? []) as never[];
  events(b('nodes'), after.nodes, (t, o) => p.node(t, o));
  events(b('ciliumNodes'), after.ciliumNodes, (t, o) => p.ciliumNode(t, o));
  events(b('ciliumAgentPods'), after.ciliumAgentPods, (t, o) => p.ciliumAgentPod(t, o));
  events(b('agentPods'), after.agentPods, (t, o) => p.agentPod(t, o));
  events(b('gateways'), after.gateways, (t, o) => p.gateway(t, o));
  events(b('policies'), after.policies, (t, o) => p.policy(t, o));
  events(b('instances'), after.instances, (t, o) => p.instance(t, o));
  events(b('cegps'), after.cegps, (t, o) => p.cegp(t, o));
  events(b('dataplanes'), after.dataplanes ?? [], (t, o) => p.dataplane(t, o));
}

/** The planner's pass over `after`, fed with the events since `before`. */
function step(p: Planner, before: Snapshot | undefined, after: Snapshot) {
  feed(p, before, after);
  return p.pass(after.now, after.heartbeats, { desired: true });
}

describe('planner (incremental shell)', () => {
  for (const [label, options] of [['', undefined], [' (--dataplane linux)', { dataplane: 'linux' as const, requireCiliumAgent: false }]] as const) {
    it(`gives exactly what a whole recompute gives, after any sequence of changes${label}`, () => {
      fc.assert(
        fc.property(fc.nat({ max: 15 }), fc.array(change, { minLength: 1, maxLength: 30 }), (vipMask, changes) => {
          const planner = new Planner(options);
          let s = start(vipMask);
          let out = step(planner, undefined, s);
          assert.deepEqual(out.writes, reconcile(s, options).writes);
          for (const c of changes) {
            const next = mutate(s, c, out.writes);
            out = step(planner, s, next);
            s = next;
            const whole = reconcile(s, options);
            assert.deepEqual(out.writes, whole.writes, `writes after ${c.k}`);
            assert.deepEqual(out.desired, whole.desired, `desired after ${c.k}`);
            assert.deepEqual(out.metrics, whole.desired.metrics, `metrics after ${c.k}`);
          }
        }),
        runs,
      );
    });
  }

  it('settles a cluster in the same passes as a whole recompute, then writes nothing and plans nothing again', () => {
    fc.assert(
      fc.property(fc.nat({ max: 15 }), (vipMask) => {
        const planner = new Planner();
        let a = start(vipMask);
        let prev: Snapshot | undefined;
        for (let i = 0; i < 10; i++) {
          const wa = step(planner, prev, a).writes;
          assert.deepEqual(wa, reconcile(a).writes);
          prev = a;
          a = agentsAct(applyWrites(a, wa));
        }
        assert.deepEqual(step(planner, prev, a).writes, []);
        // Nothing changed and no clock runs: every plan is reused.
        const again = step(planner, a, { ...a });
        assert.deepEqual(again.writes, []);
        assert.deepEqual(again.planned, { gateways: 0, nodes: 0 });
      }),
      { numRuns: 16 },
    );
  });

  it('plans again only the gateways whose nodes an event touched', () => {
    const planner = new Planner();
    let s = start(0b0011);
    let prev: Snapshot | undefined;
    for (let i = 0; i < 6; i++) {
      const w = step(planner, prev, s).writes;
      prev = s;
      s = agentsAct(applyWrites(s, w));
    }
    assert.deepEqual(step(planner, prev, s).writes, []);
    // n2 (role b) is a candidate of g1 and g3 (g3 selects every node) only.
    const next = { ...s, nodes: update(s.nodes, 'n2', (x) => (x.spec = { unschedulable: true })) };
    const out = step(planner, s, next);
    assert.equal(out.planned.gateways, 2);
    assert.deepEqual(out.writes, reconcile(next).writes);
  });
});

describe('planner: what an event touches', () => {
  const settled = (s0: Snapshot): { planner: Planner; s: Snapshot } => {
    const planner = new Planner();
    let s = s0;
    let prev: Snapshot | undefined;
    for (let i = 0; i < 6; i++) {
      const w = step(planner, prev, s).writes;
      prev = s;
      s = agentsAct(applyWrites(s, w));
    }
    step(planner, prev, s);
    return { planner, s };
  };

  it('a node a gateway names outside its candidates (move-to): its deletion is noticed', () => {
    const { planner, s } = settled(start(0b0001));
    // g0 selects role a (n1, n3, n5); n2 has role b.
    const moved = { ...s, gateways: update(s.gateways, 'g0', (g) => (g.metadata.annotations = { [MOVE_TO_ANNOTATION]: 'n2' })) };
    const a = step(planner, s, moved);
    assert.match(JSON.stringify(a.writes), /node n2 does not match the gateway's nodeSelector/);
    const gone = { ...moved, nodes: moved.nodes.filter((n) => nameOf(n) !== 'n2') };
    const b = step(planner, moved, gone);
    assert.match(JSON.stringify(b.writes), /node n2 does not exist/);
    assert.deepEqual(b.writes, reconcile(gone).writes);
  });

  it('a heartbeat that expires with time alone (no event) is noticed', () => {
    const { planner, s } = settled(start(0b1111));
    const active = s.nodes.find((n) => n.metadata.labels?.[activeForLabel('g0')] !== undefined)?.metadata.name;
    assert.ok(active);
    // Everyone renews but the active node, and the time passes its lease.
    const later = { ...s, now: s.now + 2500, heartbeats: s.heartbeats.map((h) => (h.node === active ? h : { ...h, observedAt: s.now + 2400 })) };
    const out = p(planner, later);
    assert.ok(out.writes.some((w) => w.kind === 'event' && w.reason === 'FailedOver'));
    assert.deepEqual(out.writes, reconcile(later).writes);
  });
});

/** A pass with no informer event at all (only the clock and the heartbeat records moved). */
function p(planner: Planner, s: Snapshot) {
  return planner.pass(s.now, s.heartbeats, { desired: true });
}
