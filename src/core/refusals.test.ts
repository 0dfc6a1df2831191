// A VIP that no agent takes (every eligible node refuses it: a router's address, see the agent's
// nextHopConflict): the controller must come to rest with a readable reason instead of handing the VIP
// from node to node every handover timeout, and must try again with backoff so it recovers.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { REFUSED_ANNOTATION, activeForLabel } from '../api/names.ts';
import type { Condition, EgressGatewayInstance } from '../api/types.ts';
import { reconcile } from './index.ts';
import type { Snapshot, Write } from './types.ts';
import { agentsAct, applyWrites, cluster, vipGateway } from './testing.ts';
import { REFUSAL_RETRY_BASE_MS, REFUSAL_RETRY_MAX_MS, formatRefusals, parseRefusals, refusalBackoffMs } from './refusals.ts';

const SEL = { role: 'egress' };
const VIP = '192.0.2.10';
const WHY = `${VIP} is the next hop of a route on this node (a router's address); announcing it would take that address over`;

const three = () => cluster(['n1', 'n2', 'n3'].map((name) => ({ name, labels: SEL })), { gateways: [vipGateway('g', VIP, SEL)] });
/** Time passes; the agents keep renewing their heartbeats. */
const later = (s: Snapshot, ms: number): Snapshot => ({ ...s, now: s.now + ms, heartbeats: s.heartbeats.map((h) => ({ ...h, observedAt: h.observedAt + ms })) });
const holders = (s: Snapshot) => s.nodes.filter((n) => n.metadata.labels?.[activeForLabel('g')] !== undefined).map((n) => n.metadata.name);
const ready = (s: Snapshot): Condition | undefined => s.gateways[0]?.status?.conditions?.find((c) => c.type === 'Ready');

/** What the agents do: those in `refusing` answer Ready=False with the next-hop reason, the others confirm. */
function agents(s: Snapshot, refusing: ReadonlySet<string>): Snapshot {
  const others = ['n1', 'n2', 'n3'].filter((n) => !refusing.has(n));
  const acted = agentsAct(s, others);
  return {
    ...acted,
    instances: acted.instances.flatMap((i): EgressGatewayInstance[] => {
      if (!refusing.has(i.spec?.nodeName ?? '')) return [i];
      if (i.metadata.deletionTimestamp) return [];
      const o = structuredClone(i);
      const gen = o.metadata.generation;
      o.status = { observedGeneration: gen, conditions: [{ type: 'Ready', status: 'False', reason: 'AnnouncingFailed', message: `Announcing Virtual IPs failed: ${WHY}`, lastTransitionTime: '2025-12-01T00:00:00Z', observedGeneration: gen }] };
      return [o];
    }),
  };
}

interface Step {
  t: number;
  writes: Write[];
}

/** Passes every `stepMs` for `forMs`, the agents acting after each. */
function runFor(s0: Snapshot, forMs: number, refusing: ReadonlySet<string>, stepMs = 1000): { s: Snapshot; steps: Step[] } {
  let s = s0;
  const steps: Step[] = [];
  for (let t = 0; t < forMs; t += stepMs) {
    const { writes } = reconcile(s);
    steps.push({ t: s.now - s0.now, writes });
    s = agents(applyWrites(s, writes), refusing);
    s = later(s, stepMs);
  }
  return { s, steps };
}

const instanceWrites = (steps: Step[]) => steps.filter((x) => x.writes.some((w) => w.kind === 'createInstance' || w.kind === 'updateInstance' || w.kind === 'deleteInstance'));
const events = (steps: Step[], reason: string) => steps.flatMap((x) => x.writes).filter((w) => w.kind === 'event' && w.reason === reason);

/** The quiet stretches (ms without any write) between bursts, in order. */
function quietStretches(steps: Step[]): number[] {
  const out: number[] = [];
  let from: number | undefined;
  for (const x of steps) {
    if (x.writes.length === 0) from ??= x.t;
    else if (from !== undefined) {
      out.push(x.t - from);
      from = undefined;
    }
  }
  return out;
}

describe('a VIP every node refuses', () => {
  const ALL = new Set(['n1', 'n2', 'n3']);

  it('comes to rest: VIPRefused naming each node and why, one event, no label or instance churn', () => {
    const { s, steps } = runFor(three(), 30_000, ALL);
    // Each node gets its handover timeout once (3 × 5 s), then nothing is written until the retry.
    const last = instanceWrites(steps).at(-1)!;
    assert.ok(last.t <= 17_000, `last instance write at ${last.t} ms`);
    assert.deepEqual(steps.filter((x) => x.t > 17_000).flatMap((x) => x.writes), []);
    assert.deepEqual(holders(s), []);
    const c = ready(s);
    assert.equal(c?.status, 'False');
    assert.equal(c?.reason, 'VIPRefused');
    for (const n of ['n1', 'n2', 'n3']) assert.ok(c?.message.includes(`node ${n}: Announcing Virtual IPs failed: ${WHY}`), c?.message);
    assert.match(c!.message, /trying them again at \d{4}-\d\d-\d\dT/);
    assert.equal(events(steps, 'VIPRefused').length, 1);
    // The gateway's candidates say why (the last node tried by its own timeout, the others remembered).
    const cand = reconcile(s).desired.gateways.get('g')!.candidates;
    assert.deepEqual(cand.map((v) => v.reasons.length === 1 && (v.reasons[0] === 'RefusedVIP' || v.reasons[0] === 'HandoverTimedOut')), [true, true, true]);
    // At most one instance at a time: the memory travels on the next one's annotation.
    assert.equal(s.instances.length, 1);
    const carried = parseRefusals(s.instances[0]!);
    assert.equal(carried?.nodes.size, 2);
  });

  it('tries again with exponential backoff, capped, while the cause stays', () => {
    const { steps } = runFor(three(), 40 * 60_000, ALL, 1000);
    // The stretches between retries: 30 s, 60 s, 120 s… up to 10 min; the shorter ones in between are
    // the handover timeouts of the retry (5 s each, one per node).
    const all = quietStretches(steps);
    const quiet = all.filter((q) => q > 10_000);
    assert.ok(quiet.length >= 5, `${quiet.length} quiet stretches`);
    assert.ok(all.every((q) => q > 10_000 || q < 5000), all.join(', '));
    for (let i = 1; i < quiet.length; i++) assert.ok(quiet[i]! >= quiet[i - 1]!, `stretches grow: ${quiet.join(', ')}`);
    assert.ok(quiet[0]! >= REFUSAL_RETRY_BASE_MS - 2000 && quiet[0]! <= REFUSAL_RETRY_BASE_MS + 2000, `first ${quiet[0]}`);
    assert.ok(Math.max(...quiet) <= REFUSAL_RETRY_MAX_MS + 2000, `capped: ${quiet.join(', ')}`);
    // One VIPRefused event per retry that failed again, not one per handover timeout.
    assert.equal(events(steps, 'VIPRefused').length, quiet.length + 1);
  });

  it('recovers once a node no longer refuses: that node becomes active, the reason clears', () => {
    const stuck = runFor(three(), 30_000, ALL).s;
    assert.equal(ready(stuck)?.reason, 'VIPRefused');
    // The route goes away on n2.
    const { s } = runFor(stuck, 90_000, new Set(['n1', 'n3']));
    assert.deepEqual(holders(s), ['n2']);
    assert.equal(ready(s)?.status, 'True');
    assert.equal(ready(s)?.reason, 'ElectionSucceedAndVirtualIPAnnounced');
  });

  it('one node refusing is skipped as before: the next one takes the VIP', () => {
    const { s, steps } = runFor(three(), 30_000, new Set(['n1', 'n2']));
    assert.deepEqual(holders(s), ['n3']);
    assert.equal(events(steps, 'VIPRefused').length, 0);
    assert.deepEqual(steps.filter((x) => x.t > 17_000).flatMap((x) => x.writes), []);
  });
});

describe('the refusal annotation', () => {
  const inst = (v: string | undefined): EgressGatewayInstance => ({ metadata: { name: 'g-0123456789', ...(v !== undefined ? { annotations: { [REFUSED_ANNOTATION]: v } } : {}) } });
  for (const [name, value, want] of [
    ['absent', undefined, undefined],
    ['empty', '', undefined],
    ['not JSON', '{nodes', undefined],
    ['no retries', '{"nodes":{}}', undefined],
    ['negative retries', '{"nodes":{},"retries":-1}', undefined],
    ['nodes not an object', '{"nodes":[],"retries":0}', undefined],
    ['a good one', '{"nodes":{"n1":"why","n2":3},"retries":2}', { nodes: [['n1', 'why']], retries: 2 }],
  ] as const) {
    it(`${name}: ${want === undefined ? 'ignored' : 'read'}`, () => {
      const r = parseRefusals(inst(value));
      assert.deepEqual(r === undefined ? undefined : { nodes: [...r.nodes], retries: r.retries }, want);
    });
  }
  it('round-trips, nodes in name order', () => {
    const v = formatRefusals({ nodes: new Map([['n2', 'b'], ['n1', 'a']]), retries: 1 });
    assert.equal(v, '{"nodes":{"n1":"a","n2":"b"},"retries":1}');
    assert.deepEqual([...parseRefusals(inst(v))!.nodes.keys()], ['n1', 'n2']);
  });
  it('backoff doubles and is capped', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 100].map(refusalBackoffMs), [30_000, 60_000, 120_000, 240_000, 480_000, 600_000, 600_000]);
  });
});
