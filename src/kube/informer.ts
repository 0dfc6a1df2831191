// A list-watch cache of one resource, over client-node's ListWatch (what `makeInformer` builds; we
// construct it directly because `makeInformer` cannot pass a field selector).
//
// What ListWatch leaves to us, done here:
//  - it stops for good on a list or watch error (API server restarting, connection refused): we
//    restart it with exponential backoff; a 410 Gone (our resourceVersion was compacted away) makes it
//    relist, which is the recovery client-go does;
//  - it has no "synced" notion: `hasSynced()` turns true once a list has filled the cache;
//  - its list function must return plain JSON like the watch does (see client.ts), so the cache holds
//    one shape;
//  - after a watch the server ended cleanly it waits before re-watching, 1 s and doubling up to 30 s
//    while no event arrives in between: a quiet watch of the agent's own instances could learn of a
//    failover that much late. We re-watch at once after a watch that lasted a second, as client-go's
//    reflector does, and never wait more than a second (see rewatchDelayMs). We also ask for watch
//    bookmarks, as client-go does: they keep our resourceVersion fresh (fewer 410 relists) and, being
//    events, reset the delay; but the server sends none for a resource type nothing wrote to (a
//    bookmark must be newer than the watch's resourceVersion), none before a deadline under 2 s away,
//    and none before a close at shutdown, so they alone cannot keep the delay at 0.

import { setTimeout as sleep } from 'node:timers/promises';
import { ListWatch, Watch } from '@kubernetes/client-node';
import type { KubeClient, ResourceRef } from './client.ts';
import { isStatus, resourcePath } from './client.ts';
import { errFields, silentLogger, type Logger } from './log.ts';

export type InformerEvent = 'add' | 'update' | 'delete';

export interface InformerOptions<T = unknown> {
  resource: ResourceRef;
  labelSelector?: string;
  fieldSelector?: string;
  logger?: Logger;
  /** First restart delay after an error; doubles up to `maxBackoffMs`. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /**
   * The resource may not exist (a CRD of an optional dependency, e.g. Cilium's): a 404 on list
   * counts as synced and empty, and the informer keeps retrying at `maxBackoffMs` until it appears.
   */
  optional?: boolean;
  /**
   * Applied to every object before it is cached (list items and watch events), like client-go's
   * SetTransform: keep only the fields the consumer reads, so the cache holds less. It must return an
   * object with the same metadata name, namespace and resourceVersion, and must not throw.
   */
  transform?: (obj: T) => T;
  /**
   * How long the server keeps each watch open (`timeoutSeconds`); default: the server's own limit
   * (kube-apiserver: 30–60 min with --min-request-timeout=1800). The informer re-watches when it ends.
   */
  watchTimeoutSeconds?: number;
  /** How the informer waits before re-watching after a clean close (default: a timer); tests record it. */
  delay?: (ms: number) => Promise<unknown>;
}

/** A watch that lasted this long and then ended cleanly is re-opened at once (client-go's reflector). */
const SHORT_WATCH_MS = 1000;
/** The longest wait before re-watching after a clean close (client-node's own delay doubles to 30 s). */
const MAX_REWATCH_DELAY_MS = 1000;

/**
 * The wait before re-watching after a watch that lasted `watchMs` ended cleanly with no event since the
 * previous (re)connect, where client-node would wait `askedMs`. Waiting only guards against a server
 * that ends every watch at once (a tight loop); a watch that lasted a second was ended on purpose
 * (its timeout, a server shutting down, a watch cache reinitialising), and any wait then is a window in
 * which a change reaches us late.
 */
export function rewatchDelayMs(askedMs: number, watchMs: number): number {
  return watchMs >= SHORT_WATCH_MS ? 0 : Math.min(askedMs, MAX_REWATCH_DELAY_MS);
}

interface Meta {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

/**
 * client-node's Watch, with each object passed through `transform` (if any) before the cache sees it,
 * and no watch left running once the informer stopped. ListWatch.stop() aborts only a watch already
 * established: one whose list or request was in flight at the stop is opened afterwards and was never
 * closed — an agent that restarts its informer on every fence (agent.ts) piled up a hundred live watches
 * within minutes under load (chaos linux seed 28), each event delivered to every one of them.
 */
class InformerWatch extends Watch {
  private readonly transform: ((obj: unknown) => unknown) | undefined;
  private readonly stopped: () => boolean;
  private readonly timeoutSeconds: number | undefined;
  /** How long the latest watch lasted, from its request to its end (ms). */
  lastWatchMs = 0;

  constructor(
    kc: Watch['config'],
    transform: ((obj: unknown) => unknown) | undefined,
    stopped: () => boolean,
    timeoutSeconds: number | undefined,
  ) {
    super(kc);
    this.transform = transform;
    this.stopped = stopped;
    this.timeoutSeconds = timeoutSeconds;
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    if (this.stopped()) return abortedController();
    const transform = this.transform;
    const started = performance.now();
    const controller = await super.watch(
      path,
      { ...queryParams, allowWatchBookmarks: true, timeoutSeconds: this.timeoutSeconds },
      transform === undefined ? callback : (phase, obj, watchObj) => {
        // ERROR carries a Status and BOOKMARK only a resourceVersion: those pass unchanged.
        const keep = phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED';
        callback(phase, keep && obj !== null && typeof obj === 'object' ? transform(obj) : obj, watchObj);
      },
      (err) => {
        this.lastWatchMs = performance.now() - started;
        done(err);
      },
    );
    // Stopped while the request was on its way: nobody else would ever close it.
    if (this.stopped()) controller.abort();
    return controller;
  }
}

function abortedController(): AbortController {
  const c = new AbortController();
  c.abort();
  return c;
}

export class Informer<T extends Meta> {
  readonly resource: ResourceRef;
  private readonly client: KubeClient;
  private readonly lw: ListWatch<never>;
  private readonly log: Logger;
  private readonly listeners = new Set<(type: InformerEvent, obj: T) => void>();
  private readonly syncWaiters = new Set<() => void>();
  private synced = false;
  private stopped = true;
  private errorsSinceStart = 0;
  private backoffMs: number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly optional: boolean;
  private restartTimer: NodeJS.Timeout | undefined;
  private changes = 0;

  constructor(client: KubeClient, opts: InformerOptions<T>) {
    this.client = client;
    this.resource = opts.resource;
    this.log = (opts.logger ?? silentLogger).child({ informer: describe(opts) });
    this.minBackoffMs = opts.minBackoffMs ?? 500;
    this.maxBackoffMs = opts.maxBackoffMs ?? 30_000;
    this.backoffMs = this.minBackoffMs;
    this.optional = opts.optional ?? false;
    let listed = false;
    const listFn = async () => {
      // The first list is served from the API server's watch cache (resourceVersion=0), as client-go
      // does: its resourceVersion is one the cache has reached, so the watch that follows starts at
      // once. A consistent list (etcd's newest revision) makes the server hold the watch until its
      // cache catches up, which for a quiet resource delays events by seconds. Later relists (after a
      // 410) are consistent, so we never go back in time.
      const list = await client.list<never>(opts.resource, {
        labelSelector: opts.labelSelector,
        fieldSelector: opts.fieldSelector,
        resourceVersion: listed ? undefined : '0',
      });
      listed = true;
      const items = list.items ?? [];
      return { ...list, items: transform ? items.map((o) => transform(o)) : items } as never;
    };
    const transform = opts.transform as ((obj: unknown) => unknown) | undefined;
    const watch = new InformerWatch(client.kubeConfig, transform, () => this.stopped, opts.watchTimeoutSeconds);
    const delay = opts.delay ?? sleep;
    this.lw = new ListWatch<never>(
      resourcePath(opts.resource),
      watch,
      listFn,
      false,
      opts.labelSelector,
      opts.fieldSelector,
      // ListWatch calls this before a re-watch that follows a clean close (or a 410), with its own delay.
      { delayFn: async (ms) => void (await delay(rewatchDelayMs(ms, watch.lastWatchMs))) },
    );
    this.lw.on('add', (o: never) => this.emit('add', o));
    this.lw.on('update', (o: never) => this.emit('update', o));
    this.lw.on('delete', (o: never) => this.emit('delete', o));
    this.lw.on('error', (err?: unknown) => this.onError(err));
  }

  /** Start listing and watching. Returns at once; see `waitForSync`. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    void this.lw.stop();
    for (const w of this.syncWaiters) w();
    this.syncWaiters.clear();
  }

  /** True once a list has filled the cache (stays true across later relists, as client-go's). */
  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves when synced; rejects when `signal` aborts first. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = () => {
        this.syncWaiters.delete(done);
        signal?.removeEventListener('abort', onAbort);
        if (this.synced) resolve();
        else reject(new Error('informer stopped before it synced'));
      };
      const onAbort = () => {
        this.syncWaiters.delete(done);
        reject(signal?.reason ?? new Error('aborted'));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.add(done);
    });
  }

  list(): T[] {
    return this.lw.list() as unknown as T[];
  }

  /**
   * Changes whenever the cache does: every add, update and delete (also those a relist finds) emits an
   * event, and client-node changes its cache only with one. Lets a consumer skip re-reading an
   * unchanged cache.
   */
  get version(): number {
    return this.changes;
  }

  get(name: string, namespace?: string): T | undefined {
    return this.lw.get(name, namespace) as unknown as T | undefined;
  }

  /** Called for every add/update/delete (also those a relist finds). Returns an unsubscribe function. */
  onEvent(cb: (type: InformerEvent, obj: T) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  private emit(type: InformerEvent, obj: T): void {
    // A list answered after stop() still fills ListWatch's cache; nobody listens any more.
    if (this.stopped) return;
    this.changes++;
    for (const cb of this.listeners) {
      try {
        cb(type, obj);
      } catch (err) {
        this.log.error({ ...errFields(err), event: type }, 'informer listener failed');
      }
    }
  }

  private async run(): Promise<void> {
    const errorsBefore = this.errorsSinceStart;
    try {
      // Resolves after the list (when one is needed) has filled the cache and the watch is open.
      await this.lw.start();
    } catch (err) {
      this.onError(err);
      return;
    }
    if (this.stopped || this.errorsSinceStart !== errorsBefore) return;
    this.backoffMs = this.minBackoffMs;
    this.markSynced();
  }

  private markSynced(): void {
    if (this.synced) return;
    this.synced = true;
    this.log.debug({ objects: this.lw.list().length }, 'informer synced');
    for (const w of [...this.syncWaiters]) w();
  }

  private onError(err: unknown): void {
    this.errorsSinceStart++;
    if (this.stopped || this.restartTimer) return;
    let delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
    if (this.optional && isStatus(err, 404)) {
      delay = this.maxBackoffMs;
      if (!this.synced) {
        this.log.info('resource not served (CRD missing?); treating as empty until it appears');
        this.markSynced();
      }
    } else if (isStatus(err, 429)) {
      // The server asks us to come back (e.g. its cache for a just-created CRD is initialising).
      this.log.info({ retryInMs: delay }, 'server busy (429); retrying list/watch');
    } else {
      this.log.warn({ ...errFields(err), retryInMs: delay }, 'list/watch failed; restarting');
    }
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (!this.stopped) void this.run();
    }, delay);
  }
}

function describe(opts: Omit<InformerOptions, 'transform'>): string {
  const r = opts.resource;
  let s = `${r.plural}${r.group ? '.' + r.group : ''}`;
  if (r.namespace) s = `${r.namespace}/${s}`;
  if (opts.labelSelector) s += `{${opts.labelSelector}}`;
  if (opts.fieldSelector) s += `[${opts.fieldSelector}]`;
  return s;
}
