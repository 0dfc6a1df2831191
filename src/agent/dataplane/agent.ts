// The agent's Linux data plane (`--dataplane linux`, on every node): watches the gateways' dataplane
// objects (rendered by the controller's core), this node's pods and the namespaces' labels, computes this
// node's share with the pure model, and applies it. Changes are coalesced: one apply at a time, and the
// latest state wins. Nothing is applied before every cache has synced, so an agent restart keeps the
// previous table (and the traffic) until the new one is ready.

import { readFile } from 'node:fs/promises';
import { MODE_PRIMARY_IP, MODE_VIP } from '../../api/names.ts';
import type { EgressGatewayDataplane } from '../../api/types.ts';
import { buildNodeDataplane, type DataplanePod, type InterfaceView, type NodeDataplane, type Problem, type SlotAssignment } from '../../dataplane/model.ts';
import { desiredRoutes, desiredRules, renderNft } from '../../dataplane/render.ts';
import type { KubeClient } from '../../kube/client.ts';
import type { EventRecorder } from '../../kube/events.ts';
import { Informer } from '../../kube/informer.ts';
import { errFields, type Logger } from '../../kube/log.ts';
import { ALL_PODS, DATAPLANES, namespaces as NAMESPACES } from '../../kube/resources.ts';
import type { AddressManager } from '../net/iproute.ts';
import type { DataplaneMetrics } from './metrics.ts';
import { DataplaneUnavailable, type LinuxDataplane } from './linux.ts';
import type { ConntrackTool } from './conntrack.ts';
import { RemapReplicator, type RemapReplicatorOptions } from './remaps.ts';

/** How long a takeover waits for the SNAT remaps to be seeded (128 entries take well under a second). */
const SEED_WAIT_MS = 2000;

export interface DataplaneAgentOptions {
  nodeName: string;
  podCIDRs: readonly string[];
  serviceCIDRs: readonly string[];
  /** How often the kernel state is checked (and re-applied if someone removed it). */
  resyncMs?: number;
  /** Replication of SNAT remaps (with `deps.conntrack`): how often, how long seeded entries live. */
  remaps?: Omit<RemapReplicatorOptions, 'nodeName'>;
}

export interface DataplaneAgentDeps {
  client: KubeClient;
  plane: LinuxDataplane;
  addresses: Pick<AddressManager, 'getLink' | 'addresses'>;
  metrics: DataplaneMetrics;
  events?: EventRecorder;
  log: Logger;
  /** This node's labels (its own Node, watched by the caller); undefined while unknown. */
  nodeLabels?: () => Readonly<Record<string, string>> | undefined;
  /** The node's conntrack table; absent: SNAT remaps are neither published nor seeded. */
  conntrack?: ConntrackTool;
}

interface NamespaceLike {
  metadata: { name: string; labels?: Record<string, string>; resourceVersion?: string };
}

/** Only what selection and addressing read: a node's pods are many, and most of a pod is not this. */
export function trimDataplanePod(p: DataplanePod): DataplanePod {
  const out: DataplanePod = {
    metadata: { name: p.metadata.name, namespace: p.metadata.namespace, labels: p.metadata.labels, resourceVersion: p.metadata.resourceVersion },
    spec: { nodeName: p.spec?.nodeName },
    status: { phase: p.status?.phase, podIP: p.status?.podIP, podIPs: p.status?.podIPs },
  };
  if (p.spec?.hostNetwork === true) out.spec!.hostNetwork = true;
  return out;
}

function trimNamespace(n: NamespaceLike): NamespaceLike {
  return { metadata: { name: n.metadata.name, labels: n.metadata.labels, resourceVersion: n.metadata.resourceVersion } };
}

export class DataplaneAgent {
  readonly #o: DataplaneAgentOptions;
  readonly #d: DataplaneAgentDeps;
  readonly #log: Logger;
  readonly #dataplanes: Informer<EgressGatewayDataplane>;
  readonly #pods: Informer<DataplanePod>;
  readonly #namespaces: Informer<NamespaceLike>;
  readonly #remaps: RemapReplicator | undefined;
  #slots: SlotAssignment | undefined;
  /** What the kernel was last given (script + routes + rules): an identical model is not re-applied. */
  #appliedKey = '';
  #problems = new Set<string>();
  #available: boolean | undefined;
  #unavailableReason = '';
  #lastError = '';
  #dirty = false;
  #verify = false;
  #running: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #retry: NodeJS.Timeout | undefined;
  #stopped = false;
  /** Resolves after the first successful apply (tests, readiness). */
  #programmed = false;
  readonly #waiters = new Set<() => void>();
  /** Every apply, with what it held (tests and the bench read these). */
  readonly applies: Array<{ at: number; known: number; classes: number; egress: number; ingress: number; nftMs: number; scriptBytes: number }> = [];

  constructor(o: DataplaneAgentOptions, d: DataplaneAgentDeps) {
    this.#o = o;
    this.#d = d;
    this.#log = d.log.child({ part: 'dataplane' });
    const common = { logger: this.#log, minBackoffMs: 250, maxBackoffMs: 5000 };
    this.#dataplanes = new Informer<EgressGatewayDataplane>(d.client, { ...common, resource: DATAPLANES });
    // The kubelet's own selector: the API server filters, this agent never receives other nodes' pods.
    this.#pods = new Informer<DataplanePod>(d.client, { ...common, resource: ALL_PODS, fieldSelector: `spec.nodeName=${o.nodeName}`, transform: trimDataplanePod });
    this.#namespaces = new Informer<NamespaceLike>(d.client, { ...common, resource: NAMESPACES, transform: trimNamespace });
    for (const inf of [this.#dataplanes, this.#pods, this.#namespaces] as Array<Informer<{ metadata?: { name?: string } }>>) inf.onEvent(() => this.#schedule());
    if (d.conntrack) {
      this.#remaps = new RemapReplicator({ nodeName: o.nodeName, ...o.remaps }, {
        client: d.client,
        conntrack: d.conntrack,
        gateways: () => (this.#dataplanes.hasSynced() ? this.#dataplanes.list() : []),
        metrics: d.metrics,
        log: this.#log.child({ part: 'snat-remaps' }),
      });
    }
  }

  async start(): Promise<void> {
    try {
      const version = await this.#d.plane.preflight();
      this.#available = true;
      this.#log.info({ nft: version, settings: this.#d.plane.settings }, 'Linux data plane available');
      await this.#checkLoosePickup();
    } catch (err) {
      this.#available = false;
      this.#unavailableReason = (err as Error).message;
      this.#log.error(errFields(err), 'the Linux data plane cannot run on this node');
      void this.#nodeEvent('DataplaneUnavailable', this.#unavailableReason);
      return;
    }
    for (const inf of [this.#dataplanes, this.#pods, this.#namespaces] as Array<Informer<{ metadata?: { name?: string } }>>) {
      inf.start();
      // Events before the sync are not applied (a partial view would drop pods it has not listed yet).
      inf.waitForSync().then(() => this.#schedule(), () => undefined);
    }
    this.#timer = setInterval(() => {
      this.#verify = true;
      this.#schedule();
    }, this.#o.resyncMs ?? 30_000);
    this.#schedule();
    await this.#remaps?.start();
  }

  /**
   * Called right before this node adds `vip` (the VIP part, on a takeover): inserts the SNAT remaps the
   * gateway's previous active node published, so that both connections of a port clash carry on here.
   */
  async seedRemaps(vip: string): Promise<void> {
    const seeding = this.#remaps?.seed(vip);
    if (seeding === undefined) return;
    // The takeover waits for the entries, but not for ever: a hung conntrack must not hold the VIP back
    // (entries that land a little after the VIP still help every connection whose next packet is later).
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), SEED_WAIT_MS)));
    const r = await Promise.race([seeding, late]).finally(() => clearTimeout(timer));
    if (r === 'late') this.#log.warn({ vip, waitedMs: SEED_WAIT_MS }, 'seeding the SNAT remaps takes long; taking the VIP meanwhile');
  }

  /**
   * Established TCP connections survive a failover because the new gateway node's conntrack picks them up
   * mid-stream (docs/dataplane.md). That is the kernel's default; a host-wide setting we do not change, so
   * say so clearly when it is off.
   */
  async #checkLoosePickup(): Promise<void> {
    try {
      const v = (await readFile('/proc/sys/net/netfilter/nf_conntrack_tcp_loose', 'utf8')).trim();
      if (v === '0') this.#log.warn('net.netfilter.nf_conntrack_tcp_loose is 0: established TCP connections will not survive a gateway failover (set it to 1, the kernel default)');
    } catch {
      // conntrack not loaded yet: the kernel default (1) applies when it is
    }
  }

  /** Stops watching. The kernel state stays (an agent restart must not interrupt traffic). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearTimeout(this.#retry);
    await this.#remaps?.stop();
    for (const inf of [this.#dataplanes, this.#pods, this.#namespaces]) (inf as Informer<{ metadata?: { name?: string } }>).stop();
    await this.#running?.catch(() => undefined);
  }

  /** Ready: the data plane works here and the current state has been applied. */
  readiness(): { ok: boolean; reason?: string } {
    if (this.#available === false) return { ok: false, reason: `dataplane: ${this.#unavailableReason}` };
    if (!this.#programmed) return { ok: false, reason: 'dataplane: not programmed yet' };
    if (this.#lastError !== '') return { ok: false, reason: `dataplane: last apply failed: ${this.#lastError}` };
    return { ok: true };
  }

  /** The node's labels changed (a candidate of other gateways now). */
  nodeChanged(): void {
    this.#schedule();
  }

  get programmed(): boolean {
    return this.#programmed;
  }

  #synced(): boolean {
    return this.#dataplanes.hasSynced() && this.#pods.hasSynced() && this.#namespaces.hasSynced();
  }

  #schedule(): void {
    if (this.#stopped || this.#available !== true) return;
    this.#dirty = true;
    if (this.#running) return;
    this.#running = (async () => {
      while (this.#dirty && !this.#stopped) {
        this.#dirty = false;
        await this.#reconcile();
      }
    })().finally(() => {
      this.#running = undefined;
    });
  }

  async #reconcile(): Promise<void> {
    if (!this.#synced()) return;
    const gateways = this.#dataplanes.list();
    const dp = buildNodeDataplane({
      node: this.#o.nodeName,
      podCIDRs: this.#o.podCIDRs,
      serviceCIDRs: this.#o.serviceCIDRs,
      gateways,
      pods: this.#pods.list(),
      namespaces: new Map(this.#namespaces.list().map((n) => [n.metadata.name, n.metadata.labels ?? {}])),
      interfaces: await this.#interfaces(gateways),
      nodeLabels: this.#d.nodeLabels?.(),
      previous: this.#slots,
    });
    const key = renderNft(dp, this.#d.plane.settings) + JSON.stringify([desiredRoutes(dp, this.#d.plane.settings), desiredRules(dp, this.#d.plane.settings)]);
    this.#report(dp.problems, gateways);
    const verify = this.#verify;
    this.#verify = false;
    if (key === this.#appliedKey && (!verify || (await this.#intact(dp)))) return;
    try {
      const r = await this.#d.plane.apply(dp);
      this.#slots = dp.slots;
      this.#appliedKey = key;
      this.#lastError = '';
      this.#d.metrics.applies.inc();
      this.#d.metrics.applySeconds.observe(r.nftMs / 1000);
      this.#d.metrics.rulesetBytes.set(r.scriptBytes);
      this.#d.metrics.knownPods.set(dp.known.length);
      this.applies.push({ at: Date.now(), known: dp.known.length, classes: dp.classes.length, egress: dp.egress.length, ingress: dp.ingress.length, nftMs: r.nftMs, scriptBytes: r.scriptBytes });
      this.#log.info({ pods: dp.known.length, classes: dp.classes.length, gateways: dp.egress.map((e) => `${e.gateway}→${e.endpoint}`), snat: dp.ingress.map((i) => `${i.gateway}→${i.snat}`), nftMs: Math.round(r.nftMs) }, 'data plane applied');
      if (!this.#programmed) {
        this.#programmed = true;
        for (const w of this.#waiters) w();
      }
    } catch (err) {
      const msg = (err as Error).message;
      this.#d.metrics.applyErrors.inc();
      this.#log.error(errFields(err), 'applying the data plane failed; the previous state stays, retrying');
      if (msg !== this.#lastError) void this.#nodeEvent(err instanceof DataplaneUnavailable ? 'DataplaneUnavailable' : 'DataplaneApplyFailed', msg);
      this.#lastError = msg;
      this.#retryLater();
    }
  }

  /** After a resync tick: is what we applied still in the kernel (someone may have flushed it)? */
  async #intact(dp: NodeDataplane): Promise<boolean> {
    try {
      const st = await this.#d.plane.state({ elements: false });
      return st.table !== undefined && st.device && st.rules.length === dp.egress.length && st.routes.length === dp.egress.length;
    } catch {
      return false;
    }
  }

  #retryLater(): void {
    if (this.#retry || this.#stopped) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#schedule();
    }, 2000);
  }

  /** The PrimaryIP gateways' interfaces on this node: their IPv4 addresses, VIPs left out. */
  async #interfaces(gateways: readonly EgressGatewayDataplane[]): Promise<Map<string, InterfaceView>> {
    const vips = new Set<string>();
    const names = new Set<string>();
    for (const g of gateways) {
      const src = g.spec?.sourceIP;
      if (src?.mode === MODE_VIP && typeof src.ip === 'string') vips.add(src.ip);
      if (src?.mode === MODE_PRIMARY_IP && typeof src.interfaceName === 'string') names.add(src.interfaceName);
    }
    const out = new Map<string, InterfaceView>();
    for (const name of names) {
      try {
        const link = await this.#d.addresses.getLink(name);
        if (!link) continue;
        const addrs = await this.#d.addresses.addresses(name);
        out.set(name, { up: link.flags.includes('UP'), ipv4: addrs.filter((a) => a.family === 4 && !vips.has(a.ip)).map((a) => a.ip) });
      } catch (err) {
        this.#log.warn({ ...errFields(err), ifname: name }, 'reading an interface failed');
      }
    }
    return out;
  }

  /**
   * New problems are logged once; those that concern this node become Warning events on the Node, those
   * that concern a gateway's object are reported by the gateway's active node only (every node sees the
   * same object; 5,000 identical events would say nothing more).
   */
  #report(problems: readonly Problem[], gateways: readonly EgressGatewayDataplane[]): void {
    const now = new Set<string>();
    const active = new Map(gateways.map((g) => [g.metadata.name, g.spec?.activeNodeName ?? '']));
    for (const p of problems) {
      const key = JSON.stringify(p);
      now.add(key);
      if (this.#problems.has(key)) continue;
      this.#log.error(p, 'data plane problem');
      const nodeSpecific = p.pod !== undefined || /this node/.test(p.message);
      if (nodeSpecific) void this.#nodeEvent('DataplaneRejected', describe(p));
      else if (p.gateway !== undefined && active.get(p.gateway) === this.#o.nodeName) {
        void this.#d.events?.tryRecord({ apiVersion: 'network.deckhouse.io/v1alpha1', kind: 'EgressGateway', name: p.gateway }, 'Warning', 'DataplaneRejected', describe(p));
      }
    }
    this.#problems = now;
    this.#d.metrics.problems.set(problems.length);
  }

  async #nodeEvent(reason: string, note: string): Promise<void> {
    await this.#d.events?.tryRecord({ apiVersion: 'v1', kind: 'Node', name: this.#o.nodeName }, 'Warning', reason, note);
  }

  /** Resolves once the data plane has been applied (or rejects when it cannot run here). */
  waitProgrammed(): Promise<void> {
    if (this.#programmed) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.add(resolve));
  }
}

function describe(p: Problem): string {
  const where = [p.gateway && `gateway ${p.gateway}`, p.policy && `policy ${p.policy}`, p.pod && `pod ${p.pod}`].filter(Boolean).join(', ');
  return where === '' ? p.message : `${where}: ${p.message}`;
}
