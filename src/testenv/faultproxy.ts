// A fault-injecting TCP proxy for the test environment: clients (agents, the controller) talk to the test
// API server through it, and a test or bench injects faults into that path. TLS passes through untouched
// (the proxy listens on an address in the server's certificate).
//
// Faults are rules: a kind, optionally restricted to some clients (by their address), active from the
// moment they are added until removed. Kinds so far:
//   delay   every byte that arrives while the rule is active, in its direction (default: towards the
//           server), is forwarded `ms` later, order kept (a byte never overtakes an earlier one). Towards
//           the server it is an API latency spike as a client sees one: a request is processed `ms`
//           later, so its answer, and the watch events it causes, come `ms` later too;
//   cut     bytes from and to the matched clients are dropped (new connections from them too) — the
//           path is black-holed, the client's TCP stack sees silence, nothing is reset.
// Room for more (resets, HTTP status injection, bandwidth) is in the per-connection pump: each chunk asks
// `#faultFor(conn)` what to do with it. There is no backpressure: API traffic is small, and a delayed
// chunk is held in memory until its time.
//
// spikes() drives a delay rule on a schedule (e.g. 300 ms spikes lasting 1 s every few seconds) and
// records when each spike started and ended, so a bench can tell what happened during one.

import { createServer, connect, type Server, type Socket } from 'node:net';
import { KubeConfig } from '../kube/client.ts';

export interface FaultTarget {
  host: string;
  port: number;
}

/** Which clients a rule applies to: all, or those whose remote address is in `clients`. */
export interface FaultScope {
  clients?: readonly string[];
}

/** Which way a delay applies: towards the server (requests), towards the clients (answers, watch events), or both. */
export type FaultDirection = 'toServer' | 'toClient' | 'both';

export type FaultRule = ({ kind: 'delay'; ms: number; direction?: FaultDirection } | { kind: 'cut' }) & FaultScope;

export interface SpikeSchedule {
  /** Added latency during a spike (ms). */
  delayMs: number;
  /** Default 'toServer': every request during a spike takes delayMs longer. */
  direction?: FaultDirection;
  /** How long one spike lasts (ms). */
  durationMs: number;
  /** Pause between the end of a spike and the start of the next: uniform in [min, max] ms. */
  gapMs: { min: number; max: number };
  scope?: FaultScope;
  /** Random source in [0, 1) (default Math.random; a seeded one makes runs repeatable). */
  random?: () => number;
}

export interface SpikeRecord {
  start: number;
  end: number;
  delayMs: number;
}

interface Conn {
  client: Socket;
  upstream: Socket;
  clientAddress: string;
}

/** Monotonic-ish wall clock in ms, the same base as the rest of the test environment's timestamps. */
const now = (): number => performance.timeOrigin + performance.now();

export class FaultProxy {
  readonly #server: Server;
  readonly #target: FaultTarget;
  readonly #conns = new Set<Conn>();
  readonly #rules = new Set<FaultRule>();
  readonly #spikeStops = new Set<() => void>();
  #address: { host: string; port: number } = { host: '', port: 0 };
  /** Bytes received from clients so far (forwarded or not). */
  bytesFromClients = 0;

  private constructor(target: FaultTarget) {
    this.#target = target;
    this.#server = createServer((client) => this.#accept(client));
  }

  /** Listens on `listen.host` (port 0: any free one) and forwards to `target`. */
  static async start(target: FaultTarget, listen: { host: string; port?: number }): Promise<FaultProxy> {
    const p = new FaultProxy(target);
    await new Promise<void>((resolve, reject) => {
      p.#server.once('error', reject);
      p.#server.listen(listen.port ?? 0, listen.host, () => {
        p.#server.off('error', reject);
        resolve();
      });
    });
    const a = p.#server.address();
    if (a === null || typeof a === 'string') throw new Error('fault proxy: no TCP address');
    p.#address = { host: listen.host, port: a.port };
    return p;
  }

  get address(): { host: string; port: number } {
    return this.#address;
  }

  /** `https://host:port` of the proxy, for a kubeconfig. */
  get url(): string {
    return `https://${this.#address.host.includes(':') ? `[${this.#address.host}]` : this.#address.host}:${this.#address.port}`;
  }

  get connections(): number {
    return this.#conns.size;
  }

  /** Activates a rule until the returned function is called. */
  add(rule: FaultRule): () => void {
    this.#rules.add(rule);
    return () => void this.#rules.delete(rule);
  }

  /** Runs `schedule` until the returned function is called; spikes are appended to `record`. */
  spikes(schedule: SpikeSchedule, record: SpikeRecord[] = []): () => void {
    const random = schedule.random ?? Math.random;
    let timer: NodeJS.Timeout | undefined;
    let remove: (() => void) | undefined;
    let stopped = false;
    const gap = () => schedule.gapMs.min + random() * (schedule.gapMs.max - schedule.gapMs.min);
    const begin = () => {
      if (stopped) return;
      const spike: SpikeRecord = { start: now(), end: NaN, delayMs: schedule.delayMs };
      record.push(spike);
      remove = this.add({ kind: 'delay', ms: schedule.delayMs, direction: schedule.direction ?? 'toServer', ...schedule.scope });
      timer = setTimeout(() => {
        remove?.();
        remove = undefined;
        spike.end = now();
        timer = setTimeout(begin, gap());
      }, schedule.durationMs);
    };
    timer = setTimeout(begin, gap());
    const stop = () => {
      stopped = true;
      clearTimeout(timer);
      remove?.();
      const last = record.at(-1);
      if (last && Number.isNaN(last.end)) last.end = now();
      this.#spikeStops.delete(stop);
    };
    this.#spikeStops.add(stop);
    return stop;
  }

  /** Closes the listener and every proxied connection. */
  async close(): Promise<void> {
    for (const stop of [...this.#spikeStops]) stop();
    for (const c of this.#conns) {
      c.client.destroy();
      c.upstream.destroy();
    }
    this.#conns.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #applies(rule: FaultRule, conn: Conn): boolean {
    return rule.clients === undefined || rule.clients.includes(conn.clientAddress);
  }

  /** What happens to a chunk of `conn` going `direction` that arrives now: dropped, or forwarded after a delay. */
  #faultFor(conn: Conn, direction: 'toServer' | 'toClient'): { drop: true } | { drop: false; delayMs: number } {
    let delayMs = 0;
    for (const r of this.#rules) {
      if (!this.#applies(r, conn)) continue;
      if (r.kind === 'cut') return { drop: true };
      const d = r.direction ?? 'toServer';
      if (d === 'both' || d === direction) delayMs = Math.max(delayMs, r.ms);
    }
    return { drop: false, delayMs };
  }

  #accept(client: Socket): void {
    client.setNoDelay(true);
    const upstream = connect({ host: this.#target.host, port: this.#target.port });
    upstream.setNoDelay(true);
    const conn: Conn = { client, upstream, clientAddress: (client.remoteAddress ?? '').replace(/^::ffff:/, '') };
    this.#conns.add(conn);
    const end = () => {
      this.#conns.delete(conn);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.on('data', (d: Buffer) => (this.bytesFromClients += d.length));
    this.#pump(conn, client, upstream, 'toServer');
    this.#pump(conn, upstream, client, 'toClient');
  }

  /**
   * Forwards `from` → `to`, each chunk at max(arrival + its delay, the previous chunk's release), so a
   * spike delays what arrives during it and what queues behind it, and order is kept.
   */
  #pump(conn: Conn, from: Socket, to: Socket, direction: 'toServer' | 'toClient'): void {
    const queue: Array<{ at: number; data: Buffer }> = [];
    let timer: NodeJS.Timeout | undefined;
    let lastRelease = 0;
    const flush = () => {
      timer = undefined;
      const t = now();
      while (queue.length > 0 && queue[0]!.at <= t) {
        const chunk = queue.shift()!;
        if (!to.destroyed) to.write(chunk.data);
      }
      if (queue.length > 0) timer = setTimeout(flush, Math.max(0, queue[0]!.at - now()));
    };
    from.on('data', (data: Buffer) => {
      const f = this.#faultFor(conn, direction);
      if (f.drop) return;
      const at = Math.max(now() + f.delayMs, lastRelease);
      lastRelease = at;
      if (f.delayMs === 0 && queue.length === 0) {
        if (!to.destroyed) to.write(data);
        return;
      }
      queue.push({ at, data });
      if (timer === undefined) timer = setTimeout(flush, Math.max(0, at - now()));
    });
    from.on('close', () => clearTimeout(timer));
  }
}

/** A copy of `kc` whose clusters point at `server` (e.g. a FaultProxy's url) instead. */
export function kubeConfigVia(kc: KubeConfig, server: string): KubeConfig {
  const out = new KubeConfig();
  out.loadFromOptions({
    clusters: kc.clusters.map((c) => ({ ...c, server })),
    users: kc.users,
    contexts: kc.contexts,
    currentContext: kc.getCurrentContext(),
  });
  return out;
}
