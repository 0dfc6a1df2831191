// The chaos suite's randomness: one seeded generator per round, derived from the run's seed and the
// round's number, so that a round's decisions (faults, their moments, object changes, bad input) are the
// same whenever it is replayed with the same seed — whatever the timing of the machine it runs on.

import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';

export class Rng {
  readonly #g: RandomGenerator;
  readonly seed: number;

  constructor(seed: number) {
    this.seed = seed;
    this.#g = xoroshiro128plus(seed);
  }

  /** Uniform in [0, 1). */
  float(): number {
    return uniformFloat64(this.#g);
  }

  /** Uniform integer in [lo, hi] (both included). */
  int(lo: number, hi: number): number {
    return uniformInt(this.#g, lo, hi);
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('Rng.pick: no items');
    return items[this.int(0, items.length - 1)] as T;
  }

  /** `count` distinct items (all of them when there are fewer), in random order. */
  sample<T>(items: readonly T[], count: number): T[] {
    const pool = [...items];
    const out: T[] = [];
    while (out.length < count && pool.length > 0) out.push(pool.splice(this.int(0, pool.length - 1), 1)[0] as T);
    return out;
  }

  /** A seed for a part of the round (fast-check's, say) that does not disturb this generator's sequence. */
  fork(): number {
    return this.int(0, 0x7fffffff);
  }
}

/** The seed of round `round` of a run seeded `seed` (FNV-1a over both, so neighbours differ everywhere). */
export function roundSeed(seed: number, round: number): number {
  let h = 0x811c9dc5;
  for (const b of `${seed}/${round}`) {
    h ^= b.charCodeAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h & 0x7fffffff;
}
