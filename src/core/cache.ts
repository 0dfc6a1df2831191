// What a long-lived core remembers between passes (see `createCore`), so a pass costs what changed,
// not the size of the cluster.
//
// Everything here is keyed by object identity. That is sound because the objects the core is given
// are never mutated: informer caches replace an object on every change (a watch event carries a new
// object), the snapshot builder hands out its lists read-only, and the core never writes into its
// input. A list is compared element by element (`sameItems`), never by the identity of the array,
// so a caller that rebuilds its arrays every pass still gets the memoised results for the objects in
// them. The results the core hands back (Desired, its maps, verdicts) are likewise shared between
// passes and must be treated as read-only by callers.

import type { CiliumEgressGatewayPolicy, EgressGatewayInstance, EgressGatewayPolicy, EgressGatewayPolicyStatus, PodLike } from '../api/types.ts';
import type { NodeState, PodState } from './eligibility.ts';
import type { GatewayView, PolicyOutcome } from './render.ts';
import type { NodeLabelIndex } from './selectors.ts';
import type { InstanceFacts } from './instances.ts';
import type { GatewayInfo, PolicyInfo } from './validate.ts';
import type { CoreEvent, IneligibleReason, NodeVerdict, Write } from './types.ts';

/** The same objects in the same order (both absent counts as the same). */
export function sameItems(a: readonly unknown[] | undefined, b: readonly unknown[] | undefined): boolean {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Shared by every eligible verdict (nothing mutates a verdict with no reasons). */
export const NO_REASONS: IneligibleReason[] = Object.freeze([]) as unknown as IneligibleReason[];

/** Verdicts of one candidate list for one (mode, uplink requirement), shared by the gateways that have it. */
export interface VerdictGroup {
  states: NodeState[];
  candidates: NodeVerdict[];
  verdicts: Map<string, NodeVerdict>;
  readyNodes: number;
  /** Pass in which `states` was last checked against the node states. */
  checked: number;
}

export interface ListMemo<T, R> {
  items: readonly T[] | undefined;
  result: R;
}

export class CoreCache {
  pass = 0;
  // Per object: results that depend on that object only.
  readonly gatewayInfo = new WeakMap<object, GatewayInfo>();
  readonly duplicateCopy = new WeakMap<GatewayInfo, GatewayInfo>();
  readonly policyInfo = new WeakMap<object, PolicyInfo>();
  readonly instanceFacts = new WeakMap<EgressGatewayInstance, InstanceFacts>();
  readonly desiredInstance = new WeakMap<InstanceFacts, { info: GatewayInfo; node: string; name: string; instance: EgressGatewayInstance }>();
  /** observed instance → the desired one it was found up to date with. */
  readonly instanceUpToDate = new WeakMap<EgressGatewayInstance, EgressGatewayInstance>();
  /** Label writes of one Node/CiliumNode for one desired label set. */
  readonly labelPlan = new WeakMap<object, { want: ReadonlySet<string> | undefined; add: string[] | undefined; remove: string[] | undefined }>();
  /** Keys of a desired map in name order (desired maps are never mutated once returned). */
  readonly sortedKeys = new WeakMap<ReadonlyMap<string, unknown>, string[]>();

  // Node states.
  ciliumPods: ListMemo<PodLike, Map<string, PodState>> | undefined;
  agentPods: ListMemo<PodLike, Map<string, PodState>> | undefined;
  nodeStates: Map<string, NodeState> | undefined;
  /** Label index and active-for holders, valid while no node's labels change. */
  nodeIndex: { states: Map<string, NodeState>; index: NodeLabelIndex; labelled: Map<string, string[]> } | undefined;
  /** candidate list (from the index) → group key → verdicts. */
  verdictGroups = new WeakMap<readonly string[], Map<string, VerdictGroup>>();

  // Gateways and policies.
  gateways:
    | ListMemo<unknown, { infos: GatewayInfo[]; duplicateVIPs: Array<{ ip: string; gateways: string[] }>; byName: Map<string, GatewayInfo>; byUid: Map<string, GatewayInfo> }>
    | undefined;
  policies: ListMemo<EgressGatewayPolicy, PolicyInfo[]> | undefined;
  observedCEGPs: ListMemo<CiliumEgressGatewayPolicy, Map<string, CiliumEgressGatewayPolicy>> | undefined;
  views = new Map<string, GatewayView>();
  /** Policy outcomes of the last pass, in policy order, and what each was computed from. */
  policyState:
    | {
        policies: readonly PolicyInfo[];
        observedMap: ReadonlyMap<string, CiliumEgressGatewayPolicy>;
        observed: Array<CiliumEgressGatewayPolicy | undefined>;
        views: ReadonlyMap<string, GatewayView>;
        /** gateway name → indices of its policies. */
        byGateway: Map<string, number[]>;
        outcomes: PolicyOutcome[];
        /** Indices whose status is still to be written (their outcome depends on the time). */
        unsettled: number[];
        cegps: Map<string, CiliumEgressGatewayPolicy>;
        statuses: Map<string, EgressGatewayPolicyStatus>;
        events: Map<string, CoreEvent[]>;
        orphans: Array<{ policy: string; gateway: string }>;
      }
    | undefined;
  nodeLabels: Map<string, Set<string>> | undefined;
  nodeLabelInputs: { nodes: ReadonlyMap<string, NodeState>; memberLists: ReadonlyArray<readonly string[]>; active: ReadonlyMap<string, string[]> } | undefined;

  // planWrites.
  planCEGPs: ListMemo<CiliumEgressGatewayPolicy, { byName: Map<string, CiliumEgressGatewayPolicy>; names: string[] }> | undefined;
  planGateways: ListMemo<unknown, Map<string, { status?: unknown; metadata?: unknown }>> | undefined;
  planPolicies: ListMemo<unknown, Map<string, { status?: unknown }>> | undefined;
  planLabels = new Map<string, { objects: readonly unknown[]; want: unknown; adds: Write[]; removes: Write[] }>();
  planCEGPWrites: { observed: readonly unknown[]; want: unknown; applies: Write[]; deletes: Write[] } | undefined;
  planPolicyStatuses: { observed: readonly unknown[]; want: unknown; events: unknown; statuses: Write[]; ev: unknown[] } | undefined;
}
