// Instances (`SDNInternalEgressGatewayInstance`): who owns them, whether the agent confirmed them, and
// the object the controller wants for (gateway, node).

import type { EgressGatewayInstance, OwnerReference, SourceIP } from '../api/types.ts';
import {
  API_VERSION,
  ASSIGNED_AT_ANNOTATION,
  CLEARED_INSTANCE_ANNOTATIONS,
  HANDOVER_TO_ANNOTATION,
  INSTANCE_FINALIZER,
  INTERNAL_API_VERSION,
  KIND_GATEWAY,
  KIND_INSTANCE,
  NODE_NAME_LABEL,
  OWNED_LABELS,
  REFUSED_ANNOTATION,
} from '../api/names.ts';
import type { GatewayInfo } from './validate.ts';
import { annotationsOf, isBeingDeleted, isObject, jsonEqual, labelsOf, nameOf, parseTime } from './util.ts';

export interface InstanceFacts {
  name: string;
  instance: EgressGatewayInstance;
  /** Target node: spec.nodeName, else the node-name label. */
  node: string;
  deleting: boolean;
  hasFinalizer: boolean;
  /** The agent reports Ready=True (any generation). */
  ready: boolean;
  /** Ready=True for the current generation (when both generations are known). */
  readyForGeneration: boolean;
  /** When the current spec was assigned (annotation, else creationTimestamp); NaN when unknown. */
  assignedAt: number;
  /**
   * The node the VIP is being handed over to from this instance's node (HANDOVER_TO_ANNOTATION), '' when
   * none: the instance of an old owner, not a target, so no handover clock runs for it.
   */
  handoverTo: string;
}

export function instanceFacts(inst: EgressGatewayInstance): InstanceFacts {
  const md = (isObject(inst.metadata) ? inst.metadata : {}) as EgressGatewayInstance['metadata'];
  const spec: unknown = (inst as { spec?: unknown }).spec;
  let node = isObject(spec) && typeof spec['nodeName'] === 'string' ? spec['nodeName'] : '';
  if (node === '') node = labelsOf(inst)[NODE_NAME_LABEL] ?? '';
  const status: unknown = (inst as { status?: unknown }).status;
  let ready = false;
  let condGen: number | undefined;
  let statusGen: number | undefined;
  if (isObject(status)) {
    if (typeof status['observedGeneration'] === 'number') statusGen = status['observedGeneration'];
    const conds = status['conditions'];
    if (Array.isArray(conds)) {
      for (const c of conds) {
        if (isObject(c) && c['type'] === 'Ready') {
          ready = c['status'] === 'True';
          if (typeof c['observedGeneration'] === 'number') condGen = c['observedGeneration'];
          break;
        }
      }
    }
  }
  // An agent that does not report a generation is trusted (reference agents set status.observedGeneration;
  // ours sets both); when it does report one, it must be the current generation.
  const seen = statusGen ?? condGen;
  const gen = typeof md.generation === 'number' ? md.generation : undefined;
  let assignedAt = parseTime(annotationsOf(inst)[ASSIGNED_AT_ANNOTATION]);
  if (!Number.isFinite(assignedAt)) assignedAt = parseTime(md.creationTimestamp);
  const handoverTo = annotationsOf(inst)[HANDOVER_TO_ANNOTATION];
  return {
    name: nameOf(inst),
    instance: inst,
    node,
    deleting: isBeingDeleted(inst),
    hasFinalizer: Array.isArray(md.finalizers) && md.finalizers.length > 0,
    ready,
    readyForGeneration: ready && (gen === undefined || seen === undefined || seen === gen),
    assignedAt,
    handoverTo: typeof handoverTo === 'string' ? handoverTo : '',
  };
}

/** The gateway this instance belongs to: the first EgressGateway ownerReference (by uid; by name if uid-less). */
export function ownerRef(inst: EgressGatewayInstance): OwnerReference | undefined {
  const md = inst.metadata;
  if (!isObject(md) || !Array.isArray(md.ownerReferences)) return undefined;
  return md.ownerReferences.find((r) => isObject(r) && r.kind === KIND_GATEWAY);
}

/**
 * The gateway (by name) an instance belongs to: the gateway with the reference's uid, else the gateway
 * the reference names when the reference has no uid or that gateway has none (uid-less fixtures).
 * `gatewayByUid`: the gateway holding a uid; `uidOf`: a gateway's uid ('' none), undefined when no such gateway.
 */
export function ownerOf(inst: EgressGatewayInstance, gatewayByUid: (uid: string) => string | undefined, uidOf: (name: string) => string | undefined): string | undefined {
  const ref = ownerRef(inst);
  if (!ref) return undefined;
  const byUid = typeof ref.uid === 'string' && ref.uid !== '' ? gatewayByUid(ref.uid) : undefined;
  if (byUid !== undefined) return byUid;
  const uid = typeof ref.name === 'string' ? uidOf(ref.name) : undefined;
  return uid !== undefined && (!ref.uid || uid === '') ? ref.name : undefined;
}

/** The gateway whose instance name this could be (`<gateway>-<10 hex>`, see instanceName), or undefined. */
export function gatewayOfInstanceName(name: string): string | undefined {
  return /^.+-[0-9a-f]{10}$/.test(name) ? name.slice(0, -11) : undefined;
}

function sourceIPEqual(a: SourceIP | undefined, b: SourceIP | undefined): boolean {
  if (!a || !b) return a === b;
  if (a.mode !== b.mode) return false;
  const va = a.virtualIPAddress;
  const vb = b.virtualIPAddress;
  if (!va || !vb) return va === vb;
  // The internal CRD may not default `interfaces`: absent and [] are the same.
  return va.ip === vb.ip && jsonEqual(va.interfaces ?? [], vb.interfaces ?? []);
}

/** The instance targets `node` with the gateway's current sourceIP. */
export function specMatches(inst: EgressGatewayInstance, node: string, g: GatewayInfo): boolean {
  const spec: unknown = (inst as { spec?: unknown }).spec;
  if (!isObject(spec)) return false;
  const s = spec as { nodeName?: unknown; sourceIP?: SourceIP };
  return s.nodeName === node && sourceIPEqual(isObject(s.sourceIP) ? s.sourceIP : undefined, g.sourceIP);
}

/** Confirmed: the agent reports Ready=True for the current generation of the spec we want. */
export function isConfirmed(f: InstanceFacts, g: GatewayInfo): boolean {
  return !f.deleting && f.readyForGeneration && specMatches(f.instance, f.node, g);
}

/**
 * The assigned-at time an instance for (gateway, node) keeps from the observed one: its annotation,
 * while the spec stays the same (a spec change, such as a new VIP or interfaces, restarts the clock,
 * since the agent must confirm the new spec). Undefined → it is assigned now.
 */
export function keptAssignedAt(g: GatewayInfo, node: string, observed: InstanceFacts | undefined): string | undefined {
  if (!observed || !specMatches(observed.instance, node, g)) return undefined;
  const a = annotationsOf(observed.instance)[ASSIGNED_AT_ANNOTATION];
  return typeof a === 'string' && a !== '' ? a : undefined;
}

/** What a desired instance carries besides its spec and assigned-at. */
export interface InstanceMarks {
  /** The refusal memory (REFUSED_ANNOTATION). */
  refused?: string;
  /** The node the VIP is being handed over to from this one (HANDOVER_TO_ANNOTATION). */
  handoverTo?: string;
}

/** The instance we want for (gateway, node), named `name`, its current spec assigned at `assignedAt`. */
export function desiredInstance(g: GatewayInfo, node: string, name: string, assignedAt: string, marks: InstanceMarks = {}): EgressGatewayInstance {
  const ref: OwnerReference = { apiVersion: API_VERSION, kind: KIND_GATEWAY, name: g.name, uid: g.uid, controller: true, blockOwnerDeletion: true };
  const sip = g.sourceIP;
  return {
    apiVersion: INTERNAL_API_VERSION,
    kind: KIND_INSTANCE,
    metadata: {
      name,
      labels: { ...OWNED_LABELS, [NODE_NAME_LABEL]: node },
      annotations: {
        [ASSIGNED_AT_ANNOTATION]: assignedAt,
        ...(marks.refused !== undefined ? { [REFUSED_ANNOTATION]: marks.refused } : {}),
        ...(marks.handoverTo !== undefined ? { [HANDOVER_TO_ANNOTATION]: marks.handoverTo } : {}),
      },
      finalizers: [INSTANCE_FINALIZER],
      ownerReferences: [ref],
    },
    spec: {
      nodeName: node,
      sourceIP: sip?.virtualIPAddress
        ? { mode: sip.mode, virtualIPAddress: { ip: sip.virtualIPAddress.ip, interfaces: [...(sip.virtualIPAddress.interfaces ?? [])] } }
        : { mode: sip?.mode ?? '' },
    },
  };
}

/**
 * The observed instance already has everything the desired one asks for (extra labels etc. are fine,
 * except the annotations the controller clears: CLEARED_INSTANCE_ANNOTATIONS must be exactly as desired).
 */
export function instanceUpToDate(observed: EgressGatewayInstance, desired: EgressGatewayInstance): boolean {
  const om = observed.metadata;
  const dm = desired.metadata;
  if (!isObject(om)) return false;
  const ol = labelsOf(observed);
  for (const [k, v] of Object.entries(dm.labels ?? {})) if (ol[k] !== v) return false;
  const oa = annotationsOf(observed);
  for (const [k, v] of Object.entries(dm.annotations ?? {})) if (oa[k] !== v) return false;
  for (const k of CLEARED_INSTANCE_ANNOTATIONS) if (oa[k] !== undefined && dm.annotations?.[k] === undefined) return false;
  const fin = Array.isArray(om.finalizers) ? om.finalizers : [];
  for (const f of dm.finalizers ?? []) if (!fin.includes(f)) return false;
  const want = dm.ownerReferences?.[0];
  const have = ownerRef(observed);
  if (want && (!have || have.uid !== want.uid || have.name !== want.name || have.controller !== true)) return false;
  const ds = desired.spec;
  const os: unknown = (observed as { spec?: unknown }).spec;
  if (!isObject(os) || !ds) return false;
  return os['nodeName'] === ds.nodeName && sourceIPEqual(isObject(os['sourceIP']) ? (os['sourceIP'] as unknown as SourceIP) : undefined, ds.sourceIP);
}

/**
 * The annotations an instance update writes (controller/apply.ts): everyone else's kept, ours as
 * desired, and those the controller clears (CLEARED_INSTANCE_ANNOTATIONS) dropped when not desired.
 */
export function instanceAnnotations(current: Readonly<Record<string, string>> | undefined, desired: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const out = { ...(current ?? {}), ...(desired ?? {}) };
  for (const k of CLEARED_INSTANCE_ANNOTATIONS) if (desired?.[k] === undefined) delete out[k];
  return out;
}
