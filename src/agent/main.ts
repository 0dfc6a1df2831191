// Wires the agent's parts together and runs them until the signal aborts.

import { KubeClient, loadKubeConfig } from '../kube/client.ts';
import { createLogger, errFields, type Logger } from '../kube/log.ts';
import { Agent } from './agent.ts';
import { startHealthServer } from './health.ts';
import { createAgentMetrics } from './metrics.ts';
import { IpRoute } from './net/iproute.ts';
import { loadAddon } from './net/packet.ts';
import type { AgentOptions } from './options.ts';
import { WireAnnouncer } from './wire.ts';

export async function runAgent(o: AgentOptions, { signal, log }: { signal: AbortSignal; log?: Logger }): Promise<void> {
  const logger = (log ?? createLogger(o.logLevel)).child({ component: 'agent', node: o.nodeName });
  // Fail at start-up, clearly, rather than at the first takeover.
  loadAddon();
  const client = new KubeClient(loadKubeConfig(o.kubeconfig));
  const metrics = createAgentMetrics(o.nodeName);
  const addresses = new IpRoute();
  const announcer = new WireAnnouncer({ addresses, reannounceIntervalMs: o.reannounceIntervalMs, metrics, log: logger.child({ part: 'announcer' }) });
  await announcer.start();
  const agent = new Agent(o, { client, addresses, announcer, metrics, log: logger });
  const health = await startHealthServer({ host: o.metricsHost, port: o.metricsPort, registry: metrics.registry, ready: () => agent.readiness() });
  logger.info({
    metrics: health.address,
    heartbeat: o.heartbeat ? `${o.heartbeatNamespace}/every ${o.renewIntervalMs}ms, duration ${o.leaseDurationMs}ms` : 'disabled (reference mode)',
    addressLifetimeMs: o.addressLifetimeMs,
    refreshIntervalMs: o.refreshIntervalMs,
    fenceAfterMs: o.fenceAfterMs,
  }, 'agent started');
  agent.start();
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
  logger.info({ signal: String(signal.reason) }, 'shutting down: withdrawing VIPs, deleting the heartbeat lease');
  try {
    await agent.stop();
  } catch (err) {
    logger.error(errFields(err), 'shutdown incomplete');
  }
  await health.close();
  logger.info('agent stopped');
}
