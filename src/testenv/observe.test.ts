// tcpdump's ARP lines (captured from a real run) into ArpEvents: questions, answers to the capturing host,
// announcements, and nothing from other lines.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseTcpdumpArp } from './observe.ts';

const ME = '0a:fd:f7:65:51:e6';
const targetIpOf = (mac: string) => (mac === ME ? '198.18.9.2' : undefined);

describe('parseTcpdumpArp', () => {
  it('a question, with the kernel\'s time stamp in ms', () => {
    const e = parseTcpdumpArp('1796594326.721341 0a:fd:f7:65:51:e6 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 198.18.9.1 tell 198.18.9.2, length 28', 'eth0', targetIpOf);
    assert.ok(Math.abs(e!.t - 1796594326721.341) < 0.001, `t ${e?.t}`);
    assert.deepEqual({ ...e, t: 0 }, {
      t: 0, ifname: 'eth0', ethSrc: ME, ethDst: 'ff:ff:ff:ff:ff:ff', op: 'request',
      senderMac: ME, senderIp: '198.18.9.2', targetMac: '00:00:00:00:00:00', targetIp: '198.18.9.1', gratuitous: false,
    });
  });

  it('an answer to the capturing host names it as the target; an answer to someone else has no known target', () => {
    const line = (dst: string) => `1796594326.721369 12:d0:5f:c6:b5:be > ${dst}, ethertype ARP (0x0806), length 42: Reply 198.18.9.1 is-at 12:d0:5f:c6:b5:be, length 28`;
    const mine = parseTcpdumpArp(line(ME), 'eth0', targetIpOf);
    assert.equal(mine?.op, 'reply');
    assert.equal(mine?.senderIp, '198.18.9.1');
    assert.equal(mine?.senderMac, '12:d0:5f:c6:b5:be');
    assert.equal(mine?.targetIp, '198.18.9.2');
    assert.equal(mine?.gratuitous, false);
    assert.equal(parseTcpdumpArp(line('02:00:00:00:00:09'), 'eth0', targetIpOf)?.targetIp, '');
  });

  it('announcements: a broadcast reply and a request for one\'s own address', () => {
    const reply = parseTcpdumpArp('1796594327.000001 12:d0:5f:c6:b5:be > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Reply 198.18.0.100 is-at 12:d0:5f:c6:b5:be, length 28', 'eth0', targetIpOf);
    assert.equal(reply?.gratuitous, true);
    assert.equal(reply?.targetIp, '198.18.0.100');
    const req = parseTcpdumpArp('1796594327.000002 12:d0:5f:c6:b5:be > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 198.18.0.100 tell 198.18.0.100, length 28', 'eth0', targetIpOf);
    assert.equal(req?.gratuitous, true);
  });

  it('other lines are not ARP events', () => {
    assert.equal(parseTcpdumpArp('listening on eth0, link-type EN10MB (Ethernet), snapshot length 262144 bytes', 'eth0', targetIpOf), undefined);
    assert.equal(parseTcpdumpArp('1796594327.000003 12:d0:5f:c6:b5:be > ff:ff:ff:ff:ff:ff, ethertype IPv4 (0x0800), length 60: 198.18.0.1 > 198.18.0.2: UDP', 'eth0', targetIpOf), undefined);
  });
});
