// A chaos run: the cluster, the world applied and settled, then round after round (round.ts), each
// planned from the world the previous one left. Used by `npm run chaos` (run.ts) and by the short run
// inside `npm test` (chaos.test.ts).

import type { DataplaneMode } from '../../src/api/names.ts';
import { ROUTER_IP } from '../../src/testenv/netns.ts';
import { applyWorld } from './apply.ts';
import { ChaosCluster, plannedPodSlots } from './cluster.ts';
import type { FaultKind } from './faults.ts';
import { checkConverged } from './invariants.ts';
import { describePlan, planRound, RunState, runRound, type RoundRecord } from './round.ts';
import { allVips, initialWorld, type World } from './world.ts';

export interface ChaosOptions {
  seed: number;
  rounds: number;
  /** Plan rounds before this one without running them (their world is applied at once). */
  fromRound?: number;
  nodes: number;
  faultKinds?: readonly FaultKind[];
  logDir?: string;
  log: (line: string) => void;
  onRound?: (r: RoundRecord) => void;
  /** Asked before each round: true starts no more (the rounds run so far are the result). */
  shouldStop?: () => boolean;
  /** After healing, how long a round may take to converge (default 120 s). */
  convergeDeadlineMs?: number;
  /** The data plane of the controller and the agents (default cilium; linux adds pods and its invariant). */
  dataplane?: DataplaneMode;
}

export interface ChaosResult {
  records: RoundRecord[];
  /** Setup: applying the world and its first convergence (ms). */
  setupMs: number;
}

/** The plan lines of a run's first rounds (planning is pure: no cluster needed). */
export function plannedLines(seed: number, rounds: number, nodes: number, dataplane: DataplaneMode = 'cilium'): string[] {
  const names = Array.from({ length: nodes }, (_, i) => `node${i + 1}`);
  const hosts = { routers: [ROUTER_IP], nodes: names.map((_, i) => `198.18.0.${11 + i}`) };
  let world = initialWorld(names, dataplane === 'linux' ? plannedPodSlots(names) : []);
  const lines: string[] = [];
  for (let r = 0; r < rounds; r++) {
    const { plan, after } = planRound(world, seed, r, hosts);
    lines.push(...describePlan(plan));
    world = after;
  }
  return lines;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runChaos(opts: ChaosOptions): Promise<ChaosResult> {
  const started = Date.now();
  const c = await ChaosCluster.start({ nodes: opts.nodes, logDir: opts.logDir, dataplane: opts.dataplane });
  opts.log(`cluster started in ${Date.now() - started} ms`);
  try {
    const hosts = { routers: [ROUTER_IP], nodes: c.nodes.map((n) => n.ip) };
    let world: World = initialWorld(c.nodes.map((n) => n.name), c.podSlots());
    const from = opts.fromRound ?? 0;
    for (let r = 0; r < from; r++) world = planRound(world, opts.seed, r, hosts, { faultKinds: opts.faultKinds }).after;
    const t0 = Date.now();
    await applyWorld(c.client, { ipOf: (n) => c.node(n).ip }, world);
    const vips = allVips();
    let last: string[] = [];
    for (;;) {
      try {
        last = await checkConverged(c.client, c.nodes, (n) => c.addresses(n), world, [], vips, c.linuxNodes());
      } catch (err) {
        last = [`observe: ${(err as Error).message}`];
      }
      if (last.length === 0) break;
      if (Date.now() - t0 > 180_000) throw new Error(`the initial world did not converge:\n${last.join('\n')}`);
      await sleep(200);
    }
    const setupMs = Date.now() - t0;
    opts.log(`setup: world applied and converged in ${setupMs} ms`);
    const state = new RunState();
    // What happened before the first round (setup) is not checked; it only sets the state.
    state.checkedUntil = Date.now();
    const records: RoundRecord[] = [];
    for (let r = from; r < from + opts.rounds; r++) {
      if (opts.shouldStop?.()) {
        opts.log(`stopping after ${records.length} rounds`);
        break;
      }
      const { plan } = planRound(world, opts.seed, r, hosts, { faultKinds: opts.faultKinds });
      const out = await runRound(c, world, plan, state, { convergeDeadlineMs: opts.convergeDeadlineMs ?? 120_000, log: opts.log });
      world = out.world;
      records.push(out.record);
      opts.onRound?.(out.record);
    }
    return { records, setupMs };
  } finally {
    const t = Date.now();
    await c.stop();
    opts.log(`teardown in ${Date.now() - t} ms`);
  }
}
