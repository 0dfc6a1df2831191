// The agent's address changes through rtnetlink (src/agent/net/packet.ts setAddress, used by IpRoute in
// its own namespace) against a real namespace, read back with iproute2. Needs root.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Network, assertNetnsSupported, type NetNode } from '../../src/testenv/netns.ts';
import { NetnsRpc } from '../../src/testenv/netns-rpc.ts';

const FIXTURE = fileURLToPath(new URL('./address-fixture.ts', import.meta.url));

interface AddrInfo { local: string; prefixlen: number; valid_life_time: number; preferred_life_time: number; tentative?: boolean }

describe('addresses through rtnetlink', () => {
  let net: Network;
  let node: NetNode;
  let rpc: NetnsRpc;

  before(async () => {
    await assertNetnsSupported();
    net = await Network.create({ nodes: 1, prefix: 'egn' });
    node = net.nodes[0]!;
    rpc = await NetnsRpc.start(net, node.ns, FIXTURE);
  });

  after(async () => {
    await rpc?.close();
    await net?.teardown();
  });

  const addresses = async (): Promise<AddrInfo[]> => {
    const out = JSON.parse(await net.ip(node.ns, ['-j', 'addr', 'show', 'dev', 'eth0'])) as Array<{ addr_info: AddrInfo[] }>;
    return out[0]?.addr_info ?? [];
  };
  const find = async (ip: string) => (await addresses()).find((a) => a.local === ip);

  it('adds an IPv4 /32 with a lifetime, refreshes it, deletes it; deleting a missing one is not an error', async () => {
    await rpc.call('replace', 'eth0', '198.18.0.100/32', { validLft: 3, preferredLft: 2 });
    const a = await find('198.18.0.100');
    assert.ok(a, 'the address is on eth0');
    assert.equal(a.prefixlen, 32);
    assert.ok(a.valid_life_time > 0 && a.valid_life_time <= 3 && a.preferred_life_time <= 2, JSON.stringify(a));
    // A replace moves the lifetime (here: to forever), it does not add a second address.
    await rpc.call('replace', 'eth0', '198.18.0.100/32', {});
    const again = (await addresses()).filter((x) => x.local === '198.18.0.100');
    assert.equal(again.length, 1);
    assert.equal(again[0]!.valid_life_time, 4294967295, 'forever');
    await rpc.call('remove', 'eth0', '198.18.0.100/32');
    assert.equal(await find('198.18.0.100'), undefined);
    await rpc.call('remove', 'eth0', '198.18.0.100/32');
  });

  it('adds an IPv6 /128 without duplicate address detection', async () => {
    // DAD is on in this namespace for new addresses unless the request says nodad.
    await net.exec(node.ns, 'sysctl', ['-qw', 'net.ipv6.conf.eth0.accept_dad=1']);
    await rpc.call('replace', 'eth0', '2001:db8::100/128', { validLft: 5 });
    const a = await find('2001:db8::100');
    assert.ok(a && a.prefixlen === 128, JSON.stringify(a));
    assert.notEqual(a.tentative, true, 'not tentative: nodad');
    await rpc.call('remove', 'eth0', '2001:db8::100/128');
    assert.equal(await find('2001:db8::100'), undefined);
  });

  it('reports a missing interface with its errno', async () => {
    await assert.rejects(rpc.call('replace', 'nosuch0', '198.18.0.101/32', {}), (err: NodeJS.ErrnoException) => err.code === 'ENODEV');
  });
});
