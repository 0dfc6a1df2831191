// The chaos suite's cluster, composed from the test environment's parts (src/testenv):
//
//   test API server + etcd (restartable, data kept), audit log          ← the suite reads, writes, checks
//     │ fault proxy, HTTP mode (TLS terminated with the server's own certificate), on the management bridge
//     ├── controller replicas a and b: `egressgw controller` processes with leader election, each in a
//     │   namespace of its own (ctl-a, ctl-b) with its own address and user; restarted when they exit
//     └── agents: `egressgw agent` in each node namespace (mgmt0 → proxy), the shipped timings
//   gateway LAN: router br0 ── eth0 of node1…nodeN; an observer host asking for every VIP, every node's
//   and the router's address, recording who answers (ARP, stamped by the kernel: tcpdump)
//   `--dataplane linux`: the controller replicas and every agent run with it (dataplane-env.ts's agent
//   flags); pod network namespaces on the first nodes, an internet host behind the router (podnet.ts)
//
// Everything the faults act on is reachable from here (FaultTarget), and everything the checks read.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_NAMESPACE } from '../../src/api/names.ts';
import type { LeaseLike } from '../../src/api/types.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { leases } from '../../src/kube/resources.ts';
import { Agents, type AgentProcess } from '../../src/testenv/agents.ts';
import type { TestCluster } from '../../src/testenv/apiserver.ts';
import { Cleanups } from '../../src/testenv/cleanups.ts';
import { startControlPlane } from '../../src/testenv/controlplane.ts';
import { ControllerReplicas } from '../../src/testenv/controllers.ts';
import { LINUX_AGENT_ARGS } from '../../src/testenv/dataplane-env.ts';
import { FaultProxy, kubeConfigVia, type FaultRule } from '../../src/testenv/faultproxy.ts';
import { POD_CIDR, addPodNet, setUplink, type PodNet } from '../../src/testenv/podnet.ts';
import type { DataplaneMode } from '../../src/api/names.ts';
import { Network, ROUTER_IP, type NetNode } from '../../src/testenv/netns.ts';
import { captureArp, captureArpKernelTime, type ArpEvent, type ArpProbe, type Capture } from '../../src/testenv/observe.ts';
import { AuditTail } from './audit.ts';
import { readKernel, type LinuxKernel } from './linux.ts';
import type { LinuxNodes } from './invariants.ts';
import type { PodSlot } from './world.ts';
import type { FaultTarget, Scope } from './faults.ts';
import { allVips } from './world.ts';

export const OBSERVER_IP = '198.18.0.250';
/** How often the observer asks for each VIP, and for the hosts' own addresses. */
// Every broadcast question wakes every agent's packet socket: on a loaded 2-core machine the observer
// must not be what delays the agents' renewals.
export const VIP_PROBE_MS = 100;
export const HOST_PROBE_MS = 500;
export const LEADER_LEASE = { namespace: DEFAULT_NAMESPACE, name: 'egressgw-controller' };
const REPLICAS = [{ name: 'a', hostNumber: 201 }, { name: 'b', hostNumber: 202 }];
/** linux: pod network namespaces per node, on the first POD_NODES nodes (one node has none). */
const PODS_PER_NODE = 2;
const POD_NODES = 3;

/** The pod slots a linux cluster of these nodes has (as podnet.ts lays them out), for planning without one. */
export function plannedPodSlots(nodeNames: readonly string[]): PodSlot[] {
  return nodeNames.slice(0, POD_NODES).flatMap((node) => {
    const k = Number(/(\d+)$/.exec(node)?.[1]);
    return Array.from({ length: PODS_PER_NODE }, (_, i) => ({ name: `p${k}-${i + 1}`, node, ip: `198.18.${16 + k}.${11 + i}` }));
  });
}

export interface ChaosNode extends NetNode {
  mgmtIp: string;
  agent: AgentProcess;
}

export interface AgentCrash {
  node: string;
  at: number;
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ChaosClusterOptions {
  nodes: number;
  /** Keep the logs (default: removed at stop). */
  logDir?: string;
  /** Extra flags for every agent / controller replica (default: none; the shipped defaults). */
  agentArgs?: string[];
  controllerArgs?: string[];
  /** Data plane of the controller replicas and agents (default cilium). */
  dataplane?: DataplaneMode;
}

export class ChaosCluster implements FaultTarget {
  readonly net: Network;
  readonly cluster: TestCluster;
  /** The suite's own client: admin, straight to the API server (never through the proxy). */
  readonly client: KubeClient;
  readonly proxy: FaultProxy;
  readonly controllers: ControllerReplicas;
  readonly nodes: ChaosNode[];
  readonly observer: { ns: string; ip: string; mac: string };
  readonly audit: AuditTail;
  readonly logDir: string;
  readonly dataplane: DataplaneMode;
  /** linux: the pod network namespaces and the internet host. */
  readonly podNet: PodNet | undefined;
  /** ARP frames the observer heard since the last takeFrames(). */
  #frames: ArpEvent[] = [];
  readonly agentCrashes: AgentCrash[] = [];
  readonly #agents: Agents;
  readonly #cleanups: Cleanups;
  /** Agents the suite is killing: their exit is no crash. */
  readonly #killing = new Set<AgentProcess>();

  private constructor(parts: {
    net: Network; cluster: TestCluster; client: KubeClient; proxy: FaultProxy; controllers: ControllerReplicas; nodes: ChaosNode[];
    observer: ChaosCluster['observer']; logDir: string; agents: Agents; cleanups: Cleanups; dataplane: DataplaneMode; podNet: PodNet | undefined;
  }) {
    this.dataplane = parts.dataplane;
    this.podNet = parts.podNet;
    this.net = parts.net;
    this.cluster = parts.cluster;
    this.client = parts.client;
    this.proxy = parts.proxy;
    this.controllers = parts.controllers;
    this.nodes = parts.nodes;
    this.observer = parts.observer;
    this.logDir = parts.logDir;
    this.#agents = parts.agents;
    this.#cleanups = parts.cleanups;
    this.audit = new AuditTail(parts.cluster.auditLogPath);
  }

  static async start(opts: ChaosClusterOptions): Promise<ChaosCluster> {
    const ownDir = opts.logDir === undefined;
    const logDir = opts.logDir ?? mkdtempSync(join(tmpdir(), 'egressgw-chaos-'));
    const cleanups = new Cleanups();
    const fail = async (err: unknown): Promise<never> => {
      await cleanups.run(() => undefined);
      if (ownDir) rmSync(logDir, { recursive: true, force: true });
      throw err;
    };
    try {
      const net = await Network.create({ nodes: opts.nodes, management: true, prefix: 'ech' });
      cleanups.push(() => net.teardown());
      const mgmt = net.mgmt!;
      const observerHost = await net.addLanHost('observer', OBSERVER_IP);
      const dataplane = opts.dataplane ?? 'cilium';
      const linux = dataplane === 'linux';
      const podNet = linux ? await addPodNet(net, Object.fromEntries(net.nodes.slice(0, POD_NODES).map((n) => [n.name, PODS_PER_NODE]))) : undefined;
      const cp = await startControlPlane({ nodes: net.nodes, bindAddress: mgmt.hostIp, controller: false, logDir, keepLogs: true });
      cleanups.push(() => cp.stop());
      const server = new URL(cp.cluster.server);
      const proxy = await FaultProxy.start({ host: server.hostname, port: Number(server.port) }, { host: mgmt.hostIp }, { http: cp.cluster.servingTLS() });
      cleanups.push(() => proxy.close());
      const agentKubeconfig = join(logDir, 'agent.kubeconfig');
      writeFileSync(agentKubeconfig, kubeConfigVia(cp.cluster.clientFor('egressgw-agent'), proxy.url).exportConfig());
      const agents = new Agents(net, { kubeconfigPath: agentKubeconfig, logDir, args: [...(linux ? LINUX_AGENT_ARGS : []), ...(opts.agentArgs ?? [])] });
      cleanups.push(() => agents.close());
      const controllers = await ControllerReplicas.start(net, REPLICAS, {
        kubeConfigFor: (user) => kubeConfigVia(cp.cluster.clientFor(user), proxy.url),
        logDir,
        args: [...(linux ? ['--dataplane', 'linux'] : []), ...(opts.controllerArgs ?? [])],
      });
      cleanups.push(() => controllers.close());
      const nodes: ChaosNode[] = net.nodes.map((n) => Object.assign(n, { mgmtIp: n.mgmt!.ip, agent: Agents.none() }));
      const c = new ChaosCluster({ net, cluster: cp.cluster, client: cp.client, proxy, controllers, nodes, observer: observerHost, logDir, agents, cleanups, dataplane, podNet });
      cleanups.push(async () => {
        for (const n of nodes) await c.killAgent(n.name);
      });
      for (const n of nodes) c.startAgent(n.name);
      await c.#startObserver();
      return c;
    } catch (err) {
      return fail(err);
    }
  }

  async #startObserver(): Promise<void> {
    const probe = (ip: string, intervalMs: number): ArpProbe => ({ ip, intervalMs, senderIp: this.observer.ip, senderMac: this.observer.mac });
    const probes = [...allVips().keys()].map((ip) => probe(ip, VIP_PROBE_MS));
    for (const ip of [ROUTER_IP, ...this.nodes.map((n) => n.ip)]) probes.push(probe(ip, HOST_PROBE_MS));
    // What is heard comes from tcpdump, stamped by the kernel on arrival: the answers are held to
    // deadlines, and on a starved machine the asking process reads them up to a second late.
    const heard = await captureArpKernelTime(this.net, this.observer.ns, 'eth0', (mac) => (mac === this.observer.mac ? this.observer.ip : undefined), (e) => this.#frames.push(e));
    this.#cleanups.push(() => heard.stop());
    const asker: Capture = await captureArp(this.net, this.observer.ns, 'eth0', probes, () => undefined);
    this.#cleanups.push(() => asker.stop());
  }

  /** The frames heard since the last call (and forgets them). */
  takeFrames(): ArpEvent[] {
    const f = this.#frames;
    this.#frames = [];
    return f;
  }

  node(name: string): ChaosNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  /** IPv4 addresses on the node's interfaces now. */
  async addresses(node: string): Promise<string[]> {
    const out = await this.net.ip(this.node(node).ns, ['-o', '-4', 'addr', 'show']);
    return [...out.matchAll(/\binet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1]!);
  }

  /** linux: the world's pod slots (the pod network namespaces: name, node, address). */
  podSlots(): PodSlot[] {
    return (this.podNet?.pods ?? []).map((p) => ({ name: p.name, node: p.node, ip: p.ip }));
  }

  /** linux: a node's data plane as its kernel holds it (nft and ip in its namespace). */
  kernel(node: string): Promise<LinuxKernel> {
    const ns = this.node(node).ns;
    return readKernel((cmd, args) => this.net.exec(ns, cmd, args));
  }

  /** What the linux invariant reads (undefined with the Cilium data plane). */
  linuxNodes(): LinuxNodes | undefined {
    if (this.dataplane !== 'linux') return undefined;
    return { kernelOf: (n) => this.kernel(n), nodeIps: new Map(this.nodes.map((n) => [n.name, n.ip])), podCIDR: POD_CIDR };
  }

  /** Owner MAC by host address (the router's and the nodes'). */
  hostOwners(): Map<string, string> {
    return new Map([[this.net.router.ip, this.net.router.mac], ...this.nodes.map((n) => [n.ip, n.mac] as [string, string])]);
  }

  async stop(): Promise<void> {
    this.audit.close();
    await this.#cleanups.run(() => undefined);
  }

  // ---- FaultTarget ----

  async clientsOf(scope: Scope): Promise<string[] | undefined> {
    switch (scope.to) {
      case 'all':
        return undefined;
      case 'agents':
        return this.nodes.map((n) => n.mgmtIp);
      case 'agent':
        return [this.node(scope.node).mgmtIp];
      case 'controllers':
        return this.controllers.replicas.map((r) => r.ip);
      case 'controller':
        return [this.controllers.replica(await this.replica(scope.which)).ip];
    }
  }

  addProxyRule(rule: FaultRule): () => void {
    return this.proxy.add(rule);
  }

  resetConnections(clients: string[] | undefined): void {
    this.proxy.reset(clients ? { clients } : {});
  }

  restartApiServer(kill: boolean, downMs: number): Promise<void> {
    return this.cluster.restartApiServer({ kill, downMs });
  }

  restartEtcd(kill: boolean, downMs: number): Promise<void> {
    return this.cluster.restartEtcd({ kill, downMs });
  }

  async compactEtcd(): Promise<void> {
    await this.cluster.compactEtcd();
  }

  signalApiServer(signal: NodeJS.Signals): void {
    signalProcess(this.cluster.processes().apiserver.pid, signal);
  }

  signalEtcd(signal: NodeJS.Signals): void {
    signalProcess(this.cluster.processes().etcd.pid, signal);
  }

  /** kill -9 of the node's agent (continued first if frozen), waiting for its exit. */
  async killAgent(node: string): Promise<void> {
    const n = this.node(node);
    if (!n.agent.alive()) return;
    this.#killing.add(n.agent);
    await Agents.kill(n.agent);
  }

  /** Starts the node's agent unless one runs. */
  startAgent(node: string): void {
    const n = this.node(node);
    if (n.agent.alive()) return;
    const agent = this.#agents.start(n);
    n.agent = agent;
    void agent.exited.then(({ code, signal }) => {
      if (!this.#killing.has(agent)) this.agentCrashes.push({ node, at: Date.now(), code, signal });
      this.#killing.delete(agent);
    });
  }

  signalAgent(node: string, signal: NodeJS.Signals): void {
    const a = this.node(node).agent;
    if (a.alive()) signalProcess(a.pid, signal);
  }

  /** The replica holding the leader Lease now ('leader'), or the other one; replica a when unknown. */
  async replica(which: 'leader' | 'standby'): Promise<string> {
    let holder: string | undefined;
    try {
      const lease = await this.client.tryGet<LeaseLike>(leases(LEADER_LEASE.namespace), LEADER_LEASE.name);
      holder = this.controllers.byIdentity(lease?.spec?.holderIdentity ?? '')?.name;
    } catch {
      // the API may be down: any replica will do
    }
    const names = this.controllers.replicas.map((r) => r.name);
    const leader = holder ?? names[0]!;
    return which === 'leader' ? leader : names.find((n) => n !== leader)!;
  }

  signalController(name: string, signal: NodeJS.Signals): void {
    this.controllers.signal(name, signal);
  }

  async setLink(node: string, state: 'up' | 'down'): Promise<void> {
    const n = this.node(node);
    // With pods, the node's routes to the other nodes' pod CIDRs come back with the link too.
    if (this.podNet) return setUplink(this.net, this.podNet, n, state);
    await this.net.setLink(n.ns, n.ifname, state);
    // Link down drops the routes through it; bring the default route back with the link.
    if (state === 'up') await this.net.ip(n.ns, ['route', 'replace', 'default', 'via', ROUTER_IP]).catch(() => undefined);
  }

  /**
   * Undoes whatever is left of the faults: no proxy rule, every process running and continued, every
   * link up. Restarts and compactions still running are the round's to await first.
   */
  async heal(): Promise<void> {
    this.proxy.clear();
    for (const p of [this.cluster.processes().etcd.pid, this.cluster.processes().apiserver.pid]) signalProcess(p, 'SIGCONT');
    this.controllers.heal();
    for (const n of this.nodes) {
      if (n.agent.alive()) signalProcess(n.agent.pid, 'SIGCONT');
      else this.startAgent(n.name);
      await this.setLink(n.name, 'up');
    }
  }
}

function signalProcess(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(pid, signal);
  } catch {
    // gone
  }
}
