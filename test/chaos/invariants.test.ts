// The oracle's verdict on bad objects, on hand-made API views (the rest of the invariants run in the chaos
// rounds themselves, test/chaos/chaos*.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CiliumEgressGatewayPolicy, EgressGateway, EgressGatewayPolicy } from '../../src/api/types.ts';
import { badTruth, validPart, type BadState, type Observed } from './invariants.ts';
import { ACTIVE_FOR_PREFIX } from '../../src/api/names.ts';

const badPolicy = (gateway: string): BadState => ({
  accepted: true,
  object: {
    kind: 'EgressGatewayPolicy',
    name: 'bad-pol-x',
    expect: 'badPolicy',
    why: 'IPv6 destination',
    object: { metadata: { name: 'bad-pol-x' }, spec: { egressGatewayName: gateway, destinationCIDRs: ['2001:db8:1::/64'] } },
  },
});

const withReason = (reason: string): EgressGatewayPolicy => ({
  apiVersion: 'network.deckhouse.io/v1alpha1',
  kind: 'EgressGatewayPolicy',
  metadata: { name: 'bad-pol-x' },
  status: { conditions: [{ type: 'Ready', status: 'False', reason, message: '', lastTransitionTime: '' }] },
} as unknown as EgressGatewayPolicy);

const gateways = new Map([['gw-v0', { metadata: { name: 'gw-v0' } } as EgressGateway]]);
const none = new Map<string, CiliumEgressGatewayPolicy>();
const o = {} as Observed;

describe('chaos oracle: bad objects', () => {
  it('a policy the controller cannot render, naming an existing gateway, must end InvalidSpec', () => {
    assert.deepEqual(badTruth(badPolicy('gw-v0'), gateways, new Map([['bad-pol-x', withReason('InvalidSpec')]]), none, o), []);
    assert.match(badTruth(badPolicy('gw-v0'), gateways, new Map([['bad-pol-x', withReason('GatewayNotFound')]]), none, o).join(), /want False\/InvalidSpec/);
  });

  // Found by the chaos suite (linux mode, seed 20261216 round 8): the generator named gw-p1, which a
  // change had deleted five rounds before; the controller rightly said GatewayNotFound, the oracle wanted
  // InvalidSpec for 120 s.
  it('a policy the controller cannot render, naming a gateway a change deleted, must end GatewayNotFound', () => {
    assert.deepEqual(badTruth(badPolicy('gw-p1'), gateways, new Map([['bad-pol-x', withReason('GatewayNotFound')]]), none, o), []);
    assert.match(badTruth(badPolicy('gw-p1'), gateways, new Map([['bad-pol-x', withReason('InvalidSpec')]]), none, o).join(), /want False\/GatewayNotFound/);
  });

  // Found by the chaos suite (linux mode, seed 20261217 round 41): node1's only active-for label was a bad
  // gateway's; with the bad objects its valid labels were [], without them node1 had no entry, and the
  // comparison called that a difference for 120 s.
  it('a node whose only active-for labels are bad gateways\' has the same valid share as a node without them', () => {
    const empty = { gateways: new Map(), instances: new Map(), cegps: new Map(), dataplanes: new Map() };
    const withBad = validPart({ ...empty, nodeLabels: new Map([['node1', new Set([`${ACTIVE_FOR_PREFIX}bad-gw-x`])], ['node2', new Set([`${ACTIVE_FOR_PREFIX}gw-v0`])]]) });
    const without = validPart({ ...empty, nodeLabels: new Map([['node2', new Set([`${ACTIVE_FOR_PREFIX}gw-v0`])]]) });
    assert.equal(withBad, without);
    const moved = validPart({ ...empty, nodeLabels: new Map([['node1', new Set([`${ACTIVE_FOR_PREFIX}gw-v0`])]]) });
    assert.notEqual(moved, without, 'a valid label on another node is still a difference');
  });
});
