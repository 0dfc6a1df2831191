// Raw Ethernet frames through the egressgw_packet N-API addon (native/packet/packet.c).
//
// Why: gratuitous ARP, unsolicited NA and ARP/NS replies need AF_PACKET, which Node cannot do and no
// maintained npm package offers (design §6). The addon only moves bytes; frames are built in frames.ts.
// The addon is built by node-gyp during `npm ci` because binding.gyp sits at the package root.
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** Ethertypes accepted by {@link PacketSocket.open}. The socket receives only frames of that type. */
export const ETH_P_ALL = 0x0003;
export const ETH_P_ARP = 0x0806;
export const ETH_P_IPV6 = 0x86dd;

/**
 * In-kernel (classic BPF) filters. 'ndp' keeps only ICMPv6 Neighbor Solicitations/Advertisements, so an
 * ETH_P_IPV6 socket on a busy gateway does not copy all forwarded IPv6 traffic into the process.
 */
export type PacketFilter = 'ndp';

export interface PacketSocketOptions {
  filter?: PacketFilter;
}

interface NativeRawSocket {
  send(frame: Buffer): number;
  addMulticast(mac: Buffer): void;
  dropMulticast(mac: Buffer): void;
  ref(): void;
  unref(): void;
  close(): void;
}

interface NativeAddon {
  RawSocket: new (ifindex: number, protocol: number, onFrame: (frame: Buffer) => void, filter?: PacketFilter) => NativeRawSocket;
  ifNameToIndex(name: string): number;
  addressSet(op: 'replace' | 'delete', ifindex: number, family: 4 | 6, addr: Buffer, prefixLen: number, validLft: number, preferredLft: number, nodad: boolean): void;
}

/** Where node-gyp puts the addon, relative to the package root. */
export const ADDON_PATH = fileURLToPath(new URL('../../../build/Release/egressgw_packet.node', import.meta.url));

export class NativeAddonMissingError extends Error {
  readonly code = 'EGRESSGW_ADDON_MISSING';
  constructor(cause: unknown) {
    super(
      `native addon not built (${ADDON_PATH}): run npm ci / npm rebuild; needs python3, make, g++` +
        ` (${cause instanceof Error ? cause.message : String(cause)})`,
      { cause },
    );
    this.name = 'NativeAddonMissingError';
  }
}

let addon: NativeAddon | undefined;

/** Loads the addon once; throws {@link NativeAddonMissingError} with a how-to-fix message when absent. */
export function loadAddon(): NativeAddon {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
    } catch (err) {
      throw new NativeAddonMissingError(err);
    }
  }
  return addon;
}

/** Lifetime value meaning "forever" (INFINITY_LIFE_TIME). */
export const FOREVER = 0xffffffff;

/**
 * Adds or replaces (`replace`), or removes (`delete`), an address on an interface of this process's
 * network namespace with one rtnetlink request — what `ip addr replace/del` sends, without a process.
 * Errors carry the errno name as `code` (EADDRNOTAVAIL: no such address to delete).
 */
export function setAddress(op: 'replace' | 'delete', ifname: string, ip: Buffer, prefixLen: number, o: { validLft?: number; preferredLft?: number; nodad?: boolean } = {}): void {
  const valid = o.validLft ?? FOREVER;
  loadAddon().addressSet(op, ifNameToIndex(ifname), ip.length === 4 ? 4 : 6, ip, prefixLen, valid, o.preferredLft ?? valid, o.nodad ?? false);
}

/** ifindex of an interface in this process's network namespace (throws with code ENODEV when absent). */
export function ifNameToIndex(name: string): number {
  return loadAddon().ifNameToIndex(name);
}

interface PacketSocketEvents {
  frame: [frame: Buffer];
}

/**
 * An AF_PACKET SOCK_RAW socket bound to one interface and one ethertype.
 *
 * - `send(frame)` transmits a complete Ethernet frame (header included) on the interface.
 * - `'frame'` is emitted for every received frame of the bound ethertype; frames this host transmits
 *   (PACKET_OUTGOING) are not delivered, so a responder never sees its own replies.
 * - While open the socket keeps the event loop alive unless `unref()` is called.
 * Errors from the kernel are thrown as `Error` with `code` set to the errno name (EPERM, ENODEV, ENETDOWN…).
 * A listener that throws surfaces as `uncaughtException`, as with any I/O callback.
 */
export class PacketSocket extends EventEmitter<PacketSocketEvents> {
  readonly ifindex: number;
  readonly ifname: string | undefined;
  readonly protocol: number;
  #native: NativeRawSocket | undefined;

  private constructor(ifindex: number, ifname: string | undefined, protocol: number, opts: PacketSocketOptions) {
    super();
    this.ifindex = ifindex;
    this.ifname = ifname;
    this.protocol = protocol;
    this.#native = new (loadAddon().RawSocket)(ifindex, protocol, (frame) => this.emit('frame', frame), opts.filter);
  }

  /** Opens a socket on an interface (name, or ifindex) for one ethertype (ETH_P_ARP, ETH_P_IPV6, ETH_P_ALL). */
  static open(iface: string | number, protocol: number, opts: PacketSocketOptions = {}): PacketSocket {
    const ifindex = typeof iface === 'number' ? iface : ifNameToIndex(iface);
    return new PacketSocket(ifindex, typeof iface === 'string' ? iface : undefined, protocol, opts);
  }

  get closed(): boolean {
    return this.#native === undefined;
  }

  /** Sends one Ethernet frame; returns the number of bytes sent. */
  send(frame: Buffer): number {
    return this.#open().send(frame);
  }

  /** Joins a link-layer multicast group (e.g. 33:33:ff:xx:xx:xx for an IPv6 solicited-node group). */
  addMulticast(mac: Buffer): void {
    this.#open().addMulticast(mac);
  }

  dropMulticast(mac: Buffer): void {
    this.#open().dropMulticast(mac);
  }

  ref(): this {
    this.#native?.ref();
    return this;
  }

  unref(): this {
    this.#native?.unref();
    return this;
  }

  /** Idempotent. */
  close(): void {
    this.#native?.close();
    this.#native = undefined;
    this.removeAllListeners('frame');
  }

  #open(): NativeRawSocket {
    if (this.#native === undefined) {
      throw Object.assign(new Error('PacketSocket is closed'), { code: 'EBADF' });
    }
    return this.#native;
  }
}

export type FrameCapability = { ok: true } | { ok: false; reason: string };

/**
 * Self-check for /readyz: can this process open a raw packet socket on `iface` (default: loopback)?
 * Fails when the addon is not built, CAP_NET_RAW is missing, or the interface does not exist.
 */
export function canSendFrames(iface: string | number = 'lo'): FrameCapability {
  try {
    PacketSocket.open(iface, ETH_P_ARP).close();
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
}
