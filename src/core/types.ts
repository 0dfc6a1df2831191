// The contract of the pure core: what it is given (Snapshot), what it decides (Desired), and the
// writes that turn the observed cluster into the desired one (Write). `reconcile` takes a whole
// Snapshot (the CLI, tests); the controller keeps the per-gateway plans up to date from its informers'
// events instead (src/controller/planner) and executes the writes in the order given.
// Nothing here performs I/O or reads a clock: time is `Snapshot.now`, on the controller's own clock.

import type {
  CiliumEgressGatewayPolicy,
  CiliumNodeLike,
  EgressGateway,
  EgressGatewayDataplane,
  EgressGatewayInstance,
  EgressGatewayPolicy,
  EgressGatewayPolicyStatus,
  EgressGatewayStatus,
  NodeLike,
  PodLike,
} from '../api/types.ts';
import type { DataplaneMode } from '../api/names.ts';

/** Operational state of one interface on a node, published by the agent with its heartbeat. */
export interface UplinkState {
  up: boolean;
  ipv4?: string[];
  ipv6?: string[];
}

/**
 * A node agent's heartbeat as the controller saw it. `observedAt` is when the controller last saw the
 * Lease's renewTime change, on the controller's clock (client-go leader-election semantics), so clock
 * skew between nodes does not matter. The heartbeat is live while `now - observedAt < durationMs`.
 */
export interface Heartbeat {
  node: string;
  observedAt: number;
  durationMs: number;
  /** Interface name → state; absent when the agent did not publish it. */
  uplinks?: Record<string, UplinkState>;
}

export interface Snapshot {
  /** Controller clock, milliseconds since the epoch. */
  now: number;
  nodes: readonly NodeLike[];
  ciliumNodes: readonly CiliumNodeLike[];
  /** cilium-agent pods (already filtered by the configured namespace and selector). */
  ciliumAgentPods: readonly PodLike[];
  /** egressgw agent pods (already filtered by the configured namespace and selector). */
  agentPods: readonly PodLike[];
  heartbeats: readonly Heartbeat[];
  gateways: readonly EgressGateway[];
  policies: readonly EgressGatewayPolicy[];
  instances: readonly EgressGatewayInstance[];
  /** CEGPs carrying our labels (the shell watches only those). */
  cegps: readonly CiliumEgressGatewayPolicy[];
  /** `--dataplane linux`: the dataplane objects (one per gateway name). */
  dataplanes?: readonly EgressGatewayDataplane[];
}

export interface CoreOptions {
  /** VIP mode: how long a new instance may stay unconfirmed before the next eligible node is tried. */
  handoverTimeoutMs: number;
  /** Require a Ready cilium-agent pod on a node (the reference does). */
  requireCiliumAgent: boolean;
  /** Where the shell looks for cilium-agent pods ("namespace kube-system, selector k8s-app=cilium"), for messages. */
  ciliumAgentSource?: string;
  /**
   * cilium (default): render CiliumEgressGatewayPolicies. linux: render one dataplane object per gateway
   * instead (src/core/dataplane.ts, docs/dataplane.md) and write no CEGPs.
   */
  dataplane?: DataplaneMode;
}

export const DEFAULT_CORE_OPTIONS: CoreOptions = Object.freeze({
  handoverTimeoutMs: 5000,
  requireCiliumAgent: true,
});

/** Why a node cannot serve a gateway. Several may hold at once; all are reported. */
export type IneligibleReason =
  | 'NodeNotReady'
  | 'Cordoned'
  /** No cilium-agent pod on any node matches the controller's namespace and selector. */
  | 'CiliumAgentNotFound'
  | 'CiliumAgentNotReady'
  | 'AgentNotReady'
  | 'AgentMissing'
  | 'HeartbeatExpired'
  | 'UplinkDown'
  | 'HandoverTimedOut'
  /** VIP mode: the node refused (or did not confirm) the VIP earlier in this handover sequence; tried again after a backoff. */
  | 'RefusedVIP';

export interface NodeVerdict {
  node: string;
  eligible: boolean;
  reasons: IneligibleReason[];
}

export type GatewayPhase =
  /** An active node carries the label and (VIP mode) announces the VIP. */
  | 'Active'
  /** VIP mode: a new node was chosen and its instance is not confirmed yet. */
  | 'HandingOver'
  | 'NoEligibleNode'
  /** Spec the schema could not reject (old objects, missing sourceIP, duplicate VIP…). */
  | 'Invalid';

export interface GatewayDecision {
  name: string;
  mode: string;
  /** Every node matching the selector, with its verdict, in name order. */
  candidates: NodeVerdict[];
  readyNodes: number;
  totalNodes: number;
  /** The active node as observed before this pass (label, else live instance). */
  observedActive: string;
  /** The node chosen by the election (sticky); '' when none. */
  target: string;
  /** The node that carries `active-for-<gw>` after this pass; '' when none. */
  active: string;
  phase: GatewayPhase;
  /** Machine-readable reason for the Ready condition. */
  reason: string;
  message: string;
  /** Node named by the gateway's move-to annotation when it is being honoured; '' or absent otherwise. */
  moveTarget?: string;
  /** VIP mode: the active node's instance is Ready for its current generation and spec. */
  confirmed?: boolean;
}

export interface Desired {
  gateways: Map<string, GatewayDecision>;
  /** For every node that must carry any of our labels: the full set of our label keys it must carry. */
  nodeLabels: Map<string, Set<string>>;
  instances: Map<string, EgressGatewayInstance>;
  cegps: Map<string, CiliumEgressGatewayPolicy>;
  /** `--dataplane linux`: the dataplane object of every gateway, by gateway name. */
  dataplanes?: Map<string, EgressGatewayDataplane>;
  gatewayStatuses: Map<string, EgressGatewayStatus>;
  policyStatuses: Map<string, EgressGatewayPolicyStatus>;
  metrics: CoreMetrics;
  /**
   * Events that record a transition of a gateway's status. The writes carry them only together with
   * that gateway's status write, so a resync or a new leader (status already written) never re-emits them.
   */
  gatewayEvents?: Map<string, CoreEvent[]>;
  /** The same for policies. */
  policyEvents?: Map<string, CoreEvent[]>;
  /**
   * Gateways whose move-to annotation is to be cleared (move done or rejected), with the event reporting
   * the outcome. Emitted only while the annotation is still present.
   */
  moveRequests?: Map<string, CoreEvent>;
}

/** An event the core wants emitted (the `event` Write without its kind). */
export interface CoreEvent {
  regarding: ObjectRef;
  type: 'Normal' | 'Warning';
  reason: EventReason;
  note: string;
}

export interface CoreMetrics {
  gateways: Array<{ name: string; activeNode: string; readyNodes: number; totalNodes: number; ready: boolean }>;
  orphanPolicies: Array<{ policy: string; gateway: string }>;
  duplicateVIPs: Array<{ ip: string; gateways: string[] }>;
  /** Failovers decided in this pass (the active node changed away from a failed node). */
  failovers: Array<{ gateway: string; from: string; to: string; reason: string }>;
}

export type EventReason =
  | 'Elected'
  | 'FailedOver'
  | 'NoEligibleNode'
  | 'CiliumAgentNotFound'
  | 'VIPAnnounced'
  | 'GatewayNotFound'
  | 'DuplicateVIP'
  | 'InvalidSpec'
  | 'VIPRefused'
  | 'Moved'
  | 'MoveRejected';

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  uid?: string;
}

/**
 * One write. The shell executes them in the order `reconcile` returns (see assembleWrites): creations and label additions
 * first, removals and deletions last (add-missing, then remove-stale), so a handover is make-before-break.
 */
export type Write =
  | { kind: 'addLabels'; target: 'Node' | 'CiliumNode'; name: string; keys: string[] }
  | { kind: 'removeLabels'; target: 'Node' | 'CiliumNode'; name: string; keys: string[] }
  | { kind: 'createInstance'; object: EgressGatewayInstance }
  /** Spec or labels drifted from the desired ones (e.g. VIP or interfaces changed). */
  | { kind: 'updateInstance'; object: EgressGatewayInstance }
  | { kind: 'deleteInstance'; name: string; uid?: string }
  /** The instance is being deleted and its node's agent cannot remove the finalizer (node gone/dead). */
  | { kind: 'releaseFinalizer'; name: string }
  /** `--dataplane linux`: create or update (server-side apply) a gateway's dataplane object. */
  | { kind: 'applyDataplane'; object: EgressGatewayDataplane }
  | { kind: 'deleteDataplane'; name: string }
  /** Create or update (server-side apply) a CEGP. */
  | { kind: 'applyCEGP'; object: CiliumEgressGatewayPolicy }
  | { kind: 'deleteCEGP'; name: string }
  | { kind: 'gatewayStatus'; name: string; status: EgressGatewayStatus }
  | { kind: 'policyStatus'; name: string; status: EgressGatewayPolicyStatus }
  /** Remove the move-to annotation from a gateway once the move is done or rejected. */
  | { kind: 'clearMoveRequest'; gateway: string }
  | { kind: 'event'; regarding: ObjectRef; type: 'Normal' | 'Warning'; reason: EventReason; note: string };
