// Ethernet, ARP (RFC 826, RFC 5227) and IPv6 Neighbor Discovery (RFC 4861) frames: encode and decode.
// Pure functions over Buffers; no I/O. MACs are lower-case "aa:bb:cc:dd:ee:ff" strings at the API, IP
// addresses are strings parsed by ipaddr.js (IPv6 is formatted in RFC 5952 compact form).
import ipaddr from 'ipaddr.js';

export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_IPV6 = 0x86dd;
export const BROADCAST_MAC = 'ff:ff:ff:ff:ff:ff';
export const ZERO_MAC = '00:00:00:00:00:00';
export const ALL_NODES_IPV6 = 'ff02::1';

const ETH_HEADER_LEN = 14;
const ARP_LEN = 28;
const IPV6_HEADER_LEN = 40;
const NEXT_HEADER_ICMPV6 = 58;
const NDP_HOP_LIMIT = 255;

// ---------------------------------------------------------------------------------------------- MAC

const MAC_RE = /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/i;

/** "aa:bb:cc:dd:ee:ff" (or with '-') → 6 bytes. Throws on anything else. */
export function parseMac(mac: string): Buffer {
  const m = MAC_RE.exec(mac.trim());
  if (m === null) throw new Error(`invalid MAC address: ${JSON.stringify(mac)}`);
  return Buffer.from(m.slice(1).join(''), 'hex');
}

/** 6 bytes → lower-case "aa:bb:cc:dd:ee:ff". */
export function formatMac(bytes: Uint8Array): string {
  if (bytes.length !== 6) throw new Error(`a MAC address has 6 bytes, got ${bytes.length}`);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Normalises any accepted MAC spelling to the canonical lower-case form. */
export function normalizeMac(mac: string): string {
  return formatMac(parseMac(mac));
}

// ---------------------------------------------------------------------------------------------- IP

function ipv4Bytes(ip: string): Buffer {
  if (!ipaddr.IPv4.isValidFourPartDecimal(ip)) throw new Error(`invalid IPv4 address: ${JSON.stringify(ip)}`);
  return Buffer.from(ipaddr.IPv4.parse(ip).toByteArray());
}

function ipv6Bytes(ip: string): Buffer {
  if (!ipaddr.IPv6.isValid(ip)) throw new Error(`invalid IPv6 address: ${JSON.stringify(ip)}`);
  return Buffer.from(ipaddr.IPv6.parse(ip).toByteArray());
}

/** The 4 or 16 bytes of an IPv4 or IPv6 address. */
export function ipBytes(ip: string): Buffer {
  return ipFamily(ip) === 4 ? ipv4Bytes(ip) : ipv6Bytes(ip);
}

function formatIp(bytes: Uint8Array): string {
  return ipaddr.fromByteArray(Array.from(bytes)).toString();
}

/** Canonical text of an IPv4 or IPv6 address (IPv6 compact, lower case); throws when invalid. */
export function normalizeIp(ip: string): string {
  if (ipaddr.IPv4.isValidFourPartDecimal(ip)) return ipaddr.IPv4.parse(ip).toString();
  if (ipaddr.IPv6.isValid(ip)) return ipaddr.IPv6.parse(ip).toString();
  throw new Error(`invalid IP address: ${JSON.stringify(ip)}`);
}

export function ipFamily(ip: string): 4 | 6 {
  if (ipaddr.IPv4.isValidFourPartDecimal(ip)) return 4;
  if (ipaddr.IPv6.isValid(ip)) return 6;
  throw new Error(`invalid IP address: ${JSON.stringify(ip)}`);
}

/** Solicited-node multicast address ff02::1:ffXX:XXXX of an IPv6 address (RFC 4291 §2.7.1). */
export function solicitedNodeAddress(ip: string): string {
  const b = ipv6Bytes(ip);
  const g = Buffer.from('ff02' + '0000'.repeat(4) + '0001' + 'ff00' + '0000', 'hex');
  b.copy(g, 13, 13, 16);
  return formatIp(g);
}

/** Ethernet multicast MAC 33:33:xx:xx:xx:xx for an IPv6 multicast address (RFC 2464 §7). */
export function ipv6MulticastMac(group: string): string {
  const b = ipv6Bytes(group);
  return formatMac(Buffer.concat([Buffer.from([0x33, 0x33]), b.subarray(12, 16)]));
}

// ---------------------------------------------------------------------------------------------- Ethernet

export interface EthernetFrame {
  dst: string;
  src: string;
  ethertype: number;
  payload: Buffer;
}

export function encodeEthernet(f: EthernetFrame): Buffer {
  const header = Buffer.alloc(ETH_HEADER_LEN);
  parseMac(f.dst).copy(header, 0);
  parseMac(f.src).copy(header, 6);
  header.writeUInt16BE(f.ethertype, 12);
  return Buffer.concat([header, f.payload]);
}

/** Decodes an untagged Ethernet II header; null when the frame is too short. The payload may carry padding. */
export function decodeEthernet(frame: Buffer): EthernetFrame | null {
  if (frame.length < ETH_HEADER_LEN) return null;
  return {
    dst: formatMac(frame.subarray(0, 6)),
    src: formatMac(frame.subarray(6, 12)),
    ethertype: frame.readUInt16BE(12),
    payload: frame.subarray(ETH_HEADER_LEN),
  };
}

// ---------------------------------------------------------------------------------------------- ARP

export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;

/** An Ethernet/IPv4 ARP packet (the only kind we speak). */
export interface ArpPacket {
  op: number;
  senderMac: string;
  senderIp: string;
  targetMac: string;
  targetIp: string;
}

export function encodeArp(p: ArpPacket): Buffer {
  const b = Buffer.alloc(ARP_LEN);
  b.writeUInt16BE(1, 0); // htype Ethernet
  b.writeUInt16BE(ETHERTYPE_IPV4, 2);
  b.writeUInt8(6, 4);
  b.writeUInt8(4, 5);
  b.writeUInt16BE(p.op, 6);
  parseMac(p.senderMac).copy(b, 8);
  ipv4Bytes(p.senderIp).copy(b, 14);
  parseMac(p.targetMac).copy(b, 18);
  ipv4Bytes(p.targetIp).copy(b, 24);
  return b;
}

/** Decodes an Ethernet/IPv4 ARP packet; null for other hardware/protocol types or short input. */
export function decodeArp(b: Buffer): ArpPacket | null {
  if (b.length < ARP_LEN) return null;
  if (b.readUInt16BE(0) !== 1 || b.readUInt16BE(2) !== ETHERTYPE_IPV4 || b[4] !== 6 || b[5] !== 4) return null;
  return {
    op: b.readUInt16BE(6),
    senderMac: formatMac(b.subarray(8, 14)),
    senderIp: formatIp(b.subarray(14, 18)),
    targetMac: formatMac(b.subarray(18, 24)),
    targetIp: formatIp(b.subarray(24, 28)),
  };
}

export function arpFrame(ethDst: string, ethSrc: string, p: ArpPacket): Buffer {
  return encodeEthernet({ dst: ethDst, src: ethSrc, ethertype: ETHERTYPE_ARP, payload: encodeArp(p) });
}

/** Broadcast ARP request "who has targetIp, tell senderIp". */
export function arpRequestFrame(o: { senderMac: string; senderIp: string; targetIp: string; ethDst?: string }): Buffer {
  return arpFrame(o.ethDst ?? BROADCAST_MAC, o.senderMac, {
    op: ARP_REQUEST,
    senderMac: o.senderMac,
    senderIp: o.senderIp,
    targetMac: ZERO_MAC,
    targetIp: o.targetIp,
  });
}

/** Unicast ARP reply to a request: "ip is at mac", addressed to the requester. */
export function arpReplyFrame(o: { mac: string; ip: string; toMac: string; toIp: string }): Buffer {
  return arpFrame(o.toMac, o.mac, { op: ARP_REPLY, senderMac: o.mac, senderIp: o.ip, targetMac: o.toMac, targetIp: o.toIp });
}

/**
 * Gratuitous ARP for `ip` at `mac`: a request and a reply, both broadcast, sender IP = target IP = ip.
 * Sending both matters: some hosts update their cache only from requests, others only from replies.
 * The request's target MAC is zero (RFC 5227 ARP Announcement); the reply's is broadcast, as a
 * reply must name a target and nobody in particular asked.
 */
export function gratuitousArpFrames(mac: string, ip: string): [request: Buffer, reply: Buffer] {
  return [
    arpFrame(BROADCAST_MAC, mac, { op: ARP_REQUEST, senderMac: mac, senderIp: ip, targetMac: ZERO_MAC, targetIp: ip }),
    arpFrame(BROADCAST_MAC, mac, { op: ARP_REPLY, senderMac: mac, senderIp: ip, targetMac: BROADCAST_MAC, targetIp: ip }),
  ];
}

// ---------------------------------------------------------------------------------------------- IPv6 / ICMPv6

export interface Ipv6Packet {
  src: string;
  dst: string;
  nextHeader: number;
  hopLimit: number;
  /** Exactly `payloadLength` bytes (link-layer padding removed). */
  payload: Buffer;
}

export function encodeIpv6(p: Ipv6Packet): Buffer {
  const h = Buffer.alloc(IPV6_HEADER_LEN);
  h.writeUInt32BE(0x60000000, 0); // version 6, traffic class 0, flow label 0
  h.writeUInt16BE(p.payload.length, 4);
  h.writeUInt8(p.nextHeader, 6);
  h.writeUInt8(p.hopLimit, 7);
  ipv6Bytes(p.src).copy(h, 8);
  ipv6Bytes(p.dst).copy(h, 24);
  return Buffer.concat([h, p.payload]);
}

/** Decodes a fixed IPv6 header (extension headers are not followed); null when malformed. */
export function decodeIpv6(b: Buffer): Ipv6Packet | null {
  if (b.length < IPV6_HEADER_LEN || b[0]! >> 4 !== 6) return null;
  const len = b.readUInt16BE(4);
  if (b.length < IPV6_HEADER_LEN + len) return null;
  return {
    src: formatIp(b.subarray(8, 24)),
    dst: formatIp(b.subarray(24, 40)),
    nextHeader: b[6]!,
    hopLimit: b[7]!,
    payload: b.subarray(IPV6_HEADER_LEN, IPV6_HEADER_LEN + len),
  };
}

/** Internet checksum of an ICMPv6 message over the IPv6 pseudo-header (RFC 4443 §2.3, RFC 8200 §8.1). */
export function icmpv6Checksum(src: string, dst: string, message: Buffer): number {
  const pseudo = Buffer.alloc(40);
  ipv6Bytes(src).copy(pseudo, 0);
  ipv6Bytes(dst).copy(pseudo, 16);
  pseudo.writeUInt32BE(message.length, 32);
  pseudo.writeUInt8(NEXT_HEADER_ICMPV6, 39);
  let sum = 0;
  const add = (buf: Buffer): void => {
    for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
    if (buf.length % 2 === 1) sum += buf[buf.length - 1]! << 8;
  };
  add(pseudo);
  add(message);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export const ICMPV6_NEIGHBOR_SOLICITATION = 135;
export const ICMPV6_NEIGHBOR_ADVERTISEMENT = 136;
const OPT_SOURCE_LL = 1;
const OPT_TARGET_LL = 2;

export interface NeighborSolicitation {
  type: 'ns';
  target: string;
  /** Source link-layer address option; absent in DAD probes. */
  sourceLinkAddr?: string;
}

export interface NeighborAdvertisement {
  type: 'na';
  router: boolean;
  solicited: boolean;
  override: boolean;
  target: string;
  targetLinkAddr?: string;
}

export type NdpMessage = NeighborSolicitation | NeighborAdvertisement;

function lladdrOption(type: number, mac: string): Buffer {
  return Buffer.concat([Buffer.from([type, 1]), parseMac(mac)]); // length 1 = 8 bytes
}

/** Encodes an NS/NA ICMPv6 message with a valid checksum for the given IPv6 source and destination. */
export function encodeNdp(src: string, dst: string, m: NdpMessage): Buffer {
  const body = Buffer.alloc(24);
  if (m.type === 'ns') {
    body.writeUInt8(ICMPV6_NEIGHBOR_SOLICITATION, 0);
  } else {
    body.writeUInt8(ICMPV6_NEIGHBOR_ADVERTISEMENT, 0);
    body.writeUInt8((m.router ? 0x80 : 0) | (m.solicited ? 0x40 : 0) | (m.override ? 0x20 : 0), 4);
  }
  ipv6Bytes(m.target).copy(body, 8);
  const ll = m.type === 'ns' ? m.sourceLinkAddr : m.targetLinkAddr;
  const msg = ll === undefined ? body : Buffer.concat([body, lladdrOption(m.type === 'ns' ? OPT_SOURCE_LL : OPT_TARGET_LL, ll)]);
  msg.writeUInt16BE(icmpv6Checksum(src, dst, msg), 2);
  return msg;
}

/**
 * Decodes an NS or NA carried in an IPv6 packet, applying RFC 4861 §7.1 validity checks that matter to
 * us: hop limit 255, code 0, valid checksum, well-formed options, non-multicast target. Null otherwise.
 */
export function decodeNdp(ip: Ipv6Packet): NdpMessage | null {
  const m = ip.payload;
  if (ip.nextHeader !== NEXT_HEADER_ICMPV6 || ip.hopLimit !== NDP_HOP_LIMIT || m.length < 24) return null;
  const type = m[0];
  if ((type !== ICMPV6_NEIGHBOR_SOLICITATION && type !== ICMPV6_NEIGHBOR_ADVERTISEMENT) || m[1] !== 0) return null;
  if (icmpv6Checksum(ip.src, ip.dst, m) !== 0) return null; // a correct sum over the whole message folds to 0
  const target = formatIp(m.subarray(8, 24));
  if (ipaddr.IPv6.parse(target).range() === 'multicast') return null;
  let lladdr: string | undefined;
  for (let off = 24; off < m.length; ) {
    if (off + 2 > m.length) return null;
    const optLen = m[off + 1]! * 8;
    if (optLen === 0 || off + optLen > m.length) return null;
    const optType = m[off];
    if (optLen >= 8 && ((type === ICMPV6_NEIGHBOR_SOLICITATION && optType === OPT_SOURCE_LL) || (type === ICMPV6_NEIGHBOR_ADVERTISEMENT && optType === OPT_TARGET_LL))) {
      lladdr = formatMac(m.subarray(off + 2, off + 8));
    }
    off += optLen;
  }
  if (type === ICMPV6_NEIGHBOR_SOLICITATION) {
    return lladdr === undefined ? { type: 'ns', target } : { type: 'ns', target, sourceLinkAddr: lladdr };
  }
  const flags = m[4]!;
  const na: NeighborAdvertisement = {
    type: 'na',
    router: (flags & 0x80) !== 0,
    solicited: (flags & 0x40) !== 0,
    override: (flags & 0x20) !== 0,
    target,
  };
  if (lladdr !== undefined) na.targetLinkAddr = lladdr;
  return na;
}

export function ndpFrame(o: { ethDst: string; ethSrc: string; src: string; dst: string; message: NdpMessage }): Buffer {
  const payload = encodeNdp(o.src, o.dst, o.message);
  const ip = encodeIpv6({ src: o.src, dst: o.dst, nextHeader: NEXT_HEADER_ICMPV6, hopLimit: NDP_HOP_LIMIT, payload });
  return encodeEthernet({ dst: o.ethDst, src: o.ethSrc, ethertype: ETHERTYPE_IPV6, payload: ip });
}

/**
 * Unsolicited Neighbor Advertisement for `ip` at `mac` to all nodes (RFC 4861 §7.2.6): Override=1 so
 * neighbours replace a cached address, Solicited=0, target link-layer address option. The IPv6 source is
 * the address itself, as Linux does for its own unsolicited NAs.
 */
export function unsolicitedNaFrame(mac: string, ip: string): Buffer {
  return ndpFrame({
    ethDst: ipv6MulticastMac(ALL_NODES_IPV6),
    ethSrc: mac,
    src: ip,
    dst: ALL_NODES_IPV6,
    message: { type: 'na', router: false, solicited: false, override: true, target: ip, targetLinkAddr: mac },
  });
}

/**
 * Solicited Neighbor Advertisement answering an NS for `ip` from (toMac, toIp). Override defaults to
 * false as in the reference (a proxy-style answer must not displace an owner that also answers).
 */
export function solicitedNaFrame(o: { mac: string; ip: string; toMac: string; toIp: string; override?: boolean }): Buffer {
  return ndpFrame({
    ethDst: o.toMac,
    ethSrc: o.mac,
    src: o.ip,
    dst: o.toIp,
    message: { type: 'na', router: false, solicited: true, override: o.override ?? false, target: o.ip, targetLinkAddr: o.mac },
  });
}

/** Neighbor Solicitation for `target` from (mac, ip), multicast to the target's solicited-node group. */
export function neighborSolicitationFrame(o: { mac: string; ip: string; target: string }): Buffer {
  const group = solicitedNodeAddress(o.target);
  return ndpFrame({
    ethDst: ipv6MulticastMac(group),
    ethSrc: o.mac,
    src: o.ip,
    dst: group,
    message: { type: 'ns', target: o.target, sourceLinkAddr: o.mac },
  });
}

// ---------------------------------------------------------------------------------------------- whole frames

/** A received frame, decoded as far as the announcer cares. */
export type DecodedFrame =
  | { kind: 'arp'; eth: EthernetFrame; arp: ArpPacket }
  | { kind: 'ndp'; eth: EthernetFrame; ip: Ipv6Packet; ndp: NdpMessage }
  | { kind: 'other'; eth: EthernetFrame };

/** Decodes Ethernet → ARP or IPv6/NDP. Null when not even an Ethernet header; malformed ARP/NDP → 'other'. */
export function decodeFrame(frame: Buffer): DecodedFrame | null {
  const eth = decodeEthernet(frame);
  if (eth === null) return null;
  if (eth.ethertype === ETHERTYPE_ARP) {
    const arp = decodeArp(eth.payload);
    return arp === null ? { kind: 'other', eth } : { kind: 'arp', eth, arp };
  }
  if (eth.ethertype === ETHERTYPE_IPV6) {
    const ip = decodeIpv6(eth.payload);
    const ndp = ip === null ? null : decodeNdp(ip);
    return ip === null || ndp === null ? { kind: 'other', eth } : { kind: 'ndp', eth, ip, ndp };
  }
  return { kind: 'other', eth };
}
