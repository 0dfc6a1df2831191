// Wires the agent's parts together and runs them until the signal aborts.

import { KubeClient, loadKubeConfig } from '../kube/client.ts';
import { createLogger, errFields, type Logger } from '../kube/log.ts';
import { Agent } from './agent.ts';
import { startHealthServer } from './health.ts';
import { createAgentMetrics } from './metrics.ts';
import { IpRoute } from './net/iproute.ts';
import { NftUnavailableError, openNft } from './net/nft.ts';
import { loadAddon } from './net/packet.ts';
import { Fence } from './fence.ts';
import type { AgentOptions } from './options.ts';
import { WireAnnouncer } from './wire.ts';

export async function runAgent(o: AgentOptions, { signal, log }: { signal: AbortSignal; log?: Logger }): Promise<void> {
  const logger = (log ?? createLogger(o.logLevel)).child({ component: 'agent', node: o.nodeName });
  // Fail at start-up, clearly, rather than at the first takeover.
  loadAddon();
  const client = new KubeClient(loadKubeConfig(o.kubeconfig));
  const metrics = createAgentMetrics(o.nodeName);
  const fence = o.heartbeat ? installFence() : removeFence(logger);
  const addresses = new IpRoute();
  // The announcer asks the agent before each frame; the agent needs the announcer first.
  const ref: { agent?: Agent } = {};
  const announcer = new WireAnnouncer({
    addresses,
    reannounceIntervalMs: o.reannounceIntervalMs,
    metrics,
    log: logger.child({ part: 'announcer' }),
    mayAnswer: (ip) => ref.agent?.mayAnswer(ip) ?? false,
  });
  await announcer.start();
  const agent = (ref.agent = new Agent(o, { client, addresses, announcer, metrics, log: logger, ...(fence ? { fence } : {}) }));
  const health = await startHealthServer({ host: o.metricsHost, port: o.metricsPort, registry: metrics.registry, ready: () => agent.readiness() });
  logger.info({
    metrics: health.address,
    heartbeat: o.heartbeat ? `${o.heartbeatNamespace}/every ${o.renewIntervalMs}ms, duration ${o.leaseDurationMs}ms` : 'disabled (reference mode)',
    addressLifetimeMs: o.addressLifetimeMs,
    refreshIntervalMs: o.refreshIntervalMs,
    fenceAfterMs: o.fenceAfterMs,
    fence: fence ? 'nftables (arp + inet egressgw_fence)' : 'none (reference mode)',
  }, 'agent started');
  await agent.start();
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

/** The kernel switch, installed before anything else: without it the agent must not hold VIPs at all. */
function installFence(): Fence {
  try {
    const fence = new Fence(openNft());
    fence.install();
    return fence;
  } catch (err) {
    throw new Error(`cannot install the kernel fence (nftables tables egressgw_fence): ${(err as Error).message}`, { cause: err });
  }
}

/** Reference mode gates nothing: remove a gate a normal-mode agent left, so its VIPs are not kept silent. */
function removeFence(log: Logger): undefined {
  try {
    new Fence(openNft()).uninstall();
  } catch (err) {
    if (!(err instanceof NftUnavailableError)) log.warn(errFields(err), 'could not remove the kernel fence tables');
  }
  return undefined;
}
