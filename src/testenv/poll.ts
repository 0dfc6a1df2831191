// The one way the tests, the bench, the lab and `egressgw move --wait` await a condition: poll it with a
// deadline instead of sleeping for a guessed time (CONTRIBUTING: never sleep to synchronise where a
// condition can be awaited). No imports: product code may use it without pulling in the test harness.

/** What a probe returns while its condition does not hold yet; anything else (0 and '' included) is the answer. */
export type Pending = undefined | false;

export interface PollOptions {
  /** Pause between probes. */
  intervalMs?: number;
  /** Aborting it rejects the poll with its reason before the next probe. */
  signal?: AbortSignal;
  /** A probe that throws ends the poll with that error (default: it counts as "not yet"). */
  failOnError?: boolean;
}

/** The deadline passed before the condition held. */
export class PollTimeout extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PollTimeout';
  }
}

/**
 * Calls `probe` until it returns something other than undefined or false and resolves with that value.
 * A probe that throws counts as "not yet": servers restart and objects appear late, and a test waiting
 * for a condition should not fail on the first transient error (unless `failOnError`). At the deadline
 * it rejects with a PollTimeout naming `what` and the last error, if any.
 */
export async function poll<T>(what: string, probe: () => T | Pending | Promise<T | Pending>, timeoutMs: number, opts: PollOptions = {}): Promise<T> {
  // The monotonic clock: a step of the wall clock (NTP, a VM resumed and re-synced) must not end a poll
  // early — one CI run saw 30 s polls time out within 0.8 s.
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    opts.signal?.throwIfAborted();
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      if (opts.failOnError) throw err;
      lastError = err;
    }
    if (performance.now() > deadline) {
      const last = lastError === undefined ? '' : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      throw new PollTimeout(`timed out after ${timeoutMs} ms waiting for ${what}${last}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}
