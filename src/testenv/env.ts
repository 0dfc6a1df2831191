// The end-to-end test environment: the whole system on one machine, with real parts only. Used by
// test/e2e, test/deploy, bench/failover.ts and `egressgw lab`.
//
//   test API server (etcd + kube-apiserver libraries), bound to the root side of the management bridge
//     │  CRDs (ours + Cilium fixtures), Node / CiliumNode / cilium-agent Pod objects for each node
//     │  controller: in-process runController (no leader election)
//   management bridge 198.19.x.1 ── mgmt0 in each node namespace (the agent's path to the API)
//   router namespace: br0 198.18.0.1/24 ── eth0 of node1..nodeN (198.18.0.11…): the gateway LAN
//   agents: `ip netns exec <node ns> node bin/egressgw.js agent --node-name nodeI`, one child process each
//
// It is composed of parts a bigger topology can reuse on their own: the network (netns.ts), the control
// plane (controlplane.ts: API server, seed objects, controller), the agents (agents.ts) and the watchers
// (observe.ts). startTestEnv() only wires them together for this one topology.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { PassInfo } from '../controller/controller.ts';
import type { KubeClient } from '../kube/client.ts';
import { errFields, type Logger } from '../kube/log.ts';
import { Agents, type AgentProcess } from './agents.ts';
import type { TestCluster } from './apiserver.ts';
import { Cleanups } from './cleanups.ts';
import { startControlPlane, startController } from './controlplane.ts';
import { FaultProxy, kubeConfigVia } from './faultproxy.ts';
import { FaultProxyProcess } from './faultproxy-process.ts';
import { Network, type NetNode, type NetRouter } from './netns.ts';
import { captureArp, monitorAddresses, monitorNeighbours, udpPoke, type AddrMonitor, type ArpEvent, type ArpProbe, type Capture, type NeighMonitor } from './observe.ts';
import { applyYaml, vipGateway, applyObjects } from './seed.ts';

const execFileAsync = promisify(execFile);

/** The environment names its namespaces and links after this prefix (see netns.ts). */
export const ENV_PREFIX = 'egl';

export interface TestEnvOptions {
  /** Gateway nodes (default 3). */
  nodes?: number;
  /** Extra flags for every agent (e.g. timings). */
  agentArgs?: string[];
  /** Further flags for one node's agent (after agentArgs): a topology with groups of different settings. */
  agentArgsFor?: (node: { name: string }) => string[];
  /** Which nodes get their agent at start (default all; the others with startAgent() later). */
  startAgentFor?: (node: { name: string }) => boolean;
  /** Extra flags for the controller (parsed by parseControllerArgs). */
  controllerArgs?: string[];
  /** Run the controller (default true). */
  controller?: boolean;
  /** Directory for logs (default: a fresh temp dir, removed at stop() unless keepLogs). */
  logDir?: string;
  keepLogs?: boolean;
  /** Called for every controller pass (timestamps for tests and the bench). */
  onPass?: (info: PassInfo) => void;
  /** Where progress is logged (default: silent). */
  log?: Logger;
  /**
   * Put a fault proxy (faultproxy.ts) between the API server and its clients, the agents and the
   * controller; `env.proxy` then injects latency or cuts (default false: direct). `'process'` runs it in
   * a child process (`env.proxyProcess`), whose timing does not depend on how busy the caller's loop is.
   */
  apiProxy?: boolean | 'process';
}

export interface TestEnvNode extends NetNode {
  /** Kubernetes node name (= the network's node name). */
  name: string;
  /** The running agent (replaced by startAgent / restartAgent). */
  agent: AgentProcess;
}

export interface TestEnv {
  cluster: TestCluster;
  client: KubeClient;
  net: Network;
  router: NetRouter;
  nodes: TestEnvNode[];
  logDir: string;
  /** Kubeconfig the agents use (server = the management address, or the proxy's). */
  agentKubeconfigPath: string;
  /** The fault proxy in front of the API server, with `apiProxy`. */
  proxy: FaultProxy | undefined;
  /** The fault proxy in a child process of its own, with `apiProxy: 'process'` (faultproxy-process.ts). */
  proxyProcess: FaultProxyProcess | undefined;
  /** A simple `kubectl apply` of YAML text, a YAML file or objects (seed.ts). */
  applyYaml(input: string | object | object[]): Promise<void>;
  /** Starts the node's agent; `extraArgs` default: the node's agentArgsFor. */
  startAgent(node: TestEnvNode, extraArgs?: string[]): AgentProcess;
  /** Kills (SIGKILL) the node's agent if alive and starts a new one (`extraArgs` as for startAgent). */
  restartAgent(node: TestEnvNode, extraArgs?: string[]): Promise<AgentProcess>;
  /** A VIP-mode gateway over the environment's nodes (or those matching `nodeSelector`). */
  createVipGateway(name: string, ip: string, interfaces?: string[], nodeSelector?: Record<string, string>): Promise<void>;
  /** The node whose namespace holds `ip` on an interface right now, if any. */
  vipHolder(ip: string): Promise<TestEnvNode | undefined>;
  hasAddress(node: TestEnvNode, ip: string): Promise<boolean>;
  /** observe.ts, in this environment's network. */
  captureArp(ns: string, ifname: string, probe?: ArpProbe | readonly ArpProbe[], sink?: (e: ArpEvent) => void): Promise<Capture>;
  udpPoke(ns: string, ip: string): Promise<void>;
  monitorNeighbours(ns: string): Promise<NeighMonitor>;
  monitorAddresses(ns: string): Promise<AddrMonitor>;
  /** Node Ready condition (the environment plays the node lifecycle controller for reference comparisons). */
  setNodeReady(node: string, ready: boolean): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the whole environment. On failure, whatever was started is stopped before the error propagates. */
export async function startTestEnv(opts: TestEnvOptions = {}): Promise<TestEnv> {
  const log = opts.log ?? pino({ level: 'silent' });
  const logDir = opts.logDir ?? mkdtempSync(join(tmpdir(), 'egressgw-lab-'));
  const cleanups = new Cleanups();
  const stop = async (): Promise<void> => {
    await cleanups.run((err) => log.warn(errFields(err), 'test environment cleanup step failed'));
    if (!opts.keepLogs && opts.logDir === undefined) rmSync(logDir, { recursive: true, force: true });
  };
  try {
    const net = await Network.create({ nodes: opts.nodes ?? 3, management: true, prefix: ENV_PREFIX });
    cleanups.push(() => teardown(net, log));
    const mgmt = net.mgmt!;
    log.info({ id: net.id, mgmt: mgmt.hostIp }, 'network namespaces up');

    const viaProxy = opts.apiProxy ?? false;
    const cp = await startControlPlane({
      nodes: net.nodes,
      bindAddress: mgmt.hostIp,
      // With the proxy, the controller starts below, once the proxy is there.
      controller: viaProxy ? false : opts.controller,
      controllerArgs: opts.controllerArgs,
      onPass: opts.onPass,
      logDir,
      log,
    });
    cleanups.push(() => cp.stop());
    const { cluster, client } = cp;
    let proxy: FaultProxy | undefined;
    let proxyProcess: FaultProxyProcess | undefined;
    let proxyUrl: string | undefined;
    if (viaProxy) {
      const server = new URL(cluster.server);
      // Same address as the server (it is in the certificate), another port.
      const target = { host: server.hostname, port: Number(server.port) };
      if (viaProxy === 'process') {
        const p = (proxyProcess = await FaultProxyProcess.start(target, { host: mgmt.hostIp }));
        cleanups.push(() => p.close());
        proxyUrl = p.url;
      } else {
        const p = (proxy = await FaultProxy.start(target, { host: mgmt.hostIp }));
        cleanups.push(() => p.close());
        proxyUrl = p.url;
      }
      if (opts.controller ?? true) {
        const controller = await startController(kubeConfigVia(cluster.kubeConfig, proxyUrl), { args: opts.controllerArgs, onPass: opts.onPass, logFile: join(logDir, 'controller.log') });
        cleanups.push(() => controller.stop());
      }
    }

    // The agents reach the server through the management bridge; the server certificate carries that IP.
    const agentKubeconfigPath = join(logDir, 'agent.kubeconfig');
    const agentConfig = cluster.clientFor('egressgw-agent');
    writeFileSync(agentKubeconfigPath, proxyUrl ? kubeConfigVia(agentConfig, proxyUrl).exportConfig() : readFileSync(cluster.kubeconfigFor('egressgw-agent'), 'utf8'));
    const agents = new Agents(net, { kubeconfigPath: agentKubeconfigPath, logDir, args: opts.agentArgs });
    cleanups.push(() => agents.close());
    const nodes: TestEnvNode[] = net.nodes.map((n) => Object.assign(n, { agent: undefined as unknown as AgentProcess }));
    for (const n of nodes) n.agent = (opts.startAgentFor?.(n) ?? true) ? agents.start(n, opts.agentArgsFor?.(n) ?? []) : Agents.none();
    cleanups.push(async () => {
      for (const n of nodes) await Agents.kill(n.agent);
    });

    const hasAddress = (node: TestEnvNode, ip: string): Promise<boolean> => net.hasAddress(node.ns, ip);
    return {
      cluster,
      client,
      net,
      router: net.router,
      nodes,
      logDir,
      agentKubeconfigPath,
      proxy,
      proxyProcess,
      applyYaml: (input) => applyYaml(client, input),
      startAgent: (node, extraArgs) => (node.agent = agents.start(node, extraArgs ?? opts.agentArgsFor?.(node) ?? [])),
      async restartAgent(node, extraArgs) {
        await Agents.kill(node.agent);
        return (node.agent = agents.start(node, extraArgs ?? opts.agentArgsFor?.(node) ?? []));
      },
      createVipGateway: (name, ip, interfaces, nodeSelector) => applyObjects(client, [vipGateway(name, ip, interfaces, nodeSelector)]),
      async vipHolder(ip) {
        for (const n of nodes) if (await hasAddress(n, ip)) return n;
        return undefined;
      },
      hasAddress,
      captureArp: (ns, ifname, probe, sink) => captureArp(net, ns, ifname, probe, sink),
      udpPoke: (ns, ip) => udpPoke(net, ns, ip),
      monitorNeighbours: (ns) => monitorNeighbours(net, ns),
      monitorAddresses: (ns) => monitorAddresses(net, ns),
      setNodeReady: (name, ready) => cp.setNodeReady(name, ready),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Removes the network; a namespace still busy (a helper process exiting) can make `ip netns del` fail once: retried. */
async function teardown(net: Network, log: Logger): Promise<void> {
  try {
    await net.teardown();
  } catch (err) {
    log.warn(errFields(err), 'namespace teardown failed; retrying');
    for (const ns of net.namespaces()) {
      await net.ip(ns, ['link', 'show']).then(() => execFileAsync('ip', ['netns', 'del', ns]), () => undefined).catch(() => undefined);
    }
  }
}
