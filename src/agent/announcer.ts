// Layer-2 announcer: gratuitous ARP / unsolicited NA on takeover and periodically, and an ARP/NDP
// responder for announced VIPs (reference-behaviour §4.4–4.6, R24, R25, R28; design §5, §6).
//
// Three layers, so that the interesting parts are testable without a network:
//   AdvertisementTable  which IPs are announced on which interfaces (reference-counted per IP, R28);
//   decide()            pure: one received frame + the receiving interface → reply frame or a reason not to;
//   Announcer           I/O: packet sockets per eligible interface, timers, counters.
//
// Double replies. The agent also assigns the VIP to an interface (design §6), and then the kernel answers
// ARP/NS for it itself. decide() therefore leaves requests that arrive on an interface holding the VIP to
// the kernel ('kernel-answers') and answers only where the VIP is not assigned (e.g. a second uplink named
// in `interfaces`). Caveat: with the default arp_ignore=0 Linux also answers ARP for a local address on
// *other* interfaces; that duplicate carries the same interface MAC as ours, so it is harmless. Set
// `answerWhenAssigned: true` to answer regardless (e.g. with arp_ignore=2, where Linux stays silent for a
// /32 VIP because the requester is not inside the /32).
import type { AddressManager } from './net/iproute.ts';
import { isEligibleInterface, EXCLUDED_INTERFACE_RE } from './net/iproute.ts';
import {
  ARP_REQUEST,
  BROADCAST_MAC,
  arpReplyFrame,
  decodeFrame,
  gratuitousArpFrames,
  ipFamily,
  ipv6MulticastMac,
  normalizeIp,
  parseMac,
  solicitedNaFrame,
  solicitedNodeAddress,
  unsolicitedNaFrame,
  type DecodedFrame,
} from './net/frames.ts';
import { ETH_P_ARP, ETH_P_IPV6, PacketSocket } from './net/packet.ts';

// ------------------------------------------------------------------------------------------ table

export interface Advertisement {
  /** Who asks for the announcement (e.g. the instance name); (name, ip) is the key. */
  name: string;
  ip: string;
  /** Interfaces to announce on; empty = every eligible interface. */
  interfaces: string[];
}

/**
 * Advertisements keyed by (name, ip). An IP stays announced while at least one advertisement names it;
 * it is covered on an interface when any of its advertisements lists that interface or lists none.
 */
export class AdvertisementTable {
  readonly #byIp = new Map<string, Map<string, readonly string[]>>();

  /** Adds or updates (name, ip). Returns true when the IP was not announced before. */
  set(ad: Advertisement): boolean {
    const ip = normalizeIp(ad.ip);
    let names = this.#byIp.get(ip);
    const isNew = names === undefined;
    if (names === undefined) {
      names = new Map();
      this.#byIp.set(ip, names);
    }
    names.set(ad.name, [...ad.interfaces]);
    return isNew;
  }

  /** Removes (name, ip). Returns true when the IP is no longer announced at all. */
  delete(name: string, ip: string): boolean {
    const key = normalizeIp(ip);
    const names = this.#byIp.get(key);
    if (names === undefined || !names.delete(name)) return false;
    if (names.size > 0) return false;
    this.#byIp.delete(key);
    return true;
  }

  isAnnounced(ip: string): boolean {
    return this.#byIp.has(ip);
  }

  /** Whether `ip` (normalised) is announced on interface `ifname`. */
  covers(ip: string, ifname: string): boolean {
    const names = this.#byIp.get(ip);
    if (names === undefined) return false;
    for (const ifaces of names.values()) {
      if (ifaces.length === 0 || ifaces.includes(ifname)) return true;
    }
    return false;
  }

  ips(): string[] {
    return [...this.#byIp.keys()];
  }

  advertisements(): Advertisement[] {
    const out: Advertisement[] = [];
    for (const [ip, names] of this.#byIp) {
      for (const [name, interfaces] of names) out.push({ name, ip, interfaces: [...interfaces] });
    }
    return out;
  }
}

// ------------------------------------------------------------------------------------------ decide

/** What decide() needs to know about the interface a frame arrived on. */
export interface InterfaceView {
  name: string;
  mac: string;
  /** Addresses assigned to this interface (normalised), for the kernel-answers rule. */
  localIps: ReadonlySet<string>;
}

export type IgnoreReason =
  | 'malformed'
  | 'not-arp-or-ndp'
  | 'not-a-request'
  | 'not-for-us'
  | 'gratuitous'
  | 'no-source-lladdr'
  | 'not-announced'
  | 'not-covered'
  | 'kernel-answers';

export type Decision =
  | { action: 'reply'; ip: string; frame: Buffer }
  | { action: 'ignore'; reason: IgnoreReason; /** Set once the frame was a request for an announced IP. */ ip?: string };

export interface DecideOptions {
  /** Answer even where the VIP is assigned to the receiving interface (see the file comment). */
  answerWhenAssigned?: boolean;
}

/**
 * R25 and its NDP counterpart, as a pure function:
 * - ARP: only requests; Ethernet destination broadcast or our MAC; not gratuitous (sender IP = target IP:
 *   an announcement, not a question); target announced and covered on this interface → unicast reply
 *   with this interface's MAC.
 * - NDP: only Neighbor Solicitations with a source link-layer address option (DAD probes have none, as
 *   in the reference); Ethernet destination our MAC or IPv6 multicast; target announced and covered →
 *   solicited NA (Solicited=1, Override=0) with this interface's MAC.
 */
export function decide(frame: Buffer | DecodedFrame, iface: InterfaceView, table: AdvertisementTable, opts: DecideOptions = {}): Decision {
  const d = Buffer.isBuffer(frame) ? decodeFrame(frame) : frame;
  if (d === null) return { action: 'ignore', reason: 'malformed' };
  const toUs = d.eth.dst === iface.mac;
  const check = (ip: string): Decision | undefined => {
    if (!table.isAnnounced(ip)) return { action: 'ignore', reason: 'not-announced' };
    if (!table.covers(ip, iface.name)) return { action: 'ignore', reason: 'not-covered', ip };
    if (!opts.answerWhenAssigned && iface.localIps.has(ip)) return { action: 'ignore', reason: 'kernel-answers', ip };
    return undefined;
  };
  if (d.kind === 'arp') {
    const { arp } = d;
    if (arp.op !== ARP_REQUEST) return { action: 'ignore', reason: 'not-a-request' };
    if (!toUs && d.eth.dst !== BROADCAST_MAC) return { action: 'ignore', reason: 'not-for-us' };
    if (arp.senderIp === arp.targetIp) return { action: 'ignore', reason: 'gratuitous' };
    const no = check(arp.targetIp);
    if (no !== undefined) return no;
    return { action: 'reply', ip: arp.targetIp, frame: arpReplyFrame({ mac: iface.mac, ip: arp.targetIp, toMac: arp.senderMac, toIp: arp.senderIp }) };
  }
  if (d.kind === 'ndp') {
    const { ndp } = d;
    if (ndp.type !== 'ns') return { action: 'ignore', reason: 'not-a-request' };
    if (!toUs && !d.eth.dst.startsWith('33:33:')) return { action: 'ignore', reason: 'not-for-us' };
    if (ndp.sourceLinkAddr === undefined) return { action: 'ignore', reason: 'no-source-lladdr' };
    const no = check(ndp.target);
    if (no !== undefined) return no;
    return { action: 'reply', ip: ndp.target, frame: solicitedNaFrame({ mac: iface.mac, ip: ndp.target, toMac: ndp.sourceLinkAddr, toIp: d.ip.src }) };
  }
  return { action: 'ignore', reason: 'not-arp-or-ndp' };
}

// ------------------------------------------------------------------------------------------ I/O

/** The part of PacketSocket the announcer uses (a seam for unit tests). */
export interface FrameSocket {
  send(frame: Buffer): number;
  on(event: 'frame', listener: (frame: Buffer) => void): unknown;
  addMulticast(mac: Buffer): void;
  dropMulticast(mac: Buffer): void;
  close(): void;
}

export type SocketKind = 'arp' | 'ndp';

/** An eligible interface as the announcer sees it. */
export interface InterfaceInfo {
  name: string;
  index: number;
  mac: string;
  /** Whether to run an NDP responder (the interface has IPv6 addresses). */
  ipv6: boolean;
  /** Addresses currently assigned (normalised). */
  localIps: string[];
}

/** Counter callbacks, so the agent can export metrics without the announcer knowing prom-client. */
export interface AnnouncerHooks {
  /** One gratuitous ARP request+reply pair, or one unsolicited NA, sent for `ip` on `ifname`. */
  announcementSent?(ip: string, ifname: string): void;
  /** A request (ARP request / NS) for an announced IP arrived on a covered interface. */
  requestReceived?(ip: string, ifname: string): void;
  /** We answered such a request. */
  responseSent?(ip: string, ifname: string): void;
  /** Socket open/send failures and scan failures; the announcer keeps going. */
  error?(err: unknown, context: string): void;
}

export interface AnnouncerOptions {
  /** Gratuitous bursts after a new IP: the first at once, then every burstIntervalMs (default 1100) … */
  burstIntervalMs?: number;
  /** … until burstDurationMs (default 5000) after the add. */
  burstDurationMs?: number;
  /** Periodic re-announcement of every IP (default 10000; 0 disables). The reference has none (D10). */
  reannounceIntervalMs?: number;
  /** Interface rescan period for start() (default 10000; 0 disables). */
  rescanIntervalMs?: number;
  /** Interfaces never used (default `^(cilium_|lxc)`). */
  exclude?: RegExp;
  answerWhenAssigned?: boolean;
  /** Used by rescan(); without it the agent calls setInterfaces() itself. */
  addressManager?: AddressManager;
  /** Socket factory; default opens a PacketSocket (ETH_P_ARP, or ETH_P_IPV6 with the NDP filter). */
  openSocket?: (iface: InterfaceInfo, kind: SocketKind) => FrameSocket;
  hooks?: AnnouncerHooks;
  /**
   * Asked right before every frame for `ip` is sent (announcement or reply): false keeps it in. The
   * agent's kernel switch cannot see these frames (AF_PACKET bypasses netfilter's arp and inet hooks),
   * so the agent answers this from the same deadline (agent.ts). Default: always send.
   */
  mayAnswer?: (ip: string) => boolean;
}

/** Lists eligible interfaces (R24) with their MAC and addresses. One failing interface is skipped, not fatal. */
export async function scanInterfaces(am: AddressManager, exclude: RegExp = EXCLUDED_INTERFACE_RE, onError?: (err: unknown, ifname: string) => void): Promise<InterfaceInfo[]> {
  const out: InterfaceInfo[] = [];
  for (const link of await am.listLinks()) {
    if (!isEligibleInterface(link, exclude) || link.mac === undefined) continue;
    try {
      const addrs = await am.addresses(link.name);
      out.push({ name: link.name, index: link.index, mac: link.mac, ipv6: addrs.some((a) => a.family === 6), localIps: addrs.map((a) => a.ip) });
    } catch (err) {
      // Unlike the reference (which stops the whole scan), a vanished interface only drops itself.
      onError?.(err, link.name);
    }
  }
  return out;
}

function defaultOpenSocket(iface: InterfaceInfo, kind: SocketKind): FrameSocket {
  return kind === 'arp' ? PacketSocket.open(iface.index, ETH_P_ARP) : PacketSocket.open(iface.index, ETH_P_IPV6, { filter: 'ndp' });
}

interface OpenInterface {
  info: InterfaceInfo;
  view: InterfaceView;
  arp: FrameSocket | undefined;
  ndp: FrameSocket | undefined;
}

/**
 * Runs the responder and the announcements.
 *
 * Typical agent use: `setInterfaces()` or `rescan()` first (or `start()` for periodic rescans), assign the
 * VIP to the interface, then `advertise({ name, ip, interfaces })` — the gratuitous burst starts at once,
 * so the address should already be on the interface (make before break, design §5). `withdraw()` when
 * the instance goes away; nothing is sent on withdrawal. `stop()` closes every socket and timer.
 */
export class Announcer {
  readonly table = new AdvertisementTable();
  readonly #opts: Required<Omit<AnnouncerOptions, 'addressManager' | 'hooks' | 'openSocket' | 'mayAnswer'>>;
  readonly #mayAnswer: (ip: string) => boolean;
  readonly #am: AddressManager | undefined;
  readonly #open: (iface: InterfaceInfo, kind: SocketKind) => FrameSocket;
  readonly #hooks: AnnouncerHooks;
  readonly #ifaces = new Map<string, OpenInterface>();
  /** Burst deadline per IP (ms since epoch) and the timer driving the bursts. */
  readonly #bursts = new Map<string, { until: number; timer: NodeJS.Timeout }>();
  #reannounce: NodeJS.Timeout | undefined;
  #rescan: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(opts: AnnouncerOptions = {}) {
    this.#opts = {
      burstIntervalMs: opts.burstIntervalMs ?? 1100,
      burstDurationMs: opts.burstDurationMs ?? 5000,
      reannounceIntervalMs: opts.reannounceIntervalMs ?? 10_000,
      rescanIntervalMs: opts.rescanIntervalMs ?? 10_000,
      exclude: opts.exclude ?? EXCLUDED_INTERFACE_RE,
      answerWhenAssigned: opts.answerWhenAssigned ?? false,
    };
    this.#am = opts.addressManager;
    this.#open = opts.openSocket ?? defaultOpenSocket;
    this.#hooks = opts.hooks ?? {};
    this.#mayAnswer = opts.mayAnswer ?? (() => true);
  }

  /** Starts periodic re-announcement and (with an AddressManager) periodic rescans; does a first rescan. */
  async start(): Promise<void> {
    if (this.#opts.reannounceIntervalMs > 0 && this.#reannounce === undefined) {
      this.#reannounce = setInterval(() => {
        for (const ip of this.table.ips()) this.announce(ip);
      }, this.#opts.reannounceIntervalMs).unref();
    }
    if (this.#am !== undefined) {
      await this.rescan();
      if (this.#opts.rescanIntervalMs > 0 && this.#rescan === undefined) {
        this.#rescan = setInterval(() => void this.rescan(), this.#opts.rescanIntervalMs).unref();
      }
    }
  }

  /** Re-reads eligible interfaces through the AddressManager and applies them. Errors go to hooks.error. */
  async rescan(): Promise<void> {
    if (this.#am === undefined) throw new Error('Announcer.rescan() needs options.addressManager');
    try {
      const ifaces = await scanInterfaces(this.#am, this.#opts.exclude, (err, name) => this.#hooks.error?.(err, `scan ${name}`));
      if (!this.#stopped) this.setInterfaces(ifaces);
    } catch (err) {
      this.#hooks.error?.(err, 'scan interfaces');
    }
  }

  /**
   * Replaces the set of interfaces to serve: opens sockets on new ones (and announces covered IPs there
   * once), reopens changed ones, closes vanished ones, and refreshes the assigned-address view.
   */
  setInterfaces(ifaces: InterfaceInfo[]): void {
    const seen = new Set<string>();
    for (const info of ifaces) {
      seen.add(info.name);
      const cur = this.#ifaces.get(info.name);
      if (cur !== undefined && cur.info.index === info.index && cur.info.mac === info.mac && cur.info.ipv6 === info.ipv6) {
        cur.info = info;
        cur.view = { name: info.name, mac: info.mac, localIps: new Set(info.localIps) };
        continue;
      }
      if (cur !== undefined) this.#closeInterface(cur);
      const entry = this.#openInterface(info);
      this.#ifaces.set(info.name, entry);
      for (const ip of this.table.ips()) {
        if (this.table.covers(ip, info.name)) this.#announceOn(entry, ip);
      }
    }
    for (const [name, entry] of this.#ifaces) {
      if (!seen.has(name)) {
        this.#closeInterface(entry);
        this.#ifaces.delete(name);
      }
    }
  }

  /** Names of the interfaces being served. */
  interfaces(): string[] {
    return [...this.#ifaces.keys()];
  }

  /**
   * Adds or updates an advertisement. A newly announced IP gets the gratuitous burst; an IP that was
   * already announced (by this or another advertisement) is only re-pointed, not re-burst.
   */
  advertise(ad: Advertisement): void {
    const ip = normalizeIp(ad.ip);
    const isNew = this.table.set({ ...ad, ip });
    if (!isNew) return;
    if (ipFamily(ip) === 6) {
      for (const entry of this.#ifaces.values()) this.#joinGroup(entry, ip);
    }
    this.#startBurst(ip);
  }

  /** Removes (name, ip); the IP stops being answered once no advertisement names it (R28). */
  withdraw(name: string, ip: string): void {
    const key = normalizeIp(ip);
    if (!this.table.delete(name, key)) return;
    const burst = this.#bursts.get(key);
    if (burst !== undefined) clearTimeout(burst.timer);
    this.#bursts.delete(key);
    if (ipFamily(key) === 6) {
      for (const entry of this.#ifaces.values()) this.#leaveGroup(entry, key);
    }
  }

  /** Sends one round of gratuitous ARP (request + reply) or unsolicited NA for `ip` on every covered interface. */
  announce(ip: string): void {
    const key = normalizeIp(ip);
    for (const entry of this.#ifaces.values()) {
      if (this.table.covers(key, entry.info.name)) this.#announceOn(entry, key);
    }
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#reannounce);
    clearInterval(this.#rescan);
    this.#reannounce = this.#rescan = undefined;
    for (const b of this.#bursts.values()) clearTimeout(b.timer);
    this.#bursts.clear();
    for (const entry of this.#ifaces.values()) this.#closeInterface(entry);
    this.#ifaces.clear();
  }

  #startBurst(ip: string): void {
    const existing = this.#bursts.get(ip);
    if (existing !== undefined) clearTimeout(existing.timer);
    const until = Date.now() + this.#opts.burstDurationMs;
    const tick = (): void => {
      this.announce(ip);
      if (Date.now() + this.#opts.burstIntervalMs <= until) {
        this.#bursts.set(ip, { until, timer: setTimeout(tick, this.#opts.burstIntervalMs).unref() });
      } else {
        this.#bursts.delete(ip);
      }
    };
    tick();
  }

  #announceOn(entry: OpenInterface, ip: string): void {
    const v4 = ipFamily(ip) === 4;
    const sock = v4 ? entry.arp : entry.ndp;
    if (sock === undefined || !this.#mayAnswer(ip)) return;
    try {
      if (v4) {
        for (const f of gratuitousArpFrames(entry.info.mac, ip)) sock.send(f);
      } else {
        sock.send(unsolicitedNaFrame(entry.info.mac, ip));
      }
      this.#hooks.announcementSent?.(ip, entry.info.name);
    } catch (err) {
      this.#hooks.error?.(err, `announce ${ip} on ${entry.info.name}`);
    }
  }

  #openInterface(info: InterfaceInfo): OpenInterface {
    const entry: OpenInterface = { info, view: { name: info.name, mac: info.mac, localIps: new Set(info.localIps) }, arp: undefined, ndp: undefined };
    entry.arp = this.#openSocket(entry, 'arp');
    if (info.ipv6) {
      entry.ndp = this.#openSocket(entry, 'ndp');
      for (const ip of this.table.ips()) if (ipFamily(ip) === 6) this.#joinGroup(entry, ip);
    }
    return entry;
  }

  #openSocket(entry: OpenInterface, kind: SocketKind): FrameSocket | undefined {
    try {
      const sock = this.#open(entry.info, kind);
      sock.on('frame', (frame) => this.#onFrame(entry, sock, frame));
      return sock;
    } catch (err) {
      this.#hooks.error?.(err, `open ${kind} socket on ${entry.info.name}`);
      return undefined;
    }
  }

  #onFrame(entry: OpenInterface, sock: FrameSocket, frame: Buffer): void {
    const d = decide(frame, entry.view, this.table, { answerWhenAssigned: this.#opts.answerWhenAssigned });
    // A request counts when it is ours to answer, whether we answer it or leave it to the kernel.
    const asked = d.action === 'reply' || d.reason === 'kernel-answers' ? d.ip : undefined;
    if (asked !== undefined) this.#hooks.requestReceived?.(asked, entry.info.name);
    if (d.action !== 'reply' || !this.#mayAnswer(d.ip)) return;
    try {
      sock.send(d.frame);
      this.#hooks.responseSent?.(d.ip, entry.info.name);
    } catch (err) {
      this.#hooks.error?.(err, `reply for ${d.ip} on ${entry.info.name}`);
    }
  }

  #joinGroup(entry: OpenInterface, ip: string): void {
    try {
      entry.ndp?.addMulticast(parseMac(ipv6MulticastMac(solicitedNodeAddress(ip))));
    } catch (err) {
      this.#hooks.error?.(err, `join solicited-node group of ${ip} on ${entry.info.name}`);
    }
  }

  #leaveGroup(entry: OpenInterface, ip: string): void {
    try {
      entry.ndp?.dropMulticast(parseMac(ipv6MulticastMac(solicitedNodeAddress(ip))));
    } catch (err) {
      this.#hooks.error?.(err, `leave solicited-node group of ${ip} on ${entry.info.name}`);
    }
  }

  #closeInterface(entry: OpenInterface): void {
    entry.arp?.close();
    entry.ndp?.close();
    entry.arp = entry.ndp = undefined;
  }
}
