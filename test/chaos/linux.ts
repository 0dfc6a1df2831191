// The Linux data plane's invariant (`--dataplane linux`), checked on every node after every round:
//
//   read      each node's kernel with the operator's tools — `nft -j list table inet egressgw`,
//             `ip -j rule show`, `ip -4 route show table all`, `ip link` — parsed here, not through the
//             agent's code (src/agent/dataplane, src/dataplane);
//   expected  from the same snapshot the other checks use (the API's Pods, gateways' statuses and
//             dataplane objects) and the world (which policies are valid, what they select and where they
//             send): the node's Running pods with an address are known (`known4`); those some valid policy
//             of an existing gateway selects are redirected (`pods4`); for every destination, the verdict
//             of the longest prefix among the pod's policies (an exclusion wins a tie, then the policy
//             name) — the gateway's active node through the tunnel with the gateway's tunnel id, SNAT here
//             to the VIP or the node's primary address when it is this node, a drop when the gateway has
//             no active node (fail closed), no redirection when excluded or not covered;
//   compared  per pod and destination, at every boundary of both sides' ranges (two step functions that
//             agree at all their steps agree everywhere), following the kernel's path as a packet would:
//             pods4 → class map → gw_/in_ chain's mark → ip rule → route table → encap id and dst, or
//             snat4; on every node, tunnel_in4 maps each gateway's tunnel id to a mark that SNATs to its
//             VIP or the node's primary address (the active one above all); nothing stale: no class, gateway chain, rule, route or tunnel_in4
//             entry that nothing current uses.
//
// Bad objects (invalid, orphan, …) are not in the world: whatever they do must not show here.

import type { EgressGateway, EgressGatewayDataplane, PodLike } from '../../src/api/types.ts';
import { DEFAULT_DATAPLANE_SETTINGS, isOurTable } from '../../src/dataplane/render.ts';
import type { World } from './world.ts';

/** One node's data plane, as the kernel holds it. */
export interface LinuxKernel {
  /** Whether table inet egressgw exists (nothing else is then read from nft). */
  table: boolean;
  known: string[];
  /** pods4: pod address → what its packets do ('jump c_…', or another verdict). */
  pods: Map<string, string>;
  /** The table's interval verdict maps by name: ranges and verdict ('jump <chain>', 'drop', …). */
  maps: Map<string, Array<{ first: number; last: number; verdict: string }>>;
  /** The mark each chain sets (`meta mark set …`), by chain name. */
  marks: Map<string, number>;
  /** tunnel_in4: tunnel id → mark. */
  tunnelIn: Map<number, number>;
  /** snat4: mark → source address. */
  snat: Map<number, string>;
  /** ip rules at our priority or into our route tables. */
  rules: Array<{ priority: number; mark: number; mask: number; table: number }>;
  /** Routes in our route tables (by table) or through the tunnel device (table 0 when none is named). */
  routes: Array<{ table: number; line: string; id?: number; dst?: string }>;
  device: boolean;
}

export type Run = (cmd: string, args: string[]) => Promise<string>;

const S = DEFAULT_DATAPLANE_SETTINGS;

// ---- reading ----

export const ip4 = (s: string): number => s.split('.').reduce((a, o) => a * 256 + Number(o), 0);
export const fmt4 = (n: number): string => [24, 16, 8, 0].map((b) => Math.floor(n / 2 ** b) % 256).join('.');

type Json = Record<string, unknown>;

function rangeOf(key: unknown): { first: number; last: number } | undefined {
  if (typeof key === 'string') return { first: ip4(key), last: ip4(key) };
  const k = key as { prefix?: { addr: string; len: number }; range?: [string, string] } | undefined;
  if (k?.prefix) {
    const size = 2 ** (32 - k.prefix.len);
    const first = Math.floor(ip4(k.prefix.addr) / size) * size;
    return { first, last: first + size - 1 };
  }
  if (k?.range) return { first: ip4(k.range[0]), last: ip4(k.range[1]) };
  return undefined;
}

function verdictOf(v: unknown): string {
  const o = v as Json | undefined;
  if (o && typeof o === 'object') {
    const [kind, arg] = Object.entries(o)[0] ?? [];
    const target = (arg as { target?: string } | null)?.target;
    return target ? `${kind} ${target}` : String(kind);
  }
  return String(v);
}

/** The mark a `meta mark set` statement sets: a constant, or `(mark & keep) | value`. */
function markSet(expr: unknown): number | undefined {
  for (const e of Array.isArray(expr) ? expr : []) {
    const m = (e as { mangle?: { key?: { meta?: { key?: string } }; value?: unknown } }).mangle;
    if (m?.key?.meta?.key !== 'mark') continue;
    if (typeof m.value === 'number') return m.value;
    const or = (m.value as { '|'?: unknown[] } | undefined)?.['|'];
    if (Array.isArray(or) && typeof or[1] === 'number') return or[1];
  }
  return undefined;
}

/** Parses what the tools printed (nft's JSON, ip rule's JSON, ip route's text, whether the device exists). */
export function parseKernel(nftJson: string | undefined, ruleJson: string, routeText: string, device: boolean): LinuxKernel {
  const k: LinuxKernel = { table: nftJson !== undefined, known: [], pods: new Map(), maps: new Map(), marks: new Map(), tunnelIn: new Map(), snat: new Map(), rules: [], routes: [], device };
  for (const o of nftJson ? (JSON.parse(nftJson) as { nftables: Json[] }).nftables : []) {
    const set = o.set as { name: string; elem?: unknown[] } | undefined;
    if (set?.name === 'known4') k.known = (set.elem ?? []).map(String);
    const map = o.map as { name: string; elem?: Array<[unknown, unknown]> } | undefined;
    if (map) {
      const elems = map.elem ?? [];
      if (map.name === 'pods4') for (const [a, v] of elems) k.pods.set(String(a), verdictOf(v));
      else if (map.name === 'tunnel_in4') for (const [id, mark] of elems) k.tunnelIn.set(Number(id), Number(mark));
      else if (map.name === 'snat4') for (const [mark, a] of elems) k.snat.set(Number(mark), String(a));
      else {
        k.maps.set(map.name, elems.flatMap(([key, v]) => {
          const r = rangeOf(key);
          return r ? [{ ...r, verdict: verdictOf(v) }] : [];
        }));
      }
    }
    const rule = o.rule as { chain: string; expr?: unknown } | undefined;
    const mark = rule ? markSet(rule.expr) : undefined;
    if (rule && mark !== undefined) k.marks.set(rule.chain, mark >>> 0);
  }
  for (const r of JSON.parse(ruleJson || '[]') as Json[]) {
    const table = Number(r.table);
    if (r.priority !== S.rulePriority && !isOurTable(table, S)) continue;
    k.rules.push({ priority: Number(r.priority), mark: Number(r.fwmark ?? 0) >>> 0, mask: Number(r.fwmask ?? 0xffffffff) >>> 0, table });
  }
  for (const line of routeText.split('\n').map((l) => l.trim()).filter((l) => l !== '')) {
    const table = Number(/\btable (\d+)\b/.exec(line)?.[1] ?? 0);
    // The kernel's own local route of the tunnel device's address is no route of ours.
    if (!isOurTable(table, S) && (!new RegExp(`\\bdev ${S.device}\\b`).test(line) || /\btable local\b/.test(line))) continue;
    const m = /encap ip id (\d+) .*\bdst (\S+)/.exec(line);
    k.routes.push({ table, line, ...(m ? { id: Number(m[1]), dst: m[2]! } : {}) });
  }
  return k;
}

/** A node's data plane, read with nft and ip in its network namespace (`run` runs a command there). */
export async function readKernel(run: Run): Promise<LinuxKernel> {
  const nft = await run('nft', ['-j', 'list', 'table', 'inet', 'egressgw']).catch((err: unknown) => {
    if (/No such file or directory|does not exist/.test(String((err as Error).message))) return undefined;
    throw err;
  });
  const [rules, routes, links] = await Promise.all([run('ip', ['-4', '-j', 'rule', 'show']), run('ip', ['-4', 'route', 'show', 'table', 'all']), run('ip', ['-o', 'link', 'show'])]);
  const device = links.split('\n').some((l) => l.split(':')[1]?.trim().split('@')[0] === S.device);
  return parseKernel(nft, rules, routes, device);
}

// ---- what the snapshot implies ----

export interface LinuxInput {
  world: World;
  /** The API's objects at the moment of the check. */
  gateways: readonly EgressGateway[];
  dataplanes: readonly EgressGatewayDataplane[];
  pods: readonly PodLike[];
  /** Node name → its LAN address (the tunnel endpoint, and the primary address of eth0). */
  nodeIps: ReadonlyMap<string, string>;
  /** The cluster's pod CIDR (pods outside it are never redirected). */
  podCIDR: string;
  kernels: ReadonlyMap<string, LinuxKernel>;
}

interface Entry {
  first: number;
  last: number;
  len: number;
  /** undefined: excluded. */
  gateway: string | undefined;
  policy: string;
}

function cidr(c: string): { first: number; last: number; len: number } {
  const [a, l] = c.split('/');
  const len = Number(l);
  const size = 2 ** (32 - len);
  const first = Math.floor(ip4(a!) / size) * size;
  return { first, last: first + size - 1, len };
}

/** The entry deciding destination d: the longest prefix; an exclusion wins a tie, then the first policy by name. */
function lpm(entries: readonly Entry[], d: number): Entry | undefined {
  let best: Entry | undefined;
  for (const e of entries) {
    if (d < e.first || d > e.last) continue;
    if (!best || e.len > best.len || (e.len === best.len && ((e.gateway === undefined && best.gateway !== undefined) || ((e.gateway === undefined) === (best.gateway === undefined) && e.policy < best.policy)))) best = e;
  }
  return best;
}

const podIp = (p: PodLike): string | undefined => {
  const ip = (p.status as { podIP?: string } | undefined)?.podIP;
  return typeof ip === 'string' && /^\d+\.\d+\.\d+\.\d+$/.test(ip) ? ip : undefined;
};

/** What a check compared: pods redirected, and (pod, destination) verdicts by kind — so a record shows the check was not vacuous. */
export interface LinuxCoverage {
  redirectedPods: number;
  verdicts: Record<'tunnel' | 'snatHere' | 'drop' | 'notRedirected', number>;
}

/**
 * Every difference between the nodes' kernels and what the snapshot implies (empty: they agree).
 * `coverage`, when given, is overwritten with what was compared.
 */
export function linuxDataplaneViolations(input: LinuxInput, coverage?: LinuxCoverage): string[] {
  const cov: LinuxCoverage = coverage ?? { redirectedPods: 0, verdicts: { tunnel: 0, snatHere: 0, drop: 0, notRedirected: 0 } };
  cov.redirectedPods = 0;
  cov.verdicts = { tunnel: 0, snatHere: 0, drop: 0, notRedirected: 0 };
  const { world } = input;
  const out: string[] = [];
  const activeOf = new Map(input.gateways.map((g) => [g.metadata.name, g.status?.activeNodeName ?? '']));
  const tunnelOf = new Map(input.dataplanes.map((d) => [d.metadata.name, d.spec?.tunnelID]));
  const nodeOfIp = new Map([...input.nodeIps].map(([n, a]) => [a, n]));
  const pods = input.podCIDR ? cidr(input.podCIDR) : undefined;
  for (const g of world.gateways.keys()) if (tunnelOf.get(g) === undefined) out.push(`linux: gateway ${g} has no dataplane object with a tunnel id`);
  const snatOf = (g: string, node: string): string => (world.gateways.get(g)?.mode === 'vip' ? world.gateways.get(g)!.vip! : (input.nodeIps.get(node) ?? '?'));
  const want = (g: string | undefined, node: string): string => {
    if (g === undefined) return 'not redirected';
    const active = activeOf.get(g) ?? '';
    if (active === '') return 'drop';
    if (active === node) return `SNAT here to ${snatOf(g, node)}`;
    return `tunnel id ${tunnelOf.get(g)} to ${active} (${input.nodeIps.get(active)})`;
  };

  for (const node of world.nodes.keys()) {
    const k = input.kernels.get(node);
    const at = `linux: ${node}`;
    if (!k) {
      out.push(`${at}: kernel not read`);
      continue;
    }
    if (!k.table) {
      out.push(`${at}: no table inet egressgw`);
      continue;
    }
    // What a jump in a class map leads to, following the kernel's own path.
    const follow = (verdict: string): string => {
      if (verdict === 'drop') return 'drop';
      const chain = /^jump ((?:gw|in)_\d+)$/.exec(verdict)?.[1];
      if (!chain) return `verdict "${verdict}"`;
      const mark = k.marks.get(chain);
      if (mark === undefined) return `${chain}, which sets no mark`;
      if (chain.startsWith('in_')) return k.snat.has(mark) ? `SNAT here to ${k.snat.get(mark)}` : `${chain}: mark 0x${mark.toString(16)} not in snat4`;
      const rule = k.rules.find((r) => ((mark & r.mask) >>> 0) === r.mark);
      if (!rule) return `${chain}: no ip rule for mark 0x${mark.toString(16)}`;
      const routes = k.routes.filter((r) => r.table === rule.table);
      const r = routes[0];
      if (routes.length !== 1 || r?.id === undefined) return `${chain}: table ${rule.table} holds [${routes.map((x) => x.line).join('; ')}]`;
      if (!k.device) return `${chain}: tunnel device ${S.device} missing`;
      return `tunnel id ${r.id} to ${nodeOfIp.get(r.dst!) ?? '?'} (${r.dst})`;
    };

    // Known and redirected pods.
    const local = input.pods.filter((p) => p.spec?.nodeName === node && p.status?.phase === 'Running' && !p.metadata.deletionTimestamp)
      .flatMap((p) => {
        const a = podIp(p);
        return a && pods && ip4(a) >= pods.first && ip4(a) <= pods.last ? [{ p, ip: a }] : [];
      });
    const knownWant = new Set(local.map((x) => x.ip));
    for (const a of k.known) if (!knownWant.has(a)) out.push(`${at}: known4 holds ${a}, no Running pod of this node has it (stale)`);
    for (const { p, ip } of local) if (!k.known.includes(ip)) out.push(`${at}: known4 lacks pod ${p.metadata.namespace}/${p.metadata.name} (${ip}): its traffic is dropped until programmed`);

    const usedChains = new Set<string>();
    const selectedIps = new Set<string>();
    /** The tunnels this node needs: to every gateway of its selected pods' policies that is active elsewhere. */
    const tunnels = new Set<string>();
    for (const { p, ip } of local) {
      const app = p.metadata.labels?.app ?? '';
      const policies = [...world.policies.values()].filter((x) => app !== '' && x.app === app && world.gateways.has(x.gateway)).sort((a, b) => (a.name < b.name ? -1 : 1));
      const name = `${p.metadata.namespace}/${p.metadata.name} (${ip}, app ${app || '(none)'})`;
      const got = k.pods.get(ip);
      if (policies.length === 0) {
        if (got !== undefined) out.push(`${at}: pods4 redirects pod ${name} (${got}), which no valid policy selects (stale)`);
        continue;
      }
      selectedIps.add(ip);
      cov.redirectedPods++;
      for (const x of policies) if (![node, ''].includes(activeOf.get(x.gateway) ?? '')) tunnels.add(want(x.gateway, node));
      if (got === undefined) {
        out.push(`${at}: pods4 lacks pod ${name}, selected by ${policies.map((x) => x.name).join(',')}`);
        continue;
      }
      const cls = /^jump (\S+)$/.exec(got)?.[1];
      const map = cls ? k.maps.get(cls) : undefined;
      if (!cls || !map) {
        out.push(`${at}: pods4 sends pod ${name} to "${got}", which is no class map`);
        continue;
      }
      usedChains.add(cls);
      for (const e of map) {
        const c = /^jump (\S+)$/.exec(e.verdict)?.[1];
        if (c) usedChains.add(c);
      }
      const entries: Entry[] = policies.flatMap((x) => [
        ...x.cidrs.map((c) => ({ ...cidr(c), gateway: x.gateway, policy: x.name })),
        ...x.excluded.map((c) => ({ ...cidr(c), gateway: undefined, policy: x.name })),
      ]);
      const probes = new Set<number>();
      for (const r of [...entries, ...map]) for (const d of [r.first - 1, r.first, r.last, r.last + 1]) if (d >= 0 && d <= 0xffffffff) probes.add(d);
      const wrong: string[] = [];
      for (const d of [...probes].sort((a, b) => a - b)) {
        const e = lpm(entries, d);
        const w = want(e?.gateway, node);
        const hit = map.find((r) => r.first <= d && d <= r.last);
        const g = hit ? follow(hit.verdict) : 'not redirected';
        cov.verdicts[w.startsWith('tunnel') ? 'tunnel' : w.startsWith('SNAT') ? 'snatHere' : w === 'drop' ? 'drop' : 'notRedirected']++;
        if (g !== w) wrong.push(`to ${fmt4(d)}: kernel ${g}, want ${w}${e ? ` (${e.policy} → ${e.gateway ?? 'excluded'})` : ''}`);
      }
      if (wrong.length > 0) out.push(`${at}: pod ${name}: ${wrong.slice(0, 3).join('; ')}${wrong.length > 3 ? `; … ${wrong.length - 3} more` : ''}`);
    }
    for (const [a, v] of k.pods) if (!selectedIps.has(a) && !local.some((x) => x.ip === a)) out.push(`${at}: pods4 holds ${a} (${v}), no Running pod of this node has it (stale)`);

    // Nothing stale: every class map is used by a current pod; every gateway chain (and its rule and
    // route) leads to a gateway some current pod's policy uses, at its current node. A gateway whose
    // ranges a longer prefix covers entirely may keep its chain: no packet takes it, and it is current.
    for (const m of k.maps.keys()) if (m.startsWith('c_') && !usedChains.has(m)) out.push(`${at}: class map ${m} is used by no pod (stale)`);
    const gwMarks = new Map<number, string>();
    for (const [chain, mark] of k.marks) {
      if (!chain.startsWith('gw_')) continue;
      const to = follow(`jump ${chain}`);
      if (!tunnels.has(to)) out.push(`${at}: chain ${chain} (${to}) serves no gateway of this node's pods' policies (stale)`);
      else gwMarks.set(mark, chain);
    }
    const usedTables = new Set<number>();
    for (const r of k.rules) {
      const chain = [...gwMarks].find(([m]) => ((m & r.mask) >>> 0) === r.mark)?.[1];
      if (chain) usedTables.add(r.table);
      else out.push(`${at}: ip rule priority ${r.priority} fwmark 0x${r.mark.toString(16)}/0x${r.mask.toString(16)} lookup ${r.table} serves no current gateway chain (stale)`);
    }
    for (const r of k.routes) if (!usedTables.has(r.table)) out.push(`${at}: route "${r.line}" is used by no rule (stale)`);

    // Gateway side: every node is ready to serve every valid gateway (docs/dataplane.md: each node SNATs
    // for every gateway whose source it can resolve — every node has eth0 — so a source node may switch to
    // any new active node at once): its tunnel id maps to a mark that SNATs to the VIP, or to this node's
    // primary address. No tunnel id of a gateway that no longer exists.
    const ids = new Set(input.dataplanes.map((d) => d.spec?.tunnelID));
    for (const id of k.tunnelIn.keys()) if (!ids.has(id)) out.push(`${at}: tunnel_in4 holds tunnel id ${id}, which no gateway has (stale)`);
    for (const g of world.gateways.keys()) {
      const id = tunnelOf.get(g);
      const mark = id === undefined ? undefined : k.tunnelIn.get(id);
      const snat = mark === undefined ? undefined : k.snat.get(mark);
      const here = activeOf.get(g) === node ? ' (active here)' : '';
      if (snat !== snatOf(g, node)) out.push(`${at}: gateway ${g}${here}: its tunnel id ${id} SNATs to ${mark === undefined ? '(no tunnel_in4 entry)' : (snat ?? `(mark 0x${mark.toString(16)} not in snat4)`)}, want ${snatOf(g, node)}`);
    }
  }
  return out;
}
