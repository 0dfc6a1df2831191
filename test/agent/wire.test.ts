// Agent wire behaviour with real frames between network namespaces (needs root; see src/testenv/netns.ts).
// The announcer runs inside node namespaces through the wire helper; the router is a plain Linux host
// with default sysctls (arp_accept=0), so what it learns is what a real upstream router would learn.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { Network, assertNetnsSupported, sweepStale, type NetNode } from '../../src/testenv/netns.ts';
import { WireHelper } from '../../src/testenv/wire.ts';
import { poll } from '../../src/testenv/poll.ts';
import { IpRoute, vipCidr } from '../../src/agent/net/iproute.ts';
import {
  ARP_REPLY,
  ARP_REQUEST,
  arpFrame,
  arpRequestFrame,
  decodeFrame,
  neighborSolicitationFrame,
  type DecodedFrame,
} from '../../src/agent/net/frames.ts';

const execFileAsync = promisify(execFile);
const decoded = (frames: Buffer[]): DecodedFrame[] => frames.map(decodeFrame).filter((d): d is DecodedFrame => d !== null);

describe('agent on the wire', { concurrency: false }, () => {
  let lab: Network;
  let nodeA: NetNode;
  let nodeB: NetNode;
  const helpers: WireHelper[] = [];
  const helper = async (ns: string): Promise<WireHelper> => {
    const h = await WireHelper.start(lab, ns);
    helpers.push(h);
    return h;
  };

  before(async () => {
    await assertNetnsSupported(); // fails (not skips) without root: these tests are required in CI
    lab = await Network.create({ nodes: 2, prefix: 'egw' });
    [nodeA, nodeB] = lab.nodes as [NetNode, NetNode];
  });

  after(async () => {
    for (const h of helpers) await h.close();
    await lab?.teardown();
  });

  it('GARP burst moves the router neighbour entry of the VIP from node A to node B without an ARP request', async () => {
    const vip = '198.18.0.100';
    const ipA = new IpRoute({ netns: nodeA.ns });
    const ipB = new IpRoute({ netns: nodeB.ns });
    const router = await helper(lab.router.ns);

    // Node A owns the VIP; the router learns it by resolving it for real traffic.
    await ipA.replaceAddress('eth0', vipCidr(vip));
    await router.command('udp', { ip: vip });
    await poll(`router entry ${vip} → A`, async () => (await lab.neighbour(lab.router.ns, vip))?.mac === nodeA.mac, 10_000);

    // Watch the LAN from both nodes: the router's broadcast requests reach A, unicast probes reach the MAC it holds.
    const watchA = await helper(nodeA.ns);
    await watchA.capture('lan', 'eth0', 'arp');
    const b = await helper(nodeB.ns);
    await b.capture('lan', 'eth0', 'arp');

    // Make before break: B adds the VIP and announces, A lets go.
    await ipB.replaceAddress('eth0', vipCidr(vip));
    await ipA.deleteAddress('eth0', vipCidr(vip));
    await b.command('announcer', { burstIntervalMs: 200, burstDurationMs: 1000, reannounceIntervalMs: 0, rescanIntervalMs: 0 });
    await b.command('advertise', { name: 'eg-a', ip: vip, interfaces: [] });

    await poll(`router entry ${vip} → B`, async () => (await lab.neighbour(lab.router.ns, vip))?.mac === nodeB.mac, 10_000);

    // The gratuitous pair arrived on the LAN from B: sender = target = VIP, B's MAC, broadcast. The router
    // moves on the first of the pair, and A's capture reaches us through its helper's stdout: await both
    // frames rather than read the capture at once (one run saw the reply not yet delivered).
    const garps = () => decoded(watchA.framesOf('lan')).filter((d) => d.kind === 'arp' && d.eth.src === nodeB.mac && d.arp.senderIp === vip && d.arp.targetIp === vip);
    const seen = (op: number) => garps().some((d) => d.kind === 'arp' && d.arp.op === op && d.eth.dst === 'ff:ff:ff:ff:ff:ff');
    await poll('the GARP request, seen by A', () => seen(ARP_REQUEST), 5_000);
    await poll('the GARP reply, seen by A', () => seen(ARP_REPLY), 5_000);
    // Counter events travel on the helper's stdout, apart from the frames: await them rather than race.
    await poll('announcementSent counted', () => b.counters.some((c) => c.name === 'announcementSent' && c.ip === vip && c.ifname === 'eth0'), 10_000);
    // The router updated from the announcement alone: it never asked for the VIP.
    const routerAsked = [...decoded(watchA.framesOf('lan')), ...decoded(b.framesOf('lan'))].filter(
      (d) => d.kind === 'arp' && d.eth.src === lab.router.mac && d.arp.op === ARP_REQUEST && d.arp.targetIp === vip,
    );
    assert.deepEqual(routerAsked, []);
    await b.command('withdraw', { name: 'eg-a', ip: vip });
    await ipB.deleteAddress('eth0', vipCidr(vip));
  });

  it('R25: answers only broadcast or own-MAC requests for announced IPs on covered interfaces', async () => {
    const vip = '198.18.0.200'; // announced on eth0 only, not assigned: our responder answers, not the kernel
    const vipEth1 = '198.18.0.201'; // announced on eth1 only (positive control for that interface)
    const unannounced = '198.18.0.202';
    // A second, non-covered interface on B, wired straight to the router namespace.
    await lab.addVeth(nodeB.ns, 'eth1', lab.router.ns, 'q2');
    const b = await helper(nodeB.ns);
    await b.command('announcer', { burstDurationMs: 0, reannounceIntervalMs: 0, rescanIntervalMs: 0 });
    await b.command('advertise', { name: 'foo', ip: vip, interfaces: ['eth0'] });
    await b.command('advertise', { name: 'bar', ip: vipEth1, interfaces: ['eth1'] });

    const tester = await helper(lab.router.ns);
    await tester.capture('lan', 'br0', 'arp');
    await tester.capture('side', 'q2', 'arp');
    const me = lab.router.mac;
    const sideMac = await lab.macOf(lab.router.ns, 'q2');
    const eth1Mac = await lab.macOf(nodeB.ns, 'eth1');
    // Each probe uses its own sender IP, so a reply (addressed to that IP) tells which probe it answers.
    const req = (senderIp: string, targetIp: string, ethDst?: string, senderMac = me) =>
      arpRequestFrame({ senderMac, senderIp, targetIp, ...(ethDst ? { ethDst } : {}) });
    const repliesTo = (sock: string, ip: string) =>
      decoded(tester.framesOf(sock)).filter((d) => d.kind === 'arp' && d.arp.op === ARP_REPLY && d.arp.targetIp === ip);

    // Ignored: unicast to another MAC, an ARP reply, an unannounced IP, a VIP on a non-covered interface.
    await tester.send('lan', req('198.18.0.51', vip, '02:00:00:00:00:77'));
    await tester.send('lan', arpFrame(nodeB.mac, me, { op: ARP_REPLY, senderMac: me, senderIp: '198.18.0.52', targetMac: nodeB.mac, targetIp: vip }));
    await tester.send('lan', req('198.18.0.53', unannounced));
    await tester.send('side', req('198.18.0.54', vip, undefined, sideMac));
    // Answered: broadcast, and unicast to B's own MAC; on eth1 only the VIP covering eth1.
    await tester.send('lan', req('198.18.0.55', vip));
    await tester.send('lan', req('198.18.0.56', vip, nodeB.mac));
    await tester.send('side', req('198.18.0.57', vipEth1, undefined, sideMac));

    const [bcast] = await poll('reply to the broadcast request', () => { const r = repliesTo('lan', '198.18.0.55'); return r.length > 0 && r; }, 10_000);
    await poll('reply to the unicast request', () => repliesTo('lan', '198.18.0.56').length > 0, 10_000);
    const [side] = await poll('reply on eth1', () => { const r = repliesTo('side', '198.18.0.57'); return r.length > 0 && r; }, 10_000);
    assert.ok(bcast?.kind === 'arp' && side?.kind === 'arp');
    assert.deepEqual(bcast.arp, { op: ARP_REPLY, senderMac: nodeB.mac, senderIp: vip, targetMac: me, targetIp: '198.18.0.55' });
    assert.equal(bcast.eth.dst, me);
    assert.equal(side.arp.senderMac, eth1Mac, 'the reply carries the receiving interface MAC');

    // The ignored probes were sent first on the same sockets, so they have been handled by now.
    for (const ip of ['198.18.0.51', '198.18.0.52', '198.18.0.53']) assert.deepEqual(repliesTo('lan', ip), [], `no reply to ${ip}`);
    assert.deepEqual(repliesTo('side', '198.18.0.54'), [], 'no reply on a non-covered interface');
    // The helper reports counters on its stdout, which can trail the frames the tester captured: wait for
    // the three answers to be counted, then check no fourth (an ignored probe) was counted before them.
    await poll('three responses counted', () => b.counters.filter((c) => c.name === 'responseSent').length >= 3, 10_000);
    assert.equal(b.counters.filter((c) => c.name === 'responseSent').length, 3);

    // NDP counterpart: an NS for an announced, unassigned IPv6 VIP gets a solicited NA from B.
    const vip6 = '2001:db8::200';
    await b.command('advertise', { name: 'foo', ip: vip6, interfaces: ['eth0'] });
    await tester.capture('lan6', 'br0', 'ipv6');
    await tester.send('lan6', neighborSolicitationFrame({ mac: me, ip: lab.router.ip6, target: vip6 }));
    const [na] = await poll('solicited NA', () => {
      const r = decoded(tester.framesOf('lan6')).filter((d) => d.kind === 'ndp' && d.ndp.type === 'na' && d.ndp.target === vip6);
      return r.length > 0 && r;
    }, 10_000);
    assert.ok(na?.kind === 'ndp');
    assert.deepEqual(na.ndp, { type: 'na', router: false, solicited: true, override: false, target: vip6, targetLinkAddr: nodeB.mac });
  });

  it('a VIP added with valid_lft 2 stays while refreshed and disappears by itself once refreshes stop', async () => {
    const ipA = new IpRoute({ netns: nodeA.ns });
    for (const vip of ['198.18.0.150', '2001:db8::150']) {
      const has = async () => (await ipA.addresses('eth0')).find((a) => a.ip === vip);
      await ipA.replaceAddress('eth0', vipCidr(vip), { validLft: 2, preferredLft: 2 });
      const added = await has();
      assert.ok(added !== undefined && added.validLft !== 'forever' && added.validLft <= 2, `${vip} added with a 2 s lifetime`);
      // Refresh for longer than one lifetime: the address must survive because of the refreshes.
      const refreshUntil = Date.now() + 3000;
      while (Date.now() < refreshUntil) {
        await ipA.replaceAddress('eth0', vipCidr(vip), { validLft: 2, preferredLft: 2 });
        assert.ok(await has(), `${vip} still present while refreshed`);
        await new Promise((r) => setTimeout(r, 250)); // the refresh cadence itself, not a synchronisation
      }
      await poll(`${vip} to expire`, async () => (await has()) === undefined, 10_000, { intervalMs: 100 });
      assert.equal(await ipA.routeInterfaceFor(vip), 'eth0', 'route lookup falls back to the LAN route');
    }
  });

  it('IPv6: the router observes the unsolicited NA and moves its neighbour entry to node B', async () => {
    const vip6 = '2001:db8::100';
    const ipA = new IpRoute({ netns: nodeA.ns });
    const ipB = new IpRoute({ netns: nodeB.ns });
    const router = await helper(lab.router.ns);
    await router.capture('nd', 'br0', 'ipv6');

    await ipA.replaceAddress('eth0', vipCidr(vip6)); // /128 nodad: the kernel answers NS at once
    await router.command('udp', { ip: vip6 });
    await poll(`router entry ${vip6} → A`, async () => (await lab.neighbour(lab.router.ns, vip6))?.mac === nodeA.mac, 10_000);

    await ipB.replaceAddress('eth0', vipCidr(vip6));
    await ipA.deleteAddress('eth0', vipCidr(vip6));
    const b = await helper(nodeB.ns);
    await b.command('announcer', { burstIntervalMs: 200, burstDurationMs: 1000, reannounceIntervalMs: 0, rescanIntervalMs: 0 });
    await b.command('advertise', { name: 'eg-6', ip: vip6, interfaces: [] });

    const [na] = await poll('unsolicited NA at the router', () => {
      const r = decoded(router.framesOf('nd')).filter((d) => d.kind === 'ndp' && d.ndp.type === 'na' && d.ndp.target === vip6 && d.eth.src === nodeB.mac);
      return r.length > 0 && r;
    }, 10_000);
    assert.ok(na?.kind === 'ndp');
    assert.equal(na.ip.dst, 'ff02::1');
    assert.equal(na.eth.dst, '33:33:00:00:00:01');
    assert.deepEqual(na.ndp, { type: 'na', router: false, solicited: false, override: true, target: vip6, targetLinkAddr: nodeB.mac });
    await poll(`router entry ${vip6} → B`, async () => (await lab.neighbour(lab.router.ns, vip6))?.mac === nodeB.mac, 10_000);

    await poll('IPv6 announcementSent counted', () => b.counters.some((c) => c.name === 'announcementSent' && c.ip === vip6), 10_000);
    // A's kernel-built solicited NA (its answer when the router resolved the VIP) passes our decoder,
    // checksum included: an independent check of the ICMPv6 code against Linux.
    assert.ok(decoded(router.framesOf('nd')).some((d) => d.kind === 'ndp' && d.ndp.type === 'na' && d.eth.src === nodeA.mac && d.ndp.solicited));
  });
});

describe('network-namespace lab', () => {
  it('reaches a root-namespace server over the management link, and tears down completely', async () => {
    await assertNetnsSupported();
    const lab = await Network.create({ nodes: 1, prefix: 'egm', management: true });
    const server = createServer((c) => c.end('pong'));
    try {
      const node = lab.nodes[0]!;
      assert.ok(node.mgmt !== undefined && lab.mgmt !== undefined);
      await new Promise<void>((resolve) => server.listen(0, lab.mgmt!.hostIp, resolve));
      const { port } = server.address() as AddressInfo;
      const script = `require('net').connect(${port}, '${lab.mgmt.hostIp}').on('data', (d) => process.stdout.write(d))`;
      assert.equal(await lab.exec(node.ns, process.execPath, ['-e', script]), 'pong');
    } finally {
      server.close();
      await lab.teardown();
    }
    const left = (await execFileAsync('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith(lab.id));
    assert.deepEqual(left, []);
    const links = (await execFileAsync('ip', ['-o', 'link', 'show'])).stdout.split('\n').filter((l) => l.includes(lab.id));
    assert.deepEqual(links, []);
  });

  it('sweepStale removes a lab whose owner is gone and leaves live labs alone', async () => {
    await assertNetnsSupported();
    const live = await Network.create({ nodes: 1, prefix: 'egs' });
    try {
      // A crashed run: a namespace and a root link with the prefix and no live owner.
      const deadId = 'egs0dead0'; // prefix + 6 hex digits, like a real lab id
      await execFileAsync('ip', ['netns', 'add', `${deadId}-router`]);
      await execFileAsync('ip', ['link', 'add', `${deadId}m1`, 'type', 'veth', 'peer', 'name', `${deadId}m1p`]);
      const removed = await sweepStale('egs');
      assert.ok(removed.includes(deadId), `removed ${removed.join(',')}`);
      assert.ok(!removed.includes(live.id));
      const names = (await execFileAsync('ip', ['netns', 'list'])).stdout;
      assert.ok(!names.includes(`${deadId}-router`));
      assert.ok(names.includes(live.router.ns));
    } finally {
      await live.teardown();
      // In case the assertions failed before the sweep did its job.
      await execFileAsync('ip', ['netns', 'del', 'egs0dead0-router']).catch(() => undefined);
      await execFileAsync('ip', ['link', 'del', 'egs0dead0m1']).catch(() => undefined);
    }
  });
});
