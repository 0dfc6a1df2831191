// A round's plan is a function of the run's seed, the round and the world it starts from: replaying a
// seed replays the same faults, changes and bad input. And the world keeps the cast the issue asks for.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeFault, FAULT_KINDS, kindOfDescription, planFaults } from './faults.ts';
import { describePlan, planRound } from './round.ts';
import { vipOf } from './invalid.ts';
import { Rng } from './rng.ts';
import { applyToWorld, describeMutation, GATEWAYS, initialWorld, VIP_GATEWAYS, type PodSlot, type World } from './world.ts';
import { plannedPodSlots } from './cluster.ts';

const NODES = ['node1', 'node2', 'node3', 'node4'];
const HOSTS = { routers: ['198.18.0.1'], nodes: ['198.18.0.11'] };

const POD_SLOTS = plannedPodSlots(NODES);

function run(seed: number, rounds: number, pods: readonly PodSlot[] = []): { plans: string[][]; world: World } {
  let world = initialWorld(NODES, pods);
  const plans: string[][] = [];
  for (let r = 0; r < rounds; r++) {
    const { plan, after } = planRound(world, seed, r, HOSTS);
    plans.push(describePlan(plan));
    world = after;
  }
  return { plans, world };
}

describe('chaos plans', () => {
  it('the bad gateways of one round have distinct VIPs (linux seed 20261225 round 151: two inert ones drew one spare VIP)', () => {
    let dups = 0;
    for (const seed of [20261225, 7058, 28]) {
      let world = initialWorld(NODES, POD_SLOTS);
      for (let r = 0; r < 300; r++) {
        const { plan, after } = planRound(world, seed, r, HOSTS);
        const vips = plan.bad.map((b) => vipOf(b.object)).filter((v): v is string => v !== undefined);
        if (new Set(vips).size !== vips.length) dups++;
        world = after;
      }
    }
    assert.equal(dups, 0);
  });

  it('the changes, applied in time order to the world a round starts from, leave the world it plans (seed 20261220 round 17)', () => {
    for (const pods of [[], POD_SLOTS]) {
      let world = initialWorld(NODES, pods);
      for (let r = 0; r < 300; r++) {
        const { plan, after } = planRound(world, 20261220, r, HOSTS);
        let w = world;
        for (const { mutation } of plan.mutations) {
          if (mutation.kind === 'nodeHealth') assert.equal(w.nodes.get(mutation.node)?.impairment, mutation.from, `round ${r}: ${describeMutation(mutation)} applied to ${mutation.node} in state ${w.nodes.get(mutation.node)?.impairment}`);
          w = applyToWorld(w, mutation);
        }
        assert.deepEqual(w, after, `round ${r}`);
        world = after;
      }
    }
  });

  it('the same seed plans the same rounds; another seed others', () => {
    assert.deepEqual(run(7, 30).plans, run(7, 30).plans);
    assert.notDeepEqual(run(7, 30).plans, run(8, 30).plans);
  });

  it('every round has 1–3 faults; the world keeps ≥ 3 nodes, gateways of both modes and ≥ 20 policies in reach', () => {
    const { plans, world } = run(11, 200);
    for (const p of plans) {
      const faults = p.filter((l) => l.startsWith('fault ')).length;
      assert.ok(faults >= 1 && faults <= 3, `${faults} faults`);
    }
    assert.ok(world.nodes.size >= 3);
    assert.ok(GATEWAYS.filter((g) => world.gateways.has(g)).length >= GATEWAYS.length - 2);
    assert.ok(VIP_GATEWAYS.length >= 1 && GATEWAYS.length >= 5);
    assert.ok(world.policies.size >= 20);
    assert.ok([...world.nodes.values()].filter((n) => n.impairment !== 'none').length <= 2);
  });
});

describe('chaos plans with pods (--dataplane linux)', () => {
  const isPod = (l: string) => /^change @\d+ms (create |delete )?pod /.test(l);

  it('pods change nothing else in the plan: a seed replays the rounds of the Cilium data plane', () => {
    const without = run(7, 30).plans;
    const withPods = run(7, 30, POD_SLOTS).plans.map((p) => p.filter((l) => !isPod(l)));
    assert.deepEqual(withPods, without);
  });

  it('pods are relabelled, deleted and re-created, deterministically; at least half stay', () => {
    assert.deepEqual(run(9, 40, POD_SLOTS).plans, run(9, 40, POD_SLOTS).plans);
    const { plans } = run(9, 200, POD_SLOTS);
    const lines = plans.flat().filter(isPod);
    for (const re of [/ pod p\d-\d app /, /delete pod /, /create pod /]) assert.ok(lines.some((l) => re.test(l)), `no ${re} in\n${lines.join('\n')}`);
    let world = initialWorld(NODES, POD_SLOTS);
    for (let r = 0; r < 200; r++) {
      world = planRound(world, 9, r, HOSTS).after;
      assert.ok([...world.pods.values()].filter((p) => p.present).length >= POD_SLOTS.length / 2);
    }
  });
});

describe('fault descriptions', () => {
  it('name their kind (the summary counts faults by kind from the records)', () => {
    const rng = new Rng(7);
    for (const kind of FAULT_KINDS) {
      for (const f of planFaults(rng, 3, 5000, ['node1', 'node2', 'node3'], [kind])) assert.equal(kindOfDescription(describeFault(f)), f.kind, describeFault(f));
    }
  });
});
