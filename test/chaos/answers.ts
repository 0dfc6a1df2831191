// Who answered for an address during a round, against what the nodes were allowed to answer (pure).
//
// An observer on the LAN asks for every VIP of the suite's gateways (and for the nodes' and the router's
// own addresses) every few tens of milliseconds; what it hears is checked against the audit log:
//   fenced     a node answers for a VIP only while its kernel switch may be open: no later than its last
//              heartbeat renewal the server accepted + fence-after (+ a slack for the observer's clock).
//              This is the no-two-owners promise of issue 10: the controller declares a node dead only
//              a lease after that renewal, later than its switch closed, so two nodes never answer at
//              once because of a failover;
//   assigned   a node answers for a gateway's VIP only while it has an instance of that gateway, or
//              within `graceMs` after the instance was deleted (its agent needs the watch event to
//              withdraw). Two nodes answering one question are then both assigned: the make-before-break
//              window of a planned handover (the new node's instance exists before the old one's is
//              deleted) and nothing else;
//   owners     a node's or the router's own address is answered by its owner only (a VIP that is some
//              host's address would hijack it);
//   strangers  nobody but the nodes answers for a VIP.

import { answeredQuestions, type ArpAnswerFrame } from '../../src/testenv/answers.ts';
import type { Lifetime } from './audit.ts';

export interface AnswerRules {
  /** The observer's address (replies to its questions go there) and how often it asks. */
  proberIp: string;
  probeIntervalMs: number;
  /** Node by MAC (the nodes' LAN interfaces). */
  nodeOfMac: ReadonlyMap<string, string>;
  /** Gateway by VIP (every VIP the observer asks for). */
  gatewayOfVip: ReadonlyMap<string, string>;
  /** Owner MAC by address, for addresses that are not VIPs (the nodes' and the router's). */
  ownerOf: ReadonlyMap<string, string>;
  fenceAfterMs: number;
  /** The observer's clock against the server's, and its reading delay. */
  slackMs: number;
  graceMs: number;
  /** Accepted heartbeat renewals by node, ascending (server receive times). */
  renewals: ReadonlyMap<string, readonly number[]>;
  /** Instance lifetimes by instance name. */
  lifetimes: ReadonlyMap<string, readonly Lifetime[]>;
  /** The instance name of a gateway on a node. */
  instanceName: (gateway: string, node: string) => string;
}

export interface AnswerViolation {
  rule: 'fenced' | 'assigned' | 'owners' | 'strangers';
  t: number;
  ip: string;
  by: string;
  detail: string;
}

export interface AnswerSummary {
  violations: AnswerViolation[];
  /** Questions answered by two nodes (both assigned: planned handovers), and the longest run of them per VIP (ms). */
  dualQuestions: number;
  longestOverlapMs: number;
  frames: number;
}

/** The last value ≤ t in an ascending list (binary search), or undefined. */
function lastAtOrBefore(sorted: readonly number[], t: number): number | undefined {
  let lo = 0;
  let hi = sorted.length - 1;
  let found: number | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if ((sorted[mid] as number) <= t) {
      found = sorted[mid];
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

function assignedAt(rules: AnswerRules, gateway: string, node: string, t: number): boolean {
  const lives = rules.lifetimes.get(rules.instanceName(gateway, node)) ?? [];
  return lives.some((l) => l.from <= t + rules.slackMs && t <= l.to + rules.graceMs);
}

/** Every answer (reply to the observer, or announcement) heard in [from, to], checked against the rules. */
export function checkAnswers(frames: readonly ArpAnswerFrame[], rules: AnswerRules, window: { from: number; to: number }): AnswerSummary {
  const inWindow = frames.filter((f) => f.t >= window.from && f.t <= window.to);
  const answers = inWindow.filter((f) => f.op === 'reply' ? (f.targetIp === rules.proberIp || f.gratuitous) : f.gratuitous);
  const violations: AnswerViolation[] = [];
  const seen = new Set<string>();
  const report = (v: AnswerViolation) => {
    // One line per rule, address and answerer per 100 ms: a stuck owner answers every question.
    const key = `${v.rule}/${v.ip}/${v.by}/${Math.floor(v.t / 100)}`;
    if (seen.has(key)) return;
    seen.add(key);
    violations.push(v);
  };
  for (const f of answers) {
    const owner = rules.ownerOf.get(f.senderIp);
    if (owner !== undefined) {
      if (f.senderMac !== owner) report({ rule: 'owners', t: f.t, ip: f.senderIp, by: rules.nodeOfMac.get(f.senderMac) ?? f.senderMac, detail: `${f.senderIp} belongs to ${owner}` });
      continue;
    }
    const gateway = rules.gatewayOfVip.get(f.senderIp);
    if (gateway === undefined) continue;
    const node = rules.nodeOfMac.get(f.senderMac);
    if (node === undefined) {
      report({ rule: 'strangers', t: f.t, ip: f.senderIp, by: f.senderMac, detail: 'not a gateway node' });
      continue;
    }
    const renewed = lastAtOrBefore(rules.renewals.get(node) ?? [], f.t + rules.slackMs);
    if (renewed === undefined || f.t - renewed > rules.fenceAfterMs + rules.slackMs) {
      report({
        rule: 'fenced', t: f.t, ip: f.senderIp, by: node,
        detail: renewed === undefined ? 'no accepted heartbeat renewal before' : `${Math.round(f.t - renewed)} ms after its last accepted renewal (fence-after ${rules.fenceAfterMs} ms)`,
      });
    }
    if (!assignedAt(rules, gateway, node, f.t)) {
      report({ rule: 'assigned', t: f.t, ip: f.senderIp, by: node, detail: `no instance of ${gateway} on ${node} then (grace ${rules.graceMs} ms after deletion)` });
    }
  }
  // Overlaps (all of whose answerers were checked above), for the round's record.
  const questions = answeredQuestions(inWindow, rules.proberIp, rules.probeIntervalMs).filter((q) => rules.gatewayOfVip.has(q.ip));
  let dual = 0;
  let longest = 0;
  const runStart = new Map<string, number>();
  for (const q of questions) {
    if (q.macs.length > 1) {
      dual++;
      const start = runStart.get(q.ip) ?? q.t;
      runStart.set(q.ip, start);
      longest = Math.max(longest, q.t - start + rules.probeIntervalMs);
    } else runStart.delete(q.ip);
  }
  return { violations, dualQuestions: dual, longestOverlapMs: Math.round(longest), frames: inWindow.length };
}
