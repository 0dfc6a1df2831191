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
// Writes bench/results/dataplane-throughput.json.

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
import { iperf, viaGatewayRoute } from './iperf.ts';
import { median } from './stats.ts';

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
    for (const n of lab.nodes) await lab.ip(n.ns, ['link', 'set', 'eth0', 'mtu', String(mtu)]);
    for (const l of (await lab.ip(lab.router.ns, ['-o', 'link', 'show'])).split('\n')) {
      const name = l.split(':')[1]?.trim().split('@')[0];
      if (name && name !== 'lo' && name !== 'up0') await lab.ip(lab.router.ns, ['link', 'set', name, 'mtu', String(mtu)]);
    }
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
  try {
    for (const mtu of [1500, 1550]) rigs.push(await rig(mtu));
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
    return {
      when: new Date().toISOString(),
      machine: { cpus: os.cpus().length, loadAvgStart, loadAvgEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
      seconds: SECONDS,
      variants: res.map((o) => ({ ...o, ratio: median(o.tunnelGbps) / median(o.directGbps), ratioSameHops: median(o.tunnelGbps) / median(o.viaGatewayGbps) })),
      lineRates,
    };
  } finally {
    for (const r of rigs) await r.lab.teardown();
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
  for (const v of r.variants) process.stdout.write(`LAN MTU ${v.lanMtu} (egw0 ${v.tunnelMtu}): tunnel/direct ${v.ratio.toFixed(2)}, tunnel/same hops ${v.ratioSameHops.toFixed(2)}\n`);
  for (const l of r.lineRates) process.stdout.write(`link ${l.gbps} Gbit/s: tunnel ${median(l.tunnelGbps).toFixed(2)}, direct ${median(l.directGbps).toFixed(2)} Gbit/s, tunnel/direct ${l.ratio.toFixed(2)}\n`);
}
