// Election (design §4) and VIP handover (design §5) for every gateway of one pass.
//
// Phase 1 settles every gateway that keeps a node: an honoured move request, the current active node
// while it stays eligible (sticky, no failback), or — VIP mode — a handover already under way. Phase 2
// elects, in gateway-name order, the node with the fewest active gateways (phase-1 choices count first),
// ties by the lowest sha256(G#node). Phase 3 turns the target into the label holder, the instances to
// keep and the move outcome.

import { MODE_PRIMARY_IP, MODE_VIP } from '../api/names.ts';
import type { CoreOptions, IneligibleReason, NodeVerdict } from './types.ts';
import { ineligibleReasons, type NodeState } from './eligibility.ts';
import { isConfirmed, specMatches, type InstanceFacts } from './instances.ts';
import type { NodeLabelIndex } from './selectors.ts';
import type { GatewayInfo } from './validate.ts';
import type { GatewayOutcome } from './status.ts';
import { byString, electionKey } from './util.ts';
import { NO_REASONS, sameItems, type CoreCache, type VerdictGroup } from './cache.ts';

export interface MoveOutcome {
  target: string;
  /** honoured: in progress or done; rejected: clear the request and say why. */
  state: 'honoured' | 'rejected';
  note: string;
}

export interface GatewayPlan {
  info: GatewayInfo;
  valid: boolean;
  /** Shared between gateways and passes (see verdictGroup): never mutate unless copied for this plan. */
  candidates: NodeVerdict[];
  verdicts: Map<string, NodeVerdict>;
  readyNodes: number;
  /** The node names matching the selector (the index's shared array). */
  candidateNames: readonly string[];
  /** Non-deleting owned instances, one per node (the others on the same node are duplicates). */
  primary: Map<string, InstanceFacts>;
  observedActive: string;
  target: string;
  active: string;
  /** VIP: the active node's instance is confirmed. PrimaryIP: true when there is an active node. */
  confirmed: boolean;
  move: MoveOutcome | undefined;
  /** Nodes whose instance must exist after this pass; `create` false → keep an existing one only. */
  instanceNodes: Map<string, { create: boolean }>;
  /**
   * This plan was handed back from the previous pass unchanged (see PlanMemo); its outcome may be
   * reused too, as long as that outcome did not depend on the time.
   */
  reused?: boolean;
  /** Its outcome, kept with a reused plan when that did not depend on the time (see computeDesired). */
  outcome?: GatewayOutcome;
}

/**
 * What a plan was computed from, for a long-lived core: a gateway whose inputs are the same objects as
 * in the last pass gets the same plan object back. Only plans that depend on nothing else are kept:
 * not one elected by load (phase 2 depends on every other gateway) and not one whose handover clock is
 * running (it depends on the time).
 */
export interface PlanMemo {
  info: GatewayInfo;
  cands: readonly string[];
  group: VerdictGroup;
  owned: readonly InstanceFacts[];
  labelled: readonly string[];
  /** The states of the nodes the plan and its outcome look up outside the candidate list. */
  refs: ReadonlyArray<NodeState | undefined>;
  plan: GatewayPlan;
}

const NONE: readonly never[] = Object.freeze([]) as readonly never[];

/** Nodes a plan (and its gateway's status) refers to by name beyond its candidates. */
function referencedNodes(g: GatewayInfo, observedActive: string): string[] {
  const st = (g.gateway as { status?: { activeNodeName?: unknown } }).status;
  const prevActive = typeof st?.activeNodeName === 'string' ? st.activeNodeName : '';
  return [observedActive, g.moveTo ?? '', prevActive];
}

function sameRefs(names: readonly string[], refs: ReadonlyArray<NodeState | undefined>, nodes: ReadonlyMap<string, NodeState>): boolean {
  for (let i = 0; i < names.length; i++) if (nodes.get(names[i] as string) !== refs[i]) return false;
  return true;
}

/** Does the plan depend on the time? Only through a handover clock: an unconfirmed, current instance. */
function timeSensitive(plan: GatewayPlan): boolean {
  for (const f of plan.primary.values()) if (Number.isFinite(f.assignedAt) && specMatches(f.instance, f.node, plan.info) && !isConfirmed(f, plan.info)) return true;
  return false;
}

export interface ElectionInput {
  infos: readonly GatewayInfo[];
  nodes: ReadonlyMap<string, NodeState>;
  index: NodeLabelIndex;
  /** gateway name → nodes whose Node carries active-for-<gateway>. */
  labelled: ReadonlyMap<string, string[]>;
  /** gateway name → its owned instances (all, including deleting ones). */
  owned: ReadonlyMap<string, InstanceFacts[]>;
  now: number;
  opts: CoreOptions;
  /** A long-lived core's memory: verdicts are then shared between gateways and passes. */
  cache?: CoreCache;
}

/**
 * A node's verdict depends on the node and on what the gateway requires of it (mode, uplink
 * interfaces), not on which gateway asks: gateways sharing a candidate list and a requirement share
 * one list of verdicts (10 gateways per pool in the bench), and it is kept across passes while the
 * nodes' states are the same objects. Shared verdicts are frozen; a per-gateway reason
 * (HandoverTimedOut) gets the gateway its own copy.
 */
function verdictGroup(
  g: GatewayInfo,
  names: readonly string[],
  nodes: ReadonlyMap<string, NodeState>,
  opts: CoreOptions,
  cache: CoreCache | undefined,
): VerdictGroup {
  const seen = cache?.groupKeys.get(g.name);
  let key: string;
  if (seen && seen.info === g) key = seen.key;
  else {
    key = `${g.mode}\u0000${opts.requireCiliumAgent}\u0000${g.mode === MODE_PRIMARY_IP ? g.interfaceName : g.mode === MODE_VIP ? g.interfaces.join('\u0000') : ''}`;
    cache?.groupKeys.set(g.name, { info: g, key });
  }
  let byKey = cache?.verdictGroups.get(names);
  let group = byKey?.get(key);
  if (group && cache) {
    if (group.checked === cache.pass) return group;
    let same = true;
    for (let i = 0; i < names.length; i++) {
      if (nodes.get(names[i] as string) !== group.states[i]) {
        same = false;
        break;
      }
    }
    if (same) {
      group.checked = cache.pass;
      return group;
    }
  }
  group = { states: [], candidates: [], verdicts: new Map(), readyNodes: 0, checked: cache?.pass ?? 0 };
  for (const n of names) {
    const st = nodes.get(n) as NodeState;
    const reasons = ineligibleReasons(g, st, opts, false);
    const v: NodeVerdict = Object.freeze({ node: n, eligible: reasons.length === 0, reasons: reasons.length === 0 ? NO_REASONS : (Object.freeze(reasons) as IneligibleReason[]) });
    group.states.push(st);
    group.candidates.push(v);
    group.verdicts.set(n, v);
    if (v.eligible) group.readyNodes++;
  }
  if (cache) {
    if (!byKey) {
      byKey = new Map();
      cache.verdictGroups.set(names, byKey);
    }
    byKey.set(key, group);
  }
  return group;
}

function pickPrimary(list: InstanceFacts[], g: GatewayInfo): Map<string, InstanceFacts> {
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

function timedOut(f: InstanceFacts | undefined, g: GatewayInfo, now: number, opts: CoreOptions): boolean {
  // An instance whose spec is outdated is about to be rewritten, which restarts its clock (assigned-at).
  if (f === undefined || !specMatches(f.instance, f.node, g) || isConfirmed(f, g)) return false;
  return Number.isFinite(f.assignedAt) && now - f.assignedAt >= opts.handoverTimeoutMs;
}

function describeIneligible(node: string, plan: GatewayPlan, nodes: ReadonlyMap<string, NodeState>): string {
  if (!nodes.has(node)) return `node ${node} does not exist`;
  const v = plan.verdicts.get(node);
  if (!v) return `node ${node} does not match the gateway's nodeSelector`;
  return `node ${node} is not eligible: ${v.reasons.join(', ')}`;
}

/** Why the previous active node is no longer usable (for FailedOver / lastFailoverReason). */
export function failureReason(node: string, plan: GatewayPlan, nodes: ReadonlyMap<string, NodeState>): string | undefined {
  if (!nodes.has(node)) return 'NodeGone';
  const v = plan.verdicts.get(node);
  if (!v) return 'NotSelected';
  return v.eligible ? undefined : v.reasons.join(',');
}

function chooseObservedActive(plan: GatewayPlan, labelled: readonly string[]): string {
  const g = plan.info;
  const eligible = (n: string): boolean => plan.verdicts.get(n)?.eligible === true;
  const readyInstance = (n: string): boolean => plan.primary.get(n)?.ready === true;
  const rank = (n: string): number => (eligible(n) ? 0 : 2) + (readyInstance(n) ? 0 : 1);
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
  for (const [n, f] of plan.primary) if (f.ready) ready.push(n);
  return pick(ready);
}

export function runElection(input: ElectionInput): GatewayPlan[] {
  const { infos, nodes, index, labelled, owned, now, opts } = input;
  const plans: GatewayPlan[] = [];
  const load = new Map<string, number>();
  const bump = (n: string): void => {
    load.set(n, (load.get(n) ?? 0) + 1);
  };

  // Phase 1: verdicts, observed active node, and every choice that keeps a node.
  const sticky = new Map<GatewayPlan, string>();
  const cache = input.cache;
  const fresh: Array<{ plan: GatewayPlan; cands: readonly string[]; group: VerdictGroup; owned: readonly InstanceFacts[]; labelled: readonly string[] }> = [];
  for (const g of infos) {
    const ownedList = owned.get(g.name) ?? NONE;
    const labelledList = labelled.get(g.name) ?? NONE;
    const cands = g.selectorValid ? index.match(g.selector) : NONE;
    const group = verdictGroup(g, cands, nodes, opts, cache);
    const memo = cache?.plans.get(g.name);
    if (
      memo &&
      memo.info === g &&
      memo.cands === cands &&
      memo.group === group &&
      sameItems(memo.owned, ownedList) &&
      sameItems(memo.labelled, labelledList) &&
      sameRefs(referencedNodes(g, memo.plan.observedActive), memo.refs, nodes)
    ) {
      const plan = memo.plan;
      plan.reused = true;
      plans.push(plan);
      if (plan.target !== '') {
        sticky.set(plan, plan.target);
        bump(plan.target);
      }
      continue;
    }
    const valid = !g.invalid;
    const vip = g.mode === MODE_VIP;
    const plan: GatewayPlan = {
      info: g,
      valid,
      candidates: [],
      verdicts: new Map(),
      readyNodes: 0,
      candidateNames: [],
      primary: vip ? pickPrimary(ownedList as InstanceFacts[], g) : new Map(),
      observedActive: '',
      target: '',
      active: '',
      confirmed: false,
      move: undefined,
      instanceNodes: new Map(),
    };
    plans.push(plan);
    fresh.push({ plan, cands, group, owned: ownedList, labelled: labelledList });
    plan.candidates = group.candidates;
    plan.verdicts = group.verdicts;
    plan.readyNodes = group.readyNodes;
    plan.candidateNames = cands;
    if (valid && vip) {
      // A node whose instance for this gateway timed out is ineligible for this gateway only.
      let copied = false;
      for (const [n, f] of plan.primary) {
        const base = group.verdicts.get(n);
        if (!base || !timedOut(f, g, now, opts)) continue;
        if (!copied) {
          plan.candidates = [...group.candidates];
          plan.verdicts = new Map(group.verdicts);
          copied = true;
        }
        const v: NodeVerdict = { node: n, eligible: false, reasons: [...base.reasons, 'HandoverTimedOut'] };
        if (base.eligible) plan.readyNodes--;
        plan.candidates[plan.candidates.indexOf(base)] = v;
        plan.verdicts.set(n, v);
      }
    }
    plan.observedActive = chooseObservedActive(plan, labelledList);

    if (g.moveTo !== undefined) {
      const mt = g.moveTo;
      if (!valid) plan.move = { target: mt, state: 'rejected', note: `move to ${mt || '""'} rejected: gateway is invalid: ${g.invalid?.message ?? ''}` };
      else if (mt === '') plan.move = { target: mt, state: 'rejected', note: 'move rejected: the move-to annotation names no node' };
      else if (plan.verdicts.get(mt)?.eligible !== true) {
        plan.move = { target: mt, state: 'rejected', note: `move to ${mt} rejected: ${describeIneligible(mt, plan, nodes)}` };
      } else plan.move = { target: mt, state: 'honoured', note: '' };
    }
    if (!valid) continue;
    let keep = '';
    if (plan.move?.state === 'honoured') keep = plan.move.target;
    else if (plan.observedActive !== '' && plan.verdicts.get(plan.observedActive)?.eligible) keep = plan.observedActive;
    else if (vip) {
      // A handover under way (instance written, not timed out): continue it, so passes before the
      // confirmation do not pick a different node. A confirmed one first, then the smallest node name.
      let keepConfirmed = false;
      for (const [n, f] of plan.primary) {
        if (!plan.verdicts.get(n)?.eligible) continue;
        const c = isConfirmed(f, g);
        if (keep === '' || (c && !keepConfirmed) || (c === keepConfirmed && byString(n, keep) < 0)) {
          keep = n;
          keepConfirmed = c;
        }
      }
    }
    if (keep !== '') {
      sticky.set(plan, keep);
      bump(keep);
    }
  }

  // Phase 2: elect for the others, in gateway-name order (infos are sorted).
  for (const plan of plans) {
    if (!plan.valid || plan.reused) continue;
    let target = sticky.get(plan) ?? '';
    if (target === '' && plan.readyNodes > 0) {
      // VIP: a node where this gateway's previous instance is still terminating cannot get a new one
      // yet (same name); prefer the others, so the choice sticks on the next pass.
      const blocked = new Set<string>();
      if (plan.info.mode === MODE_VIP) for (const f of owned.get(plan.info.name) ?? []) if (f.deleting) blocked.add(f.node);
      const usable = (v: NodeVerdict): boolean => v.eligible && !blocked.has(v.node);
      const pool = plan.candidates.some(usable) ? usable : (v: NodeVerdict): boolean => v.eligible;
      let min = Number.POSITIVE_INFINITY;
      for (const v of plan.candidates) if (pool(v)) min = Math.min(min, load.get(v.node) ?? 0);
      let bestKey = '';
      for (const v of plan.candidates) {
        if (!pool(v) || (load.get(v.node) ?? 0) !== min) continue;
        const key = electionKey(plan.info.name, v.node);
        if (target === '' || key < bestKey) {
          target = v.node;
          bestKey = key;
        }
      }
      bump(target);
    }
    plan.target = target;
  }

  // Phase 3: label holder, instances, move outcome.
  for (const plan of plans) {
    if (plan.valid && !plan.reused) settle(plan, nodes);
  }
  if (cache) {
    // Remember the plans that depend on their own inputs only (a reused one keeps its memo).
    for (const f of fresh) {
      const p = f.plan;
      const elected = p.valid && !sticky.has(p) && p.target !== '';
      if (elected || (p.valid && p.info.mode === MODE_VIP && timeSensitive(p))) {
        cache.plans.delete(p.info.name);
        continue;
      }
      const refs = referencedNodes(p.info, p.observedActive).map((n) => nodes.get(n));
      cache.plans.set(p.info.name, { info: p.info, cands: f.cands, group: f.group, owned: f.owned, labelled: f.labelled, refs, plan: p });
    }
    if (cache.plans.size > infos.length || cache.groupKeys.size > infos.length || cache.activeLabels.size > infos.length) {
      // Forget deleted gateways.
      const names = new Set(infos.map((g) => g.name));
      for (const m of [cache.plans, cache.groupKeys, cache.activeLabels]) for (const n of m.keys()) if (!names.has(n)) m.delete(n);
    }
  }
  return plans;
}

function settle(plan: GatewayPlan, nodes: ReadonlyMap<string, NodeState>): void {
  const g = plan.info;
  const { target, observedActive } = plan;
  const eligible = (n: string): boolean => plan.verdicts.get(n)?.eligible === true;
  if (g.mode === MODE_PRIMARY_IP) {
    // No instance to wait for: the label moves at once.
    plan.active = target;
    plan.confirmed = target !== '';
  } else {
    const tf = target !== '' ? plan.primary.get(target) : undefined;
    const targetConfirmed = tf !== undefined && isConfirmed(tf, g);
    if (target === '') plan.active = '';
    // The current holder keeps the label while it stays eligible (even while its instance is being
    // (re)written); a new node gets it only once its instance is confirmed (make before break).
    else if (target === observedActive || targetConfirmed) plan.active = target;
    else if (observedActive !== '' && eligible(observedActive)) plan.active = observedActive;
    else plan.active = '';
    const af = plan.active !== '' ? plan.primary.get(plan.active) : undefined;
    plan.confirmed = af !== undefined && isConfirmed(af, g);

    if (target !== '') plan.instanceNodes.set(target, { create: true });
    if (plan.active !== '' && plan.active !== target) plan.instanceNodes.set(plan.active, { create: true });
    // The old node keeps announcing until the new one confirms (make before break), unless its agent
    // is gone (nobody there to make-before-break with: its instance is withdrawn and, if needed, its
    // finalizer released) or it was not announcing anyway. With no target at all, everything is
    // withdrawn (design §4.3).
    if (
      target !== '' &&
      observedActive !== '' &&
      !plan.instanceNodes.has(observedActive) &&
      !targetConfirmed &&
      nodes.get(observedActive)?.heartbeat === 'live' &&
      plan.primary.get(observedActive)?.ready === true
    ) {
      plan.instanceNodes.set(observedActive, { create: false });
    }
    // A timed-out instance is the memory of the failed attempt (it keeps its node ineligible for this
    // gateway); it stays until the gateway has a confirmed active node. If its agent confirms late, that
    // node becomes usable again. Once there is a confirmed active node the memory is dropped, and so is
    // the reason (otherwise the next pass, without the instance, would report a different verdict).
    if (plan.confirmed) {
      for (const v of plan.candidates) {
        const i = v.reasons.indexOf('HandoverTimedOut');
        if (i < 0) continue;
        v.reasons.splice(i, 1);
        if (v.reasons.length === 0) {
          v.eligible = true;
          plan.readyNodes++;
        }
      }
    } else {
      for (const [n] of plan.primary) {
        const v = plan.verdicts.get(n);
        if (v && v.reasons.length === 1 && v.reasons[0] === 'HandoverTimedOut' && !plan.instanceNodes.has(n)) {
          plan.instanceNodes.set(n, { create: false });
        }
      }
    }
  }
  if (plan.move?.state === 'honoured' && plan.active === plan.move.target) {
    plan.move.note =
      observedActive === plan.move.target
        ? `node ${plan.move.target} is already the active node`
        : `moved the active node from ${observedActive || 'none'} to ${plan.move.target}`;
  }
}
