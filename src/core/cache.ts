// What a long-lived core remembers between passes (see `createCore`), so a pass costs what changed,
// not the size of the cluster.
//
// Everything here is keyed by object identity. That is sound because the objects the core is given
// are never mutated: informer caches replace an object on every change (a watch event carries a new
// object), the snapshot builder hands out its lists read-only, and the core never writes into its
// input. A list is compared element by element (`sameItems`), never by the identity of the array,
// so a caller that rebuilds its arrays every pass still gets the memoised results for the objects in
// them. The results the core hands back (Desired, its maps, verdicts) are likewise shared between
// passes and must be treated as read-only by callers; some of its maps (policy CEGPs, statuses,
// events) and the node states are updated in place by the next pass, with the changes recorded
// (`nodeChanges`, `policyChanges`), so a long-lived core's Desired is valid until its next pass.
// Memos holding 10,000 entries are name-keyed maps or fields, not WeakMaps: a major GC processes
// every WeakMap entry (an ephemeron) inside its pause.

import type { CiliumEgressGatewayPolicy, EgressGatewayInstance, EgressGatewayPolicy, EgressGatewayPolicyStatus, PodLike } from '../api/types.ts';
import type { NodeState, PodState } from './eligibility.ts';
import type { GatewayView, PolicyOutcome } from './render.ts';
import type { NodeLabelIndex } from './selectors.ts';
import type { InstanceFacts } from './instances.ts';
import type { PlanMemo } from './election.ts';
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
  /** Policy name → the analysis of its current object (PolicyInfo.policy). */
  readonly policyInfo = new Map<string, PolicyInfo>();
  readonly instanceFacts = new WeakMap<EgressGatewayInstance, InstanceFacts>();
  readonly desiredInstance = new WeakMap<InstanceFacts, { info: GatewayInfo; node: string; name: string; instance: EgressGatewayInstance }>();
  /** observed instance → the desired one it was found up to date with. */
  readonly instanceUpToDate = new WeakMap<EgressGatewayInstance, EgressGatewayInstance>();
  /** Label writes of one Node/CiliumNode for one desired label set. */
  readonly labelPlans: Record<'Node' | 'CiliumNode', Map<string, { object: unknown; want: ReadonlySet<string> | undefined; add: string[] | undefined; remove: string[] | undefined }>> = {
    Node: new Map(),
    CiliumNode: new Map(),
  };

  // Node states.
  ciliumPods: ListMemo<PodLike, Map<string, PodState>> | undefined;
  agentPods: ListMemo<PodLike, Map<string, PodState>> | undefined;
  /** Kept from pass to pass and updated in place (see buildNodeStates). */
  nodeStates: Map<string, NodeState> | undefined;
  /** Moves whenever an entry of `nodeStates` changes or the map is rebuilt. */
  nodesVersion = 0;
  /** This pass's changes to `nodeStates` (old and new state), or 'all' when it was rebuilt. */
  nodeChanges: Array<{ old: NodeState; now: NodeState }> | 'all' = 'all';
  /** Label index and active-for holders, valid while no node's labels change. */
  nodeIndex: { states: Map<string, NodeState>; version: number; index: NodeLabelIndex; labelled: Map<string, string[]> } | undefined;
  /** candidate list (from the index) → group key → verdicts. */
  verdictGroups = new WeakMap<readonly string[], Map<string, VerdictGroup>>();
  /** Gateway → the key of its verdict group (mode and uplink requirement). */
  readonly groupKeys = new Map<string, { info: GatewayInfo; key: string }>();
  /** Gateway → its active-for label key. */
  readonly activeLabels = new Map<string, string>();
  /** gateway name → its last plan and what it was computed from (see runElection). */
  readonly plans = new Map<string, PlanMemo>();

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
  /** This pass's policy list against the last one: the names whose object changed, or 'all'. */
  policyObjectChanges: { from: readonly unknown[] | undefined; to: readonly unknown[] | undefined; names: ReadonlySet<string> | 'all' } | undefined;
  /** Moves whenever policyState's maps (updated in place) change. */
  policyVersion = 0;
  /** What the last pass changed in them: CEGP names and policy names (statuses, events), or 'all'. */
  policyChanges: { version: number; cegps: ReadonlySet<string> | 'all'; policies: ReadonlySet<string> | 'all' } | undefined;
  nodeLabels: Map<string, Set<string>> | undefined;
  /** The union of the candidate lists of valid gateways, for those lists. */
  memberUniverse: { lists: ReadonlyArray<readonly string[]>; names: Set<string> } | undefined;
  nodeLabelInputs: { version: number; memberLists: ReadonlyArray<readonly string[]>; active: ReadonlyMap<string, string[]> } | undefined;

  // planWrites.
  planCEGPs: ListMemo<CiliumEgressGatewayPolicy, { byName: Map<string, CiliumEgressGatewayPolicy>; names: string[] }> | undefined;
  planGateways: ListMemo<unknown, Map<string, { status?: unknown; metadata?: unknown }>> | undefined;
  /** Per target: the pending label writes by node name, for one object list and one desired map. */
  planLabels = new Map<string, { objects: readonly { metadata?: unknown }[]; want: unknown; ordered: boolean; adds: Map<string, Write>; removes: Map<string, Write> }>();
  /** The last node-label map against the one before: the names whose label set may differ, or 'all'. */
  nodeLabelChanges: { from: unknown; to: unknown; names: ReadonlySet<string> | 'all' } | undefined;
  /** The pending CEGP writes by name, for one observed set and the desired map at one policy version. */
  planCEGPWrites: { observed: unknown; want: unknown; version: number; applies: Map<string, Write>; deletes: Map<string, Write> } | undefined;
  /** The pending policy status writes (and their events) by policy name, likewise. */
  planPolicyStatuses: { observed: unknown; want: unknown; events: unknown; version: number; writes: Map<string, { write: Write; events: readonly CoreEvent[] }> } | undefined;
}
