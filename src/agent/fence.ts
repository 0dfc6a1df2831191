// The kernel dead-man's switch (design §6, §10): nftables gates every answer this node gives for a VIP,
// and the gate closes by itself at a deadline unless the agent keeps moving it — killed, frozen or cut
// off from the API, the node goes quiet for the VIP within milliseconds of the deadline.
//
// Two tables named egressgw_fence (the data plane's `inet egressgw` is a different table):
//   arp  egressgw_fence  output: ARP frames whose sender IP is a VIP (replies to "who has VIP?", and
//                        requests the kernel sends with the VIP as sender) are dropped unless open
//   inet egressgw_fence  prerouting (priority -310, before conntrack and NAT): IP to a VIP dropped;
//                        postrouting (priority 110, after source NAT): IP from a VIP dropped, which
//                        includes the kernel's Neighbor Advertisements for an IPv6 VIP (their source
//                        is the VIP) — unless open
// Sets: `vips` / `vips4` / `vips6` hold the gated VIPs (no timeout); `open` / `open4` / `open6` hold the
// open ones, each element with a timeout. A VIP answers only while its `open` element lives. Refreshing
// an element means delete + add in one transaction (re-adding an existing element keeps its old
// timeout), preceded by an add so that the delete never fails on an element that already expired.
//
// Not covered by these hooks: frames sent through AF_PACKET, i.e. the agent's own gratuitous ARP /
// unsolicited NA and the announcer's replies on interfaces without the VIP. The agent checks the same
// deadline, on the same monotonic clock, synchronously before each such send (agent.ts), and a dead or
// frozen agent sends nothing. Not covered either: Cilium's eBPF source NAT, which happens after
// netfilter; there the gate still silences ARP, so the upstream router stops sending to this node.
//
// A restarting agent keeps the gated set (install() preserves it) and closes every gate: the old
// process's promises die with it, and the VIP's address (still on the interface for up to its
// lifetime) must not answer again until the new process has renewed its heartbeat.

import ipaddr from 'ipaddr.js';
import type { Nft, NftObject } from './net/nft.ts';
import { setElements } from './net/nft.ts';

export const FENCE_TABLE = 'egressgw_fence';

/** Chain priorities: before conntrack/DNAT (raw is -300) and after SNAT (srcnat is 100). */
const PRE_PRIORITY = -310;
const POST_PRIORITY = 110;

function definition(): string {
  return `table arp ${FENCE_TABLE} {
  set vips { type ipv4_addr; }
  set open { type ipv4_addr; flags timeout; }
  chain output { type filter hook output priority 0; policy accept;
    arp saddr ip @vips arp saddr ip != @open drop
  }
}
table inet ${FENCE_TABLE} {
  set vips4 { type ipv4_addr; }
  set open4 { type ipv4_addr; flags timeout; }
  set vips6 { type ipv6_addr; }
  set open6 { type ipv6_addr; flags timeout; }
  chain prerouting { type filter hook prerouting priority ${PRE_PRIORITY}; policy accept;
    ip daddr @vips4 ip daddr != @open4 drop
    ip6 daddr @vips6 ip6 daddr != @open6 drop
  }
  chain postrouting { type filter hook postrouting priority ${POST_PRIORITY}; policy accept;
    ip saddr @vips4 ip saddr != @open4 drop
    ip6 saddr @vips6 ip6 saddr != @open6 drop
  }
}`;
}

/** The sets an address of one family lives in: [table family, gated set, open set]. */
function setsFor(family: 4 | 6): Array<[family: 'arp' | 'inet', gated: string, open: string]> {
  return family === 4 ? [['arp', 'vips', 'open'], ['inet', 'vips4', 'open4']] : [['inet', 'vips6', 'open6']];
}

function familyOf(ip: string): 4 | 6 {
  return ipaddr.parse(ip).kind() === 'ipv4' ? 4 : 6;
}

/** Groups addresses by family and renders `cmd(family, gatedSet, openSet, list)` for each non-empty group. */
function perSet(ips: readonly string[], cmd: (family: 'arp' | 'inet', gated: string, open: string, list: string) => string[]): string[] {
  const lines: string[] = [];
  for (const fam of [4, 6] as const) {
    const group = ips.filter((ip) => familyOf(ip) === fam);
    if (group.length === 0) continue;
    for (const [family, gated, open] of setsFor(fam)) lines.push(...cmd(family, gated, open, group.join(', ')));
  }
  return lines;
}

export interface FenceState {
  /** VIPs the gate knows (answers for them are dropped unless open). */
  gated: string[];
  /** VIPs open right now (an element that has not timed out). */
  open: string[];
}

export class Fence {
  readonly #nft: Nft;
  readonly #now: () => number;

  /** `now`: the monotonic clock (ms) the deadlines passed to openUntil() are on. */
  constructor(nft: Nft, now: () => number = () => performance.now()) {
    this.#nft = nft;
    this.#now = now;
  }

  /**
   * Creates (or re-creates, e.g. after an upgrade changed a rule) both tables in one transaction, with
   * every gate closed and the VIPs a previous agent process gated still gated.
   */
  install(): void {
    const keep = this.state().gated;
    const script = [
      // `add` first so that `delete` succeeds whether or not the table exists: still one transaction.
      `add table arp ${FENCE_TABLE}`, `delete table arp ${FENCE_TABLE}`,
      `add table inet ${FENCE_TABLE}`, `delete table inet ${FENCE_TABLE}`,
      definition(),
      ...perSet(keep, (family, gated, _open, list) => [`add element ${family} ${FENCE_TABLE} ${gated} { ${list} }`]),
    ];
    this.#nft.run(script.join('\n'));
  }

  /** Removes both tables: nothing is gated (reference mode, which has no heartbeat to gate on). */
  uninstall(): void {
    this.#nft.run([`add table arp ${FENCE_TABLE}`, `delete table arp ${FENCE_TABLE}`, `add table inet ${FENCE_TABLE}`, `delete table inet ${FENCE_TABLE}`].join('\n'));
  }

  /**
   * Gates `ips` and opens them until `deadline` (on the constructor's clock), in one transaction.
   * Returns false, changing nothing, when the deadline is not at least 1 ms away: a caller that was
   * frozen between computing the deadline and calling this must not reopen anything.
   */
  openUntil(ips: readonly string[], deadline: number): boolean {
    if (ips.length === 0) return true;
    // Rounded down: the kernel rounds the timeout up to its next tick, so this errs towards closing early.
    const ms = Math.floor(deadline - this.#now());
    if (ms < 1) return false;
    const timed = (list: string) => list.split(', ').map((ip) => `${ip} timeout ${ms}ms`).join(', ');
    this.#nft.run(perSet(ips, (family, gated, open, list) => [
      `add element ${family} ${FENCE_TABLE} ${gated} { ${list} }`,
      `add element ${family} ${FENCE_TABLE} ${open} { ${list} }`,
      `delete element ${family} ${FENCE_TABLE} ${open} { ${list} }`,
      `add element ${family} ${FENCE_TABLE} ${open} { ${timed(list)} }`,
    ]).join('\n'));
    return true;
  }

  /** Closes the gate for `ips` at once (they stay gated). */
  close(ips: readonly string[]): void {
    if (ips.length === 0) return;
    this.#nft.run(perSet(ips, (family, _gated, open, list) => [
      `add element ${family} ${FENCE_TABLE} ${open} { ${list} }`,
      `delete element ${family} ${FENCE_TABLE} ${open} { ${list} }`,
    ]).join('\n'));
  }

  /**
   * Stops gating `ips` altogether. Only for addresses this node no longer has on any interface (a
   * gated set entry is otherwise harmless, and forgetting one that is still assigned would let the
   * kernel answer for it).
   */
  forget(ips: readonly string[]): void {
    if (ips.length === 0) return;
    this.#nft.run(perSet(ips, (family, gated, open, list) => [
      `add element ${family} ${FENCE_TABLE} ${gated} { ${list} }`,
      `delete element ${family} ${FENCE_TABLE} ${gated} { ${list} }`,
      `add element ${family} ${FENCE_TABLE} ${open} { ${list} }`,
      `delete element ${family} ${FENCE_TABLE} ${open} { ${list} }`,
    ]).join('\n'));
  }

  /** Removes the tables when nothing is gated any more (graceful shutdown leaves no trace behind). */
  release(): void {
    if (this.state().gated.length === 0) this.uninstall();
  }

  /** What the kernel holds right now (canonical addresses, sorted). */
  state(): FenceState {
    const arp = this.#nft.listTable('arp', FENCE_TABLE);
    const inet = this.#nft.listTable('inet', FENCE_TABLE);
    const canon = (xs: string[]) => [...new Set(xs.map((x) => ipaddr.parse(x).toString()))].sort();
    const pick = (t: NftObject[] | undefined, ...sets: string[]) => sets.flatMap((s) => setElements(t, s));
    return {
      gated: canon([...pick(arp, 'vips'), ...pick(inet, 'vips4', 'vips6')]),
      open: canon([...pick(arp, 'open'), ...pick(inet, 'open4', 'open6')]),
    };
  }
}
