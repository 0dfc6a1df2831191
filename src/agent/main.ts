// Wires the agent's parts together and runs them until the signal aborts.
//
// `--dataplane cilium` (default): the agent runs on member nodes and holds VIPs (heartbeat, fencing).
// `--dataplane linux`: the agent runs on every node and programs its node's share of the data plane; the
// VIP part (and with it the heartbeat Lease, two writes a second) runs only while the Node carries the
// member label: 5,000 agents renewing Leases would be 10,000 API writes a second for nothing.

import { MEMBER_LABEL } from '../api/names.ts';
import type { NodeLike } from '../api/types.ts';
import { KubeClient, isObjectGone, loadKubeConfig } from '../kube/client.ts';
import { EventRecorder } from '../kube/events.ts';
import { Informer } from '../kube/informer.ts';
import { createLogger, errFields, type Logger } from '../kube/log.ts';
import { NODES } from '../kube/resources.ts';
import { Agent, type VipAnnouncer } from './agent.ts';
import { DataplaneAgent } from './dataplane/agent.ts';
import { ConntrackTool } from './dataplane/conntrack.ts';
import { createRunner } from './net/exec.ts';
import { LinuxDataplane } from './dataplane/linux.ts';
import { createDataplaneMetrics } from './dataplane/metrics.ts';
import { startHealthServer, type ReadinessCheck } from './health.ts';
import { createAgentMetrics } from './metrics.ts';
import { IpRoute } from './net/iproute.ts';
import { NftUnavailableError, openNft } from './net/nft.ts';
import { loadAddon } from './net/packet.ts';
import { Fence } from './fence.ts';
import type { AgentOptions } from './options.ts';
import { WireAnnouncer } from './wire.ts';

export const REPORTING_AGENT = 'network.deckhouse.io/egressgw-agent';

export async function runAgent(o: AgentOptions, { signal, log }: { signal: AbortSignal; log?: Logger }): Promise<void> {
  const logger = (log ?? createLogger(o.logLevel)).child({ component: 'agent', node: o.nodeName });
  // Fail at start-up, clearly, rather than at the first takeover.
  loadAddon();
  const client = new KubeClient(loadKubeConfig(o.kubeconfig));
  const metrics = createAgentMetrics(o.nodeName);
  const linux = o.dataplane === 'linux';
  // The kernel switch: installed before anything else, except in linux mode, where the agent runs on every
  // node and installs it when its node becomes a member (before the VIP part starts); a node that never is
  // one carries no fence tables.
  let fence = !o.heartbeat ? removeFence(logger) : linux ? undefined : installFence();
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
  // In linux mode the VIP part comes and goes with the member label; the announcer (its sockets) lives as
  // long as the process, so a stopping VIP part must not close it: main does, at exit.
  const shared: VipAnnouncer = {
    advertise: (ip, ifname) => announcer.advertise(ip, ifname),
    withdraw: (ip) => announcer.withdraw(ip),
    selfCheck: () => announcer.selfCheck(),
    close: () => undefined,
  };
  // The wire answers for a VIP only when the current VIP part allows it (ref.agent, the kernel switch's deadline).
  // In linux mode a takeover first seeds the previous owner's SNAT remaps (docs/dataplane.md, failover).
  const beforeTake = linux ? { beforeTake: (ip: string) => dataplane?.seedRemaps(ip) ?? Promise.resolve() } : {};
  const newVipAgent = () => (ref.agent = new Agent(o, { client, addresses, announcer: linux ? shared : announcer, metrics, log: logger, ...(fence ? { fence } : {}), ...beforeTake }));

  let plane: LinuxDataplane | undefined;
  let dataplane: DataplaneAgent | undefined;
  let membership: Informer<NodeLike> | undefined;
  let vip: Agent | undefined;
  /** Member transitions run one at a time (a stop must finish before the next start). */
  let vipQueue: Promise<void> = Promise.resolve();
  if (linux) {
    plane = new LinuxDataplane(o.dataplaneSettings, createRunner({ binaries: { nft: o.nftPath } }));
    const events = new EventRecorder(client, { reportingController: REPORTING_AGENT, reportingInstance: `egressgw-agent-${o.nodeName}`, logger });
    // Its own Node: the member label gates the VIP part; the labels tell the data plane which gateways it is
    // a candidate of.
    membership = new Informer<NodeLike>(client, { resource: NODES, fieldSelector: `metadata.name=${o.nodeName}`, logger, minBackoffMs: 250, maxBackoffMs: 5000 });
    const own = membership;
    dataplane = new DataplaneAgent(
      { nodeName: o.nodeName, podCIDRs: o.podCIDRs, serviceCIDRs: o.serviceCIDRs },
      { client, plane, addresses, metrics: createDataplaneMetrics(metrics.registry), events, log: logger, nodeLabels: () => own.get(o.nodeName)?.metadata.labels, conntrack: new ConntrackTool(createRunner({ timeoutMs: 10_000 })) },
    );
    await dataplane.start();
    const follow = () => {
      vipQueue = vipQueue.then(async () => {
        if (signal.aborted) return;
        const member = membership!.get(o.nodeName)?.metadata.labels?.[MEMBER_LABEL] !== undefined;
        if (member && !vip) {
          logger.info('this node is a gateway member: starting the heartbeat and the VIP part');
          // A VIP part that stopped released the kernel switch's tables: a new one installs them again.
          if (o.heartbeat) fence = installFence();
          vip = newVipAgent();
          await vip.start();
        } else if (!member && vip) {
          logger.info('this node is no longer a gateway member: withdrawing VIPs and the heartbeat');
          const v = vip;
          vip = undefined;
          await v.stop();
          if (ref.agent === v) ref.agent = undefined;
        }
      }).catch((err: unknown) => logger.error(errFields(err), 'following the member label failed'));
    };
    membership.onEvent(() => {
      follow();
      dataplane?.nodeChanged();
    });
    membership.start();
  } else {
    vip = newVipAgent();
  }

  const ready = (): ReadinessCheck => {
    const reasons: string[] = [];
    if (vip) reasons.push(...vip.readiness().reasons);
    const d = dataplane?.readiness();
    if (d && !d.ok) reasons.push(d.reason ?? 'dataplane not ready');
    return { ok: reasons.length === 0, reasons };
  };
  const health = await startHealthServer({ host: o.metricsHost, port: o.metricsPort, registry: metrics.registry, ready });
  logger.info({
    metrics: health.address,
    dataplane: o.dataplane,
    heartbeat: o.heartbeat ? `${o.heartbeatNamespace}/every ${o.renewIntervalMs}ms, duration ${o.leaseDurationMs}ms${linux ? ', while a member' : ''}` : 'disabled (reference mode)',
    addressLifetimeMs: o.addressLifetimeMs,
    refreshIntervalMs: o.refreshIntervalMs,
    fenceAfterMs: o.fenceAfterMs,
    fence: !o.heartbeat ? 'none (reference mode)' : linux ? 'nftables (arp + inet egressgw_fence), while a member' : 'nftables (arp + inet egressgw_fence)',
  }, 'agent started');
  if (!linux) await vip!.start();
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
  logger.info({ signal: String(signal.reason) }, 'shutting down: withdrawing VIPs, deleting the heartbeat lease');
  try {
    membership?.stop();
    await vipQueue;
    await vip?.stop();
    await dataplane?.stop();
    if (linux) await announcer.close();
    if (plane && (o.cleanup || (await uninstalling(client, o.daemonSet, logger)))) {
      const removed = await plane.cleanup();
      // The kernel switch's tables too (a VIP part that stopped released them already): nothing of ours stays.
      removeFence(logger);
      logger.info({ removed }, o.cleanup ? 'removed the data plane (--cleanup)' : 'removed the data plane (the agent DaemonSet is gone: uninstall)');
    }
  } catch (err) {
    logger.error(errFields(err), 'shutdown incomplete');
  }
  await health.close();
  logger.info('agent stopped');
}

/**
 * Whether this exit is an uninstall: the agent's DaemonSet is gone or being deleted. An ordinary restart
 * (rolling update, eviction) finds it in place and keeps the kernel state, so traffic keeps flowing while
 * the new pod starts. When the API cannot say, the state stays (a restart is far more common).
 */
export async function uninstalling(client: KubeClient, daemonSet: string, log: Logger): Promise<boolean> {
  if (daemonSet === '') return false;
  const [namespace, name] = daemonSet.split('/') as [string, string];
  try {
    const ds = await client.get<{ metadata?: { deletionTimestamp?: string } }>({ group: 'apps', version: 'v1', plural: 'daemonsets', namespace }, name);
    return Boolean(ds.metadata?.deletionTimestamp);
  } catch (err) {
    // Only a 404 naming the DaemonSet is an uninstall: a 404 for the resource (not served right after an
    // API server restart) must not tear the data plane down.
    if (isObjectGone(err, name)) return true;
    log.warn({ ...errFields(err), daemonSet }, 'cannot tell whether this is an uninstall; keeping the data plane');
    return false;
  }
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
