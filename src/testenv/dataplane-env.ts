// The netns cluster of the Linux data plane (`--dataplane linux`): the whole system with real packets.
//
//   router ── LAN 198.18.0.0/24 ── node1..node3 (gateway nodes, 198.18.0.11-13)
//                                ── node4, node5 (workers, 198.18.0.14-15), 2 pod namespaces each
//   router ── internet host 203.0.113.10 and 198.51.100.10 (podnet.ts)
//   test API server (management bridge), Node objects with their InternalIPs, Namespaces and Pod objects
//   whose status.podIP are the pod namespaces' addresses, the controller (`--dataplane linux`) and one
//   agent per node (`--dataplane linux`), each a process in its node's namespace.
//
// Built from the test environment's parts (netns.ts, controlplane.ts, agents.ts) and podnet.ts.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { PassInfo } from '../controller/controller.ts';
import type { KubeClient } from '../kube/client.ts';
import { isStatus } from '../kube/client.ts';
import { errFields, type Logger } from '../kube/log.ts';
import { namespaces as NAMESPACES, pods as PODS } from '../kube/resources.ts';
import { Agents, type AgentProcess } from './agents.ts';
import type { TestCluster } from './apiserver.ts';
import { Cleanups } from './cleanups.ts';
import { startControlPlane } from './controlplane.ts';
import { Network, type NetNode } from './netns.ts';
import { POD_CIDR, SERVICE_CIDR, addPodNet, setUplink, type PodNet, type PodNs } from './podnet.ts';
import { Traffic } from './traffic.ts';
import { createRunner } from '../agent/net/exec.ts';
import { jsonElements, jsonNames } from '../agent/net/nft.ts';
import { LinuxDataplane } from '../agent/dataplane/linux.ts';
import { DEFAULT_DATAPLANE_SETTINGS, isOurTable, type RouteSpec, type RuleSpec } from '../dataplane/render.ts';

export const DATAPLANE_ENV_PREFIX = 'egk';
export const GATEWAY_NODES = 3;
export const WORKER_NODES = 2;

export interface DataplaneEnvOptions {
  /** Run the controller in this process (default true; the RBAC audit runs its own, as its ServiceAccount). */
  controller?: boolean;
  agentArgs?: string[];
  controllerArgs?: string[];
  onPass?: (info: PassInfo) => void;
  log?: Logger;
  keepLogs?: boolean;
}

export interface DataplaneNode extends NetNode {
  gateway: boolean;
  agent: AgentProcess;
}

/** What a node's kernel holds of ours, read the way an operator would (`nft -j list table`, `ip rule`, `ip route`). */
export interface KernelView {
  table: boolean;
  /** known4: the node's pods the data plane knows. */
  known: string[];
  /** pods4: the pods redirected (selected by some policy). */
  selected: string[];
  /** Class chains (`c_…`) and gateway chains (`gw_…`). */
  classes: number;
  gatewayChains: number;
  rules: RuleSpec[];
  routes: RouteSpec[];
  device: boolean;
}

/** Reads a node's data plane state from outside the agent. */
export async function kernelView(ns: string): Promise<KernelView> {
  const st = await new LinuxDataplane(DEFAULT_DATAPLANE_SETTINGS, createRunner({ netns: ns })).state();
  const known = jsonElements(st.table, 'set', 'known4').map(String);
  const selected = jsonElements(st.table, 'map', 'pods4').map((e) => String((e as unknown[])[0]));
  const chains = jsonNames(st.table, 'chain');
  return {
    table: st.table !== undefined,
    known,
    selected,
    classes: chains.filter((c) => c.startsWith('c_')).length,
    gatewayChains: chains.filter((c) => c.startsWith('gw_')).length,
    rules: st.rules,
    routes: st.routes,
    device: st.device,
  };
}

/**
 * Everything on a node that is NOT ours, as text to compare before and after: the other nftables tables
 * (the CNI's masquerade, …; tables named egressgw* are egressgw's own), the ip rules outside our priority,
 * the main route table and the link names other than the tunnel device. A bad input must leave it as it was.
 */
export async function foreignView(ns: string, runner = createRunner({ netns: ns })): Promise<string> {
  const s = DEFAULT_DATAPLANE_SETTINGS;
  const ruleset = JSON.parse(await runner.run('nft', ['-j', 'list', 'ruleset'])) as { nftables: Array<Record<string, { table?: string; name?: string }>> };
  const tableOf = (o: Record<string, { table?: string; name?: string }>) => {
    const [kind, v] = Object.entries(o)[0]!;
    return kind === 'table' ? v.name : v.table;
  };
  const nft = ruleset.nftables.filter((o) => !('metainfo' in o) && !String(tableOf(o)).startsWith('egressgw'));
  const rules = (await runner.run('ip', ['-4', 'rule', 'show'])).split('\n').filter((l) => l.trim() !== '' && !l.startsWith(`${s.rulePriority}:`));
  const routes = (await runner.run('ip', ['-4', 'route', 'show', 'table', 'main'])).trim();
  const links = (await runner.run('ip', ['-o', 'link', 'show'])).split('\n').map((l) => l.split(':')[1]?.trim().split('@')[0] ?? '').filter((n) => n !== '' && n !== s.device);
  return JSON.stringify({ nft, rules, routes, links }, null, 1);
}

/**
 * Everything of egressgw on a node, read with the operator's tools only (not through LinuxDataplane, the
 * code under test): the nftables tables named egressgw* (`nft -j list ruleset`, any family: the fence's
 * `arp`/`inet egressgw_fence` and the data plane's `inet egressgw`), the ip rules at our priority or into our
 * table range (`ip rule`), the routes in our tables or through the tunnel device (`ip route show table all`),
 * the tunnel device (`ip link`) and the given addresses (a VIP) on any interface (`ip addr`).
 */
export interface OursView {
  tables: string[];
  rules: string[];
  routes: string[];
  links: string[];
  addresses: string[];
}

export async function oursView(ns: string, addresses: readonly string[] = [], runner = createRunner({ netns: ns })): Promise<OursView> {
  const s = DEFAULT_DATAPLANE_SETTINGS;
  const ruleset = JSON.parse(await runner.run('nft', ['-j', 'list', 'ruleset'])) as { nftables: Array<{ table?: { family: string; name: string } }> };
  const tables = ruleset.nftables.flatMap((o) => (o.table && o.table.name.startsWith('egressgw') ? [`${o.table.family} ${o.table.name}`] : [])).sort();
  const lines = (out: string) => out.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const ourTable = (l: string) => isOurTable(Number(/\b(?:table|lookup) (\d+)\b/.exec(l)?.[1]), s);
  const rules = lines(await runner.run('ip', ['rule', 'show'])).filter((l) => l.startsWith(`${s.rulePriority}:`) || ourTable(l));
  const routes = lines(await runner.run('ip', ['route', 'show', 'table', 'all'])).filter((l) => ourTable(l) || l.includes(`dev ${s.device} `) || l.endsWith(`dev ${s.device}`));
  const links = lines(await runner.run('ip', ['-o', 'link', 'show'])).map((l) => l.split(':')[1]?.trim().split('@')[0] ?? '').filter((n) => n === s.device);
  const addrs = lines(await runner.run('ip', ['-o', 'addr', 'show'])).flatMap((l) => addresses.filter((a) => l.includes(` ${a}/`)));
  return { tables, rules, routes, links, addresses: addrs };
}

export interface DataplaneEnv {
  cluster: TestCluster;
  client: KubeClient;
  net: Network;
  podNet: PodNet;
  nodes: DataplaneNode[];
  gateways: DataplaneNode[];
  workers: DataplaneNode[];
  pods: PodNs[];
  logDir: string;
  /** The traffic helper in a namespace (one per namespace, started on first use). */
  traffic(ns: string): Promise<Traffic>;
  /** Creates (or updates) the Pod object of a pod namespace: Kubernetes namespace, labels, status.podIP. */
  putPod(pod: PodNs, namespace: string, labels: Record<string, string>): Promise<void>;
  deletePod(pod: PodNs, namespace: string): Promise<void>;
  putNamespace(name: string, labels?: Record<string, string>): Promise<void>;
  /** A node's uplink down, or up again with its routes restored (podnet.ts setUplink). */
  setUplink(node: DataplaneNode, state: 'up' | 'down'): Promise<void>;
  startAgent(node: DataplaneNode, extraArgs?: string[]): AgentProcess;
  restartAgent(node: DataplaneNode, extraArgs?: string[]): Promise<AgentProcess>;
  stop(): Promise<void>;
}

/** The agent flags of the Linux data plane in this cluster. */
export const LINUX_AGENT_ARGS = ['--dataplane', 'linux', '--pod-cidr', POD_CIDR, '--service-cidr', SERVICE_CIDR];

export async function startDataplaneEnv(opts: DataplaneEnvOptions = {}): Promise<DataplaneEnv> {
  const log = opts.log ?? pino({ level: 'silent' });
  const logDir = mkdtempSync(join(tmpdir(), 'egressgw-dataplane-'));
  const cleanups = new Cleanups();
  const stop = async (): Promise<void> => {
    await cleanups.run((err) => log.warn(errFields(err), 'dataplane environment cleanup step failed'));
    if (!opts.keepLogs) rmSync(logDir, { recursive: true, force: true });
  };
  try {
    const net = await Network.create({ nodes: GATEWAY_NODES + WORKER_NODES, management: true, prefix: DATAPLANE_ENV_PREFIX });
    cleanups.push(() => net.teardown());
    const isGateway = (i: number) => i < GATEWAY_NODES;
    const podsPerNode: Record<string, number> = {};
    net.nodes.forEach((n, i) => {
      if (!isGateway(i)) podsPerNode[n.name] = 2;
    });
    const podNet = await addPodNet(net, podsPerNode);
    const cp = await startControlPlane({
      nodes: net.nodes.map((n, i) => ({ name: n.name, ip: n.ip, gateway: isGateway(i) })),
      bindAddress: net.mgmt!.hostIp,
      controller: opts.controller,
      controllerArgs: ['--dataplane', 'linux', ...(opts.controllerArgs ?? [])],
      onPass: opts.onPass,
      logDir,
      log,
    });
    cleanups.push(() => cp.stop());
    const { cluster, client } = cp;
    const kubeconfig = join(logDir, 'agent.kubeconfig');
    writeFileSync(kubeconfig, readFileSync(cluster.kubeconfigFor('egressgw-agent'), 'utf8'));
    const agents = new Agents(net, { kubeconfigPath: kubeconfig, logDir, args: [...LINUX_AGENT_ARGS, ...(opts.agentArgs ?? [])] });
    cleanups.push(() => agents.close());
    const nodes: DataplaneNode[] = net.nodes.map((n, i) => Object.assign(n, { gateway: isGateway(i), agent: undefined as unknown as AgentProcess }));
    for (const n of nodes) n.agent = agents.start(n);
    cleanups.push(async () => {
      for (const n of nodes) await Agents.kill(n.agent);
    });
    const helpers = new Map<string, Promise<Traffic>>();
    cleanups.push(async () => {
      for (const h of helpers.values()) await (await h.catch(() => undefined))?.close();
    });

    const putNamespace = async (name: string, labels: Record<string, string> = {}) => {
      const body = { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } };
      try {
        await client.create(NAMESPACES, body);
      } catch (err) {
        if (!isStatus(err, 409)) throw err;
        await client.mergePatch(NAMESPACES, name, { metadata: { labels } });
      }
    };
    return {
      cluster,
      client,
      net,
      podNet,
      nodes,
      gateways: nodes.filter((n) => n.gateway),
      workers: nodes.filter((n) => !n.gateway),
      pods: podNet.pods,
      logDir,
      traffic(ns) {
        let h = helpers.get(ns);
        if (!h) helpers.set(ns, (h = Traffic.start((n, cmd, args) => net.spawnIn(n, cmd, args), ns)));
        return h;
      },
      async putPod(pod, namespace, labels) {
        const ref = PODS(namespace);
        const body = {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: pod.name, namespace, labels },
          spec: { nodeName: pod.node, containers: [{ name: 'app', image: 'lab.invalid/app:none' }] },
        };
        try {
          await client.create(ref, body);
        } catch (err) {
          if (!isStatus(err, 409)) throw err;
          // Labels replaced, not merged: a relabelled pod loses the old ones.
          const cur = await client.get<{ metadata: { labels?: Record<string, string> } }>(ref, pod.name);
          const patch: Record<string, string | null> = { ...labels };
          for (const k of Object.keys(cur.metadata.labels ?? {})) if (!(k in labels)) patch[k] = null;
          await client.mergePatch(ref, pod.name, { metadata: { labels: patch } });
        }
        await client.mergePatch(ref, pod.name, { status: { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }] } }, 'status');
      },
      async deletePod(pod, namespace) {
        await client.deleteIfExists(PODS(namespace), pod.name);
      },
      putNamespace,
      setUplink: (node, state) => setUplink(net, podNet, node, state),
      startAgent: (node, extraArgs) => (node.agent = agents.start(node, extraArgs)),
      async restartAgent(node, extraArgs) {
        await Agents.kill(node.agent);
        return (node.agent = agents.start(node, extraArgs));
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
