// The SNAT remaps of a gateway's VIP, replicated so that the next active node can pre-seed them (issue 11,
// docs/dataplane.md "Failover"). Pure: parsing `conntrack -L` output, choosing what the active node
// publishes, deciding whether that is a change worth an API write, validating what the next owner reads
// back, and the `conntrack -I` arguments that seed one entry. No I/O, no clock.
//
// A remap is a connection that SNAT could not give its pod's own source port (another connection to the
// same server ip:port already held VIP:port): the pod's port p became p'. After a failover the new node's
// loose pickup would give it a port the server never saw (or steal the other one's): it must hold the
// entry before the first packet arrives. Connections that kept their port need nothing: the new node's
// pickup keeps the port too. So only remaps are replicated, and they are rare (only clashes).

import { isIPv4 } from 'node:net';
import type { SnatRemap, SnatRemapList } from '../api/types.ts';

/** At most this many remaps per gateway are published: the status stays small whatever happens. */
export const MAX_PUBLISHED_REMAPS = 128;

interface Tuple {
  src: string;
  dst: string;
  sport: number;
  dport: number;
}

/** One `conntrack -L` line (the parts a remap needs). */
export interface ConntrackLine {
  protocol: string;
  /** TCP state (ESTABLISHED, …); '' for protocols without one. */
  state: string;
  original: Tuple;
  reply: Tuple;
}

const STATE = /^[A-Z_]+$/;

/**
 * Lines of `conntrack -L` (default or `-o extended` format). The first src/dst/sport/dport are the
 * original direction, the second the reply. Lines that are not a full TCP/UDP entry are skipped.
 */
export function parseConntrack(text: string): ConntrackLine[] {
  const out: ConntrackLine[] = [];
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/);
    const protocol = words.find((w) => w === 'tcp' || w === 'udp');
    if (protocol === undefined) continue;
    const state = protocol === 'tcp' ? (words.find((w) => STATE.test(w)) ?? '') : '';
    const seen: Record<string, string[]> = { src: [], dst: [], sport: [], dport: [] };
    for (const w of words) {
      const eq = w.indexOf('=');
      if (eq < 0) continue;
      seen[w.slice(0, eq)]?.push(w.slice(eq + 1));
    }
    const tuple = (i: number): Tuple | undefined => {
      const [src, dst, sport, dport] = [seen.src![i], seen.dst![i], Number(seen.sport![i]), Number(seen.dport![i])];
      if (src === undefined || dst === undefined || !isPort(sport) || !isPort(dport)) return undefined;
      return { src, dst, sport, dport };
    };
    const original = tuple(0);
    const reply = tuple(1);
    if (original && reply) out.push({ protocol, state, original, reply });
  }
  return out;
}

/**
 * The connections SNATed to `vip` whose port SNAT changed: established TCP from a pod (not the VIP itself),
 * no DNAT on the way (the reply comes from the original destination), reply port ≠ the pod's port.
 */
export function remapsTo(lines: readonly ConntrackLine[], vip: string): SnatRemap[] {
  const out: SnatRemap[] = [];
  for (const l of lines) {
    const { original: o, reply: r } = l;
    if (l.protocol !== 'tcp' || l.state !== 'ESTABLISHED') continue;
    if (r.dst !== vip || o.src === vip || r.src !== o.dst || r.sport !== o.dport) continue;
    if (r.dport === o.sport) continue; // kept its port: the new node's pickup keeps it too
    out.push({ podIP: o.src, podPort: o.sport, serverIP: o.dst, serverPort: o.dport, natPort: r.dport });
  }
  return out;
}

export function remapKey(r: SnatRemap): string {
  return `${r.podIP}:${r.podPort}>${r.serverIP}:${r.serverPort}=${r.natPort}`;
}

const byKey = (a: SnatRemap, b: SnatRemap) => (remapKey(a) < remapKey(b) ? -1 : remapKey(a) > remapKey(b) ? 1 : 0);

/**
 * What the active node publishes for `vip`: its remaps, deduplicated, in a fixed order (so an unchanged
 * set is an unchanged list, and no write), at most `limit` of them (`omitted` says how many were left out).
 */
export function publication(node: string, vip: string, remaps: readonly SnatRemap[], limit = MAX_PUBLISHED_REMAPS): SnatRemapList {
  const unique = [...new Map(remaps.map((r) => [remapKey(r), r])).values()].sort(byKey);
  return { node, vip, omitted: Math.max(0, unique.length - limit), connections: unique.slice(0, limit) };
}

/**
 * Whether the published list must be replaced by `next`: the connections (or the count left out) differ,
 * or the VIP changed. A list from another node with the same connections is not rewritten (after a
 * takeover the new node holds the entries it seeded: the same list); an empty one is not written over an
 * absent one (no write for a gateway that never had a remap).
 */
export function publishNeeded(current: SnatRemapList | undefined, next: SnatRemapList): boolean {
  if (current === undefined) return next.connections.length > 0 || next.omitted > 0;
  if (current.vip !== next.vip || (current.omitted ?? 0) !== next.omitted) return true;
  const have = (current.connections ?? []).map(remapKey);
  const want = next.connections.map(remapKey);
  return have.length !== want.length || have.some((k, i) => k !== want[i]);
}

/**
 * The remaps of `list` (read back from the API: any shape) that the next owner of `vip` seeds, and a
 * description of each entry it cannot use. A list published for another VIP (the gateway's VIP changed
 * since) holds nothing for this one.
 */
export function remapsToSeed(list: unknown, vip: string): { remaps: SnatRemap[]; invalid: string[] } {
  const l = list as Partial<SnatRemapList> | undefined;
  if (l === undefined || l === null || l.vip !== vip || !Array.isArray(l.connections)) return { remaps: [], invalid: [] };
  const remaps: SnatRemap[] = [];
  const invalid: string[] = [];
  l.connections.forEach((c: Partial<SnatRemap> | null, i) => {
    const ok = c !== null && typeof c === 'object' && isIPv4(String(c.podIP)) && isIPv4(String(c.serverIP)) && isPort(c.podPort) && isPort(c.serverPort) && isPort(c.natPort);
    if (ok) remaps.push({ podIP: c.podIP!, podPort: c.podPort!, serverIP: c.serverIP!, serverPort: c.serverPort!, natPort: c.natPort! });
    else invalid.push(`status.snatRemaps.connections[${i}]: ${JSON.stringify(c)}`);
  });
  return { remaps: remaps.slice(0, MAX_PUBLISHED_REMAPS), invalid };
}

/**
 * `conntrack` arguments that insert one remap as the old node held it. `--src-nat IP:port` as two words
 * (conntrack 1.4.7 silently drops `--src-nat=IP:port`) and no reply tuple: the kernel then sets the NAT
 * binding up itself (status SRC_NAT, reply to VIP:natPort), which a given reply tuple would not, and the
 * data plane's snat_guard drops packets of an entry without it. ESTABLISHED with SEEN_REPLY,ASSURED: the
 * entry is a live connection at once, no pickup needed, and it is not early-dropped under table pressure.
 */
export function seedArgs(r: SnatRemap, vip: string, timeoutSeconds: number): string[] {
  return ['-I', ...tupleArgs(r), '--src-nat', `${vip}:${r.natPort}`, '--state', 'ESTABLISHED', '-u', 'SEEN_REPLY,ASSURED', '-t', String(timeoutSeconds)];
}

/** `conntrack -D` arguments for the entry with the remap's original tuple (whatever its NAT). */
export function deleteArgs(r: SnatRemap): string[] {
  return ['-D', ...tupleArgs(r)];
}

/** `conntrack -G` arguments: the entry with the remap's original tuple. */
export function getArgs(r: SnatRemap): string[] {
  return ['-G', ...tupleArgs(r)];
}

function tupleArgs(r: SnatRemap): string[] {
  return ['-p', 'tcp', '-s', r.podIP, '-d', r.serverIP, '--sport', String(r.podPort), '--dport', String(r.serverPort)];
}

function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}
