// The agent's side of the timing rule (src/api/fencing.ts): until when its kernel switch may stay open.
//
// Each renewal the API server accepts, once its answer is in, moves the deadline to its own *send*
// time + fenceAfter — never to the time of the answer, which can be much later than the moment the
// controller saw the renewal. It only moves it while the previous deadline has not passed yet: once it
// has, the switch closed by itself, the agent fences, and a later answer starts a new chain that may
// hold VIPs again only after a fresh look at the instances (the controller may have moved them).
// Monotonic milliseconds throughout (performance.now(), the clock the fence's timeouts are computed on).

export type Acceptance =
  /** The switch was open: the chain goes on, the deadline moved. */
  | 'extended'
  /** The switch had closed (or never opened): a new chain starts here. */
  | 'restarted'
  /** The answer came too late to count at all (its send time + fenceAfter has passed). */
  | 'stale';

export class FenceDeadline {
  readonly fenceAfterMs: number;
  #deadline = -Infinity;

  constructor(fenceAfterMs: number) {
    this.fenceAfterMs = fenceAfterMs;
  }

  /** The answer to the renewal sent at `sentAt` arrived (the server accepted it) at `now`. */
  accepted(sentAt: number, now: number): Acceptance {
    const until = sentAt + this.fenceAfterMs;
    if (until <= now) return 'stale';
    if (now < this.#deadline) {
      this.#deadline = Math.max(this.#deadline, until);
      return 'extended';
    }
    this.#deadline = until;
    return 'restarted';
  }

  /** The switch may be open at `now`. */
  open(now: number): boolean {
    return now < this.#deadline;
  }

  /** The current deadline (−Infinity before the first accepted renewal). */
  get deadline(): number {
    return this.#deadline;
  }

  /** Closes it now (graceful shutdown): only a new chain reopens it. */
  close(): void {
    this.#deadline = -Infinity;
  }
}
