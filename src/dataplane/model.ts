// One node's share of the Linux data plane, computed from the gateways' dataplane objects (rendered by the
// controller's core), the node's own pods and the namespaces' labels. Pure: no I/O, no clock. The agent
// calls it on every change; render.ts turns the result into an nftables script, route tables and rules.
//
// Source side: every pod of this node with an IPv4 address is "known" (drop-until-programmed lets only
// known pods out); the selected ones get a class — the set of policies that select them — and each class
// a list of disjoint destination ranges, each going to one gateway's slot (mark → route table → tunnel)
// or dropped (the gateway has no active node: fail closed).
// Gateway side: every gateway whose SNAT source this node can resolve gets a tunnel-in slot; packets
// arriving through the tunnel with its VNI are SNATed to the VIP or the interface's primary IPv4.

import { createHash } from 'node:crypto';
import { MODE_PRIMARY_IP, MODE_VIP } from '../api/names.ts';
import type { DataplanePolicy, EgressGatewayDataplane, PodLike } from '../api/types.ts';
import { NAMESPACE_PSEUDO_LABEL, matchesNodeSelector, podSelected, type PodSelectionView } from '../core/selectors.ts';
import { flattenLpm, mergeRanges, parseCIDR4, parseIPv4, type LpmEntry, type Range } from './ranges.ts';

/** Source-side slots are 1…127 (routing), tunnel-in slots 128…255 (SNAT choice): see docs/dataplane.md. */
export const MAX_EGRESS_SLOT = 127;
export const FIRST_INGRESS_SLOT = 128;
export const MAX_INGRESS_SLOT = 255;
export const MAX_TUNNEL_ID = 0xffffff;

/** A pod as the agent caches it: the fields selection and addressing need. */
export interface DataplanePod extends PodLike {
  spec?: PodLike['spec'] & { hostNetwork?: boolean };
  status?: PodLike['status'] & { podIP?: string; podIPs?: Array<{ ip?: string }> };
}

export interface InterfaceView {
  up: boolean;
  /** IPv4 addresses in the kernel's order (the primary first), VIPs excluded. */
  ipv4: string[];
}

export interface ModelInput {
  node: string;
  /** The cluster's pod CIDRs: where local pods' addresses come from (drop-until-programmed applies there). */
  podCIDRs: readonly string[];
  /** Service CIDRs: like the pod CIDRs, never redirected. */
  serviceCIDRs: readonly string[];
  gateways: readonly EgressGatewayDataplane[];
  /** This node's pods. */
  pods: readonly DataplanePod[];
  /** Namespace name → labels. */
  namespaces: ReadonlyMap<string, Readonly<Record<string, string>>>;
  /** This node's interfaces by name (PrimaryIP mode resolves its SNAT address here). */
  interfaces: ReadonlyMap<string, InterfaceView>;
  /** This node's labels (a candidate of a gateway reports a missing interface); undefined: unknown. */
  nodeLabels?: Readonly<Record<string, string>>;
  /** Slots of the previously applied model: kept while the gateway stays, never reused in the same update. */
  previous?: SlotAssignment;
}

export interface SlotAssignment {
  egress: ReadonlyMap<string, number>;
  ingress: ReadonlyMap<string, number>;
}

/**
 * Where a range of destinations goes, as the chain that sends it: `gw_<slot>` (mark for the tunnel to the
 * active node), `in_<slot>` (the gateway is active on this node: mark for SNAT here), or 'drop' (no active
 * node, or no slot).
 */
export type Verdict = `gw_${number}` | `in_${number}` | 'drop';

export interface PodClass {
  /** Stable name from the set of policies (`c_` + 12 hex of its sha256): chain and map names. */
  id: string;
  policies: string[];
  pods: string[];
  ranges: Array<Range & { verdict: Verdict }>;
}

export interface EgressSlot {
  slot: number;
  gateway: string;
  tunnelID: number;
  endpoint: string;
}

export interface IngressSlot {
  slot: number;
  gateway: string;
  tunnelID: number;
  snat: string;
}

export interface Problem {
  gateway?: string;
  policy?: string;
  pod?: string;
  message: string;
}

export interface NodeDataplane {
  /** Pod + service CIDRs, merged: never redirected, never dropped. */
  cluster: Range[];
  /** Pod CIDRs, merged. */
  podNets: Range[];
  /** IPv4 of every local pod the agent has classified, sorted. */
  known: string[];
  classes: PodClass[];
  egress: EgressSlot[];
  ingress: IngressSlot[];
  /** Every VIP of a VIP-mode gateway (unknown inbound TCP to them is dropped, not reset). */
  vips: string[];
  slots: SlotAssignment;
  problems: Problem[];
}

interface Gw {
  name: string;
  /** Undefined when malformed or taken by another gateway: the gateway's traffic is then dropped. */
  tunnelID: number | undefined;
  /** Undefined: no active node (fail closed). */
  endpoint: string | undefined;
  activeNode: string;
  mode: string;
  vip: string | undefined;
  interfaceName: string | undefined;
  nodeSelector: Readonly<Record<string, string>> | undefined;
  policies: Array<{ policy: DataplanePolicy; entries: Array<Omit<LpmEntry<string>, 'rank'>> }>;
}

export function buildNodeDataplane(input: ModelInput): NodeDataplane {
  const problems: Problem[] = [];
  const cluster: Range[] = [];
  const podNets: Range[] = [];
  for (const [list, outs] of [[input.podCIDRs, [cluster, podNets]], [input.serviceCIDRs, [cluster]]] as const) {
    for (const c of list) {
      const p = parseCIDR4(c);
      if ('error' in p) problems.push({ message: `cluster CIDR: ${p.error}` });
      else for (const o of outs) o.push(p);
    }
  }

  const usable = parseGateways(input.gateways, problems);
  const tunnelOwners = new Map<number, string>();
  for (const g of usable) {
    if (g.tunnelID === undefined) continue;
    const other = tunnelOwners.get(g.tunnelID);
    if (other === undefined) tunnelOwners.set(g.tunnelID, g.name);
    else {
      problems.push({ gateway: g.name, message: `tunnel id ${g.tunnelID} is also gateway ${other}'s: this gateway's traffic is dropped` });
      g.tunnelID = undefined;
    }
  }

  // Every (gateway, policy) entry in one list; the rank orders policies by name for LPM ties.
  const policyEntries: Array<{ gw: Gw; policy: DataplanePolicy; entries: Array<Omit<LpmEntry<string>, 'rank'>> }> = [];
  for (const g of usable) for (const p of g.policies) policyEntries.push({ gw: g, policy: p.policy, entries: p.entries });
  policyEntries.sort((a, b) => (a.policy.name < b.policy.name ? -1 : a.policy.name > b.policy.name ? 1 : 0));

  // Source side: classify the node's pods.
  const known = new Set<string>();
  const byIp = new Map<string, string>();
  const classMembers = new Map<string, { policies: number[]; pods: string[] }>();
  const clusterMerged = mergeRanges(cluster);
  const podMerged = mergeRanges(podNets);
  const sortedPods = input.pods.map((p) => ({ p, k: podKey(p) })).sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0)).map((x) => x.p);
  const index = new SelectorIndex(policyEntries.map((pe) => pe.policy));
  for (const pod of sortedPods) {
    if (pod.spec?.nodeName !== undefined && pod.spec.nodeName !== input.node) continue;
    if (pod.spec?.hostNetwork === true) continue;
    const phase = pod.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') continue;
    const ip = podIPv4(pod);
    if (ip === undefined) continue;
    const owner = byIp.get(ip);
    if (owner !== undefined) {
      problems.push({ pod: podKey(pod), message: `pod IP ${ip} is also ${owner}'s; classified once` });
      continue;
    }
    byIp.set(ip, podKey(pod));
    const n = parseIPv4(ip)!;
    if (!podMerged.some((r) => r.first <= n && n <= r.last)) {
      problems.push({ pod: podKey(pod), message: `pod IP ${ip} is outside the pod CIDRs: its traffic is not redirected` });
      continue;
    }
    known.add(ip);
    const ns = pod.metadata.namespace ?? 'default';
    const matched = index.matching({ namespace: ns, labels: pod.metadata.labels, namespaceLabels: input.namespaces.get(ns) });
    if (matched.length === 0) continue;
    const key = matched.map((i) => policyEntries[i]!.policy.name).join('\n');
    const c = classMembers.get(key);
    if (c) c.pods.push(ip);
    else classMembers.set(key, { policies: matched, pods: [ip] });
  }

  // Gateway side: SNAT for every gateway whose source address this node can resolve.
  const vips = new Set<string>();
  const snatOf = new Map<string, string>();
  for (const g of usable) {
    if (g.tunnelID === undefined) continue;
    if (g.mode === MODE_VIP) {
      if (g.vip !== undefined) {
        vips.add(g.vip);
        snatOf.set(g.name, g.vip);
      }
      continue;
    }
    const ifname = g.interfaceName ?? '';
    const link = input.interfaces.get(ifname);
    const primary = link?.ipv4[0];
    if (primary !== undefined) snatOf.set(g.name, primary);
    else if (g.activeNode === input.node || (input.nodeLabels !== undefined && matchesNodeSelector(input.nodeLabels, g.nodeSelector))) {
      problems.push({ gateway: g.name, message: link ? `interface ${ifname} has no IPv4 address to SNAT to: tunnelled traffic is dropped` : `interface ${ifname} does not exist on this node: tunnelled traffic is dropped` });
    }
  }
  const ingressNames = usable.filter((g) => snatOf.has(g.name)).map((g) => g.name);
  const ingressSlots = assignSlots(ingressNames, input.previous?.ingress ?? new Map(), FIRST_INGRESS_SLOT, MAX_INGRESS_SLOT);
  const ingress: IngressSlot[] = [];
  for (const g of usable) {
    const slot = ingressSlots.get(g.name);
    const snat = snatOf.get(g.name);
    if (snat === undefined || g.tunnelID === undefined) continue;
    if (slot === undefined) {
      problems.push({ gateway: g.name, message: `more than ${MAX_INGRESS_SLOT - FIRST_INGRESS_SLOT + 1} gateways to serve on this node: its tunnelled traffic is dropped` });
      continue;
    }
    ingress.push({ slot, gateway: g.name, tunnelID: g.tunnelID, snat });
  }
  ingress.sort((a, b) => a.slot - b.slot);


  // Egress slots for the gateways that some class sends to (with an active node).
  const prevEgress = input.previous?.egress ?? new Map<string, number>();
  const usedGateways = new Set<string>();
  for (const { policies } of classMembers.values()) for (const i of policies) usedGateways.add(policyEntries[i]!.gw.name);
  // A gateway active on this very node needs no tunnel: its pods' packets are SNATed here (local).
  const isLocal = (g: Gw) => g.activeNode === input.node && ingressSlots.has(g.name);
  const egressGws = usable.filter((g) => usedGateways.has(g.name) && g.endpoint !== undefined && g.tunnelID !== undefined && !isLocal(g));
  const egressSlots = assignSlots(egressGws.map((g) => g.name), prevEgress, 1, MAX_EGRESS_SLOT);
  for (const g of egressGws) {
    if (!egressSlots.has(g.name)) problems.push({ gateway: g.name, message: `more than ${MAX_EGRESS_SLOT} gateways in use on this node: its traffic is dropped` });
  }

  const classes: PodClass[] = [];
  for (const [key, { policies, pods }] of classMembers) {
    const entries: LpmEntry<string>[] = [];
    for (const i of policies) {
      const pe = policyEntries[i]!;
      for (const e of pe.entries) entries.push({ ...e, rank: i });
    }
    const byName = new Map(usable.map((g) => [g.name, g]));
    const ranges = flattenLpm(entries).map((r) => {
      const g = byName.get(r.value)!;
      const slot = egressSlots.get(r.value);
      const verdict: Verdict = isLocal(g) ? `in_${ingressSlots.get(g.name)!}` : slot !== undefined ? `gw_${slot}` : 'drop';
      return { first: r.first, last: r.last, verdict };
    });
    // Adjacent ranges of two gateways that both fail closed collapse into one drop range.
    const joined: PodClass['ranges'] = [];
    for (const r of ranges) {
      const prev = joined[joined.length - 1];
      if (prev && prev.verdict === r.verdict && prev.last + 1 === r.first) prev.last = r.last;
      else joined.push({ ...r });
    }
    classes.push({ id: `c_${createHash('sha256').update(key).digest('hex').slice(0, 12)}`, policies: key.split('\n'), pods, ranges: joined });
  }
  classes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

  const egress: EgressSlot[] = egressGws
    .filter((g) => egressSlots.has(g.name))
    .map((g) => ({ slot: egressSlots.get(g.name)!, gateway: g.name, tunnelID: g.tunnelID!, endpoint: g.endpoint! }))
    .sort((a, b) => a.slot - b.slot);

  return {
    cluster: clusterMerged,
    podNets: podMerged,
    known: sortIPv4([...known]),
    classes,
    egress,
    ingress,
    vips: sortIPv4([...vips]),
    slots: { egress: egressSlots, ingress: ingressSlots },
    problems,
  };
}

function podKey(p: DataplanePod): string {
  return `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`;
}

function sortIPv4(list: string[]): string[] {
  return list.map((ip) => ({ ip, n: parseIPv4(ip)! })).sort((a, b) => a.n - b.n).map((x) => x.ip);
}

/** The pod's IPv4 address (dual-stack pods list one per family), or undefined. */
export function podIPv4(pod: DataplanePod): string | undefined {
  const candidates = [...(pod.status?.podIPs ?? []).map((p) => p?.ip), pod.status?.podIP];
  for (const c of candidates) if (typeof c === 'string' && parseIPv4(c) !== undefined) return c;
  return undefined;
}

/**
 * Sticky slot allocation: a gateway keeps its previous slot; a new one takes the lowest slot that was free
 * in the previous assignment too (a slot freed now is not reused now, so its route table never changes
 * meaning while nft may still mark packets for it).
 */
export function assignSlots(names: readonly string[], previous: ReadonlyMap<string, number>, min: number, max: number): Map<string, number> {
  const out = new Map<string, number>();
  const taken = new Set<number>(previous.values());
  for (const n of [...names].sort()) {
    const s = previous.get(n);
    if (s !== undefined && s >= min && s <= max) out.set(n, s);
  }
  let next = min;
  for (const n of [...names].sort()) {
    if (out.has(n)) continue;
    while (next <= max && taken.has(next)) next++;
    if (next > max) break;
    out.set(n, next);
    taken.add(next);
  }
  return out;
}

/** Validates the dataplane objects: a malformed gateway is left out (reported); a malformed policy too. */
function parseGateways(objects: readonly EgressGatewayDataplane[], problems: Problem[]): Gw[] {
  const out: Gw[] = [];
  const sorted = [...objects].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
  for (const o of sorted) {
    const name = o.metadata.name;
    const spec = o.spec;
    let id = spec?.tunnelID;
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 1 || id > MAX_TUNNEL_ID) {
      problems.push({ gateway: name, message: `spec.tunnelID: ${JSON.stringify(id)} is not a tunnel id (1-${MAX_TUNNEL_ID}): the gateway's traffic is dropped` });
      id = undefined;
    }
    const activeNode = typeof spec?.activeNodeName === 'string' ? spec.activeNodeName : '';
    let endpoint: string | undefined;
    if (activeNode !== '') {
      const ep = spec?.tunnelEndpoint;
      if (typeof ep === 'string' && parseIPv4(ep) !== undefined) endpoint = ep;
      else problems.push({ gateway: name, message: `spec.tunnelEndpoint: ${JSON.stringify(ep)} is not an IPv4 address; the gateway's traffic is dropped` });
    }
    const src = spec?.sourceIP;
    const mode = src?.mode ?? '';
    let vip: string | undefined;
    let interfaceName: string | undefined;
    if (mode === MODE_VIP) {
      if (typeof src?.ip === 'string' && parseIPv4(src.ip) !== undefined) vip = src.ip;
      else problems.push({ gateway: name, message: `spec.sourceIP.ip: ${JSON.stringify(src?.ip)} is not an IPv4 address: no SNAT for this gateway` });
    } else if (mode === MODE_PRIMARY_IP) {
      if (typeof src?.interfaceName === 'string' && src.interfaceName !== '') interfaceName = src.interfaceName;
      else problems.push({ gateway: name, message: 'spec.sourceIP.interfaceName: required in PrimaryIP mode: no SNAT for this gateway' });
    } else {
      problems.push({ gateway: name, message: `spec.sourceIP.mode: unknown mode ${JSON.stringify(mode)}: no SNAT for this gateway` });
    }
    const policies: Gw['policies'] = [];
    for (const p of Array.isArray(spec?.policies) ? spec.policies : []) {
      const entries: Gw['policies'][number]['entries'] = [];
      const errors: string[] = [];
      for (const [field, list, value] of [['destinationCIDRs', p?.destinationCIDRs, name], ['excludedCIDRs', p?.excludedCIDRs ?? [], undefined]] as const) {
        if (!Array.isArray(list)) {
          errors.push(`${field}: not a list`);
          continue;
        }
        list.forEach((c: unknown, i: number) => {
          const r = parseCIDR4(c);
          if ('error' in r) errors.push(`${field}[${i}]: ${r.error}`);
          else entries.push({ ...r, value });
        });
      }
      if (typeof p?.name !== 'string' || !Array.isArray(p.selectors)) errors.push('name and selectors are required');
      if (errors.length > 0) {
        problems.push({ gateway: name, policy: typeof p?.name === 'string' ? p.name : '?', message: `policy left out of the data plane: ${errors.join('; ')}` });
        continue;
      }
      policies.push({ policy: p, entries });
    }
    const sel = spec?.nodeSelector;
    out.push({ name, tunnelID: id, endpoint, activeNode, mode, vip, interfaceName, nodeSelector: sel && typeof sel === 'object' ? sel : undefined, policies });
  }
  return out;
}

/**
 * Which policies select a pod, without testing every policy against every pod (10,000 pods × 1,000
 * policies on a node): a selector item with matchLabels can only match pods carrying its first
 * key=value pair, so it is indexed under that pair; the others (matchExpressions or namespaceSelector
 * only) are tested for every pod. Candidates get the full test (`podSelected`).
 */
class SelectorIndex {
  readonly #policies: readonly DataplanePolicy[];
  readonly #anchored = new Map<string, number[]>();
  readonly #always: number[] = [];

  constructor(policies: readonly DataplanePolicy[]) {
    this.#policies = policies;
    policies.forEach((p, i) => {
      const anchors = new Set<string>();
      for (const s of p.selectors) {
        const ml = s?.podSelector?.matchLabels;
        const keys = ml && typeof ml === 'object' ? Object.keys(ml).sort() : [];
        const k = keys[0];
        if (k === undefined || typeof ml![k] !== 'string') {
          this.#always.push(i);
          return;
        }
        anchors.add(`${k}\u0000${ml![k]}`);
      }
      for (const a of anchors) {
        let list = this.#anchored.get(a);
        if (!list) this.#anchored.set(a, (list = []));
        list.push(i);
      }
    });
  }

  /** Indices of the policies selecting the pod, ascending. */
  matching(pod: PodSelectionView): number[] {
    const candidates = new Set<number>(this.#always);
    const labels: Record<string, string> = { ...(pod.labels ?? {}), [NAMESPACE_PSEUDO_LABEL]: pod.namespace };
    for (const k in labels) {
      const list = this.#anchored.get(`${k}\u0000${labels[k]}`);
      if (list) for (const i of list) candidates.add(i);
    }
    const out: number[] = [];
    for (const i of candidates) if (podSelected(this.#policies[i]!.selectors, pod)) out.push(i);
    return out.sort((a, b) => a - b);
  }
}
