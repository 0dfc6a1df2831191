// Gateway status, its Ready condition, and the events that record its transitions.
//
// Events are edge-triggered from level-triggered state: they are derived by comparing the observed
// status with the desired one, and `planWrites` emits them only with the status write that records the
// transition. Once the status is written, the next pass (or a new leader) sees no transition.

import type { Condition, EgressGatewayStatus } from '../api/types.ts';
import { API_VERSION, KIND_GATEWAY, MODE_PRIMARY_IP, MODE_VIP } from '../api/names.ts';
import type { CoreEvent, GatewayDecision, GatewayPhase, ObjectRef } from './types.ts';
import { noEligibleMessage, type NodeState } from './eligibility.ts';
import { failureReason, type GatewayPlan } from './election.ts';
import { isObject } from './util.ts';
import { statusEqual } from './compare.ts';

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

export function gatewayRef(plan: GatewayPlan): ObjectRef {
  const ref: ObjectRef = { apiVersion: API_VERSION, kind: KIND_GATEWAY, name: plan.info.name };
  if (plan.info.uid !== '') ref.uid = plan.info.uid;
  return ref;
}

export interface GatewayOutcome {
  decision: GatewayDecision;
  status: EgressGatewayStatus;
  events: CoreEvent[];
  ready: boolean;
  failover?: { from: string; to: string; reason: string };
}

export function gatewayOutcome(plan: GatewayPlan, nodes: ReadonlyMap<string, NodeState>, nowIso: string, ciliumAgentSource?: string): GatewayOutcome {
  const g = plan.info;
  const prevStatus: unknown = (g.gateway as { status?: unknown }).status;
  const prev = isObject(prevStatus) ? (prevStatus as EgressGatewayStatus) : undefined;
  const prevCond = readyConditionOf(prev);
  const prevActive = typeof prev?.activeNodeName === 'string' ? prev.activeNodeName : '';

  let phase: GatewayPhase;
  let status: 'True' | 'False';
  let reason: string;
  let message: string;
  if (!plan.valid) {
    phase = 'Invalid';
    status = 'False';
    reason = g.invalid?.reason ?? 'InvalidSpec';
    message = g.invalid?.message ?? 'invalid spec';
  } else if (plan.target === '') {
    phase = 'NoEligibleNode';
    status = 'False';
    message = noEligibleMessage(plan.candidates.map((v) => v.reasons));
    // No cilium-agent pod at all: say so, and where the controller looked, rather than "not Ready" per node.
    if (plan.candidates.some((v) => v.reasons.includes('CiliumAgentNotFound'))) {
      reason = 'CiliumAgentNotFound';
      message = `no cilium-agent pod found${ciliumAgentSource ? ` (${ciliumAgentSource})` : ''}; check the controller's --cilium-namespace and --cilium-selector (the install profile): ${message}`;
    } else reason = 'NoEligibleNode';
  } else if (g.mode === MODE_PRIMARY_IP) {
    phase = 'Active';
    status = 'True';
    reason = 'ElectionSucceed';
    message = `Node ${plan.active} was elected as active node`;
  } else if (plan.active !== '' && plan.confirmed) {
    // Only the active node's own confirmed instance counts (fixes D19).
    phase = plan.target === plan.active ? 'Active' : 'HandingOver';
    status = 'True';
    reason = 'ElectionSucceedAndVirtualIPAnnounced';
    message = `Node ${plan.active} was elected as active node and VirtualIP is announced`;
    if (plan.target !== plan.active) message += `; moving to node ${plan.target}`;
  } else {
    phase = 'HandingOver';
    status = 'False';
    reason = 'VirtualIPAnnouncing';
    message = `waiting for node ${plan.target} to announce VirtualIP ${g.vip}`;
  }

  const ref = gatewayRef(plan);
  const events: CoreEvent[] = [];
  let failover: GatewayOutcome['failover'];
  let lastFailoverTime = typeof prev?.lastFailoverTime === 'string' ? prev.lastFailoverTime : undefined;
  let lastFailoverReason = typeof prev?.lastFailoverReason === 'string' ? prev.lastFailoverReason : undefined;

  if (prevActive !== plan.active) {
    const failed = prevActive !== '' && plan.valid ? failureReason(prevActive, plan, nodes) : undefined;
    if (failed !== undefined) {
      failover = { from: prevActive, to: plan.target, reason: failed };
      lastFailoverTime = nowIso;
      lastFailoverReason = failed;
      // With no node to fail over to, the NoEligibleNode event below says it.
      if (plan.target !== '') {
        const next = plan.active !== '' ? `node ${plan.active} is the active node` : `handing over to node ${plan.target}`;
        events.push({ regarding: ref, type: 'Warning', reason: 'FailedOver', note: `Active node ${prevActive} failed (${failed}); ${next}` });
      }
    } else if (prevActive !== '' && plan.move?.state === 'honoured' && plan.active === plan.move.target) {
      // A requested move: the `Moved` event goes with clearing the request.
      lastFailoverTime = nowIso;
      lastFailoverReason = 'Moved';
    } else if (plan.active !== '') {
      events.push({ regarding: ref, type: 'Normal', reason: 'Elected', note: `Node ${plan.active} was elected as active node` });
    }
  }
  if (prevCond?.reason !== reason) {
    if (reason === 'NoEligibleNode' || reason === 'CiliumAgentNotFound' || reason === 'InvalidSpec' || reason === 'DuplicateVIP') {
      events.push({ regarding: ref, type: 'Warning', reason, note: message });
    }
  }
  if (g.mode === MODE_VIP && status === 'True' && prevCond?.status !== 'True') {
    events.push({ regarding: ref, type: 'Normal', reason: 'VIPAnnounced', note: `Node ${plan.active} announces VirtualIP ${g.vip}` });
  }

  const st: EgressGatewayStatus = {};
  if (g.generation !== undefined) st.observedGeneration = g.generation;
  st.readyNodes = plan.readyNodes;
  st.totalNodes = plan.candidates.length;
  st.activeNodeName = plan.active;
  st.conditions = [readyCondition(prevCond, status, reason, message, g.generation, nowIso)];
  if (lastFailoverTime !== undefined) st.lastFailoverTime = lastFailoverTime;
  if (lastFailoverReason !== undefined) st.lastFailoverReason = lastFailoverReason;

  const decision: GatewayDecision = {
    name: g.name,
    mode: g.mode,
    candidates: plan.candidates,
    readyNodes: plan.readyNodes,
    totalNodes: plan.candidates.length,
    observedActive: plan.observedActive,
    target: plan.target,
    active: plan.active,
    phase,
    reason,
    message,
    moveTarget: plan.move?.state === 'honoured' ? plan.move.target : '',
    confirmed: plan.confirmed,
  };
  // Unchanged: hand back the observed object (no write, nothing new retained).
  const same = statusEqual(prev, st);
  return { decision, status: same ? (prev as EgressGatewayStatus) : st, events: same ? [] : events, ready: status === 'True', ...(failover && !same ? { failover } : {}) };
}
