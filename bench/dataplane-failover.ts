// Linux data plane under hard failovers, and its throughput (`npm run bench -- --only dataplane`), in the
// netns cluster of src/testenv/dataplane-env.ts (3 gateway nodes, 2 workers with 2 pods each, all four
// pods selected by one VIP-mode policy).
//
// Each round fails the active gateway node hard — its agent SIGKILLed, or its uplink set down — while
//  - pod 1 sends a UDP datagram every 10 ms to the internet host: the loss window is the longest gap
//    between two datagrams arriving there, minus the 10 ms interval;
//  - 50 TCP connections (spread over the four pods, a line each way every 200 ms) are open: a connection
//    survives when it never breaks and carries echoes again after the failover;
//  - `ip monitor route` on both workers stamps when their gateway route points at the new node (time from
//    the failure; the later of the two workers).
// The failed node is then repaired (agent restarted / link up) and stays standby; the next round fails
// the new active node.
//
// Throughput: iperf3 (TCP, 4 s) from a selected pod through tunnel + SNAT, from an unselected pod on the
// same node routed directly (the CNI's masquerade), and from that pod routed through the active gateway
// node as a plain next hop (same hops as the tunnel, no tunnel, no SNAT), in turn, 5 runs each; ratios of
// medians.

import { createInterface } from 'node:readline';
import { API_VERSION, DEFAULT_NAMESPACE, MODE_VIP, heartbeatLeaseName } from '../src/api/names.ts';
import type { EgressGateway, EgressGatewayDataplane, LeaseLike } from '../src/api/types.ts';
import { Informer } from '../src/kube/informer.ts';
import { DATAPLANES, GATEWAYS, leases as leases_ } from '../src/kube/resources.ts';
import { mayTakeVips } from '../src/testenv/agents.ts';
import { kernelView, startDataplaneEnv, type DataplaneEnv, type DataplaneNode } from '../src/testenv/dataplane-env.ts';
import type { PodNs } from '../src/testenv/podnet.ts';
import { poll } from '../src/testenv/poll.ts';
import { GATEWAY_NODE_LABEL, TEST_VIP, applyObjects } from '../src/testenv/seed.ts';
import { freshPort, type Traffic } from '../src/testenv/traffic.ts';
import { dist, median, type Dist } from './stats.ts';
import { iperf, viaGatewayRoute } from './iperf.ts';

export type FailureKind = 'agent-sigkill' | 'uplink-down';

export interface DataplaneRound {
  kind: FailureKind;
  from: string;
  to: string;
  lossWindowMs: number;
  routeSwitchMs: number;
  /** The object's update seen by a watcher → both workers' routes at the new node. */
  objectToRoutesMs: number;
  tcpOpen: number;
  tcpSurvived: number;
  /** Datagrams that arrived from anything but the VIP (a leak): must be 0. */
  foreignSources: number;
  /** How the connections that did not survive ended (socket error, or 'stalled'), and their source port's case. */
  tcpFailures: string[];
  /** Connections whose pod port was remapped by the first SNAT or is shared with another pod's connection. */
  portClashes: number;
  /**
   * The connections that did not survive, by cause: on a clashing port (the SNAT port clash that
   * test/dataplane/snat-clash.test.ts proves: one of each clashing pair is lost), or any other.
   */
  tcpLost: { clash: number; other: number };
  /** Per surviving connection: failure → its 10th echo after it, ms. */
  tcpResumedMs: number[];
}

export interface DataplaneFailoverResults {
  rounds: DataplaneRound[];
  byKind: Record<FailureKind, { lossWindowMs: Dist; routeSwitchMs: Dist; objectToRoutesMs: Dist; tcpSurvivedShare: number; tcpOpen: number; tcpLost: { clash: number; other: number }; tcpResumedMs: Dist; foreignSources: number }>;
  throughput: {
    tunnelGbps: number[];
    directGbps: number[];
    /** The unselected pod routed through the active gateway node, no tunnel, no SNAT there. */
    viaGatewayGbps: number[];
    /** tunnel / direct (the issue's ratio). */
    ratio: number;
    /** tunnel / via the gateway node: the cost of tunnel + SNAT on the same hops. */
    ratioSameHops: number;
  };
}

const TCP_CONNECTIONS = 50;
/** A connection that has not carried 10 echoes again this long after the switch counts as stalled (lost). */
const SETTLE_MS = 60_000;
// Generous: on a loaded machine (shared CI cores) heartbeats renew late, nodes fence and the election waits.
const WAIT = 120_000;

/** `ip -o monitor route` in a namespace: the arrival time of every line that names our table and endpoint. */
function routeMonitor(env: DataplaneEnv, n: DataplaneNode) {
  const child = env.net.spawnIn(n.ns, 'ip', ['-o', 'monitor', 'route']);
  const lines: Array<{ t: number; line: string }> = [];
  createInterface({ input: child.stdout! }).on('line', (line) => lines.push({ t: Date.now(), line }));
  return {
    /** When the route to `endpoint` in one of our tables appeared after `since`. */
    switchedAt: (endpoint: string, since: number) => lines.find((l) => l.t >= since && /table 260\d\d/.test(l.line) && l.line.includes(`dst ${endpoint} `))?.t,
    stop: () => child.kill('SIGKILL'),
  };
}

const THROUGHPUT_RUNS = 5;
const THROUGHPUT_SECONDS = 4;

export async function runDataplaneFailoverBench(o: { rounds?: number; log?: (l: string) => void } = {}): Promise<DataplaneFailoverResults> {
  const roundsPerKind = o.rounds ?? 20;
  const log = o.log ?? (() => undefined);
  const debug = process.env.EGRESSGW_KEEP_LOGS === '1';
  const env = await startDataplaneEnv({ keepLogs: debug, agentArgs: debug ? ['--log-level', 'debug'] : [] });
  if (process.env.EGRESSGW_KEEP_LOGS === '1') log(`logs: ${env.logDir}`);
  const monitors: Array<ReturnType<typeof routeMonitor>> = [];
  const stops: Array<() => void> = [];
  try {
    const inet = await env.traffic(env.podNet.internet.ns);
    await env.putNamespace('bench');
    for (const p of env.pods) await env.putPod(p, 'bench', { app: 'web' });
    await applyObjects(env.client, [
      { apiVersion: API_VERSION, kind: 'EgressGateway', metadata: { name: 'vip-gw' }, spec: { nodeSelector: { [GATEWAY_NODE_LABEL]: '' }, sourceIP: { mode: MODE_VIP, virtualIPAddress: { ip: TEST_VIP } } } },
      { apiVersion: API_VERSION, kind: 'EgressGatewayPolicy', metadata: { name: 'web' }, spec: { egressGatewayName: 'vip-gw', destinationCIDRs: ['203.0.113.0/24'], selectors: [{ podSelector: { matchLabels: { app: 'web' } } }] } },
    ]);
    const active = async (not?: DataplaneNode): Promise<DataplaneNode> => {
      try {
        const d = await poll('an active node', async () => {
          const x = await env.client.tryGet<EgressGatewayDataplane>(DATAPLANES, 'vip-gw');
          return x?.spec?.activeNodeName && x.spec.activeNodeName !== not?.name ? x : undefined;
        }, WAIT);
        return env.nodes.find((n) => n.name === d.spec!.activeNodeName)!;
      } catch (err) {
        // Why: the gateway's condition says which nodes are out and for what.
        const g = await env.client.get<EgressGateway>(GATEWAYS, 'vip-gw').catch(() => undefined);
        log(`no active node: ${JSON.stringify(g?.status?.conditions)}`);
        const leases = await env.client.list<LeaseLike>(leases_(DEFAULT_NAMESPACE)).catch(() => ({ items: [] as LeaseLike[] }));
        for (const n of env.gateways) {
          const l = leases.items.find((x) => x.metadata.name === heartbeatLeaseName(n.name));
          log(`  ${n.name}: agent ${n.agent.alive() ? `alive (pid ${n.agent.pid})` : 'gone'}, lease renewed ${l?.spec?.renewTime ?? 'never'}`);
        }
        throw err;
      }
    };
    for (const w of env.workers) monitors.push(routeMonitor(env, w));
    // When the controller's write of the object is seen (a watcher's event: one watch round trip, as
    // every agent sees it): the routes' time from there is the agents' share.
    const seen: Array<{ t: number; active: string }> = [];
    const watcher = new Informer<EgressGatewayDataplane>(env.client, { resource: DATAPLANES });
    watcher.onEvent((type, o) => {
      if (type !== 'delete' && o.metadata.name === 'vip-gw') seen.push({ t: Date.now(), active: o.spec?.activeNodeName ?? '' });
    });
    watcher.start();
    stops.push(() => watcher.stop());
    const senders = await Promise.all(env.pods.map((p) => env.traffic(p.ns)));
    const streamer = senders[0]!;

    const rounds: DataplaneRound[] = [];
    const kinds: FailureKind[] = [];
    for (let i = 0; i < roundsPerKind; i++) kinds.push('agent-sigkill', 'uplink-down');
    for (const [r, kind] of kinds.entries()) {
      const old = await active();
      const port = freshPort();
      const id = `r${port}`;
      await inet.udpListen(id, port);
      await inet.tcpListen(`${id}t`, port);
      await poll('the VIP path works', async () => {
        await streamer.udpSend(env.podNet.internet.ip, port, `${id}probe`);
        return inet.received(id, `${id}probe`).some((e) => e.from === TEST_VIP);
      }, WAIT, { intervalMs: 200 });
      const conns: Array<{ t: Traffic; cid: string }> = [];
      for (let c = 0; c < TCP_CONNECTIONS; c++) {
        const t = senders[c % senders.length]!;
        const cid = `${id}c${c}`;
        await t.tcpConnect(cid, env.podNet.internet.ip, port, 200);
        conns.push({ t, cid });
      }
      const echoes = (t: Traffic, cid: string) => Math.max(0, ...t.tcp.filter((e) => e.id === cid && e.ev === 'echo').map((e) => e.n!));
      await poll('every connection echoes', () => conns.every(({ t, cid }) => echoes(t, cid) >= 10), WAIT);
      await streamer.udpStream(id, env.podNet.internet.ip, port, 10);
      await poll('the stream flows', () => inet.received(id, `${id}:`).length >= 50, WAIT);
      const before = new Map(conns.map(({ t, cid }) => [cid, echoes(t, cid)]));
      // Every other gateway node may take the VIP (past the hold its agent keeps after its heartbeat
      // (re)started: the node repaired in the previous round, or one that fenced under load), so the
      // round measures a failover, not a hold.
      await poll('the standby gateway nodes may take the VIP', () => env.gateways.every((n) => n === old || mayTakeVips(n.agent)), WAIT);

      const tFail = Date.now();
      if (kind === 'agent-sigkill') {
        old.agent.kill('SIGKILL');
        await old.agent.exited;
      } else {
        await env.setUplink(old, 'down');
      }
      const next = await active(old);
      const switched = await poll('both workers route to the new node', () => {
        const ts = monitors.map((m) => m.switchedAt(next.ip, tFail));
        return ts.every((t) => t !== undefined) && Math.max(...(ts as number[]));
      }, WAIT);
      // Long enough for every connection to echo again: TCP's retransmission timer backs off (0.2, 0.4,
      // 0.8 … s), so a connection can stay quiet for seconds after the path is back and still be alive.
      const resumed = new Map<string, number>();
      const settled = await poll('the connections settle', () => {
        for (const { t, cid } of conns) {
          if (!resumed.has(cid) && echoes(t, cid) >= before.get(cid)! + 10) resumed.set(cid, Date.now() - tFail);
        }
        const done = conns.every(({ t, cid }) => resumed.has(cid) || t.tcp.some((e) => e.id === cid && e.ev === 'closed'));
        return done || (Date.now() - switched > SETTLE_MS && 'timeout');
      }, SETTLE_MS + WAIT, { intervalMs: 100 });
      try {
        await poll('the stream arrives after the switch', () => inet.received(id, `${id}:`).some((e) => e.t > switched + 500), WAIT);
      } catch (err) {
        for (const n of env.nodes) log(`${n.name}: ${JSON.stringify(await kernelView(n.ns))} ${await env.net.ip(n.ns, ['-br', 'addr'])}`);
        throw err;
      }
      await streamer.stop(id);
      const arrivals = inet.received(id, `${id}:`).map((e) => e.t).sort((a, b) => a - b);
      let gap = 0;
      for (let k = 1; k < arrivals.length; k++) gap = Math.max(gap, arrivals[k]! - arrivals[k - 1]!);
      const survived = conns.filter(({ t, cid }) => echoes(t, cid) >= before.get(cid)! + 10 && !t.tcp.some((e) => e.id === cid && e.ev === 'closed' && !e.stopped)).length;
      // Source ports: the pod's own (connected) and the one the server saw (the first node's SNAT). A
      // connection the first node had to give another port, or whose pod port another pod's connection
      // also uses, cannot be picked up with its old mapping on the new node (SNAT keeps the pod's port
      // when free, first come first served): of each such pair the failover loses one, reset by the server
      // or stalled (test/dataplane/snat-clash.test.ts).
      const localPort = (t: Traffic, cid: string) => t.tcp.find((e) => e.id === cid && e.ev === 'connected')?.localPort;
      const serverPorts = new Set(inet.tcp.filter((e) => e.id === `${id}t` && e.ev === 'accept').map((e) => e.fromPort));
      const portUse = new Map<number | undefined, number>();
      for (const { t, cid } of conns) portUse.set(localPort(t, cid), (portUse.get(localPort(t, cid)) ?? 0) + 1);
      const portNote = (t: Traffic, cid: string) => {
        const p = localPort(t, cid);
        return !serverPorts.has(p) ? 'its port remapped by the first SNAT' : portUse.get(p)! > 1 ? 'its port also used by another pod' : 'its own port';
      };
      const portClashes = conns.filter(({ t, cid }) => portNote(t, cid) !== 'its own port').length;
      const lost = conns.filter(({ t, cid }) => !(echoes(t, cid) >= before.get(cid)! + 10 && !t.tcp.some((e) => e.id === cid && e.ev === 'closed' && !e.stopped)));
      const tcpFailures = lost.map(({ t, cid }) => `${t.tcp.find((e) => e.id === cid && e.ev === 'closed')?.error ?? 'stalled'} (${portNote(t, cid)})`);
      const lostOnClash = lost.filter(({ t, cid }) => portNote(t, cid) !== 'its own port').length;
      for (const { t, cid } of conns) await t.stop(cid);
      const round: DataplaneRound = {
        kind,
        from: old.name,
        to: next.name,
        lossWindowMs: Math.max(0, gap - 10),
        routeSwitchMs: switched - tFail,
        objectToRoutesMs: switched - (seen.find((x) => x.t >= tFail && x.active === next.name)?.t ?? Number.NaN),
        tcpOpen: conns.length,
        tcpSurvived: survived,
        foreignSources: inet.received(id, `${id}:`).filter((e) => e.from !== TEST_VIP).length,
        tcpFailures,
        portClashes,
        tcpLost: { clash: lostOnClash, other: lost.length - lostOnClash },
        tcpResumedMs: [...resumed.values()],
      };
      rounds.push(round);
      log(`round ${r + 1}/${kinds.length} ${kind} ${old.name}→${next.name}: loss ${round.lossWindowMs.toFixed(0)} ms, routes ${round.routeSwitchMs} ms (${round.objectToRoutesMs.toFixed(0)} ms after the object), TCP ${survived}/${conns.length}, ${portClashes} on a clashing port, lost ${lostOnClash} on a clash + ${lost.length - lostOnClash} other${tcpFailures.length > 0 ? ` (${[...new Set(tcpFailures)].join('; ')})` : ''}${settled === 'timeout' ? ' (some connections stalled)' : ''}`);
      await inet.stop(id);
      await inet.stop(`${id}t`);
      if (kind === 'agent-sigkill') await env.startAgent(old).started;
      else await env.setUplink(old, 'up');
    }

    // Throughput: a selected pod (tunnel + SNAT), an unselected one on the same node routed directly, and
    // the same unselected pod routed through the active gateway node without tunnel or SNAT (the same
    // hops as the tunnel's path). Every hop of this rig shares the machine's CPUs, so the first ratio also
    // charges the gateway node's extra hop; the second isolates what tunnel + SNAT cost.
    const [tunnelPod, directPod] = env.pods.filter((p) => p.node === env.workers[0]!.name) as [PodNs, PodNs];
    await env.putPod(directPod, 'bench', { app: 'direct' });
    await poll('the direct pod is no longer selected', async () => {
      const v = await kernelView(env.workers[0]!.ns);
      return v.selected.includes(tunnelPod.ip) && !v.selected.includes(directPod.ip);
    }, WAIT);
    const gwNode = await active();
    const viaGateway = viaGatewayRoute(env.net, env.podNet, env.workers[0]!, directPod, gwNode);
    const tunnelGbps: number[] = [];
    const directGbps: number[] = [];
    const viaGatewayGbps: number[] = [];
    for (let k = 0; k < THROUGHPUT_RUNS; k++) {
      tunnelGbps.push(await iperf(env.net, env.podNet, tunnelPod, THROUGHPUT_SECONDS));
      directGbps.push(await iperf(env.net, env.podNet, directPod, THROUGHPUT_SECONDS));
      await viaGateway.on();
      viaGatewayGbps.push(await iperf(env.net, env.podNet, directPod, THROUGHPUT_SECONDS));
      await viaGateway.off();
      log(`iperf3 ${k + 1}/${THROUGHPUT_RUNS}: tunnel ${tunnelGbps[k]!.toFixed(2)}, direct ${directGbps[k]!.toFixed(2)}, via ${gwNode.name} without tunnel ${viaGatewayGbps[k]!.toFixed(2)} Gbit/s`);
    }
    const byKind = {} as DataplaneFailoverResults['byKind'];
    for (const kind of ['agent-sigkill', 'uplink-down'] as FailureKind[]) {
      const rs = rounds.filter((x) => x.kind === kind);
      const open = rs.reduce((a, x) => a + x.tcpOpen, 0);
      byKind[kind] = {
        lossWindowMs: dist(rs.map((x) => x.lossWindowMs)),
        routeSwitchMs: dist(rs.map((x) => x.routeSwitchMs)),
        objectToRoutesMs: dist(rs.map((x) => x.objectToRoutesMs).filter(Number.isFinite)),
        tcpSurvivedShare: open === 0 ? Number.NaN : rs.reduce((a, x) => a + x.tcpSurvived, 0) / open,
        tcpOpen: open,
        tcpLost: { clash: rs.reduce((a, x) => a + x.tcpLost.clash, 0), other: rs.reduce((a, x) => a + x.tcpLost.other, 0) },
        tcpResumedMs: dist(rs.flatMap((x) => x.tcpResumedMs)),
        foreignSources: rs.reduce((a, x) => a + x.foreignSources, 0),
      };
    }
    return {
      rounds,
      byKind,
      throughput: {
        tunnelGbps,
        directGbps,
        viaGatewayGbps,
        ratio: median(tunnelGbps) / median(directGbps),
        ratioSameHops: median(tunnelGbps) / median(viaGatewayGbps),
      },
    };
  } finally {
    for (const m of monitors) m.stop();
    for (const stop of stops) stop();
    await env.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rounds = Number(process.argv[2] ?? 20);
  const r = await runDataplaneFailoverBench({ rounds, log: (l) => process.stderr.write(`${l}\n`) });
  process.stdout.write(`${JSON.stringify({ byKind: r.byKind, throughput: r.throughput }, null, 2)}\n`);
}
