// What the controller keeps of each watched object (the informers' `transform`): the fields the core
// and the shell read, nothing else. Real objects carry managedFields, images lists, container specs,
// foreign annotations (last-applied-configuration…) that the controller never looks at; at 5,000
// nodes and 10,000 pods that is most of its memory.
//
// Each function returns a new object and never mutates its input. Kept, for every kind: metadata name,
// namespace, uid, generation, resourceVersion (the cache and optimistic concurrency need it), labels,
// our annotations only, deletionTimestamp, finalizers, ownerReferences, creationTimestamp.

import type {
  CiliumEgressGatewayPolicy,
  CiliumNodeLike,
  EgressGateway,
  EgressGatewayInstance,
  EgressGatewayPolicy,
  LeaseLike,
  NodeLike,
  PodLike,
} from '../api/types.ts';
import { ANNOTATION_PREFIX } from '../api/names.ts';
import { Interner } from './intern.ts';

/** One table for every informer of the process: the same strings recur across kinds (node names…). */
const shared = new Interner();

type Meta = Record<string, unknown>;
const META_FIELDS = ['name', 'namespace', 'uid', 'generation', 'resourceVersion', 'labels', 'deletionTimestamp', 'finalizers', 'ownerReferences', 'creationTimestamp'] as const;
/** Objects we only read and label (Nodes, CiliumNodes, Leases): no uid, owners or timestamps. */
const PLAIN_META_FIELDS = ['name', 'namespace', 'resourceVersion', 'labels', 'deletionTimestamp'] as const;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `allAnnotations`: keep foreign annotations too (an object we write back whole, see trimInstance). */
export function trimMetadata(md: unknown, allAnnotations = false, fields: readonly string[] = META_FIELDS): Meta {
  const out: Meta = {};
  if (!isObj(md)) return out;
  for (const k of fields) if (md[k] !== undefined) out[k] = md[k];
  // Label keys and values recur across objects (pools, roles, our own labels): shared.
  if (out['labels'] !== undefined) out['labels'] = shared.strings(out['labels']);
  if (out['namespace'] !== undefined) out['namespace'] = shared.string(out['namespace']);
  const a = md['annotations'];
  if (isObj(a)) {
    if (allAnnotations) out['annotations'] = a;
    else {
      let ours: Record<string, unknown> | undefined;
      for (const k in a) {
        if (!k.startsWith(ANNOTATION_PREFIX)) continue;
        ours ??= {};
        ours[k] = a[k];
      }
      if (ours) out['annotations'] = ours;
    }
  }
  return out;
}

// The common statuses, shared by every object that has them (cached objects are never mutated).
const READY_TRUE = Object.freeze({ conditions: Object.freeze([Object.freeze({ type: 'Ready', status: 'True' })]) }) as unknown as { conditions: unknown[] };
const NO_READY = Object.freeze({ conditions: Object.freeze([]) }) as unknown as { conditions: unknown[] };

/** The Ready condition only (type and status are what readiness reads); none when there is none. */
function readyOnly(status: unknown): { conditions: unknown[] } | undefined {
  if (!isObj(status) || !Array.isArray(status['conditions'])) return undefined;
  for (const c of status['conditions'] as unknown[]) {
    if (isObj(c) && c['type'] === 'Ready') return c['status'] === 'True' ? READY_TRUE : { conditions: [{ type: 'Ready', status: c['status'] }] };
  }
  return NO_READY;
}

/** The node's IP addresses (InternalIP, ExternalIP): a VIP must not be one of them. */
function ipAddresses(status: unknown): Array<{ type: string; address: string }> | undefined {
  if (!isObj(status) || !Array.isArray(status['addresses'])) return undefined;
  const out: Array<{ type: string; address: string }> = [];
  for (const a of status['addresses'] as unknown[]) {
    if (isObj(a) && (a['type'] === 'InternalIP' || a['type'] === 'ExternalIP') && typeof a['address'] === 'string') out.push({ type: a['type'], address: a['address'] });
  }
  return out.length > 0 ? out : undefined;
}

export function trimNode(n: NodeLike): NodeLike {
  const o = n as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = { metadata: trimMetadata(o['metadata'], false, PLAIN_META_FIELDS) };
  const spec = o['spec'];
  if (isObj(spec) && spec['unschedulable'] !== undefined) out['spec'] = { unschedulable: spec['unschedulable'] };
  const status = readyOnly(o['status']);
  const addresses = ipAddresses(o['status']);
  if (addresses) out['status'] = { ...(status ?? {}), addresses };
  else if (status) out['status'] = status;
  return out as unknown as NodeLike;
}

/**
 * A Node for the Linux data plane: as trimNode, plus its first IPv4 InternalIP (the tunnel endpoint the
 * dataplane objects carry).
 */
export function trimNodeWithAddress(n: NodeLike): NodeLike {
  const out = trimNode(n) as { status?: Record<string, unknown> };
  const addrs = (n as { status?: { addresses?: unknown } }).status?.addresses;
  const internal = Array.isArray(addrs)
    ? addrs.find((a): a is { type: string; address: string } => isObj(a) && a['type'] === 'InternalIP' && typeof a['address'] === 'string' && a['address'].includes('.'))
    : undefined;
  if (internal) out.status = { ...(out.status ?? {}), addresses: [{ type: 'InternalIP', address: internal.address }] };
  return out as NodeLike;
}

/** CiliumNode: labels are all we read and write. */
export function trimCiliumNode(n: CiliumNodeLike): CiliumNodeLike {
  return { metadata: trimMetadata((n as { metadata?: unknown }).metadata, false, PLAIN_META_FIELDS) } as unknown as CiliumNodeLike;
}

// A pod is read for three things only: its node, its Ready condition and whether it is terminating
// (src/core/eligibility.ts); the cache needs name, namespace and resourceVersion. Pods are the most
// numerous objects a controller may hold, so their labels, uid, owners and timestamps are dropped.
const POD_META_FIELDS = ['name', 'namespace', 'resourceVersion', 'deletionTimestamp'] as const;

export function trimPod(p: PodLike): PodLike {
  const o = p as unknown as Record<string, unknown>;
  const md = o['metadata'];
  const meta: Meta = {};
  if (isObj(md)) for (const k of POD_META_FIELDS) if (md[k] !== undefined) meta[k] = md[k];
  if (meta['namespace'] !== undefined) meta['namespace'] = shared.string(meta['namespace']);
  const out: Record<string, unknown> = { metadata: meta };
  const spec = o['spec'];
  if (isObj(spec) && spec['nodeName'] !== undefined) out['spec'] = { nodeName: shared.string(spec['nodeName']) };
  const status = readyOnly(o['status']);
  if (status) out['status'] = status;
  return out as unknown as PodLike;
}

/** Lease: its spec (holder, renew time, duration) and our uplinks annotation. */
export function trimLease(l: LeaseLike): LeaseLike {
  const o = l as unknown as Record<string, unknown>;
  const metadata = trimMetadata(o['metadata'], false, PLAIN_META_FIELDS);
  // 5,000 agents renew every 500 ms: each renewal is a new cached object, so keep it small. The
  // uplinks report is the same text renewal after renewal: shared.
  const a = metadata['annotations'];
  if (isObj(a)) metadata['annotations'] = shared.strings(a);
  const spec = o['spec'];
  if (!isObj(spec)) return { metadata } as unknown as LeaseLike;
  const s: Record<string, unknown> = {};
  for (const k of LEASE_SPEC_FIELDS) if (spec[k] !== undefined) s[k] = k === 'holderIdentity' ? shared.string(spec[k]) : spec[k];
  return { metadata, spec: s } as unknown as LeaseLike;
}

/** What the heartbeat tracker reads (src/controller/snapshot.ts). */
const LEASE_SPEC_FIELDS = ['holderIdentity', 'leaseDurationSeconds', 'renewTime'] as const;

/**
 * Our own kinds: spec and status whole (statuses are compared field by field), metadata trimmed.
 * `share`: policies and CEGPs (10,000 each) repeat the same selectors, CIDR lists and egress
 * blocks; their specs are built from shared parts, and their statuses (and gateways') share their
 * texts (see intern.ts).
 */
function trimOurs<T>(obj: T, allAnnotations = false, share = false): T {
  const o = obj as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  if (o['apiVersion'] !== undefined) out['apiVersion'] = o['apiVersion'];
  if (o['kind'] !== undefined) out['kind'] = o['kind'];
  out['metadata'] = trimMetadata(o['metadata'], allAnnotations);
  if (o['spec'] !== undefined) out['spec'] = share ? shared.value(o['spec']) : o['spec'];
  if (o['status'] !== undefined) out['status'] = share ? shared.stringsDeep(o['status']) : o['status'];
  return out as T;
}

export const trimGateway = (g: EgressGateway): EgressGateway => trimOurs(g, false, true);
export const trimPolicy = (p: EgressGatewayPolicy): EgressGatewayPolicy => trimOurs(p, false, true);
export const trimCEGP = (c: CiliumEgressGatewayPolicy): CiliumEgressGatewayPolicy => trimOurs(c, false, true);
/**
 * Instances keep every annotation: the shell updates an instance with a PUT of the cached object
 * (optimistic concurrency), which would otherwise drop annotations someone else set.
 */
export const trimInstance = (i: EgressGatewayInstance): EgressGatewayInstance => trimOurs(i, true);
