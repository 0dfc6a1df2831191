// The node agent (design §5, §6, §10): heartbeat, VIPs on the interface, the kernel switch that gates
// every answer for them, announcements, fencing, instance status and finalizers.
//
// Safety rules, everywhere below (the timing argument is in src/api/fencing.ts):
//  - The kernel switch (fence.ts) of every VIP this node holds is open until the fence deadline
//    (deadline.ts): the send time of the last accepted renewal + fenceAfter, moved only by renewals
//    answered before it passed. Killed or frozen, nobody moves it, and the kernel stops answering for
//    the VIPs by itself at the deadline; cut off from the API, no answer moves it either.
//  - A VIP is added only while the switch is open, and the agent's own frames for it (gratuitous ARP,
//    replies) go out only while it is open, checked right before each send.
//  - Once the deadline passed, every VIP is withdrawn (fencing). A renewal answered after that starts a
//    new chain, and VIPs come back only from a list of the instances made a lease-duration later: by
//    then the controller has either seen this node alive or failed it over (and deleted its instances).
//    The same holds at start-up: a restarted agent takes nothing from before its first renewal.
//  - The address lifetime (whole seconds, refreshed while the switch is open) is the second line of
//    defence, for a kernel whose nftables gate is gone.
//  - While the controller hands a VIP over from this node to another (the instance's handover-to mark),
//    the VIP is kept if held now (make before break) but never taken: not after a fence, not after a
//    restart. The instance then says Ready=False, reason HandingOver.

import { INSTANCE_FINALIZER, NODE_NAME_LABEL } from '../api/names.ts';
import type { EgressGatewayInstance } from '../api/types.ts';
import { KubeClient, isObjectGone } from '../kube/client.ts';
import { Informer } from '../kube/informer.ts';
import { errFields, type Logger } from '../kube/log.ts';
import { INSTANCES } from '../kube/resources.ts';
import { rfc3339 } from '../kube/time.ts';
import type { AddressManager } from './net/iproute.ts';
import { vipCidr } from './net/iproute.ts';
import { Heartbeat } from './heartbeat.ts';
import { FenceDeadline } from './deadline.ts';
import { UplinkWatcher, isLinkUp } from './uplinks.ts';
import type { AgentMetrics } from './metrics.ts';
import type { AgentOptions } from './options.ts';
import { chooseInterface, desiredVips, hasOurFinalizer, instanceStatus, isForNode, isTerminating, nextHopConflict, type DesiredVip } from './vips.ts';
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

/** What the agent needs from the kernel switch (fence.ts). */
export interface FenceGate {
  /** Opens `ips` until `deadline` (monotonic ms); false, opening nothing, when it has passed. */
  openUntil(ips: readonly string[], deadline: number): boolean;
  close(ips: readonly string[]): void;
  /** Stops gating `ips` (their addresses are gone). */
  forget(ips: readonly string[]): void;
  /** Removes the gate if nothing is gated any more (graceful shutdown). */
  release(): void;
}

export interface AgentDeps {
  client: KubeClient;
  addresses: AddressManager;
  announcer: VipAnnouncer;
  /** The kernel switch; absent only with the heartbeat off (reference mode: nothing is gated). */
  fence?: FenceGate;
  metrics: AgentMetrics;
  log: Logger;
  /** Monotonic clock, ms. */
  monotonic?: () => number;
  /**
   * Runs right before a VIP is taken (its switch opened, its address added): the Linux data plane seeds
   * the previous owner's SNAT remaps here, so that no packet for the VIP arrives before them. Must not
   * throw; the VIP is taken afterwards whatever it did.
   */
  beforeTake?: (ip: string) => Promise<void>;
}

/** How often the whole state is reconciled even without events (interfaces may appear or go down). */
const RESYNC_MS = 5000;

export class Agent {
  readonly #o: AgentOptions;
  readonly #d: AgentDeps;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #heartbeat: Heartbeat | undefined;
  readonly #deadline: FenceDeadline;
  readonly #uplinks: UplinkWatcher;
  #informer: Informer<EgressGatewayInstance> | undefined;
  /** VIPs on an interface right now, by canonical IP. */
  readonly #held = new Map<string, Held>();
  /** VIPs whose kernel switch the agent keeps open: the held ones and the one being added. */
  readonly #gated = new Set<string>();
  /** Per-VIP error of the last attempt, reported on its instances. */
  readonly #errors = new Map<string, string>();
  /**
   * VIPs whose instances say they are being handed over to another node (HANDOVER_TO_ANNOTATION), by IP
   * → that node and whether this node kept the VIP: the last decision logged, so each is logged once.
   */
  readonly #handingOver = new Map<string, string>();
  /**
   * Instances whose finalizer this agent removed: never touched again (their deletion completes). Keyed by
   * uid, not name: instance names are per (gateway, node), so the same name comes back for the next
   * assignment to this node, and a re-list (after fencing) never reports the old one's deletion.
   */
  readonly #released = new Set<string>();
  #fenced = false;
  /** No VIP is taken before this (monotonic ms): a lease-duration after a chain of renewals (re)started. */
  #holdUntil = Infinity;
  #holdTimer: NodeJS.Timeout | undefined;
  #deadlineTimer: NodeJS.Timeout | undefined;
  /** After a fence, reconciling waits for a fresh list (new informer synced). */
  #awaitingFreshList = false;
  #dirty = false;
  #running: Promise<void> | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;
  #resyncTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #refreshing = false;
  #stopped = false;
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
    this.#deadline = new FenceDeadline(o.fenceAfterMs);
    // Held VIPs are not uplink addresses, and their lifetime refreshes are not link changes.
    this.#uplinks = new UplinkWatcher({ addresses: d.addresses, vips: () => new Set([...this.#held.keys(), ...this.#gated]), log: d.log.child({ part: 'uplinks' }) });
    this.#uplinks.on('changed', () => {
      this.#heartbeat?.renewNow();
      this.#schedule(); // a held VIP's interface may have gone down
    });
    if (o.heartbeat) {
      if (d.fence === undefined) throw new Error('the agent needs the kernel fence when the heartbeat is on');
      this.#heartbeat = new Heartbeat({
        client: d.client,
        // One connection per renewal that can be in flight (see HeartbeatOptions.renewalClients).
        renewalClients: Array.from({ length: Math.ceil(o.fenceAfterMs / o.renewIntervalMs) + 1 }, () => new KubeClient(d.client.kubeConfig)),
        namespace: o.heartbeatNamespace,
        node: o.nodeName,
        renewIntervalMs: o.renewIntervalMs,
        leaseDurationMs: o.leaseDurationMs,
        fenceAfterMs: o.fenceAfterMs,
        requestTimeoutMs: o.fenceAfterMs,
        uplinks: () => this.#uplinks.current(),
        log: d.log.child({ part: 'heartbeat' }),
        monotonic: this.#now,
        onAttempt: (seconds, ok) => {
          if (ok) d.metrics.renewLatency.observe(seconds);
          else d.metrics.renewFailures.inc();
        },
      });
      this.#heartbeat.on('renewed', (sentAt) => this.#onRenewed(sentAt));
    } else {
      this.#holdUntil = -Infinity;
    }
  }

  async start(): Promise<void> {
    // The first renewal publishes the uplinks: read them before it.
    await this.#uplinks.start();
    this.#heartbeat?.start();
    this.#startInformer();
    this.#refreshTimer = setInterval(() => void this.#refreshTick(), this.#o.refreshIntervalMs);
    this.#resyncTimer = setInterval(() => this.#schedule(), RESYNC_MS);
  }

  /** Healthy = allowed to hold VIPs: the kernel switch is open. */
  healthy(): boolean {
    if (!this.#heartbeat) return true;
    return !this.#fenced && this.#deadline.open(this.#now());
  }

  /** Allowed to take a VIP: healthy, and past the hold after the chain of renewals (re)started. */
  #mayTake(): boolean {
    return this.healthy() && this.#now() >= this.#holdUntil && !this.#awaitingFreshList;
  }

  /** May a frame for `ip` go out from this process right now? (the announcer asks before each send) */
  mayAnswer(ip: string): boolean {
    return this.#held.has(ip) && this.healthy();
  }

  get fenced(): boolean {
    return this.#fenced;
  }

  heldVips(): Array<{ ip: string; ifname: string }> {
    return [...this.#held.values()].map((h) => ({ ip: h.ip, ifname: h.ifname }));
  }

  readiness(): ReadinessCheck {
    const now = this.#now();
    const holding = now < this.#holdUntil
      ? (Number.isFinite(this.#holdUntil) ? `taking no VIPs for ${Math.round(this.#holdUntil - now)}ms more (hold after the renewals (re)started)` : 'no renewal accepted yet')
      : this.#awaitingFreshList ? 'taking no VIPs until the instances are listed afresh' : undefined;
    return readiness({
      heartbeatEnabled: this.#heartbeat !== undefined,
      sinceLastRenewalMs: this.#heartbeat?.sinceLastRenewal(now) ?? 0,
      fenceAfterMs: this.#o.fenceAfterMs,
      frames: this.#d.announcer.selfCheck(),
      ...(holding !== undefined ? { holding } : {}),
    });
  }

  /** Graceful shutdown: withdraw every VIP, then delete the Lease so the controller fails over at once. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#refreshTimer);
    clearInterval(this.#resyncTimer);
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#holdTimer);
    clearTimeout(this.#deadlineTimer);
    this.#informer?.stop();
    this.#heartbeat?.stop();
    this.#uplinks.stop();
    await this.#running?.catch(() => undefined);
    await this.#withdrawAll('shutdown');
    try {
      this.#d.fence?.release();
    } catch (err) {
      this.#log.warn(errFields(err), 'removing the kernel fence tables failed');
    }
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
      if (this.#informer === informer) this.#dropUnwanted();
      this.#schedule();
    });
    this.#informer = informer;
    informer.start();
    informer.waitForSync().then(() => {
      if (this.#informer !== informer) return;
      if (this.#awaitingFreshList) this.#log.info('instances re-listed after fencing; may take VIPs');
      this.#awaitingFreshList = false;
      this.#schedule();
    }, () => undefined);
  }

  #onRenewed(sentAt: number): void {
    if (this.#stopped || !this.#heartbeat) return;
    const now = this.#now();
    const first = this.#deadline.deadline === -Infinity && this.#holdUntil === Infinity;
    const r = this.#deadline.accepted(sentAt, now);
    this.#d.metrics.heartbeatHealthy.set(this.healthy() ? 1 : 0);
    if (r === 'extended') {
      this.#openGates();
      this.#armDeadlineTimer();
      return;
    }
    if (r === 'stale') return; // sent before a freeze, answered after the deadline: it proves nothing
    // 'restarted': a new chain. Whatever was held before went quiet at the old deadline (the kernel
    // closed the switch); let go of it, and take VIPs again only from a list made a lease-duration from
    // now, when the controller has either seen this chain or failed this node over.
    this.#armDeadlineTimer();
    this.#holdUntil = now + this.#o.leaseDurationMs;
    clearTimeout(this.#holdTimer);
    if (first) {
      this.#log.info({ holdMs: this.#o.leaseDurationMs }, 'first heartbeat renewal accepted; taking VIPs after the hold');
      this.#holdTimer = setTimeout(() => {
        this.#endHold();
        this.#log.info('hold over; may take VIPs');
        this.#schedule();
      }, this.#o.leaseDurationMs);
      return;
    }
    this.#log.info({ holdMs: this.#o.leaseDurationMs }, 'heartbeat renewals succeed again; re-listing instances after the hold before taking any VIP back');
    if (this.#held.size > 0 || !this.#fenced) void this.#fence('the fence deadline passed before this renewal was answered');
    this.#fenced = false;
    this.#awaitingFreshList = true;
    this.#holdTimer = setTimeout(() => {
      this.#endHold();
      // The watch may have missed the controller's failover while we were cut off: start from a new list.
      this.#startInformer();
    }, this.#o.leaseDurationMs);
  }

  /**
   * The hold's timer fired: the hold is over, even if the timer ran a hair before `#holdUntil` on the
   * monotonic clock (Node's timers may) — otherwise the reconcile it schedules would still see the hold
   * and nothing would take the VIP until the next resync.
   */
  #endHold(): void {
    this.#holdUntil = Math.min(this.#holdUntil, this.#now());
  }

  /** Moves every gated VIP's kernel switch to the current deadline, in one transaction. */
  #openGates(): void {
    if (this.#gated.size === 0 || !this.#d.fence) return;
    try {
      // False only when the deadline has passed meanwhile: the fence tick withdraws them.
      this.#d.fence.openUntil([...this.#gated], this.#deadline.deadline);
    } catch (err) {
      // Nothing more to do: the switch closes at the previous deadline and the agent fences then.
      this.#d.metrics.addressErrors.inc({ op: 'fence' });
      this.#log.error({ ...errFields(err), vips: [...this.#gated] }, 'refreshing the kernel switch failed');
    }
  }

  /**
   * Fences right at the deadline (the refresh tick would do it up to a refresh interval later). A timer
   * that fires a hair early re-arms for the rest; the kernel has closed the switch on time regardless.
   */
  #armDeadlineTimer(): void {
    clearTimeout(this.#deadlineTimer);
    const ms = this.#deadline.deadline - this.#now();
    if (!Number.isFinite(ms) || this.#stopped) return;
    this.#deadlineTimer = setTimeout(() => {
      if (this.#deadline.open(this.#now())) this.#armDeadlineTimer();
      else void this.#refreshTick();
    }, Math.max(0, ms) + 1);
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

  /**
   * The VIPs the current informer's instances ask this node to hold (canonical IPs; a VIP being handed
   * over away from this node counts only while held), or undefined before the informer has synced.
   */
  #wantedNow(): Set<string> | undefined {
    const informer = this.#informer;
    if (!informer?.hasSynced()) return undefined;
    const node = this.#o.nodeName;
    const { vips } = desiredVips(informer.list().filter((i) => isForNode(i, node)), node);
    return new Set(vips.filter((v) => v.handoverTo === undefined || this.#held.has(v.ip)).map((v) => v.ip));
  }

  /**
   * Withdraws at once, on the watch event, every held VIP no live instance asks for any more (its
   * instance deleted): not at the next reconcile pass, which waits for the current one — its status
   * writes and finalizer patches, a second each on a loaded API server — and for its own route lookups.
   * Meanwhile the kernel and the announcer would go on answering for a VIP the controller has handed to
   * another node (the chaos suite's linux seed 28: 2 s after the deletion). Only removals happen here;
   * moves and takes stay with the pass.
   */
  #dropUnwanted(): void {
    if (this.#held.size === 0 || this.#stopped) return;
    const wanted = this.#wantedNow();
    if (wanted === undefined) return;
    for (const held of [...this.#held.values()]) {
      if (!wanted.has(held.ip)) void this.#withdraw(held, 'no longer assigned');
    }
  }

  async #reconcile(): Promise<void> {
    const informer = this.#informer;
    if (!informer?.hasSynced() || this.#awaitingFreshList || this.#now() < this.#holdUntil) return;
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
    // The uplink watcher follows link changes as they happen: no `ip link` on the takeover path.
    const links = this.#uplinks.links.length > 0 ? this.#uplinks.links : await this.#d.addresses.listLinks();
    const byName = new Map(links.map((l) => [l.name, l]));
    const placement = new Map<string, { vip: DesiredVip; ifname?: string; error?: string }>();
    // Only a VIP about to be taken is checked against the routers (one `ip` run, not on every pass).
    const mayBeTaken = (v: DesiredVip): boolean => !this.#held.has(v.ip) && v.handoverTo === undefined;
    const gateways = vips.some(mayBeTaken) ? await this.#routeGateways() : new Set<string>();
    for (const vip of vips) {
      // Being handed over from this node to another one (make before break): a VIP held now is kept
      // until the instance goes, but one not held now (dropped by a fence, or this agent restarted) is
      // not taken back. Announcing it would pull the LAN's ARP caches back to this node, which lets go
      // silently once its instance is deleted: traffic black-holed until the new owner re-announces.
      if (vip.handoverTo !== undefined && !this.#held.has(vip.ip)) {
        placement.set(vip.ip, { vip });
        continue;
      }
      const conflict = this.#held.has(vip.ip) ? undefined : nextHopConflict(vip.ip, gateways);
      if (conflict !== undefined) {
        placement.set(vip.ip, { vip, error: conflict });
        continue;
      }
      const route = vip.interfaces.length > 0 ? undefined : await this.#routeInterface(vip.ip);
      const choice = chooseInterface(vip, new Set(byName.keys()), route);
      if ('error' in choice) {
        placement.set(vip.ip, { vip, error: choice.error });
        continue;
      }
      const link = byName.get(choice.ifname);
      // Reference mode (no heartbeat) keeps a VIP on a link that went down, as the reference does: it
      // has no notion of uplink health (the comparison in the failover bench).
      if (!link || (!isLinkUp(link) && this.#heartbeat)) {
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
      // Not held (never, or withdrawn in step 2 to move interfaces): never taken during the handover.
      if (vip.handoverTo !== undefined && !this.#held.has(vip.ip)) continue;
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
    this.#logHandingOver(vips);

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
        const to = held ? undefined : vip.handoverTo;
        const status = instanceStatus(inst, { ok: held && frames.ok, announced: this.#held.size, ...(to !== undefined ? { handingOverTo: to, node } : { error }) }, nowIso);
        if (status) await this.#writeStatus(inst, status);
      }
    }
  }

  /** Logs what this agent does with each VIP being handed over from it, once per VIP, target and decision. */
  #logHandingOver(vips: readonly DesiredVip[]): void {
    const now = new Map<string, string>();
    for (const vip of vips) {
      if (vip.handoverTo === undefined) continue;
      const kept = this.#held.has(vip.ip);
      const key = `${vip.handoverTo}/${kept ? 'kept' : 'not taken'}`;
      now.set(vip.ip, key);
      if (this.#handingOver.get(vip.ip) === key) continue;
      const msg =
        vip.handoverTo === this.#o.nodeName
          ? 'not taking the VIP yet: the controller holds this node back until the instance of the node tried before is deleted'
          : kept
            ? 'keeping the VIP until its instance goes: it is being handed over to another node'
            : 'not taking the VIP: it is being handed over to another node';
      this.#log.info({ vip: vip.ip, to: vip.handoverTo, instances: vip.instances }, msg);
    }
    this.#handingOver.clear();
    for (const [ip, key] of now) this.#handingOver.set(ip, key);
  }

  async #routeGateways(): Promise<Set<string>> {
    try {
      return await this.#d.addresses.routeGateways();
    } catch (err) {
      this.#log.warn(errFields(err), 'listing the routes failed; VIPs are not checked against the next hops');
      return new Set();
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

  /**
   * Opens the VIP's kernel switch, adds the address and announces it; returns false (and does nothing)
   * when the agent may not take VIPs now.
   */
  #add(vip: DesiredVip, ifname: string): Promise<boolean> {
    return this.#locked(async () => {
      // The pass decided from the cache as it was before its awaits: an instance deleted (or marked for
      // a handover away) since then must not be taken now — #dropUnwanted already let go of it. The
      // event that changed it scheduled another pass.
      const mayTakeNow = () => this.#mayTake() && !this.#stopped && (this.#wantedNow()?.has(vip.ip) ?? false);
      if (!mayTakeNow()) return false;
      if (this.#d.beforeTake) {
        await this.#d.beforeTake(vip.ip).catch((err: unknown) => this.#log.warn({ ...errFields(err), vip: vip.ip }, 'preparing to take the VIP failed; taking it anyway'));
        // It took time: the same checks again (a fence or a deletion may have come meanwhile).
        if (!mayTakeNow()) return false;
      }
      const cidr = vipCidr(vip.ip);
      // The switch first: an address whose VIP is still gated from an earlier ownership stays silent.
      if (this.#d.fence) {
        this.#gated.add(vip.ip);
        let opened = false;
        try {
          opened = this.#d.fence.openUntil([vip.ip], this.#deadline.deadline);
        } finally {
          if (!opened) this.#gated.delete(vip.ip);
        }
        if (!opened) return false;
      }
      try {
        await this.#d.addresses.replaceAddress(ifname, cidr, this.#lifetimes());
      } catch (err) {
        this.#gated.delete(vip.ip);
        this.#closeGate(vip.ip);
        throw err;
      }
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
    this.#gated.delete(held.ip);
    this.#d.metrics.vipsHeld.set(this.#held.size);
    // Silent at once, before the slower steps.
    this.#closeGate(held.ip);
    await Promise.resolve(this.#d.announcer.withdraw(held.ip)).catch((err: unknown) =>
      this.#log.warn({ ...errFields(err), vip: held.ip }, 'announcer withdraw failed'));
    try {
      await this.#d.addresses.deleteAddress(held.ifname, held.cidr);
      // The address is gone: nothing left to gate (unless it is being taken again meanwhile).
      if (this.#d.fence && !this.#gated.has(held.ip)) this.#d.fence.forget([held.ip]);
    } catch (err) {
      // Not refreshed any more, so the kernel removes it within the lifetime anyway; it stays gated.
      this.#d.metrics.addressErrors.inc({ op: 'delete' });
      this.#log.error({ ...errFields(err), vip: held.ip, ifname: held.ifname }, 'deleting the VIP failed; it expires with its lifetime');
    }
    this.#log.info({ vip: held.ip, ifname: held.ifname, why }, 'VIP withdrawn');
  }

  #closeGate(ip: string): void {
    try {
      this.#d.fence?.close([ip]);
    } catch (err) {
      // It still closes at the deadline by itself.
      this.#d.metrics.addressErrors.inc({ op: 'fence' });
      this.#log.error({ ...errFields(err), vip: ip }, 'closing the kernel switch failed');
    }
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
      // Only a 404 that names the instance means it is gone; a 404 for the whole resource (its CRD not
      // served yet after an API server restart) is retried like any failure.
      if (isObjectGone(err, inst.metadata.name)) {
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
      if (isObjectGone(err, inst.metadata.name)) return;
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
      if (!this.#fenced && Number.isFinite(since)) await this.#fence(`fence deadline passed: last accepted renewal sent ${Math.round(since)}ms ago`);
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
}

/** One instance object (not its name: see #released). */
function releaseKey(inst: EgressGatewayInstance): string {
  return inst.metadata.uid ?? `${inst.metadata.name}@${inst.metadata.creationTimestamp ?? ''}`;
}
