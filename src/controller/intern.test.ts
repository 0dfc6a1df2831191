import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Interner } from './intern.ts';

const cegpSpec = (app: string) => ({
  selectors: [{ podSelector: { matchLabels: { app } } }],
  destinationCIDRs: ['10.0.0.0/8', '172.16.0.0/12'],
  egressGateway: { nodeSelector: { matchLabels: { 'egress-gateway.network.deckhouse.io/active-for-gw': '' } }, egressIP: '192.0.2.1' },
});

test('equal parts of separately parsed objects become one shared instance; values stay equal', () => {
  const i = new Interner();
  const a = i.value(JSON.parse(JSON.stringify(cegpSpec('a'))));
  const b = i.value(JSON.parse(JSON.stringify(cegpSpec('b'))));
  assert.deepEqual(a, cegpSpec('a'));
  assert.deepEqual(b, cegpSpec('b'));
  assert.equal(a.destinationCIDRs, b.destinationCIDRs);
  assert.equal(a.egressGateway, b.egressGateway);
  assert.notEqual(a.selectors, b.selectors, 'different selectors are not merged');
  assert.notEqual(a, b);
  const a2 = i.value(JSON.parse(JSON.stringify(cegpSpec('a'))));
  assert.equal(a2.selectors, a.selectors);
});

test('large parts are copied, not shared, and undefined fields are dropped', () => {
  const i = new Interner();
  const big = { list: Array.from({ length: 100 }, (_, n) => `10.${n}.0.0/16`), note: undefined };
  const x = i.value(big);
  const y = i.value(structuredClone(big));
  assert.deepEqual(x, { list: big.list });
  assert.notEqual(x.list, y.list);
});

test('strings() and stringsDeep() share texts but build new containers', () => {
  const i = new Interner();
  const l1 = i.strings({ role: 'egress', zone: 'a' });
  const l2 = i.strings({ role: 'egress', zone: 'a' });
  assert.deepEqual(l1, l2);
  assert.notEqual(l1, l2);
  const s1 = i.stringsDeep({ conditions: [{ type: 'Ready', status: 'True' }] });
  assert.deepEqual(s1, { conditions: [{ type: 'Ready', status: 'True' }] });
});

test('a full table starts over without changing any value', () => {
  const i = new Interner(10);
  const out = Array.from({ length: 50 }, (_, n) => i.value({ k: `v${n}` }));
  out.forEach((o, n) => assert.deepEqual(o, { k: `v${n}` }));
  assert.deepEqual(i.value({ k: 'v49' }), { k: 'v49' });
});
