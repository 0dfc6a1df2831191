import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { NodeDataplane } from './model.ts';
import { parseIPv4 } from './ranges.ts';
import { DEFAULT_DATAPLANE_SETTINGS, desiredRoutes, desiredRules, isOurTable, renderNft, renderPodDelta, settingsProblems, slotMark, withoutPods } from './render.ts';

const S = DEFAULT_DATAPLANE_SETTINGS;
const r = (a: string, b: string) => ({ first: parseIPv4(a)!, last: parseIPv4(b)! });

const EMPTY: NodeDataplane = {
  cluster: [], podNets: [], known: [], classes: [], egress: [], ingress: [], vips: [],
  slots: { egress: new Map(), ingress: new Map() }, problems: [],
};

const ONE: NodeDataplane = {
  ...EMPTY,
  cluster: [r('198.18.16.0', '198.18.31.255')],
  podNets: [r('198.18.16.0', '198.18.31.255')],
  known: ['198.18.16.5', '198.18.16.6'],
  classes: [{ id: 'c_0123456789ab', policies: ['p1', 'p2'], pods: ['198.18.16.5'], ranges: [{ ...r('203.0.113.0', '203.0.113.255'), verdict: 'gw_3' }, { ...r('198.51.100.0', '198.51.100.255'), verdict: 'drop' }] }],
  egress: [{ slot: 3, gateway: 'gw-a', tunnelID: 7, endpoint: '198.18.0.11' }],
  ingress: [{ slot: 128, gateway: 'gw-a', tunnelID: 7, snat: '198.18.0.100' }],
  vips: ['198.18.0.100'],
};

describe('renderNft', () => {
  it('replaces the whole table in one transaction', () => {
    const lines = renderNft(EMPTY, S).split('\n');
    assert.deepEqual(lines.slice(0, 3), ['table inet egressgw {}', 'delete table inet egressgw', 'table inet egressgw {']);
    assert.ok(!renderNft(EMPTY, S).includes('elements = { }'), 'empty sets have no elements clause (nft rejects one)');
  });

  it('with no gateway served here, all tunnelled traffic is dropped', () => {
    assert.match(renderNft(EMPTY, S), /iifname "egw0" counter drop/);
  });

  it('renders pods, classes, slots, tunnel-in and SNAT', () => {
    const text = renderNft(ONE, S);
    for (const line of [
      'set known4 { type ipv4_addr; elements = { 198.18.16.5, 198.18.16.6 } }',
      'set vips4 { type ipv4_addr; elements = { 198.18.0.100 } }',
      'map pods4 { type ipv4_addr : verdict; elements = { 198.18.16.5 : jump c_0123456789ab } }',
      'map c_0123456789ab { type ipv4_addr : verdict; flags interval; elements = { 203.0.113.0/24 : jump gw_3, 198.51.100.0/24 : drop } }',
      'meta mark set meta mark & 0x00ffffff | 0x03000000',
      'map tunnel_in4 { typeof @th,96,24 : meta mark; elements = { 7 : 0x80000000 } }',
      'map snat4 { type mark : ipv4_addr; elements = { 0x80000000 : 198.18.0.100 } }',
      'udp dport 4790 fib daddr type local meta mark set @th,96,24 map @tunnel_in4',
      'iifname "egw0" meta mark & 0xff000000 != { 0x80000000 } counter drop comment "tunnelled traffic of no gateway served here"',
      'meta mark & 0xff000000 0x01000000-0x7f000000 counter drop comment "a redirected packet never leaves any other way"',
      'meta mark & 0xff000000 != 0 snat ip to meta mark & 0xff000000 map @snat4',
      'meta mark set meta mark & 0x00ffffff | 0x80000000',
    ]) assert.ok(text.includes(line), `missing: ${line}\n${text}`);
  });

  it('drops a segment to a VIP that conntrack ties to no connection of this node (new or invalid, not a SYN), so our stack sends no RST', () => {
    assert.ok(renderNft(ONE, S).includes('ip daddr @vips4 tcp flags & (fin | syn | rst | ack) != syn ct state { new, invalid } counter drop comment "no RST for a connection another gateway node carried"'));
  });

  it('drops a packet meant for SNAT that was not SNATed, or that conntrack could not track (no entry, so ct status does not match it)', () => {
    const text = renderNft(ONE, S);
    assert.ok(text.includes('meta mark & 0xff000000 != 0 ct status & snat == 0 counter drop comment "meant for SNAT, not SNATed"'));
    assert.ok(text.includes('meta mark & 0xff000000 != 0 ct state invalid counter drop comment "meant for SNAT, no conntrack entry to SNAT it with"'));
  });

  it('routes and rules per egress slot, in our documented ranges', () => {
    assert.deepEqual(desiredRoutes(ONE, S), [{ table: 26003, tunnelID: 7, endpoint: '198.18.0.11' }]);
    assert.deepEqual(desiredRules(ONE, S), [{ priority: 2500, mark: 0x03000000, mask: 0xff000000, table: 26003 }]);
    assert.ok(isOurTable(26001, S) && isOurTable(26127, S) && !isOurTable(26000, S) && !isOurTable(26128, S));
  });

  it('another mask shifts the slots', () => {
    assert.equal(slotMark(3, 0x0000ff00), 0x0300);
    assert.match(renderNft(ONE, { ...S, markMask: 0x0000ff00 }), /meta mark set meta mark & 0xffff00ff \| 0x00000300/);
  });
});

describe('renderPodDelta', () => {
  it('turns one model\'s pod elements into another\'s: deletions first, a pod that changed class re-added', () => {
    const two: NodeDataplane = {
      ...ONE,
      known: ['198.18.16.6', '198.18.16.7'],
      classes: [{ ...ONE.classes[0]!, pods: ['198.18.16.6'] }, { ...ONE.classes[0]!, id: 'c_other', pods: ['198.18.16.7'] }],
    };
    const one: NodeDataplane = { ...ONE, classes: [...ONE.classes, { ...ONE.classes[0]!, id: 'c_other', pods: ['198.18.16.6'] }] };
    assert.equal(renderPodDelta(one, two), [
      'delete element inet egressgw pods4 { 198.18.16.5, 198.18.16.6 }',
      'delete element inet egressgw known4 { 198.18.16.5 }',
      'add element inet egressgw known4 { 198.18.16.7 }',
      'add element inet egressgw pods4 { 198.18.16.6 : jump c_0123456789ab, 198.18.16.7 : jump c_other }',
      '',
    ].join('\n'));
    assert.equal(renderNft(withoutPods(one), S), renderNft(withoutPods(two), S), 'same structure');
  });
});

describe('settingsProblems', () => {
  it('accepts the defaults and names the flag of a bad setting', () => {
    assert.deepEqual(settingsProblems(S), []);
    assert.deepEqual(settingsProblems({ ...S, markMask: 0x0f0f0000 }), ['--fwmark-mask: 0xf0f0000 must be at least 8 contiguous bits']);
    assert.deepEqual(settingsProblems({ ...S, markMask: 0x00f00000 }), ['--fwmark-mask: 0xf00000 must be at least 8 contiguous bits']);
    assert.deepEqual(settingsProblems({ ...S, tunnelPort: 0 }), ['--tunnel-port: 0 is not a UDP port']);
    assert.deepEqual(settingsProblems({ ...S, device: 'a-very-long-device-name' }), ['--tunnel-device: "a-very-long-device-name" is not an interface name']);
    assert.deepEqual(settingsProblems({ ...S, rulePriority: 32766 }), ['--rule-priority: 32766 must lie between the local (0) and main (32766) rules']);
  });
});
