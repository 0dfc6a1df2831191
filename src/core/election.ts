// Election (design §4) and VIP handover (design §5) of one gateway, in four steps:
//   1. verdicts: each candidate node's eligibility; in VIP mode a node whose instance for this gateway
//      did not confirm within the handover timeout is ineligible for it (HandoverTimedOut);
//   2. keep: an honoured move request, else the current active node while it stays eligible (sticky,
//      no failback), else (VIP) a handover already under way;
//   3. otherwise elect: the eligible node with the fewest active gateways, ties by the lowest
//      sha256(G#node). The counts (`load`) are the choices of the gateways that count before this one:
//      every gateway's kept node, and the elected nodes of gateways earlier in name order (see
//      settleElections in combine.ts, which checks the counts each elected gateway saw);
//   4. settle: the node that carries the label now (make before break), the instances to keep, the move
//      outcome, and the handover memory (timed-out verdicts) dropped once a node confirmed.

import { MODE_PRIMARY_IP, MODE_VIP } from '../api/names.ts';
import type { CoreOptions, NodeVerdict } from './types.ts';
import { ineligibleReasons, verdict, type NodeState } from './eligibility.ts';
import { isConfirmed, specMatches, type InstanceFacts } from './instances.ts';
import type { GatewayInfo } from './validate.ts';
import { byString, electionKey } from './util.ts';
import { refusalsOf, type Refusals, type RefusalState } from './refusals.ts';

/** What the election of one gateway reads. */
export interface ElectionInputs {
  now: number;
  options: CoreOptions;
  /** The nodes matching the gateway's selector, in name order. */
  candidates: readonly NodeState[];
  /** The states of the nodes it refers to by name (see gatewayRefs), those that exist. */
  refs: ReadonlyMap<string, NodeState>;
  /** Nodes whose Node carries active-for-<gateway>, in name order. */
  labelled: readonly string[];
  /** The gateway's instances (also deleting ones), in name order. */
  instances: readonly InstanceFacts[];
}

export interface MoveOutcome {
  target: string;
  /** honoured: in progress or done; rejected: clear the request and say why. */
  state: 'honoured' | 'rejected';
  note: string;
}

export interface Election {
  valid: boolean;
  /** Every candidate's verdict, in name order, after the handover bookkeeping of step 4. */
  candidates: NodeVerdict[];
  readyNodes: number;
  /** Non-deleting instances, one per node (the others on the same node are duplicates). */
  primary: ReadonlyMap<string, InstanceFacts>;
  /** The active node as observed before this pass (label, else live instance). */
  observedActive: string;
  /** The node kept by step 2; '' when the target was elected (or there is none). */
  keep: string;
  target: string;
  /** The node that carries `active-for-<gateway>` after this pass; '' when none. */
  active: string;
  /** VIP: the active node's instance is confirmed. PrimaryIP: true when there is an active node. */
  confirmed: boolean;
  move: MoveOutcome | undefined;
  /** Nodes whose instance must exist after this pass; `create` false → keep an existing one only. */
  instanceNodes: ReadonlyMap<string, { create: boolean }>;
  /** Set when step 3 elected the target: the nodes it chose from and the counts it saw for them. */
  byLoad: { pool: readonly string[]; loads: readonly number[] } | undefined;
  /** The time window in which no handover clock changes a verdict: [from, until). */
  clock: { from: number; until: number };
  /** VIP: the nodes that refused the VIP in this handover sequence (see refusals.ts); carried by the target's new instance. */
  refusals: RefusalState | undefined;
  /**
   * VIP: while a target exists, the nodes whose instance goes in this pass (an abandoned target's, i.e. an
   * unconfirmed, unmarked order to take the VIP; or any instance of a node with a live heartbeat) or is
   * deleting on a node with a live heartbeat (its agent has not released it yet). Until those instances are
   * gone, the instances written for the other nodes are held (heldInstance in gateway.ts).
   */
  withdrawing: readonly string[];
}

interface Verdicts {
  candidates: NodeVerdict[];
  verdicts: Map<string, NodeVerdict>;
  readyNodes: number;
}

function verdictsOf(g: GatewayInfo, candidates: readonly NodeState[], opts: CoreOptions, timedOut: ReadonlySet<string>, refused: ReadonlySet<string>): Verdicts {
  const out: Verdicts = { candidates: [], verdicts: new Map(), readyNodes: 0 };
  for (const st of candidates) {
    const reasons = ineligibleReasons(g, st, opts, timedOut.has(st.name));
    if (refused.has(st.name) && !timedOut.has(st.name)) reasons.push('RefusedVIP');
    const v = reasons.length === 0 ? st.eligible : verdict(st.name, reasons);
    out.candidates.push(v);
    out.verdicts.set(st.name, v);
    if (v.eligible) out.readyNodes++;
  }
  return out;
}

function pickPrimary(list: readonly InstanceFacts[], g: GatewayInfo): Map<string, InstanceFacts> {
  const m = new Map<string, InstanceFacts>();
  for (const f of list) {
    if (f.deleting || f.node === '') continue;
    const prev = m.get(f.node);
    if (!prev) {
      m.set(f.node, f);
      continue;
    }
    // Prefer a confirmed one, then the smallest name: deterministic whatever the input order.
    const fc = isConfirmed(f, g);
    const pc = isConfirmed(prev, g);
    if ((fc && !pc) || (fc === pc && byString(f.name, prev.name) < 0)) m.set(f.node, f);
  }
  return m;
}

/**
 * VIP: the candidates whose instance timed out, and the window in which that stays so. A clock runs
 * for an unconfirmed instance with the current spec (an outdated one is about to be rewritten, which
 * restarts its clock: assigned-at), unless it is the old owner's during a handover away from it
 * (handoverTo): that agent may rightly not hold the VIP (see HANDOVER_TO_ANNOTATION), and its
 * instance is assigned anew if the handover is abandoned. Nor for a held target's (marked for its own
 * node, see heldInstance in gateway.ts): it waits, and is assigned anew when released.
 */
function handoverClocks(
  g: GatewayInfo,
  primary: ReadonlyMap<string, InstanceFacts>,
  candidates: readonly NodeState[],
  now: number,
  opts: CoreOptions,
): { timedOut: Set<string>; clock: { from: number; until: number } } {
  const timedOut = new Set<string>();
  const clock = { from: Number.NEGATIVE_INFINITY, until: Number.POSITIVE_INFINITY };
  for (const st of candidates) {
    const f = primary.get(st.name);
    if (f === undefined || f.handoverTo !== '' || !Number.isFinite(f.assignedAt) || !specMatches(f.instance, f.node, g) || isConfirmed(f, g)) continue;
    const at = f.assignedAt + opts.handoverTimeoutMs;
    if (now >= at) {
      timedOut.add(st.name);
      clock.from = Math.max(clock.from, at);
    } else clock.until = Math.min(clock.until, at);
  }
  return { timedOut, clock };
}

function chooseObservedActive(g: GatewayInfo, v: Verdicts, primary: ReadonlyMap<string, InstanceFacts>, labelled: readonly string[]): string {
  const rank = (n: string): number => (v.verdicts.get(n)?.eligible === true ? 0 : 2) + (primary.get(n)?.ready === true ? 0 : 1);
  const pick = (list: readonly string[]): string => {
    let best = '';
    for (const n of list) {
      if (best === '' || rank(n) < rank(best) || (rank(n) === rank(best) && byString(n, best) < 0)) best = n;
    }
    return best;
  };
  if (labelled.length > 0) return pick(labelled);
  if (g.mode !== MODE_VIP) return '';
  const ready: string[] = [];
  for (const [n, f] of primary) if (f.ready) ready.push(n);
  return pick(ready);
}

function describeIneligible(node: string, v: Verdicts, refs: ReadonlyMap<string, NodeState>): string {
  if (!refs.has(node)) return `node ${node} does not exist`;
  const x = v.verdicts.get(node);
  if (!x) return `node ${node} does not match the gateway's nodeSelector`;
  return `node ${node} is not eligible: ${x.reasons.join(', ')}`;
}

function moveOutcome(g: GatewayInfo, v: Verdicts, refs: ReadonlyMap<string, NodeState>): MoveOutcome | undefined {
  const mt = g.moveTo;
  if (mt === undefined) return undefined;
  if (g.invalid) return { target: mt, state: 'rejected', note: `move to ${mt || '""'} rejected: gateway is invalid: ${g.invalid.message}` };
  if (mt === '') return { target: mt, state: 'rejected', note: 'move rejected: the move-to annotation names no node' };
  if (v.verdicts.get(mt)?.eligible !== true) return { target: mt, state: 'rejected', note: `move to ${mt} rejected: ${describeIneligible(mt, v, refs)}` };
  return { target: mt, state: 'honoured', note: '' };
}

/** Step 2: the node this gateway keeps, or ''. */
function keptNode(g: GatewayInfo, v: Verdicts, primary: ReadonlyMap<string, InstanceFacts>, observedActive: string, move: MoveOutcome | undefined): string {
  if (move?.state === 'honoured') return move.target;
  if (observedActive !== '' && v.verdicts.get(observedActive)?.eligible) return observedActive;
  if (g.mode !== MODE_VIP) return '';
  // A handover under way (instance written, not timed out): continue it, so passes before the
  // confirmation do not pick a different node. A confirmed one first, then the smallest node name.
  let keep = '';
  let keepConfirmed = false;
  for (const [n, f] of primary) {
    if (!v.verdicts.get(n)?.eligible) continue;
    const c = isConfirmed(f, g);
    if (keep === '' || (c && !keepConfirmed) || (c === keepConfirmed && byString(n, keep) < 0)) {
      keep = n;
      keepConfirmed = c;
    }
  }
  return keep;
}

/** Step 3: the least-loaded eligible node, and what the choice depended on. */
function leastLoaded(g: GatewayInfo, v: Verdicts, instances: readonly InstanceFacts[], load: ReadonlyMap<string, number>): { target: string; byLoad: NonNullable<Election['byLoad']> } {
  // VIP: a node where this gateway's previous instance is still terminating cannot get a new one
  // yet (same name); prefer the others, so the choice sticks on the next pass.
  const blocked = new Set<string>();
  if (g.mode === MODE_VIP) for (const f of instances) if (f.deleting) blocked.add(f.node);
  const usable = (x: NodeVerdict): boolean => x.eligible && !blocked.has(x.node);
  const inPool = v.candidates.some(usable) ? usable : (x: NodeVerdict): boolean => x.eligible;
  const pool: string[] = [];
  const loads: number[] = [];
  for (const x of v.candidates) {
    if (!inPool(x)) continue;
    pool.push(x.node);
    loads.push(load.get(x.node) ?? 0);
  }
  const min = Math.min(...loads);
  let target = '';
  let bestKey = '';
  pool.forEach((n, i) => {
    if (loads[i] !== min) return;
    const key = electionKey(g.name, n);
    if (target === '' || key < bestKey) {
      target = n;
      bestKey = key;
    }
  });
  return { target, byLoad: { pool, loads } };
}

interface Settled {
  active: string;
  confirmed: boolean;
  instanceNodes: Map<string, { create: boolean }>;
  v: Verdicts;
  withdrawing: readonly string[];
}

/** Step 4 in VIP mode: the label moves to a new node only once its instance is confirmed. */
function settleVIP(
  g: GatewayInfo,
  v: Verdicts,
  instances: readonly InstanceFacts[],
  primary: ReadonlyMap<string, InstanceFacts>,
  observedActive: string,
  target: string,
  refs: ReadonlyMap<string, NodeState>,
  refusals: Refusals | undefined,
): Settled {
  const eligible = (n: string): boolean => v.verdicts.get(n)?.eligible === true;
  const tf = target !== '' ? primary.get(target) : undefined;
  const targetConfirmed = tf !== undefined && isConfirmed(tf, g);
  let active = '';
  // The current holder keeps the label while it stays eligible (even while its instance is being
  // (re)written); a new node gets it only once its instance is confirmed (make before break).
  if (target !== '' && (target === observedActive || targetConfirmed)) active = target;
  else if (target !== '' && observedActive !== '' && eligible(observedActive)) active = observedActive;
  const af = active !== '' ? primary.get(active) : undefined;
  const confirmed = af !== undefined && isConfirmed(af, g);
  const instanceNodes = new Map<string, { create: boolean }>();
  if (target !== '') instanceNodes.set(target, { create: true });
  if (active !== '' && active !== target) instanceNodes.set(active, { create: true });
  // The old node keeps announcing until the new one confirms (make before break), unless its agent
  // is gone (nobody there to make-before-break with: its instance is withdrawn and, if needed, its
  // finalizer released) or it was not announcing anyway. With no target at all, everything is
  // withdrawn (design §4.3).
  if (
    target !== '' &&
    observedActive !== '' &&
    !instanceNodes.has(observedActive) &&
    !targetConfirmed &&
    refs.get(observedActive)?.heartbeat === 'live' &&
    primary.get(observedActive)?.ready === true
  ) {
    instanceNodes.set(observedActive, { create: false });
  }
  // A timed-out instance is the memory of the failed attempt (it keeps its node ineligible for this
  // gateway). It is kept only while no other node is being given the VIP: its agent may still confirm
  // late, and an instance is an order to hold and announce the VIP, so beside a target elsewhere it
  // would make a second owner (seen in the failover bench: an old owner re-elected after a false fence
  // while the timed-out node's instance stayed; that node announced a lease later, 260 ms of two MACs).
  // With a target, or once there is a confirmed active node, the memory is dropped, and so is the
  // reason (otherwise the next pass, without the instance, would report a different verdict). With no
  // target it stays: a late confirmation then makes that node usable again, the only owner.
  // A timed-out node beside an unconfirmed target is remembered on the target's instance (refusals.ts):
  // the next pass reports it RefusedVIP, so this one does too.
  // Dropping it is not enough within one pass: the deletion is written after the other nodes' instances
  // (make before break), and under a slow API server its agent, re-listing in between, took the VIP late
  // beside the next owner (found by the chaos suite, linux mode, seed 20261216 round 12: 350 ms of two
  // owners). So every abandoned target (an unconfirmed, unmarked instance dropped here: timed out, or
  // left when the old owner is kept again or its node turned ineligible) is `withdrawing`, and the
  // others' instances wait until it is gone (heldInstance in gateway.ts).
  // Seeing it deleting is not enough while its node's agent is alive: that agent may have re-listed just
  // before the deletion and take the VIP after it (found by the chaos suite, linux mode, seed 20261219
  // round 30: the agent, back from a fence, took the VIP 300 ms after its instance was deleted and 150 ms
  // after the next owner was released). Only its agent removing the finalizer, which it does once it has
  // withdrawn, says it will not take the VIP. A node whose heartbeat is not live has no agent that could
  // (its agent fenced itself and must re-list before taking anything), so its deleting instance does not
  // hold the others back: a dead node's finalizer never blocks a failover. Any instance of a live node that
  // goes in this pass counts too, also one that holds the VIP or is marked (a stray holder off the selector,
  // an old owner that reported it let go, perhaps in a status older than its latest take): the next owner
  // is given the VIP once that agent has withdrawn, never beside it.
  if (confirmed || target !== '') {
    const live = (n: string): boolean => refs.get(n)?.heartbeat === 'live';
    const abandoned = [...primary].filter(([n, f]) => !instanceNodes.has(n) && ((f.handoverTo === '' && !isConfirmed(f, g)) || live(n))).map(([n]) => n);
    const releasing = instances.filter((f) => f.deleting && f.node !== '' && !instanceNodes.has(f.node) && live(f.node)).map((f) => f.node);
    const withdrawing = [...new Set([...abandoned, ...releasing])].sort(byString);
    return { active, confirmed, instanceNodes, v: withoutTimeouts(v, !targetConfirmed && target !== '' ? refusals : undefined), withdrawing };
  }
  for (const n of primary.keys()) {
    const x = v.verdicts.get(n);
    if (x && x.reasons.length === 1 && x.reasons[0] === 'HandoverTimedOut' && !instanceNodes.has(n)) instanceNodes.set(n, { create: false });
  }
  return { active, confirmed, instanceNodes, v, withdrawing: [] };
}

function withoutTimeouts(v: Verdicts, refusals: Refusals | undefined): Verdicts {
  if (!v.candidates.some((x) => x.reasons.includes('HandoverTimedOut'))) return v;
  const out: Verdicts = { candidates: [], verdicts: new Map(), readyNodes: 0 };
  for (const x of v.candidates) {
    const y = x.reasons.includes('HandoverTimedOut')
      ? verdict(x.node, x.reasons.flatMap((r) => (r !== 'HandoverTimedOut' ? [r] : refusals?.nodes.has(x.node) ? ['RefusedVIP' as const] : [])))
      : x;
    out.candidates.push(y);
    out.verdicts.set(y.node, y);
    if (y.eligible) out.readyNodes++;
  }
  return out;
}

function movedNote(move: MoveOutcome | undefined, active: string, observedActive: string): MoveOutcome | undefined {
  if (move?.state !== 'honoured' || active !== move.target) return move;
  const note = observedActive === move.target ? `node ${move.target} is already the active node` : `moved the active node from ${observedActive || 'none'} to ${move.target}`;
  return { ...move, note };
}

/** One gateway's election; `load`: see step 3 above (read only when the target is elected). */
export function elect(g: GatewayInfo, inputs: ElectionInputs, load: ReadonlyMap<string, number>): Election {
  const valid = !g.invalid;
  const vip = g.mode === MODE_VIP;
  const primary = vip ? pickPrimary(inputs.instances, g) : new Map<string, InstanceFacts>();
  const { timedOut, clock } = valid && vip ? handoverClocks(g, primary, inputs.candidates, inputs.now, inputs.options) : { timedOut: new Set<string>(), clock: { from: Number.NEGATIVE_INFINITY, until: Number.POSITIVE_INFINITY } };
  const refusals = valid && vip ? refusalsOf(g, primary, timedOut, inputs.now, inputs.options.handoverTimeoutMs) : undefined;
  if (refusals !== undefined) {
    // The retry time is a clock like the handover timeouts: the decision changes when it comes.
    if (refusals.expiredAt !== undefined) clock.from = Math.max(clock.from, refusals.expiredAt);
    clock.until = Math.min(clock.until, refusals.retryAt);
  }
  // At the retry time every node is tried again, also those timed out now (their instances are assigned anew).
  const v = verdictsOf(g, inputs.candidates, inputs.options, refusals?.expiredAt !== undefined ? new Set<string>() : timedOut, new Set(refusals?.nodes.keys() ?? []));
  const observedActive = chooseObservedActive(g, v, primary, inputs.labelled);
  const move = moveOutcome(g, v, inputs.refs);
  const base = { valid, primary, observedActive, clock, byLoad: undefined, refusals };
  if (!valid) return { ...base, candidates: v.candidates, readyNodes: v.readyNodes, keep: '', target: '', active: '', confirmed: false, move, instanceNodes: new Map(), withdrawing: [] };
  const keep = keptNode(g, v, primary, observedActive, move);
  const elected = keep === '' && v.readyNodes > 0 ? leastLoaded(g, v, inputs.instances, load) : undefined;
  const target = elected?.target ?? keep;
  const s: Settled =
    g.mode === MODE_PRIMARY_IP
      ? // No instance to wait for: the label moves at once.
        { active: target, confirmed: target !== '', instanceNodes: new Map(), v, withdrawing: [] }
      : settleVIP(g, v, inputs.instances, primary, observedActive, target, inputs.refs, refusals);
  return {
    ...base,
    candidates: s.v.candidates,
    readyNodes: s.v.readyNodes,
    keep,
    target,
    active: s.active,
    confirmed: s.confirmed,
    move: movedNote(move, s.active, observedActive),
    instanceNodes: s.instanceNodes,
    byLoad: elected?.byLoad,
    withdrawing: s.withdrawing,
  };
}
