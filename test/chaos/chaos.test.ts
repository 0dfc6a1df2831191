// The chaos suite's short run inside `npm test` (the long run is `npm run chaos`, README "Chaos"): a few
// fixed rounds of the same suite on the same cluster — 4 gateway nodes with real agents in network
// namespaces, 7 gateways of both modes, 24 policies, 2 controller replicas with leader election behind a
// fault-injecting proxy — and every invariant checked after every round. Needs root and `ip netns`.
//
// The seed is fixed and chosen so that these rounds cover each family of faults (the API path, the
// control plane, agents, the leader) and bad input; the first test holds the plan to that, so a change
// of the generator cannot quietly make this run trivial (pick another seed then: README "Chaos" says how).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { plannedLines, runChaos } from './suite.ts';

const SEED = 7058;
const ROUNDS = 3;
const NODES = 4;
const skip = process.getuid?.() !== 0 ? 'needs root and ip netns' : false;

describe('chaos (short run)', { timeout: 600_000 }, () => {
  it('the fixed seed covers every family of faults and bad input', () => {
    const lines = plannedLines(SEED, ROUNDS, NODES);
    const covers = (what: string, re: RegExp) => assert.ok(lines.some((l) => re.test(l)), `seed ${SEED} plans no ${what}:\n${lines.join('\n')}`);
    covers('fault on the leader controller', /^fault .*(kill -9|SIGSTOP) leader controller/);
    covers('control-plane restart or compaction', /^fault .*(etcd compaction|etcdRestart|apiserverRestart)/);
    covers('agent kill or freeze', /^fault .*(kill -9|SIGSTOP) agent/);
    covers('fault on the API path', /^fault .*( (409|429|500|503) |cut|refuse|reset|latency)/);
    covers('object change', /^change /);
    covers('bad input the schema accepts', /^bad .*\((invalid|inert|orphan|badPolicy)\)$/);
    covers('gateway whose VIP is a node\'s own address', /VIP 198\.18\.0\.1[1-4] is a host's own address/);
  });

  it(`${ROUNDS} rounds: every round converges and keeps every invariant`, { skip, timeout: 480_000 }, async (t) => {
    const lines: string[] = [];
    const t0 = Date.now();
    const log = (l: string) => {
      lines.push(l);
      // Progress in the test's output: where a slow run spends its time.
      t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${l}`);
    };
    const { records } = await runChaos({ seed: SEED, rounds: ROUNDS, nodes: NODES, log });
    const broken = records.filter((r) => r.violations.length > 0);
    assert.equal(records.length, ROUNDS);
    assert.deepEqual(broken.map((r) => ({ round: r.round, plan: r.plan, violations: r.violations })), [], lines.join('\n'));
    assert.ok(records.every((r) => r.converged));
  });
});
