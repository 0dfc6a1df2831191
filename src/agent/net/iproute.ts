// Links, addresses and routes through iproute2's JSON output (`ip -json`), run with execFile (no shell).
//
// Why iproute2 rather than netlink from Node: no maintained netlink package covers address lifetimes,
// and `ip` is present on every node image we target; the agent calls it a few times a second at most.
// The VIP is put on the interface with a short valid_lft/preferred_lft and refreshed with
// `ip addr replace`: when the agent stops refreshing (killed, frozen, fenced) the kernel removes the
// address by itself — the dead-man's switch of design §6.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { ipBytes, ipFamily, normalizeIp, normalizeMac } from './frames.ts';
import { setAddress } from './packet.ts';

const execFileAsync = promisify(execFile);

export interface Link {
  index: number;
  name: string;
  /** Kernel flags as `ip` prints them: UP, BROADCAST, NOARP, LOWER_UP, … */
  flags: string[];
  /** Operational state: UP, DOWN, UNKNOWN, LOWERLAYERDOWN, … */
  operstate: string;
  /** Lower-case MAC, or undefined for links without an Ethernet address. */
  mac: string | undefined;
  /** Name of the bridge/bond this link is enslaved to. */
  master: string | undefined;
  linkType: string;
  mtu: number;
}

export interface Address {
  family: 4 | 6;
  ip: string;
  prefixLength: number;
  scope: string;
  /** Seconds left, or 'forever'. */
  validLft: number | 'forever';
  preferredLft: number | 'forever';
}

export interface ReplaceAddressOptions {
  /** Seconds; the kernel deletes the address when it runs out. Omit for forever. */
  validLft?: number;
  /** Seconds; defaults to validLft. */
  preferredLft?: number;
  /** Skip IPv6 duplicate address detection (ignored for IPv4). Default true for IPv6. */
  nodad?: boolean;
}

/** What the agent needs from the host's network configuration. Implemented by {@link IpRoute}. */
export interface AddressManager {
  listLinks(): Promise<Link[]>;
  getLink(name: string): Promise<Link | undefined>;
  /** Addresses on one interface; throws when the interface does not exist. */
  addresses(ifname: string): Promise<Address[]>;
  /**
   * Interface of the route that matches `ip` (`ip route get IP fibmatch`), or undefined when there is no
   * route. For an address that is local (e.g. the VIP already assigned) this is the interface holding it,
   * not `lo`, so the answer does not change once the agent has added the VIP.
   */
  routeInterfaceFor(ip: string): Promise<string | undefined>;
  /**
   * The next hops (`via`) of every IPv4 route in every table (`ip route show table all`): the routers
   * this node sends through. A VIP that is one of them would take a router's address over.
   */
  routeGateways(): Promise<Set<string>>;
  /** Adds or refreshes `ip/prefix` on the interface (`ip addr replace`). Idempotent. */
  replaceAddress(ifname: string, cidr: string, opts?: ReplaceAddressOptions): Promise<void>;
  /** Removes `ip/prefix` from the interface; an address that is already gone is not an error. */
  deleteAddress(ifname: string, cidr: string): Promise<void>;
  /**
   * A long-lived `ip -o monitor OBJECTS…`: one line per kernel notification on stdout, so changes are
   * seen when they happen rather than by polling (one process for the agent's lifetime, not one per check).
   */
  monitor?(objects: string[]): ChildProcess;
}

/** Interfaces never used for announcements: Cilium's own devices and pod veths (reference §4.4). */
export const EXCLUDED_INTERFACE_RE = /^(cilium_|lxc)/;

/**
 * R24 eligibility: UP, broadcast-capable, not enslaved, ARP enabled, not a Cilium/pod interface.
 * "UP" is the administrative flag, as in the reference; carrier loss is reported separately (operstate).
 */
export function isEligibleInterface(link: Link, exclude: RegExp = EXCLUDED_INTERFACE_RE): boolean {
  return (
    !exclude.test(link.name) &&
    link.flags.includes('UP') &&
    link.flags.includes('BROADCAST') &&
    !link.flags.includes('NOARP') &&
    link.master === undefined
  );
}

/** The host-route CIDR a VIP is assigned with: /32 for IPv4, /128 for IPv6. */
export function vipCidr(ip: string): string {
  return `${normalizeIp(ip)}/${ipFamily(ip) === 4 ? 32 : 128}`;
}

// ------------------------------------------------------------------------------------ pure parsing

function asArray(json: unknown, what: string): Record<string, unknown>[] {
  if (!Array.isArray(json)) throw new Error(`ip -json ${what}: expected an array`);
  return json.filter((x): x is Record<string, unknown> => typeof x === 'object' && x !== null);
}

function lifetime(v: unknown): number | 'forever' {
  // iproute2 prints "forever" as 4294967295 (INFINITY_LIFE_TIME) in JSON.
  return typeof v !== 'number' || v >= 0xffffffff ? 'forever' : v;
}

/** Parses `ip -json link show`. */
export function parseLinks(json: unknown): Link[] {
  return asArray(json, 'link').map((l) => {
    const address = typeof l.address === 'string' && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(l.address) ? normalizeMac(l.address) : undefined;
    return {
      index: Number(l.ifindex),
      name: String(l.ifname),
      flags: Array.isArray(l.flags) ? l.flags.map(String) : [],
      operstate: typeof l.operstate === 'string' ? l.operstate : 'UNKNOWN',
      mac: l.link_type === 'ether' ? address : undefined,
      master: typeof l.master === 'string' ? l.master : undefined,
      linkType: typeof l.link_type === 'string' ? l.link_type : 'unknown',
      mtu: Number(l.mtu ?? 0),
    };
  });
}

/** Parses `ip -json addr show dev X` (all interfaces' addresses are concatenated). */
export function parseAddresses(json: unknown): Address[] {
  const out: Address[] = [];
  for (const link of asArray(json, 'addr')) {
    const infos = Array.isArray(link.addr_info) ? link.addr_info : [];
    for (const a of infos as Record<string, unknown>[]) {
      if ((a.family !== 'inet' && a.family !== 'inet6') || typeof a.local !== 'string') continue;
      out.push({
        family: a.family === 'inet' ? 4 : 6,
        ip: normalizeIp(a.local),
        prefixLength: Number(a.prefixlen),
        scope: typeof a.scope === 'string' ? a.scope : 'global',
        validLft: lifetime(a.valid_life_time),
        preferredLft: lifetime(a.preferred_life_time),
      });
    }
  }
  return out;
}

/** Parses `ip -json route get … [fibmatch]`: the first route's device. */
export function parseRouteGet(json: unknown): string | undefined {
  const first = asArray(json, 'route get')[0];
  return typeof first?.dev === 'string' ? first.dev : undefined;
}

/** Parses `ip -json route show …`: the next hops, single (`gateway`) and multipath (`nexthops[].gateway`). */
export function parseRouteGateways(json: unknown): Set<string> {
  const out = new Set<string>();
  for (const r of asArray(json, 'route show')) {
    if (typeof r.gateway === 'string') out.add(normalizeIp(r.gateway));
    if (Array.isArray(r.nexthops)) {
      for (const h of r.nexthops as Array<Record<string, unknown>>) if (typeof h?.gateway === 'string') out.add(normalizeIp(h.gateway));
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------ implementation

export class IpCommandError extends Error {
  readonly args: string[];
  readonly stderr: string;
  readonly exitCode: number | undefined;
  constructor(args: string[], stderr: string, exitCode: number | undefined) {
    super(`ip ${args.join(' ')} failed${exitCode === undefined ? '' : ` (exit ${exitCode})`}: ${stderr.trim() || 'no output'}`);
    this.name = 'IpCommandError';
    this.args = args;
    this.stderr = stderr;
    this.exitCode = exitCode;
  }
}

export interface IpRouteOptions {
  /** Run every command in this network namespace (`ip -n NS …`); for tests and the lab. */
  netns?: string;
  /** Path of the `ip` binary; default `ip` from PATH. */
  ipPath?: string;
  /** Per-command timeout, ms (default 5000): a wedged `ip` must not stall the refresh loop forever. */
  timeoutMs?: number;
  /** Address changes through rtnetlink in process instead of `ip` (default true; never with `netns`). */
  netlink?: boolean;
}

export class IpRoute implements AddressManager {
  readonly netns: string | undefined;
  readonly #ip: string;
  readonly #timeoutMs: number;
  /** Address changes through rtnetlink in process (only in this process's own namespace). */
  readonly #netlink: boolean;

  constructor(opts: IpRouteOptions = {}) {
    this.netns = opts.netns;
    this.#ip = opts.ipPath ?? 'ip';
    this.#timeoutMs = opts.timeoutMs ?? 5000;
    this.#netlink = opts.netns === undefined && (opts.netlink ?? true);
  }

  #rtnl(op: 'replace' | 'delete', ifname: string, ip: string, prefix: number, o: ReplaceAddressOptions): void {
    try {
      setAddress(op, ifname, ipBytes(ip), prefix, o);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw Object.assign(new IpCommandError([op === 'replace' ? 'addr replace' : 'addr del', `${ip}/${prefix}`, 'dev', ifname, '(rtnetlink)'], e.message, undefined), { code: e.code });
    }
  }

  /** Runs `ip [-n NS] args…` and returns stdout; throws {@link IpCommandError}. */
  async run(args: string[]): Promise<string> {
    const full = this.netns === undefined ? args : ['-n', this.netns, ...args];
    try {
      const { stdout } = await execFileAsync(this.#ip, full, { timeout: this.#timeoutMs, maxBuffer: 16 * 1024 * 1024 });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; code?: number | string; message?: string };
      throw new IpCommandError(full, e.stderr || e.message || '', typeof e.code === 'number' ? e.code : undefined);
    }
  }

  async #json(args: string[]): Promise<unknown> {
    const out = await this.run(['-json', ...args]);
    return out.trim() === '' ? [] : (JSON.parse(out) as unknown);
  }

  async listLinks(): Promise<Link[]> {
    return parseLinks(await this.#json(['link', 'show']));
  }

  async getLink(name: string): Promise<Link | undefined> {
    try {
      return parseLinks(await this.#json(['link', 'show', 'dev', name]))[0];
    } catch (err) {
      if (err instanceof IpCommandError && /does not exist|Cannot find device/i.test(err.stderr)) return undefined;
      throw err;
    }
  }

  async addresses(ifname: string): Promise<Address[]> {
    return parseAddresses(await this.#json(['addr', 'show', 'dev', ifname]));
  }

  async routeInterfaceFor(ip: string): Promise<string | undefined> {
    try {
      return parseRouteGet(await this.#json(['route', 'get', normalizeIp(ip), 'fibmatch']));
    } catch (err) {
      if (err instanceof IpCommandError && /unreachable|No route to host/i.test(err.stderr)) return undefined;
      throw err;
    }
  }

  async routeGateways(): Promise<Set<string>> {
    return parseRouteGateways(await this.#json(['route', 'show', 'table', 'all']));
  }

  async replaceAddress(ifname: string, cidr: string, opts: ReplaceAddressOptions = {}): Promise<void> {
    const [ip = '', prefix = ''] = cidr.split('/');
    const v6 = ipFamily(ip) === 6;
    if (this.#netlink) {
      // In this process's own namespace: one rtnetlink request, no `ip` process (the refresh runs
      // every 250 ms, and the takeover path must not wait for a fork on a loaded node).
      this.#rtnl('replace', ifname, ip, Number(prefix), { ...opts, nodad: v6 && (opts.nodad ?? true) });
      return;
    }
    const args = ['addr', 'replace', cidr, 'dev', ifname];
    if (opts.validLft !== undefined) {
      args.push('valid_lft', String(opts.validLft), 'preferred_lft', String(opts.preferredLft ?? opts.validLft));
    } else if (opts.preferredLft !== undefined) {
      args.push('preferred_lft', String(opts.preferredLft));
    }
    // DAD would keep a moved VIP "tentative" (unusable) for a second or more, and would fail outright
    // while the old owner still answers during make-before-break.
    if (ipFamily(cidr.split('/')[0] ?? '') === 6 && (opts.nodad ?? true)) args.push('nodad');
    await this.run(args);
  }

  monitor(objects: string[]): ChildProcess {
    const args = ['-o', 'monitor', ...objects];
    return spawn(this.#ip, this.netns === undefined ? args : ['-n', this.netns, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  }

  async deleteAddress(ifname: string, cidr: string): Promise<void> {
    if (this.#netlink) {
      const [ip = '', prefix = ''] = cidr.split('/');
      try {
        this.#rtnl('delete', ifname, ip, Number(prefix), {});
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRNOTAVAIL') throw err;
      }
      return;
    }
    try {
      await this.run(['addr', 'del', cidr, 'dev', ifname]);
    } catch (err) {
      if (err instanceof IpCommandError && /address not found|Cannot assign requested address/i.test(err.stderr)) return;
      throw err;
    }
  }
}
