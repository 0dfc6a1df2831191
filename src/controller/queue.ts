// A work queue with a single key, "reconcile everything". The controller is level-triggered: every
// pass reads the whole cache, so any number of events collapse into one pending pass. At most one
// pass runs at a time, passes are at least `minIntervalMs` apart (a burst of watch events costs one
// pass, not one each), and a failed pass is retried with exponential backoff.

import { errFields, silentLogger, type Logger } from '../kube/log.ts';

export type PassResult = 'ok' | 'conflict' | 'error';

export interface ReconcileQueueOptions {
  minIntervalMs?: number;
  /** First retry delay after a failed pass; doubles up to `maxBackoffMs`. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  logger?: Logger;
}

export class ReconcileQueue {
  private readonly pass: () => Promise<PassResult>;
  private readonly minIntervalMs: number;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly log: Logger;
  private dueAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private lastEnd = 0;
  private failures = 0;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];

  constructor(pass: () => Promise<PassResult>, opts: ReconcileQueueOptions = {}) {
    this.pass = pass;
    this.minIntervalMs = opts.minIntervalMs ?? 50;
    this.baseBackoffMs = opts.baseBackoffMs ?? 200;
    this.maxBackoffMs = opts.maxBackoffMs ?? 30_000;
    this.log = opts.logger ?? silentLogger;
  }

  /** Ask for a pass no later than `delayMs` from now (an earlier request wins). */
  enqueue(delayMs = 0): void {
    if (this.stopped) return;
    const at = Date.now() + Math.max(0, delayMs);
    if (this.dueAt !== undefined && this.dueAt <= at) return;
    this.dueAt = at;
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.dueAt = undefined;
  }

  /** Resolves when no pass is running and none is due now (tests; graceful shutdown). */
  idle(): Promise<void> {
    if (!this.running && (this.dueAt === undefined || this.dueAt > Date.now())) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private arm(): void {
    if (this.running || this.dueAt === undefined || this.stopped) return;
    clearTimeout(this.timer);
    const at = Math.max(this.dueAt, this.lastEnd + this.minIntervalMs);
    this.timer = setTimeout(() => void this.fire(), Math.max(0, at - Date.now()));
  }

  private async fire(): Promise<void> {
    this.timer = undefined;
    if (this.running || this.stopped) return;
    this.dueAt = undefined;
    this.running = true;
    let result: PassResult;
    try {
      result = await this.pass();
    } catch (err) {
      this.log.error(errFields(err), 'reconcile pass threw');
      result = 'error';
    }
    this.running = false;
    this.lastEnd = Date.now();
    if (result === 'ok') {
      this.failures = 0;
    } else if (result === 'conflict') {
      // Stale cache: the watch is about to deliver the newer object; retry soon, no backoff growth.
      this.enqueue(this.baseBackoffMs);
    } else {
      const delay = Math.min(this.baseBackoffMs * 2 ** this.failures, this.maxBackoffMs);
      this.failures++;
      this.enqueue(delay);
    }
    this.arm();
    if (this.dueAt === undefined || this.dueAt > Date.now()) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
