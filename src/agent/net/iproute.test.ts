import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isEligibleInterface, parseAddresses, parseLinks, parseRouteGateways, parseRouteGet, vipCidr, type Link } from './iproute.ts';

// Shapes taken from iproute2 6.1 `ip -json` output in a network namespace.
const LINKS = [
  { ifindex: 1, ifname: 'lo', flags: ['LOOPBACK', 'UP', 'LOWER_UP'], mtu: 65536, operstate: 'UNKNOWN', link_type: 'loopback', address: '00:00:00:00:00:00' },
  { ifindex: 2, ifname: 'br9', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], mtu: 1500, operstate: 'UP', link_type: 'ether', address: '62:AF:73:75:AF:48' },
  { ifindex: 3, link: 'egq0', ifname: 'egq1', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], mtu: 1500, master: 'br9', operstate: 'UP', link_type: 'ether', address: '62:af:73:75:af:49' },
  { ifindex: 4, link: 'egq1', ifname: 'eth0', flags: ['NO-CARRIER', 'BROADCAST', 'MULTICAST', 'UP', 'M-DOWN'], mtu: 1500, operstate: 'LOWERLAYERDOWN', link_type: 'ether', address: '5a:0d:f4:23:65:3b' },
  { ifindex: 5, ifname: 'cilium_host', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], mtu: 1500, operstate: 'UP', link_type: 'ether', address: '5a:0d:f4:23:65:3c' },
  { ifindex: 6, ifname: 'lxc12ab', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], mtu: 1500, operstate: 'UP', link_type: 'ether', address: '5a:0d:f4:23:65:3d' },
  { ifindex: 7, ifname: 'eth1', flags: ['BROADCAST', 'MULTICAST', 'NOARP', 'UP', 'LOWER_UP'], mtu: 1500, operstate: 'UP', link_type: 'ether', address: '5a:0d:f4:23:65:3e' },
  { ifindex: 8, ifname: 'eth2', flags: ['BROADCAST', 'MULTICAST'], mtu: 1500, operstate: 'DOWN', link_type: 'ether', address: '5a:0d:f4:23:65:3f' },
  { ifindex: 9, ifname: 'wg0', flags: ['POINTOPOINT', 'NOARP', 'UP', 'LOWER_UP'], mtu: 1420, operstate: 'UNKNOWN', link_type: 'none' },
];

describe('parseLinks', () => {
  it('maps ip -json link output', () => {
    const links = parseLinks(LINKS);
    assert.equal(links.length, LINKS.length);
    assert.deepEqual(links[1], { index: 2, name: 'br9', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], operstate: 'UP', mac: '62:af:73:75:af:48', master: undefined, linkType: 'ether', mtu: 1500 });
    assert.equal(links[2]?.master, 'br9');
    assert.equal(links[0]?.mac, undefined, 'loopback has no Ethernet address');
    assert.equal(links[8]?.mac, undefined);
  });

  it('rejects non-array output', () => {
    assert.throws(() => parseLinks({}), /expected an array/);
  });
});

describe('isEligibleInterface (R24)', () => {
  it('keeps UP broadcast interfaces without master or NOARP, outside cilium_/lxc', () => {
    const eligible = parseLinks(LINKS).filter((l) => isEligibleInterface(l)).map((l) => l.name);
    // eth0 has no carrier but is administratively UP: still eligible (the uplink state is reported separately).
    assert.deepEqual(eligible, ['br9', 'eth0']);
  });

  it('honours a custom exclusion pattern', () => {
    const link: Link = { index: 1, name: 'ens3', flags: ['UP', 'BROADCAST'], operstate: 'UP', mac: '02:00:00:00:00:01', master: undefined, linkType: 'ether', mtu: 1500 };
    assert.equal(isEligibleInterface(link), true);
    assert.equal(isEligibleInterface(link, /^ens/), false);
  });
});

describe('parseAddresses', () => {
  it('maps addr_info with lifetimes', () => {
    const json = [
      {
        ifindex: 2,
        ifname: 'egq0',
        addr_info: [
          { family: 'inet', local: '198.18.0.11', prefixlen: 24, scope: 'global', label: 'egq0', valid_life_time: 4294967295, preferred_life_time: 4294967295 },
          { family: 'inet', local: '198.18.0.100', prefixlen: 32, scope: 'global', dynamic: true, valid_life_time: 5, preferred_life_time: 4 },
          { family: 'inet6', local: '2001:0db8::0100', prefixlen: 128, scope: 'global', valid_life_time: 2, preferred_life_time: 2 },
          { family: 'inet6', local: 'fe80::1', prefixlen: 64, scope: 'link', valid_life_time: 4294967295, preferred_life_time: 4294967295 },
        ],
      },
    ];
    assert.deepEqual(parseAddresses(json), [
      { family: 4, ip: '198.18.0.11', prefixLength: 24, scope: 'global', validLft: 'forever', preferredLft: 'forever' },
      { family: 4, ip: '198.18.0.100', prefixLength: 32, scope: 'global', validLft: 5, preferredLft: 4 },
      { family: 6, ip: '2001:db8::100', prefixLength: 128, scope: 'global', validLft: 2, preferredLft: 2 },
      { family: 6, ip: 'fe80::1', prefixLength: 64, scope: 'link', validLft: 'forever', preferredLft: 'forever' },
    ]);
  });
});

describe('parseRouteGet', () => {
  it('returns the device of the matched route', () => {
    assert.equal(parseRouteGet([{ dst: '198.18.0.0/24', dev: 'egq0', protocol: 'kernel', scope: 'link', prefsrc: '198.18.0.11', flags: [] }]), 'egq0');
    assert.equal(parseRouteGet([{ type: 'local', dst: '198.18.0.100', dev: 'egq0', protocol: 'kernel', scope: 'host', flags: [] }]), 'egq0');
    assert.equal(parseRouteGet([]), undefined);
  });
});

describe('vipCidr', () => {
  it('uses host prefixes', () => {
    assert.equal(vipCidr('198.18.0.100'), '198.18.0.100/32');
    assert.equal(vipCidr('2001:DB8:0::100'), '2001:db8::100/128');
    assert.throws(() => vipCidr('198.18.0'), /invalid IP/);
  });
});

describe('parseRouteGateways', () => {
  it('collects single and multipath next hops of every table, IPv4 and IPv6, and nothing from connected routes', () => {
    const json = [
      { dst: 'default', gateway: '198.18.0.1', dev: 'eth0', flags: [] },
      { dst: '198.18.0.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link', prefsrc: '198.18.0.11', flags: [] },
      { dst: '203.0.113.0/24', table: '100', nexthops: [{ gateway: '198.18.0.2', dev: 'eth0' }, { gateway: '198.18.0.3', dev: 'eth0' }] },
      { dst: 'default', gateway: '2001:DB8::1', dev: 'eth0', flags: [] },
      { type: 'local', dst: '127.0.0.1', dev: 'lo', table: 'local' },
    ];
    assert.deepEqual([...parseRouteGateways(json)].sort(), ['198.18.0.1', '198.18.0.2', '198.18.0.3', '2001:db8::1']);
  });
});
