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

/** What a policy is: its CEGP (rendered, kept or none) and what its Ready condition says. */
interface PolicyState {
  cegp: CiliumEgressGatewayPolicy | undefined;
  ready: boolean;
  reason: string;
  message: string;
  orphan: boolean;
  /** The status fields besides the condition. */
  fields: Pick<EgressGatewayPolicyStatus, 'activeNodeName' | 'egressIP' | 'interface'>;
}

function policyState(p: PolicyInfo, gw: GatewayView | undefined, observed: CiliumEgressGatewayPolicy | undefined): PolicyState {
  if (p.gatewayName !== '' && !gw) {
    // Orphan: no CEGP (the pods' traffic is not redirected), a condition, an event and a metric.
    return { cegp: undefined, ready: false, reason: 'GatewayNotFound', message: `EgressGateway ${p.gatewayName} not found`, orphan: true, fields: { activeNodeName: '' } };
  }
  if (p.errors.length > 0 || !gw) {
    // Bad input loses nothing: keep whatever CEGP is there, untouched.
    return { cegp: observed, ready: false, reason: 'InvalidSpec', message: p.errors.join('; '), orphan: false, fields: { activeNodeName: gw?.active ?? '' } };
  }
  const g = gw.info;
  if (g.egress.kind === 'unrenderable') {
    return { cegp: observed, ready: false, reason: 'InvalidSpec', message: `EgressGateway ${g.name}: ${g.egress.message}`, orphan: false, fields: { activeNodeName: gw.active } };
  }
  // Keep the observed object when it already is what we want: the write planning then sees
  // identity, and the plan retains no new object for it.
  const rendered = renderCEGP(p, gw, observed);
  const cegp = observed && cegpUpToDate(observed, rendered) ? observed : rendered;
  const fields: PolicyState['fields'] = { activeNodeName: gw.active };
  if (gw.valid && g.egress.kind === 'ok') {
    if (g.egress.egressIP !== undefined) fields.egressIP = g.egress.egressIP;
    if (g.egress.interface !== undefined) fields.interface = g.egress.interface;
  }
  const s = { cegp, orphan: false, fields };
  if (!gw.valid) return { ...s, ready: false, reason: 'NoActiveNode', message: `EgressGateway ${g.name} is invalid: ${gw.message}` };
  if (gw.active === '') return { ...s, ready: false, reason: 'NoActiveNode', message: `EgressGateway ${g.name} has no active node: ${gw.message}` };
  return { ...s, ready: true, reason: 'GatewayActive', message: `EgressGateway ${g.name} is active on node ${gw.active}` };
}

/** A policy's CEGP, status and events, given its gateway's view (undefined: no gateway of that name). */
export function policyOutcome(p: PolicyInfo, gw: GatewayView | undefined, observed: CiliumEgressGatewayPolicy | undefined, nowIso: string): PolicyOutcome {
  const prevStatus: unknown = (p.policy as { status?: unknown }).status;
  const ps = policyState(p, gw, observed);
  const st: EgressGatewayPolicyStatus = {};
  if (p.generation !== undefined) st.observedGeneration = p.generation;
  Object.assign(st, ps.fields);
  const prevCond = readyConditionOf(prevStatus);
  st.conditions = [readyCondition(prevCond, ps.ready ? 'True' : 'False', ps.reason, ps.message, p.generation, nowIso)];
  const same = statusEqual(prevStatus, st);
  const events: CoreEvent[] = [];
  if (!same && prevCond?.reason !== ps.reason && (ps.reason === 'GatewayNotFound' || ps.reason === 'InvalidSpec')) {
    events.push({ regarding: policyRef(p), type: 'Warning', reason: ps.reason, note: ps.message });
  }
  return { cegp: ps.cegp, status: same ? (prevStatus as EgressGatewayPolicyStatus) : st, events: events.length > 0 ? events : NO_EVENTS, orphan: ps.orphan, changed: !same };
}
