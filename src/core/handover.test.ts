// The handover mark (HANDOVER_TO_ANNOTATION): while the VIP is being handed over from the active node A
// to another node B (B's instance written, not yet confirmed), A's instance says so, and A's agent keeps
// the VIP if it holds it but does not take it back. Found by the chaos suite (seed 20261209, rounds 5,
// 7, 17, 29): A fenced and dropped the VIP, the controller handed over to B, and A, back from the fence,
// re-took the VIP and announced it beside B; once its instance was deleted A withdrew silently and the
// LAN's ARP caches pointed at A until B's next periodic announcement (up to 10 s).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ASSIGNED_AT_ANNOTATION, HANDOVER_TO_ANNOTATION, MOVE_TO_ANNOTATION, REFUSED_ANNOTATION, activeForLabel } from '../api/names.ts';
import type { EgressGatewayInstance } from '../api/types.ts';
import { instanceName, reconcile } from './index.ts';
import { desiredInstance, instanceAnnotations, instanceUpToDate } from './instances.ts';
import { analyseGateway } from './validate.ts';
import type { Snapshot, Write } from './types.ts';
import { NOW, agentsAct, applyWrites, cluster, instanceWithStatus, pod, settleWith, update, vipGateway } from './testing.ts';

const SEL = { role: 'egress' };
const run = (s: Snapshot) => reconcile(s);
const settle = (s: Snapshot) => settleWith(run, s);
const ofKind = <K extends Write['kind']>(ws: Write[], kind: K): Array<Extract<Write, { kind: K }>> =>
  ws.filter((w): w is Extract<Write, { kind: K }> => w.kind === kind);
const holders = (s: Snapshot) => s.nodes.filter((n) => n.metadata.labels?.[activeForLabel('g')] !== undefined).map((n) => n.metadata.name);
const later = (s: Snapshot, ms: number): Snapshot => ({ ...s, now: s.now + ms, heartbeats: s.heartbeats.map((h) => ({ ...h, observedAt: h.observedAt + ms })) });
const instanceOf = (s: Snapshot, node: string): EgressGatewayInstance | undefined => s.instances.find((i) => i.metadata.name === instanceName('g', node));
const mark = (i: EgressGatewayInstance | undefined): string | undefined => i?.metadata.annotations?.[HANDOVER_TO_ANNOTATION];
/** The node's agent pod NotReady (its /readyz fails, e.g. cut off from the API): ineligible, heartbeat still live. */
const agentNotReady = (s: Snapshot, node: string, notReady = true): Snapshot => ({
  ...s,
  agentPods: s.agentPods.map((p) => (p.spec?.nodeName === node ? pod(p.metadata.name, node, { ready: !notReady }) : p)),
});
/** What A's agent reports back from a fence during the handover: it holds nothing and does not take the VIP. */
const handingOver = (s: Snapshot, node: string): Snapshot => ({ ...s, instances: update(s.instances, instanceName('g', node), (i) => Object.assign(i, instanceWithStatus(i, 'False'))) });

/** Two gateway nodes settled with the gateway active on one of them (A), the other (B). */
function settledPair(): { s: Snapshot; a: string; b: string } {
  const s = settle(cluster(['n1', 'n2'].map((name) => ({ name, labels: SEL })), { gateways: [vipGateway('g', '192.0.2.10', SEL)] }));
  const [a] = holders(s);
  assert.ok(a);
  return { s, a, b: a === 'n1' ? 'n2' : 'n1' };
}

/**
 * The instance writes of one pass that let a node take the VIP: a created or updated instance without the
 * handover mark (an order to hold and announce the VIP), as [node, kind].
 */
const unmarkedInstanceWrites = (ws: Write[]): string[][] =>
  ws.flatMap((w) => ((w.kind === 'createInstance' || w.kind === 'updateInstance') && mark(w.object) === undefined ? [[w.object.spec?.nodeName ?? '', w.kind]] : []));
const reasonsOf = (r: ReturnType<typeof run>, node: string) => r.desired.gateways.get('g')?.candidates.find((c) => c.node === node)?.reasons;

// Found by the chaos suite (linux mode, seed 20261216 round 12): A fenced, the controller wrote B's instance,
// B (its reads failing) never confirmed; at the timeout the controller re-assigned A's instance (an update,
// written first) and deleted B's (written last, 400 ms later under a slow etcd). B's agent re-listed in
// between, saw its instance without a deletionTimestamp and announced the VIP beside A: 350 ms of two owners.
/** A fenced, the VIP went to B, B never confirmed; 5 s later A is healthy again but holds no VIP (the mark kept it from taking it back). */
function bTimedOutAReElected(): { s: Snapshot; a: string; b: string } {
  const { s: s0, a, b } = settledPair();
  let s = agentNotReady(s0, a);
  s = applyWrites(s, run(s).writes);
  return { s: handingOver(agentNotReady(later(s, 5000), a, false), a), a, b };
}

describe('an abandoned target takes no VIP while another node is given it (seed 20261216 round 12)', () => {
  it('B timed out, A re-elected: the pass deletes B\'s instance and keeps A\'s held, still held while B\'s live agent has not released it, re-assigned once it has', () => {
    const start = bTimedOutAReElected();
    const { a, b } = start;
    let s = start.s;
    let r = run(s);
    assert.equal(r.desired.gateways.get('g')?.target, a);
    assert.deepEqual(ofKind(r.writes, 'deleteInstance').map((w) => w.name), [instanceName('g', b)]);
    assert.deepEqual(unmarkedInstanceWrites(r.writes), [], 'nobody is given the VIP in the pass that withdraws B');
    // A's instance stays held (now marked for A itself) and remembers B's refusal.
    const held = ofKind(r.writes, 'updateInstance');
    assert.deepEqual(held.map((w) => [w.object.metadata.name, mark(w.object)]), [[instanceName('g', a), a]]);
    assert.deepEqual(Object.keys(JSON.parse(held[0]?.object.metadata.annotations?.[REFUSED_ANNOTATION] ?? '{}').nodes ?? {}), [b]);
    const before = reasonsOf(r, b);
    s = later(applyWrites(s, r.writes), 100);
    // B's instance is deleting, but B's agent is alive and has not released it: it may have listed its
    // instance just before the deletion and still take the VIP (chaos, linux, seed 20261219 round 30).
    // A stays held.
    r = run(s);
    assert.deepEqual(unmarkedInstanceWrites(r.writes), [], 'nobody is given the VIP while B\'s live agent has not released its instance');
    // B's agent has seen the deletion, withdrawn and removed the finalizer: A is re-assigned now.
    s = agentsAct(later(applyWrites(s, r.writes), 100), [b]);
    assert.equal(instanceOf(s, b), undefined);
    r = run(s);
    assert.deepEqual(reasonsOf(r, b), before, 'the same verdict for B on the next pass');
    assert.equal(ofKind(r.writes, 'gatewayStatus').length, 0);
    assert.deepEqual(unmarkedInstanceWrites(r.writes), [[a, 'updateInstance']]);
    assert.equal(ofKind(r.writes, 'updateInstance')[0]?.object.metadata.annotations?.[ASSIGNED_AT_ANNOTATION], new Date(s.now).toISOString());
    s = settle(agentsAct(applyWrites(s, r.writes), [a, b]));
    assert.deepEqual(holders(s), [a]);
    assert.deepEqual(s.instances.map((i) => [i.spec?.nodeName, mark(i)]), [[a, undefined]]);
  });

  it('B timed out, a third node C is the target: the pass deletes B\'s instance and creates C\'s held; the next pass (B\'s gone) releases C, B stays refused', () => {
    let s = settle(cluster(['n1', 'n2', 'n3'].map((name) => ({ name, labels: SEL })), { gateways: [vipGateway('g', '192.0.2.10', SEL)] }));
    const [a] = holders(s);
    assert.ok(a);
    s = agentNotReady(s, a);
    let r = run(s);
    const b = ofKind(r.writes, 'createInstance')[0]?.object.spec?.nodeName ?? '';
    s = applyWrites(s, r.writes);
    s = later(s, 5000);
    r = run(s);
    const c = r.desired.gateways.get('g')?.target ?? '';
    assert.ok(c !== a && c !== b && c !== '');
    assert.deepEqual(ofKind(r.writes, 'deleteInstance').map((w) => w.name), [instanceName('g', b)]);
    assert.deepEqual(unmarkedInstanceWrites(r.writes), [], 'nobody is given the VIP in the pass that withdraws B');
    assert.deepEqual(ofKind(r.writes, 'createInstance').map((w) => [w.object.spec?.nodeName, mark(w.object)]), [[c, c]]);
    // B's agent releases its instance at once: the next pass sees it gone, not deleting, and still
    // remembers B (on C's held instance), so C is released rather than B elected again.
    s = agentsAct(later(applyWrites(s, r.writes), 100), [b]);
    assert.equal(instanceOf(s, b), undefined);
    r = run(s);
    assert.equal(r.desired.gateways.get('g')?.target, c);
    assert.deepEqual(reasonsOf(r, b), ['RefusedVIP']);
    assert.deepEqual(unmarkedInstanceWrites(r.writes), [[c, 'updateInstance']]);
    s = settle(agentsAct(applyWrites(s, r.writes), [c]));
    assert.deepEqual(holders(s), [c]);
  });

  it('B\'s node dead (heartbeat expired): its deleting instance, never released, does not hold A back', () => {
    const start = bTimedOutAReElected();
    const { a, b } = start;
    let s = start.s;
    s = later(applyWrites(s, run(s).writes), 100);
    assert.notEqual(instanceOf(s, b)?.metadata.deletionTimestamp, undefined);
    assert.deepEqual(unmarkedInstanceWrites(run(s).writes), [], 'held while B\'s heartbeat is live');
    // B's agent dies: its heartbeat expires and nobody removes the finalizer.
    s = { ...s, heartbeats: s.heartbeats.map((h) => (h.node === b ? { ...h, observedAt: s.now - 60_000 } : h)) };
    assert.deepEqual(unmarkedInstanceWrites(run(s).writes), [[a, 'updateInstance']]);
    s = settle(agentsAct(applyWrites(s, run(s).writes), [a]));
    assert.deepEqual(holders(s), [a]);
  });

  it('a held target\'s agent does not take the VIP (the mark names its own node)', () => {
    const { s: s0, a, b } = bTimedOutAReElected();
    const s = agentsAct(applyWrites(s0, run(s0).writes), [a]);
    assert.equal(mark(instanceOf(s, a)), a);
    assert.equal(instanceOf(s, a)?.status?.conditions?.[0]?.status, 'False');
    assert.notEqual(instanceOf(s, b)?.metadata.deletionTimestamp, undefined);
  });
});

describe('handover mark on the old owner\'s instance', () => {
  it('is absent in steady state', () => {
    const { s } = settledPair();
    assert.equal(s.instances.length, 1);
    assert.equal(mark(s.instances[0]), undefined);
    assert.deepEqual(run(later(s, 60_000)).writes, []);
  });

  it('appears on A\'s instance in the pass that writes B\'s instance, and goes with A\'s instance once B confirms', () => {
    const { s: s0, a, b } = settledPair();
    let s = agentNotReady(s0, a);
    const r = run(s);
    assert.deepEqual(ofKind(r.writes, 'createInstance').map((w) => w.object.spec?.nodeName), [b]);
    const up = ofKind(r.writes, 'updateInstance');
    assert.deepEqual(up.map((w) => [w.object.metadata.name, w.object.metadata.annotations?.[HANDOVER_TO_ANNOTATION]]), [[instanceName('g', a), b]]);
    // Only the mark changes: same spec, same assigned-at (no new clock for the old owner).
    assert.equal(up[0]?.object.metadata.annotations?.[ASSIGNED_AT_ANNOTATION], instanceOf(s, a)?.metadata.annotations?.[ASSIGNED_AT_ANNOTATION]);
    // Make before break: A keeps its instance (and the VIP, if it holds it) until B confirms.
    assert.equal(ofKind(r.writes, 'deleteInstance').length, 0);
    s = applyWrites(s, r.writes);
    assert.equal(mark(instanceOf(s, a)), b);
    assert.equal(mark(instanceOf(s, b)), undefined, 'the target carries no mark');
    assert.deepEqual(run(s).writes, [], 'nothing more until B confirms');
    s = agentsAct(s, [b]);
    const done = run(s);
    assert.deepEqual(ofKind(done.writes, 'deleteInstance').map((w) => w.name), [instanceName('g', a)]);
    assert.equal(ofKind(done.writes, 'updateInstance').length, 0);
    s = settle(applyWrites(s, done.writes));
    assert.deepEqual(holders(s), [b]);
    assert.deepEqual(s.instances.map((i) => [i.spec?.nodeName, mark(i)]), [[b, undefined]]);
  });

  it('an old owner that reports it let go of the VIP (back from a fence) loses its instance; B still gets the VIP', () => {
    const { s: s0, a, b } = settledPair();
    let s = agentNotReady(s0, a);
    s = applyWrites(s, run(s).writes);
    s = handingOver(s, a);
    let r = run(s);
    // Nothing to make before break with: A's instance goes, B's stays the target. A's agent is alive and
    // its status may be older than its latest take: B's instance is held (marked for B) until A's is gone.
    assert.deepEqual(ofKind(r.writes, 'deleteInstance').map((w) => w.name), [instanceName('g', a)]);
    assert.equal(r.desired.gateways.get('g')?.target, b);
    assert.deepEqual(ofKind(r.writes, 'updateInstance').map((w) => [w.object.spec?.nodeName, mark(w.object)]), [[b, b]]);
    s = applyWrites(s, r.writes);
    assert.deepEqual(unmarkedInstanceWrites(run(s).writes), [], 'still held while A\'s instance is deleting');
    s = agentsAct(s, [a]);
    r = run(s);
    assert.deepEqual(unmarkedInstanceWrites(r.writes), [[b, 'updateInstance']]);
    s = settle(agentsAct(applyWrites(s, r.writes), [b]));
    assert.deepEqual(holders(s), [b]);
  });

  it('is removed when B times out and A is re-elected', () => {
    const { s: s0, a, b } = settledPair();
    let s = agentNotReady(s0, a);
    s = applyWrites(s, run(s).writes);
    assert.equal(mark(instanceOf(s, a)), b);
    // B never confirms; 5 s later A (which kept the VIP: make before break) is healthy again.
    s = agentNotReady(later(s, 5000), a, false);
    const r = run(s);
    assert.equal(r.desired.gateways.get('g')?.target, a);
    const up = ofKind(r.writes, 'updateInstance');
    assert.deepEqual(up.map((w) => w.object.metadata.name), [instanceName('g', a)]);
    assert.equal(up[0]?.object.metadata.annotations?.[HANDOVER_TO_ANNOTATION], undefined);
    assert.deepEqual(ofKind(r.writes, 'deleteInstance').map((w) => w.name), [instanceName('g', b)]);
    s = applyWrites(s, r.writes);
    assert.equal(mark(instanceOf(s, a)), undefined, 'the write path drops the mark');
    assert.deepEqual(run(s).writes.filter((w) => w.kind === 'updateInstance' || w.kind === 'createInstance'), [], 'and then the instance is up to date');
    s = settle(agentsAct(s, [a]));
    assert.deepEqual(holders(s), [a]);
    assert.deepEqual(s.instances.map((i) => [i.spec?.nodeName, mark(i)]), [[a, undefined]]);
  });

  it('on a graceful move: the old owner back from a fence without the VIP is not timed out; the abandoned move assigns its instance anew', () => {
    const { s: s0, a, b } = settledPair();
    let s: Snapshot = { ...s0, gateways: update(s0.gateways, 'g', (g) => (g.metadata.annotations = { ...g.metadata.annotations, [MOVE_TO_ANNOTATION]: b })) };
    let r = run(s);
    assert.deepEqual(ofKind(r.writes, 'updateInstance').map((w) => [w.object.spec?.nodeName, w.object.metadata.annotations?.[HANDOVER_TO_ANNOTATION]]), [[a, b]]);
    s = applyWrites(s, r.writes);
    // A fenced during the move and reports that it does not take the VIP back; it stays the labelled node.
    s = later(handingOver(s, a), 1000);
    r = run(s);
    assert.deepEqual(r.desired.gateways.get('g')?.candidates.find((c) => c.node === a)?.reasons, [], 'A is not timed out by its old assignment');
    assert.equal(ofKind(r.writes, 'deleteInstance').length, 0);
    s = applyWrites(s, r.writes);
    // B never confirms: the move is rejected, A is kept. B's instance goes first; A's stays held (its
    // mark now names A itself) until B's is gone: then the mark goes and A is assigned now.
    s = later(s, 5000);
    r = run(s);
    assert.equal(r.desired.gateways.get('g')?.target, a);
    assert.deepEqual(ofKind(r.writes, 'deleteInstance').map((w) => w.name), [instanceName('g', b)]);
    let up = ofKind(r.writes, 'updateInstance');
    assert.deepEqual(up.map((w) => [w.object.metadata.name, w.object.metadata.annotations?.[HANDOVER_TO_ANNOTATION]]), [[instanceName('g', a), a]]);
    s = later(applyWrites(s, r.writes), 100);
    assert.deepEqual(unmarkedInstanceWrites(run(s).writes), [], 'A stays held while B\'s live agent has not released its instance');
    s = agentsAct(s, [b]);
    r = run(s);
    assert.equal(ofKind(r.writes, 'deleteInstance').length, 0);
    up = ofKind(r.writes, 'updateInstance');
    assert.deepEqual(up.map((w) => w.object.metadata.name), [instanceName('g', a)]);
    assert.equal(up[0]?.object.metadata.annotations?.[HANDOVER_TO_ANNOTATION], undefined);
    assert.equal(up[0]?.object.metadata.annotations?.[ASSIGNED_AT_ANNOTATION], new Date(s.now).toISOString());
    s = settle(agentsAct(applyWrites(s, r.writes), [a]));
    assert.deepEqual(holders(s), [a]);
    assert.deepEqual(s.instances.map((i) => [i.spec?.nodeName, mark(i)]), [[a, undefined]]);
  });

  it('is not written while the target\'s instance cannot be (its name still held by a terminating one)', () => {
    const { s: s0, a, b } = settledPair();
    const terminating = instanceWithStatus({ ...structuredClone(instanceOf(s0, a)!), metadata: { ...structuredClone(instanceOf(s0, a)!.metadata), name: instanceName('g', b), deletionTimestamp: new Date(NOW).toISOString() }, spec: { ...instanceOf(s0, a)!.spec, nodeName: b } }, 'True');
    const s = agentNotReady({ ...s0, instances: [...s0.instances, terminating] }, a);
    const r = run(s);
    assert.equal(r.desired.gateways.get('g')?.target, b);
    assert.equal(ofKind(r.writes, 'createInstance').length, 0);
    assert.equal(ofKind(r.writes, 'updateInstance').length, 0);
  });

  it('an observed mark the desired instance lacks is a difference, and an update drops it (other annotations kept)', () => {
    const g = analyseGateway(vipGateway('g', '192.0.2.10', SEL));
    const plain = desiredInstance(g, 'n1', 'g-x', '2025-12-01T00:00:00Z');
    const marked = desiredInstance(g, 'n1', 'g-x', '2025-12-01T00:00:00Z', { handoverTo: 'n2' });
    assert.equal(instanceUpToDate(marked, plain), false);
    assert.equal(instanceUpToDate(plain, marked), false);
    assert.equal(instanceUpToDate(marked, marked), true);
    const observed = { ...marked.metadata.annotations, 'example.com/theirs': 'x' };
    assert.deepEqual(instanceAnnotations(observed, plain.metadata.annotations), { ...plain.metadata.annotations, 'example.com/theirs': 'x' });
    assert.deepEqual(instanceAnnotations(observed, marked.metadata.annotations), observed);
  });
});
