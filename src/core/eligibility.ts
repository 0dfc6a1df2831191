// Per-node facts, computed once per pass, and the per-gateway eligibility verdict (design §3).

import type { NodeLike, PodLike } from '../api/types.ts';
import { MODE_PRIMARY_IP, MODE_VIP } from '../api/names.ts';
import type { CoreOptions, Heartbeat, IneligibleReason, Snapshot, UplinkState } from './types.ts';
import type { GatewayInfo } from './validate.ts';
import { isBeingDeleted, isNodeCordoned, isNodeReady, isObject, isPodReady, labelsOf, nameOf, podNodeName } from './util.ts';
import { sameItems, type CoreCache, type ListMemo } from './cache.ts';

/** 'notFound': there is no such pod on any node at all (the controller's namespace or selector is wrong). */
export type PodState = 'none' | 'ok' | 'bad' | 'notFound';
export type HeartbeatState = 'absent' | 'live' | 'expired';

export interface NodeState {
  name: string;
  node: NodeLike;
  labels: Readonly<Record<string, string>>;
  ready: boolean;
  cordoned: boolean;
  ciliumAgent: PodState;
  agent: PodState;
  heartbeat: HeartbeatState;
  uplinks: Readonly<Record<string, UplinkState>> | undefined;
}

/** Order in which reasons are reported (and the one that classifies a node in the "no eligible node" counts). */
export const REASON_ORDER: readonly IneligibleReason[] = [
  'NodeNotReady',
  'Cordoned',
  'CiliumAgentNotFound',
  'CiliumAgentNotReady',
  'AgentMissing',
  'HeartbeatExpired',
  'AgentNotReady',
  'UplinkDown',
  'HandoverTimedOut',
];

function podStates(pods: readonly PodLike[]): Map<string, PodState> {
  const m = new Map<string, PodState>();
  for (const pod of pods) {
    if (!isObject(pod)) continue;
    const node = podNodeName(pod);
    if (node === '') continue;
    // Any Ready, not-terminating pod makes the node healthy (a rollout briefly runs two).
    const ok = isPodReady(pod) && !isBeingDeleted(pod);
    if (ok) m.set(node, 'ok');
    else if (!m.has(node)) m.set(node, 'bad');
  }
  return m;
}

function heartbeatIndex(hbs: readonly Heartbeat[]): Map<string, Heartbeat> {
  const m = new Map<string, Heartbeat>();
  for (const hb of hbs) {
    if (!isObject(hb) || typeof hb.node !== 'string') continue;
    const prev = m.get(hb.node);
    // Several Leases for one node should not happen; the freshest decides, independent of input order.
    if (!prev || hb.observedAt + hb.durationMs > prev.observedAt + prev.durationMs) m.set(hb.node, hb);
  }
  return m;
}

export function heartbeatLive(hb: Heartbeat, now: number): boolean {
  return Number.isFinite(hb.observedAt) && Number.isFinite(hb.durationMs) && now - hb.observedAt < hb.durationMs;
}

function podStatesMemo(pods: readonly PodLike[], memo: ListMemo<PodLike, Map<string, PodState>> | undefined): ListMemo<PodLike, Map<string, PodState>> {
  return memo && sameItems(memo.items, pods) ? memo : { items: pods, result: podStates(pods) };
}

/** The node's state from this pass's inputs, or `prev` itself when nothing in it changed. */
function nodeState(
  name: string,
  node: NodeLike,
  hb: Heartbeat | undefined,
  cilium: ReadonlyMap<string, PodState>,
  agents: ReadonlyMap<string, PodState>,
  now: number,
  prev: NodeState | undefined,
): NodeState {
  // No cilium-agent pod anywhere is a configuration problem, not every node's: it gets its own reason.
  const ciliumAgent = cilium.get(name) ?? (cilium.size === 0 ? 'notFound' : 'none');
  const agent = agents.get(name) ?? 'none';
  const heartbeat: HeartbeatState = hb ? (heartbeatLive(hb, now) ? 'live' : 'expired') : 'absent';
  const uplinks = hb && isObject(hb.uplinks) ? hb.uplinks : undefined;
  if (prev && prev.node === node && prev.ciliumAgent === ciliumAgent && prev.agent === agent && prev.heartbeat === heartbeat && prev.uplinks === uplinks) return prev;
  return { name, node, labels: labelsOf(node), ready: isNodeReady(node), cordoned: isNodeCordoned(node), ciliumAgent, agent, heartbeat, uplinks };
}

/**
 * Heartbeats in strictly increasing node order (as the controller's tracker gives them) can be joined
 * with the nodes (also in name order) without building an index: `at(name)` must then be called with
 * increasing names. Any other input gets the index.
 */
function heartbeatLookup(hbs: readonly Heartbeat[]): (name: string) => Heartbeat | undefined {
  let sorted = true;
  for (let i = 0; i < hbs.length; i++) {
    const hb = hbs[i] as Heartbeat;
    if (!isObject(hb) || typeof hb.node !== 'string' || (i > 0 && !((hbs[i - 1] as Heartbeat).node < hb.node))) {
      sorted = false;
      break;
    }
  }
  if (!sorted) {
    const m = heartbeatIndex(hbs);
    return (name) => m.get(name);
  }
  let j = 0;
  let last = '';
  return (name) => {
    // Names not increasing (not a sorted node list): start the scan over.
    if (name < last) j = 0;
    last = name;
    while (j < hbs.length && (hbs[j] as Heartbeat).node < name) j++;
    const hb = hbs[j];
    return hb !== undefined && hb.node === name ? hb : undefined;
  };
}

/**
 * One NodeState per node. With a cache, an unchanged node (same object, same pod and heartbeat states)
 * keeps its NodeState object, and the map itself is kept from pass to pass (see below), so with a
 * cache the returned map must be treated as read-only and not kept beyond the pass.
 */
export function buildNodeStates(snapshot: Snapshot, cache?: CoreCache): Map<string, NodeState> {
  let cilium: Map<string, PodState>;
  let agents: Map<string, PodState>;
  if (cache) {
    cache.ciliumPods = podStatesMemo(snapshot.ciliumAgentPods ?? [], cache.ciliumPods);
    cache.agentPods = podStatesMemo(snapshot.agentPods ?? [], cache.agentPods);
    cilium = cache.ciliumPods.result;
    agents = cache.agentPods.result;
  } else {
    cilium = podStates(snapshot.ciliumAgentPods ?? []);
    agents = podStates(snapshot.agentPods ?? []);
  }
  const list = snapshot.nodes ?? [];
  const hbs = snapshot.heartbeats ?? [];
  const map = cache?.nodeStates;
  if (cache && map && list.length === map.size) {
    // The same names in strictly increasing order (so no duplicates, no node added or gone): the map is
    // kept and only the entries whose state changed are replaced, in place; the changes are recorded
    // for the later stages (label index, node labels), which then look at those nodes only.
    const hbAt = heartbeatLookup(hbs);
    const changes: Array<{ old: NodeState; now: NodeState }> = [];
    let same = true;
    let last = '';
    for (const node of list) {
      const name = nameOf(node);
      const prev = name > last ? map.get(name) : undefined;
      last = name;
      if (!prev) {
        same = false;
        break;
      }
      const now = nodeState(name, node, hbAt(name), cilium, agents, snapshot.now, prev);
      if (now !== prev) changes.push({ old: prev, now });
    }
    if (same) {
      for (const c of changes) map.set(c.now.name, c.now);
      if (changes.length > 0) cache.nodesVersion++;
      cache.nodeChanges = changes;
      return map;
    }
  }
  const hbAt = heartbeatLookup(hbs);
  const out = new Map<string, NodeState>();
  for (const node of list) {
    const name = nameOf(node);
    if (name === '' || out.has(name)) continue;
    out.set(name, nodeState(name, node, hbAt(name), cilium, agents, snapshot.now, map?.get(name)));
  }
  if (cache) {
    cache.nodeStates = out;
    cache.nodesVersion++;
    cache.nodeChanges = 'all';
  }
  return out;
}

/** Ready and uncordoned: may carry the member label (reference §3.4). */
export function isMemberCandidate(st: NodeState): boolean {
  return st.ready && !st.cordoned;
}

function uplinkUp(u: UplinkState | undefined): boolean {
  return isObject(u) && u.up === true;
}

/**
 * Why `st` cannot serve gateway `g` (empty → eligible). `timedOut`: the node's instance for this gateway
 * did not confirm within the handover timeout.
 */
export function ineligibleReasons(g: GatewayInfo, st: NodeState, opts: CoreOptions, timedOut: boolean): IneligibleReason[] {
  const r: IneligibleReason[] = [];
  if (!st.ready) r.push('NodeNotReady');
  if (st.cordoned) r.push('Cordoned');
  if (opts.requireCiliumAgent && st.ciliumAgent !== 'ok') r.push(st.ciliumAgent === 'notFound' ? 'CiliumAgentNotFound' : 'CiliumAgentNotReady');
  if (g.mode === MODE_VIP) {
    // VIP mode needs a live agent: it holds and announces the VIP.
    if (st.heartbeat === 'absent') r.push('AgentMissing');
    else if (st.heartbeat === 'expired') r.push('HeartbeatExpired');
    if (st.agent === 'bad') r.push('AgentNotReady');
  } else if (st.heartbeat === 'expired') {
    // PrimaryIP mode needs no agent, but an agent that stopped renewing is the fastest dead-node signal.
    r.push('HeartbeatExpired');
  }
  if (st.uplinks && st.heartbeat !== 'absent') {
    if (g.mode === MODE_PRIMARY_IP) {
      const u = st.uplinks[g.interfaceName];
      if (!uplinkUp(u) || !Array.isArray(u?.ipv4) || u.ipv4.length === 0) r.push('UplinkDown');
    } else if (g.mode === MODE_VIP && g.interfaces.length > 0) {
      // With an empty `interfaces` list the agent picks the interface from the route to the VIP; the
      // controller cannot tell which one that is, so it trusts the agent's instance status instead.
      if (!g.interfaces.some((i) => uplinkUp(st.uplinks?.[i]))) r.push('UplinkDown');
    }
  }
  if (timedOut) r.push('HandoverTimedOut');
  return r;
}

const REASON_TEXT: Record<IneligibleReason, string> = {
  NodeNotReady: 'NotReady',
  Cordoned: 'cordoned',
  CiliumAgentNotFound: 'no cilium-agent pod found',
  CiliumAgentNotReady: 'cilium-agent not Ready',
  AgentMissing: 'agent missing',
  HeartbeatExpired: 'agent heartbeat expired',
  AgentNotReady: 'agent not Ready',
  UplinkDown: 'uplink down',
  HandoverTimedOut: 'handover timed out',
};

export function reasonText(r: IneligibleReason): string {
  return REASON_TEXT[r];
}

/**
 * "no eligible node: 3 match the selector: 1 NotReady, 1 cordoned, 1 agent heartbeat expired". Each node
 * is counted once, under its first reason in REASON_ORDER, so the counts add up.
 */
export function noEligibleMessage(reasonsPerNode: ReadonlyArray<readonly IneligibleReason[]>): string {
  if (reasonsPerNode.length === 0) return 'no eligible node: no node matches the selector';
  const counts = new Map<IneligibleReason, number>();
  for (const rs of reasonsPerNode) {
    const first = REASON_ORDER.find((x) => rs.includes(x));
    if (first) counts.set(first, (counts.get(first) ?? 0) + 1);
  }
  const parts = REASON_ORDER.filter((r) => counts.has(r)).map((r) => `${counts.get(r)} ${REASON_TEXT[r]}`);
  const n = reasonsPerNode.length;
  return `no eligible node: ${n} ${n === 1 ? 'matches' : 'match'} the selector: ${parts.join(', ')}`;
}
