// The chaos suite with the Linux data plane, a short fixed run inside `npm test` (the long run is
// `npm run chaos -- --dataplane linux`, README "Chaos"): the same cluster, world and faults as
// chaos.test.ts, with the controller replicas and every agent in `--dataplane linux`, pods in network
// namespaces on three of the four nodes, and after every round each node's kernel (nft, ip rule, ip
// route) checked against what the snapshot implies (linux.ts). Needs root and `ip netns`.
//
// The seed is fixed and chosen so that two rounds cover what the Linux data plane must survive: an agent
// killed on a node with pods, a node's LAN link down (its pod routes come back with it), pods relabelled
// and deleted, gateways moved, a cilium-agent NotReady (which impairs nothing here) and bad input the
// schema accepts. The first test holds the plan to that.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { plannedLines, runChaos } from './suite.ts';

const SEED = 28;
const ROUNDS = 2;
const NODES = 4;
const skip = process.getuid?.() !== 0 ? 'needs root and ip netns' : false;

describe('chaos, Linux data plane (short run)', { timeout: 600_000 }, () => {
  it('the fixed seed covers agent kills, link down, pod and gateway changes and bad input', () => {
    const lines = plannedLines(SEED, ROUNDS, NODES, 'linux');
    const covers = (what: string, re: RegExp) => assert.ok(lines.some((l) => re.test(l)), `seed ${SEED} plans no ${what}:\n${lines.join('\n')}`);
    covers('agent kill on a node with pods', /^fault .*kill -9 agent of node[123]\b/);
    covers('LAN link down of a node with pods', /^fault .*LAN link of node[123] down/);
    covers('pod relabel', /^change .* pod p\d-\d app /);
    covers('pod delete or re-create', /^change .* (delete|create) pod /);
    covers('gateway change', /^change .*(delete gateway|gateway gw-\S+ (selects|VIP))/);
    covers('cilium-agent NotReady', /→ ciliumNotReady/);
    covers('bad input the schema accepts', /^bad .*\((invalid|inert|orphan|badPolicy|unannounceable)\)$/);
  });

  it(`${ROUNDS} rounds: every round converges, every node's kernel included, and keeps every invariant`, { skip, timeout: 480_000 }, async (t) => {
    const lines: string[] = [];
    const t0 = Date.now();
    const log = (l: string) => {
      lines.push(l);
      t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${l}`);
    };
    const { records } = await runChaos({ seed: SEED, rounds: ROUNDS, nodes: NODES, dataplane: 'linux', log });
    assert.equal(records.length, ROUNDS);
    assert.deepEqual(records.filter((r) => r.violations.length > 0).map((r) => ({ round: r.round, plan: r.plan, violations: r.violations })), [], lines.join('\n'));
    assert.ok(records.every((r) => r.converged && r.dataplane === 'linux'));
  });
});
