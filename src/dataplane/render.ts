// NodeDataplane → what the kernel must hold: one nftables script that replaces table `inet egressgw`
// atomically, plus the route tables and ip rules of the source-side slots. Pure; the layout and every
// range are explained in docs/dataplane.md.

import type { NodeDataplane, Verdict } from './model.ts';
import { MAX_EGRESS_SLOT } from './model.ts';
import { formatRange, type Range } from './ranges.ts';

export const TABLE_FAMILY = 'inet';
export const TABLE_NAME = 'egressgw';

export interface DataplaneSettings {
  /** The VXLAN-GPE device (external mode) every node has. */
  device: string;
  /** UDP port of the tunnel. */
  tunnelPort: number;
  /** Contiguous mark bits we own (at least 8). */
  markMask: number;
  /** Source-side slot s routes through table `routeTableBase + s`. */
  routeTableBase: number;
  /** Priority of our ip rules. */
  rulePriority: number;
}

export const DEFAULT_DATAPLANE_SETTINGS: Readonly<DataplaneSettings> = Object.freeze({
  device: 'egw0',
  tunnelPort: 4790,
  markMask: 0xff000000,
  routeTableBase: 26000,
  rulePriority: 2500,
});

/** Problems with the settings (flag names in the messages), empty when usable. */
export function settingsProblems(s: DataplaneSettings): string[] {
  const p: string[] = [];
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(s.device)) p.push(`--tunnel-device: "${s.device}" is not an interface name`);
  if (!Number.isInteger(s.tunnelPort) || s.tunnelPort < 1 || s.tunnelPort > 65535) p.push(`--tunnel-port: ${s.tunnelPort} is not a UDP port`);
  const m = s.markMask >>> 0;
  const shift = m === 0 ? 0 : Math.log2(m & -m);
  const bits = (m >>> shift).toString(2);
  if (m !== s.markMask || m === 0 || /0/.test(bits) || bits.length < 8) {
    p.push(`--fwmark-mask: 0x${s.markMask.toString(16)} must be at least 8 contiguous bits`);
  }
  const base = s.routeTableBase;
  if (!Number.isInteger(base) || base < 256 || base + MAX_EGRESS_SLOT > 0xfffffff0) p.push(`--route-table-base: ${base} must leave room for ${MAX_EGRESS_SLOT} tables above 255`);
  if (!Number.isInteger(s.rulePriority) || s.rulePriority < 1 || s.rulePriority >= 32766) p.push(`--rule-priority: ${s.rulePriority} must lie between the local (0) and main (32766) rules`);
  return p;
}

/** The mark value of a slot under the mask. */
export function slotMark(slot: number, mask: number): number {
  const shift = Math.log2((mask >>> 0) & -(mask >>> 0));
  return (slot * 2 ** shift) >>> 0;
}

const hex = (n: number): string => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;

function elements(items: readonly string[]): string {
  return items.length === 0 ? '' : ` elements = { ${items.join(', ')} }`;
}

function rangeElements(ranges: readonly Range[]): string[] {
  return ranges.map(formatRange);
}

function verdictText(v: Verdict): string {
  return v === 'drop' ? 'drop' : `jump ${v}`;
}

/**
 * The nft script: create-if-missing, delete, define. One `nft -f` transaction, so the kernel holds either
 * the old table or the new one, never a mix, and nothing stale survives an update.
 */
export function renderNft(dp: NodeDataplane, s: DataplaneSettings): string {
  const mask = s.markMask >>> 0;
  const keep = hex(~mask);
  const dev = JSON.stringify(s.device);
  const egressLow = hex(slotMark(1, mask));
  const egressHigh = hex(slotMark(MAX_EGRESS_SLOT, mask));
  const ingressMarks = dp.ingress.map((i) => hex(slotMark(i.slot, mask)));
  const L: string[] = [];
  L.push(`table ${TABLE_FAMILY} ${TABLE_NAME} {}`, `delete table ${TABLE_FAMILY} ${TABLE_NAME}`, `table ${TABLE_FAMILY} ${TABLE_NAME} {`);
  L.push('\tcomment "egressgw Linux data plane: written by the node agent, see docs/dataplane.md"');
  L.push(`\tset cluster4 { type ipv4_addr; flags interval;${elements(rangeElements(dp.cluster))} }`);
  L.push(`\tset podnets4 { type ipv4_addr; flags interval;${elements(rangeElements(dp.podNets))} }`);
  L.push(`\tset known4 { type ipv4_addr;${elements(dp.known)} }`);
  L.push(`\tset vips4 { type ipv4_addr;${elements(dp.vips)} }`);
  const podEntries: string[] = [];
  for (const c of dp.classes) for (const ip of c.pods) podEntries.push(`${ip} : jump ${c.id}`);
  L.push(`\tmap pods4 { type ipv4_addr : verdict;${elements(podEntries)} }`);
  L.push(`\tmap tunnel_in4 { typeof @th,96,24 : meta mark;${elements(dp.ingress.map((i) => `${i.tunnelID} : ${hex(slotMark(i.slot, mask))}`))} }`);
  L.push(`\tmap snat4 { type mark : ipv4_addr;${elements(dp.ingress.map((i) => `${hex(slotMark(i.slot, mask))} : ${i.snat}`))} }`);
  for (const c of dp.classes) {
    L.push(`\tmap ${c.id} { type ipv4_addr : verdict; flags interval;${elements(c.ranges.map((r) => `${formatRange(r)} : ${verdictText(r.verdict)}`))} }`);
    L.push(`\tchain ${c.id} {`, `\t\tcomment ${JSON.stringify(`policies ${c.policies.join(', ')}`)}`, `\t\tip daddr vmap @${c.id}`, '\t}');
  }
  for (const e of dp.egress) {
    L.push(`\tchain gw_${e.slot} {`, `\t\tcomment ${JSON.stringify(`gateway ${e.gateway} via ${e.endpoint}, tunnel id ${e.tunnelID}`)}`);
    L.push(`\t\tmeta mark set meta mark & ${keep} | ${hex(slotMark(e.slot, mask))}`, '\t}');
  }
  for (const i of dp.ingress) {
    // A gateway active on this node: its pods' packets get the tunnel-in mark directly (SNAT here, no tunnel).
    L.push(`\tchain in_${i.slot} {`, `\t\tcomment ${JSON.stringify(`gateway ${i.gateway} active here`)}`);
    L.push(`\t\tmeta mark set meta mark & ${keep} | ${hex(slotMark(i.slot, mask))}`, '\t}');
  }
  L.push('\tchain tunnel_in {', '\t\ttype filter hook prerouting priority raw; policy accept;');
  L.push(`\t\tudp dport ${s.tunnelPort} fib daddr type local meta mark set @th,96,24 map @tunnel_in4`, '\t}');
  L.push('\tchain prerouting {', '\t\ttype filter hook prerouting priority mangle + 10; policy accept;');
  L.push('\t\tmeta nfproto != ipv4 return');
  // A segment to a VIP that conntrack does not tie to a connection of this node (one another gateway node
  // carried before a failover) would reach our own stack, which has no socket for it and answers with a RST
  // that kills the connection at the remote. Dropped instead: the remote retransmits until the pod's next
  // segment has re-created the entry (tcp_loose). Conntrack picks data and bare ACKs up as `new`; a FIN or a
  // RST it cannot pick up (`invalid`). Only TCP (an ICMP error for no socket draws no answer); not a SYN, so
  // connections to the VIP itself still open.
  L.push('\t\tip daddr @vips4 tcp flags & (fin | syn | rst | ack) != syn ct state { new, invalid } counter drop comment "no RST for a connection another gateway node carried"');
  L.push(`\t\tiifname ${dev} return`);
  L.push('\t\tip saddr != @podnets4 return');
  L.push('\t\tip daddr @cluster4 return');
  L.push('\t\tip saddr != @known4 counter drop comment "drop until programmed"');
  L.push('\t\tip saddr vmap @pods4', '\t}');
  L.push('\tchain forward {', '\t\ttype filter hook forward priority filter - 10; policy accept;');
  L.push(ingressMarks.length === 0
    ? `\t\tiifname ${dev} counter drop comment "tunnelled traffic of no gateway served here"`
    : `\t\tiifname ${dev} meta mark & ${hex(mask)} != { ${ingressMarks.join(', ')} } counter drop comment "tunnelled traffic of no gateway served here"`);
  L.push(`\t\toifname ${dev} tcp flags syn tcp option maxseg size set rt mtu`, '\t}');
  L.push('\tchain out_guard {', '\t\ttype filter hook postrouting priority raw; policy accept;');
  L.push(`\t\toifname ${dev} meta mark set meta mark & ${keep} accept`);
  L.push(`\t\tmeta mark & ${hex(mask)} ${egressLow}-${egressHigh} counter drop comment "a redirected packet never leaves any other way"`, '\t}');
  L.push('\tchain nat_out {', '\t\ttype nat hook postrouting priority srcnat - 1; policy accept;');
  L.push(`\t\toifname ${dev} snat ip to ip saddr comment "keep the pod address: no later masquerade rule may rewrite it"`);
  // Decapsulated packets and those of this node's own pods of a gateway active here: their mark (the only
  // one left: out_guard cleared or dropped the tunnel marks) picks the source address.
  L.push(`\t\tmeta mark & ${hex(mask)} != 0 snat ip to meta mark & ${hex(mask)} map @snat4`, '\t}');
  // After NAT: a packet meant for SNAT that was not SNATed (its connection's entry predates a change of
  // path and kept an older, identity binding) never leaves with a pod's address.
  L.push('\tchain snat_guard {', '\t\ttype filter hook postrouting priority srcnat + 1; policy accept;');
  // A packet conntrack marks invalid has no entry, so `ct status` does not match it at all: a pod's FIN for
  // a connection another gateway node carried (conntrack cannot pick a connection up from a FIN) would
  // otherwise leave with the pod's address.
  L.push(`\t\tmeta mark & ${hex(mask)} != 0 ct status & snat == 0 counter drop comment "meant for SNAT, not SNATed"`);
  L.push(`\t\tmeta mark & ${hex(mask)} != 0 ct state invalid counter drop comment "meant for SNAT, no conntrack entry to SNAT it with"`, '\t}');
  L.push('}');
  return `${L.join('\n')}\n`;
}

/** The model without its pods: two models with the same structure differ only in pod elements. */
export function withoutPods(dp: NodeDataplane): NodeDataplane {
  return { ...dp, known: [], classes: dp.classes.map((c) => ({ ...c, pods: [] })) };
}

/**
 * One transaction that turns the pod elements of `from` into those of `to` (same structure): deletions
 * first, so a pod that changed class is deleted and re-added. An element the kernel does not hold makes
 * it fail as a whole; the caller then replaces the table.
 */
export function renderPodDelta(from: NodeDataplane, to: NodeDataplane): string {
  const t = `${TABLE_FAMILY} ${TABLE_NAME}`;
  const classOf = (dp: NodeDataplane) => {
    const m = new Map<string, string>();
    for (const c of dp.classes) for (const ip of c.pods) m.set(ip, c.id);
    return m;
  };
  const a = classOf(from);
  const b = classOf(to);
  const knownA = new Set(from.known);
  const knownB = new Set(to.known);
  const delPods = [...a].filter(([ip, c]) => b.get(ip) !== c).map(([ip]) => ip);
  const addPods = [...b].filter(([ip, c]) => a.get(ip) !== c).map(([ip, c]) => `${ip} : jump ${c}`);
  const delKnown = from.known.filter((ip) => !knownB.has(ip));
  const addKnown = to.known.filter((ip) => !knownA.has(ip));
  const L: string[] = [];
  if (delPods.length > 0) L.push(`delete element ${t} pods4 { ${delPods.join(', ')} }`);
  if (delKnown.length > 0) L.push(`delete element ${t} known4 { ${delKnown.join(', ')} }`);
  if (addKnown.length > 0) L.push(`add element ${t} known4 { ${addKnown.join(', ')} }`);
  if (addPods.length > 0) L.push(`add element ${t} pods4 { ${addPods.join(', ')} }`);
  return `${L.join('\n')}\n`;
}

export interface RouteSpec {
  table: number;
  tunnelID: number;
  endpoint: string;
}

export interface RuleSpec {
  priority: number;
  mark: number;
  mask: number;
  table: number;
}

export function desiredRoutes(dp: NodeDataplane, s: DataplaneSettings): RouteSpec[] {
  return dp.egress.map((e) => ({ table: s.routeTableBase + e.slot, tunnelID: e.tunnelID, endpoint: e.endpoint }));
}

export function desiredRules(dp: NodeDataplane, s: DataplaneSettings): RuleSpec[] {
  return dp.egress.map((e) => ({ priority: s.rulePriority, mark: slotMark(e.slot, s.markMask), mask: s.markMask >>> 0, table: s.routeTableBase + e.slot }));
}

/** Our route tables: `routeTableBase + 1 … + MAX_EGRESS_SLOT`. */
export function isOurTable(table: number, s: DataplaneSettings): boolean {
  return table > s.routeTableBase && table <= s.routeTableBase + MAX_EGRESS_SLOT;
}
