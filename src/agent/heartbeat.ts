// The node's heartbeat: a coordination.k8s.io/v1 Lease renewed every renewInterval (design §3).
//
// The controller measures expiry on its own clock from when it saw renewTime change, so all this side
// must do is change renewTime often enough. The fencing decision is the agent's, on a monotonic clock,
// from the *send* time of each renewal the server accepted (never later than the moment the controller
// saw it): every 'renewed' event carries it, for the fence deadline (deadline.ts). Nothing slow runs
// between taking that time and writing the request: the uplink state comes from a cache (uplinks.ts).

import { EventEmitter } from 'node:events';
import type { KubeClient } from '../kube/client.ts';
import { isObjectGone, resourcePath } from '../kube/client.ts';
import { leases } from '../kube/resources.ts';
import { microTime } from '../kube/time.ts';
import { errFields, type Logger } from '../kube/log.ts';
import { FENCE_AFTER_MS_ANNOTATION, heartbeatLeaseName, LEASE_DURATION_MS_ANNOTATION, UPLINKS_ANNOTATION } from '../api/names.ts';
import type { LeaseLike } from '../api/types.ts';
import type { UplinkState } from '../core/types.ts';

export type Uplinks = Record<string, UplinkState>;

/** Stable JSON (sorted keys and lists) so that "changed" means the state changed, not the order. */
export function uplinksJson(uplinks: Uplinks): string {
  const out: Record<string, UplinkState> = {};
  for (const name of Object.keys(uplinks).sort()) {
    const u = uplinks[name]!;
    out[name] = { up: u.up, ipv4: [...(u.ipv4 ?? [])].sort(), ipv6: [...(u.ipv6 ?? [])].sort() };
  }
  return JSON.stringify(out);
}

export interface HeartbeatOptions {
  client: KubeClient;
  /**
   * Clients for the renewals, used in turn (default: just `client`). Renewals overlap while answers
   * are slow, and over HTTP/1.1 each overlapping request needs a connection of its own: opened during
   * an API latency spike, its TLS handshake pays the spike twice. With one client per renewal in
   * flight (fenceAfter / renewInterval + 1), every renewal finds a connection already open and warm.
   */
  renewalClients?: readonly KubeClient[];
  namespace: string;
  node: string;
  renewIntervalMs: number;
  leaseDurationMs: number;
  /** Published in an annotation, so the controller can check its lease against it (src/api/fencing.ts). */
  fenceAfterMs: number;
  /** A renewal older than this is useless for fencing purposes, so requests are aborted after it. */
  requestTimeoutMs: number;
  /** Current uplink state (cached, so the send is not delayed), published as an annotation; undefined = leave it alone. */
  uplinks: () => Uplinks | undefined;
  log: Logger;
  /** Called after every attempt with its latency and outcome (metrics). */
  onAttempt?: (seconds: number, ok: boolean) => void;
  /** Monotonic clock, ms. */
  monotonic?: () => number;
}

interface HeartbeatEvents {
  /** A renewal succeeded after one or more failures (or the first success). */
  recovered: [];
  /** The server accepted the renewal sent at `sentAt` (monotonic ms). */
  renewed: [sentAt: number];
  failed: [err: unknown];
}

export class Heartbeat extends EventEmitter<HeartbeatEvents> {
  readonly leaseName: string;
  readonly #o: HeartbeatOptions;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  /** Renewals in flight: one per tick, each aborted at requestTimeoutMs (see #tick). */
  readonly #inFlight = new Set<AbortController>();
  readonly #clients: readonly KubeClient[];
  /** The clients with a renewal in flight. */
  readonly #busy = new Set<KubeClient>();
  #next = 0;
  #lastAcceptedSend: number | undefined;
  #lastOk = false;
  /** The uplink state last logged as published (the Lease gets it on every renewal). */
  #loggedUplinks: string | undefined;
  #stopped = true;
  #consecutiveFailures = 0;

  constructor(o: HeartbeatOptions) {
    super();
    this.#o = o;
    this.#now = o.monotonic ?? (() => performance.now());
    this.leaseName = heartbeatLeaseName(o.node);
    this.#clients = o.renewalClients && o.renewalClients.length > 0 ? o.renewalClients : [o.client];
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    void this.#tick();
    this.#timer = setInterval(() => void this.#tick(), this.#o.renewIntervalMs);
  }

  /** Renews now, besides the regular ticks (e.g. the uplink state changed). */
  renewNow(): void {
    if (!this.#stopped) void this.#tick();
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const ctl of this.#inFlight) ctl.abort(new Error('heartbeat stopped'));
  }

  /** Monotonic ms since the send time of the last accepted renewal; Infinity before the first. */
  sinceLastRenewal(now = this.#now()): number {
    return this.#lastAcceptedSend === undefined ? Infinity : now - this.#lastAcceptedSend;
  }

  get lastAttemptOk(): boolean {
    return this.#lastOk;
  }

  get consecutiveFailures(): number {
    return this.#consecutiveFailures;
  }

  /** Deletes the Lease so the controller sees this node leave at once (graceful shutdown). */
  async release(timeoutMs = 2000): Promise<void> {
    this.stop();
    try {
      await this.#o.client.request('DELETE', resourcePath(leases(this.#o.namespace), this.leaseName), {
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      if (!isObjectGone(err, this.leaseName)) throw err;
    }
  }

  async #tick(): Promise<void> {
    // Every tick sends, even while an earlier renewal is still in flight: with one at a time, a slow
    // answer (an API latency spike) would also delay the next send, and the fence deadline would have
    // to cover two slow round trips plus an interval instead of one plus an interval. Each renewal is
    // aborted at requestTimeoutMs, so at most requestTimeoutMs / renewInterval + 1 are in flight.
    if (this.#stopped) return;
    // The next client without a renewal in flight (all busy: the next in turn, which then pools).
    let client = this.#clients[this.#next % this.#clients.length]!;
    for (let i = 0; i < this.#clients.length; i++) {
      const c = this.#clients[(this.#next + i) % this.#clients.length]!;
      if (!this.#busy.has(c)) {
        client = c;
        this.#next += i;
        break;
      }
    }
    this.#next++;
    this.#busy.add(client);
    const ctl = new AbortController();
    this.#inFlight.add(ctl);
    const timeout = setTimeout(() => ctl.abort(new Error(`renewal timed out after ${this.#o.requestTimeoutMs}ms`)), this.#o.requestTimeoutMs);
    let sentAt = this.#now();
    try {
      await this.#renew(client, ctl.signal, (t) => (sentAt = t));
      const wasOk = this.#lastOk;
      // Answers may come out of order: the latest send counts.
      this.#lastAcceptedSend = Math.max(this.#lastAcceptedSend ?? -Infinity, sentAt);
      this.#lastOk = true;
      this.#consecutiveFailures = 0;
      this.#o.onAttempt?.((this.#now() - sentAt) / 1000, true);
      if (!wasOk) this.emit('recovered');
      this.emit('renewed', sentAt);
    } catch (err) {
      this.#lastOk = false;
      this.#consecutiveFailures++;
      this.#o.onAttempt?.((this.#now() - sentAt) / 1000, false);
      // First failure and then every 10th, so a long outage does not flood the log at 2 lines/s.
      if (this.#consecutiveFailures === 1 || this.#consecutiveFailures % 10 === 0) {
        this.#o.log.warn({ ...errFields(err), failures: this.#consecutiveFailures }, 'heartbeat renewal failed');
      }
      this.emit('failed', err);
    } finally {
      clearTimeout(timeout);
      this.#inFlight.delete(ctl);
      this.#busy.delete(client);
    }
  }

  /** One renewal; `sending(t)` is told the monotonic time right before each request goes out. */
  async #renew(client: KubeClient, signal: AbortSignal, sending: (t: number) => void): Promise<void> {
    const o = this.#o;
    const uplinks = o.uplinks();
    const json = uplinks === undefined ? undefined : uplinksJson(uplinks);
    const now = Date.now();
    const spec = {
      holderIdentity: o.node,
      // Rounded up: a reader that knows only leaseDurationSeconds must never expire us early.
      leaseDurationSeconds: Math.ceil(o.leaseDurationMs / 1000),
      renewTime: microTime(now),
    };
    // Merge patch: no read-modify-write, so a renewal is one round trip. The uplink state goes along on
    // every renewal, not only when it changed: renewals overlap, and one aborted here (timed out) may
    // still be applied by the server later, after a newer one. Sent only on change, a stale state left
    // that way would stay on the Lease for good (the agent believed the current one was published), and
    // the controller would go on judging the node's uplinks by it (UplinkDown). Sent every time, the
    // next renewal corrects it; the annotation does not change on the server while the state does not.
    const patch: Record<string, unknown> = { spec };
    const annotations: Record<string, string> = {
      [LEASE_DURATION_MS_ANNOTATION]: String(o.leaseDurationMs),
      [FENCE_AFTER_MS_ANNOTATION]: String(o.fenceAfterMs),
    };
    if (json !== undefined) annotations[UPLINKS_ANNOTATION] = json;
    patch.metadata = { annotations };
    const path = resourcePath(leases(o.namespace), this.leaseName);
    try {
      sending(this.#now());
      await client.request('PATCH', path, { body: patch, contentType: 'application/merge-patch+json', signal });
    } catch (err) {
      // Create only when the Lease itself is missing; a 404 for the resource (not served right now) is a
      // failed renewal like any other.
      if (!isObjectGone(err, this.leaseName)) throw err;
      const lease: LeaseLike & { apiVersion: string; kind: string } = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: {
          name: this.leaseName,
          namespace: o.namespace,
          labels: { 'app.kubernetes.io/name': 'egressgw-agent', 'app.kubernetes.io/component': 'heartbeat' },
          annotations: {
            [LEASE_DURATION_MS_ANNOTATION]: String(o.leaseDurationMs),
            [FENCE_AFTER_MS_ANNOTATION]: String(o.fenceAfterMs),
            ...(json !== undefined ? { [UPLINKS_ANNOTATION]: json } : {}),
          },
        },
        spec: { ...spec, acquireTime: microTime(now) },
      };
      sending(this.#now());
      await client.request('POST', resourcePath(leases(o.namespace)), { body: lease, signal });
      o.log.info({ lease: `${o.namespace}/${this.leaseName}` }, 'heartbeat lease created');
    }
    // Logged once per state, not once per renewal.
    if (json !== undefined && json !== this.#loggedUplinks) {
      this.#loggedUplinks = json;
      o.log.info({ uplinks }, 'uplink state published');
    }
  }
}
