// Replicates the SNAT remaps of the VIPs this node is active for (docs/dataplane.md, "Replicating the
// remapped connections"): the active node publishes them in the status of the gateway's dataplane object,
// every agent already watches those objects, and the next owner inserts them into its conntrack table
// before it adds the VIP. Only remaps: the connections that kept their port need nothing.
//
//  - Publish (active node): every interval, `conntrack -L` of each VIP it is active for, the pure choice,
//    and a status write only when the list changed, with the resourceVersion of the object it read
//    (a precondition): once the controller has moved the gateway to another node, a late write from
//    this one fails instead of overwriting the new owner's list.
//  - Seed (next owner): the list as its cache holds it, right before the VIP is added.

import { MODE_VIP } from '../../api/names.ts';
import type { EgressGatewayDataplane, SnatRemapList } from '../../api/types.ts';
import { publication, publishNeeded, remapsToSeed } from '../../dataplane/remaps.ts';
import { isObjectGone, isStatus, type KubeClient } from '../../kube/client.ts';
import { errFields, type Logger } from '../../kube/log.ts';
import { DATAPLANES } from '../../kube/resources.ts';
import { CommandFailed } from '../net/exec.ts';
import type { ConntrackTool, SeedResult } from './conntrack.ts';
import type { DataplaneMetrics } from './metrics.ts';

export interface RemapReplicatorOptions {
  nodeName: string;
  /** How often the active node lists its remaps (the loss window when it dies: see the docs). */
  intervalMs?: number;
  /**
   * Timeout of a seeded entry until its connection's next packet refreshes it: the kernel's default for an
   * established connection (what the old node held it for), so an idle connection survives as there.
   */
  seedTimeoutSeconds?: number;
}

export interface RemapReplicatorDeps {
  client: KubeClient;
  conntrack: ConntrackTool;
  /** The gateways' dataplane objects (the agent's cache); empty until it has synced. */
  gateways: () => readonly EgressGatewayDataplane[];
  metrics: Pick<DataplaneMetrics, 'remapsPublished' | 'remapsSeeded' | 'remapSeedFailures'>;
  log: Logger;
}

export const DEFAULT_REMAP_INTERVAL_MS = 2000;
export const DEFAULT_SEED_TIMEOUT_SECONDS = 432_000;

export class RemapReplicator {
  readonly #o: Required<RemapReplicatorOptions>;
  readonly #d: RemapReplicatorDeps;
  #available = false;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  /** Per gateway: what this node wrote, and the resourceVersion it wrote over (its cache may lag its own write). */
  readonly #written = new Map<string, { over: string; rv: string; list: SnatRemapList }>();
  #lastError = '';

  constructor(o: RemapReplicatorOptions, d: RemapReplicatorDeps) {
    this.#o = { intervalMs: DEFAULT_REMAP_INTERVAL_MS, seedTimeoutSeconds: DEFAULT_SEED_TIMEOUT_SECONDS, ...o };
    this.#d = d;
  }

  /** Checks for the tool; without it the node neither publishes nor seeds (said once, clearly). */
  async start(): Promise<void> {
    try {
      const version = await this.#d.conntrack.version();
      this.#available = true;
      this.#d.log.info({ conntrack: version, intervalMs: this.#o.intervalMs }, 'replicating SNAT remaps of the VIPs this node is active for');
    } catch (err) {
      const why = err instanceof CommandFailed && err.missing ? 'conntrack is not installed on this node (package conntrack)' : `conntrack does not work here: ${(err as Error).message}`;
      this.#d.log.warn(`${why}: SNAT remaps are neither published nor seeded, so at a failover one connection of each SNAT port clash through this node is lost`);
      return;
    }
    this.#timer = setInterval(() => this.tick(), this.#o.intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** One publish pass, unless one is running. */
  tick(): Promise<void> {
    this.#running ??= this.publish().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** Lists and, where the list changed, publishes the remaps of every VIP gateway this node is active for. */
  async publish(): Promise<void> {
    if (!this.#available) return;
    const active = this.#d.gateways().filter((g) => g.spec?.activeNodeName === this.#o.nodeName && g.spec.sourceIP?.mode === MODE_VIP && typeof g.spec.sourceIP.ip === 'string');
    let total = 0;
    for (const g of active) {
      const name = g.metadata.name;
      const vip = g.spec!.sourceIP!.ip!;
      try {
        const next = publication(this.#o.nodeName, vip, await this.#d.conntrack.remapped(vip));
        total += next.connections.length;
        const rv = g.metadata.resourceVersion ?? '';
        const mine = this.#written.get(name);
        // The cache has not seen our own last write yet: compare with it, and write over its version.
        const [current, over] = mine && mine.over === rv ? [mine.list, mine.rv] : [g.status?.snatRemaps, rv];
        if (!publishNeeded(current, next)) continue;
        const res = await this.#d.client.mergePatch<EgressGatewayDataplane>(DATAPLANES, name, { metadata: { resourceVersion: over }, status: { snatRemaps: next } }, 'status');
        this.#written.set(name, { over: rv, rv: res.metadata.resourceVersion ?? '', list: next });
        this.#d.log.info({ gateway: name, vip, connections: next.connections.length, omitted: next.omitted }, 'published the SNAT remaps');
        if (next.omitted > 0) this.#d.log.warn({ gateway: name, omitted: next.omitted }, 'more SNAT remaps than the list holds: those left out are lost at a failover');
        this.#lastError = '';
      } catch (err) {
        // 409: the object changed since this node read it (a failover moved the gateway, or the cache
        // lags): the next pass decides again from the newer object.
        if (isStatus(err, 409) || isObjectGone(err, name)) continue;
        const msg = (err as Error).message;
        if (msg !== this.#lastError) this.#d.log.warn({ ...errFields(err), gateway: name }, 'publishing the SNAT remaps failed; retrying at the next pass');
        this.#lastError = msg;
      }
    }
    for (const name of this.#written.keys()) if (!active.some((g) => g.metadata.name === name)) this.#written.delete(name);
    this.#d.metrics.remapsPublished.set(total);
  }

  /**
   * Before this node adds `vip`: inserts the remaps the gateway's last active node published. Never
   * throws (the VIP is taken anyway: without the entries only the clashing connections are at risk).
   */
  async seed(vip: string): Promise<SeedResult> {
    const result: SeedResult = { seeded: 0, present: 0, failed: [] };
    if (!this.#available) return result;
    for (const g of this.#d.gateways()) {
      if (g.spec?.sourceIP?.ip !== vip) continue;
      const { remaps, invalid } = remapsToSeed(g.status?.snatRemaps, vip);
      if (invalid.length > 0) this.#d.log.warn({ gateway: g.metadata.name, invalid }, 'SNAT remaps that cannot be seeded were left out');
      if (remaps.length === 0) continue;
      const r = await this.#d.conntrack.seed(vip, remaps, this.#o.seedTimeoutSeconds);
      result.seeded += r.seeded;
      result.present += r.present;
      result.failed.push(...r.failed);
      this.#d.metrics.remapsSeeded.inc(r.seeded);
      this.#d.metrics.remapSeedFailures.inc(r.failed.length);
      const fields = { gateway: g.metadata.name, vip, from: g.status?.snatRemaps?.node, seeded: r.seeded, present: r.present, failed: r.failed };
      if (r.failed.length > 0) this.#d.log.warn(fields, 'seeded the SNAT remaps before taking the VIP; some were refused');
      else this.#d.log.info(fields, 'seeded the SNAT remaps before taking the VIP');
    }
    return result;
  }
}
