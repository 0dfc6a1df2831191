// The suite-health record's parsing of /proc/net/netstat.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseTcpExt } from './health.ts';

describe('suite health', () => {
  it('reads TcpExt counters by name', () => {
    const text = [
      'TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops',
      'TcpExt: 0 0 137501 137521',
      'IpExt: InNoRoutes InTruncatedPkts',
      'IpExt: 0 0',
      '',
    ].join('\n');
    const m = parseTcpExt(text);
    assert.equal(m.get('ListenOverflows'), 137501);
    assert.equal(m.get('ListenDrops'), 137521);
    assert.equal(m.get('InNoRoutes'), undefined, 'only TcpExt');
  });

  it('finds ListenOverflows in this machine\'s /proc/net/netstat', () => {
    const m = parseTcpExt(readFileSync('/proc/net/netstat', 'utf8'));
    assert.equal(typeof m.get('ListenOverflows'), 'number');
  });

  it('is empty for text without TcpExt', () => {
    assert.equal(parseTcpExt('Ip: Forwarding\nIp: 1\n').size, 0);
  });
});
