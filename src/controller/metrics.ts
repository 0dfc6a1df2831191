// The controller's Prometheus metrics, on a Registry of its own (two controllers in one test process
// must not share series). Per-pass gauges are reset and refilled on every reconcile pass, so a
// series disappears when its cause does (the reference clears its orphan group the same way).

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CoreMetrics } from '../core/types.ts';

export class ControllerMetrics {
  readonly registry = new Registry();
  readonly orphanPolicy = new Gauge({
    name: 'egressgw_orphan_policy',
    help: 'An EgressGatewayPolicy names an EgressGateway that does not exist (1).',
    labelNames: ['policy', 'gateway'] as const,
    registers: [this.registry],
  });
  /** The reference's name, kept so its alert (CniCiliumOrphanEgressGatewayPolicyFound) keeps working. */
  readonly orphanPolicyReference = new Gauge({
    name: 'd8_cni_cilium_orphan_egress_gateway_policy',
    help: 'Orphaned EgressGatewayPolicy (reference-compatible name).',
    labelNames: ['name', 'egressgateway'] as const,
    registers: [this.registry],
  });
  readonly activeNode = new Gauge({
    name: 'egressgw_gateway_active_node',
    help: 'The active node of a gateway (1 for the node carrying active-for-<gateway>).',
    labelNames: ['gateway', 'node'] as const,
    registers: [this.registry],
  });
  readonly readyNodes = new Gauge({
    name: 'egressgw_gateway_ready_nodes',
    help: 'Nodes eligible to serve a gateway.',
    labelNames: ['gateway'] as const,
    registers: [this.registry],
  });
  readonly totalNodes = new Gauge({
    name: 'egressgw_gateway_nodes',
    help: "Nodes matching a gateway's nodeSelector.",
    labelNames: ['gateway'] as const,
    registers: [this.registry],
  });
  readonly gatewayReady = new Gauge({
    name: 'egressgw_gateway_ready',
    help: 'A gateway has an active node that serves it (1) or not (0).',
    labelNames: ['gateway'] as const,
    registers: [this.registry],
  });
  readonly duplicateVIP = new Gauge({
    name: 'egressgw_duplicate_vip',
    help: 'Number of gateways claiming one virtual IP, for IPs claimed more than once.',
    labelNames: ['ip'] as const,
    registers: [this.registry],
  });
  readonly failovers = new Counter({
    name: 'egressgw_failovers_total',
    help: 'Active node changes decided because the previous node failed or was moved away.',
    labelNames: ['gateway'] as const,
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: 'egressgw_reconcile_duration_seconds',
    help: 'Duration of one reconcile pass (snapshot, decide, write).',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly reconciles = new Counter({
    name: 'egressgw_reconciles_total',
    help: 'Reconcile passes by result (ok, conflict, error).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly writes = new Counter({
    name: 'egressgw_writes_total',
    help: 'Writes sent to the API server, by kind.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly writeErrors = new Counter({
    name: 'egressgw_write_errors_total',
    help: 'Writes the API server refused or that failed, by kind.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly isLeader = new Gauge({
    name: 'egressgw_is_leader',
    help: 'This replica is the leader and may write (1) or stands by (0).',
    registers: [this.registry],
  });
  readonly cachesSynced = new Gauge({
    name: 'egressgw_caches_synced',
    help: 'All informer caches have synced (1).',
    registers: [this.registry],
  });

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }

  /** Replace the per-pass gauges with what the core reported for this pass. */
  observePass(m: CoreMetrics): void {
    this.orphanPolicy.reset();
    this.orphanPolicyReference.reset();
    this.activeNode.reset();
    this.readyNodes.reset();
    this.totalNodes.reset();
    this.gatewayReady.reset();
    this.duplicateVIP.reset();
    for (const o of m.orphanPolicies) {
      this.orphanPolicy.set({ policy: o.policy, gateway: o.gateway }, 1);
      this.orphanPolicyReference.set({ name: o.policy, egressgateway: o.gateway }, 1);
    }
    for (const g of m.gateways) {
      if (g.activeNode) this.activeNode.set({ gateway: g.name, node: g.activeNode }, 1);
      this.readyNodes.set({ gateway: g.name }, g.readyNodes);
      this.totalNodes.set({ gateway: g.name }, g.totalNodes);
      this.gatewayReady.set({ gateway: g.name }, g.ready ? 1 : 0);
    }
    for (const d of m.duplicateVIPs) this.duplicateVIP.set({ ip: d.ip }, d.gateways.length);
  }

  /** Failovers are counted once per decision, and only by the replica that carried them out. */
  countFailovers(m: CoreMetrics): void {
    for (const f of m.failovers) this.failovers.inc({ gateway: f.gateway });
  }

  /** Sum of `egressgw_writes_total` over kinds (tests and the "resync writes nothing" check). */
  async totalWrites(): Promise<number> {
    const v = await this.writes.get();
    return v.values.reduce((a, s) => a + s.value, 0);
  }
}
