// Per-node facts (NodeState) and the per-gateway eligibility verdict (design §3).
//
// A NodeState is what every gateway needs to know about one node at one moment: its labels, readiness,
// the cilium-agent and egressgw agent pods on it, and its heartbeat. It is derived from the node's own
// objects and the time only, so the shell can recompute it for the nodes an event touched.

import { nodeTunnelEndpoint } from './dataplane.ts';
import type { NodeLike, PodLike } from '../api/types.ts';
import { MODE_PRIMARY_IP, MODE_VIP } from '../api/names.ts';
import type { CoreOptions, Heartbeat, IneligibleReason, NodeVerdict, Snapshot, UplinkState } from './types.ts';
import type { GatewayInfo } from './validate.ts';
import { isBeingDeleted, isNodeCordoned, isNodeReady, isObject, isPodReady, labelsOf, nameOf, podNodeName, sameLabels } from './util.ts';

/** 'notFound': there is no such pod on any node at all (the controller's namespace or selector is wrong). */
export type PodState = 'none' | 'ok' | 'bad' | 'notFound';
export type HeartbeatState = 'absent' | 'live' | 'expired';

export interface NodeState {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly ready: boolean;
  readonly cordoned: boolean;
  readonly ciliumAgent: PodState;
  readonly agent: PodState;
  readonly heartbeat: HeartbeatState;
  readonly uplinks: Readonly<Record<string, UplinkState>> | undefined;
  /** Its first IPv4 InternalIP: the tunnel endpoint of the Linux data plane (undefined when it has none). */
  readonly address: string | undefined;
  /** This node's verdict where nothing disqualifies it: one (frozen) object for every gateway it serves. */
  readonly eligible: NodeVerdict;
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
  'RefusedVIP',
];

/** One node's pods (of one kind): any Ready, not-terminating pod makes it healthy (a rollout briefly runs two). */
export function podStateOf(pods: Iterable<PodLike>): PodState {
  let state: PodState = 'none';
  for (const pod of pods) {
    if (isPodReady(pod) && !isBeingDeleted(pod)) return 'ok';
    state = 'bad';
  }
  return state;
}

/** Every node's pod state (of one kind of pod). */
export function podStates(pods: readonly PodLike[]): Map<string, PodState> {
  const m = new Map<string, PodState>();
  for (const pod of pods) {
    if (!isObject(pod)) continue;
    const node = podNodeName(pod);
    if (node === '' || m.get(node) === 'ok') continue;
    m.set(node, podStateOf([pod]));
  }
  return m;
}

export function heartbeatLive(hb: Heartbeat, now: number): boolean {
  return Number.isFinite(hb.observedAt) && Number.isFinite(hb.durationMs) && now - hb.observedAt < hb.durationMs;
}

/** Several Leases for one node should not happen; the freshest decides, independent of input order. */
export function fresher(a: Heartbeat | undefined, b: Heartbeat): Heartbeat {
  return !a || b.observedAt + b.durationMs > a.observedAt + a.durationMs ? b : a;
}

/** Node name → its freshest heartbeat. */
export function heartbeatsByNode(hbs: readonly Heartbeat[]): Map<string, Heartbeat> {
  const m = new Map<string, Heartbeat>();
  for (const hb of hbs) {
    if (isObject(hb) && typeof hb.node === 'string') m.set(hb.node, fresher(m.get(hb.node), hb));
  }
  return m;
}

/** What a node's state takes from its heartbeat at `now`. */
export function heartbeatFacts(hb: Heartbeat | undefined, now: number): { heartbeat: HeartbeatState; uplinks: NodeState['uplinks'] } {
  if (!hb) return { heartbeat: 'absent', uplinks: undefined };
  return { heartbeat: heartbeatLive(hb, now) ? 'live' : 'expired', uplinks: isObject(hb.uplinks) ? hb.uplinks : undefined };
}

export function nodeState(
  name: string,
  node: NodeLike,
  ciliumAgent: PodState,
  agent: PodState,
  hb: { heartbeat: HeartbeatState; uplinks: NodeState['uplinks'] },
): NodeState {
  const eligible = Object.freeze(verdict(name, NO_REASONS)) as NodeVerdict;
  return { name, labels: labelsOf(node), ready: isNodeReady(node), cordoned: isNodeCordoned(node), ciliumAgent, agent, heartbeat: hb.heartbeat, uplinks: hb.uplinks, address: nodeTunnelEndpoint(node), eligible };
}

/** Equal states: every gateway decides the same with either. */
export function sameNodeState(a: NodeState | undefined, b: NodeState | undefined): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  return (
    a.name === b.name &&
    a.ready === b.ready &&
    a.cordoned === b.cordoned &&
    a.ciliumAgent === b.ciliumAgent &&
    a.agent === b.agent &&
    a.heartbeat === b.heartbeat &&
    a.uplinks === b.uplinks &&
    a.address === b.address &&
    sameLabels(a.labels, b.labels)
  );
}

/** One NodeState per node (first object of a name) of a whole snapshot. */
export function buildNodeStates(snapshot: Snapshot): Map<string, NodeState> {
  const cilium = podStates(snapshot.ciliumAgentPods ?? []);
  const agents = podStates(snapshot.agentPods ?? []);
  const hbs = heartbeatsByNode(snapshot.heartbeats ?? []);
  const out = new Map<string, NodeState>();
  for (const node of snapshot.nodes ?? []) {
    const name = nameOf(node);
    if (name === '' || out.has(name)) continue;
    // No cilium-agent pod anywhere is a configuration problem, not every node's: it gets its own reason.
    const ciliumAgent = cilium.get(name) ?? (cilium.size === 0 ? 'notFound' : 'none');
    out.set(name, nodeState(name, node, ciliumAgent, agents.get(name) ?? 'none', heartbeatFacts(hbs.get(name), snapshot.now)));
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

/** Shared by every eligible verdict (never mutated: verdicts are replaced, not changed). */
const NO_REASONS: IneligibleReason[] = Object.freeze([]) as unknown as IneligibleReason[];

export function verdict(node: string, reasons: IneligibleReason[]): NodeVerdict {
  return { node, eligible: reasons.length === 0, reasons: reasons.length === 0 ? NO_REASONS : reasons };
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
  RefusedVIP: 'refused the VIP',
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
