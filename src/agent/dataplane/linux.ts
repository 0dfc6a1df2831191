// Puts a NodeDataplane into the kernel: the VXLAN-GPE device, the route tables and ip rules of the
// source-side slots, and the nftables table (one atomic transaction). Only what docs/dataplane.md lists as
// ours is ever changed or removed: table `inet egressgw`, rules at our priority pointing into our table
// range, routes in that range, and the tunnel device.
//
// Order of an update, so that no packet meets a half-built path:
//   1. device and sysctls;  2. routes of the new slots;  3. their rules;  4. the nft table (atomic);
//   5. rules, then routes, of the slots no longer used (nft no longer marks packets for them).

import type { NodeDataplane } from '../../dataplane/model.ts';
import { desiredRoutes, desiredRules, isOurTable, renderNft, renderPodDelta, TABLE_FAMILY, TABLE_NAME, withoutPods, type DataplaneSettings, type RouteSpec, type RuleSpec } from '../../dataplane/render.ts';
import { CommandFailed, type Runner } from '../net/exec.ts';
import { nftCli, type NftCli, type NftJson } from '../net/nft.ts';

/** Thrown when the node cannot carry the data plane at all (nft or the kernel features are missing). */
export class DataplaneUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DataplaneUnavailable';
  }
}

/**
 * An address on the tunnel device, never used on the wire: the kernel's loose reverse-path check rejects
 * every packet arriving on a device without an IPv4 address (and `rp_filter` cannot go below the
 * host-wide `all` setting, which we leave alone).
 */
export const TUNNEL_DEVICE_ADDRESS = '169.254.42.1/32';

/** VXLAN-GPE header + UDP + outer IPv4. */
export const TUNNEL_OVERHEAD = 50;

export interface ApplyResult {
  /** Bytes of the nft script (the ruleset size). */
  scriptBytes: number;
  routesChanged: number;
  rulesChanged: number;
  /** Time of the nft transaction alone, ms. */
  nftMs: number;
  /** full: the table replaced; pods: only pod elements changed; unchanged: no nft transaction. */
  nft: 'full' | 'pods' | 'unchanged';
}

export interface KernelState {
  table: NftJson | undefined;
  rules: RuleSpec[];
  routes: RouteSpec[];
  device: boolean;
}

type State = Omit<KernelState, 'table'> & { link: Record<string, unknown> | undefined };

export class LinuxDataplane {
  readonly settings: DataplaneSettings;
  readonly #run: Runner;
  readonly #nft: NftCli;
  /** What the table holds after our last successful transaction (undefined: unknown, replace it whole). */
  #last: { dp: NodeDataplane; script: string; structure: string } | undefined;
  /** MTU of egw0; undefined: derived from the default route's interface. */
  readonly #mtu: number | undefined;

  constructor(settings: DataplaneSettings, runner: Runner, opts: { mtu?: number } = {}) {
    this.settings = settings;
    this.#run = runner;
    this.#nft = nftCli(runner);
    this.#mtu = opts.mtu;
  }

  /** Fails clearly, before anything is created, when nft cannot run here. */
  async preflight(): Promise<string> {
    try {
      return await this.#nft.version();
    } catch (err) {
      if (err instanceof CommandFailed && err.missing) {
        throw new DataplaneUnavailable('nft is not installed on this node (package nftables): the Linux data plane cannot be programmed; nothing was changed');
      }
      throw new DataplaneUnavailable(`nft does not work on this node: ${(err as Error).message}; nothing was changed`);
    }
  }

  async apply(dp: NodeDataplane): Promise<ApplyResult> {
    const s = this.settings;
    const have = await this.#state();
    await this.#ensureDevice(have.link);
    const routes = desiredRoutes(dp, s);
    const rules = desiredRules(dp, s);
    let routesChanged = 0;
    let rulesChanged = 0;
    const haveRoute = new Map(have.routes.map((r) => [r.table, r]));
    for (const r of routes) {
      const h = haveRoute.get(r.table);
      if (h && h.endpoint === r.endpoint && h.tunnelID === r.tunnelID) continue;
      await this.#ip(['-4', 'route', 'replace', 'default', 'encap', 'ip', 'id', String(r.tunnelID), 'dst', r.endpoint, 'dev', s.device, 'table', String(r.table)]);
      routesChanged++;
    }
    const ruleKey = (r: RuleSpec) => `${r.priority}/${r.mark}/${r.mask}/${r.table}`;
    const haveRules = new Set(have.rules.map(ruleKey));
    for (const r of rules) {
      if (haveRules.has(ruleKey(r))) continue;
      await this.#ip(['-4', 'rule', 'add', ...ruleArgs(r)]);
      rulesChanged++;
    }
    const { script, nftMs, mode } = await this.#applyTable(dp, have.link !== undefined);
    const wantRules = new Set(rules.map(ruleKey));
    for (const r of have.rules) {
      if (wantRules.has(ruleKey(r))) continue;
      await this.#ip(['-4', 'rule', 'del', ...ruleArgs(r)]);
      rulesChanged++;
    }
    const wantTables = new Set(routes.map((r) => r.table));
    for (const r of have.routes) {
      if (wantTables.has(r.table)) continue;
      await this.#ip(['-4', 'route', 'flush', 'table', String(r.table)]);
      routesChanged++;
    }
    return { scriptBytes: Buffer.byteLength(script), routesChanged, rulesChanged, nftMs, nft: mode };
  }

  /**
   * The nft part of an update. Most updates are pods coming and going while the classes, slots and
   * gateways stay: then only the elements of `known4` and `pods4` change, in one small transaction instead
   * of the whole table (at 10,000 pods: milliseconds instead of a quarter second). Anything else, or an
   * element transaction the kernel refuses, replaces the whole table.
   */
  async #applyTable(dp: NodeDataplane, deviceExisted: boolean): Promise<{ script: string; nftMs: number; mode: ApplyResult['nft'] }> {
    const s = this.settings;
    const script = renderNft(dp, s);
    const last = this.#last;
    if (last && deviceExisted && script === last.script) return { script, nftMs: 0, mode: 'unchanged' };
    const structure = renderNft(withoutPods(dp), s);
    const t0 = performance.now();
    if (last && deviceExisted && structure === last.structure) {
      const delta = renderPodDelta(last.dp, dp);
      try {
        await this.#nft.apply(delta);
        this.#last = { dp, script, structure };
        return { script, nftMs: performance.now() - t0, mode: 'pods' };
      } catch {
        // Someone changed our table behind our back: fall through to the full replacement.
      }
    }
    this.#last = undefined;
    await this.#nft.apply(script);
    this.#last = { dp, script, structure };
    return { script, nftMs: performance.now() - t0, mode: 'full' };
  }

  /** Removes everything of ours; idempotent. Returns what was removed (for the log). */
  async cleanup(): Promise<string[]> {
    this.#last = undefined;
    const removed: string[] = [];
    if (await this.#nft.deleteTable(TABLE_FAMILY, TABLE_NAME)) removed.push(`table ${TABLE_FAMILY} ${TABLE_NAME}`);
    const st = await this.#state();
    for (const r of st.rules) {
      await this.#ip(['-4', 'rule', 'del', ...ruleArgs(r)]);
      removed.push(`rule ${ruleArgs(r).join(' ')}`);
    }
    for (const r of st.routes) {
      await this.#ip(['-4', 'route', 'flush', 'table', String(r.table)]);
      removed.push(`routes of table ${r.table}`);
    }
    if (st.device && ours(st.link?.linkinfo as Parameters<typeof ours>[0])) {
      await this.#ip(['link', 'del', this.settings.device]);
      removed.push(`link ${this.settings.device}`);
    }
    return removed;
  }

  /** What of ours the kernel holds now (`elements: false`: the table without set and map elements). */
  async state(opts: { elements?: boolean } = {}): Promise<KernelState> {
    const { rules, routes, device } = await this.#state();
    return { rules, routes, device, table: await this.#nft.listTable(TABLE_FAMILY, TABLE_NAME, { terse: opts.elements === false }) };
  }

  async #state(): Promise<State> {
    const s = this.settings;
    const rules: RuleSpec[] = [];
    const rulesJson = JSON.parse((await this.#ip(['-4', '-j', 'rule', 'show'])) || '[]') as Array<Record<string, unknown>>;
    for (const r of rulesJson) {
      const table = Number(r.table);
      if (r.priority !== s.rulePriority || !isOurTable(table, s)) continue;
      rules.push({ priority: s.rulePriority, mark: Number(r.fwmark ?? 0) >>> 0, mask: Number(r.fwmask ?? 0xffffffff) >>> 0, table });
    }
    // Text, not JSON: iproute2 prints an encap route's destination and the tunnel's under one JSON key.
    const routes: RouteSpec[] = [];
    for (const line of (await this.#ip(['-4', 'route', 'show', 'table', 'all'])).split('\n')) {
      const table = Number(/\btable (\d+)\b/.exec(line)?.[1]);
      if (!isOurTable(table, s)) continue;
      const m = /encap ip id (\d+) .*\bdst (\S+)/.exec(line);
      routes.push({ table, tunnelID: m ? Number(m[1]) : 0, endpoint: m?.[2] ?? '' });
    }
    const link = await this.#link(s.device);
    return { rules, routes, device: link !== undefined, link };
  }

  async #link(name: string): Promise<Record<string, unknown> | undefined> {
    try {
      const out = JSON.parse(await this.#ip(['-d', '-j', 'link', 'show', 'dev', name])) as Array<Record<string, unknown>>;
      return out[0];
    } catch (err) {
      if (err instanceof CommandFailed && /does not exist|Cannot find device/.test(err.stderr)) return undefined;
      throw err;
    }
  }

  /**
   * The tunnel device as docs/dataplane.md says: VXLAN-GPE, external, our port, up, an address, loose
   * rp_filter. `link` is what `ip -d link show` says now; a right one is left alone (no commands).
   */
  async #ensureDevice(link: Record<string, unknown> | undefined): Promise<void> {
    const s = this.settings;
    const info = (link?.linkinfo as { info_kind?: string; info_data?: Record<string, unknown> } | undefined);
    const right = ours(info) && info?.info_data?.port === s.tunnelPort;
    const up = Array.isArray(link?.flags) && (link.flags as string[]).includes('UP');
    if (right && up) return;
    this.#last = undefined;
    if (link && !right) {
      // Only a VXLAN-GPE device in external mode can be one of ours (an earlier --tunnel-port, say); any
      // other link of that name belongs to someone else and is never deleted: refuse, naming the flag.
      if (!ours(info)) {
        throw new DataplaneUnavailable(`a link named ${s.device} exists and is not an egressgw tunnel (kind ${info?.info_kind ?? 'unknown'}): it was left alone; remove it or choose another name with --tunnel-device`);
      }
      await this.#ip(['link', 'del', s.device]);
    }
    if (!right) {
      const mtu = this.#mtu ?? (await this.#uplinkMtu()) - TUNNEL_OVERHEAD;
      try {
        await this.#ip(['link', 'add', s.device, 'mtu', String(mtu), 'type', 'vxlan', 'external', 'gpe', 'dstport', String(s.tunnelPort)]);
      } catch (err) {
        throw new DataplaneUnavailable(`cannot create the tunnel device ${s.device} (VXLAN-GPE, UDP ${s.tunnelPort}): ${(err as Error).message}`);
      }
      // No IPv6 link-local address: the device carries redirected IPv4 only.
      await this.#ip(['link', 'set', s.device, 'addrgenmode', 'none']);
    }
    await this.#ip(['addr', 'replace', TUNNEL_DEVICE_ADDRESS, 'dev', s.device, 'scope', 'link']);
    await this.#ip(['link', 'set', s.device, 'up']);
    // Decapsulated packets carry pod sources that this node reaches through the cluster network, not egw0.
    await this.#run.sysctl(['net', 'ipv4', 'conf', s.device, 'rp_filter'], '2');
  }

  async #uplinkMtu(): Promise<number> {
    // `ip route get` resolves without sending anything; any address outside the node's own networks does.
    try {
      const dev = /\bdev (\S+)/.exec(await this.#ip(['-4', 'route', 'get', '192.0.2.1']))?.[1];
      const link = dev === undefined ? undefined : await this.#link(dev);
      const mtu = Number(link?.mtu);
      if (Number.isInteger(mtu) && mtu >= 1280) return mtu;
    } catch {
      // no default route yet: fall through
    }
    return 1500;
  }

  #ip(args: string[]): Promise<string> {
    return this.#run.run('ip', args);
  }
}

function ruleArgs(r: RuleSpec): string[] {
  return ['priority', String(r.priority), 'fwmark', `0x${r.mark.toString(16)}/0x${r.mask.toString(16)}`, 'lookup', String(r.table)];
}

/** A VXLAN-GPE device in external mode: the only kind of link the agent creates, so the only one it may replace. */
function ours(info: { info_kind?: string; info_data?: Record<string, unknown> } | undefined): boolean {
  return info?.info_kind === 'vxlan' && info.info_data?.external === true && info.info_data?.gpe === true;
}
