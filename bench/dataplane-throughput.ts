// What costs the Linux data plane's throughput (`node bench/dataplane-throughput.ts [runs]`): a two-node rig
// (worker + gateway node on one LAN, router, internet host; podnet.ts), the data plane applied by
// LinuxDataplane as the agents would, iperf3 TCP from a selected pod (tunnel + SNAT), from an unselected pod
// routed directly, and from that pod routed through the gateway node without tunnel or SNAT (same hops).
// Two rigs side by side, in turn run by run so both see the same load: the LAN at MTU 1500 (egw0 1450, TCP
// MSS clamped to 1410 in the tunnel) and at 1550 (egw0 1500: pods keep their 1500, what operators do with
// VXLAN). Also the average size of the packets the worker sends on its uplink during each flow: about 64 KB
// means GSO super-packets cross every veth and the tunnel unsegmented.
//
// Then the same two flows (tunnel + SNAT, direct) through a link of a given rate (`--rates 1,2.5,5`, Gbit/s;
// a token bucket on the router's port towards the internet host, which both paths cross): unshaped, every
// namespace of the rig forwards on the same 2 CPUs, so the ratio counts the tunnel path's extra node; behind
// a link, as on real nodes whose NIC is the limit, it says up to which line rate the tunnel path keeps up.
//
// And the floor (floorRig below): the same pod flow, in the same turn, through a third rig with no netfilter
// at all, adding one piece of a tunnel + SNAT path at a time, so the run says where the gap between 1.0 and
// the measured ratio goes and what no tunnel + SNAT data plane can avoid on this machine.
// Writes bench/results/dataplane-throughput.json and prints the tables.

import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MODE_VIP } from '../src/api/names.ts';
import type { EgressGatewayDataplane } from '../src/api/types.ts';
import { LinuxDataplane } from '../src/agent/dataplane/linux.ts';
import { createRunner } from '../src/agent/net/exec.ts';
import { buildNodeDataplane, type DataplanePod } from '../src/dataplane/model.ts';
import { DEFAULT_DATAPLANE_SETTINGS } from '../src/dataplane/render.ts';
import { Network, type NetNode } from '../src/testenv/netns.ts';
import { POD_CIDR, SERVICE_CIDR, addPodNet, type PodNet, type PodNs } from '../src/testenv/podnet.ts';
import { iperf, podRoute, viaGatewayRoute } from './iperf.ts';
import { median, renderTable } from './stats.ts';

const VIP = '198.18.0.100';
const SECONDS = 4;

interface Rig {
  mtu: number;
  lab: Network;
  net: PodNet;
  worker: NetNode;
  gw: NetNode;
  tunnelPod: PodNs;
  directPod: PodNs;
}

async function rig(mtu: number): Promise<Rig> {
  const lab = await Network.create({ nodes: 2, prefix: 'dpt' });
  try {
    const [worker, gw] = lab.nodes as [NetNode, NetNode];
    const net = await addPodNet(lab, { [worker.name]: 2 });
    const [tunnelPod, directPod] = net.pods as [PodNs, PodNs];
    // The LAN's MTU before the data plane exists: the agent derives egw0's from the uplink's.
    await setLanMtu(lab, mtu);
    await lab.ip(gw.ns, ['addr', 'add', `${VIP}/32`, 'dev', 'eth0']);
    const g: EgressGatewayDataplane = {
      metadata: { name: 'gw' },
      spec: { tunnelID: 42, activeNodeName: gw.name, tunnelEndpoint: gw.ip, sourceIP: { mode: MODE_VIP, ip: VIP }, policies: [{ name: 'web', selectors: [{ podSelector: { matchLabels: { app: 'web' } } }], destinationCIDRs: ['203.0.113.0/24'] }] },
    };
    const pod = (p: PodNs, app: string): DataplanePod => ({ metadata: { namespace: 'bench', name: p.name, labels: { app } }, spec: { nodeName: worker.name }, status: { phase: 'Running', podIP: p.ip } });
    const pods = [pod(tunnelPod, 'web'), pod(directPod, 'direct')];
    for (const n of lab.nodes) {
      const dp = buildNodeDataplane({ node: n.name, podCIDRs: [POD_CIDR], serviceCIDRs: [SERVICE_CIDR], gateways: [g], pods: pods.filter((p) => p.spec?.nodeName === n.name), namespaces: new Map(), interfaces: new Map() });
      await new LinuxDataplane(DEFAULT_DATAPLANE_SETTINGS, createRunner({ netns: n.ns })).apply(dp);
    }
    return { mtu, lab, net, worker, gw, tunnelPod, directPod };
  } catch (err) {
    await lab.teardown();
    throw err;
  }
}

/** Sets the MTU of the LAN: the nodes' uplinks and the router's ports on it (not up0, the internet side). */
async function setLanMtu(lab: Network, mtu: number): Promise<void> {
  for (const n of lab.nodes) await lab.ip(n.ns, ['link', 'set', 'eth0', 'mtu', String(mtu)]);
  for (const l of (await lab.ip(lab.router.ns, ['-o', 'link', 'show'])).split('\n')) {
    const name = l.split(':')[1]?.trim().split('@')[0];
    if (name && name !== 'lo' && name !== 'up0') await lab.ip(lab.router.ns, ['link', 'set', name, 'mtu', String(mtu)]);
  }
}

/**
 * The floor's steps, each the one before plus one piece of a tunnel + SNAT path, all for the same pod flow:
 * - direct: pod → worker → router → internet host, routed (the 1.0);
 * - viaGateway: the gateway node as a plain next hop: what the second node costs;
 * - tunnel: instead, VXLAN-GPE to the gateway node (egw0 in external mode, an lwtunnel route
 *   `encap ip id 42 dst <gateway node>`, as LinuxDataplane installs them), which decapsulates and forwards:
 *   what encapsulation and decapsulation cost;
 * - tunnelSnat: plus one SNAT rule to the VIP on the gateway node (so conntrack and NAT run there, and the
 *   replies come back through it): what SNAT costs. The least any tunnel + SNAT data plane does.
 */
export const FLOOR_STEPS = ['direct', 'viaGateway', 'tunnel', 'tunnelSnat'] as const;
type FloorStep = (typeof FLOOR_STEPS)[number];
/** LAN MTU of the floor rig: egw0 gets 1500 like the pods, so no step needs an MSS clamp (a netfilter rule). */
const FLOOR_MTU = 1550;
const SNAT_TABLE = 'egwfloor';

interface FloorRig {
  lab: Network;
  nodes: NetNode[];
  net: PodNet;
  pod: PodNs;
  steps: Record<FloorStep, { on(): Promise<void>; off(): Promise<void> }>;
}

/**
 * The rig of the other two's topology (podnet.ts; LAN MTU 1550, like the second of them) with no netfilter
 * table in any namespace: the CNI's masquerade is deleted (the router routes the pod CIDR back to the
 * worker instead), no MSS clamp, rp_filter off, so no step pays for a hook it does not need. Only the
 * tunnelSnat step adds a table, and removes it after its flow: with no table left, the namespace's
 * conntrack hooks are unregistered again.
 */
async function floorRig(): Promise<FloorRig> {
  const lab = await Network.create({ nodes: 2, prefix: 'dpf' });
  try {
    const [worker, gw] = lab.nodes as [NetNode, NetNode];
    const net = await addPodNet(lab, { [worker.name]: 1 });
    const pod = net.pods[0]!;
    await setLanMtu(lab, FLOOR_MTU);
    await lab.ip(lab.router.ns, ['route', 'add', net.podCIDRs.get(worker.name)!, 'via', worker.ip]);
    for (const n of lab.nodes) {
      await lab.exec(n.ns, 'nft', ['delete table ip podnet']);
      // Decapsulated packets arrive on egw0 from a pod address routed via eth0; the gateway node forwards
      // out of the interface it received on in viaGateway: no reverse-path check, no redirects.
      await lab.exec(n.ns, 'sysctl', ['-qw', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0', 'net.ipv4.conf.all.send_redirects=0', 'net.ipv4.conf.eth0.send_redirects=0']);
      await lab.ip(n.ns, ['link', 'add', 'egw0', 'mtu', String(FLOOR_MTU - 50), 'type', 'vxlan', 'external', 'gpe', 'dstport', '4790']);
      await lab.ip(n.ns, ['link', 'set', 'egw0', 'up']);
    }
    await lab.ip(gw.ns, ['addr', 'add', `${VIP}/32`, 'dev', 'eth0']);
    const tunnel = podRoute(lab, net, worker, pod, ['encap', 'ip', 'id', '42', 'dst', gw.ip, 'dev', 'egw0']);
    const snat = `table ip ${SNAT_TABLE} { chain postrouting { type nat hook postrouting priority srcnat; oifname "eth0" ip saddr ${POD_CIDR} snat to ${VIP}; }; }`;
    const steps: FloorRig['steps'] = {
      direct: { on: async () => undefined, off: async () => undefined },
      viaGateway: podRoute(lab, net, worker, pod, ['via', gw.ip]),
      tunnel,
      tunnelSnat: {
        async on() {
          await lab.exec(gw.ns, 'nft', [snat]);
          await tunnel.on();
        },
        async off() {
          await tunnel.off();
          await lab.exec(gw.ns, 'nft', [`delete table ip ${SNAT_TABLE}`]);
        },
      },
    };
    return { lab, nodes: [worker, gw], net, pod, steps };
  } catch (err) {
    await lab.teardown();
    throw err;
  }
}

/** Conntrack entries in the floor rig's worker and gateway node. */
async function conntrackCounts(fr: FloorRig): Promise<number[]> {
  return Promise.all(fr.nodes.map(async (n) => Number((await fr.lab.exec(n.ns, 'conntrack', ['-C'])).trim())));
}

/** Runs `f` and returns its result with the average size of the packets `dev` sent meanwhile. */
async function withTxSize<T>(r: Rig, dev: string, f: () => Promise<T>): Promise<[T, number]> {
  const tx = async () => (JSON.parse(await r.lab.ip(r.worker.ns, ['-s', '-j', 'link', 'show', dev])) as Array<{ stats64: { tx: { packets: number; bytes: number } } }>)[0]!.stats64.tx;
  const a = await tx();
  const v = await f();
  const b = await tx();
  return [v, Math.round((b.bytes - a.bytes) / Math.max(1, b.packets - a.packets))];
}

/** Puts a link of `gbps` on the router's port towards the internet host (both paths cross it); 0 removes it. */
async function shape(r: Rig, gbps: number): Promise<void> {
  const router = r.lab.router.ns;
  if (gbps === 0) {
    await r.lab.exec(router, 'tc', ['qdisc', 'del', 'dev', 'up0', 'root']).catch(() => undefined);
    return;
  }
  // Bucket: 2 ms at the rate, and at least four 64 KB GSO packets (tbf splits a packet larger than the bucket).
  const burst = Math.max(256 * 1024, Math.round((gbps * 1e9 / 8) * 0.002));
  await r.lab.exec(router, 'tc', ['qdisc', 'replace', 'dev', 'up0', 'root', 'tbf', 'rate', `${gbps}gbit`, 'burst', String(burst), 'latency', '20ms']);
}

export async function runDataplaneThroughputBench(runs = 5, log: (l: string) => void = () => undefined, rates: readonly number[] = []) {
  const loadAvgStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const rigs: Rig[] = [];
  let fr: FloorRig | undefined;
  try {
    for (const mtu of [1500, 1550]) rigs.push(await rig(mtu));
    fr = await floorRig();
    const floorGbps = Object.fromEntries(FLOOR_STEPS.map((s) => [s, [] as number[]])) as Record<FloorStep, number[]>;
    const res = rigs.map((r) => ({ lanMtu: r.mtu, tunnelMtu: 0, tunnelGbps: [] as number[], directGbps: [] as number[], viaGatewayGbps: [] as number[], tunnelTxBytesPerPacket: [] as number[], directTxBytesPerPacket: [] as number[] }));
    for (const [i, r] of rigs.entries()) res[i]!.tunnelMtu = Number((JSON.parse(await r.lab.ip(r.worker.ns, ['-j', 'link', 'show', 'egw0'])) as Array<{ mtu: number }>)[0]!.mtu);
    for (let k = 0; k < runs; k++) {
      for (const [i, r] of rigs.entries()) {
        const o = res[i]!;
        const [t, ts] = await withTxSize(r, 'eth0', () => iperf(r.lab, r.net, r.tunnelPod, SECONDS));
        const [d, ds] = await withTxSize(r, 'eth0', () => iperf(r.lab, r.net, r.directPod, SECONDS));
        const via = viaGatewayRoute(r.lab, r.net, r.worker, r.directPod, r.gw);
        await via.on();
        const v = await iperf(r.lab, r.net, r.directPod, SECONDS).finally(() => via.off());
        o.tunnelGbps.push(t);
        o.directGbps.push(d);
        o.viaGatewayGbps.push(v);
        o.tunnelTxBytesPerPacket.push(ts);
        o.directTxBytesPerPacket.push(ds);
        log(`LAN MTU ${r.mtu} run ${k + 1}/${runs}: tunnel ${t.toFixed(2)}, direct ${d.toFixed(2)}, via the gateway node ${v.toFixed(2)} Gbit/s; worker uplink ${ts} / ${ds} B per packet`);
      }
      // The floor, in the same turn as the rigs above; its steps in a rotating order, so that none is always
      // the one run right after the rigs' flows (a trend in the machine's load then shifts no step alone).
      for (const s of [...FLOOR_STEPS.slice(k % FLOOR_STEPS.length), ...FLOOR_STEPS.slice(0, k % FLOOR_STEPS.length)]) {
        const tracked = await conntrackCounts(fr);
        await fr.steps[s].on();
        floorGbps[s].push(await iperf(fr.lab, fr.net, fr.pod, SECONDS).finally(() => fr!.steps[s].off()));
        // Proof that each step is what it says: the bare ones left no conntrack entry on either node (no
        // hooks), the SNAT step added entries on the gateway node only.
        const grew = (await conntrackCounts(fr)).map((c, i) => c > tracked[i]!);
        if (grew[0] || grew[1] !== (s === 'tunnelSnat')) throw new Error(`floor step ${s}: conntrack entries grew on [worker, gateway node] = [${grew.join(', ')}]`);
      }
      log(`floor run ${k + 1}/${runs}: ${FLOOR_STEPS.map((s) => `${s} ${floorGbps[s].at(-1)!.toFixed(2)}`).join(', ')} Gbit/s`);
    }
    // Behind a link: the MTU-1500 rig (the default), tunnel and direct in turn at each rate.
    const lineRates: Array<{ gbps: number; tunnelGbps: number[]; directGbps: number[]; ratio: number }> = [];
    const r0 = rigs[0]!;
    for (const gbps of rates) {
      const o = { gbps, tunnelGbps: [] as number[], directGbps: [] as number[], ratio: 0 };
      await shape(r0, gbps);
      try {
        for (let k = 0; k < runs; k++) {
          o.tunnelGbps.push(await iperf(r0.lab, r0.net, r0.tunnelPod, SECONDS));
          o.directGbps.push(await iperf(r0.lab, r0.net, r0.directPod, SECONDS));
          log(`link ${gbps} Gbit/s run ${k + 1}/${runs}: tunnel ${o.tunnelGbps.at(-1)!.toFixed(2)}, direct ${o.directGbps.at(-1)!.toFixed(2)} Gbit/s`);
        }
      } finally {
        await shape(r0, 0);
      }
      o.ratio = median(o.tunnelGbps) / median(o.directGbps);
      lineRates.push(o);
    }
    const bare = median(floorGbps.direct);
    const full = res.find((o) => o.lanMtu === FLOOR_MTU)!;
    return {
      when: new Date().toISOString(),
      machine: { cpus: os.cpus().length, loadAvgStart, loadAvgEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
      seconds: SECONDS,
      variants: res.map((o) => ({ ...o, ratio: median(o.tunnelGbps) / median(o.directGbps), ratioSameHops: median(o.tunnelGbps) / median(o.viaGatewayGbps) })),
      lineRates,
      floor: {
        lanMtu: FLOOR_MTU,
        tunnelMtu: FLOOR_MTU - 50,
        gbps: floorGbps,
        /** Each step's median over the bare direct flow's: tunnelSnat is the floor for the ≥ 0.9 target. */
        ratioToDirect: Object.fromEntries(FLOOR_STEPS.map((s) => [s, median(floorGbps[s]) / bare])) as Record<FloorStep, number>,
        /** The median of each run's step / direct: less moved by a load that drifts between runs. */
        pairedRatioToDirect: Object.fromEntries(FLOOR_STEPS.map((s) => [s, median(floorGbps[s].map((x, k) => x / floorGbps.direct[k]!))])) as Record<FloorStep, number>,
        /** The full data plane of the LAN MTU 1550 rig (same topology and turn) over the bare direct flow. */
        fullTunnelToBareDirect: median(full.tunnelGbps) / bare,
        fullDirectToBareDirect: median(full.directGbps) / bare,
      },
    };
  } finally {
    for (const r of rigs) await r.lab.teardown();
    await fr?.lab.teardown();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { rates: { type: 'string' } } });
  const rates = (values.rates ?? '').split(',').filter((x) => x.trim() !== '').map((x) => {
    const n = Number(x);
    if (!(n > 0)) throw new Error(`--rates: expected Gbit/s values > 0 separated by commas, got "${x}"`);
    return n;
  });
  const runs = Number(positionals[0] ?? 5);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`runs: expected an integer ≥ 1, got "${positionals[0]}"`);
  const r = await runDataplaneThroughputBench(runs, (l) => process.stderr.write(`${l}\n`), rates);
  writeFileSync(join(import.meta.dirname, 'results', 'dataplane-throughput.json'), `${JSON.stringify(r, null, 2)}\n`);
  process.stdout.write(`${throughputTables(r)}\n`);
}

/** The bench's results as text: the ratios of both rigs, the line rates, and the floor table. */
export function throughputTables(r: Awaited<ReturnType<typeof runDataplaneThroughputBench>>): string {
  const f = r.floor;
  const full = r.variants.find((v) => v.lanMtu === f.lanMtu)!;
  const g = (xs: number[]): string => median(xs).toFixed(2);
  const runs = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(', ');
  const row = (name: string, xs: number[], toDirect: number, toBefore?: number, paired?: number): string[] =>
    [name, g(xs), runs(xs), toDirect.toFixed(2), toBefore === undefined ? '' : toBefore.toFixed(2), paired === undefined ? '' : paired.toFixed(2)];
  const p = f.pairedRatioToDirect;
  const q = f.ratioToDirect;
  return [
    `${r.machine.cpus} CPUs, load average ${r.machine.loadAvgStart[0]} → ${r.machine.loadAvgEnd[0]}, iperf3 TCP ${r.seconds} s per flow, ${f.gbps.direct.length} runs, all flows in turn`,
    ...r.variants.map((v) => `LAN MTU ${v.lanMtu} (egw0 ${v.tunnelMtu}): tunnel/direct ${v.ratio.toFixed(2)}, tunnel/same hops ${v.ratioSameHops.toFixed(2)}`),
    ...r.lineRates.map((l) => `link ${l.gbps} Gbit/s: tunnel ${g(l.tunnelGbps)}, direct ${g(l.directGbps)} Gbit/s, tunnel/direct ${l.ratio.toFixed(2)}`),
    '',
    renderTable(
      [`floor: one pod flow, LAN MTU ${f.lanMtu} (egw0 ${f.tunnelMtu}), no netfilter unless said`, 'Gbit/s (median)', 'runs', '/ bare direct', '/ step before', 'median of the runs\' / bare direct'],
      [
        row('bare: routed directly', f.gbps.direct, 1, undefined, 1),
        row('bare: routed through the gateway node (plain next hop)', f.gbps.viaGateway, q.viaGateway, q.viaGateway, p.viaGateway),
        row('bare: VXLAN-GPE tunnel to the gateway node, decapsulated and forwarded', f.gbps.tunnel, q.tunnel, q.tunnel / q.viaGateway, p.tunnel),
        row('bare tunnel + one SNAT rule on the gateway node (conntrack): the floor', f.gbps.tunnelSnat, q.tunnelSnat, q.tunnelSnat / q.tunnel, p.tunnelSnat),
        row(`full data plane (LinuxDataplane + CNI masquerade), MTU ${f.lanMtu} rig: tunnel + SNAT`, full.tunnelGbps, f.fullTunnelToBareDirect, f.fullTunnelToBareDirect / q.tunnelSnat),
        row(`full data plane, MTU ${f.lanMtu} rig: routed directly (CNI masquerade)`, full.directGbps, f.fullDirectToBareDirect),
      ],
    ),
  ].join('\n');
}
