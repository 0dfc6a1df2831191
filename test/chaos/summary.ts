// The bench record of chaos runs (bench/results/chaos.json): rounds, seeds, convergence after healing,
// what was injected, and every round that broke an invariant.

import { dist, type Dist } from '../../bench/stats.ts';
import { kindOfDescription } from './faults.ts';
import type { RoundRecord } from './round.ts';

export interface ChaosSummary {
  when: string;
  runs: string[];
  rounds: number;
  /** Rounds by data plane (records of older runs, without one, count as cilium). */
  dataplanes: Record<string, number>;
  failedRounds: number;
  /** Run seeds (round r of run seed S replays with --seed S --from-round r). */
  seeds: number[];
  convergeMs: Dist;
  /** Fault kinds drawn, by kind. */
  faults: Record<string, number>;
  injectedStatuses: Record<string, number>;
  connectionResets: number;
  leaderChanges: number;
  controllerRestarts: number;
  dualAnswerQuestions: number;
  longestOverlapMs: number;
  /** The suite process's event-loop delay (ms): max of the rounds' maxima (the fault proxy runs in it). */
  suiteLoopDelayMaxMs: number;
  failures: Array<{ runSeed: number; round: number; dataplane: string; violations: string[] }>;
}

export function summarize(records: readonly RoundRecord[], runs: string[]): ChaosSummary {
  const faults: Record<string, number> = {};
  const injected: Record<string, number> = {};
  for (const r of records) {
    for (const p of r.plan) {
      if (!p.startsWith('fault ')) continue;
      const kind = kindOfDescription(p.slice('fault '.length)) ?? 'unknown';
      faults[kind] = (faults[kind] ?? 0) + 1;
    }
    for (const [code, n] of Object.entries(r.proxy.injected)) injected[code] = (injected[code] ?? 0) + n;
  }
  const round = (d: Dist): Dist => ({ n: d.n, p50: Math.round(d.p50), p99: Math.round(d.p99), min: Math.round(d.min), max: Math.round(d.max), mean: Math.round(d.mean) });
  return {
    when: new Date().toISOString(),
    runs,
    rounds: records.length,
    dataplanes: records.reduce<Record<string, number>>((a, r) => ({ ...a, [r.dataplane ?? 'cilium']: (a[r.dataplane ?? 'cilium'] ?? 0) + 1 }), {}),
    failedRounds: records.filter((r) => r.violations.length > 0).length,
    seeds: [...new Set(records.map((r) => r.runSeed))],
    convergeMs: round(dist(records.filter((r) => r.converged).map((r) => r.convergeMs))),
    faults,
    injectedStatuses: injected,
    connectionResets: records.reduce((a, r) => a + r.proxy.resets, 0),
    leaderChanges: records.reduce((a, r) => a + r.leaderChanges, 0),
    controllerRestarts: records.reduce((a, r) => a + r.controllerRestarts, 0),
    dualAnswerQuestions: records.reduce((a, r) => a + r.answers.dualQuestions, 0),
    longestOverlapMs: Math.max(0, ...records.map((r) => r.answers.longestOverlapMs)),
    suiteLoopDelayMaxMs: Math.max(0, ...records.map((r) => r.suiteLoopDelayMaxMs ?? 0)),
    failures: records.filter((r) => r.violations.length > 0).map((r) => ({ runSeed: r.runSeed, round: r.round, dataplane: r.dataplane ?? 'cilium', violations: r.violations })),
  };
}
