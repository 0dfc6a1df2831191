// When the controller must run a pass without any watch event: a heartbeat expires (its Lease simply
// stops changing) or an unconfirmed handover times out. One timer, at the earliest such moment that the
// last pass has not seen yet; when it fires it looks again, because renewals may have pushed it out.
//
// Two rules keep a failover from waiting for some *other* node's expiry (the 3.5 s SIGSTOP outlier of
// issue 10, up to one whole lease late):
//  - "not seen yet" is measured from the clock of the last pass (`since`), not from now: a heartbeat
//    that expired while a pass was running, or in the very millisecond the timer fired, is still due;
//  - due means `at <= now`, as the core counts a heartbeat dead once `now - observedAt >= duration`.
//    A timer firing early (Node's timers run on a coarser clock than Date.now()) just re-arms for the
//    remainder.

export interface WakeDeps {
  /** The earliest expiry or timeout strictly after `since` (ms, the passes' clock), if any. */
  nextDue(since: number): number | undefined;
  /** Asks for a pass. */
  enqueue(): void;
  /** The passes' clock (default Date.now). */
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

export class WakeTimer {
  readonly #d: WakeDeps;
  readonly #now: () => number;
  readonly #set: (fn: () => void, ms: number) => unknown;
  readonly #clear: (handle: unknown) => void;
  #since = 0;
  #timer: unknown;
  #at: number | undefined;

  constructor(d: WakeDeps) {
    this.#d = d;
    this.#now = d.now ?? Date.now;
    this.#set = d.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.#clear = d.clearTimer ?? ((h) => clearTimeout(h as NodeJS.Timeout));
  }

  /** A pass is starting with snapshot time `now`: everything due up to it is that pass's business. */
  passStarted(now: number): void {
    this.#since = now;
  }

  /** True while a timer is armed. */
  get armed(): boolean {
    return this.#at !== undefined;
  }

  /** Arms (or keeps) the timer for the earliest unseen expiry; asks for a pass at once if one is due. */
  arm(): void {
    const due = this.#d.nextDue(this.#since);
    if (due === undefined) return;
    const now = this.#now();
    if (due <= now) {
      this.stop();
      this.#d.enqueue();
      return;
    }
    // An armed timer at or before `due` is still a valid (early) check point: it re-arms when it fires.
    if (this.#at !== undefined && this.#at <= due && this.#at > now) return;
    this.stop();
    this.#at = due;
    this.#timer = this.#set(() => {
      this.#timer = undefined;
      this.#at = undefined;
      this.arm();
    }, due - now);
  }

  stop(): void {
    if (this.#timer !== undefined) this.#clear(this.#timer);
    this.#timer = undefined;
    this.#at = undefined;
  }
}
