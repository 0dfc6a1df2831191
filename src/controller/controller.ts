// The controller shell: informers → planner (the core's plans, kept up to date from the informers'
// events) → writes. Every replica keeps its caches and its planner fed; only the leader runs passes
// that write, so a takeover needs no relist. A pass plans again what the events since the last pass
// touched and reuses every other plan (its result is the core's whole reconcile of the caches, see
// planner.ts). Passes come from watch events, from timers at the moment a heartbeat expires or a
// handover times out (expiry is noticed at lease precision without any watch event), and from a
// periodic resync (which re-issues whatever the plans still want written).

import type {
  CiliumEgressGatewayPolicy,
  CiliumNodeLike,
  EgressGateway,
  EgressGatewayInstance,
  EgressGatewayPolicy,
  LeaseLike,
  NodeLike,
  PodLike,
} from '../api/types.ts';
import { OWNED_LABELS } from '../api/names.ts';
import type { CoreOptions, Desired, Write } from '../core/types.ts';
import { KubeClient, loadKubeConfig, type KubeConfig } from '../kube/client.ts';
import { EventRecorder } from '../kube/events.ts';
import { Informer, type InformerEvent, type InformerOptions } from '../kube/informer.ts';
import { LeaderElector, sleep } from '../kube/leader.ts';
import { createLogger, errFields, type Logger } from '../kube/log.ts';
import { CEGPS, CILIUM_NODES, GATEWAYS, INSTANCES, NODES, POLICIES, leases, pods } from '../kube/resources.ts';
import { applyWrites, type ApplyResult } from './apply.ts';
import { startHealthServer, type HealthServer } from './http.ts';
import { ControllerMetrics } from './metrics.ts';
import { leaderElectionConfig, type ControllerOptions } from './options.ts';
import { ReconcileQueue, type PassResult } from './queue.ts';
import { HeartbeatTracker, nextHandoverTimeout } from './snapshot.ts';
import { Planner, WATCHED, type PassOutput } from './planner/planner.ts';
import { WakeTimer } from './wake.ts';
import { trimCEGP, trimCiliumNode, trimGateway, trimInstance, trimLease, trimNode, trimPod, trimPolicy } from './trim.ts';

export const REPORTING_CONTROLLER = 'network.deckhouse.io/egressgw-controller';

/** What one pass did; handed to `hooks.onPass` (tests, debugging). */
export interface PassInfo {
  at: number;
  durationMs: number;
  desired: Desired;
  writes: readonly Write[];
  result: ApplyResult;
}

export interface RunControllerDeps {
  signal: AbortSignal;
  /** Use this config instead of loading `options.kubeconfig` (tests pass the harness's). */
  kubeConfig?: KubeConfig;
  logger?: Logger;
  /** Supply to read the controller's metrics in-process. */
  metrics?: ControllerMetrics;
  onPass?: (info: PassInfo) => void;
  /** Called once the caches have synced and the HTTP server listens. */
  onReady?: (info: { metricsPort?: number }) => void;
}

interface Caches {
  nodes: Informer<NodeLike>;
  ciliumNodes: Informer<CiliumNodeLike>;
  ciliumAgentPods: Informer<PodLike>;
  agentPods: Informer<PodLike>;
  leases: Informer<LeaseLike>;
  gateways: Informer<EgressGateway>;
  policies: Informer<EgressGatewayPolicy>;
  instances: Informer<EgressGatewayInstance>;
  cegps: Informer<CiliumEgressGatewayPolicy>;
}

const ownedSelector = Object.entries(OWNED_LABELS)
  .map(([k, v]) => `${k}=${v}`)
  .join(',');

/** Run until `deps.signal` aborts; then stop writing, release the Lease and return. */
export async function runController(options: ControllerOptions, deps: RunControllerDeps): Promise<void> {
  const log = deps.logger ?? createLogger(options.logLevel);
  const kc = deps.kubeConfig ?? loadKubeConfig(options.kubeconfig);
  const controller = new Controller(options, kc, log, deps.metrics ?? new ControllerMetrics({ defaultMetrics: !deps.metrics }), deps);
  await controller.run(deps.signal);
}

class Controller {
  private readonly opts: ControllerOptions;
  private readonly log: Logger;
  private readonly metrics: ControllerMetrics;
  private readonly deps: RunControllerDeps;
  private readonly client: KubeClient;
  private readonly caches: Caches;
  private readonly heartbeats: HeartbeatTracker;
  private readonly recorder: EventRecorder;
  private readonly queue: ReconcileQueue;
  private readonly elector: LeaderElector | undefined;
  private readonly coreOptions: CoreOptions;
  /** The core's plans of the cluster, kept up to date from the informers' events (see planner.ts). */
  private readonly planner: Planner;
  private leading = false;
  private synced = false;
  private readonly wake: WakeTimer;
  private resyncTimer: NodeJS.Timeout | undefined;
  /** Whether the last pass saw no cilium-agent pod on any node (logged once per change). */
  private noCiliumAgents = false;

  constructor(opts: ControllerOptions, kc: KubeConfig, log: Logger, metrics: ControllerMetrics, deps: RunControllerDeps) {
    this.opts = opts;
    this.log = log.child({ component: 'controller' });
    this.metrics = metrics;
    this.deps = deps;
    this.client = new KubeClient(kc);
    this.coreOptions = {
      handoverTimeoutMs: opts.handoverTimeoutMs,
      requireCiliumAgent: true,
      ciliumAgentSource: `namespace ${opts.ciliumNamespace}, selector ${opts.ciliumSelector}`,
    };
    this.heartbeats = new HeartbeatTracker(opts.heartbeatDurationMs);
    this.wake = new WakeTimer({
      nextDue: (since) => {
        const due = [this.heartbeats.nextExpiry(since), nextHandoverTimeout(this.caches.instances.list(), this.opts.handoverTimeoutMs, since)]
          .filter((x): x is number => x !== undefined);
        return due.length > 0 ? Math.min(...due) : undefined;
      },
      enqueue: () => this.queue.enqueue(),
    });
    // Every cache keeps only what the controller reads (trim.ts): most of a real object is not.
    const inf = <T extends { metadata?: { name?: string } }>(o: InformerOptions<T>) => new Informer<T>(this.client, { ...o, logger: log });
    this.caches = {
      nodes: inf({ resource: NODES, transform: trimNode }),
      ciliumNodes: inf({ resource: CILIUM_NODES, optional: true, transform: trimCiliumNode }),
      ciliumAgentPods: inf({ resource: pods(opts.ciliumNamespace), labelSelector: opts.ciliumSelector, transform: trimPod }),
      agentPods: inf({ resource: pods(opts.agentNamespace), labelSelector: opts.agentSelector, transform: trimPod }),
      leases: inf({ resource: leases(opts.heartbeatNamespace), transform: trimLease }),
      gateways: inf({ resource: GATEWAYS, transform: trimGateway }),
      policies: inf({ resource: POLICIES, transform: trimPolicy }),
      instances: inf({ resource: INSTANCES, transform: trimInstance }),
      cegps: inf({ resource: CEGPS, labelSelector: ownedSelector, optional: true, transform: trimCEGP }),
    };
    this.planner = new Planner(this.coreOptions);
    this.recorder = new EventRecorder(this.client, {
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: opts.leaderElectIdentity,
      logger: log,
    });
    this.queue = new ReconcileQueue(() => this.pass(), { logger: this.log });
    if (opts.leaderElect) {
      this.elector = new LeaderElector(
        this.client,
        { ...leaderElectionConfig(opts), releaseOnCancel: true },
        {
          onStartedLeading: () => this.setLeading(true),
          onStoppedLeading: () => this.setLeading(false),
        },
        { logger: log },
      );
    }
    this.wireEvents();
  }

  private wireEvents(): void {
    // Every replica feeds its planner (a new leader's first pass then plans what its caches hold).
    for (const list of WATCHED) {
      (this.caches[list] as unknown as Informer<{ metadata?: { name?: string } }>).onEvent((type, o) => {
        this.planner.handle(list, type, o as never);
        this.queue.enqueue();
      });
    }
    this.caches.leases.onEvent((type: InformerEvent, lease: LeaseLike) => {
      const matters = type === 'delete' ? this.heartbeats.forget(lease) : this.heartbeats.observe(lease, Date.now());
      // A plain renewal of a live heartbeat decides nothing; it only moves that heartbeat's expiry
      // later, so an armed timer stays a valid (early) check point: it re-arms when it fires. This
      // keeps a renewal O(1) however many nodes heartbeat.
      if (matters) this.queue.enqueue();
      else if (!this.wake.armed) this.armWakeTimer();
    });
  }

  private setLeading(v: boolean): void {
    this.leading = v;
    this.metrics.isLeader.set(v ? 1 : 0);
    if (v) this.queue.enqueue();
  }

  /** True while this replica may write (leader with a fresh Lease, or leader election off). */
  private mayWrite(): boolean {
    return this.elector ? this.leading && this.elector.isLeader() : true;
  }

  async run(signal: AbortSignal): Promise<void> {
    let http: HealthServer | undefined;
    const electionStop = new AbortController();
    let election: Promise<void> | undefined;
    try {
      http = await startHealthServer(this.opts.metricsAddr, this.metrics.registry, () => this.synced);
      if (http) this.log.info({ port: http.port }, 'serving /metrics, /healthz, /readyz');
      for (const i of Object.values(this.caches)) (i as Informer<never>).start();
      // Campaign while the caches fill: whoever wins still waits for the sync before its first pass.
      if (this.elector) election = this.elector.run(electionStop.signal);
      else this.setLeading(true);
      await Promise.all(Object.values(this.caches).map((i: Informer<never>) => i.waitForSync(signal)));
      this.synced = true;
      this.metrics.cachesSynced.set(1);
      this.log.info('caches synced');
      this.deps.onReady?.({ metricsPort: http?.port });
      this.queue.enqueue();
      this.armResync();
      await new Promise<void>((resolve) => {
        if (signal.aborted) return resolve();
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      this.log.info('shutting down');
      this.queue.stop();
      this.wake.stop();
      clearTimeout(this.resyncTimer);
      // Let a running pass finish its current write rather than cut it mid-request.
      const grace = new AbortController();
      await Promise.race([this.queue.idle(), sleep(5000, grace.signal)]);
      grace.abort();
      electionStop.abort();
      if (election) await election;
      this.setLeadingQuiet(false);
      for (const i of Object.values(this.caches)) (i as Informer<never>).stop();
      await http?.close();
    }
  }

  private setLeadingQuiet(v: boolean): void {
    this.leading = v;
    this.metrics.isLeader.set(v ? 1 : 0);
  }

  private armResync(): void {
    clearTimeout(this.resyncTimer);
    this.resyncTimer = setTimeout(() => {
      this.queue.enqueue();
      this.armResync();
    }, this.opts.resyncMs);
  }

  /** Arms the wake timer (wake.ts) while this replica leads and its caches are synced. */
  private armWakeTimer(): void {
    if (this.synced && this.leading) this.wake.arm();
  }

  /**
   * No cilium-agent pod on any node almost always means the controller looks in the wrong place (an install
   * profile that does not match the cluster): say where it looked, once, instead of leaving every gateway
   * to report its nodes one by one (the core's reason is CiliumAgentNotFound).
   */
  private checkCiliumAgents(pods: readonly PodLike[]): void {
    const none = !pods.some((p) => typeof p.spec?.nodeName === 'string' && p.spec.nodeName !== '');
    if (none === this.noCiliumAgents) return;
    this.noCiliumAgents = none;
    const where = { namespace: this.opts.ciliumNamespace, selector: this.opts.ciliumSelector };
    if (none) {
      this.log.warn(where, `no cilium-agent pod found in namespace ${where.namespace} with selector ${where.selector}: no node is eligible for any gateway; ` +
        'set --cilium-namespace and --cilium-selector to where Cilium runs its agents (egressgw manifests --profile deckhouse for Deckhouse)');
    } else this.log.info(where, 'cilium-agent pods found');
  }

  private async pass(): Promise<PassResult> {
    if (!this.synced || !this.mayWrite()) return 'ok';
    const started = performance.now();
    const now = Date.now();
    this.wake.passStarted(now);
    this.checkCiliumAgents(this.caches.ciliumAgentPods.list());
    let out: PassOutput;
    try {
      out = this.planner.pass(now, this.heartbeats.heartbeats(), { desired: this.deps.onPass !== undefined });
    } catch (err) {
      // A core bug must not take the process down; it is retried with backoff and is visible.
      this.log.error(errFields(err), 'core reconcile failed');
      this.metrics.reconciles.inc({ result: 'error' });
      return 'error';
    }
    const { writes } = out;
    this.metrics.observePass(out.metrics);
    const result = await applyWrites(
      {
        client: this.client,
        recorder: this.recorder,
        metrics: this.metrics,
        log: this.log,
        mayWrite: () => this.mayWrite(),
        cached: {
          instance: (n) => this.caches.instances.get(n),
          gateway: (n) => this.caches.gateways.get(n),
          policy: (n) => this.caches.policies.get(n),
        },
      },
      writes,
    );
    const outcome: PassResult = result.conflicts > 0 ? 'conflict' : result.failed > 0 || result.deferred > 0 ? 'error' : 'ok';
    if (outcome === 'ok' && !result.aborted) this.metrics.countFailovers(out.metrics);
    const durationMs = performance.now() - started;
    this.metrics.reconcileDuration.observe(durationMs / 1000);
    this.metrics.reconciles.inc({ result: outcome });
    if (writes.length > 0) {
      this.log.info({ writes: writes.length, failed: result.failed, deferred: result.deferred, ms: Math.round(durationMs) }, 'reconciled');
    } else {
      this.log.debug({ ms: Math.round(durationMs) }, 'reconciled; nothing to write');
    }
    this.armWakeTimer();
    try {
      if (out.desired) this.deps.onPass?.({ at: now, durationMs, desired: out.desired, writes, result });
    } catch (err) {
      this.log.warn(errFields(err), 'onPass hook failed');
    }
    return outcome;
  }
}
