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
//              withdraw);
//   handover   two nodes answering one question (both fenced- and assigned-clean) must be the pair of a
//              handover: the old active node and the handover target (its instance created after the
//              old node's, while that one still lived: make before break). The old active node is the
//              older instance of the two. When the observer last heard the *newer* one answering alone,
//              the older one still counts as the old owner if it was heard alone within its instance's
//              lifetime before the newer instance was written (it owned the VIP before the handover and
//              answers again within it: back from a LAN partition during which only the target was
//              heard, or re-taking its VIP after a fence while both instances live — seed 20261209,
//              rounds 7 and 5). "Heard alone" counts only within the same instance lifetime as the
//              overlap (an earlier stint as the active node says nothing about now). Flagged: an older
//              instance never heard owning the VIP answering beside the node heard alone (a timed-out
//              target confirming late beside the active node), two nodes neither of which was the one
//              last heard alone, and any three answerers;
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
  /**
   * The last node heard answering alone, and when, by VIP: carried from one window to the next (read and
   * updated). Without it, each window starts knowing nobody.
   */
  lastSole?: Map<string, { node: string; t: number }>;
  /**
   * Every moment each node was heard answering alone, by VIP then node, ascending: carried from one
   * window to the next like lastSole (read and appended to; the caller prunes old entries).
   */
  soleHistory?: Map<string, Map<string, number[]>>;
}

export interface AnswerViolation {
  rule: 'fenced' | 'assigned' | 'owners' | 'strangers' | 'handover';
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

/**
 * The lifetime of the gateway's instance on the node that covers t (with the slack and grace), if any:
 * the latest one. An instance re-created (same name) less than the grace after its deletion is the one
 * that counts — the old one's grace (its node withdrawing) must not stand for it (seed 20261212 round 2:
 * a handover back to a node read as that node's long-gone instance beside the active node).
 */
function lifeAt(rules: AnswerRules, gateway: string, node: string, t: number): Lifetime | undefined {
  const lives = rules.lifetimes.get(rules.instanceName(gateway, node)) ?? [];
  return lives.filter((l) => l.from <= t + rules.slackMs && t <= l.to + rules.graceMs).sort((x, y) => x.from - y.from).at(-1);
}

function assignedAt(rules: AnswerRules, gateway: string, node: string, t: number): boolean {
  return lifeAt(rules, gateway, node, t) !== undefined;
}

/**
 * Why two or more nodes answering one question for `gateway`'s VIP are not a handover's pair, or
 * undefined when they are (see `handover` above). `sole`: the last node heard answering alone.
 */
export function notAHandover(
  rules: AnswerRules,
  gateway: string,
  nodes: readonly string[],
  t: number,
  heard: { node: string; t: number } | undefined,
  heardAlone: (node: string) => readonly number[] = () => [],
): string | undefined {
  if (nodes.length > 2) return `${nodes.length} nodes answered at once (${nodes.join(', ')})`;
  const [a, b] = nodes as [string, string];
  const la = lifeAt(rules, gateway, a, t);
  const lb = lifeAt(rules, gateway, b, t);
  // Not assigned: flagged by the assigned rule already.
  if (la === undefined || lb === undefined) return undefined;
  // Found by seed 7 round 2: node3 had been heard alone in an earlier stint, long before its current
  // instance; the pair was the active node2 (never heard alone: it confirmed late) and the target node3.
  const heardLife = heard !== undefined ? lifeAt(rules, gateway, heard.node, heard.t) : undefined;
  const sole = heard !== undefined && heardLife !== undefined && heardLife === lifeAt(rules, gateway, heard.node, t) ? heard.node : undefined;
  if (sole !== undefined && sole !== a && sole !== b) return `${a} and ${b} answered together, and neither is the active node (${sole} answered alone before)`;
  const [older, newer, lo, ln] = la.from <= lb.from ? [a, b, la, lb] : [b, a, lb, la];
  // Heard last alone: the older one, or nobody this lifetime — the older is the old active node and the
  // newer one the target of a handover from it.
  if (sole !== newer) return undefined;
  // The newer one was heard alone last: the older answering beside it is the old owner only if it owned
  // the VIP before the handover began (heard alone in its lifetime before the newer instance was written).
  const before = heardAlone(older).some((x) => x >= lo.from - rules.slackMs && x < ln.from + rules.slackMs);
  if (before) return undefined;
  return `${older} answered beside the active node ${newer}, but its instance (created ${new Date(lo.from).toISOString()}) is older than ${newer}'s (${new Date(ln.from).toISOString()}) and it was never heard owning the VIP before ${newer}'s instance was written: not the old owner of a handover to ${newer}`;
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
  // Overlaps: only a handover's pair may answer together; the longest run is kept for the round's record.
  const questions = answeredQuestions(inWindow, rules.proberIp, rules.probeIntervalMs).filter((q) => rules.gatewayOfVip.has(q.ip));
  let dual = 0;
  let longest = 0;
  const runStart = new Map<string, number>();
  const lastSole = rules.lastSole ?? new Map<string, { node: string; t: number }>();
  const soleHistory = rules.soleHistory ?? new Map<string, Map<string, number[]>>();
  for (const q of questions) {
    const nodes = [...new Set(q.macs.map((m) => rules.nodeOfMac.get(m)).filter((n): n is string => n !== undefined))].sort();
    if (nodes.length === 1) {
      lastSole.set(q.ip, { node: nodes[0] as string, t: q.t });
      const byNode = soleHistory.get(q.ip) ?? new Map<string, number[]>();
      soleHistory.set(q.ip, byNode);
      const times = byNode.get(nodes[0] as string) ?? [];
      byNode.set(nodes[0] as string, times);
      times.push(q.t);
    }
    if (nodes.length > 1) {
      const why = notAHandover(rules, rules.gatewayOfVip.get(q.ip) as string, nodes, q.t, lastSole.get(q.ip), (n) => soleHistory.get(q.ip)?.get(n) ?? []);
      if (why !== undefined) report({ rule: 'handover', t: q.t, ip: q.ip, by: nodes.join('+'), detail: why });
    }
    if (q.macs.length > 1) {
      dual++;
      const start = runStart.get(q.ip) ?? q.t;
      runStart.set(q.ip, start);
      longest = Math.max(longest, q.t - start + rules.probeIntervalMs);
    } else runStart.delete(q.ip);
  }
  return { violations, dualQuestions: dual, longestOverlapMs: Math.round(longest), frames: inWindow.length };
}
