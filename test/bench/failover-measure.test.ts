// How the failover bench reads a round off the observer's ARP capture (bench/failover/measure.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dualAnswers, measureRound, ownerChanges, silences, type ObservedFrame } from '../../bench/failover/measure.ts';

const VIP = '198.18.0.100';
const PROBER = '198.18.0.250';
const A = '02:00:00:00:00:0a';
const B = '02:00:00:00:00:0b';
const reply = (t: number, mac: string): ObservedFrame => ({ t, op: 'reply', senderMac: mac, senderIp: VIP, targetIp: PROBER, gratuitous: false });
const garp = (t: number, mac: string): ObservedFrame => ({ t, op: 'request', senderMac: mac, senderIp: VIP, targetIp: VIP, gratuitous: true });
/** Replies from `mac` to the observer's questions every 20 ms in [from, to). */
const answers = (mac: string, from: number, to: number, lag = 1): ObservedFrame[] => {
  const out: ObservedFrame[] = [];
  for (let t = from; t < to; t += 20) out.push(reply(t + lag, mac));
  return out;
};
const window = { vip: VIP, oldMac: A, proberIp: PROBER, probeIntervalMs: 20, tFail: 1000, tEnd: 5000 };

test('a clean handover: the new owner answers after the old one went quiet, no dual ownership', () => {
  const frames = [...answers(A, 0, 1500), garp(1820, B), ...answers(B, 1840, 5000)];
  const m = measureRound(frames, window);
  assert.equal(m.newMac, B);
  assert.equal(m.failoverMs, 820);
  assert.equal(m.gapMs, 1820 - 1481, 'from the old owner\'s last answer to the new one\'s first frame');
  assert.equal(m.dualOwnerMs, 0);
  assert.equal(m.lateOldFrames, 0);
});

test('both answering the same questions for 200 ms is 200 ms of dual ownership, and the old owner is late', () => {
  const frames = [...answers(A, 0, 2000), garp(1800, B), ...answers(B, 1800, 5000, 2)];
  const m = measureRound(frames, window);
  assert.equal(m.dualOwnerMs, 200);
  assert.equal(m.lateOldFrames, 10);
});

test('an old owner\'s last answer and the new owner\'s announcement a few ms apart are not dual ownership', () => {
  // A answers the question at 1801; B announces at 1803 and answers from the next question on.
  const frames = [...answers(A, 0, 1820), garp(1803, B), ...answers(B, 1820, 3000)];
  assert.equal(dualAnswers(frames, window), 0);
});

test('no other host answered: failover not detected; frames before the failure do not count', () => {
  const m = measureRound([...answers(A, 0, 900), ...answers(B, 0, 900)], window);
  assert.equal(m.newMac, undefined);
  assert.equal(m.failoverMs, undefined);
  assert.equal(m.dualOwnerMs, 0);
});

test('owner changes: each switch of the answering host counts once', () => {
  assert.equal(ownerChanges([...answers(A, 0, 100), ...answers(B, 100, 200), ...answers(A, 200, 300)], VIP), 2);
  assert.equal(ownerChanges(answers(A, 0, 1000), VIP), 0);
});

test('silences: stretches with nobody answering, beyond ten questions', () => {
  const frames = [...answers(A, 0, 1000), ...answers(A, 1500, 2000), ...answers(A, 2060, 2100)];
  // 981 → 1501 is silent (520 ms: 500 beyond one interval); 1981 → 2061 (80 ms) is one late question.
  assert.deepEqual(silences(frames, VIP, 20), { count: 1, totalMs: 500 });
  assert.deepEqual(silences(frames, VIP, 20, 3), { count: 2, totalMs: 500 + 60 });
  assert.deepEqual(silences(answers(A, 0, 1000), VIP, 20), { count: 0, totalMs: 0 });
});
