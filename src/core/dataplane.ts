// The Linux data plane's per-gateway objects (`--dataplane linux`, docs/dataplane.md): for every
// EgressGateway one SDNInternalEgressGatewayDataplane carrying the core's decisions — active node and its
// tunnel endpoint, tunnel id, SNAT source, and the policies that render (exactly those that render a
// CiliumEgressGatewayPolicy in the Cilium data plane, with the same fields). Pure, like the rest of the core.
//
// The objects are derived from the gateway decisions and the rendered CEGPs, so both data planes always
// carry the same policies with the same selectors and CIDRs; only the transport differs.

import { ACTIVE_FOR_PREFIX, INTERNAL_API_VERSION, KIND_DATAPLANE, KIND_GATEWAY, API_VERSION, MODE_PRIMARY_IP, MODE_VIP, OWNED_LABELS } from '../api/names.ts';
import type { CiliumEgressGatewayPolicy, DataplanePolicy, EgressGateway, EgressGatewayDataplane, EgressGatewayDataplaneSpec, NodeLike } from '../api/types.ts';
import type { GatewayDecision } from './types.ts';
import { byString, isObject, jsonEqual, sha256Hex } from './util.ts';

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

function preferredTunnelID(gateway: string): number {
  return (parseInt(sha256Hex(gateway).slice(0, 8), 16) % MAX_TUNNEL_ID) + 1;
}

/**
 * A unique tunnel id per gateway, sticky: a gateway keeps the id its object already carries (if valid and
 * not claimed by a gateway earlier in name order); a new one takes its name's hash, probing upwards past
 * ids in use. Deterministic from the observed objects, so a new leader continues with the same ids.
 */
export function allocateTunnelIDs(gateways: readonly string[], observed: ReadonlyMap<string, number>): Map<string, number> {
  const names = [...gateways].sort(byString);
  const out = new Map<string, number>();
  const used = new Set<number>();
  for (const n of names) {
    const id = observed.get(n);
    if (id !== undefined && Number.isInteger(id) && id >= 1 && id <= MAX_TUNNEL_ID && !used.has(id)) {
      out.set(n, id);
      used.add(id);
    }
  }
  for (const n of names) {
    if (out.has(n)) continue;
    let id = preferredTunnelID(n);
    while (used.has(id)) id = (id % MAX_TUNNEL_ID) + 1;
    out.set(n, id);
    used.add(id);
  }
  return out;
}

/** The gateway named by a rendered CEGP (its `active-for-<gateway>` node selector). */
function cegpGateway(c: CiliumEgressGatewayPolicy): string | undefined {
  const ml = c.spec?.egressGateway?.nodeSelector?.matchLabels;
  if (!isObject(ml)) return undefined;
  for (const k in ml) if (k.startsWith(ACTIVE_FOR_PREFIX)) return k.slice(ACTIVE_FOR_PREFIX.length);
  return undefined;
}

function sourceIPOf(g: EgressGateway | undefined): EgressGatewayDataplaneSpec['sourceIP'] {
  const s = g?.spec?.sourceIP;
  if (s?.mode === MODE_VIP && typeof s.virtualIPAddress?.ip === 'string') return { mode: MODE_VIP, ip: s.virtualIPAddress.ip };
  if (s?.mode === MODE_PRIMARY_IP && typeof s.primaryIPFromEgressGatewayNodeInterface?.interfaceName === 'string') {
    return { mode: MODE_PRIMARY_IP, interfaceName: s.primaryIPFromEgressGatewayNodeInterface.interfaceName };
  }
  return { mode: typeof s?.mode === 'string' ? s.mode : '' };
}

export interface DataplaneInputs {
  gateways: readonly EgressGateway[];
  nodes: readonly NodeLike[];
  /** Our observed dataplane objects (their tunnel ids are kept). */
  observed: readonly EgressGatewayDataplane[];
  /** The core's decisions, by gateway name. */
  decisions: ReadonlyMap<string, Pick<GatewayDecision, 'active'>>;
  /** The CEGPs the Cilium rendering wants, by name (`d8.<policy>`). */
  cegps: ReadonlyMap<string, CiliumEgressGatewayPolicy>;
}

/** The dataplane objects to have, by gateway name: one per EgressGateway. */
export function renderDataplanes(i: DataplaneInputs): Map<string, EgressGatewayDataplane> {
  const observedIDs = new Map<string, number>();
  for (const o of i.observed) if (typeof o.spec?.tunnelID === 'number') observedIDs.set(o.metadata.name, o.spec.tunnelID);
  const names = i.gateways.map((g) => g.metadata.name).filter((n) => typeof n === 'string' && n !== '');
  const ids = allocateTunnelIDs(names, observedIDs);
  const nodes = new Map(i.nodes.map((n) => [n.metadata.name, n]));
  const policies = new Map<string, DataplanePolicy[]>();
  for (const [name, c] of [...i.cegps].sort((a, b) => byString(a[0], b[0]))) {
    const gw = cegpGateway(c);
    const spec = c.spec;
    if (gw === undefined || !spec) continue;
    const p: DataplanePolicy = { name: name.replace(/^d8\./, ''), selectors: spec.selectors, destinationCIDRs: spec.destinationCIDRs };
    if (spec.excludedCIDRs !== undefined && spec.excludedCIDRs.length > 0) p.excludedCIDRs = spec.excludedCIDRs;
    let list = policies.get(gw);
    if (!list) policies.set(gw, (list = []));
    list.push(p);
  }
  const out = new Map<string, EgressGatewayDataplane>();
  for (const g of i.gateways) {
    const name = g.metadata.name;
    if (!ids.has(name)) continue;
    const active = i.decisions.get(name)?.active ?? '';
    const endpoint = active === '' ? undefined : nodeTunnelEndpoint(nodes.get(active));
    const spec: EgressGatewayDataplaneSpec = {
      tunnelID: ids.get(name)!,
      // A node without an InternalIP cannot be reached: fail closed rather than guess.
      activeNodeName: endpoint === undefined ? '' : active,
      tunnelEndpoint: endpoint ?? '',
      sourceIP: sourceIPOf(g),
      policies: policies.get(name) ?? [],
    };
    const sel = g.spec?.nodeSelector;
    if (sel && typeof sel === 'object' && Object.keys(sel).length > 0) spec.nodeSelector = { ...sel };
    const md: EgressGatewayDataplane['metadata'] = { name, labels: { ...OWNED_LABELS } };
    if (typeof g.metadata.uid === 'string' && g.metadata.uid !== '') {
      md.ownerReferences = [{ apiVersion: API_VERSION, kind: KIND_GATEWAY, name, uid: g.metadata.uid, controller: true, blockOwnerDeletion: true }];
    }
    out.set(name, { apiVersion: INTERNAL_API_VERSION, kind: KIND_DATAPLANE, metadata: md, spec });
  }
  return out;
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

export type DataplaneWrite =
  | { kind: 'applyDataplane'; object: EgressGatewayDataplane }
  | { kind: 'deleteDataplane'; name: string };

/** Applies for what differs, deletes for ours that no gateway wants; in name order. */
export function planDataplaneWrites(desired: ReadonlyMap<string, EgressGatewayDataplane>, observed: readonly EgressGatewayDataplane[]): { applies: DataplaneWrite[]; deletes: DataplaneWrite[] } {
  const have = new Map(observed.map((o) => [o.metadata.name, o]));
  const applies: DataplaneWrite[] = [];
  for (const name of [...desired.keys()].sort(byString)) {
    const want = desired.get(name)!;
    const o = have.get(name);
    if (!o || !dataplaneUpToDate(o, want)) applies.push({ kind: 'applyDataplane', object: want });
  }
  const deletes: DataplaneWrite[] = [];
  for (const name of [...have.keys()].sort(byString)) if (!desired.has(name)) deletes.push({ kind: 'deleteDataplane', name });
  return { applies, deletes };
}
