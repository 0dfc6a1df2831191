// IPv4 ranges for the nftables interval maps: CIDR parsing, merging, and longest-prefix-match flattening.
//
// Why flatten: a pod may be selected by several policies whose destination and excluded CIDRs nest
// (0.0.0.0/0 via gateway A, 10.0.0.0/8 excluded, 10.1.0.0/16 via gateway B). Cilium resolves that with an
// LPM lookup; an nftables interval map rejects overlapping elements, so the same answer is precomputed as
// disjoint ranges, each carrying the verdict of the longest prefix that covers it.

import ipaddr from 'ipaddr.js';

/** An inclusive range of IPv4 addresses as unsigned 32-bit numbers. */
export interface Range {
  first: number;
  last: number;
}

export interface Prefix extends Range {
  len: number;
}

const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const DOTTED_QUAD = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);

/**
 * Dotted quad → number, or undefined unless it is a four-part decimal IPv4 address without leading zeros
 * (what the kernel and Kubernetes print). Hand-written rather than ipaddr.js: a node's data plane parses
 * every pod address on every update, and this is an order of magnitude faster.
 */
export function parseIPv4(text: string): number | undefined {
  const m = typeof text === 'string' ? DOTTED_QUAD.exec(text) : null;
  if (!m) return undefined;
  return Number(m[1]) * 16777216 + Number(m[2]) * 65536 + Number(m[3]) * 256 + Number(m[4]);
}

export function formatIPv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * `a.b.c.d/len` → the prefix (host bits cleared, as the kernel would), or an error message. Only IPv4:
 * the Linux data plane, like Cilium's egress gateway, redirects IPv4 only.
 */
export function parseCIDR4(text: unknown): Prefix | { error: string } {
  if (typeof text !== 'string') return { error: 'not a string' };
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  if (!m) {
    return { error: ipaddr.IPv6.isValidCIDR(text) ? `IPv6 CIDR "${text}" is not supported by the Linux data plane (IPv4 only)` : `"${text}" is not an IPv4 CIDR` };
  }
  const addr = parseIPv4(m[1]!);
  const len = Number(m[2]);
  if (addr === undefined || len > 32) return { error: `"${text}" is not an IPv4 CIDR` };
  const size = 2 ** (32 - len);
  const first = Math.floor(addr / size) * size;
  return { first, last: first + size - 1, len };
}

/** Sorted, merged (overlapping and adjacent ranges joined): an nftables interval set rejects overlaps. */
export function mergeRanges(ranges: readonly Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => a.first - b.first || a.last - b.last);
  const out: Range[] = [];
  for (const r of sorted) {
    const prev = out[out.length - 1];
    if (prev && r.first <= prev.last + 1) prev.last = Math.max(prev.last, r.last);
    else out.push({ first: r.first, last: r.last });
  }
  return out;
}

/** `a.b.c.d/len` when the range is exactly one prefix, else `a.b.c.d-e.f.g.h` (both are nft syntax). */
export function formatRange(r: Range): string {
  const size = r.last - r.first + 1;
  const len = 32 - Math.log2(size);
  if (Number.isInteger(len) && r.first % size === 0) return len === 32 ? formatIPv4(r.first) : `${formatIPv4(r.first)}/${len}`;
  return `${formatIPv4(r.first)}-${formatIPv4(r.last)}`;
}

export interface LpmEntry<V> extends Prefix {
  /** undefined: excluded (no redirection) — it wins over a redirection of the same prefix. */
  value: V | undefined;
  /** Tie-break between redirections of the same prefix: the lowest rank wins (policy name order). */
  rank: number;
}

export interface LpmRange<V> extends Range {
  value: V;
}

/**
 * Disjoint ranges with, for each address, the value of the longest prefix covering it; excluded and
 * uncovered addresses are left out; adjacent ranges with the same value are joined. Values are compared
 * with `===` (use strings or shared objects).
 */
export function flattenLpm<V>(entries: readonly LpmEntry<V>[]): LpmRange<V>[] {
  if (entries.length === 0) return [];
  const bounds = new Set<number>();
  for (const e of entries) {
    bounds.add(e.first);
    if (e.last < 0xffffffff) bounds.add(e.last + 1);
  }
  const points = [...bounds].sort((a, b) => a - b);
  const better = (a: LpmEntry<V>, b: LpmEntry<V>): boolean => {
    if (a.len !== b.len) return a.len > b.len;
    if ((a.value === undefined) !== (b.value === undefined)) return a.value === undefined;
    return a.rank < b.rank;
  };
  const out: LpmRange<V>[] = [];
  for (let i = 0; i < points.length; i++) {
    const first = points[i]!;
    const last = i + 1 < points.length ? points[i + 1]! - 1 : 0xffffffff;
    let best: LpmEntry<V> | undefined;
    for (const e of entries) {
      if (e.first <= first && e.last >= last && (best === undefined || better(e, best))) best = e;
    }
    if (best === undefined || best.value === undefined) continue;
    const prev = out[out.length - 1];
    if (prev && prev.value === best.value && prev.last + 1 === first) prev.last = last;
    else out.push({ first, last, value: best.value });
  }
  return out;
}
