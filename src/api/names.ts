// Well-known names shared by the controller, the agent and the CLI.
// They match the reference implementation (reference-behaviour §2.6, design §9) so that clusters
// moving from it keep their labels, instances and policies.

export const GROUP = 'network.deckhouse.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const INTERNAL_GROUP = 'internal.network.deckhouse.io';
export const INTERNAL_API_VERSION = `${INTERNAL_GROUP}/${VERSION}`;
export const CILIUM_GROUP = 'cilium.io';
export const CILIUM_VERSION = 'v2';

export const PLURAL_GATEWAYS = 'egressgateways';
export const PLURAL_POLICIES = 'egressgatewaypolicies';
export const PLURAL_INSTANCES = 'sdninternalegressgatewayinstances';
export const PLURAL_DATAPLANES = 'sdninternalegressgatewaydataplanes';
export const PLURAL_CEGPS = 'ciliumegressgatewaypolicies';
export const PLURAL_CILIUM_NODES = 'ciliumnodes';

export const KIND_GATEWAY = 'EgressGateway';
export const KIND_POLICY = 'EgressGatewayPolicy';
export const KIND_INSTANCE = 'SDNInternalEgressGatewayInstance';
export const KIND_DATAPLANE = 'SDNInternalEgressGatewayDataplane';
export const KIND_CEGP = 'CiliumEgressGatewayPolicy';

export const LABEL_PREFIX = 'egress-gateway.network.deckhouse.io/';
/** Node label: the node matches some gateway and is Ready and uncordoned (the agent DaemonSet selects on it). */
export const MEMBER_LABEL = `${LABEL_PREFIX}member`;
/** Node label prefix: `active-for-<gateway>` marks the gateway's active node; Cilium selects on it. */
export const ACTIVE_FOR_PREFIX = `${LABEL_PREFIX}active-for-`;
/** Instance label naming the node that must announce the VIP. */
export const NODE_NAME_LABEL = `${LABEL_PREFIX}node-name`;
/** Finalizer on instances: the agent removes it after withdrawing the VIP. */
export const INSTANCE_FINALIZER = 'egress-gateway.network.deckhouse.io';

/** Labels on everything we render, as the reference does, so `kubectl get -l` finds our objects. */
export const OWNED_LABELS: Readonly<Record<string, string>> = Object.freeze({ heritage: 'deckhouse', module: 'cni-cilium' });

/** Our own annotations (not part of the reference API). */
export const ANNOTATION_PREFIX = 'egressgw.network.deckhouse.io/';
/** On an EgressGateway: `egressgw move` asks for a graceful handover to this node; the controller clears it. */
export const MOVE_TO_ANNOTATION = `${ANNOTATION_PREFIX}move-to`;
/** On an instance: when the controller assigned it (RFC 3339, controller clock); drives the handover timeout. */
export const ASSIGNED_AT_ANNOTATION = `${ANNOTATION_PREFIX}assigned-at`;
/**
 * On an instance: the nodes that refused (or did not confirm) this gateway's VIP before it, as JSON
 * `{"nodes":{node:message},"retries":n}`: the controller's memory of a handover
 * sequence in which no node accepts the VIP (see src/core/refusals.ts).
 */
export const REFUSED_ANNOTATION = `${ANNOTATION_PREFIX}refused`;
/**
 * On the old owner's instance while the VIP is being handed over from its node to the node named here
 * (that node's instance is written, not yet confirmed): the agent keeps the VIP if it holds it now (make
 * before break) but does not (re)take it, e.g. back from a fence or after a restart: announcing it would
 * pull the LAN's ARP caches back to a node that is about to let go. Removed when the handover is
 * abandoned (the instance is then assigned anew); the instance is deleted when it completes.
 */
export const HANDOVER_TO_ANNOTATION = `${ANNOTATION_PREFIX}handover-to`;
/**
 * Instance annotations the controller removes when the instance it wants lacks them (the others it
 * only adds or updates: REFUSED_ANNOTATION stays as written, and readers ignore it on a confirmed instance).
 */
export const CLEARED_INSTANCE_ANNOTATIONS: readonly string[] = Object.freeze([HANDOVER_TO_ANNOTATION]);
/** On a heartbeat Lease: JSON map of interface name → state, published by the agent (uplink health). */
export const UPLINKS_ANNOTATION = `${ANNOTATION_PREFIX}uplinks`;
/**
 * On a heartbeat Lease: the lease duration in milliseconds. `leaseDurationSeconds` has whole-second
 * precision; this lets an operator tune detection below 2 s (e.g. 1500 ms). The controller prefers it
 * when it is a sane number no larger than `leaseDurationSeconds`, which the agent rounds up.
 */
export const LEASE_DURATION_MS_ANNOTATION = `${ANNOTATION_PREFIX}lease-duration-ms`;
/**
 * On a heartbeat Lease: the agent's --fence-after in milliseconds (its kernel switch closes this long
 * after the send time of its last accepted renewal). The controller never trusts the heartbeat for less
 * than this plus FENCE_MARGIN_MS, whatever the Lease's duration says (src/api/fencing.ts).
 */
export const FENCE_AFTER_MS_ANNOTATION = `${ANNOTATION_PREFIX}fence-after-ms`;

export const MODE_VIP = 'VirtualIPAddress';
export const MODE_PRIMARY_IP = 'PrimaryIPFromEgressGatewayNodeInterface';

/**
 * Install profiles (`egressgw manifests --profile NAME`, deploy/profiles/NAME): the namespace egressgw runs
 * in (controller, agents, their Leases) and where the controller finds cilium-agent pods.
 * - cilium: upstream Cilium as its Helm chart installs it (agents in kube-system, `k8s-app=cilium`).
 * - deckhouse: Deckhouse's cni-cilium module (everything in d8-cni-cilium, Deckhouse's labels).
 * The controller's and the agent's built-in defaults are the cilium profile's.
 */
export interface InstallProfile {
  namespace: string;
  ciliumNamespace: string;
  ciliumSelector: string;
}
export const PROFILES: Readonly<Record<'cilium' | 'deckhouse', Readonly<InstallProfile>>> = Object.freeze({
  cilium: Object.freeze({ namespace: 'egressgw-system', ciliumNamespace: 'kube-system', ciliumSelector: 'k8s-app=cilium' }),
  deckhouse: Object.freeze({ namespace: 'd8-cni-cilium', ciliumNamespace: 'd8-cni-cilium', ciliumSelector: 'app=agent,module=cni-cilium' }),
});
export type ProfileName = keyof typeof PROFILES;
export const DEFAULT_PROFILE: ProfileName = 'cilium';

export const DEFAULT_NAMESPACE = PROFILES[DEFAULT_PROFILE].namespace;
export const DEFAULT_CILIUM_NAMESPACE = PROFILES[DEFAULT_PROFILE].ciliumNamespace;
export const DEFAULT_CILIUM_AGENT_SELECTOR = PROFILES[DEFAULT_PROFILE].ciliumSelector;

/** The labels an equality selector such as `app=agent,module=cni-cilium` asks for (what a matching pod carries). */
export function selectorLabels(selector: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of selector.split(',')) {
    const m = /^\s*([^=!\s]+)\s*==?\s*(\S*)\s*$/.exec(part);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}
export const DEFAULT_AGENT_SELECTOR = 'app=egress-gateway-agent';
export const AGENT_PROBE_PORT = 9870;

export const activeForLabel = (gateway: string): string => `${ACTIVE_FOR_PREFIX}${gateway}`;
export const cegpName = (policy: string): string => `d8.${policy}`;
/** Heartbeat Lease name for a node (one Lease per node, in the heartbeat namespace). */
export const heartbeatLeaseName = (node: string): string => `egressgw-agent-${node}`;

/** Which data plane carries the pods' traffic: Cilium's eBPF (design §7) or ours (docs/dataplane.md). */
export type DataplaneMode = 'cilium' | 'linux';
export const DATAPLANE_MODES: readonly DataplaneMode[] = ['cilium', 'linux'];
