import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { flattenLpm, formatIPv4, formatRange, mergeRanges, parseCIDR4, parseIPv4, type LpmEntry, type Prefix } from './ranges.ts';

const cidr = (text: string): Prefix => {
  const p = parseCIDR4(text);
  if ('error' in p) throw new Error(p.error);
  return p;
};

describe('IPv4 parsing and formatting', () => {
  it('parses CIDRs, clearing host bits as the kernel does', () => {
    assert.deepEqual(cidr('10.1.2.3/8'), { first: parseIPv4('10.0.0.0'), last: parseIPv4('10.255.255.255'), len: 8 });
    assert.deepEqual(cidr('0.0.0.0/0'), { first: 0, last: 0xffffffff, len: 0 });
    assert.deepEqual(cidr('198.18.0.7/32'), { first: parseIPv4('198.18.0.7'), last: parseIPv4('198.18.0.7'), len: 32 });
  });

  it('names what it cannot take', () => {
    for (const [input, msg] of [
      ['2001:db8::/32', /IPv6 CIDR "2001:db8::\/32" is not supported by the Linux data plane/],
      ['10.0.0.0/33', /not an IPv4 CIDR/],
      ['10.0.0/8', /not an IPv4 CIDR/],
      ['010.0.0.0/8', /not an IPv4 CIDR/],
      ['10.0.0.0', /not an IPv4 CIDR/],
    ] as const) {
      const p = parseCIDR4(input);
      assert.ok('error' in p, input);
      assert.match(p.error, msg);
    }
    assert.deepEqual(parseCIDR4(7), { error: 'not a string' });
  });

  it('formats ranges as a prefix when they are one', () => {
    assert.equal(formatRange(cidr('10.0.0.0/8')), '10.0.0.0/8');
    assert.equal(formatRange(cidr('198.18.0.7/32')), '198.18.0.7');
    assert.equal(formatRange(cidr('0.0.0.0/0')), '0.0.0.0/0');
    assert.equal(formatRange({ first: parseIPv4('10.0.0.0')!, last: parseIPv4('10.0.0.2')! }), '10.0.0.0-10.0.0.2');
    assert.equal(formatRange({ first: parseIPv4('10.0.0.1')!, last: parseIPv4('10.0.0.2')! }), '10.0.0.1-10.0.0.2');
    assert.equal(formatIPv4(0xffffffff), '255.255.255.255');
  });

  it('merges overlapping and adjacent ranges', () => {
    const merged = mergeRanges([cidr('10.0.0.0/8'), cidr('10.96.0.0/12'), cidr('11.0.0.0/8'), cidr('192.0.2.0/24')]);
    assert.deepEqual(merged.map(formatRange), ['10.0.0.0/7', '192.0.2.0/24']);
  });
});

describe('flattenLpm', () => {
  const e = (text: string, value: string | undefined, rank = 0): LpmEntry<string> => ({ ...cidr(text), value, rank });

  it('nests: longest prefix wins, exclusions cut holes', () => {
    const out = flattenLpm([e('0.0.0.0/0', 'A'), e('10.0.0.0/8', undefined), e('10.1.0.0/16', 'B')]);
    assert.deepEqual(out.map((r) => `${formatRange(r)} ${r.value}`), [
      '0.0.0.0-9.255.255.255 A',
      '10.1.0.0/16 B',
      '11.0.0.0-255.255.255.255 A',
    ]);
  });

  it('an exclusion beats a redirection of the same prefix; among redirections the lowest rank wins', () => {
    assert.deepEqual(flattenLpm([e('192.0.2.0/24', 'A', 0), e('192.0.2.0/24', undefined, 1)]), []);
    const out = flattenLpm([e('192.0.2.0/24', 'B', 1), e('192.0.2.0/24', 'A', 0)]);
    assert.deepEqual(out.map((r) => r.value), ['A']);
  });

  it('equals a brute-force longest-prefix lookup (property)', () => {
    // Small address space (prefixes inside 10.0.0.0/24) so that every address can be checked.
    const base = parseIPv4('10.0.0.0')!;
    const entryArb = fc.record({
      len: fc.integer({ min: 24, max: 32 }),
      offset: fc.integer({ min: 0, max: 255 }),
      value: fc.constantFrom('A', 'B', 'C', undefined),
      rank: fc.integer({ min: 0, max: 3 }),
    });
    fc.assert(fc.property(fc.array(entryArb, { maxLength: 12 }), (raw) => {
      const entries: LpmEntry<string>[] = raw.map((r) => {
        const p = cidr(`${formatIPv4(base + r.offset)}/${r.len}`);
        return { ...p, value: r.value, rank: r.rank };
      });
      const flat = flattenLpm(entries);
      for (let i = 1; i < flat.length; i++) assert.ok(flat[i - 1]!.last < flat[i]!.first, 'disjoint and sorted');
      for (let a = base; a < base + 256; a++) {
        let best: LpmEntry<string> | undefined;
        for (const x of entries) {
          if (x.first > a || x.last < a) continue;
          if (!best || x.len > best.len || (x.len === best.len && (x.value === undefined ? best.value !== undefined : best.value !== undefined && x.rank < best.rank))) best = x;
        }
        const got = flat.find((r) => r.first <= a && a <= r.last)?.value;
        assert.equal(got, best?.value, formatIPv4(a));
      }
    }), { numRuns: 300 });
  });
});
