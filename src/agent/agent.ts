// The node agent (design §5, §6): heartbeat, VIPs on the interface with a kernel lifetime, announcements,
// fencing, instance status and finalizers.
//
// Safety rule, everywhere below: a VIP is added or refreshed only while the heartbeat is healthy (the
// last accepted renewal was sent less than fenceAfter ago). When it is not, every VIP is deleted at once
// (fencing); if the process cannot even do that (killed, frozen), the kernel deletes the address when its
// lifetime runs out. After fencing, VIPs come back only from a fresh list of the instances, never from a
// cache that may predate the controller's failover.

import { INSTANCE_FINALIZER, NODE_NAME_LABEL } from '../api/names.ts';
import type { EgressGatewayInstance } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { isStatus } from '../kube/client.ts';
import { Informer } from '../kube/informer.ts';
import { errFields, type Logger } from '../kube/log.ts';
import { INSTANCES } from '../kube/resources.ts';
import { rfc3339 } from '../kube/time.ts';
import type { AddressManager, Link } from './net/iproute.ts';
import { EXCLUDED_INTERFACE_RE, vipCidr } from './net/iproute.ts';
import { Heartbeat, type Uplinks } from './heartbeat.ts';
import type { AgentMetrics } from './metrics.ts';
import type { AgentOptions } from './options.ts';
import { chooseInterface, desiredVips, hasOurFinalizer, instanceStatus, isForNode, isTerminating, type DesiredVip } from './vips.ts';
import { readiness, type ReadinessCheck } from './health.ts';

/** What the agent needs from the announcer (GARP/NA bursts, periodic re-announce, ARP/NDP replies). */
export interface VipAnnouncer {
  /** Start announcing `ip` on `ifname` (burst now, then periodically) and answering for it. */
  advertise(ip: string, ifname: string): Promise<void> | void;
  /** Stop announcing and answering for `ip`. Idempotent. */
  withdraw(ip: string): Promise<void> | void;
  /** Can a raw frame be sent right now? (for /readyz) */
  selfCheck(): { ok: boolean; reason?: string };
  close(): Promise<void> | void;
}

interface Held {
  ip: string;
  ifname: string;
  cidr: string;
  interfaces: string[];
}

export interface AgentDeps {
  client: KubeClient;
  addresses: AddressManager;
  announcer: VipAnnouncer;
  metrics: AgentMetrics;
  log: Logger;
  /** Monotonic clock, ms. */
  monotonic?: () => number;
}

/** How often the whole state is reconciled even without events (interfaces may appear or go down). */
const RESYNC_MS = 5000;

export class Agent {
  readonly #o: AgentOptions;
  readonly #d: AgentDeps;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #heartbeat: Heartbeat | undefined;
  #informer: Informer<EgressGatewayInstance> | undefined;
  /** VIPs on an interface right now, by canonical IP. */
  readonly #held = new Map<string, Held>();
  /** Per-VIP error of the last attempt, reported on its instances. */
  readonly #errors = new Map<string, string>();
  /**
   * Instances whose finalizer this agent removed: never touched again (their deletion completes). Keyed by
   * uid, not name: instance names are per (gateway, node), so the same name comes back for the next
   * assignment to this node, and a re-list (after fencing) never reports the old one's deletion.
   */
  readonly #released = new Set<string>();
  #fenced = false;
  #neverHealthy = true;
  /** After a fence, reconciling waits for a fresh list (new informer synced). */
  #awaitingFreshList = false;
  #dirty = false;
  #running: Promise<void> | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;
  #resyncTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #refreshing = false;
  #stopped = false;
  #lastLinks: Link[] = [];
  /**
   * Address changes run one at a time: otherwise a refresh that read the held set before a withdrawal
   * (fence, handover) could re-add the address right after it was deleted, for another lifetime.
   */
  #addrQueue: Promise<unknown> = Promise.resolve();

  constructor(o: AgentOptions, d: AgentDeps) {
    this.#o = o;
    this.#d = d;
    this.#log = d.log;
    this.#now = d.monotonic ?? (() => performance.now());
    if (o.heartbeat) {
      this.#heartbeat = new Heartbeat({
        client: d.client,
        namespace: o.heartbeatNamespace,
        node: o.nodeName,
        renewIntervalMs: o.renewIntervalMs,
        leaseDurationMs: o.leaseDurationMs,
        requestTimeoutMs: o.fenceAfterMs,
        uplinks: () => this.#uplinks(),
        log: d.log.child({ part: 'heartbeat' }),
        monotonic: this.#now,
        onAttempt: (seconds, ok) => {
          if (ok) d.metrics.renewLatency.observe(seconds);
          else d.metrics.renewFailures.inc();
        },
      });
      this.#heartbeat.on('renewed', () => this.#onRenewed());
    }
  }

  start(): void {
    this.#heartbeat?.start();
    this.#startInformer();
    this.#refreshTimer = setInterval(() => void this.#refreshTick(), this.#o.refreshIntervalMs);
    this.#resyncTimer = setInterval(() => this.#schedule(), RESYNC_MS);
  }

  /** Healthy = allowed to hold VIPs. */
  healthy(): boolean {
    if (!this.#heartbeat) return true;
    return !this.#fenced && this.#heartbeat.sinceLastRenewal(this.#now()) < this.#o.fenceAfterMs;
  }

  get fenced(): boolean {
    return this.#fenced;
  }

  heldVips(): Array<{ ip: string; ifname: string }> {
    return [...this.#held.values()].map((h) => ({ ip: h.ip, ifname: h.ifname }));
  }

  readiness(): ReadinessCheck {
    return readiness({
      heartbeatEnabled: this.#heartbeat !== undefined,
      sinceLastRenewalMs: this.#heartbeat?.sinceLastRenewal(this.#now()) ?? 0,
      fenceAfterMs: this.#o.fenceAfterMs,
      frames: this.#d.announcer.selfCheck(),
    });
  }

  /** Graceful shutdown: withdraw every VIP, then delete the Lease so the controller fails over at once. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#refreshTimer);
    clearInterval(this.#resyncTimer);
    clearTimeout(this.#retryTimer);
    this.#informer?.stop();
    this.#heartbeat?.stop();
    await this.#running?.catch(() => undefined);
    await this.#withdrawAll('shutdown');
    await Promise.resolve(this.#d.announcer.close()).catch((err: unknown) => this.#log.warn(errFields(err), 'closing announcer failed'));
    if (this.#heartbeat) {
      try {
        await this.#heartbeat.release();
        this.#log.info('heartbeat lease deleted');
      } catch (err) {
        this.#log.warn(errFields(err), 'deleting the heartbeat lease failed; the controller will see it expire');
      }
    }
  }

  // ---------------------------------------------------------------------------------------- watching

  #startInformer(): void {
    this.#informer?.stop();
    // Server-side label selector: the agent never even receives other nodes' instances (R27).
    const informer = new Informer<EgressGatewayInstance>(this.#d.client, {
      resource: INSTANCES,
      labelSelector: `${NODE_NAME_LABEL}=${this.#o.nodeName}`,
      logger: this.#log,
      minBackoffMs: 250,
      maxBackoffMs: 5000,
    });
    informer.onEvent((type, obj) => {
      if (type === 'delete') this.#released.delete(releaseKey(obj));
      this.#schedule();
    });
    this.#informer = informer;
    informer.start();
    informer.waitForSync().then(() => {
      if (this.#informer !== informer) return;
      if (this.#awaitingFreshList) this.#log.info('instances re-listed after fencing');
      this.#awaitingFreshList = false;
      this.#schedule();
    }, () => undefined);
  }

  #onRenewed(): void {
    if (this.#stopped || !this.#heartbeat) return;
    this.#d.metrics.heartbeatHealthy.set(this.healthy() ? 1 : 0);
    // A renewal sent before a freeze may complete after it: only a renewal recent enough ends the fence.
    if (this.#fenced && this.#heartbeat.sinceLastRenewal(this.#now()) < this.#o.fenceAfterMs) {
      this.#log.info('heartbeat renewals succeed again; re-listing instances before taking any VIP back');
      this.#fenced = false;
      this.#awaitingFreshList = true;
      // The watch may have missed the controller's failover while we were cut off: start from a new list.
      this.#startInformer();
    } else if (!this.#fenced && this.#neverHealthy) {
      this.#neverHealthy = false;
      this.#schedule(); // first renewal: instances listed before it may now be taken
    }
  }

  // ---------------------------------------------------------------------------------------- reconcile

  #schedule(): void {
    if (this.#stopped) return;
    this.#dirty = true;
    if (this.#running) return;
    this.#running = (async () => {
      while (this.#dirty && !this.#stopped) {
        this.#dirty = false;
        try {
          await this.#reconcile();
        } catch (err) {
          this.#log.error(errFields(err), 'reconcile failed; retrying');
          this.#retryLater();
        }
      }
    })().finally(() => {
      this.#running = undefined;
    });
  }

  #retryLater(ms = 500): void {
    if (this.#retryTimer || this.#stopped) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#schedule();
    }, ms);
  }

  async #reconcile(): Promise<void> {
    const informer = this.#informer;
    if (!informer?.hasSynced() || this.#awaitingFreshList) return;
    const node = this.#o.nodeName;
    const all = informer.list().filter((i) => isForNode(i, node));
    const healthy = this.healthy();
    if (!healthy) {
      // Not allowed to hold anything; the refresh tick does the fencing proper. Nothing is written either:
      // the API is (probably) unreachable, and nothing may be claimed while unhealthy.
      if (this.#held.size > 0) await this.#fence('reconcile found the heartbeat unhealthy');
      return;
    }

    // 1. What must be held, and where.
    const { vips, problems } = desiredVips(all, node);
    for (const p of problems) this.#log.warn(p, 'instance ignored');
    const links = await this.#d.addresses.listLinks();
    this.#lastLinks = links;
    const byName = new Map(links.map((l) => [l.name, l]));
    const placement = new Map<string, { vip: DesiredVip; ifname?: string; error?: string }>();
    for (const vip of vips) {
      const route = vip.interfaces.length > 0 ? undefined : await this.#routeInterface(vip.ip);
      const choice = chooseInterface(vip, new Set(byName.keys()), route);
      if ('error' in choice) {
        placement.set(vip.ip, { vip, error: choice.error });
        continue;
      }
      const link = byName.get(choice.ifname);
      if (!link || !isLinkUp(link)) {
        placement.set(vip.ip, { vip, error: `interface ${choice.ifname} is down` });
        continue;
      }
      placement.set(vip.ip, { vip, ifname: choice.ifname });
    }

    // 2. Withdraw what is no longer wanted, or wanted elsewhere (a changed interface: fixes D6).
    for (const held of [...this.#held.values()]) {
      const want = placement.get(held.ip);
      if (!want?.ifname || want.ifname !== held.ifname) {
        await this.#withdraw(held, want ? `moving to ${want.ifname ?? '(none)'}` : 'no longer assigned');
      }
    }

    // 3. Add what is missing. Re-check health right before each add: an await may have crossed a fence.
    this.#errors.clear();
    for (const { vip, ifname, error } of placement.values()) {
      if (error !== undefined || ifname === undefined) {
        this.#errors.set(vip.ip, error ?? 'no interface');
        continue;
      }
      if (this.#held.has(vip.ip)) continue;
      try {
        if (!(await this.#add(vip, ifname))) return;
      } catch (err) {
        this.#errors.set(vip.ip, (err as Error).message ?? String(err));
        this.#d.metrics.addressErrors.inc({ op: 'add' });
        this.#log.error({ ...errFields(err), vip: vip.ip, ifname }, 'adding the VIP failed');
        this.#retryLater(1000);
      }
    }
    this.#d.metrics.vipsHeld.set(this.#held.size);

    // 4. Deleted instances: the VIP is withdrawn above (it is no longer desired); now release the finalizer.
    for (const inst of all) {
      if (!isTerminating(inst) || !hasOurFinalizer(inst) || this.#released.has(releaseKey(inst))) continue;
      const ip = inst.spec?.sourceIP?.virtualIPAddress?.ip;
      const stillHeld = [...this.#held.values()].some((h) => h.ip === ip);
      if (stillHeld) continue; // another live instance on this node names the same VIP
      await this.#releaseFinalizer(inst);
    }

    // 5. Status of every live instance addressed to us. A VIP on the interface is not enough: without raw
    // frames (no NET_RAW) no gratuitous ARP/NA moves the LAN's caches on a failover, so the instance is not
    // Ready and the controller does not hand the gateway to this node (design §5: only a confirmed instance).
    const nowIso = rfc3339(Date.now());
    const frames = this.#d.announcer.selfCheck();
    const framesError = frames.ok ? undefined : `cannot send gratuitous ARP/NA (raw socket: ${frames.reason ?? 'unknown'}; the agent needs NET_RAW)`;
    for (const { vip } of placement.values()) {
      for (const name of vip.instances) {
        const inst = informer.get(name);
        if (!inst || isTerminating(inst)) continue;
        const held = this.#held.has(vip.ip);
        const error = this.#errors.get(vip.ip) ?? framesError;
        const status = instanceStatus(inst, { ok: held && frames.ok, announced: this.#held.size, error }, nowIso);
        if (status) await this.#writeStatus(inst, status);
      }
    }
  }

  async #routeInterface(ip: string): Promise<string | undefined> {
    try {
      return await this.#d.addresses.routeInterfaceFor(ip);
    } catch (err) {
      this.#log.warn({ ...errFields(err), vip: ip }, 'route lookup failed');
      return undefined;
    }
  }

  #locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#addrQueue.then(fn);
    this.#addrQueue = run.catch(() => undefined);
    return run;
  }

  /** Adds and announces a VIP; returns false (and does nothing) when the heartbeat is not healthy. */
  #add(vip: DesiredVip, ifname: string): Promise<boolean> {
    return this.#locked(async () => {
      if (!this.healthy() || this.#stopped) return false;
      const cidr = vipCidr(vip.ip);
      await this.#d.addresses.replaceAddress(ifname, cidr, this.#lifetimes());
      const held: Held = { ip: vip.ip, ifname, cidr, interfaces: vip.interfaces };
      this.#held.set(vip.ip, held);
      this.#d.metrics.vipsHeld.set(this.#held.size);
      await this.#d.announcer.advertise(vip.ip, ifname);
      this.#log.info({ vip: vip.ip, ifname, instances: vip.instances }, 'VIP added and announced');
      return true;
    });
  }

  #withdraw(held: Held, why: string): Promise<void> {
    return this.#locked(() => this.#withdrawNow(held, why));
  }

  async #withdrawNow(held: Held, why: string): Promise<void> {
    if (this.#held.get(held.ip) !== held) return;
    this.#held.delete(held.ip);
    this.#d.metrics.vipsHeld.set(this.#held.size);
    await Promise.resolve(this.#d.announcer.withdraw(held.ip)).catch((err: unknown) =>
      this.#log.warn({ ...errFields(err), vip: held.ip }, 'announcer withdraw failed'));
    try {
      await this.#d.addresses.deleteAddress(held.ifname, held.cidr);
    } catch (err) {
      // Not refreshed any more, so the kernel removes it within the lifetime anyway.
      this.#d.metrics.addressErrors.inc({ op: 'delete' });
      this.#log.error({ ...errFields(err), vip: held.ip, ifname: held.ifname }, 'deleting the VIP failed; it expires with its lifetime');
    }
    this.#log.info({ vip: held.ip, ifname: held.ifname, why }, 'VIP withdrawn');
  }

  async #withdrawAll(why: string): Promise<void> {
    await Promise.all([...this.#held.values()].map((h) => this.#withdraw(h, why)));
  }

  #lifetimes(): { validLft: number; preferredLft: number } {
    const s = Math.round(this.#o.addressLifetimeMs / 1000);
    return { validLft: s, preferredLft: s };
  }

  async #releaseFinalizer(inst: EgressGatewayInstance): Promise<void> {
    const idx = inst.metadata.finalizers?.indexOf(INSTANCE_FINALIZER) ?? -1;
    if (idx < 0) return;
    try {
      // JSON patch with a test: removes exactly our finalizer, fails (and is retried) if the list moved.
      await this.#d.client.jsonPatch(INSTANCES, inst.metadata.name, [
        { op: 'test', path: `/metadata/finalizers/${idx}`, value: INSTANCE_FINALIZER },
        { op: 'remove', path: `/metadata/finalizers/${idx}` },
      ]);
      this.#released.add(releaseKey(inst));
      this.#log.info({ instance: inst.metadata.name }, 'finalizer removed');
    } catch (err) {
      if (isStatus(err, 404)) {
        this.#released.add(releaseKey(inst));
        return;
      }
      this.#log.warn({ ...errFields(err), instance: inst.metadata.name }, 'removing the finalizer failed; retrying');
      this.#retryLater();
    }
  }

  async #writeStatus(inst: EgressGatewayInstance, status: NonNullable<EgressGatewayInstance['status']>): Promise<void> {
    try {
      await this.#d.client.mergePatch(INSTANCES, inst.metadata.name, { status }, 'status');
      const ready = status.conditions?.find((c) => c.type === 'Ready');
      this.#log.info({ instance: inst.metadata.name, status: ready?.status, reason: ready?.reason, message: ready?.message }, 'instance status written');
    } catch (err) {
      if (isStatus(err, 404)) return;
      this.#log.warn({ ...errFields(err), instance: inst.metadata.name }, 'writing instance status failed; retrying');
      this.#retryLater();
    }
  }

  // ---------------------------------------------------------------------------------------- refresh/fence

  async #refreshTick(): Promise<void> {
    if (this.#stopped || this.#refreshing) return;
    if (!this.healthy()) {
      this.#d.metrics.heartbeatHealthy.set(0);
      const since = this.#heartbeat?.sinceLastRenewal(this.#now()) ?? 0;
      // Before the first renewal there is nothing to fence (nothing was ever added).
      if (!this.#fenced && Number.isFinite(since)) await this.#fence(`no heartbeat renewal accepted for ${Math.round(since)}ms`);
      else if (this.#held.size > 0) await this.#fence('heartbeat unhealthy');
      return;
    }
    this.#d.metrics.heartbeatHealthy.set(1);
    if (this.#held.size === 0) return;
    this.#refreshing = true;
    try {
      const lifetimes = this.#lifetimes();
      await this.#locked(() => Promise.all([...this.#held.values()].map(async (h) => {
        if (!this.healthy()) return; // crossed the fence while queued
        try {
          await this.#d.addresses.replaceAddress(h.ifname, h.cidr, lifetimes);
        } catch (err) {
          this.#d.metrics.addressErrors.inc({ op: 'refresh' });
          this.#log.error({ ...errFields(err), vip: h.ip, ifname: h.ifname }, 'refreshing the VIP failed');
          this.#schedule();
        }
      })));
    } finally {
      this.#refreshing = false;
    }
  }

  async #fence(why: string): Promise<void> {
    const vips = [...this.#held.keys()];
    const wasFenced = this.#fenced;
    this.#fenced = true;
    if (!wasFenced) {
      this.#d.metrics.fenceEvents.inc();
      this.#log.warn({ why, vips }, 'fencing: heartbeat not renewed in time, dropping every VIP');
    }
    await this.#withdrawAll('fenced');
    this.#d.metrics.vipsHeld.set(this.#held.size);
  }

  // ---------------------------------------------------------------------------------------- uplinks

  /** Published with the heartbeat: eligible-type interfaces (admin-down ones too, as up=false). */
  async #uplinks(): Promise<Uplinks> {
    const links = await this.#d.addresses.listLinks();
    this.#lastLinks = links;
    const out: Uplinks = {};
    const vips = new Set(this.#held.keys());
    let heldDown = false;
    for (const link of links) {
      if (EXCLUDED_INTERFACE_RE.test(link.name) || link.master !== undefined) continue;
      if (!link.flags.includes('BROADCAST') || link.flags.includes('NOARP')) continue;
      const up = isLinkUp(link);
      let addrs: Awaited<ReturnType<AddressManager['addresses']>> = [];
      try {
        addrs = await this.#d.addresses.addresses(link.name);
      } catch {
        continue; // vanished between the two commands
      }
      out[link.name] = {
        up,
        ipv4: addrs.filter((a) => a.family === 4 && !vips.has(a.ip)).map((a) => a.ip),
        ipv6: addrs.filter((a) => a.family === 6 && a.scope === 'global' && !vips.has(a.ip)).map((a) => a.ip),
      };
      if (!up && [...this.#held.values()].some((h) => h.ifname === link.name)) heldDown = true;
    }
    // A held VIP on an interface that went down: withdraw it now rather than at the next resync.
    if (heldDown) this.#schedule();
    return out;
  }

  get lastLinks(): readonly Link[] {
    return this.#lastLinks;
  }
}

/** One instance object (not its name: see #released). */
function releaseKey(inst: EgressGatewayInstance): string {
  return inst.metadata.uid ?? `${inst.metadata.name}@${inst.metadata.creationTimestamp ?? ''}`;
}

/** Administratively up and with carrier (UNKNOWN is what loopback-like and some virtual links report). */
export function isLinkUp(link: Link): boolean {
  return link.flags.includes('UP') && (link.operstate === 'UP' || link.operstate === 'UNKNOWN') && !link.flags.includes('NO-CARRIER');
}
