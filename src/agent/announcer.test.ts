import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AdvertisementTable, Announcer, decide, type FrameSocket, type InterfaceInfo, type InterfaceView, type SocketKind } from './announcer.ts';
import {
  ARP_REPLY,
  arpFrame,
  arpRequestFrame,
  decodeFrame,
  gratuitousArpFrames,
  ndpFrame,
  neighborSolicitationFrame,
  unsolicitedNaFrame,
} from './net/frames.ts';

const ETH1: InterfaceView = { name: 'eth1', mac: '02:00:00:00:00:0b', localIps: new Set() };
const ETH2: InterfaceView = { name: 'eth2', mac: '02:00:00:00:00:0c', localIps: new Set() };
const REQUESTER = { mac: '02:00:00:00:00:01', ip: '192.168.1.1' };
const VIP = '192.168.1.20';
const VIP6 = '2001:db8::20';

describe('AdvertisementTable (R28)', () => {
  it('reference-counts an IP across advertisements and unions their interfaces', () => {
    const t = new AdvertisementTable();
    assert.equal(t.set({ name: 'foo', ip: VIP, interfaces: [] }), true);
    assert.equal(t.set({ name: 'foo', ip: '1000::1', interfaces: [] }), true);
    assert.equal(t.set({ name: 'bar', ip: VIP, interfaces: ['eth1'] }), false, 'already announced by foo');
    assert.deepEqual(t.ips().sort(), ['1000::1', VIP]);
    assert.equal(t.advertisements().length, 3);

    assert.equal(t.delete('bar', VIP), false, 'foo still names it');
    assert.equal(t.isAnnounced(VIP), true);
    assert.equal(t.covers(VIP, 'eth7'), true, 'foo covers every interface');
    assert.equal(t.delete('foo', VIP), true);
    assert.equal(t.isAnnounced(VIP), false);
    assert.equal(t.isAnnounced('1000::1'), true);
    assert.equal(t.delete('foo', VIP), false, 'deleting twice is a no-op');
  });

  it('covers only the named interfaces, normalising IPv6 spelling', () => {
    const t = new AdvertisementTable();
    t.set({ name: 'a', ip: '2001:DB8:0:0::20', interfaces: ['eth1'] });
    assert.equal(t.covers(VIP6, 'eth1'), true);
    assert.equal(t.covers(VIP6, 'eth2'), false);
    t.set({ name: 'b', ip: VIP6, interfaces: ['eth2'] });
    assert.equal(t.covers(VIP6, 'eth2'), true);
  });
});

describe('decide: ARP (R25)', () => {
  const table = new AdvertisementTable();
  table.set({ name: 'foo', ip: VIP, interfaces: ['eth1'] });
  const request = (o: { ethDst?: string; targetIp?: string } = {}) =>
    arpRequestFrame({ senderMac: REQUESTER.mac, senderIp: REQUESTER.ip, targetIp: o.targetIp ?? VIP, ...(o.ethDst ? { ethDst: o.ethDst } : {}) });

  const cases: { name: string; frame: Buffer; iface?: InterfaceView; expect: string }[] = [
    { name: 'broadcast request for the VIP', frame: request(), expect: 'reply' },
    { name: 'request unicast to our MAC', frame: request({ ethDst: ETH1.mac }), expect: 'reply' },
    { name: 'request unicast to another MAC', frame: request({ ethDst: '02:00:00:00:00:99' }), expect: 'not-for-us' },
    { name: 'request to a multicast MAC', frame: request({ ethDst: '01:00:5e:00:00:01' }), expect: 'not-for-us' },
    {
      name: 'an ARP reply',
      frame: arpFrame('ff:ff:ff:ff:ff:ff', REQUESTER.mac, { op: ARP_REPLY, senderMac: REQUESTER.mac, senderIp: REQUESTER.ip, targetMac: ETH1.mac, targetIp: VIP }),
      expect: 'not-a-request',
    },
    { name: 'request for an unannounced IP', frame: request({ targetIp: '192.168.1.21' }), expect: 'not-announced' },
    { name: 'request on an interface the advertisement does not cover', frame: request(), iface: ETH2, expect: 'not-covered' },
    { name: "someone else's gratuitous ARP for the VIP", frame: gratuitousArpFrames(REQUESTER.mac, VIP)[0], expect: 'gratuitous' },
    { name: 'request where the kernel holds the VIP', frame: request(), iface: { ...ETH1, localIps: new Set([VIP]) }, expect: 'kernel-answers' },
    { name: 'a truncated frame', frame: Buffer.alloc(10), expect: 'malformed' },
    { name: 'an IPv4 packet', frame: Buffer.concat([Buffer.from('ffffffffffff0200000000010800', 'hex'), Buffer.alloc(40)]), expect: 'not-arp-or-ndp' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = decide(c.frame, c.iface ?? ETH1, table);
      assert.equal(d.action === 'reply' ? 'reply' : d.reason, c.expect);
    });
  }

  it('replies from the receiving interface MAC, unicast to the requester', () => {
    const d = decide(request(), ETH1, table);
    assert.equal(d.action, 'reply');
    const r = decodeFrame(d.action === 'reply' ? d.frame : Buffer.alloc(0));
    assert.ok(r !== null && r.kind === 'arp');
    assert.deepEqual(r.eth, { ...r.eth, dst: REQUESTER.mac, src: ETH1.mac });
    assert.deepEqual(r.arp, { op: ARP_REPLY, senderMac: ETH1.mac, senderIp: VIP, targetMac: REQUESTER.mac, targetIp: REQUESTER.ip });
  });

  it('answers where the VIP is assigned when asked to', () => {
    const d = decide(request(), { ...ETH1, localIps: new Set([VIP]) }, table, { answerWhenAssigned: true });
    assert.equal(d.action, 'reply');
  });
});

describe('decide: NDP', () => {
  const table = new AdvertisementTable();
  table.set({ name: 'foo', ip: VIP6, interfaces: [] });
  const router = { mac: REQUESTER.mac, ip: '2001:db8::1' };

  it('answers an NS for an announced IP with a solicited NA (S=1, O=0) from our MAC', () => {
    const d = decide(neighborSolicitationFrame({ ...router, target: VIP6 }), ETH1, table);
    assert.equal(d.action, 'reply');
    const r = decodeFrame(d.action === 'reply' ? d.frame : Buffer.alloc(0));
    assert.ok(r !== null && r.kind === 'ndp');
    assert.equal(r.eth.dst, router.mac);
    assert.equal(r.ip.dst, router.ip);
    assert.deepEqual(r.ndp, { type: 'na', router: false, solicited: true, override: false, target: VIP6, targetLinkAddr: ETH1.mac });
  });

  it('ignores NAs, DAD probes, unannounced targets and frames for other MACs', () => {
    assert.deepEqual(decide(unsolicitedNaFrame(router.mac, VIP6), ETH1, table), { action: 'ignore', reason: 'not-a-request' });
    const dad = ndpFrame({ ethDst: '33:33:ff:00:00:20', ethSrc: router.mac, src: '::', dst: 'ff02::1:ff00:20', message: { type: 'ns', target: VIP6 } });
    assert.deepEqual(decide(dad, ETH1, table), { action: 'ignore', reason: 'no-source-lladdr' });
    assert.deepEqual(decide(neighborSolicitationFrame({ ...router, target: '2001:db8::21' }), ETH1, table), { action: 'ignore', reason: 'not-announced' });
    const elsewhere = ndpFrame({ ethDst: '02:00:00:00:00:99', ethSrc: router.mac, src: router.ip, dst: VIP6, message: { type: 'ns', target: VIP6, sourceLinkAddr: router.mac } });
    assert.deepEqual(decide(elsewhere, ETH1, table), { action: 'ignore', reason: 'not-for-us' });
    const unicast = ndpFrame({ ethDst: ETH1.mac, ethSrc: router.mac, src: router.ip, dst: VIP6, message: { type: 'ns', target: VIP6, sourceLinkAddr: router.mac } });
    assert.equal(decide(unicast, ETH1, table).action, 'reply');
  });
});

// Announcer I/O against fake sockets (our own seam) and mocked timers.
class FakeSocket implements FrameSocket {
  sent: Buffer[] = [];
  groups: string[] = [];
  closed = false;
  listener: ((frame: Buffer) => void) | undefined;
  send(frame: Buffer): number {
    this.sent.push(frame);
    return frame.length;
  }
  on(_event: 'frame', listener: (frame: Buffer) => void): this {
    this.listener = listener;
    return this;
  }
  addMulticast(mac: Buffer): void {
    this.groups.push(mac.toString('hex'));
  }
  dropMulticast(mac: Buffer): void {
    this.groups.splice(this.groups.indexOf(mac.toString('hex')), 1);
  }
  close(): void {
    this.closed = true;
  }
}

function harness(opts: ConstructorParameters<typeof Announcer>[0] = {}) {
  const sockets = new Map<string, FakeSocket>();
  const counters = { announcements: 0, requests: 0, responses: 0 };
  const announcer = new Announcer({
    reannounceIntervalMs: 0,
    ...opts,
    openSocket: (iface: InterfaceInfo, kind: SocketKind) => {
      const s = new FakeSocket();
      sockets.set(`${iface.name}/${kind}`, s);
      return s;
    },
    hooks: {
      announcementSent: () => counters.announcements++,
      requestReceived: () => counters.requests++,
      responseSent: () => counters.responses++,
    },
  });
  const ifaces: InterfaceInfo[] = [
    { name: 'eth1', index: 2, mac: ETH1.mac, ipv6: true, localIps: [] },
    { name: 'eth2', index: 3, mac: ETH2.mac, ipv6: false, localIps: [] },
  ];
  announcer.setInterfaces(ifaces);
  const sock = (k: string): FakeSocket => {
    const s = sockets.get(k);
    assert.ok(s, `socket ${k}`);
    return s;
  };
  return { announcer, sock, counters, ifaces };
}

describe('Announcer', () => {
  it('sends a gratuitous burst at once and then every interval until the duration ends', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
    const { announcer, sock, counters } = harness({ burstIntervalMs: 1100, burstDurationMs: 5000 });
    announcer.advertise({ name: 'foo', ip: VIP, interfaces: ['eth1'] });
    const eth1 = sock('eth1/arp');
    assert.equal(eth1.sent.length, 2, 'request + reply immediately');
    assert.deepEqual(eth1.sent.map((f) => f.toString('hex')), gratuitousArpFrames(ETH1.mac, VIP).map((f) => f.toString('hex')));
    assert.equal(sock('eth2/arp').sent.length, 0, 'eth2 is not covered');
    for (let i = 0; i < 10; i++) t.mock.timers.tick(1100);
    // at 0, 1.1, 2.2, 3.3, 4.4 s: five rounds of two frames
    assert.equal(eth1.sent.length, 10);
    assert.equal(counters.announcements, 5);
    announcer.stop();
    assert.equal(eth1.closed, true);
  });

  it('re-announces periodically and not on a second advertisement of the same IP', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
    const { announcer, sock } = harness({ burstDurationMs: 0, reannounceIntervalMs: 10_000 });
    void announcer.start();
    announcer.advertise({ name: 'foo', ip: VIP, interfaces: [] });
    announcer.advertise({ name: 'bar', ip: VIP, interfaces: ['eth1'] });
    assert.equal(sock('eth1/arp').sent.length, 2);
    assert.equal(sock('eth2/arp').sent.length, 2);
    t.mock.timers.tick(10_000);
    assert.equal(sock('eth1/arp').sent.length, 4);
    announcer.withdraw('foo', VIP);
    t.mock.timers.tick(10_000);
    assert.equal(sock('eth1/arp').sent.length, 6, 'bar still announces on eth1');
    assert.equal(sock('eth2/arp').sent.length, 4, 'nothing covers eth2 any more');
    announcer.stop();
  });

  it('answers requests through the receiving socket and counts them', () => {
    const { announcer, sock, counters } = harness({ burstDurationMs: 0 });
    announcer.advertise({ name: 'foo', ip: VIP, interfaces: [] });
    const eth2 = sock('eth2/arp');
    eth2.sent.length = 0;
    eth2.listener?.(arpRequestFrame({ senderMac: REQUESTER.mac, senderIp: REQUESTER.ip, targetIp: VIP }));
    eth2.listener?.(arpRequestFrame({ senderMac: REQUESTER.mac, senderIp: REQUESTER.ip, targetIp: '192.168.1.99' }));
    assert.equal(eth2.sent.length, 1);
    assert.equal(decodeFrame(eth2.sent[0]!)?.eth.src, ETH2.mac);
    assert.deepEqual(counters, { announcements: 2, requests: 1, responses: 1 });
    announcer.withdraw('foo', VIP);
    eth2.listener?.(arpRequestFrame({ senderMac: REQUESTER.mac, senderIp: REQUESTER.ip, targetIp: VIP }));
    assert.equal(eth2.sent.length, 1, 'withdrawn: no answer');
    announcer.stop();
  });

  it('joins and leaves the solicited-node group of an IPv6 VIP, and sends unsolicited NAs', () => {
    const { announcer, sock } = harness({ burstDurationMs: 0 });
    announcer.advertise({ name: 'foo', ip: VIP6, interfaces: [] });
    const ndp = sock('eth1/ndp');
    assert.deepEqual(ndp.groups, ['3333ff000020']);
    assert.deepEqual(ndp.sent.map((f) => f.toString('hex')), [unsolicitedNaFrame(ETH1.mac, VIP6).toString('hex')]);
    announcer.withdraw('foo', VIP6);
    assert.deepEqual(ndp.groups, []);
    announcer.stop();
  });

  it('closes sockets of vanished interfaces and announces on new ones', () => {
    const { announcer, sock, ifaces } = harness({ burstDurationMs: 0 });
    announcer.advertise({ name: 'foo', ip: VIP, interfaces: [] });
    announcer.setInterfaces([ifaces[0]!, { name: 'eth3', index: 9, mac: '02:00:00:00:00:0d', ipv6: false, localIps: [] }]);
    assert.equal(sock('eth2/arp').closed, true);
    assert.equal(sock('eth3/arp').sent.length, 2);
    assert.deepEqual(announcer.interfaces(), ['eth1', 'eth3']);
    announcer.stop();
  });

  it('keeps going when a socket cannot be opened', () => {
    const errors: string[] = [];
    const announcer = new Announcer({
      openSocket: () => {
        throw Object.assign(new Error('socket: Operation not permitted'), { code: 'EPERM' });
      },
      hooks: { error: (_e, ctx) => errors.push(ctx) },
    });
    announcer.setInterfaces([{ name: 'eth1', index: 2, mac: ETH1.mac, ipv6: false, localIps: [] }]);
    announcer.advertise({ name: 'foo', ip: VIP, interfaces: [] });
    assert.deepEqual(errors, ['open arp socket on eth1']);
    announcer.stop();
  });
});

