import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  ARP_REPLY,
  ARP_REQUEST,
  arpReplyFrame,
  arpRequestFrame,
  decodeArp,
  decodeEthernet,
  decodeFrame,
  decodeIpv6,
  decodeNdp,
  encodeArp,
  encodeEthernet,
  encodeIpv6,
  encodeNdp,
  formatMac,
  gratuitousArpFrames,
  icmpv6Checksum,
  ipv6MulticastMac,
  neighborSolicitationFrame,
  normalizeIp,
  parseMac,
  solicitedNaFrame,
  solicitedNodeAddress,
  unsolicitedNaFrame,
  type NdpMessage,
} from './frames.ts';

// Fixtures written out field by field from RFC 826 / RFC 4861 / RFC 8200 layouts. The ICMPv6 checksums
// were computed with an independent implementation (Python's struct + one's-complement sum over the
// pseudo-header), not with the code under test.
const NODE_MAC = '02:00:00:00:00:0b';
const ROUTER_MAC = '02:00:00:00:00:01';
const VIP4 = '198.18.0.100'; // c6 12 00 64
const VIP6 = '2001:db8::100';

const hex = (parts: string[]): Buffer => Buffer.from(parts.join('').replace(/\s+/g, ''), 'hex');

const GARP_REQUEST = hex([
  'ffffffffffff', '02000000000b', '0806', // Ethernet: broadcast, node MAC, ARP
  '0001 0800 06 04 0001', //                 htype Ethernet, ptype IPv4, hlen 6, plen 4, op request
  '02000000000b c6120064', //                sender: node MAC, VIP
  '000000000000 c6120064', //                target: zero MAC (RFC 5227 announcement), VIP
]);
const GARP_REPLY = hex([
  'ffffffffffff', '02000000000b', '0806',
  '0001 0800 06 04 0002', //                 op reply
  '02000000000b c6120064',
  'ffffffffffff c6120064', //                target: broadcast MAC, VIP
]);
const ARP_REQUEST_FROM_ROUTER = hex([
  'ffffffffffff', '020000000001', '0806',
  '0001 0800 06 04 0001',
  '020000000001 c6120001', //                sender: router MAC, 198.18.0.1
  '000000000000 c6120064', //                who has the VIP?
]);
const ARP_REPLY_TO_ROUTER = hex([
  '020000000001', '02000000000b', '0806',
  '0001 0800 06 04 0002',
  '02000000000b c6120064',
  '020000000001 c6120001',
]);
const UNSOLICITED_NA = hex([
  '333300000001', '02000000000b', '86dd', // Ethernet: all-nodes multicast MAC
  '60000000 0020 3a ff', //                 IPv6: version 6, payload 32, next header ICMPv6, hop limit 255
  '20010db8000000000000000000000100', //     src: the VIP
  'ff020000000000000000000000000001', //     dst: ff02::1
  '88 00 f722', //                          NA, code 0, checksum
  '20000000', //                            R=0 S=0 O=1
  '20010db8000000000000000000000100', //     target: the VIP
  '02 01 02000000000b', //                  option: target link-layer address (type 2, 1×8 bytes)
]);
const NS_FROM_ROUTER = hex([
  '3333ff000100', '020000000001', '86dd', // Ethernet: solicited-node multicast MAC of the VIP
  '60000000 0020 3a ff',
  '20010db8000000000000000000000001', //     src: 2001:db8::1
  'ff0200000000000000000001ff000100', //     dst: ff02::1:ff00:100
  '87 00 1a2b 00000000', //                 NS, checksum, reserved
  '20010db8000000000000000000000100', //     target: the VIP
  '01 01 020000000001', //                  option: source link-layer address
]);
const SOLICITED_NA_TO_ROUTER = hex([
  '020000000001', '02000000000b', '86dd',
  '60000000 0020 3a ff',
  '20010db8000000000000000000000100',
  '20010db8000000000000000000000001',
  '88 00 a86c',
  '40000000', //                            R=0 S=1 O=0
  '20010db8000000000000000000000100',
  '02 01 02000000000b',
]);

describe('MAC addresses', () => {
  it('parses and formats', () => {
    assert.deepEqual(parseMac('02:00:5E:00:53:0A'), Buffer.from('02005e00530a', 'hex'));
    assert.deepEqual(parseMac('02-00-5e-00-53-0a'), Buffer.from('02005e00530a', 'hex'));
    assert.equal(formatMac(Buffer.from('02005e00530a', 'hex')), '02:00:5e:00:53:0a');
    for (const bad of ['', '02:00:5e:00:53', '02:00:5e:00:53:0g', '0200.5e00.530a', '02:00:5e:00:53:0a:00']) {
      assert.throws(() => parseMac(bad), /invalid MAC/);
    }
  });

  it('round-trips any 6 bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), (b) => {
        assert.deepEqual(parseMac(formatMac(b)), Buffer.from(b));
      }),
    );
  });
});

describe('IPv6 multicast helpers', () => {
  it('derives the solicited-node group and its MAC (RFC 4291 §2.7.1, RFC 2464 §7)', () => {
    assert.equal(solicitedNodeAddress('2001:db8::1:2345:6789'), 'ff02::1:ff45:6789');
    assert.equal(ipv6MulticastMac('ff02::1:ff45:6789'), '33:33:ff:45:67:89');
    assert.equal(ipv6MulticastMac('ff02::1'), '33:33:00:00:00:01');
  });
});

describe('ARP frames (byte-exact)', () => {
  it('gratuitous request and reply', () => {
    const [req, rep] = gratuitousArpFrames(NODE_MAC, VIP4);
    assert.equal(req.toString('hex'), GARP_REQUEST.toString('hex'));
    assert.equal(rep.toString('hex'), GARP_REPLY.toString('hex'));
  });

  it('request and reply', () => {
    assert.equal(
      arpRequestFrame({ senderMac: ROUTER_MAC, senderIp: '198.18.0.1', targetIp: VIP4 }).toString('hex'),
      ARP_REQUEST_FROM_ROUTER.toString('hex'),
    );
    assert.equal(
      arpReplyFrame({ mac: NODE_MAC, ip: VIP4, toMac: ROUTER_MAC, toIp: '198.18.0.1' }).toString('hex'),
      ARP_REPLY_TO_ROUTER.toString('hex'),
    );
    assert.equal(decodeArp(ARP_REPLY_TO_ROUTER.subarray(14))?.op, ARP_REPLY);
  });

  it('decodes a request, tolerating Ethernet padding to 60 bytes', () => {
    const padded = Buffer.concat([ARP_REQUEST_FROM_ROUTER, Buffer.alloc(18)]);
    const d = decodeFrame(padded);
    assert.ok(d !== null && d.kind === 'arp');
    assert.deepEqual(d.arp, { op: ARP_REQUEST, senderMac: ROUTER_MAC, senderIp: '198.18.0.1', targetMac: '00:00:00:00:00:00', targetIp: VIP4 });
    assert.equal(d.eth.dst, 'ff:ff:ff:ff:ff:ff');
    assert.equal(d.eth.src, ROUTER_MAC);
  });

  it('rejects non-Ethernet/IPv4 ARP and short input', () => {
    const tokenRing = Buffer.from(ARP_REQUEST_FROM_ROUTER.subarray(14));
    tokenRing.writeUInt16BE(6, 0);
    assert.equal(decodeArp(tokenRing), null);
    assert.equal(decodeArp(ARP_REQUEST_FROM_ROUTER.subarray(14, 40)), null);
    assert.equal(decodeEthernet(Buffer.alloc(13)), null);
    assert.equal(decodeFrame(Buffer.concat([ARP_REQUEST_FROM_ROUTER.subarray(0, 14), tokenRing]))?.kind, 'other');
  });

  it('round-trips any ARP packet', () => {
    const mac = fc.uint8Array({ minLength: 6, maxLength: 6 }).map(formatMac);
    const ip4 = fc.ipV4();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), mac, ip4, mac, ip4, (op, senderMac, senderIp, targetMac, targetIp) => {
        const p = { op, senderMac, senderIp, targetMac, targetIp };
        assert.deepEqual(decodeArp(encodeArp(p)), p);
      }),
    );
  });
});

describe('NDP frames (byte-exact)', () => {
  it('unsolicited NA: to ff02::1, Override=1, Solicited=0, target link-layer address', () => {
    assert.equal(unsolicitedNaFrame(NODE_MAC, VIP6).toString('hex'), UNSOLICITED_NA.toString('hex'));
  });

  it('NS to the solicited-node group', () => {
    assert.equal(
      neighborSolicitationFrame({ mac: ROUTER_MAC, ip: '2001:db8::1', target: VIP6 }).toString('hex'),
      NS_FROM_ROUTER.toString('hex'),
    );
  });

  it('solicited NA reply: Solicited=1, Override=0 by default', () => {
    assert.equal(
      solicitedNaFrame({ mac: NODE_MAC, ip: VIP6, toMac: ROUTER_MAC, toIp: '2001:db8::1' }).toString('hex'),
      SOLICITED_NA_TO_ROUTER.toString('hex'),
    );
  });

  it('decodes the fixtures', () => {
    const ns = decodeFrame(NS_FROM_ROUTER);
    assert.ok(ns !== null && ns.kind === 'ndp');
    assert.deepEqual(ns.ndp, { type: 'ns', target: VIP6, sourceLinkAddr: ROUTER_MAC });
    assert.equal(ns.ip.src, '2001:db8::1');
    assert.equal(ns.ip.dst, 'ff02::1:ff00:100');
    const na = decodeFrame(UNSOLICITED_NA);
    assert.ok(na !== null && na.kind === 'ndp');
    assert.deepEqual(na.ndp, { type: 'na', router: false, solicited: false, override: true, target: VIP6, targetLinkAddr: NODE_MAC });
  });

  it('a correct checksum verifies to zero; a corrupted message is rejected', () => {
    const ip = decodeIpv6(UNSOLICITED_NA.subarray(14));
    assert.ok(ip !== null);
    assert.equal(icmpv6Checksum(ip.src, ip.dst, ip.payload), 0);
    const bad = Buffer.from(UNSOLICITED_NA);
    bad[bad.length - 1]! ^= 0x01;
    assert.equal(decodeFrame(bad)?.kind, 'other');
  });

  it('rejects NDP with a hop limit other than 255, a multicast target, or a zero-length option', () => {
    const ip = decodeIpv6(NS_FROM_ROUTER.subarray(14));
    assert.ok(ip !== null);
    assert.equal(decodeNdp({ ...ip, hopLimit: 64 }), null);
    const mcast = encodeNdp(ip.src, ip.dst, { type: 'ns', target: 'ff02::1' });
    assert.equal(decodeNdp({ ...ip, payload: mcast }), null);
    const zeroOpt = Buffer.from(encodeNdp(ip.src, ip.dst, { type: 'ns', target: VIP6, sourceLinkAddr: ROUTER_MAC }));
    zeroOpt[25] = 0;
    zeroOpt.writeUInt16BE(0, 2);
    zeroOpt.writeUInt16BE(icmpv6Checksum(ip.src, ip.dst, zeroOpt), 2);
    assert.equal(decodeNdp({ ...ip, payload: zeroOpt }), null);
  });

  it('decodes an NS without a source link-layer option (DAD probe)', () => {
    const dad = encodeNdp('::', 'ff02::1:ff00:100', { type: 'ns', target: VIP6 });
    const pkt = decodeIpv6(encodeIpv6({ src: '::', dst: 'ff02::1:ff00:100', nextHeader: 58, hopLimit: 255, payload: dad }));
    assert.ok(pkt !== null);
    assert.deepEqual(decodeNdp(pkt), { type: 'ns', target: VIP6 });
  });

  it('round-trips any NS/NA through Ethernet and IPv6', () => {
    const mac = fc.uint8Array({ minLength: 6, maxLength: 6 }).map(formatMac);
    const unicast6 = fc.ipV6().filter((a) => !normalizeIp(a).startsWith('ff'));
    const message: fc.Arbitrary<NdpMessage> = fc.oneof(
      fc.record({ type: fc.constant('ns' as const), target: unicast6.map(normalizeIp), sourceLinkAddr: mac }, { requiredKeys: ['type', 'target'] }),
      fc.record(
        { type: fc.constant('na' as const), router: fc.boolean(), solicited: fc.boolean(), override: fc.boolean(), target: unicast6.map(normalizeIp), targetLinkAddr: mac },
        { requiredKeys: ['type', 'router', 'solicited', 'override', 'target'] },
      ),
    );
    fc.assert(
      fc.property(mac, mac, fc.ipV6(), fc.ipV6(), message, (ethDst, ethSrc, src, dst, m) => {
        const payload = encodeNdp(src, dst, m);
        const frame = encodeEthernet({ dst: ethDst, src: ethSrc, ethertype: 0x86dd, payload: encodeIpv6({ src, dst, nextHeader: 58, hopLimit: 255, payload }) });
        const d = decodeFrame(frame);
        assert.ok(d !== null && d.kind === 'ndp');
        assert.deepEqual(d.ndp, { ...m }); // fc.record builds null-prototype objects
        assert.equal(d.ip.src, normalizeIp(src));
        assert.equal(d.ip.dst, normalizeIp(dst));
        assert.equal(d.eth.src, ethSrc);
      }),
    );
  });
});

describe('decodeFrame', () => {
  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.constantFrom(0x0806, 0x86dd, 0x0800), (bytes, type) => {
        const b = Buffer.from(bytes);
        if (b.length >= 14) b.writeUInt16BE(type, 12);
        decodeFrame(b);
      }),
    );
  });
});
