// The answer rules of the chaos rounds on hand-made frames: what must be flagged is flagged, and the
// make-before-break overlap of a handover's pair (the active node and the target) is not.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkAnswers, type AnswerRules } from './answers.ts';
import type { ArpAnswerFrame } from '../../src/testenv/answers.ts';

const A = 'aa:aa:aa:aa:aa:01';
const B = 'aa:aa:aa:aa:aa:02';
const C = 'aa:aa:aa:aa:aa:03';
const ROUTER = 'aa:aa:aa:aa:aa:ff';
const VIP = '198.18.0.100';
const PROBER = '198.18.0.250';

const reply = (t: number, mac: string, ip = VIP): ArpAnswerFrame => ({ t, op: 'reply', senderMac: mac, senderIp: ip, targetIp: PROBER, gratuitous: false });

function rules(over: Partial<AnswerRules> = {}): AnswerRules {
  return {
    proberIp: PROBER,
    probeIntervalMs: 50,
    nodeOfMac: new Map([[A, 'node1'], [B, 'node2'], [C, 'node3']]),
    gatewayOfVip: new Map([[VIP, 'gw']]),
    ownerOf: new Map([['198.18.0.1', ROUTER]]),
    fenceAfterMs: 650,
    slackMs: 100,
    graceMs: 2000,
    // Both nodes renew every 150 ms from 0 to 10 s.
    renewals: new Map(['node1', 'node2', 'node3'].map((n) => [n, Array.from({ length: 67 }, (_, i) => i * 150)])),
    lifetimes: new Map([['gw-node1', [{ from: 0, to: 5000 }]], ['gw-node2', [{ from: 4000, to: Infinity }]]]),
    instanceName: (g, n) => `${g}-${n}`,
    ...over,
  };
}

describe('chaos answer rules', () => {
  it('a planned handover: both nodes assigned and heartbeating may answer together for a while', () => {
    const frames = [reply(4500, A), reply(4502, B), reply(4550, A), reply(4551, B), reply(4600, B)];
    const s = checkAnswers(frames, rules(), { from: 0, to: 10_000 });
    assert.deepEqual(s.violations, []);
    assert.equal(s.dualQuestions, 2);
    assert.equal(s.longestOverlapMs, 100);
  });

  it('a handover back to a node whose old instance was deleted less than the grace ago: its new instance counts (seed 20261212 round 2, linux)', () => {
    // gw failed over node1 → node2 (node1's instance deleted at 5000, node2 heard alone at 5500); at 6000
    // the controller hands it back to node1 with a new instance of the same name. Both answer at 6100:
    // the active node2 and the target node1 — a handover's pair, although 6100 is within the grace
    // (2 s) of the old instance's deletion.
    const lifetimes = new Map([['gw-node1', [{ from: 0, to: 5000 }, { from: 6000, to: Infinity }]], ['gw-node2', [{ from: 4000, to: Infinity }]]]);
    const frames = [reply(5500, B), reply(5600, B), reply(6100, B), reply(6101, A), reply(6150, B), reply(6151, A)];
    assert.deepEqual(checkAnswers(frames, rules({ lifetimes }), { from: 0, to: 10_000 }).violations, []);
  });

  it('a node that answers later than fence-after past its last accepted renewal is flagged (a failed fence)', () => {
    // node1 stops renewing at 3000 (its last renewal); it answers at 3900: 900 ms > 650 + 100.
    const renewals = new Map([['node1', [0, 1000, 2000, 3000]], ['node2', [0, 1000, 2000, 3000, 4000]]]);
    const s = checkAnswers([reply(3700, A), reply(3900, A)], rules({ renewals }), { from: 0, to: 10_000 });
    assert.deepEqual(s.violations.map((v) => [v.rule, v.by, v.t]), [['fenced', 'node1', 3900]]);
  });

  it('a node that answers without an instance (past the grace after its deletion) is flagged', () => {
    const s = checkAnswers([reply(6900, A), reply(7100, A)], rules(), { from: 0, to: 10_000 });
    assert.deepEqual(s.violations.map((v) => [v.rule, v.t]), [['assigned', 7100]]);
  });

  it('a host address answered by someone else, and a VIP answered by a stranger, are flagged', () => {
    const s = checkAnswers([reply(100, A, '198.18.0.1'), reply(150, ROUTER, '198.18.0.1'), reply(200, 'bb:bb:bb:bb:bb:bb')], rules(), { from: 0, to: 10_000 });
    assert.deepEqual(s.violations.map((v) => v.rule), ['owners', 'strangers']);
  });

  // The rules before: any two assigned, heartbeating nodes could answer together. The tolerated pair is
  // now the old active node and the handover target only; each case below passed the old rule.
  it('the active node and a node whose instance is older (a timed-out target confirming late) are flagged', () => {
    // node1 answered alone (active, instance since 3000); node2's instance dates from 1000 (an earlier,
    // timed-out handover to it, kept as memory) and it starts answering beside node1.
    const lifetimes = new Map([['gw-node1', [{ from: 3000, to: Infinity }]], ['gw-node2', [{ from: 1000, to: Infinity }]]]);
    const frames = [reply(4000, A), reply(4500, A), reply(4502, B)];
    const s = checkAnswers(frames, rules({ lifetimes }), { from: 0, to: 10_000 });
    assert.deepEqual(s.violations.map((v) => [v.rule, v.by, v.t]), [['handover', 'node1+node2', 4500]]);
    assert.match(s.violations[0]!.detail, /node2 answered beside the active node node1, but its instance .* is older/);
  });

  it('two nodes answering together when neither was the active one are flagged', () => {
    const lifetimes = new Map([['gw-node1', [{ from: 0, to: Infinity }]], ['gw-node2', [{ from: 4000, to: Infinity }]], ['gw-node3', [{ from: 4100, to: Infinity }]]]);
    const frames = [reply(4000, A), reply(4500, B), reply(4502, C)];
    const s = checkAnswers(frames, rules({ lifetimes }), { from: 0, to: 10_000 });
    assert.deepEqual(s.violations.map((v) => [v.rule, v.by]), [['handover', 'node2+node3']]);
    assert.match(s.violations[0]!.detail, /neither is the active node \(node1 answered alone before\)/);
  });

  it('three nodes answering together are flagged, even during a handover', () => {
    const lifetimes = new Map([['gw-node1', [{ from: 0, to: Infinity }]], ['gw-node2', [{ from: 4000, to: Infinity }]], ['gw-node3', [{ from: 4100, to: Infinity }]]]);
    const frames = [reply(4000, A), reply(4500, A), reply(4501, B), reply(4502, C)];
    const s = checkAnswers(frames, rules({ lifetimes }), { from: 0, to: 10_000 });
    assert.deepEqual(s.violations.map((v) => v.rule), ['handover']);
    assert.match(s.violations[0]!.detail, /3 nodes answered at once/);
  });

  it('the active node heard alone in an earlier window counts (lastSole carries over)', () => {
    const lifetimes = new Map([['gw-node1', [{ from: 0, to: Infinity }]], ['gw-node2', [{ from: 4000, to: Infinity }]], ['gw-node3', [{ from: 4100, to: Infinity }]]]);
    const lastSole = new Map<string, { node: string; t: number }>();
    assert.deepEqual(checkAnswers([reply(3000, A)], rules({ lifetimes, lastSole }), { from: 0, to: 4000 }).violations, []);
    assert.deepEqual(lastSole.get(VIP), { node: 'node1', t: 3000 });
    // node1 → node2 is a handover; node2 + node3 (node1 was the active one) is not.
    assert.deepEqual(checkAnswers([reply(4500, A), reply(4501, B)], rules({ lifetimes, lastSole }), { from: 4000, to: 5000 }).violations, []);
    const s = checkAnswers([reply(5500, B), reply(5501, C)], rules({ lifetimes, lastSole }), { from: 5000, to: 6000 });
    assert.deepEqual(s.violations.map((v) => [v.rule, v.by]), [['handover', 'node2+node3']]);
  });

  // Found by the chaos suite (seed 7, round 2): node3 was heard alone during an earlier stint (an earlier
  // instance); node2 became active without being heard alone (it confirmed late) and handed over to
  // node3's new instance. The earlier stint does not make node3 the old active node.
  it('a node heard alone in an earlier instance lifetime is not the active node now', () => {
    const lifetimes = new Map([['gw-node3', [{ from: 0, to: 2000 }, { from: 6000, to: Infinity }]], ['gw-node2', [{ from: 3000, to: Infinity }]]]);
    const frames = [reply(1000, C), reply(6100, B), reply(6101, C), reply(6200, C)];
    assert.deepEqual(checkAnswers(frames, rules({ lifetimes }), { from: 0, to: 10_000 }).violations, []);
    // Heard alone within its current instance, node3 is the active one, and node2's older instance is no target.
    const s = checkAnswers([reply(6050, C), ...frames], rules({ lifetimes }), { from: 0, to: 10_000 });
    assert.deepEqual(s.violations.map((v) => [v.rule, v.by]), [['handover', 'node2+node3']]);
  });

  // Found by the chaos suite (seed 20261209, round 7): node4, the active node, lost its LAN link; the
  // controller handed over to node3, which was then heard alone; node4's link came back before its
  // instance was deleted, and it answered beside node3 for a second. node4 is the old owner of that
  // handover (heard alone before node3's instance was written), not a stray older instance.
  it('the old owner back from a LAN partition, beside the target heard alone meanwhile, is a handover pair', () => {
    const lifetimes = new Map([['gw-node1', [{ from: 0, to: 7000 }]], ['gw-node2', [{ from: 4000, to: Infinity }]]]);
    const frames = [reply(3000, A), reply(3500, A), reply(4300, B), reply(4400, B), reply(5000, A), reply(5001, B), reply(5100, B)];
    const s = checkAnswers(frames, rules({ lifetimes }), { from: 0, to: 10_000 });
    assert.deepEqual(s.violations, []);
    assert.equal(s.dualQuestions, 1);
  });

  // Found by the chaos suite (seed 20261209, round 5): the API stalled for 10 s and both node3 (active)
  // and node4 (the target written as the stall began) fenced. Back, node4 took the VIP first, then node3
  // re-took its own, 100 ms before the controller deleted node4's instance. Same rule: node3 owned the
  // VIP before node4's instance was written.
  it('the old owner re-taking its VIP after a fence, beside the target that came back first, is a handover pair', () => {
    const lifetimes = new Map([['gw-node1', [{ from: 1000, to: Infinity }]], ['gw-node2', [{ from: 3000, to: 6000 }]]]);
    const frames = [reply(1100, A), reply(2000, A), reply(5000, B), reply(5100, B), reply(5200, A), reply(5201, B), reply(5300, A)];
    const s = checkAnswers(frames, rules({ lifetimes }), { from: 0, to: 10_000 });
    assert.deepEqual(s.violations, []);
    // The history carries over between windows, as lastSole does.
    const soleHistory = new Map<string, Map<string, number[]>>();
    const lastSole = new Map<string, { node: string; t: number }>();
    assert.deepEqual(checkAnswers(frames.slice(0, 2), rules({ lifetimes, soleHistory, lastSole }), { from: 0, to: 2500 }).violations, []);
    assert.deepEqual(checkAnswers(frames.slice(2), rules({ lifetimes, soleHistory, lastSole }), { from: 2500, to: 10_000 }).violations, []);
    // Without node3's earlier answers (heard only after node4's instance was written) it is flagged.
    const late = checkAnswers(frames.slice(2), rules({ lifetimes }), { from: 0, to: 10_000 });
    assert.deepEqual(late.violations.map((v) => [v.rule, v.by]), [['handover', 'node1+node2']]);
    assert.match(late.violations[0]!.detail, /never heard owning the VIP before node2's instance was written/);
  });

  it('frames outside the window are not judged', () => {
    assert.deepEqual(checkAnswers([reply(9000, A)], rules(), { from: 0, to: 8000 }).violations, []);
  });
});
