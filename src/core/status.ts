// Gateway status, its Ready condition, and the events that record its transitions.
//
// Events are edge-triggered from level-triggered state: they are derived by comparing the observed
// status with the desired one, and the writes carry them only with the status write that records the
// transition. Once the status is written, the next pass (or a new leader) sees no transition.

import type { Condition, EgressGatewayStatus } from '../api/types.ts';
import { API_VERSION, KIND_GATEWAY, MODE_PRIMARY_IP, MODE_VIP } from '../api/names.ts';
import type { CoreEvent, CoreMetrics, GatewayDecision, GatewayPhase, ObjectRef } from './types.ts';
import { noEligibleMessage } from './eligibility.ts';
import type { Election } from './election.ts';
import type { GatewayInfo } from './validate.ts';
import { describeRefusals } from './refusals.ts';
import { isObject } from './util.ts';
import { statusEqual } from './compare.ts';

/** Most outcomes have no events: one shared (frozen) empty list. */
export const NO_EVENTS: CoreEvent[] = Object.freeze([]) as unknown as CoreEvent[];

export function readyConditionOf(status: unknown): Condition | undefined {
  if (!isObject(status) || !Array.isArray(status['conditions'])) return undefined;
  for (const c of status['conditions'] as unknown[]) if (isObject(c) && c['type'] === 'Ready') return c as unknown as Condition;
  return undefined;
}

/** A Ready condition whose lastTransitionTime moves only when its status changes (fixes D3). */
export function readyCondition(
  prev: Condition | undefined,
  status: 'True' | 'False',
  reason: string,
  message: string,
  generation: number | undefined,
  nowIso: string,
): Condition {
  const keep = prev !== undefined && prev.status === status && typeof prev.lastTransitionTime === 'string' && prev.lastTransitionTime !== '';
  const c: Condition = {
    type: 'Ready',
    status,
    reason,
    message,
    lastTransitionTime: keep ? prev.lastTransitionTime : nowIso,
    lastHeartbeatTime: nowIso,
  };
  if (generation !== undefined) c.observedGeneration = generation;
  return c;
}

export function gatewayRef(g: GatewayInfo): ObjectRef {
  const ref: ObjectRef = { apiVersion: API_VERSION, kind: KIND_GATEWAY, name: g.name };
  if (g.uid !== '') ref.uid = g.uid;
  return ref;
}

/** Why the previous active node is no longer usable (for FailedOver / lastFailoverReason). */
function failureReason(node: string, e: Election, nodeExists: (name: string) => boolean): string | undefined {
  if (!nodeExists(node)) return 'NodeGone';
  const v = e.candidates.find((x) => x.node === node);
  if (!v) return 'NotSelected';
  return v.eligible ? undefined : v.reasons.join(',');
}

export interface GatewayOutcome {
  decision: GatewayDecision;
  status: EgressGatewayStatus;
  events: CoreEvent[];
  ready: boolean;
  failover?: { from: string; to: string; reason: string };
  /** The status differs from the observed one: it carries `nowIso` (see readyCondition). */
  changed: boolean;
  /** The gateway's line in the pass's metrics. */
  metric: CoreMetrics['gateways'][number];
}

interface Readiness {
  phase: GatewayPhase;
  status: 'True' | 'False';
  reason: string;
  message: string;
}

/** The gateway's phase and Ready condition after its election. */
function readiness(g: GatewayInfo, e: Election, ciliumAgentSource: string | undefined): Readiness {
  if (!e.valid) return { phase: 'Invalid', status: 'False', reason: g.invalid?.reason ?? 'InvalidSpec', message: g.invalid?.message ?? 'invalid spec' };
  if (e.target === '') {
    const message = noEligibleMessage(e.candidates.map((v) => v.reasons));
    // Every node was tried and none took the VIP: say why, per node, and when they are tried again.
    const refused = e.refusals;
    if (refused !== undefined && e.candidates.length > 0 && e.candidates.every((v) => v.reasons.length > 0 && v.reasons.every((x) => x === 'RefusedVIP' || x === 'HandoverTimedOut'))) {
      return {
        phase: 'NoEligibleNode',
        status: 'False',
        reason: 'VIPRefused',
        message: `no node accepts VirtualIP ${g.vip}: ${describeRefusals(refused, e.candidates.map((v) => v.node))}; trying them again at ${new Date(refused.retryAt).toISOString()}`,
      };
    }
    // No cilium-agent pod at all: say so, and where the controller looked, rather than "not Ready" per node.
    if (e.candidates.some((v) => v.reasons.includes('CiliumAgentNotFound'))) {
      const where = ciliumAgentSource ? ` (${ciliumAgentSource})` : '';
      return {
        phase: 'NoEligibleNode',
        status: 'False',
        reason: 'CiliumAgentNotFound',
        message: `no cilium-agent pod found${where}; check the controller's --cilium-namespace and --cilium-selector (the install profile): ${message}`,
      };
    }
    return { phase: 'NoEligibleNode', status: 'False', reason: 'NoEligibleNode', message };
  }
  if (g.mode === MODE_PRIMARY_IP) return { phase: 'Active', status: 'True', reason: 'ElectionSucceed', message: `Node ${e.active} was elected as active node` };
  if (e.active !== '' && e.confirmed) {
    // Only the active node's own confirmed instance counts (fixes D19).
    const moving = e.target !== e.active ? `; moving to node ${e.target}` : '';
    return {
      phase: moving ? 'HandingOver' : 'Active',
      status: 'True',
      reason: 'ElectionSucceedAndVirtualIPAnnounced',
      message: `Node ${e.active} was elected as active node and VirtualIP is announced${moving}`,
    };
  }
  return { phase: 'HandingOver', status: 'False', reason: 'VirtualIPAnnouncing', message: `waiting for node ${e.target} to announce VirtualIP ${g.vip}` };
}

interface Transition {
  events: CoreEvent[];
  failover: GatewayOutcome['failover'];
  lastFailoverTime: string | undefined;
  lastFailoverReason: string | undefined;
}

/** The events (and failover record) of the change from the observed status to `r` and the election's active node. */
function transition(g: GatewayInfo, e: Election, prev: EgressGatewayStatus | undefined, r: Readiness, nodeExists: (name: string) => boolean, nowIso: string): Transition {
  const prevCond = readyConditionOf(prev);
  const prevActive = typeof prev?.activeNodeName === 'string' ? prev.activeNodeName : '';
  const ref = gatewayRef(g);
  const t: Transition = {
    events: [],
    failover: undefined,
    lastFailoverTime: typeof prev?.lastFailoverTime === 'string' ? prev.lastFailoverTime : undefined,
    lastFailoverReason: typeof prev?.lastFailoverReason === 'string' ? prev.lastFailoverReason : undefined,
  };
  if (prevActive !== e.active) {
    const failed = prevActive !== '' && e.valid ? failureReason(prevActive, e, nodeExists) : undefined;
    if (failed !== undefined) {
      t.failover = { from: prevActive, to: e.target, reason: failed };
      t.lastFailoverTime = nowIso;
      t.lastFailoverReason = failed;
      // With no node to fail over to, the NoEligibleNode event below says it.
      if (e.target !== '') {
        const next = e.active !== '' ? `node ${e.active} is the active node` : `handing over to node ${e.target}`;
        t.events.push({ regarding: ref, type: 'Warning', reason: 'FailedOver', note: `Active node ${prevActive} failed (${failed}); ${next}` });
      }
    } else if (prevActive !== '' && e.move?.state === 'honoured' && e.active === e.move.target) {
      // A requested move: the `Moved` event goes with clearing the request.
      t.lastFailoverTime = nowIso;
      t.lastFailoverReason = 'Moved';
    } else if (e.active !== '') {
      t.events.push({ regarding: ref, type: 'Normal', reason: 'Elected', note: `Node ${e.active} was elected as active node` });
    }
  }
  if (prevCond?.reason !== r.reason && (r.reason === 'NoEligibleNode' || r.reason === 'CiliumAgentNotFound' || r.reason === 'InvalidSpec' || r.reason === 'DuplicateVIP' || r.reason === 'VIPRefused')) {
    t.events.push({ regarding: ref, type: 'Warning', reason: r.reason, note: r.message });
  }
  if (g.mode === MODE_VIP && r.status === 'True' && prevCond?.status !== 'True') {
    t.events.push({ regarding: ref, type: 'Normal', reason: 'VIPAnnounced', note: `Node ${e.active} announces VirtualIP ${g.vip}` });
  }
  return t;
}

/** The gateway's status, decision and events after its election. */
export function gatewayOutcome(
  g: GatewayInfo,
  e: Election,
  nodeExists: (name: string) => boolean,
  nowIso: string,
  ciliumAgentSource?: string,
): GatewayOutcome {
  const prevStatus: unknown = (g.gateway as { status?: unknown }).status;
  const prev = isObject(prevStatus) ? (prevStatus as EgressGatewayStatus) : undefined;
  const r = readiness(g, e, ciliumAgentSource);
  const t = transition(g, e, prev, r, nodeExists, nowIso);
  const st: EgressGatewayStatus = {};
  if (g.generation !== undefined) st.observedGeneration = g.generation;
  st.readyNodes = e.readyNodes;
  st.totalNodes = e.candidates.length;
  st.activeNodeName = e.active;
  st.conditions = [readyCondition(readyConditionOf(prev), r.status, r.reason, r.message, g.generation, nowIso)];
  if (t.lastFailoverTime !== undefined) st.lastFailoverTime = t.lastFailoverTime;
  if (t.lastFailoverReason !== undefined) st.lastFailoverReason = t.lastFailoverReason;

  const decision: GatewayDecision = {
    name: g.name,
    mode: g.mode,
    candidates: e.candidates,
    readyNodes: e.readyNodes,
    totalNodes: e.candidates.length,
    observedActive: e.observedActive,
    target: e.target,
    active: e.active,
    phase: r.phase,
    reason: r.reason,
    message: r.message,
    moveTarget: e.move?.state === 'honoured' ? e.move.target : '',
    confirmed: e.confirmed,
  };
  const metric = { name: g.name, activeNode: e.active, readyNodes: e.readyNodes, totalNodes: e.candidates.length, ready: r.status === 'True' };
  // Unchanged: hand back the observed object (no write, nothing new retained).
  const same = statusEqual(prev, st);
  return {
    decision,
    status: same ? (prev as EgressGatewayStatus) : st,
    events: same ? NO_EVENTS : t.events,
    ready: r.status === 'True',
    changed: !same,
    metric,
    ...(t.failover && !same ? { failover: t.failover } : {}),
  };
}
