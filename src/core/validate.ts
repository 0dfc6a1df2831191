// What the CRD schema may not have caught (old objects, objects created before our stricter schema,
// and the cross-object rules a schema cannot see). Every problem becomes a message with its field path;
// nothing here throws on a malformed object.

import ipaddr from 'ipaddr.js';
import type { EgressGateway, EgressGatewayPolicy, LabelSelector, NodeLike, PolicySelector, SourceIP } from '../api/types.ts';
import { MODE_PRIMARY_IP, MODE_VIP, MOVE_TO_ANNOTATION } from '../api/names.ts';
import { validateLabelSelector } from './selectors.ts';
import { annotationsOf, byString, isObject, isStringMap, jsonEqual, nameOf, parseTime } from './util.ts';

/** Longest gateway name for which `egress-gateway.network.deckhouse.io/active-for-<name>` is a valid key. */
export const MAX_GATEWAY_NAME = 63 - 'active-for-'.length;

/** Cilium's pattern for CEGP destinationCIDRs/excludedCIDRs (reference §2.5): IPv4 only. */
const CILIUM_CIDR =
  /^(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\/([0-9]|[1-2][0-9]|3[0-2])$/;

/** Linux interface names: 1–15 bytes, no '/', no whitespace, not "." or "..". */
const IFNAME = /^[^/\s:]{1,15}$/;

/** What a gateway contributes to its policies' CEGPs. */
export type EgressField =
  | { kind: 'ok'; egressIP?: string; interface?: string }
  /** The gateway names something Cilium's CEGP schema would reject (IPv6 or malformed VIP). */
  | { kind: 'unrenderable'; message: string }
  /** Nothing usable (no sourceIP, unknown mode, missing field). */
  | { kind: 'absent' };

export interface GatewayInfo {
  name: string;
  gateway: EgressGateway;
  uid: string;
  generation: number | undefined;
  creationTime: number;
  /** Exact-match node selector; `{}` when absent. `selectorValid` is false when it was not a string map. */
  selector: Record<string, string>;
  selectorValid: boolean;
  /** `VirtualIPAddress`, `PrimaryIPFromEgressGatewayNodeInterface`, or whatever else the object says. */
  mode: string;
  vip: string;
  interfaces: string[];
  interfaceName: string;
  /** The sourceIP the instances carry (normalised: `interfaces` always a list). */
  sourceIP: SourceIP | undefined;
  /** Field-path messages; non-empty → the gateway is Invalid (InvalidSpec). */
  errors: string[];
  /** Set when the gateway must not be elected: InvalidSpec, or DuplicateVIP (see `withDuplicateVIPs`). */
  invalid?: { reason: 'InvalidSpec' | 'DuplicateVIP'; message: string };
  egress: EgressField;
  /** Trimmed move-to annotation; undefined when absent. */
  moveTo: string | undefined;
}

function describeIP(ip: string): string {
  return ipaddr.IPv6.isValid(ip) ? `IPv6 address "${ip}" is not supported: Cilium's egress gateway is IPv4-only` : `"${ip}" is not a valid IPv4 address`;
}

export function isIPv4(ip: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(ip);
}

/** A gateway's analysis: its fields, normalised, and InvalidSpec when its spec has errors. */
export function analyseGateway(gw: EgressGateway): GatewayInfo {
  const info = readGateway(gw);
  if (info.errors.length > 0) info.invalid = { reason: 'InvalidSpec', message: info.errors.join('; ') };
  return info;
}

function readGateway(gw: EgressGateway): GatewayInfo {
  const name = nameOf(gw);
  const md = (isObject(gw.metadata) ? gw.metadata : {}) as EgressGateway['metadata'];
  const errors: string[] = [];
  const info: GatewayInfo = {
    name,
    gateway: gw,
    uid: typeof md.uid === 'string' ? md.uid : '',
    generation: typeof md.generation === 'number' ? md.generation : undefined,
    creationTime: parseTime(md.creationTimestamp),
    selector: {},
    selectorValid: true,
    mode: '',
    vip: '',
    interfaces: [],
    interfaceName: '',
    sourceIP: undefined,
    errors,
    egress: { kind: 'absent' },
    moveTo: undefined,
  };
  const move = annotationsOf(gw)[MOVE_TO_ANNOTATION];
  if (move !== undefined) info.moveTo = typeof move === 'string' ? move.trim() : '';

  if (name.length > MAX_GATEWAY_NAME) {
    errors.push(`metadata.name: must be at most ${MAX_GATEWAY_NAME} characters so that the label active-for-<name> is valid`);
  }
  const spec: unknown = (gw as { spec?: unknown }).spec;
  if (!isObject(spec)) {
    errors.push('spec: required');
    return info;
  }
  const sel = spec['nodeSelector'];
  if (sel !== undefined && sel !== null) {
    if (isStringMap(sel)) info.selector = sel;
    else {
      info.selectorValid = false;
      errors.push('spec.nodeSelector: must be a map of strings');
    }
  }
  const sip = spec['sourceIP'];
  if (!isObject(sip)) {
    errors.push('spec.sourceIP: required');
    return info;
  }
  const mode = sip['mode'];
  info.mode = typeof mode === 'string' ? mode : '';
  if (info.mode === MODE_VIP) readVIP(sip['virtualIPAddress'], info);
  else if (info.mode === MODE_PRIMARY_IP) readPrimaryIP(sip['primaryIPFromEgressGatewayNodeInterface'], info);
  else errors.push(`spec.sourceIP.mode: must be ${MODE_VIP} or ${MODE_PRIMARY_IP}, got "${info.mode}"`);
  return info;
}

/** `spec.sourceIP.virtualIPAddress` into `info` (VIP, interfaces, egress, sourceIP, errors). */
function readVIP(v: unknown, info: GatewayInfo): void {
  const errors = info.errors;
  if (!isObject(v)) {
    errors.push('spec.sourceIP.virtualIPAddress: required in mode VirtualIPAddress');
    return;
  }
  const ip = v['ip'];
  if (typeof ip !== 'string' || ip === '') {
    errors.push('spec.sourceIP.virtualIPAddress.ip: required');
  } else {
    info.vip = ip;
    if (isIPv4(ip)) info.egress = { kind: 'ok', egressIP: ip };
    else {
      const msg = `spec.sourceIP.virtualIPAddress.ip: ${describeIP(ip)}`;
      errors.push(msg);
      info.egress = { kind: 'unrenderable', message: msg };
    }
  }
  const ifs = v['interfaces'];
  if (ifs !== undefined && ifs !== null) {
    if (!Array.isArray(ifs) || ifs.some((x) => typeof x !== 'string')) {
      errors.push('spec.sourceIP.virtualIPAddress.interfaces: must be a list of strings');
    } else {
      info.interfaces = [...(ifs as string[])];
      ifs.forEach((x: string, i: number) => {
        if (!IFNAME.test(x)) errors.push(`spec.sourceIP.virtualIPAddress.interfaces[${i}]: "${x}" is not a valid interface name`);
      });
    }
  }
  info.sourceIP = { mode: MODE_VIP, virtualIPAddress: { ip: info.vip, interfaces: info.interfaces } };
}

/** `spec.sourceIP.primaryIPFromEgressGatewayNodeInterface` into `info` (interface, egress, errors). */
function readPrimaryIP(p: unknown, info: GatewayInfo): void {
  const ifn = isObject(p) ? p['interfaceName'] : undefined;
  if (typeof ifn !== 'string' || ifn === '') {
    info.errors.push('spec.sourceIP.primaryIPFromEgressGatewayNodeInterface.interfaceName: required in mode PrimaryIPFromEgressGatewayNodeInterface');
  } else if (!IFNAME.test(ifn)) {
    info.errors.push(`spec.sourceIP.primaryIPFromEgressGatewayNodeInterface.interfaceName: "${ifn}" is not a valid interface name`);
  } else {
    info.interfaceName = ifn;
    info.egress = { kind: 'ok', interface: ifn };
  }
}

/**
 * Two gateways with one VIP (D22): the older (creationTimestamp, then name) keeps it; the others become
 * Invalid with reason DuplicateVIP. Pure: returns the groups for the metric and, per losing gateway,
 * why (see `withDuplicateVIPs`).
 */
export function findDuplicateVIPs(infos: readonly GatewayInfo[]): {
  groups: DuplicateVIP[];
  losers: Map<GatewayInfo, NonNullable<GatewayInfo['invalid']>>;
} {
  const byIP = new Map<string, GatewayInfo[]>();
  for (const g of infos) {
    if (g.invalid || g.mode !== MODE_VIP || g.egress.kind !== 'ok') continue;
    const list = byIP.get(g.vip);
    if (list) list.push(g);
    else byIP.set(g.vip, [g]);
  }
  const groups: DuplicateVIP[] = [];
  const losers = new Map<GatewayInfo, NonNullable<GatewayInfo['invalid']>>();
  for (const [ip, list] of byIP) {
    if (list.length < 2) continue;
    list.sort((a, b) => {
      const ta = Number.isFinite(a.creationTime) ? a.creationTime : Number.POSITIVE_INFINITY;
      const tb = Number.isFinite(b.creationTime) ? b.creationTime : Number.POSITIVE_INFINITY;
      return ta !== tb ? ta - tb : byString(a.name, b.name);
    });
    const owner = list[0] as GatewayInfo;
    for (const g of list.slice(1)) losers.set(g, { reason: 'DuplicateVIP', message: `VirtualIP ${ip} is already used by gateway ${owner.name}` });
    groups.push({ ip, gateways: list.map((g) => g.name) });
  }
  groups.sort((a, b) => byString(a.ip, b.ip));
  return { groups, losers };
}

/**
 * The IP addresses Nodes report as their own (`status.addresses`, InternalIP and ExternalIP), each with
 * the node that has it (the first in name order when several claim one). Canonical text (ipaddr.js).
 */
export function nodeAddressOwners(nodes: Iterable<NodeLike>): Map<string, string> {
  const out = new Map<string, string>();
  for (const n of nodes) {
    for (const ip of nodeAddresses(n)) {
      const name = nameOf(n);
      const had = out.get(ip);
      if (had === undefined || byString(name, had) < 0) out.set(ip, name);
    }
  }
  return out;
}

/** A node's own IP addresses (canonical text), from `status.addresses`; anything malformed is skipped. */
export function nodeAddresses(n: NodeLike): string[] {
  const list: unknown = (n as { status?: { addresses?: unknown } }).status?.addresses;
  if (!Array.isArray(list)) return [];
  const out: string[] = [];
  for (const a of list as unknown[]) {
    if (!isObject(a) || (a['type'] !== 'InternalIP' && a['type'] !== 'ExternalIP') || typeof a['address'] !== 'string') continue;
    const ip = canonicalIP(a['address']);
    if (ip !== undefined && !out.includes(ip)) out.push(ip);
  }
  return out;
}

function canonicalIP(s: string): string | undefined {
  if (!ipaddr.isValid(s)) return undefined;
  const a = ipaddr.parse(s);
  return a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress() ? (a as ipaddr.IPv6).toIPv4Address().toString() : a.toString();
}

/**
 * VIP-mode gateways whose VIP is a node's own address: announcing it from a gateway node would take that
 * address over on the LAN (ARP would point it at the gateway node), cutting the node off. Such a gateway
 * is never elected (InvalidSpec, naming the node). Pure.
 */
export function findNodeAddressVIPs(infos: readonly GatewayInfo[], owners: ReadonlyMap<string, string>): Map<GatewayInfo, NonNullable<GatewayInfo['invalid']>> {
  const out = new Map<GatewayInfo, NonNullable<GatewayInfo['invalid']>>();
  if (owners.size === 0) return out;
  for (const g of infos) {
    if (g.invalid || g.mode !== MODE_VIP || g.egress.kind !== 'ok') continue;
    const ip = canonicalIP(g.vip);
    const node = ip === undefined ? undefined : owners.get(ip);
    if (node !== undefined) {
      out.set(g, { reason: 'InvalidSpec', message: `spec.sourceIP.virtualIPAddress.ip: ${g.vip} is an address of node ${node}; announcing it would take that address over from the node` });
    }
  }
  return out;
}

/**
 * What makes a gateway invalid because of other objects: a VIP that is a node's own address, then two
 * gateways with one VIP (among the rest). Returns every loser with its reason and the duplicate groups.
 */
export function crossObjectRules(infos: readonly GatewayInfo[], nodeAddresses: ReadonlyMap<string, string>): {
  groups: DuplicateVIP[];
  losers: Map<GatewayInfo, NonNullable<GatewayInfo['invalid']>>;
} {
  const conflicts = findNodeAddressVIPs(infos, nodeAddresses);
  // Duplicates among the others, judged on copies that carry the conflicts (the losers map keys the originals).
  const original = new Map<GatewayInfo, GatewayInfo>();
  const judged = infos.map((g) => {
    const c = duplicateOf(g, conflicts.get(g));
    original.set(c, g);
    return c;
  });
  const { groups, losers } = findDuplicateVIPs(judged);
  const out = new Map(conflicts);
  for (const [c, why] of losers) out.set(original.get(c) as GatewayInfo, why);
  return { groups, losers: out };
}

export interface DuplicateVIP {
  ip: string;
  gateways: string[];
}

/**
 * The gateways (in name order) with the cross-object rules applied (crossObjectRules: a VIP that is a
 * node's address, duplicate VIPs): each loser is replaced by a copy carrying its `invalid` (an analysis
 * is never changed).
 */
export function withDuplicateVIPs(infos: readonly GatewayInfo[], nodeAddresses: ReadonlyMap<string, string> = new Map()): { infos: GatewayInfo[]; duplicateVIPs: DuplicateVIP[] } {
  const { groups, losers } = crossObjectRules(infos, nodeAddresses);
  return { infos: infos.map((g) => duplicateOf(g, losers.get(g))), duplicateVIPs: groups };
}

/** `g` as a duplicate-VIP loser (`invalid` set), or `g` itself when `invalid` is undefined. */
export function duplicateOf(g: GatewayInfo, invalid: GatewayInfo['invalid']): GatewayInfo {
  return invalid ? { ...g, invalid } : g;
}

export interface PolicyInfo {
  name: string;
  policy: EgressGatewayPolicy;
  uid: string;
  generation: number | undefined;
  gatewayName: string;
  /** Field-path messages that keep the CEGP from being rendered. */
  errors: string[];
  selectors: PolicySelector[];
  destinationCIDRs: string[];
  excludedCIDRs: string[];
}

function copySelector(sel: LabelSelector): LabelSelector {
  const out: LabelSelector = {};
  if (isObject(sel.matchLabels)) out.matchLabels = { ...sel.matchLabels };
  if (Array.isArray(sel.matchExpressions)) {
    out.matchExpressions = sel.matchExpressions.map((r) => {
      const c: { key: string; operator: string; values?: string[] } = { key: r.key, operator: r.operator };
      if (Array.isArray(r.values)) c.values = [...r.values];
      return c;
    });
  }
  return out;
}

function cidrList(v: unknown, path: string, required: boolean, errors: string[]): string[] {
  if (v === undefined || v === null) {
    if (required) errors.push(`${path}: required (at least one IPv4 CIDR)`);
    return [];
  }
  if (!Array.isArray(v)) {
    errors.push(`${path}: must be a list of IPv4 CIDRs`);
    return [];
  }
  if (required && v.length === 0) errors.push(`${path}: required (at least one IPv4 CIDR)`);
  const out: string[] = [];
  v.forEach((c: unknown, i: number) => {
    if (typeof c !== 'string') {
      errors.push(`${path}[${i}]: must be a string`);
      return;
    }
    if (!CILIUM_CIDR.test(c)) {
      errors.push(
        `${path}[${i}]: ${ipaddr.IPv6.isValidCIDR(c) ? `IPv6 CIDR "${c}" is not supported: Cilium's egress gateway is IPv4-only` : `"${c}" is not a valid IPv4 CIDR`}`,
      );
    }
    out.push(c);
  });
  return out;
}

/** `spec.selectors`, normalised; problems go to `errors` with their field paths. */
function readSelectors(sels: readonly unknown[], errors: string[]): PolicySelector[] {
  const out: PolicySelector[] = [];
  sels.forEach((s: unknown, i: number) => {
    const path = `spec.selectors[${i}]`;
    if (!isObject(s)) {
      errors.push(`${path}: must be an object`);
      return;
    }
    const sel: PolicySelector = {};
    const pod = s['podSelector'];
    const ns = s['namespaceSelector'];
    if ((pod === undefined || pod === null) && (ns === undefined || ns === null)) {
      errors.push(`${path}.podSelector: required`);
      return;
    }
    for (const [field, v] of [
      ['podSelector', pod],
      ['namespaceSelector', ns],
    ] as const) {
      if (v === undefined || v === null) continue;
      const e = validateLabelSelector(v, `${path}.${field}`);
      if (e.length > 0) errors.push(...e);
      else sel[field] = copySelector(v as LabelSelector);
    }
    out.push(sel);
  });
  return out;
}

export function analysePolicy(p: EgressGatewayPolicy): PolicyInfo {
  const md = (isObject(p.metadata) ? p.metadata : {}) as EgressGatewayPolicy['metadata'];
  const errors: string[] = [];
  const info: PolicyInfo = {
    name: nameOf(p),
    policy: p,
    uid: typeof md.uid === 'string' ? md.uid : '',
    generation: typeof md.generation === 'number' ? md.generation : undefined,
    gatewayName: '',
    errors,
    selectors: [],
    destinationCIDRs: [],
    excludedCIDRs: [],
  };
  const spec: unknown = (p as { spec?: unknown }).spec;
  if (!isObject(spec)) {
    errors.push('spec: required');
    return info;
  }
  const gwName = spec['egressGatewayName'];
  if (typeof gwName !== 'string' || gwName === '') errors.push('spec.egressGatewayName: required');
  else info.gatewayName = gwName;
  info.destinationCIDRs = cidrList(spec['destinationCIDRs'], 'spec.destinationCIDRs', true, errors);
  // Missing and empty are the same: normalise to [] (deckhouse/deckhouse#8930); rendered only when non-empty.
  info.excludedCIDRs = cidrList(spec['excludedCIDRs'], 'spec.excludedCIDRs', false, errors);
  const sels = spec['selectors'];
  if (!Array.isArray(sels) || sels.length === 0) errors.push('spec.selectors: required (at least one selector)');
  else {
    info.selectors = readSelectors(sels, errors);
    // The normalised copy usually equals the input (which informer caches share between objects, see
    // src/controller/intern.ts): then keep the input and let the copy go; 10,000 policies otherwise
    // each hold their own copy.
    if (errors.length === 0 && jsonEqual(info.selectors, sels)) info.selectors = sels as PolicySelector[];
  }
  if (jsonEqual(info.destinationCIDRs, spec['destinationCIDRs'])) info.destinationCIDRs = spec['destinationCIDRs'] as string[];
  if (jsonEqual(info.excludedCIDRs, spec['excludedCIDRs'])) info.excludedCIDRs = spec['excludedCIDRs'] as string[];
  return info;
}
