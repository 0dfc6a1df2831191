// One full pass: snapshot → desired state → writes.

import type { CoreOptions, Desired, Snapshot, Write } from './types.ts';
import { computeDesired } from './desired.ts';
import { planWrites } from './plan.ts';

export function reconcile(snapshot: Snapshot, options?: Partial<CoreOptions>): { desired: Desired; writes: Write[] } {
  const desired = computeDesired(snapshot, options);
  return { desired, writes: planWrites(snapshot, desired) };
}
