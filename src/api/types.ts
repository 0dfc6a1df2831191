// TypeScript shapes of the objects egressgw reads and writes. Only the fields we use are typed;
// everything is optional where a malformed object could lack it, because the controller must
// survive any object the API server accepts.

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: OwnerReference[];
}

/** metav1.Condition plus the reference's `lastHeartbeatTime` extension (reference §2.4). */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  lastHeartbeatTime?: string;
  observedGeneration?: number;
}

export interface LabelSelectorRequirement {
  key: string;
  operator: string;
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface VirtualIPAddress {
  ip: string;
  interfaces?: string[];
  routingTableName?: string;
}

export interface SourceIP {
  mode: string;
  virtualIPAddress?: VirtualIPAddress;
  primaryIPFromEgressGatewayNodeInterface?: { interfaceName: string };
}

export interface EgressGatewaySpec {
  nodeSelector?: Record<string, string>;
  sourceIP?: SourceIP;
}

export interface EgressGatewayStatus {
  observedGeneration?: number;
  readyNodes?: number;
  activeNodeName?: string;
  conditions?: Condition[];
  /** Ours: when the active node last changed because the previous one failed or was moved away. */
  lastFailoverTime?: string;
  lastFailoverReason?: string;
  /** Ours: nodes matching the selector (the `y` of "ready x/y"). */
  totalNodes?: number;
}

export interface EgressGateway {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec?: EgressGatewaySpec;
  status?: EgressGatewayStatus;
}

export interface PolicySelector {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
}

export interface EgressGatewayPolicySpec {
  egressGatewayName: string;
  destinationCIDRs?: string[];
  excludedCIDRs?: string[];
  selectors?: PolicySelector[];
}

export interface EgressGatewayPolicyStatus {
  observedGeneration?: number;
  activeNodeName?: string;
  egressIP?: string;
  interface?: string;
  conditions?: Condition[];
}

export interface EgressGatewayPolicy {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec?: EgressGatewayPolicySpec;
  status?: EgressGatewayPolicyStatus;
}

export interface EgressGatewayInstanceSpec {
  nodeName?: string;
  sourceIP?: SourceIP;
}

export interface EgressGatewayInstanceStatus {
  observedGeneration?: number;
  conditions?: Condition[];
}

/** `SDNInternalEgressGatewayInstance`: the controller → agent channel ("announce this VIP on this node"). */
export interface EgressGatewayInstance {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec?: EgressGatewayInstanceSpec;
  status?: EgressGatewayInstanceStatus;
}

export interface CiliumEgressGatewayPolicySpec {
  selectors: PolicySelector[];
  destinationCIDRs: string[];
  excludedCIDRs?: string[];
  egressGateway: {
    nodeSelector: { matchLabels: Record<string, string> };
    egressIP?: string;
    interface?: string;
  };
}

export interface CiliumEgressGatewayPolicy {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec?: CiliumEgressGatewayPolicySpec;
}

/** The parts of v1 Node, v1 Pod, CiliumNode and coordination/v1 Lease the core reads. */
export interface NodeLike {
  metadata: ObjectMeta;
  spec?: { unschedulable?: boolean };
  status?: {
    conditions?: Array<{ type: string; status: string; reason?: string; message?: string }>;
    /** The node's own addresses (a VIP must never be one of them). */
    addresses?: Array<{ type: string; address: string }>;
  };
}

export interface PodLike {
  metadata: ObjectMeta;
  spec?: { nodeName?: string };
  status?: { phase?: string; conditions?: Array<{ type: string; status: string }> };
}

export interface CiliumNodeLike {
  metadata: ObjectMeta;
}

export interface LeaseLike {
  metadata: ObjectMeta;
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    renewTime?: string;
    acquireTime?: string;
  };
}

/** One policy as the Linux data plane needs it (the valid policies of a gateway, rendered by the core). */
export interface DataplanePolicy {
  name: string;
  selectors: PolicySelector[];
  destinationCIDRs: string[];
  excludedCIDRs?: string[];
}

export interface EgressGatewayDataplaneSpec {
  /** The gateway's VXLAN-GPE VNI, unique per gateway (1 … 2^24-1). */
  tunnelID?: number;
  /** '' or absent: no active node, the policies' traffic is dropped (fail closed). */
  activeNodeName?: string;
  /** The active node's tunnel endpoint (its InternalIP). */
  tunnelEndpoint?: string;
  /** Where the gateway node SNATs to: the VIP, or the primary IPv4 of an interface. */
  sourceIP?: { mode: string; ip?: string; interfaceName?: string };
  /** The gateway's nodeSelector: a candidate node's agent reports what it lacks (a missing interface). */
  nodeSelector?: Record<string, string>;
  policies?: DataplanePolicy[];
}

/** One connection whose SNAT port differs from its pod's source port (a clash on the active node). */
export interface SnatRemap {
  podIP: string;
  podPort: number;
  serverIP: string;
  serverPort: number;
  /** The VIP's port the server sees. */
  natPort: number;
}

/** The remapped connections of a gateway's VIP, as its active node last saw them (TCP, established). */
export interface SnatRemapList {
  /** The node that published the list. */
  node: string;
  vip: string;
  /** Remaps left out of `connections` (the list is bounded). */
  omitted: number;
  connections: SnatRemap[];
}

/** Written by the gateway's active node's agent (the status subresource); the controller never writes it. */
export interface EgressGatewayDataplaneStatus {
  snatRemaps?: SnatRemapList;
}

/**
 * `SDNInternalEgressGatewayDataplane` (one per gateway, `--dataplane linux`): what every node's agent needs
 * of the gateway to program its own part of the data plane (docs/dataplane.md).
 */
export interface EgressGatewayDataplane {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec?: EgressGatewayDataplaneSpec;
  status?: EgressGatewayDataplaneStatus;
}
