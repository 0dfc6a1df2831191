// The Linux data plane's per-gateway object (`--dataplane linux`, docs/dataplane.md): for every
// EgressGateway one SDNInternalEgressGatewayDataplane carrying the core's decisions — the active node and
// its tunnel endpoint, the tunnel id, the SNAT source, and the policies that render (exactly those that
// render a CiliumEgressGatewayPolicy in the Cilium data plane, with the same fields). One more output of
// the gateway's plan (gateway.ts); tunnel ids are unique across gateways, which combine.ts settles.

import { API_VERSION, INTERNAL_API_VERSION, KIND_DATAPLANE, KIND_GATEWAY, MODE_PRIMARY_IP, MODE_VIP, OWNED_LABELS } from '../api/names.ts';
import type { CiliumEgressGatewayPolicy, DataplanePolicy, EgressGatewayDataplane, EgressGatewayDataplaneSpec, NodeLike } from '../api/types.ts';
import type { GatewayInfo } from './validate.ts';
import { byString, jsonEqual, sha256Hex } from './util.ts';

export const MAX_TUNNEL_ID = 0xffffff;

/** The node's tunnel endpoint: its first IPv4 InternalIP; undefined when it has none. */
export function nodeTunnelEndpoint(node: NodeLike | undefined): string | undefined {
  const addrs = (node?.status as { addresses?: Array<{ type?: string; address?: string }> } | undefined)?.addresses;
  if (!Array.isArray(addrs)) return undefined;
  for (const a of addrs) {
    if (a?.type === 'InternalIP' && typeof a.address === 'string' && /^\d{1,3}(\.\d{1,3}){3}$/.test(a.address)) return a.address;
  }
  return undefined;
}

export const validTunnelID = (id: unknown): id is number => typeof id === 'number' && Number.isInteger(id) && id >= 1 && id <= MAX_TUNNEL_ID;

/** The id a gateway asks for: the one its object already carries (sticky), else its name's hash. */
export function proposedTunnelID(gateway: string, observed: EgressGatewayDataplane | undefined): number {
  const id = observed?.spec?.tunnelID;
  return validTunnelID(id) ? id : (parseInt(sha256Hex(gateway).slice(0, 8), 16) % MAX_TUNNEL_ID) + 1;
}

/**
 * Unique ids (combine step): a gateway keeps its proposal unless a gateway earlier in name order took it
 * (or it is a fresh proposal colliding with an observed one); then the next free id upwards. Deterministic
 * from the observed objects, so a new leader continues with the same ids.
 */
export function settleTunnelIDs(proposals: ReadonlyArray<{ name: string; id: number; observed: boolean }>): Map<string, number> {
  const sorted = [...proposals].sort((a, b) => byString(a.name, b.name));
  const out = new Map<string, number>();
  const used = new Set<number>();
  // Ids already on objects (and so on the wire) first, then the fresh ones and the duplicates.
  for (const p of sorted) {
    if (p.observed && !used.has(p.id)) {
      out.set(p.name, p.id);
      used.add(p.id);
    }
  }
  for (const p of sorted) {
    if (out.has(p.name)) continue;
    let id = p.id;
    while (used.has(id)) id = (id % MAX_TUNNEL_ID) + 1;
    out.set(p.name, id);
    used.add(id);
  }
  return out;
}

/** A rendered CEGP as the data plane's policy entry. */
export function dataplanePolicy(policy: string, c: CiliumEgressGatewayPolicy): DataplanePolicy | undefined {
  const spec = c.spec;
  if (!spec) return undefined;
  const p: DataplanePolicy = { name: policy, selectors: spec.selectors, destinationCIDRs: spec.destinationCIDRs };
  if (spec.excludedCIDRs !== undefined && spec.excludedCIDRs.length > 0) p.excludedCIDRs = spec.excludedCIDRs;
  return p;
}

function sourceIPOf(g: GatewayInfo): EgressGatewayDataplaneSpec['sourceIP'] {
  if (g.mode === MODE_VIP && g.vip !== '') return { mode: MODE_VIP, ip: g.vip };
  if (g.mode === MODE_PRIMARY_IP && g.interfaceName !== '') return { mode: MODE_PRIMARY_IP, interfaceName: g.interfaceName };
  return { mode: g.mode };
}

/**
 * The gateway's object. `active`: the node carrying active-for after the pass ('' none); `endpoint`: its
 * InternalIP (a node without one cannot be reached: fail closed rather than guess).
 */
export function renderGatewayDataplane(g: GatewayInfo, active: string, endpoint: string | undefined, tunnelID: number, policies: readonly DataplanePolicy[]): EgressGatewayDataplane {
  const reachable = active !== '' && endpoint !== undefined;
  const spec: EgressGatewayDataplaneSpec = {
    tunnelID,
    activeNodeName: reachable ? active : '',
    tunnelEndpoint: reachable ? endpoint : '',
    sourceIP: sourceIPOf(g),
    policies: [...policies],
  };
  if (g.selectorValid && Object.keys(g.selector).length > 0) spec.nodeSelector = { ...g.selector };
  const md: EgressGatewayDataplane['metadata'] = { name: g.name, labels: { ...OWNED_LABELS } };
  if (g.uid !== '') md.ownerReferences = [{ apiVersion: API_VERSION, kind: KIND_GATEWAY, name: g.name, uid: g.uid, controller: true, blockOwnerDeletion: true }];
  return { apiVersion: INTERNAL_API_VERSION, kind: KIND_DATAPLANE, metadata: md, spec };
}

/** The object with another tunnel id (combine.ts, on a collision). */
export function withTunnelID(o: EgressGatewayDataplane, tunnelID: number): EgressGatewayDataplane {
  return { ...o, spec: { ...o.spec, tunnelID } };
}

/** Our labels and the spec as desired (what the API server keeps of an apply). */
export function dataplaneUpToDate(observed: EgressGatewayDataplane, desired: EgressGatewayDataplane): boolean {
  const l = observed.metadata.labels ?? {};
  for (const [k, v] of Object.entries(desired.metadata.labels ?? {})) if (l[k] !== v) return false;
  const o = observed.spec ?? {};
  const d = desired.spec ?? {};
  return o.tunnelID === d.tunnelID && (o.activeNodeName ?? '') === (d.activeNodeName ?? '') && (o.tunnelEndpoint ?? '') === (d.tunnelEndpoint ?? '')
    && jsonEqual(o.sourceIP ?? {}, d.sourceIP ?? {}) && jsonEqual(o.nodeSelector ?? {}, d.nodeSelector ?? {})
    && jsonEqual(normalisedPolicies(o.policies), normalisedPolicies(d.policies));
}

function normalisedPolicies(list: readonly DataplanePolicy[] | undefined): unknown {
  return (list ?? []).map((p) => ({ ...p, excludedCIDRs: p.excludedCIDRs ?? [] }));
}
