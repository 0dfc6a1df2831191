// The answer rules of the chaos rounds on hand-made frames: what must be flagged is flagged, and the
// make-before-break overlap of two assigned, heartbeating nodes is not.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkAnswers, type AnswerRules } from './answers.ts';
import type { ArpAnswerFrame } from '../../src/testenv/answers.ts';

const A = 'aa:aa:aa:aa:aa:01';
const B = 'aa:aa:aa:aa:aa:02';
const ROUTER = 'aa:aa:aa:aa:aa:ff';
const VIP = '198.18.0.100';
const PROBER = '198.18.0.250';

const reply = (t: number, mac: string, ip = VIP): ArpAnswerFrame => ({ t, op: 'reply', senderMac: mac, senderIp: ip, targetIp: PROBER, gratuitous: false });

function rules(over: Partial<AnswerRules> = {}): AnswerRules {
  return {
    proberIp: PROBER,
    probeIntervalMs: 50,
    nodeOfMac: new Map([[A, 'node1'], [B, 'node2']]),
    gatewayOfVip: new Map([[VIP, 'gw']]),
    ownerOf: new Map([['198.18.0.1', ROUTER]]),
    fenceAfterMs: 650,
    slackMs: 100,
    graceMs: 2000,
    // Both nodes renew every 150 ms from 0 to 10 s.
    renewals: new Map([['node1', Array.from({ length: 67 }, (_, i) => i * 150)], ['node2', Array.from({ length: 67 }, (_, i) => i * 150)]]),
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

  it('frames outside the window are not judged', () => {
    assert.deepEqual(checkAnswers([reply(9000, A)], rules(), { from: 0, to: 8000 }).violations, []);
  });
});
