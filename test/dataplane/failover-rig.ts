// The kernel side of a Linux-data-plane VIP failover, for tests that watch its packets (no API server, as
// test/dataplane/linux.test.ts): a worker with pods, two gateway nodes, an internet host; LinuxDataplane
// applied on every node with the models every agent would compute; the failover done the way the agents do
// it (old node's uplink down, VIP on the new node, every node's data plane re-applied with the new active
// node). Needs root, nft, ip, ss and conntrack (Debian package conntrack).
import assert from 'node:assert/strict';
import { MODE_VIP } from '../../src/api/names.ts';
import type { EgressGatewayDataplane } from '../../src/api/types.ts';
import { buildNodeDataplane, type DataplanePod } from '../../src/dataplane/model.ts';
import { DEFAULT_DATAPLANE_SETTINGS } from '../../src/dataplane/render.ts';
import { createRunner } from '../../src/agent/net/exec.ts';
import { LinuxDataplane } from '../../src/agent/dataplane/linux.ts';
import { Network, assertNetnsSupported, type NetNode } from '../../src/testenv/netns.ts';
import { POD_CIDR, SERVICE_CIDR, addPodNet, setUplink, type PodNet, type PodNs } from '../../src/testenv/podnet.ts';
import { Traffic } from '../../src/testenv/traffic.ts';
import { poll } from '../../src/testenv/poll.ts';

export const VIP = '198.18.0.100';
export const WAIT = 15_000;

/** One `conntrack -L` line: the pod's side (original direction) and the port the server sees (reply). */
export interface CtEntry {
  podIP: string;
  podPort: number;
  /** Reply destination: the VIP and the port SNAT gave the connection. */
  natIP: string;
  natPort: number;
}

function parseConntrack(out: string): CtEntry[] {
  const re = /src=(\S+) dst=\S+ sport=(\d+) dport=\d+ .*?src=\S+ dst=(\S+) sport=\d+ dport=(\d+)/;
  return out.split('\n').flatMap((l) => {
    const m = re.exec(l);
    return m ? [{ podIP: m[1]!, podPort: Number(m[2]), natIP: m[3]!, natPort: Number(m[4]) }] : [];
  });
}

export const events = (t: Traffic, id: string) => t.tcp.filter((e) => e.id === id);
export const echoed = (t: Traffic, id: string, data: string) => events(t, id).some((e) => e.ev === 'echo' && e.data === data);
export const closedEvent = (t: Traffic, id: string) => events(t, id).find((e) => e.ev === 'closed');
/** The error a closed connection ended with (undefined while open, or closed cleanly). */
export const closedWith = (t: Traffic, id: string) => closedEvent(t, id)?.error;

export class FailoverRig {
  readonly lab: Network;
  readonly net: PodNet;
  readonly gw1: NetNode;
  readonly gw2: NetNode;
  readonly pods: PodNs[];
  /** The internet host's traffic helper (the server). */
  readonly inet: Traffic;
  /** One traffic helper per pod, in the order of `pods`. */
  readonly clients: Traffic[];
  readonly #planes: Map<string, LinuxDataplane>;

  private constructor(lab: Network, net: PodNet, inet: Traffic, clients: Traffic[], planes: Map<string, LinuxDataplane>) {
    this.lab = lab;
    this.net = net;
    [, this.gw1, this.gw2] = lab.nodes as [NetNode, NetNode, NetNode];
    this.pods = net.pods;
    this.inet = inet;
    this.clients = clients;
    this.#planes = planes;
  }

  /** `pods` pods on the worker; namespaces and links named `prefix` + a per-run id. */
  static async create(prefix: string, pods: number): Promise<FailoverRig> {
    await assertNetnsSupported(); // fails (not skips) without root: required in CI
    const lab = await Network.create({ nodes: 3, prefix });
    try {
      const net = await addPodNet(lab, { [lab.nodes[0]!.name]: pods });
      const planes = new Map(lab.nodes.map((n) => [n.name, new LinuxDataplane(DEFAULT_DATAPLANE_SETTINGS, createRunner({ netns: n.ns }))]));
      const spawn = (ns: string, cmd: string, args: string[]) => lab.spawnIn(ns, cmd, args);
      const inet = await Traffic.start(spawn, net.internet.ns);
      const clients: Traffic[] = [];
      for (const p of net.pods) clients.push(await Traffic.start(spawn, p.ns));
      return new FailoverRig(lab, net, inet, clients, planes);
    } catch (e) {
      await lab.teardown();
      throw e;
    }
  }

  async close(): Promise<void> {
    for (const t of [this.inet, ...this.clients]) await t.close().catch(() => undefined);
    await this.lab.teardown();
  }

  #gateway(active: NetNode): EgressGatewayDataplane {
    return {
      metadata: { name: 'gw' },
      spec: {
        tunnelID: 42,
        activeNodeName: active.name,
        tunnelEndpoint: active.ip,
        sourceIP: { mode: MODE_VIP, ip: VIP },
        policies: [{ name: 'web', selectors: [{ podSelector: { matchLabels: { app: 'web' } } }], destinationCIDRs: ['203.0.113.0/24'] }],
      },
    };
  }

  /** Every node's data plane with `active` as the gateway's active node, as every agent computes it. */
  async applyAll(active: NetNode): Promise<void> {
    const podObj = (p: PodNs): DataplanePod => ({ metadata: { namespace: 'prod', name: p.name, labels: { app: 'web' } }, spec: { nodeName: p.node }, status: { phase: 'Running', podIP: p.ip } });
    for (const n of this.lab.nodes) {
      await this.#planes.get(n.name)!.apply(buildNodeDataplane({
        node: n.name,
        podCIDRs: [POD_CIDR],
        serviceCIDRs: [SERVICE_CIDR],
        gateways: [this.#gateway(active)],
        pods: this.pods.filter((p) => p.node === n.name).map(podObj),
        namespaces: new Map(),
        interfaces: new Map([['eth0', { up: true, ipv4: [n.ip] }]]),
      }));
    }
  }

  async conntrack(n: NetNode, serverPort: number): Promise<CtEntry[]> {
    return parseConntrack(await this.lab.exec(n.ns, 'conntrack', ['-L', '-p', 'tcp', '--dport', String(serverPort)]));
  }

  /** Records every RST a namespace's own stack sends (who resets: the server, or one of our nodes). */
  async #rstProbe(ns: string): Promise<void> {
    await this.lab.exec(ns, 'nft', [[
      'table inet rstprobe {}',
      'delete table inet rstprobe',
      'table inet rstprobe {',
      '\tset rsts { type ipv4_addr . inet_service . inet_service; flags dynamic; }',
      '\tchain out { type filter hook output priority 0; policy accept; tcp flags & rst == rst add @rsts { ip daddr . tcp dport . tcp sport }; }',
      '}',
    ].join('\n')]);
  }

  /**
   * The RSTs (destination ip:port) the namespace's own stack sent since the case began, on connections to
   * or from `serverPort` (the case's own server: a connection an earlier case left behind may still draw
   * a RST while a later case runs — seen in CI).
   */
  async rstsSent(ns: string, serverPort: number): Promise<string[]> {
    const j = JSON.parse(await this.lab.exec(ns, 'nft', ['-j', 'list', 'set', 'inet', 'rstprobe', 'rsts'])) as { nftables: Array<{ set?: { elem?: Array<{ concat: [string, number, number] }> } }> };
    return (j.nftables.find((o) => o.set)?.set?.elem ?? [])
      .filter((e) => e.concat[1] === serverPort || e.concat[2] === serverPort)
      .map((e) => `${e.concat[0]}:${e.concat[1]}`)
      .sort();
  }

  /**
   * Every case starts from gateway node 1 active with empty conntrack tables on both gateway nodes and no
   * RSTs recorded, and fails over to node 2.
   */
  async fresh(): Promise<void> {
    const { lab, net, gw1, gw2 } = this;
    await setUplink(lab, net, gw1, 'up');
    if (await lab.hasAddress(gw2.ns, VIP)) await lab.ip(gw2.ns, ['addr', 'del', `${VIP}/32`, 'dev', 'eth0']);
    if (!(await lab.hasAddress(gw1.ns, VIP))) await lab.ip(gw1.ns, ['addr', 'add', `${VIP}/32`, 'dev', 'eth0']);
    await lab.ip(lab.router.ns, ['neigh', 'flush', 'to', VIP]);
    await this.applyAll(gw1);
    for (const n of [gw1, gw2]) await lab.exec(n.ns, 'conntrack', ['-F']);
    for (const ns of [gw1.ns, gw2.ns, net.internet.ns]) await this.#rstProbe(ns);
  }

  /** The failover as the agents do it: old node gone (uplink down), VIP on the new one, routes follow. */
  async failover(): Promise<void> {
    const { lab, net, gw1, gw2 } = this;
    await setUplink(lab, net, gw1, 'down');
    await lab.ip(gw2.ns, ['addr', 'add', `${VIP}/32`, 'dev', 'eth0']);
    await lab.ip(lab.router.ns, ['neigh', 'flush', 'to', VIP]);
    await this.applyAll(gw2);
  }

  /**
   * Pod `i`'s connection `${id}${name}` to the listener `id` on `server` (from `localPort` when given),
   * one line (`${name}1`) echoed through gateway node 1. Returns the port the server sees (node 1's SNAT).
   */
  async connect(id: string, server: number, i: number, name: string, localPort?: number): Promise<number> {
    const t = this.clients[i]!;
    const cid = `${id}${name}`;
    await t.tcpConnect(cid, this.net.internet.ip, server, 0, localPort === undefined ? {} : { localPort });
    await poll(`${cid} connected`, () => events(t, cid).some((e) => e.ev === 'connected'), WAIT);
    await t.tcpSend(cid, `${name}1`);
    await poll(`${cid} echoes through gateway node 1`, () => echoed(t, cid, `${name}1`), WAIT);
    const nat = (await this.conntrack(this.gw1, server)).find((e) => e.podIP === this.pods[i]!.ip);
    assert.equal(nat?.natIP, VIP);
    return nat.natPort;
  }

  /** The new gateway node's entry for a pod's connection, once it picked the connection up. */
  pickedUp(pod: PodNs, server: number): Promise<CtEntry> {
    return poll(`${pod.name}'s connection picked up by gateway node 2`, async () => (await this.conntrack(this.gw2, server)).find((e) => e.podIP === pod.ip), WAIT);
  }

  /** Lines the server read on listener `id`, as `<peer port>:<line>`. */
  serverLines(id: string): string[] {
    return this.inet.tcp.filter((e) => e.id === id && e.ev === 'recv').map((e) => `${e.fromPort}:${e.data}`);
  }

  /** Ends every connection, listener and stream of every helper (between cases). */
  async stopAll(): Promise<void> {
    const all = [this.inet, ...this.clients];
    for (const id of [...new Set(all.flatMap((t) => t.tcp.map((e) => e.id)))]) {
      for (const t of all) await t.stop(id);
    }
  }
}
