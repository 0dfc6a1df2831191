// The kernel dead-man's switch (src/agent/fence.ts) with real frames between network namespaces: node A
// holds the VIPs on eth0, the fence runs inside A's namespace (libnftables in process, as in the agent),
// and the router asks for the VIPs on the wire. Needs root.
//
// "Not answered" is shown without waiting for a guessed time: right after the question about the VIP,
// the router asks the same question about A's own address, which A always answers. A's kernel handles
// the two in order, so once the second answer is in, an answer to the first would already be there.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Network, assertNetnsSupported, type NetNode } from '../../src/testenv/netns.ts';
import { NetnsRpc } from '../../src/testenv/netns-rpc.ts';
import { WireHelper } from '../../src/testenv/wire.ts';
import { poll } from '../../src/testenv/poll.ts';
import { IpRoute, vipCidr } from '../../src/agent/net/iproute.ts';
import { arpRequestFrame, decodeFrame, neighborSolicitationFrame, type DecodedFrame } from '../../src/agent/net/frames.ts';
import type { FenceState } from '../../src/agent/fence.ts';

const FIXTURE = fileURLToPath(new URL('./fence-fixture.ts', import.meta.url));
const VIP = '198.18.0.100';
const VIP6 = '2001:db8::100';
const PORT = 9999;
const LONG = 60_000;

describe('kernel fence (nftables dead-man\'s switch)', { concurrency: false }, () => {
  let net: Network;
  let a: NetNode;
  let fence: NetnsRpc;
  let routerUdp: NetnsRpc;
  let router: WireHelper;

  before(async () => {
    await assertNetnsSupported();
    net = await Network.create({ nodes: 1, prefix: 'egf' });
    a = net.nodes[0]!;
    const ip = new IpRoute({ netns: a.ns });
    await ip.replaceAddress('eth0', vipCidr(VIP));
    await ip.replaceAddress('eth0', vipCidr(VIP6));
    fence = await NetnsRpc.start(net, a.ns, FIXTURE);
    routerUdp = await NetnsRpc.start(net, net.router.ns, FIXTURE);
    router = await WireHelper.start(net, net.router.ns);
    await router.capture('arp', 'br0', 'arp');
    await router.capture('nd', 'br0', 'ipv6');
    await fence.call('install');
  });

  after(async () => {
    await fence?.close();
    await routerUdp?.close();
    await router?.close();
    await net?.teardown();
  });

  const answersFromA = (sock: string, from: number): DecodedFrame[] =>
    router.framesOf(sock).slice(from).map(decodeFrame).filter((d): d is DecodedFrame => d !== null && d.eth.src === a.mac);
  const arpAnswer = (d: DecodedFrame, ip: string) => d.kind === 'arp' && d.arp.op === 2 && d.arp.senderIp === ip;
  const naAnswer = (d: DecodedFrame, ip: string) => d.kind === 'ndp' && d.ndp.type === 'na' && d.ndp.target === ip;

  /**
   * Does A answer a question about `ip` on socket `sock`, judged against its answer to the same question
   * about its own address `own`, asked right after?
   */
  async function answers(sock: 'arp' | 'nd', ip: string, own: string): Promise<boolean> {
    const ask = (target: string) => sock === 'arp'
      ? arpRequestFrame({ senderMac: net.router.mac, senderIp: net.router.ip, targetIp: target })
      : neighborSolicitationFrame({ mac: net.router.mac, ip: net.router.ip6, target });
    const answer = (d: DecodedFrame, target: string) => (sock === 'arp' ? arpAnswer(d, target) : naAnswer(d, target));
    const from = router.framesOf(sock).length;
    await router.send(sock, ask(ip));
    await router.send(sock, ask(own));
    await poll(`A's answer for its own ${own}`, () => answersFromA(sock, from).some((d) => answer(d, own)), 10_000, { intervalMs: 10 });
    return answersFromA(sock, from).some((d) => answer(d, ip));
  }
  const answersArp = (ip: string): Promise<boolean> => answers('arp', ip, a.ip);
  const answersNs = (ip: string): Promise<boolean> => answers('nd', ip, a.ip6);

  /** Does a datagram to `ip` reach a socket on A (control: one to A's own address, sent right after)? */
  async function reachesA(ip: string, control: string): Promise<boolean> {
    const tag = `to ${ip} #${Math.random()}`;
    await routerUdp.call('udpSend', '', ip, PORT, tag);
    await routerUdp.call('udpSend', '', control, PORT, `${tag} control`);
    await poll('the control datagram at A', async () => (await fence.call<string[]>('udpReceived')).includes(`${tag} control`), 10_000, { intervalMs: 10 });
    return (await fence.call<string[]>('udpReceived')).includes(tag);
  }

  /** Does a datagram sent by A from `ip` leave A (control: one from A's own address, sent right after)? */
  async function leavesA(ip: string, control: string, to: string): Promise<boolean> {
    const tag = `from ${ip} #${Math.random()}`;
    const sent = await fence.call<string>('udpSend', ip, to, PORT, tag);
    assert.equal(await fence.call('udpSend', control, to, PORT, `${tag} control`), 'sent');
    await poll('the control datagram at the router', async () => (await routerUdp.call<string[]>('udpReceived')).includes(`${tag} control`), 10_000, { intervalMs: 10 });
    const arrived = (await routerUdp.call<string[]>('udpReceived')).includes(tag);
    // A drop on the way out is reported to a local sender as EPERM; either way nothing may arrive.
    assert.ok(sent === 'sent' || !arrived);
    return arrived;
  }

  it('the kernel answers ARP and NS for a VIP only while its gate is open', async () => {
    assert.equal(await fence.call('openFor', [VIP, VIP6], LONG), true);
    assert.equal(await answersArp(VIP), true, 'open: ARP reply for the VIP');
    assert.equal(await answersNs(VIP6), true, 'open: NA for the VIP');
    await fence.call('close', [VIP, VIP6]);
    assert.deepEqual(await fence.call<FenceState>('state'), { gated: [VIP, VIP6].sort(), open: [] });
    assert.equal(await answersArp(VIP), false, 'closed: no ARP reply for the VIP');
    assert.equal(await answersNs(VIP6), false, 'closed: no NA for the VIP');
  });

  it('IP to and from a VIP passes only while its gate is open', async () => {
    await fence.call('udpListen', PORT);
    await routerUdp.call('udpListen', PORT);
    // The router must reach A's VIPs without asking for them while they are closed: pin its neighbours.
    await net.ip(net.router.ns, ['neigh', 'replace', VIP, 'lladdr', a.mac, 'dev', 'br0', 'nud', 'permanent']);
    await net.ip(net.router.ns, ['neigh', 'replace', VIP6, 'lladdr', a.mac, 'dev', 'br0', 'nud', 'permanent']);
    await fence.call('openFor', [VIP, VIP6], LONG);
    assert.equal(await reachesA(VIP, a.ip), true, 'open: IPv4 to the VIP');
    assert.equal(await reachesA(VIP6, a.ip6), true, 'open: IPv6 to the VIP');
    assert.equal(await leavesA(VIP, a.ip, net.router.ip), true, 'open: IPv4 from the VIP');
    assert.equal(await leavesA(VIP6, a.ip6, net.router.ip6), true, 'open: IPv6 from the VIP');
    await fence.call('close', [VIP, VIP6]);
    assert.equal(await reachesA(VIP, a.ip), false, 'closed: IPv4 to the VIP dropped');
    assert.equal(await reachesA(VIP6, a.ip6), false, 'closed: IPv6 to the VIP dropped');
    assert.equal(await leavesA(VIP, a.ip, net.router.ip), false, 'closed: IPv4 from the VIP dropped');
    assert.equal(await leavesA(VIP6, a.ip6, net.router.ip6), false, 'closed: IPv6 from the VIP dropped');
  });

  it('the gate closes by itself when its timeout runs out (nobody refreshes it)', async () => {
    assert.equal(await fence.call('openFor', [VIP, VIP6], 300), true);
    // The kernel removes the elements on its own: no call to the fence in between.
    await poll('the open elements to time out', async () => (await fence.call<FenceState>('state')).open.length === 0, 10_000, { intervalMs: 20 });
    assert.equal(await answersArp(VIP), false);
    assert.equal(await answersNs(VIP6), false);
  });

  it('a refresh replaces the timeout, shorter or longer (delete + add in one transaction)', async () => {
    await fence.call('openFor', [VIP], LONG);
    const long = await fence.call<Record<string, number>>('expiresMs');
    assert.ok(long[`arp/${VIP}`]! > 50_000 && long[`inet/${VIP}`]! > 50_000, JSON.stringify(long));
    // Re-adding an existing element would keep the 60 s: the refresh must shorten it.
    await fence.call('openFor', [VIP], 500);
    const short = await fence.call<Record<string, number>>('expiresMs');
    assert.ok(short[`arp/${VIP}`]! < 1000 && short[`inet/${VIP}`]! < 1000, JSON.stringify(short));
    await fence.call('openFor', [VIP], LONG);
    const again = await fence.call<Record<string, number>>('expiresMs');
    assert.ok(again[`arp/${VIP}`]! > 50_000, JSON.stringify(again));
    await fence.call('close', [VIP]);
  });

  it('a deadline already passed opens nothing (a caller frozen after computing it)', async () => {
    assert.equal(await fence.call('openFor', [VIP], 0), false);
    assert.equal(await fence.call('openFor', [VIP], -500), false);
    assert.deepEqual((await fence.call<FenceState>('state')).open, []);
    assert.equal(await answersArp(VIP), false);
  });

  it('re-installing (a restarted agent) keeps the VIPs gated and closes every gate', async () => {
    await fence.call('openFor', [VIP, VIP6], LONG);
    await fence.call('install');
    assert.deepEqual(await fence.call<FenceState>('state'), { gated: [VIP, VIP6].sort(), open: [] });
    assert.equal(await answersArp(VIP), false, 'still gated after the re-install');
  });

  it('forget stops gating a VIP; uninstall removes the gate altogether', async () => {
    await fence.call('forget', [VIP]);
    assert.deepEqual(await fence.call<FenceState>('state'), { gated: [VIP6], open: [] });
    assert.equal(await answersArp(VIP), true, 'no longer gated: the kernel answers');
    assert.equal(await answersNs(VIP6), false, 'the other VIP is still gated');
    await fence.call('uninstall');
    assert.deepEqual(await fence.call<FenceState>('state'), { gated: [], open: [] });
    assert.equal(await answersNs(VIP6), true);
  });
});
