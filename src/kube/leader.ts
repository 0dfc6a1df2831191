// Lease-based leader election with client-go's semantics (k8s.io/client-go/tools/leaderelection):
//  - a candidate takes the Lease when it is free (no holder) or expired; "expired" is measured on
//    OUR clock from the moment we last saw the Lease record change, never from the renewTime written
//    by another machine, so clock skew between replicas does not matter;
//  - the leader renews every retryPeriod; if it cannot renew for renewDeadline it stops leading
//    (renewDeadline < leaseDuration, so it stops before anyone else may take over);
//  - updates are optimistic (PUT with resourceVersion): two candidates cannot both win;
//  - on shutdown the leader releases the Lease (empty holder, duration 1s) so a standby takes over
//    at once instead of waiting for expiry.

import { KubeClient, isStatus } from './client.ts';
import { errFields, silentLogger, type Logger } from './log.ts';
import { leases } from './resources.ts';
import { microTime } from './time.ts';
import type { LeaseLike } from '../api/types.ts';

export interface LeaderElectionConfig {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /** Clear the holder when `run` is aborted while leading (client-go's ReleaseOnCancel). */
  releaseOnCancel?: boolean;
}

export const DEFAULT_LEASE_DURATION_MS = 15_000;
export const DEFAULT_RENEW_DEADLINE_MS = 10_000;
export const DEFAULT_RETRY_PERIOD_MS = 2_000;
/** client-go's JitterFactor for the acquire loop: waits are retryPeriod × [1, 1.2). */
const JITTER = 1.2;

export interface LeaderCallbacks {
  /** Leadership acquired; `signal` aborts when it is lost or released. */
  onStartedLeading?: (signal: AbortSignal) => void;
  onStoppedLeading?: () => void;
  /** The observed holder changed (including to ourselves). */
  onNewLeader?: (identity: string) => void;
}

interface Lease extends LeaseLike {
  apiVersion?: string;
  kind?: string;
  spec?: LeaseLike['spec'] & { leaseTransitions?: number };
}

export function validateLeaderElectionConfig(c: LeaderElectionConfig): void {
  if (!(c.leaseDurationMs > c.renewDeadlineMs)) throw new Error('leader election: lease duration must be greater than renew deadline');
  if (!(c.renewDeadlineMs > JITTER * c.retryPeriodMs)) throw new Error('leader election: renew deadline must be greater than retry period × 1.2');
  if (c.retryPeriodMs <= 0) throw new Error('leader election: retry period must be positive');
  if (!c.identity) throw new Error('leader election: identity must not be empty');
  if (c.leaseDurationMs < 1000) throw new Error('leader election: lease duration must be at least 1s');
}

export class LeaderElector {
  private readonly client: KubeClient;
  private readonly cfg: LeaderElectionConfig;
  private readonly cb: LeaderCallbacks;
  private readonly log: Logger;
  private readonly now: () => number;
  private observedRecord = '';
  private observedTime = 0;
  private observedLease: Lease | undefined;
  private leading = false;
  private lastRenew = 0;
  private reportedLeader: string | undefined;

  constructor(client: KubeClient, cfg: LeaderElectionConfig, callbacks: LeaderCallbacks = {}, opts: { logger?: Logger; now?: () => number } = {}) {
    validateLeaderElectionConfig(cfg);
    // Its own client with a short per-request deadline: one hung request must not outlast the renew deadline.
    this.client = new KubeClient(client.kubeConfig, { timeoutMs: Math.max(1000, Math.floor(cfg.renewDeadlineMs / 2)) });
    this.cfg = cfg;
    this.cb = callbacks;
    this.log = (opts.logger ?? silentLogger).child({ component: 'leader-election', lease: `${cfg.namespace}/${cfg.name}` });
    this.now = opts.now ?? Date.now;
  }

  /**
   * True while we hold a Lease we renewed within the renew deadline. Checked before every write
   * batch, so a leader whose renewals stall stops writing even before the renew loop notices.
   */
  isLeader(): boolean {
    return this.leading && this.now() - this.lastRenew < this.cfg.renewDeadlineMs;
  }

  /** The holder as last observed ('' when none). */
  leader(): string {
    return this.observedLease?.spec?.holderIdentity ?? '';
  }

  /**
   * Campaign until `signal` aborts: acquire, lead while renewals succeed, and on losing the Lease go
   * back to campaigning (client-go would exit the process; a controller that keeps its caches warm
   * is better off standing by).
   */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const acquired = await this.acquire(signal);
      if (!acquired) break;
      const lost = new AbortController();
      this.leading = true;
      this.log.info({ identity: this.cfg.identity }, 'became leader');
      try {
        this.cb.onStartedLeading?.(lost.signal);
      } catch (err) {
        this.log.error(errFields(err), 'onStartedLeading failed');
      }
      await this.renewLoop(signal);
      this.leading = false;
      lost.abort(new Error('leadership lost'));
      if (signal.aborted && this.cfg.releaseOnCancel !== false) await this.release();
      this.log.info({ identity: this.cfg.identity }, 'stopped leading');
      try {
        this.cb.onStoppedLeading?.();
      } catch (err) {
        this.log.error(errFields(err), 'onStoppedLeading failed');
      }
    }
  }

  private async acquire(signal: AbortSignal): Promise<boolean> {
    this.log.debug('attempting to acquire leader lease');
    while (!signal.aborted) {
      if (await this.tryAcquireOrRenew()) {
        return true;
      }
      await sleep(this.cfg.retryPeriodMs * (1 + Math.random() * (JITTER - 1)), signal);
    }
    return false;
  }

  /** Renew every retryPeriod; return when a renewal has not succeeded within renewDeadline, or on abort. */
  private async renewLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await sleep(this.cfg.retryPeriodMs, signal);
      if (signal.aborted) return;
      const deadline = this.lastRenew + this.cfg.renewDeadlineMs;
      let renewed = false;
      while (!signal.aborted && this.now() < deadline) {
        if (await this.tryAcquireOrRenew()) {
          renewed = true;
          break;
        }
        // Someone else holds a valid Lease: we lost it; no point retrying until the deadline.
        if (this.observedLease?.spec?.holderIdentity && this.observedLease.spec.holderIdentity !== this.cfg.identity) return;
        await sleep(Math.min(this.cfg.retryPeriodMs, Math.max(0, deadline - this.now())), signal);
      }
      if (!renewed) {
        if (!signal.aborted) this.log.warn('failed to renew the leader lease within the renew deadline');
        return;
      }
    }
  }

  /** One attempt, as client-go's tryAcquireOrRenew. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const ref = leases(this.cfg.namespace);
    const now = this.now();
    const durationSeconds = Math.max(1, Math.round(this.cfg.leaseDurationMs / 1000));
    let old: Lease | undefined;
    try {
      old = await this.client.tryGet<Lease>(ref, this.cfg.name);
    } catch (err) {
      this.log.warn(errFields(err), 'error retrieving the leader lease');
      return false;
    }
    if (!old) {
      const lease: Lease = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.cfg.name, namespace: this.cfg.namespace },
        spec: {
          holderIdentity: this.cfg.identity,
          leaseDurationSeconds: durationSeconds,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: 0,
        },
      };
      try {
        const created = await this.client.create<Lease>(ref, lease);
        this.observe(created, now);
        this.lastRenew = now;
        return true;
      } catch (err) {
        if (!isStatus(err, 409)) this.log.warn(errFields(err), 'error creating the leader lease');
        return false;
      }
    }

    this.observe(old, now);
    const holder = old.spec?.holderIdentity ?? '';
    if (holder !== '' && holder !== this.cfg.identity && this.observedTime + this.leaseDurationOf(old) > now) {
      this.log.trace({ holder }, 'lease is held by another candidate and has not expired');
      return false;
    }

    const spec = { ...(old.spec ?? {}) };
    if (holder === this.cfg.identity) {
      spec.acquireTime = spec.acquireTime ?? microTime(now);
    } else {
      spec.acquireTime = microTime(now);
      spec.leaseTransitions = (spec.leaseTransitions ?? 0) + 1;
    }
    spec.holderIdentity = this.cfg.identity;
    spec.leaseDurationSeconds = durationSeconds;
    spec.renewTime = microTime(now);
    try {
      // resourceVersion from the read makes this a compare-and-swap: a concurrent writer gets 409.
      const updated = await this.client.replace<Lease>(ref, this.cfg.name, { ...old, spec });
      this.observe(updated, now);
      this.lastRenew = now;
      return true;
    } catch (err) {
      if (!isStatus(err, 409)) this.log.warn(errFields(err), 'error updating the leader lease');
      return false;
    }
  }

  private leaseDurationOf(l: Lease): number {
    const s = l.spec?.leaseDurationSeconds;
    return typeof s === 'number' && s > 0 ? s * 1000 : this.cfg.leaseDurationMs;
  }

  private observe(lease: Lease, now: number): void {
    const s = lease.spec ?? {};
    const record = JSON.stringify([s.holderIdentity ?? '', s.leaseDurationSeconds, s.acquireTime, s.renewTime, s.leaseTransitions]);
    if (record !== this.observedRecord) {
      this.observedRecord = record;
      this.observedTime = now;
    }
    this.observedLease = lease;
    const holder = s.holderIdentity ?? '';
    if (holder !== this.reportedLeader) {
      this.reportedLeader = holder;
      if (holder) {
        this.log.info({ leader: holder }, 'new leader observed');
        try {
          this.cb.onNewLeader?.(holder);
        } catch (err) {
          this.log.error(errFields(err), 'onNewLeader failed');
        }
      }
    }
  }

  /** Give the Lease up: empty holder, so a standby acquires it on its next try. */
  private async release(): Promise<void> {
    const old = this.observedLease;
    if (!old || old.spec?.holderIdentity !== this.cfg.identity) return;
    const now = this.now();
    try {
      await this.client.replace(leases(this.cfg.namespace), this.cfg.name, {
        ...old,
        spec: {
          holderIdentity: '',
          leaseDurationSeconds: 1,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: old.spec?.leaseTransitions ?? 0,
        },
      });
      this.log.info('released the leader lease');
    } catch (err) {
      this.log.warn(errFields(err), 'failed to release the leader lease');
    }
  }
}

/** Sleep that ends early (without throwing) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, Math.max(0, ms));
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
