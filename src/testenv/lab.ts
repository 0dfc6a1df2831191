// The end-to-end lab: the whole system on one machine, with real parts only.
//
//   test API server (etcd + kube-apiserver libraries), bound to the root side of the management bridge
//     │  CRDs (ours + Cilium fixtures), Node / CiliumNode / cilium-agent Pod objects for each node
//     │  controller: in-process runController (no leader election)
//   management bridge 198.19.x.1 ── mgmt0 in each node namespace (the agent's path to the API)
//   router namespace: br0 198.18.0.1/24 ── eth0 of node1..nodeN (198.18.0.11…): the gateway LAN
//   agents: `ip netns exec <node ns> node bin/egressgw.js agent --node-name nodeI`, one child process each
//
// There is no kubelet and no Cilium here: the lab plays Cilium's part only as far as eligibility needs it
// (cilium-agent pods set Ready through /status). Used by test/e2e, bench/failover.ts and `egressgw lab`.

import { execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createInterface } from 'node:readline';
import { parseAllDocuments } from 'yaml';
import { pino } from 'pino';
import { DEFAULT_CILIUM_AGENT_SELECTOR, DEFAULT_CILIUM_NAMESPACE, DEFAULT_NAMESPACE, MODE_VIP, selectorLabels } from '../api/names.ts';
import { KubeClient, isStatus, type KubeConfig, type ResourceRef } from '../kube/client.ts';
import { errFields, type Logger } from '../kube/log.ts';
import { rfc3339 } from '../kube/time.ts';
import { CILIUM_NODES, GATEWAYS, NODES, POLICIES, pods, namespaces } from '../kube/resources.ts';
import { runController, type PassInfo } from '../controller/controller.ts';
import { parseControllerArgs } from '../controller/options.ts';
import { Lab as NetLab, type LabNode } from './netns.ts';
import { startTestCluster } from './apiserver.ts';
import { poll, type Pending } from './poll.ts';

const execFileAsync = promisify(execFile);
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(REPO, 'bin', 'egressgw.js');
/**
 * The label that makes a lab node a gateway node. Deliberately not the seed examples' selector
 * (`node-role.deckhouse.io/egress`): the network lab runs real agents, and a seed VIP such as
 * 172.18.18.242 must never be announced, even on the lab's own LAN; only TEST-NET addresses are.
 */
export const GATEWAY_NODE_LABEL = 'egressgw.lab/gateway-node';
export const LAB_VIP = '198.18.0.100';
/** egressgw's namespace (agents' Leases) and Cilium's (its agent pods), as the default install profile has them. */
export const LAB_NAMESPACES = [DEFAULT_NAMESPACE, DEFAULT_CILIUM_NAMESPACE];

type TestCluster = Awaited<ReturnType<typeof startTestCluster>>;

export interface LabOptions {
  /** Gateway nodes (default 3). */
  nodes?: number;
  /** Extra flags for every agent (e.g. timings). */
  agentArgs?: string[];
  /** Extra flags for the controller (parsed by parseControllerArgs). */
  controllerArgs?: string[];
  /** Run the controller (default true). */
  controller?: boolean;
  /** Directory for logs (default: a fresh temp dir, removed at stop() unless keepLogs). */
  logDir?: string;
  keepLogs?: boolean;
  /** Called for every controller pass (timestamps for tests and the bench). */
  onPass?: (info: PassInfo) => void;
  /** Where lab progress is logged (default: silent). */
  log?: Logger;
}

export interface AgentProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves with the exit code / signal once the process is gone. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
  alive(): boolean;
}

export interface LabNodeHandle extends LabNode {
  /** Kubernetes node name (= the namespace-lab node name). */
  name: string;
  /** The running agent (replaced by restartAgent). */
  agent: AgentProcess;
}

export interface ArpEvent {
  /** Wall clock, ms (fractional), when the capture process read the frame. */
  t: number;
  ifname: string;
  ethSrc: string;
  ethDst: string;
  op: 'request' | 'reply';
  senderMac: string;
  senderIp: string;
  targetMac: string;
  targetIp: string;
  /** sender IP = target IP: an announcement, not a question. */
  gratuitous: boolean;
}

export interface Capture {
  readonly events: ArpEvent[];
  stop(): void;
}

export interface NeighEvent {
  t: number;
  ip: string;
  mac: string | undefined;
  state: string;
  deleted: boolean;
  line: string;
}

export interface NeighMonitor {
  readonly events: NeighEvent[];
  stop(): void;
}

export interface AddrEvent {
  t: number;
  ip: string;
  ifname: string;
  deleted: boolean;
  line: string;
}

export interface AddrMonitor {
  readonly events: AddrEvent[];
  stop(): void;
}

export interface LabHandle {
  cluster: TestCluster;
  client: KubeClient;
  netns: NetLab;
  router: NetLab['router'];
  nodes: LabNodeHandle[];
  logDir: string;
  /** Kubeconfig the agents use (server = the management address). */
  agentKubeconfigPath: string;
  applyYaml(input: string | object | object[]): Promise<void>;
  waitFor<T>(fn: () => T | undefined | false | Promise<T | undefined | false>, deadlineMs: number, what?: string): Promise<T>;
  startAgent(node: LabNodeHandle, extraArgs?: string[]): AgentProcess;
  /** Kills (SIGKILL) the node's agent if alive and starts a new one. */
  restartAgent(node: LabNodeHandle, extraArgs?: string[]): Promise<AgentProcess>;
  /** A VIP-mode gateway over the lab's nodes. */
  createVipGateway(name: string, ip: string, interfaces?: string[]): Promise<void>;
  /** The node whose namespace holds `ip` on an interface right now, if any. */
  vipHolder(ip: string): Promise<LabNodeHandle | undefined>;
  hasAddress(node: LabNodeHandle, ip: string): Promise<boolean>;
  /**
   * Records every ARP frame received on `ifname` in `ns`. With `probe`, the same process also broadcasts
   * an ARP request for `probe.ip` every `probe.intervalMs` (an active prober: whoever holds the IP answers).
   */
  captureArp(ns: string, ifname: string, probe?: { ip: string; senderMac: string; senderIp: string; intervalMs: number }): Promise<Capture>;
  /** One UDP datagram from `ns` to `ip` (makes the kernel resolve `ip`, like a ping; no ping binary needed). */
  udpPoke(ns: string, ip: string): Promise<void>;
  monitorNeighbours(ns: string): Promise<NeighMonitor>;
  monitorAddresses(ns: string): Promise<AddrMonitor>;
  /** Node Ready condition (the lab plays the node lifecycle controller for reference comparisons). */
  setNodeReady(node: string, ready: boolean): Promise<void>;
  stop(): Promise<void>;
}

/** The lab's poll (see poll.ts), with the argument order `LabHandle.waitFor` and the benches use. */
export function waitFor<T>(fn: () => T | Pending | Promise<T | Pending>, deadlineMs: number, what = 'condition', intervalMs = 20): Promise<T> {
  return poll(what, fn, deadlineMs, { intervalMs });
}

function refFor(obj: { apiVersion?: string; kind?: string; metadata?: { namespace?: string } }): ResourceRef {
  const [group, version] = (obj.apiVersion ?? '').includes('/') ? (obj.apiVersion ?? '').split('/') as [string, string] : ['', obj.apiVersion ?? 'v1'];
  const plural: Record<string, string> = {
    EgressGateway: 'egressgateways',
    EgressGatewayPolicy: 'egressgatewaypolicies',
    SDNInternalEgressGatewayInstance: 'sdninternalegressgatewayinstances',
    CiliumNode: 'ciliumnodes',
    CiliumEgressGatewayPolicy: 'ciliumegressgatewaypolicies',
    Node: 'nodes',
    Pod: 'pods',
    Namespace: 'namespaces',
    Lease: 'leases',
    ConfigMap: 'configmaps',
  };
  const p = plural[obj.kind ?? ''];
  if (!p) throw new Error(`lab applyYaml: unsupported kind ${obj.kind}`);
  return { group, version, plural: p, namespace: obj.metadata?.namespace };
}

/** Creates, or replaces the spec/metadata of, each object (a simple `kubectl apply` for the lab). */
async function applyObjects(client: KubeClient, objects: object[]): Promise<void> {
  for (const o of objects as Array<{ apiVersion?: string; kind?: string; metadata: { name: string; namespace?: string } }>) {
    const ref = refFor(o);
    try {
      await client.create(ref, o);
    } catch (err) {
      if (!isStatus(err, 409)) throw err;
      await client.apply(ref, o.metadata.name, o, { fieldManager: 'egressgw-lab', force: true });
    }
  }
}

async function ensure(client: KubeClient, ref: ResourceRef, obj: object): Promise<void> {
  try {
    await client.create(ref, obj);
  } catch (err) {
    if (!isStatus(err, 409)) throw err;
  }
}

function nodeStatus(ip: string, ready: boolean, now = rfc3339(Date.now())) {
  return {
    status: {
      conditions: [{
        type: 'Ready',
        status: ready ? 'True' : 'False',
        reason: ready ? 'KubeletReady' : 'NodeStatusUnknown',
        message: ready ? 'lab node' : 'Kubelet stopped posting node status (simulated by the lab)',
        lastHeartbeatTime: now,
        lastTransitionTime: now,
      }],
      addresses: [{ type: 'InternalIP', address: ip }],
    },
  };
}

/** Patches a lab node's Ready condition, as a kubelet would (the lab's way to fail a node in the API). */
export async function setLabNodeReady(client: KubeClient, node: { name: string; ip: string }, ready: boolean): Promise<void> {
  await client.mergePatch(NODES, node.name, nodeStatus(node.ip, ready), 'status');
}

/**
 * The API side of a lab, shared with the control-plane-only lab (src/lab/controlplane.ts): our CRDs and
 * Cilium's, the namespace, and per node a Ready Node, its CiliumNode and a Ready cilium-agent Pod (what
 * the controller needs to call a node eligible).
 */
export async function seedLabCluster(
  cluster: TestCluster,
  client: KubeClient,
  nodes: ReadonlyArray<{ name: string; ip: string }>,
  extraNodeLabels: Record<string, string> = {},
): Promise<void> {
  await cluster.applyCRDs(join(REPO, 'deploy', 'crds'));
  await cluster.applyCRDs(join(REPO, 'test', 'fixtures', 'crds', 'cilium'));
  for (const ns of LAB_NAMESPACES) await ensure(client, namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  for (const n of nodes) {
    await ensure(client, NODES, { apiVersion: 'v1', kind: 'Node', metadata: { name: n.name, labels: { ...extraNodeLabels, [GATEWAY_NODE_LABEL]: '', 'kubernetes.io/hostname': n.name } } });
    await setLabNodeReady(client, n, true);
    await ensure(client, CILIUM_NODES, { apiVersion: 'cilium.io/v2', kind: 'CiliumNode', metadata: { name: n.name }, spec: {} });
    const pod = `cilium-agent-${n.name}`;
    // Where and how upstream Cilium's chart runs its agents (the controller's defaults).
    await ensure(client, pods(DEFAULT_CILIUM_NAMESPACE), {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: pod, namespace: DEFAULT_CILIUM_NAMESPACE, labels: selectorLabels(DEFAULT_CILIUM_AGENT_SELECTOR) },
      spec: { nodeName: n.name, containers: [{ name: 'cilium-agent', image: 'lab.invalid/cilium:none' }] },
    });
    await client.mergePatch(pods(DEFAULT_CILIUM_NAMESPACE), pod, { status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] } }, 'status');
  }
}

/** Starts the whole lab. On failure, whatever was started is stopped before the error propagates. */
export async function startLab(opts: LabOptions = {}): Promise<LabHandle> {
  const log = opts.log ?? pino({ level: 'silent' });
  const logDir = opts.logDir ?? mkdtempSync(join(tmpdir(), 'egressgw-lab-'));
  const cleanups: Array<() => Promise<void> | void> = [];
  const stopAll = async (): Promise<void> => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (err) {
        log.warn(errFields(err), 'lab cleanup step failed');
      }
    }
    cleanups.length = 0;
  };
  try {
    const netns = await NetLab.create({ nodes: opts.nodes ?? 3, management: true, prefix: 'egl' });
    cleanups.push(async () => {
      try {
        await netns.teardown();
      } catch (err) {
        // A namespace still busy (a helper process exiting) can make `ip netns del` fail once: retry.
        log.warn(errFields(err), 'namespace teardown failed; retrying');
        for (const ns of netns.namespaces()) {
          await netns.ip(ns, ['link', 'show']).then(() => execFileAsync('ip', ['netns', 'del', ns]), () => undefined).catch(() => undefined);
        }
      }
    });
    const mgmt = netns.mgmt!;
    log.info({ id: netns.id, mgmt: mgmt.hostIp }, 'network namespaces up');

    const cluster = await startTestCluster({ bindAddress: mgmt.hostIp, extraSANs: [mgmt.hostIp], namespaces: LAB_NAMESPACES });
    cleanups.push(() => cluster.stop());
    const kc: KubeConfig = cluster.kubeConfig;
    const client = new KubeClient(kc);
    await seedLabCluster(cluster, client, netns.nodes);

    // The agents reach the server through the management bridge; the server certificate carries that IP.
    const agentKubeconfigPath = join(logDir, 'agent.kubeconfig');
    writeFileSync(agentKubeconfigPath, readFileSync(cluster.kubeconfigFor('egressgw-agent'), 'utf8'));

    const ac = new AbortController();
    if (opts.controller ?? true) {
      const controllerLog = pino({ level: 'debug' }, pino.destination({ dest: join(logDir, 'controller.log'), sync: false, mkdir: true }));
      const options = parseControllerArgs(['--no-leader-elect', '--metrics-addr=', ...(opts.controllerArgs ?? [])]);
      let ready!: () => void;
      const readyP = new Promise<void>((r) => (ready = r));
      const done = runController(options, { signal: ac.signal, kubeConfig: kc, logger: controllerLog, onPass: opts.onPass, onReady: () => ready() })
        .catch((err: unknown) => log.error(errFields(err), 'controller failed'));
      cleanups.push(async () => {
        ac.abort();
        await done;
        controllerLog.flush();
      });
      await Promise.race([readyP, done]);
    }

    const logs: WriteStream[] = [];
    cleanups.push(() => {
      for (const s of logs) s.end();
    });
    const startAgent = (node: LabNodeHandle | LabNode, extraArgs: string[] = []): AgentProcess => {
      const out = createWriteStream(join(logDir, `agent-${node.name}.log`), { flags: 'a' });
      logs.push(out);
      const child = netns.spawnIn(node.ns, process.execPath, [
        BIN, 'agent', '--node-name', node.name, '--kubeconfig', agentKubeconfigPath, '--heartbeat-namespace', DEFAULT_NAMESPACE,
        '--metrics-addr', '127.0.0.1:9870', ...(opts.agentArgs ?? []), ...extraArgs,
      ]);
      child.stdout?.pipe(out, { end: false });
      child.stderr?.pipe(out, { end: false });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
      let gone = false;
      void exited.then(() => (gone = true));
      return {
        pid: child.pid!,
        child,
        exited,
        // `ip netns exec` execs the command, so the PID is the agent's own: signals reach it directly.
        kill: (signal: NodeJS.Signals = 'SIGTERM') => {
          if (!gone) process.kill(child.pid!, signal);
        },
        alive: () => !gone,
      };
    };
    const nodes: LabNodeHandle[] = netns.nodes.map((n) => Object.assign(n, { agent: undefined as unknown as AgentProcess }));
    for (const n of nodes) n.agent = startAgent(n);
    cleanups.push(async () => {
      for (const n of nodes) {
        if (n.agent.alive()) {
          try {
            n.agent.kill('SIGCONT');
            n.agent.kill('SIGKILL');
          } catch {
            // already gone
          }
          await n.agent.exited;
        }
      }
    });

    const hasAddress = async (node: LabNode, ip: string): Promise<boolean> => {
      const out = await netns.ip(node.ns, ['-o', 'addr', 'show']);
      return out.split('\n').some((l) => l.includes(` ${ip}/`));
    };

    const spawnLines = (ns: string, args: string[], onLine: (line: string, t: number) => void, readyLine?: string): Promise<ChildProcess> => {
      const child = netns.spawnIn(ns, args[0]!, args.slice(1));
      cleanups.push(() => void child.kill('SIGKILL'));
      const rl = createInterface({ input: child.stdout! });
      return new Promise((resolveReady, reject) => {
        let ready = readyLine === undefined;
        if (ready) resolveReady(child);
        rl.on('line', (line) => {
          const t = performance.timeOrigin + performance.now();
          if (!ready && line === readyLine) {
            ready = true;
            resolveReady(child);
            return;
          }
          onLine(line, t);
        });
        child.once('exit', (code) => {
          if (!ready) reject(new Error(`${args.join(' ')} in ${ns} exited (${code}) before it was ready`));
        });
      });
    };

    const handle: LabHandle = {
      cluster,
      client,
      netns,
      router: netns.router,
      nodes,
      logDir,
      agentKubeconfigPath,
      async applyYaml(input) {
        let objects: object[];
        if (typeof input === 'string') {
          const text = input.includes('\n') ? input : readFileSync(input, 'utf8');
          objects = parseAllDocuments(text).map((d) => d.toJS() as object).filter(Boolean);
        } else {
          objects = Array.isArray(input) ? input : [input];
        }
        await applyObjects(client, objects);
      },
      waitFor: (fn, deadlineMs, what) => waitFor(fn, deadlineMs, what),
      startAgent: (node, extraArgs) => (node.agent = startAgent(node, extraArgs)),
      async restartAgent(node, extraArgs) {
        if (node.agent.alive()) {
          node.agent.kill('SIGCONT');
          node.agent.kill('SIGKILL');
          await node.agent.exited;
        }
        return (node.agent = startAgent(node, extraArgs));
      },
      async createVipGateway(name, ip, interfaces) {
        await applyObjects(client, [{
          apiVersion: GATEWAYS.group + '/' + GATEWAYS.version,
          kind: 'EgressGateway',
          metadata: { name },
          spec: {
            nodeSelector: { [GATEWAY_NODE_LABEL]: '' },
            sourceIP: { mode: MODE_VIP, virtualIPAddress: { ip, ...(interfaces ? { interfaces } : {}) } },
          },
        }]);
      },
      async vipHolder(ip) {
        for (const n of nodes) if (await hasAddress(n, ip)) return n;
        return undefined;
      },
      hasAddress,
      async captureArp(ns, ifname, probe) {
        const events: ArpEvent[] = [];
        const packetUrl = pathToFileURL(join(REPO, 'src', 'agent', 'net', 'packet.ts')).href;
        const framesUrl = pathToFileURL(join(REPO, 'src', 'agent', 'net', 'frames.ts')).href;
        // A tiny capture process inside the namespace: one JSON line per ARP frame received on `ifname`.
        const script = `
          import { PacketSocket, ETH_P_ARP } from ${JSON.stringify(packetUrl)};
          import { decodeFrame, arpRequestFrame } from ${JSON.stringify(framesUrl)};
          const ifname = process.argv[1];
          const probe = process.argv[2] ? JSON.parse(process.argv[2]) : undefined;
          const s = PacketSocket.open(ifname, ETH_P_ARP);
          if (probe) {
            const frame = arpRequestFrame({ senderMac: probe.senderMac, senderIp: probe.senderIp, targetIp: probe.ip });
            setInterval(() => { try { s.send(frame); } catch {} }, probe.intervalMs);
          }
          s.on('frame', (f) => {
            const t = performance.timeOrigin + performance.now();
            const d = decodeFrame(f);
            if (!d || d.kind !== 'arp') return;
            process.stdout.write(JSON.stringify({ t, ifname, ethSrc: d.eth.src, ethDst: d.eth.dst, op: d.arp.op === 1 ? 'request' : 'reply',
              senderMac: d.arp.senderMac, senderIp: d.arp.senderIp, targetMac: d.arp.targetMac, targetIp: d.arp.targetIp,
              gratuitous: d.arp.senderIp === d.arp.targetIp }) + '\\n');
          });
          process.stdout.write('ready\\n');
        `;
        const child = await spawnLines(ns, [process.execPath, '--input-type=module', '-e', script, ifname, ...(probe ? [JSON.stringify(probe)] : [])], (line) => {
          try {
            events.push(JSON.parse(line) as ArpEvent);
          } catch {
            // not ours
          }
        }, 'ready');
        return { events, stop: () => void child.kill('SIGKILL') };
      },
      async udpPoke(ns, ip) {
        const script = `import { createSocket } from 'node:dgram';
          const s = createSocket(${JSON.stringify(ip.includes(':') ? 'udp6' : 'udp4')});
          s.send('egressgw-lab', 9, process.argv[1], () => s.close());`;
        await netns.exec(ns, process.execPath, ['--input-type=module', '-e', script, ip]);
      },
      async monitorNeighbours(ns) {
        const events: NeighEvent[] = [];
        const child = await spawnLines(ns, ['ip', 'monitor', 'neigh'], (line, t) => {
          const m = /^(Deleted )?(\S+) dev \S+(?: lladdr (\S+))?(?: router)?(?: proxy)? ?([A-Z_ ]*)$/.exec(line.trim());
          if (!m) return;
          events.push({ t, ip: m[2]!, mac: m[3]?.toLowerCase(), state: (m[4] ?? '').trim(), deleted: Boolean(m[1]), line });
        });
        return { events, stop: () => void child.kill('SIGKILL') };
      },
      async monitorAddresses(ns) {
        const events: AddrEvent[] = [];
        const child = await spawnLines(ns, ['ip', '-o', 'monitor', 'address'], (line, t) => {
          const m = /^(Deleted )?\d+:\s+(\S+)\s+inet6?\s+([0-9a-f.:]+)\//.exec(line.trim());
          if (!m) return;
          events.push({ t, ifname: m[2]!, ip: m[3]!, deleted: Boolean(m[1]), line });
        });
        return { events, stop: () => void child.kill('SIGKILL') };
      },
      async setNodeReady(name, ready) {
        await setLabNodeReady(client, { name, ip: nodes.find((x) => x.name === name)?.ip ?? '' }, ready);
      },
      async stop() {
        await stopAll();
        if (!opts.keepLogs && opts.logDir === undefined) rmSync(logDir, { recursive: true, force: true });
      },
    };
    void POLICIES;
    return handle;
  } catch (err) {
    await stopAll();
    if (!opts.keepLogs && opts.logDir === undefined) rmSync(logDir, { recursive: true, force: true });
    throw err;
  }
}

/** Polls the cluster for the live (not terminating) instance of `gateway`, returning its node. */
export async function activeInstance(client: KubeClient, gateway: string): Promise<{ name: string; node: string; ready: boolean; created: string; live: number } | undefined> {
  const list = await client.list<{ metadata: { name: string; deletionTimestamp?: string; ownerReferences?: Array<{ name: string }>; creationTimestamp?: string }; spec?: { nodeName?: string }; status?: { conditions?: Array<{ type: string; status: string }> } }>(
    { group: 'internal.network.deckhouse.io', version: 'v1alpha1', plural: 'sdninternalegressgatewayinstances' });
  const live = list.items.filter((i) => !i.metadata.deletionTimestamp && (i.metadata.ownerReferences?.[0]?.name === gateway || i.metadata.name.startsWith(`${gateway}-`)));
  const i = live[0];
  if (!i) return undefined;
  return {
    name: i.metadata.name,
    node: i.spec?.nodeName ?? '',
    ready: i.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    created: i.metadata.creationTimestamp ?? '',
    /** Live instances of the gateway: more than one while a handover is in flight. */
    live: live.length,
  };
}
