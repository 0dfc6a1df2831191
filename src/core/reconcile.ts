// One full pass: snapshot → desired state → writes.
//
// `createCore()` is a core with a memory: it remembers, per object, what it derived from the objects
// it was given (see cache.ts), so a pass over a large, mostly unchanged cluster costs what changed.
// The controller keeps one for its lifetime. Its results are exactly those of a cold core (a property
// test compares them over random sequences of changes); only the time differs. Its Desired is valid
// until its next pass (parts of it are updated in place: see cache.ts). `reconcile()` is a
// cold core for one pass: no state survives the call (the CLI's `plan`, tests).

import type { CoreOptions, Desired, Snapshot, Write } from './types.ts';
import { computeDesired, resolveOptions } from './desired.ts';
import { planWrites } from './plan.ts';
import { CoreCache } from './cache.ts';

export interface Core {
  readonly options: CoreOptions;
  reconcile(snapshot: Snapshot): { desired: Desired; writes: Write[] };
}

export function createCore(options?: Partial<CoreOptions>): Core {
  const opts = resolveOptions(options);
  const cache = new CoreCache();
  return {
    options: opts,
    reconcile(snapshot: Snapshot) {
      const desired = computeDesired(snapshot, opts, cache);
      return { desired, writes: planWrites(snapshot, desired, cache) };
    },
  };
}

export function reconcile(snapshot: Snapshot, options?: Partial<CoreOptions>): { desired: Desired; writes: Write[] } {
  return createCore(options).reconcile(snapshot);
}
