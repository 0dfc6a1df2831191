// A fault-injecting proxy for the test environment: clients (agents, controller replicas) talk to the test
// API server through it, and a test, bench or the chaos suite injects faults into that path.
//
// Two modes:
//   TCP (default)  bytes pass through untouched, TLS included (the proxy listens on an address in the
//                  server's certificate);
//   HTTP (`http`)  the proxy terminates TLS with the server's own certificate and key, and forwards each
//                  HTTP/1.1 request (our clients speak HTTP/1.1 only, src/kube/client.ts) to the server
//                  over TLS. The byte-level faults below still act on the client's raw TCP stream, and
//                  it can also answer a share of requests with an error status of its own.
//
// Faults are rules: a kind, optionally restricted to some clients (by their address), active from the
// moment they are added until removed. Kinds:
//   delay   every byte that arrives while the rule is active, in its direction (default: towards the
//           server), is forwarded `ms` later, order kept (a byte never overtakes an earlier one). Towards
//           the server it is an API latency spike as a client sees one: a request is processed `ms`
//           later, so its answer, and the watch events it causes, come `ms` later too;
//   cut     bytes from and to the matched clients are dropped (new connections from them too) — the
//           path is black-holed, the client's TCP stack sees silence, nothing is reset. With `hold`,
//           they are held instead and forwarded, in order, once the rule is removed: a partition that
//           heals, after which TCP's retransmissions deliver what was sent meanwhile;
//   refuse  new connections of the matched clients are reset at once (a server that is down);
//   status  (HTTP mode) a share of the matched clients' requests gets `code` (409, 429, 500, 503…) with a
//           Kubernetes Status body. By default the request is not forwarded (rejected before it was
//           processed); with `committed` it is forwarded and its answer replaced (the write happened,
//           the client is told it failed). `verbs` restricts it to reads (GET) or writes.
// reset() is an action, not a rule: it resets (TCP RST) the matched clients' open connections now.
//
// Backpressure as a TCP proxy has it: when the side a pump writes to cannot take more (a client that
// stopped reading: SIGSTOP, a partition), the pump stops reading from the other side until it drains, so
// the sender is held back by TCP instead of the proxy buffering without bound. (Unbounded, a frozen
// client's watches filled the proxy's heap — in the process that also runs the suite — at the rate the
// server sent.) What a delay or a hold-cut keeps is held in memory until its time.
//
// spikes() drives a delay rule on a schedule (e.g. 300 ms spikes lasting 1 s every few seconds) and
// records when each spike started and ended, so a bench can tell what happened during one.

import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { duplexPair, type Duplex } from 'node:stream';
import { TLSSocket, createSecureContext, type SecureContext } from 'node:tls';
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

/** HTTP mode: which requests a status rule answers. */
export type FaultVerbs = 'read' | 'write' | 'any';

export interface StatusFault {
  kind: 'status';
  /** The status code to answer with (409, 429, 500, 503…). */
  code: number;
  /** Share of the matched requests answered so, in [0, 1]. */
  share: number;
  /** Which requests (default 'any'): 'read' is GET (get, list, watch), 'write' everything else. */
  verbs?: FaultVerbs;
  /** Forward the request and replace its answer (the change happened; the client is told it failed). */
  committed?: boolean;
  /** Random source in [0, 1) (default Math.random; a seeded one makes runs repeatable). */
  random?: () => number;
}

export type FaultRule = ({ kind: 'delay'; ms: number; direction?: FaultDirection } | { kind: 'cut'; hold?: boolean } | { kind: 'refuse' } | StatusFault) & FaultScope;

/** HTTP mode: the server's certificate chain and key (the proxy presents them) and the CA to verify it. */
export interface ProxyTLS {
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
}

export interface FaultProxyOptions {
  /** Terminate TLS and proxy HTTP requests (needed for `status` rules). */
  http?: ProxyTLS;
}

/** What the proxy did, for a test or a chaos round to report. */
export interface FaultCounters {
  /** Requests answered by a status rule (HTTP mode), by code. */
  injected: Record<number, number>;
  /** Connections reset by reset() or refused by a refuse rule. */
  resets: number;
}

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
  /** Called as each spike ends (also the last one, cut short by stop). */
  onSpike?: (spike: SpikeRecord) => void;
}

export interface SpikeRecord {
  start: number;
  end: number;
  delayMs: number;
}

interface Conn {
  client: Socket;
  /** The other end of the pumps: the server (TCP mode) or the proxy's own TLS terminator (HTTP mode). */
  upstream: Duplex;
  clientAddress: string;
}

/** The `reason` of a Kubernetes Status for the codes a status rule may answer with. */
const STATUS_REASONS: Record<number, string> = {
  409: 'Conflict',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

/** Monotonic-ish wall clock in ms, the same base as the rest of the test environment's timestamps. */
const now = (): number => performance.timeOrigin + performance.now();

/** How many clients' first chunks firstChunks keeps. */
const FIRST_CHUNKS = 64;

export class FaultProxy {
  readonly #server: Server;
  readonly #target: FaultTarget;
  readonly #conns = new Set<Conn>();
  readonly #rules = new Set<FaultRule>();
  readonly #spikeStops = new Set<() => void>();
  /** One per pump: releases held bytes when no hold-cut applies to it any more. */
  readonly #kicks = new Set<() => void>();
  readonly #http: { context: SecureContext; agent: HttpsAgent; ca: string | Buffer; server: ReturnType<typeof createHttpServer> } | undefined;
  /** HTTP mode: the connection a TLS socket of the terminator belongs to. */
  readonly #connOf = new WeakMap<object, Conn>();
  #address: { host: string; port: number } = { host: '', port: 0 };
  /** Bytes received from clients so far (forwarded or not). */
  bytesFromClients = 0;
  readonly counters: FaultCounters = { injected: {}, resets: 0 };
  /**
   * The first chunk of the first FIRST_CHUNKS clients (a TLS ClientHello: what the client offers, ALPN
   * included). Bounded: a long run makes tens of thousands of connections.
   */
  readonly firstChunks: Buffer[] = [];
  /** Bytes the pumps hold (delayed or held), not yet written on. */
  #queuedBytes = 0;

  private constructor(target: FaultTarget, opts: FaultProxyOptions) {
    this.#target = target;
    this.#server = createServer((client) => this.#accept(client));
    if (opts.http) {
      const server = createHttpServer({ keepAlive: true }, (req, res) => this.#request(req, res));
      // Watches stay open for minutes; the clients' own timeouts decide when they end.
      server.requestTimeout = 0;
      server.headersTimeout = 0;
      this.#http = {
        context: createSecureContext({ cert: opts.http.cert, key: opts.http.key }),
        agent: new HttpsAgent({ keepAlive: true, ca: opts.http.ca }),
        ca: opts.http.ca,
        server,
      };
    }
  }

  /** Listens on `listen.host` (port 0: any free one) and forwards to `target`. */
  static async start(target: FaultTarget, listen: { host: string; port?: number }, opts: FaultProxyOptions = {}): Promise<FaultProxy> {
    const p = new FaultProxy(target, opts);
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

  /**
   * Bytes the proxy holds in memory now: written but not yet taken by a socket (either way) plus what
   * delays and hold-cuts keep. With backpressure this stays near the sockets' high-water marks per
   * connection, whatever a client or the server does.
   */
  get bufferedBytes(): number {
    let n = this.#queuedBytes;
    for (const c of this.#conns) n += c.client.writableLength + c.upstream.writableLength;
    return n;
  }

  /** Activates a rule until the returned function is called. */
  add(rule: FaultRule): () => void {
    if (rule.kind === 'status' && this.#http === undefined) throw new Error('fault proxy: status rules need HTTP mode');
    this.#rules.add(rule);
    return () => {
      if (this.#rules.delete(rule)) this.#rulesRemoved();
    };
  }

  /** Removes every rule (spike schedules keep running: stop them with their own stop function). */
  clear(): void {
    this.#rules.clear();
    this.#rulesRemoved();
  }

  /** Pumps holding bytes look again: what a removed hold-cut held goes out now. */
  #rulesRemoved(): void {
    for (const kick of this.#kicks) kick();
  }

  /** Resets (TCP RST) every open connection of the matched clients now; returns how many. */
  reset(scope: FaultScope = {}): number {
    let n = 0;
    for (const c of [...this.#conns]) {
      if (scope.clients !== undefined && !scope.clients.includes(c.clientAddress)) continue;
      this.#resetConn(c);
      n++;
    }
    this.counters.resets += n;
    return n;
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
        schedule.onSpike?.(spike);
        timer = setTimeout(begin, gap());
      }, schedule.durationMs);
    };
    timer = setTimeout(begin, gap());
    const stop = () => {
      stopped = true;
      clearTimeout(timer);
      remove?.();
      const last = record.at(-1);
      if (last && Number.isNaN(last.end)) {
        last.end = now();
        schedule.onSpike?.(last);
      }
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
    this.#http?.agent.destroy();
    this.#http?.server.close();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #applies(rule: FaultRule, conn: Conn): boolean {
    return rule.clients === undefined || rule.clients.includes(conn.clientAddress);
  }

  #resetConn(c: Conn): void {
    this.#conns.delete(c);
    if (!c.client.destroyed) c.client.resetAndDestroy();
    c.upstream.destroy();
  }

  /** What happens to a chunk of `conn` going `direction` that arrives now: dropped, held, or forwarded after a delay. */
  #faultFor(conn: Conn, direction: 'toServer' | 'toClient'): { drop: true } | { drop: false; hold: boolean; delayMs: number } {
    let delayMs = 0;
    let hold = false;
    for (const r of this.#rules) {
      if (!this.#applies(r, conn)) continue;
      if (r.kind === 'cut') {
        if (!r.hold) return { drop: true };
        hold = true;
        continue;
      }
      if (r.kind !== 'delay') continue;
      const d = r.direction ?? 'toServer';
      if (d === 'both' || d === direction) delayMs = Math.max(delayMs, r.ms);
    }
    return { drop: false, hold, delayMs };
  }

  #accept(client: Socket): void {
    client.setNoDelay(true);
    const clientAddress = (client.remoteAddress ?? '').replace(/^::ffff:/, '');
    for (const r of this.#rules) {
      if (r.kind === 'refuse' && (r.clients === undefined || r.clients.includes(clientAddress))) {
        this.counters.resets++;
        client.resetAndDestroy();
        return;
      }
    }
    let conn: Conn;
    if (this.#http === undefined) {
      const upstream = connect({ host: this.#target.host, port: this.#target.port });
      upstream.setNoDelay(true);
      conn = { client, upstream, clientAddress };
    } else {
      // The raw client stream goes through the pumps (delays, cuts) into one end of an in-memory pair;
      // the other end carries the client's TLS session with the proxy, served by the HTTP server.
      const [ours, theirs] = duplexPair();
      conn = { client, upstream: ours, clientAddress };
      const tls = new TLSSocket(theirs, { isServer: true, secureContext: this.#http.context });
      this.#connOf.set(tls, conn);
      tls.on('error', () => ours.destroy());
      ours.once('close', () => tls.destroy());
      this.#http.server.emit('connection', tls);
    }
    const upstream = conn.upstream;
    this.#conns.add(conn);
    const end = () => {
      this.#conns.delete(conn);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.once('data', (d: Buffer) => {
      if (this.firstChunks.length < FIRST_CHUNKS) this.firstChunks.push(Buffer.from(d));
    });
    client.on('data', (d: Buffer) => (this.bytesFromClients += d.length));
    this.#pump(conn, client, upstream, 'toServer');
    this.#pump(conn, upstream, client, 'toClient');
  }

  /** The status rule that answers this request, if any (each matching rule draws its own share). */
  #statusFor(conn: Conn, method: string): StatusFault | undefined {
    const write = method !== 'GET' && method !== 'HEAD';
    for (const r of this.#rules) {
      if (r.kind !== 'status' || !this.#applies(r, conn)) continue;
      const verbs = r.verbs ?? 'any';
      if ((verbs === 'read' && write) || (verbs === 'write' && !write)) continue;
      if ((r.random ?? Math.random)() < r.share) return r;
    }
    return undefined;
  }

  /** HTTP mode: one client request, forwarded to the server or answered by a status rule. */
  #request(req: IncomingMessage, res: ServerResponse): void {
    const http = this.#http!;
    const conn = this.#connOf.get(req.socket);
    const method = req.method ?? 'GET';
    const fault = conn === undefined ? undefined : this.#statusFor(conn, method);
    if (fault !== undefined && !fault.committed) {
      req.resume();
      this.#answer(res, fault.code);
      return;
    }
    const up = httpsRequest({
      host: this.#target.host,
      port: this.#target.port,
      method,
      path: req.url,
      headers: req.headers,
      agent: http.agent,
      ca: http.ca,
    }, (upRes) => {
      if (fault !== undefined) {
        upRes.resume();
        this.#answer(res, fault.code);
        return;
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.rawHeaders);
      // Now, not with the first chunk: a watch answers its headers at once and then may stay quiet.
      res.flushHeaders();
      upRes.pipe(res);
      // The server ended the stream abruptly (a restart under a watch): so does the client's.
      upRes.on('aborted', serverGone);
      upRes.on('error', serverGone);
    });
    // The server is unreachable or went away: the client's connection is reset, as it would be without us
    // (ending only the TLS side would leave the client's TCP connection open and its request hanging).
    const serverGone = () => {
      if (conn !== undefined) this.#resetConn(conn);
      else req.socket.destroy();
    };
    up.on('error', serverGone);
    // The client gave up (or its connection was reset): so does the request to the server.
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  }

  #answer(res: ServerResponse, code: number): void {
    this.counters.injected[code] = (this.counters.injected[code] ?? 0) + 1;
    const body = JSON.stringify({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: `injected by the fault proxy (${code})`,
      reason: STATUS_REASONS[code] ?? 'InternalError',
      code,
    });
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(code === 429 ? { 'retry-after': '1' } : {}) });
    res.end(body);
  }

  /**
   * Forwards `from` → `to`, each chunk at max(arrival + its delay, the previous chunk's release), so a
   * spike delays what arrives during it and what queues behind it, and order is kept. Held chunks (a
   * hold-cut) wait, and everything behind them, until no hold-cut applies any more.
   */
  #pump(conn: Conn, from: Duplex, to: Duplex, direction: 'toServer' | 'toClient'): void {
    const queue: Array<{ at: number; data: Buffer; held: boolean }> = [];
    let timer: NodeJS.Timeout | undefined;
    let lastRelease = 0;
    let waitingForDrain = false;
    /** Writes on; when `to` is full, stops reading `from` until `to` drains (TCP's flow control, end to end). */
    const write = (data: Buffer) => {
      if (to.destroyed || to.write(data) || waitingForDrain) return;
      waitingForDrain = true;
      from.pause();
      to.once('drain', () => {
        waitingForDrain = false;
        if (!from.destroyed) from.resume();
      });
    };
    const flush = () => {
      clearTimeout(timer);
      timer = undefined;
      const t = now();
      while (queue.length > 0 && !queue[0]!.held && queue[0]!.at <= t) {
        const chunk = queue.shift()!;
        this.#queuedBytes -= chunk.data.length;
        write(chunk.data);
      }
      if (queue.length > 0 && !queue[0]!.held) timer = setTimeout(flush, Math.max(0, queue[0]!.at - now()));
    };
    const kick = () => {
      if (!queue.some((c) => c.held)) return;
      const f = this.#faultFor(conn, direction);
      if (!f.drop && f.hold) return;
      const t = now();
      for (const c of queue) {
        if (!c.held) continue;
        c.held = false;
        c.at = t;
      }
      lastRelease = Math.max(lastRelease, t);
      flush();
    };
    this.#kicks.add(kick);
    from.on('data', (data: Buffer) => {
      const f = this.#faultFor(conn, direction);
      if (f.drop) return;
      if (f.hold) {
        queue.push({ at: Infinity, data, held: true });
        this.#queuedBytes += data.length;
        return;
      }
      const at = Math.max(now() + f.delayMs, lastRelease);
      lastRelease = at;
      if (f.delayMs === 0 && queue.length === 0) {
        write(data);
        return;
      }
      queue.push({ at, data, held: false });
      this.#queuedBytes += data.length;
      if (timer === undefined && !queue[0]!.held) timer = setTimeout(flush, Math.max(0, queue[0]!.at - now()));
    });
    from.on('close', () => {
      clearTimeout(timer);
      this.#kicks.delete(kick);
      for (const c of queue.splice(0)) this.#queuedBytes -= c.data.length;
    });
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
