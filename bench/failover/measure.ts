// What one failover round measured, from an observer's ARP capture (pure: tested in
// test/bench/failover-measure.test.ts).
//
// The observer asks "who has VIP?" every `probeIntervalMs`; every node that owns the VIP answers each
// question, and a new owner also announces itself (gratuitous ARP). So, for a round that failed the
// owner at `tFail`:
//   failover    tFail → the first frame for the VIP (reply or announcement) from any other node: the new
//               owner answering;
//   gap         the old owner's last frame before that → that first frame: nobody answered meanwhile
//               (negative would mean the old owner was still answering: see dual);
//   dual        questions answered by two or more nodes, × the probe interval: the time two owners
//               answered at once, anywhere in the round (after the failure, through the recovery);
//   lateOld     frames for the VIP from the old owner after the new owner's first one.

import { answeredQuestions, type ArpAnswerFrame } from '../../src/testenv/answers.ts';

/** A frame the observer heard (the shared shape: src/testenv/answers.ts). */
export type ObservedFrame = ArpAnswerFrame;

export interface RoundWindow {
  vip: string;
  oldMac: string;
  /** The observer's address: replies to its questions are sent to it. */
  proberIp: string;
  probeIntervalMs: number;
  tFail: number;
  /** End of the round (the failed node recovered and the gateway settled again). */
  tEnd: number;
}

export interface RoundMeasure {
  /** MAC of the node that answered first after the failure; undefined when none did in the round. */
  newMac: string | undefined;
  failoverMs: number | undefined;
  gapMs: number | undefined;
  dualOwnerMs: number;
  lateOldFrames: number;
}

export function measureRound(frames: readonly ObservedFrame[], w: RoundWindow): RoundMeasure {
  const forVip = frames.filter((f) => f.senderIp === w.vip && f.t > w.tFail && f.t <= w.tEnd).sort((a, b) => a.t - b.t);
  const first = forVip.find((f) => f.senderMac !== w.oldMac);
  const lastOldBefore = first ? forVip.filter((f) => f.senderMac === w.oldMac && f.t < first.t).at(-1) : undefined;
  return {
    newMac: first?.senderMac,
    failoverMs: first ? first.t - w.tFail : undefined,
    gapMs: first ? first.t - (lastOldBefore?.t ?? w.tFail) : undefined,
    dualOwnerMs: dualAnswers(forVip, w) * w.probeIntervalMs,
    lateOldFrames: first ? forVip.filter((f) => f.senderMac === w.oldMac && f.t > first.t).length : 0,
  };
}

/** Questions answered by more than one node (see src/testenv/answers.ts for what one question is). */
export function dualAnswers(frames: readonly ObservedFrame[], w: Pick<RoundWindow, 'proberIp' | 'probeIntervalMs'>): number {
  return answeredQuestions(frames, w.proberIp, w.probeIntervalMs).filter((q) => q.macs.length > 1).length;
}

/** How often the host answering for `vip` changed (a false failover, when nothing was failed). */
export function ownerChanges(frames: readonly ObservedFrame[], vip: string): number {
  let changes = 0;
  let owner: string | undefined;
  for (const f of [...frames].filter((x) => x.senderIp === vip).sort((a, b) => a.t - b.t)) {
    if (owner !== undefined && f.senderMac !== owner) changes++;
    owner = f.senderMac;
  }
  return changes;
}

/**
 * Silences: stretches longer than `slots` probe intervals in which nobody answered for `vip` (an owner
 * that fenced itself without a failover, say; a fenced agent is silent for a lease or more). Returns
 * how many and their total length beyond one interval each. Ten intervals by default, so that a late
 * question of a busy observer is not mistaken for one.
 */
export function silences(frames: readonly ObservedFrame[], vip: string, probeIntervalMs: number, slots = 10): { count: number; totalMs: number } {
  const ts = frames.filter((f) => f.senderIp === vip).map((f) => f.t).sort((a, b) => a - b);
  let count = 0;
  let totalMs = 0;
  for (let i = 1; i < ts.length; i++) {
    const gap = ts[i]! - ts[i - 1]!;
    if (gap > slots * probeIntervalMs) {
      count++;
      totalMs += gap - probeIntervalMs;
    }
  }
  return { count, totalMs: Math.round(totalMs) };
}
