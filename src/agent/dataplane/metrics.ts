// Prometheus metrics of the agent's Linux data plane (registered on the agent's registry).

import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface DataplaneMetrics {
  applies: Counter;
  applyErrors: Counter;
  applySeconds: Histogram;
  rulesetBytes: Gauge;
  knownPods: Gauge;
  problems: Gauge;
  remapsPublished: Gauge;
  remapsSeeded: Counter;
  remapSeedFailures: Counter;
}

export function createDataplaneMetrics(registry: Registry): DataplaneMetrics {
  return {
    applies: new Counter({ name: 'egressgw_dataplane_applies_total', help: 'nft transactions that replaced the data plane table (a pod, a policy or a gateway changed).', registers: [registry] }),
    applyErrors: new Counter({ name: 'egressgw_dataplane_apply_errors_total', help: 'Failed data plane updates (the previous state stayed in the kernel).', registers: [registry] }),
    applySeconds: new Histogram({
      name: 'egressgw_dataplane_apply_seconds',
      help: 'Duration of the nft transaction of a data plane update.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    rulesetBytes: new Gauge({ name: 'egressgw_dataplane_ruleset_bytes', help: 'Size of the last nft script applied.', registers: [registry] }),
    knownPods: new Gauge({ name: 'egressgw_dataplane_known_pods', help: 'Pods of this node the data plane knows (the rest are dropped until programmed).', registers: [registry] }),
    problems: new Gauge({ name: 'egressgw_dataplane_problems', help: 'Inputs the data plane had to leave out (see the agent log and Warning events).', registers: [registry] }),
    remapsPublished: new Gauge({ name: 'egressgw_dataplane_snat_remaps', help: 'Connections through the VIPs this node is active for whose SNAT port differs from the pod\'s (port clashes), as last listed.', registers: [registry] }),
    remapsSeeded: new Counter({ name: 'egressgw_dataplane_snat_remaps_seeded_total', help: 'SNAT remaps of the previous active node inserted into this node\'s conntrack before it took a VIP.', registers: [registry] }),
    remapSeedFailures: new Counter({ name: 'egressgw_dataplane_snat_remap_seed_failures_total', help: 'SNAT remaps the kernel refused to insert before this node took a VIP.', registers: [registry] }),
  };
}
