// Policies: the CiliumEgressGatewayPolicy each one renders to (design §7, reference §3.9), its status
// and its events.

import type { CiliumEgressGatewayPolicy, EgressGatewayPolicyStatus } from '../api/types.ts';
import { API_VERSION, CILIUM_GROUP, CILIUM_VERSION, KIND_CEGP, KIND_POLICY, OWNED_LABELS, activeForLabel, cegpName } from '../api/names.ts';
import type { CoreEvent, ObjectRef } from './types.ts';
import { NO_EVENTS, readyCondition, readyConditionOf } from './status.ts';
import { cegpUpToDate, statusEqual } from './compare.ts';
import type { GatewayInfo, PolicyInfo } from './validate.ts';
import { isObject, labelsOf, nameOf } from './util.ts';

/** What a policy needs to know about its gateway after the election. */
export interface GatewayView {
  info: GatewayInfo;
  valid: boolean;
  active: string;
  message: string;
  /** Shared by the gateway's policies (desired objects are never mutated). */
  egressGateway?: EgressGatewaySpec;
}

export interface PolicyOutcome {
  /** The CEGP to have: rendered, or the observed one kept as is; undefined → none (delete ours). */
  cegp: CiliumEgressGatewayPolicy | undefined;
  status: EgressGatewayPolicyStatus;
  events: CoreEvent[];
  orphan: boolean;
  /** The status differs from the observed one: it carries `nowIso` (see readyCondition). */
  changed: boolean;
}

/** The `egressGateway` part shared by every policy of a gateway (built once per gateway per pass). */
export type EgressGatewaySpec = NonNullable<CiliumEgressGatewayPolicy['spec']>['egressGateway'];

export function egressGatewaySpec(info: GatewayInfo, observed?: CiliumEgressGatewayPolicy): EgressGatewaySpec {
  const matchLabels: Record<string, string> = {};
  matchLabels[activeForLabel(info.name)] = '';
  const out: EgressGatewaySpec = { nodeSelector: { matchLabels } };
  const e = info.egress;
  if (e.kind === 'ok') {
    if (e.egressIP !== undefined) out.egressIP = e.egressIP;
    else if (e.interface !== undefined) out.interface = e.interface;
    return out;
  }
  // An invalid gateway has no active node, so the CEGP matches no node whatever its egress field; keep
  // the observed field so the object does not change meaning while the gateway is being fixed, and
  // never invent one (neither field would mean "the default route's interface" to Cilium).
  const o = observed?.spec?.egressGateway;
  if (isObject(o)) {
    if (typeof o.egressIP === 'string') out.egressIP = o.egressIP;
    else if (typeof o.interface === 'string') out.interface = o.interface;
  }
  return out;
}

export function renderCEGP(p: PolicyInfo, gw: GatewayView, observed: CiliumEgressGatewayPolicy | undefined): CiliumEgressGatewayPolicy {
  const egressGateway = gw.info.egress.kind === 'ok' && gw.egressGateway ? gw.egressGateway : egressGatewaySpec(gw.info, observed);
  const spec: NonNullable<CiliumEgressGatewayPolicy['spec']> = { selectors: p.selectors, destinationCIDRs: p.destinationCIDRs, egressGateway };
  // Only when non-empty, as the reference (R17).
  if (p.excludedCIDRs.length > 0) spec.excludedCIDRs = p.excludedCIDRs;
  return {
    apiVersion: CEGP_API_VERSION,
    kind: KIND_CEGP,
    metadata: { name: cegpName(p.name), labels: { ...OWNED_LABELS } },
    spec,
  };
}

const CEGP_API_VERSION = `${CILIUM_GROUP}/${CILIUM_VERSION}`;

/** Is this one of our CEGPs (OWNED_LABELS and a `d8.` name)? Only those are ever deleted. */
export function isOurCEGP(c: CiliumEgressGatewayPolicy): boolean {
  if (!nameOf(c).startsWith('d8.')) return false;
  const l = labelsOf(c);
  for (const [k, v] of Object.entries(OWNED_LABELS)) if (l[k] !== v) return false;
  return true;
}


export function policyRef(p: PolicyInfo): ObjectRef {
  const ref: ObjectRef = { apiVersion: API_VERSION, kind: KIND_POLICY, name: p.name };
  if (p.uid !== '') ref.uid = p.uid;
  return ref;
}

export function policyOutcome(
  p: PolicyInfo,
  gw: GatewayView | undefined,
  observed: CiliumEgressGatewayPolicy | undefined,
  nowIso: string,
): PolicyOutcome {
  const prevStatus: unknown = (p.policy as { status?: unknown }).status;
  let cegp: CiliumEgressGatewayPolicy | undefined;
  let status: 'True' | 'False' = 'False';
  let reason: string;
  let message: string;
  let orphan = false;
  const st: EgressGatewayPolicyStatus = {};
  if (p.generation !== undefined) st.observedGeneration = p.generation;

  if (p.gatewayName !== '' && !gw) {
    // Orphan: no CEGP (the pods' traffic is not redirected), a condition, an event and a metric.
    orphan = true;
    reason = 'GatewayNotFound';
    message = `EgressGateway ${p.gatewayName} not found`;
    st.activeNodeName = '';
  } else if (p.errors.length > 0 || !gw) {
    // Bad input loses nothing: keep whatever CEGP is there, untouched.
    cegp = observed;
    reason = 'InvalidSpec';
    message = p.errors.join('; ');
    st.activeNodeName = gw?.active ?? '';
  } else if (gw.info.egress.kind === 'unrenderable') {
    cegp = observed;
    reason = 'InvalidSpec';
    message = `EgressGateway ${gw.info.name}: ${gw.info.egress.message}`;
    st.activeNodeName = gw.active;
  } else {
    // Keep the observed object when it already is what we want: the write planning then sees
    // identity, and the plan retains no new object for it.
    cegp = renderCEGP(p, gw, observed);
    if (observed && cegpUpToDate(observed, cegp)) cegp = observed;
    st.activeNodeName = gw.active;
    if (gw.valid) {
      const e = gw.info.egress;
      if (e.kind === 'ok' && e.egressIP !== undefined) st.egressIP = e.egressIP;
      if (e.kind === 'ok' && e.interface !== undefined) st.interface = e.interface;
    }
    if (!gw.valid) {
      reason = 'NoActiveNode';
      message = `EgressGateway ${gw.info.name} is invalid: ${gw.message}`;
    } else if (gw.active === '') {
      reason = 'NoActiveNode';
      message = `EgressGateway ${gw.info.name} has no active node: ${gw.message}`;
    } else {
      status = 'True';
      reason = 'GatewayActive';
      message = `EgressGateway ${gw.info.name} is active on node ${gw.active}`;
    }
  }
  const prevCond = readyConditionOf(prevStatus);
  st.conditions = [readyCondition(prevCond, status, reason, message, p.generation, nowIso)];
  const same = statusEqual(prevStatus, st);

  const events: CoreEvent[] = [];
  if (prevCond?.reason !== reason && (reason === 'GatewayNotFound' || reason === 'InvalidSpec')) {
    events.push({ regarding: policyRef(p), type: 'Warning', reason, note: message });
  }
  return { cegp, status: same ? (prevStatus as EgressGatewayPolicyStatus) : st, events: same ? NO_EVENTS : events, orphan, changed: !same };
}
