// After a VIP failover the new gateway node has no conntrack entry for a connection the old one carried
// (issue 11). When the SERVER sends first, its segment reaches the new node before the pod has re-created
// the entry (nf_conntrack_tcp_loose picks a connection up from the pod's next segment). Such a segment
// must be dropped, not delivered to the node's own stack, which has no socket for VIP:port and would answer
// with a RST, killing the connection at the server; the server retransmits until the pod's next segment has
// re-created the entry. Conntrack classifies the server's segments differently: a data segment or a bare
// ACK (a keepalive probe) is picked up as `new`, a FIN or a RST is `invalid` (its pickup table has no
// state for them). This file proves, with real packets, what each gets on the new node and that none
// draws a RST from it: data and keepalive carry on, a FIN closes the connection cleanly at the pod once it
// speaks, a RST resets it then (from the server, as without any failover). The other way round, a FIN from
// the POD for such a connection is invalid too: node 2 cannot SNAT it and must drop it rather than send it
// on with the pod's address (conntrack cannot pick the connection up from it, so the close is lost).
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { POD_CIDR, type PodNs } from '../../src/testenv/podnet.ts';
import { freshPort, type Traffic } from '../../src/testenv/traffic.ts';
import { poll } from '../../src/testenv/poll.ts';
import { FailoverRig, VIP, WAIT, closedEvent, closedWith, echoed } from './failover-rig.ts';

/** Kinds of segment from the server the probe tells apart (the rule under test matches on flags). */
const KINDS = {
  fin: 'tcp flags & fin == fin',
  rst: 'tcp flags & rst == rst',
  data: 'tcp flags & (fin | syn | rst | psh) == psh',
  ack: 'tcp flags & (fin | syn | rst | psh | ack) == ack',
} as const;
type Kind = keyof typeof KINDS;

describe('a VIP failover where the server (or the pod, closing) sends first: the new gateway node drops what it cannot track, never answers with a RST, never leaks a pod address', { concurrency: false }, () => {
  let rig: FailoverRig;
  let pod: PodNs;
  let inet: Traffic;
  let client: Traffic;

  before(async () => {
    rig = await FailoverRig.create('egf', 1);
    [pod] = rig.pods as [PodNs];
    inet = rig.inet;
    [client] = rig.clients as [Traffic];
  });

  after(async () => {
    await rig?.close();
  });

  afterEach(() => rig.stopAll());

  /**
   * Records, on gateway node 2, the conntrack state of each kind of segment from the server to the VIP
   * (after conntrack, before our prerouting chain may drop it: priority mangle < mangle + 10).
   */
  const ctProbe = async () => {
    const sets = Object.keys(KINDS).map((k) => `\tset ${k} { typeof ct state; flags dynamic; }`);
    const rules = Object.entries(KINDS).map(([k, match]) => `\t\tip saddr ${rig.net.internet.ip} ip daddr ${VIP} ${match} add @${k} { ct state }`);
    await rig.lab.exec(rig.gw2.ns, 'nft', [['table inet ctprobe {}', 'delete table inet ctprobe', 'table inet ctprobe {', ...sets,
      // The pod's FINs, and what leaves node 2 after every postrouting rule of ours with a pod's address.
      '\tcounter podfin {}', '\tset podfinstate { typeof ct state; flags dynamic; }', '\tset leaks { type ipv4_addr . inet_service; flags dynamic; }',
      '\tchain pre {', '\t\ttype filter hook prerouting priority mangle; policy accept;', ...rules,
      `\t\tip saddr ${pod.ip} tcp flags & fin == fin counter name podfin add @podfinstate { ct state }`, '\t}',
      '\tchain post {', '\t\ttype filter hook postrouting priority srcnat + 2; policy accept;',
      `\t\tip saddr ${POD_CIDR} oifname "eth0" add @leaks { ip saddr . tcp sport }`, '\t}', '}'].join('\n')]);
  };
  /** The conntrack states segments of `kind` from the server had on gateway node 2 so far. */
  const ctStates = async (kind: Kind | 'podfinstate'): Promise<string[]> => {
    const j = JSON.parse(await rig.lab.exec(rig.gw2.ns, 'nft', ['-j', 'list', 'set', 'inet', 'ctprobe', kind])) as { nftables: Array<{ set?: { elem?: string[] } }> };
    return (j.nftables.find((o) => o.set)?.set?.elem ?? []).sort();
  };
  /** Waits until gateway node 2 saw a segment of `kind` from the server; returns the states it had. */
  const seen = (kind: Kind) => poll(`a ${kind} from the server at gateway node 2`, async () => {
    const s = await ctStates(kind);
    return s.length > 0 && s;
  }, WAIT);

  /** Pod's connection through gateway node 1, then the failover; the server has not sent since. */
  const openAndFailOver = async () => {
    await rig.fresh();
    await ctProbe();
    const id = `f${freshPort()}`;
    const server = freshPort();
    await inet.tcpListen(id, server, { record: true });
    const port = await rig.connect(id, server, 0, 'a');
    await rig.failover();
    return { id, cid: `${id}a`, server, port };
  };
  /** Neither gateway node 2 nor the server sent a RST on the case's connection. */
  const noRstFromEither = async (server: number) => {
    for (const ns of [rig.gw2.ns, rig.net.internet.ns]) assert.deepEqual(await rig.rstsSent(ns, server), [], `no RST from ${ns}`);
  };
  /** No RST from gateway node 2's stack and the pod's connection still open: nothing was answered. */
  const nothingAnswered = async (cid: string, server: number) => {
    assert.deepEqual(await rig.rstsSent(rig.gw2.ns, server), [], 'no RST from the new gateway node');
    assert.equal(closedEvent(client, cid), undefined, 'the pod\'s connection is still open');
  };

  it('the server closes first (FIN): invalid on the new node, dropped; once the pod speaks the FIN reaches it and both sides close cleanly', async () => {
    const { id, cid, server, port } = await openAndFailOver();
    await inet.tcpPeer(id, port, 'end');
    assert.deepEqual(await seen('fin'), ['invalid'], 'conntrack cannot pick a connection up from a FIN');
    await nothingAnswered(cid, server);

    await client.tcpSend(cid, 'a2');
    assert.deepEqual([(await rig.pickedUp(pod, server)).natPort], [port], 'node 2 keeps the port the server knows');
    const closed = await poll('the pod\'s connection closed', () => closedEvent(client, cid), WAIT);
    assert.equal(closed.error, undefined, 'closed by the server\'s FIN, not reset');
    await poll('the server\'s side closed', () => inet.tcp.find((e) => e.id === id && e.ev === 'closed'), WAIT);
    assert.equal(inet.tcp.find((e) => e.id === id && e.ev === 'closed')?.error, undefined);
    assert.deepEqual(rig.serverLines(id), [`${port}:a1`, `${port}:a2`], 'the half-closed server still read the pod\'s line');
    await noRstFromEither(server);
  });

  it('the server sends data first: new on the new node, dropped; once the pod speaks both lines get through', async () => {
    const { id, cid, port, server } = await openAndFailOver();
    await inet.tcpPeer(id, port, 'send', 's1');
    assert.deepEqual(await seen('data'), ['new'], 'conntrack picks the segment up (loose) in the server\'s direction');
    await nothingAnswered(cid, server);

    await client.tcpSend(cid, 'a2');
    await poll('the pod reads the server\'s line and the echo of its own', () => echoed(client, cid, 's1') && echoed(client, cid, 'a2'), WAIT);
    assert.deepEqual(rig.serverLines(id), [`${port}:a1`, `${port}:a2`]);
    assert.equal(closedEvent(client, cid), undefined);
    await noRstFromEither(server);
  });

  it('the server sends a bare ACK first (a keepalive probe): new on the new node, dropped; the connection carries on', async () => {
    const { id, cid, port, server } = await openAndFailOver();
    await inet.tcpPeer(id, port, 'keepalive');
    assert.deepEqual(await seen('ack'), ['new']);
    await nothingAnswered(cid, server);

    await client.tcpSend(cid, 'a2');
    await poll('the pod\'s line echoes through node 2', () => echoed(client, cid, 'a2'), WAIT);
    await noRstFromEither(server);
  });

  it('the server resets first (RST): invalid on the new node, dropped (no socket would take it anyway); the pod learns of it from the server\'s answer to its next segment', async () => {
    const { id, cid, port, server } = await openAndFailOver();
    await inet.tcpPeer(id, port, 'reset');
    assert.deepEqual(await seen('rst'), ['invalid']);
    await nothingAnswered(cid, server);

    await client.tcpSend(cid, 'a2');
    await poll('the pod\'s connection reset', () => closedWith(client, cid), WAIT);
    assert.match(closedWith(client, cid)!, /ECONNRESET/);
    assert.deepEqual(await rig.rstsSent(rig.net.internet.ns, server), [`${VIP}:${port}`], 'the RSTs came from the server');
    assert.deepEqual(await rig.rstsSent(rig.gw2.ns, server), []);
  });

  it('the pod closes first (FIN): invalid on the new node, which cannot SNAT it: dropped, never sent on with the pod\'s address; the close does not reach the server', async () => {
    const { id, cid, port, server } = await openAndFailOver();
    await client.stop(cid);
    // Two FINs seen: the first one's way through node 2 ended long before its retransmission (RTO ≥ 200 ms).
    await poll('the pod\'s FIN and a retransmission at gateway node 2', async () => {
      const j = JSON.parse(await rig.lab.exec(rig.gw2.ns, 'nft', ['-j', 'list', 'counter', 'inet', 'ctprobe', 'podfin'])) as { nftables: Array<{ counter?: { packets: number } }> };
      return (j.nftables.find((o) => o.counter)?.counter?.packets ?? 0) >= 2;
    }, WAIT);
    assert.deepEqual(await ctStates('podfinstate'), ['invalid'], 'conntrack cannot pick a connection up from a FIN');
    const leaks = JSON.parse(await rig.lab.exec(rig.gw2.ns, 'nft', ['-j', 'list', 'set', 'inet', 'ctprobe', 'leaks'])) as { nftables: Array<{ set?: { elem?: unknown[] } }> };
    assert.deepEqual(leaks.nftables.find((o) => o.set)?.set?.elem ?? [], [], 'nothing left node 2 with the pod\'s address');
    assert.deepEqual(await rig.rstsSent(rig.net.internet.ns, server), [], 'no RST from the server (to a pod address)');
    assert.equal(inet.tcp.find((e) => e.id === id && e.ev === 'closed'), undefined, `the server's side (port ${port}) is still open: it never got the FIN`);
  });
});
