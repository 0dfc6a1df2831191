import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { SnatRemap } from '../api/types.ts';
import { MAX_PUBLISHED_REMAPS, parseConntrack, publication, publishNeeded, remapKey, remapsTo, remapsToSeed, seedArgs } from './remaps.ts';

const VIP = '198.18.0.100';

// Real `conntrack -L` output (conntrack 1.4.7): a remapped connection, one that kept its port, a UDP
// flow, an unanswered SYN, and `-o extended` (family prefix).
const LISTING = [
  'tcp      6 299 ESTABLISHED src=198.18.16.5 dst=203.0.113.10 sport=40001 dport=80 src=203.0.113.10 dst=198.18.0.100 sport=80 dport=51234 [ASSURED] mark=0 use=1',
  'tcp      6 431999 ESTABLISHED src=198.18.16.6 dst=203.0.113.10 sport=40001 dport=80 src=203.0.113.10 dst=198.18.0.100 sport=80 dport=40001 [ASSURED] mark=0 use=1',
  'udp      17 29 src=198.18.16.6 dst=203.0.113.10 sport=40002 dport=53 [UNREPLIED] src=203.0.113.10 dst=198.18.0.100 sport=53 dport=61000 mark=0 use=1',
  'tcp      6 119 SYN_SENT src=198.18.16.7 dst=203.0.113.10 sport=40001 dport=80 [UNREPLIED] src=203.0.113.10 dst=198.18.0.100 sport=80 dport=7000 mark=0 use=1',
  'ipv4     2 tcp      6 299 ESTABLISHED src=198.18.16.8 dst=203.0.113.11 sport=5000 dport=443 src=203.0.113.11 dst=198.18.0.100 sport=443 dport=5001 [ASSURED] mark=0 use=1',
  'conntrack v1.4.7 (conntrack-tools): 5 flow entries have been shown.',
  '',
].join('\n');

describe('parseConntrack / remapsTo', () => {
  it('reads both tuples of every TCP/UDP line, in both output formats, and skips the rest', () => {
    const lines = parseConntrack(LISTING);
    assert.equal(lines.length, 5);
    assert.deepEqual(lines[0], {
      protocol: 'tcp',
      state: 'ESTABLISHED',
      original: { src: '198.18.16.5', dst: '203.0.113.10', sport: 40001, dport: 80 },
      reply: { src: '203.0.113.10', dst: VIP, sport: 80, dport: 51234 },
    });
    assert.deepEqual(lines.map((l) => [l.protocol, l.state]), [['tcp', 'ESTABLISHED'], ['tcp', 'ESTABLISHED'], ['udp', ''], ['tcp', 'SYN_SENT'], ['tcp', 'ESTABLISHED']]);
  });

  it('keeps only established TCP connections SNATed to the VIP whose port changed', () => {
    assert.deepEqual(remapsTo(parseConntrack(LISTING), VIP), [
      { podIP: '198.18.16.5', podPort: 40001, serverIP: '203.0.113.10', serverPort: 80, natPort: 51234 },
      { podIP: '198.18.16.8', podPort: 5000, serverIP: '203.0.113.11', serverPort: 443, natPort: 5001 },
    ]);
    assert.deepEqual(remapsTo(parseConntrack(LISTING), '198.18.0.101'), [], 'another VIP: none');
  });

  it('leaves out the VIP\'s own connections and DNATed ones (the reply does not come from the original destination)', () => {
    const own = 'tcp 6 299 ESTABLISHED src=198.18.0.100 dst=203.0.113.10 sport=40001 dport=80 src=203.0.113.10 dst=198.18.0.100 sport=80 dport=40002 [ASSURED]';
    const dnat = 'tcp 6 299 ESTABLISHED src=198.18.16.5 dst=203.0.113.10 sport=40001 dport=80 src=10.96.0.9 dst=198.18.0.100 sport=8080 dport=40002 [ASSURED]';
    assert.deepEqual(remapsTo(parseConntrack(`${own}\n${dnat}`), VIP), []);
  });
});

const remap = (podPort: number, natPort: number, podIP = '198.18.16.5'): SnatRemap => ({ podIP, podPort, serverIP: '203.0.113.10', serverPort: 80, natPort });

describe('publication / publishNeeded', () => {
  it('sorts and deduplicates, so the same set is the same list whatever the order conntrack printed', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 65535 })), { maxLength: 30 }), (pairs) => {
      const rs = pairs.map(([p, n]) => remap(p, n));
      const a = publication('n1', VIP, rs);
      const b = publication('n1', VIP, [...rs].reverse().concat(rs));
      assert.deepEqual(a, b);
      assert.equal(a.connections.length, new Set(rs.map(remapKey)).size);
      assert.equal(publishNeeded(a, b), false);
    }));
  });

  it('bounds the list and says how many it left out', () => {
    const rs = Array.from({ length: MAX_PUBLISHED_REMAPS + 5 }, (_, i) => remap(1000 + i, 30000 + i));
    const p = publication('n1', VIP, rs);
    assert.equal(p.connections.length, MAX_PUBLISHED_REMAPS);
    assert.equal(p.omitted, 5);
    assert.deepEqual(publication('n1', VIP, rs, 2).connections.map((r) => r.podPort), [1000, 1001]);
  });

  it('writes when the connections, the count left out or the VIP change; not for the same list from another node, nor an empty list over none', () => {
    const one = publication('n1', VIP, [remap(40001, 51234)]);
    assert.equal(publishNeeded(undefined, publication('n1', VIP, [])), false, 'never had a remap: no write');
    assert.equal(publishNeeded(undefined, one), true);
    assert.equal(publishNeeded(one, publication('n2', VIP, [remap(40001, 51234)])), false, 'the new owner holds what it seeded: same list');
    assert.equal(publishNeeded(one, publication('n1', VIP, [])), true, 'the connection closed: dropped from the list');
    assert.equal(publishNeeded(one, publication('n1', VIP, [remap(40001, 51235)])), true);
    assert.equal(publishNeeded(one, publication('n1', '198.18.0.101', [remap(40001, 51234)])), true);
    assert.equal(publishNeeded(one, { ...one, omitted: 1 }), true);
  });
});

describe('remapsToSeed / seedArgs', () => {
  it('takes the valid entries of a list published for this VIP, and names each invalid one', () => {
    const list = { node: 'n1', vip: VIP, omitted: 0, connections: [remap(40001, 51234), { ...remap(1, 2), podIP: 'x' }, { ...remap(1, 2), natPort: 70000 }, null] };
    const { remaps, invalid } = remapsToSeed(list, VIP);
    assert.deepEqual(remaps, [remap(40001, 51234)]);
    assert.equal(invalid.length, 3);
    assert.match(invalid[0]!, /^status\.snatRemaps\.connections\[1\]: .*"podIP":"x"/);
  });

  it('has nothing for another VIP, and none for a missing or malformed list', () => {
    assert.deepEqual(remapsToSeed({ node: 'n1', vip: VIP, omitted: 0, connections: [remap(1, 2)] }, '198.18.0.101'), { remaps: [], invalid: [] });
    for (const l of [undefined, null, {}, { vip: VIP }, { vip: VIP, connections: 'x' }]) assert.deepEqual(remapsToSeed(l, VIP), { remaps: [], invalid: [] });
  });

  it('seeds with the NAT as two words and no reply tuple (the form the kernel turns into an SRC_NAT binding)', () => {
    assert.deepEqual(seedArgs(remap(40001, 51234), VIP, 432000), [
      '-I', '-p', 'tcp', '-s', '198.18.16.5', '-d', '203.0.113.10', '--sport', '40001', '--dport', '80',
      '--src-nat', `${VIP}:51234`, '--state', 'ESTABLISHED', '-u', 'SEEN_REPLY,ASSURED', '-t', '432000',
    ]);
  });
});
