// The agent's Prometheus metrics (reference defect D16: the reference agent exports none).
// One registry per agent so tests can run several agents in one process without name clashes.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface AgentMetrics {
  registry: Registry;
  announcementsSent: Counter<'family'>;
  requestsReceived: Counter;
  responsesSent: Counter;
  vipsHeld: Gauge;
  fenceEvents: Counter;
  renewLatency: Histogram;
  renewFailures: Counter;
  addressErrors: Counter<'op'>;
  heartbeatHealthy: Gauge;
}

export function createAgentMetrics(node: string, opts: { defaultMetrics?: boolean } = {}): AgentMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ node });
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'egressgw_agent_' });
  return {
    registry,
    announcementsSent: new Counter({
      name: 'egressgw_agent_announcements_sent_total',
      help: 'Gratuitous ARP request+reply pairs / unsolicited NAs sent for held VIPs (takeover bursts and periodic re-announcements).',
      labelNames: ['family'],
      registers: [registry],
    }),
    requestsReceived: new Counter({
      name: 'egressgw_agent_neighbor_requests_received_total',
      help: 'ARP requests / neighbor solicitations received for held VIPs.',
      registers: [registry],
    }),
    responsesSent: new Counter({
      name: 'egressgw_agent_neighbor_responses_sent_total',
      help: 'ARP replies / neighbor advertisements sent by the agent itself (the kernel answers where the VIP is assigned).',
      registers: [registry],
    }),
    vipsHeld: new Gauge({ name: 'egressgw_agent_vips_held', help: 'VIPs currently assigned to an interface by this agent.', registers: [registry] }),
    fenceEvents: new Counter({
      name: 'egressgw_agent_fence_events_total',
      help: 'Times the agent dropped every VIP because it could not renew its heartbeat for --fence-after.',
      registers: [registry],
    }),
    renewLatency: new Histogram({
      name: 'egressgw_agent_heartbeat_renew_seconds',
      help: 'Latency of heartbeat Lease renewals (successful ones).',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2],
      registers: [registry],
    }),
    renewFailures: new Counter({ name: 'egressgw_agent_heartbeat_renew_failures_total', help: 'Failed heartbeat renewals.', registers: [registry] }),
    addressErrors: new Counter({
      name: 'egressgw_agent_address_errors_total',
      help: 'Failed attempts to add, refresh or delete a VIP on an interface.',
      labelNames: ['op'],
      registers: [registry],
    }),
    heartbeatHealthy: new Gauge({
      name: 'egressgw_agent_heartbeat_healthy',
      help: '1 while the last heartbeat renewal is younger than --fence-after (the agent may hold VIPs).',
      registers: [registry],
    }),
  };
}
